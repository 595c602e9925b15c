//! AWS Signature Version 4, the algorithm both sides of the S3 cache share: the runner
//! presigns URLs with it (`runner::s3_presign`) and the server verifies requests with it
//! (`server::sigv4`). Follows AWS's "sigv4-query-string-auth" and "sig-v4-header-based-auth"
//! documents: the canonical request, the string to sign, the derived signing key and the
//! URI-encoding rules live here once, so a signer and a verifier cannot drift apart.

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The only algorithm S3 (and glci) accepts.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The longest validity AWS accepts for a presigned URL: 7 days.
pub(crate) const MAX_EXPIRES: u64 = 604_800;

/// The payload hash of a request whose body is not signed (every presigned URL).
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// AWS encodes everything except the unreserved characters.
const AWS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// AWS's `UriEncode`: everything but `A-Za-z0-9-._~` percent-encoded, `/` included.
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, AWS_ENCODE).to_string()
}

/// A decoded path as S3 canonicalises it: each segment encoded once, slashes kept.
pub(crate) fn encode_path(decoded_path: &str) -> String {
    decoded_path
        .split('/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// The canonical query string of decoded `(name, value)` pairs: both encoded, sorted by name
/// and then value, joined with `&`.
pub(crate) fn canonical_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as SigV4 canonicalises it: trimmed, runs of whitespace become one space.
pub(crate) fn canonical_header_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The credential scope: the date (`yyyymmdd`) and region a signature is valid for.
pub(crate) struct Scope<'a> {
    pub(crate) date: &'a str,
    pub(crate) region: &'a str,
}

impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/s3/aws4_request", self.date, self.region)
    }
}

/// The parts of a canonical request, already canonicalised by the caller: `path` encoded
/// (see [`encode_path`]), `query` from [`canonical_query`], `headers` as `name:value\n` lines
/// in the order of `signed_headers` (`;`-joined lower-case names).
pub(crate) struct CanonicalRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: &'a str,
    pub(crate) signed_headers: &'a str,
    pub(crate) payload_hash: &'a str,
}

impl std::fmt::Display for CanonicalRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.path,
            self.query,
            self.headers,
            self.signed_headers,
            self.payload_hash
        )
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; should that ever fail, an empty MAC only makes the
    // signature wrong (the verifier refuses it) instead of panicking here.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The hex signature of `request`, signed at `amz_date` (`yyyymmddThhmmssZ`) within `scope`
/// with `secret_key`: string to sign, then the key derived date → region → service → request.
pub(crate) fn signature(
    secret_key: &str,
    scope: &Scope<'_>,
    amz_date: &str,
    request: &CanonicalRequest<'_>,
) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(request.to_string().as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{secret_key}").as_bytes(),
        scope.date.as_bytes(),
    );
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_aws_uri_encode() {
        assert_eq!(encode("a b/c~d-e_f.g"), "a%20b%2Fc~d-e_f.g");
        assert_eq!(encode_path("/b/a b/x=y"), "/b/a%20b/x%3Dy");
    }

    #[test]
    fn canonical_query_sorts_by_encoded_name_then_value() {
        assert_eq!(
            canonical_query([("b", "2"), ("a", "x y"), ("a", "1"), ("location", "")]),
            "a=1&a=x%20y&b=2&location="
        );
    }
}
