//! AWS Signature Version 4 verification for S3 requests: presigned query strings (what the
//! runner hands its helper) and the `Authorization` header (the runner's own
//! `GetBucketLocation`). Follows AWS's "sigv4-query-string-auth" and "sig-v4-header-based-auth"
//! documents; the algorithm itself is [`crate::sigv4`], shared with the runner's presigner.
//! Keys are compared in constant time.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use percent_encoding::percent_decode_str;

use crate::sigv4::{self, CanonicalRequest, Scope, MAX_EXPIRES};

/// Allowed clock difference between signer and server.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) struct Keys<'a> {
    pub(crate) access_key: &'a str,
    pub(crate) secret_key: &'a str,
    pub(crate) region: &'a str,
}

/// Why a request was refused, with the S3 error code to answer with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AuthError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> AuthError {
    AuthError {
        code,
        message: message.into(),
    }
}

/// What a verified request promised about its body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    /// `x-amz-content-sha256` of a header-signed request (hex digest, or a sentinel such as
    /// `UNSIGNED-PAYLOAD`); `None` for presigned URLs, whose payload is never signed.
    pub(crate) payload_hash: Option<String>,
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The path as S3 canonicalises it: each segment URI-encoded once, slashes kept.
fn canonical_uri(raw_path: &str) -> String {
    sigv4::encode_path(&decode(raw_path))
}

/// Raw query pairs, percent-decoded (`+` stays literal, as S3 reads it).
fn raw_pairs(raw_query: Option<&str>) -> Vec<(String, String)> {
    raw_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn canonical_query(pairs: &[(String, String)]) -> String {
    sigv4::canonical_query(
        pairs
            .iter()
            .filter(|(k, _)| k != "X-Amz-Signature")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

fn canonical_headers(headers: &HeaderMap, signed: &[&str]) -> Result<String, AuthError> {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| sigv4::canonical_header_value(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() {
            return Err(err(
                "AccessDenied",
                format!("signed header {name:?} is missing from the request"),
            ));
        }
        out.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(out)
}

/// Checks `<access key>/<yyyymmdd>/<region>/s3/aws4_request`.
fn check_credential<'a>(credential: &'a str, keys: &Keys<'_>) -> Result<Scope<'a>, AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [ak, date, region, service, terminal] = parts.as_slice() else {
        return Err(err(
            "AuthorizationQueryParametersError",
            format!("credential {credential:?} is not <key>/<date>/<region>/s3/aws4_request"),
        ));
    };
    if !constant_time_eq(ak.as_bytes(), keys.access_key.as_bytes()) {
        return Err(err(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        ));
    }
    if *service != "s3" || *terminal != "aws4_request" {
        return Err(err(
            "AuthorizationQueryParametersError",
            format!("credential scope must end in s3/aws4_request, not {service}/{terminal}"),
        ));
    }
    if *region != keys.region {
        return Err(err(
            "AuthorizationQueryParametersError",
            format!(
                "the region {region:?} is wrong; expecting {:?}",
                keys.region
            ),
        ));
    }
    Ok(Scope { date, region })
}

/// The request as received, for recomputing its signature.
struct Request<'a> {
    method: &'a str,
    raw_path: &'a str,
    pairs: &'a [(String, String)],
    headers: &'a HeaderMap,
}

/// Recomputes the signature over `signed` (`;`-joined header names) and `payload`, and
/// compares it with the `given` one in constant time.
fn check_signature(
    request: &Request<'_>,
    keys: &Keys<'_>,
    scope: &Scope<'_>,
    amz_date: &str,
    signed: &str,
    payload: &str,
    given: &str,
) -> Result<(), AuthError> {
    let signed_list: Vec<&str> = signed.split(';').collect();
    let path = canonical_uri(request.raw_path);
    let query = canonical_query(request.pairs);
    let headers = canonical_headers(request.headers, &signed_list)?;
    let expected = sigv4::signature(
        keys.secret_key,
        scope,
        amz_date,
        &CanonicalRequest {
            method: request.method,
            path: &path,
            query: &query,
            headers: &headers,
            signed_headers: signed,
            payload_hash: payload,
        },
    );
    if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(err(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(())
}

fn parse_date(amz_date: &str) -> Result<SystemTime, AuthError> {
    crate::calendar::parse_amz_date(amz_date).ok_or_else(|| {
        err(
            "AccessDenied",
            format!("X-Amz-Date {amz_date:?} is not yyyymmddThhmmssZ"),
        )
    })
}

/// Verifies a request's SigV4 signature (query or header form).
pub(crate) fn verify(
    method: &str,
    raw_path: &str,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    keys: &Keys<'_>,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let pairs = raw_pairs(raw_query);
    let request = Request {
        method,
        raw_path,
        pairs: &pairs,
        headers,
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(algorithm) = get("X-Amz-Algorithm") {
        if algorithm != sigv4::ALGORITHM {
            return Err(err(
                "AuthorizationQueryParametersError",
                format!("X-Amz-Algorithm {algorithm:?} is not AWS4-HMAC-SHA256"),
            ));
        }
        let missing = |k: &str| {
            err(
                "AuthorizationQueryParametersError",
                format!("query parameter {k} is missing"),
            )
        };
        let credential = get("X-Amz-Credential").ok_or_else(|| missing("X-Amz-Credential"))?;
        let amz_date = get("X-Amz-Date").ok_or_else(|| missing("X-Amz-Date"))?;
        let expires = get("X-Amz-Expires").ok_or_else(|| missing("X-Amz-Expires"))?;
        let signed = get("X-Amz-SignedHeaders").ok_or_else(|| missing("X-Amz-SignedHeaders"))?;
        let given = get("X-Amz-Signature").ok_or_else(|| missing("X-Amz-Signature"))?;
        let scope = check_credential(credential, keys)?;
        if !amz_date.starts_with(scope.date) {
            return Err(err(
                "AuthorizationQueryParametersError",
                "credential date does not match X-Amz-Date",
            ));
        }
        let expires: u64 = expires
            .parse()
            .ok()
            .filter(|e| (1..=MAX_EXPIRES).contains(e))
            .ok_or_else(|| {
                err(
                    "AuthorizationQueryParametersError",
                    format!("X-Amz-Expires {expires:?} must be 1..{MAX_EXPIRES} seconds"),
                )
            })?;
        let signed_at = parse_date(amz_date)?;
        if signed_at > now + MAX_SKEW {
            return Err(err("AccessDenied", "Request is not valid yet"));
        }
        if now > signed_at + Duration::from_secs(expires) {
            return Err(err("AccessDenied", "Request has expired"));
        }
        let signed_list: Vec<&str> = signed.split(';').collect();
        if !signed_list.contains(&"host") {
            return Err(err(
                "AuthorizationQueryParametersError",
                "the host header must be signed",
            ));
        }
        // Presigned URLs normally leave the payload unsigned; a signer may say so explicitly.
        let payload = get("X-Amz-Content-Sha256").unwrap_or(sigv4::UNSIGNED_PAYLOAD);
        check_signature(&request, keys, &scope, amz_date, signed, payload, given)?;
        return Ok(Verified { payload_hash: None });
    }

    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(err(
            "AccessDenied",
            "Access Denied: the request is not signed",
        ));
    };
    let Some(params) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(err(
            "AccessDenied",
            "only AWS4-HMAC-SHA256 signatures are accepted",
        ));
    };
    let mut credential = None;
    let mut signed = None;
    let mut given = None;
    for part in params.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => given = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed), Some(given)) = (credential, signed, given) else {
        return Err(err(
            "AuthorizationHeaderMalformed",
            "Authorization needs Credential, SignedHeaders and Signature",
        ));
    };
    let scope = check_credential(credential, keys)?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| err("AccessDenied", "x-amz-date header is missing"))?;
    if !amz_date.starts_with(scope.date) {
        return Err(err(
            "AuthorizationHeaderMalformed",
            "credential date does not match x-amz-date",
        ));
    }
    let signed_at = parse_date(amz_date)?;
    if signed_at > now + MAX_SKEW || now > signed_at + MAX_SKEW {
        return Err(err(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        ));
    }
    let payload = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| err("InvalidRequest", "x-amz-content-sha256 header is missing"))?
        .to_string();
    let signed_list: Vec<&str> = signed.split(';').collect();
    if !signed_list.contains(&"host") {
        return Err(err(
            "AuthorizationHeaderMalformed",
            "the host header must be signed",
        ));
    }
    check_signature(&request, keys, &scope, amz_date, signed, &payload, given)?;
    Ok(Verified {
        payload_hash: Some(payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_encodes_each_segment_once() {
        assert_eq!(canonical_uri("/b/a%20b/c~d"), "/b/a%20b/c~d");
        assert_eq!(canonical_uri("/b/a b/x=y"), "/b/a%20b/x%3Dy");
    }

    #[test]
    fn canonical_query_sorts_and_drops_the_signature() {
        let pairs = raw_pairs(Some("b=2&a=1&X-Amz-Signature=ff&location"));
        assert_eq!(canonical_query(&pairs), "a=1&b=2&location=");
    }

    #[test]
    fn unsigned_requests_are_refused() {
        let keys = Keys {
            access_key: "AK",
            secret_key: "SK",
            region: "us-east-1",
        };
        let e = verify(
            "GET",
            "/b/k",
            None,
            &HeaderMap::new(),
            &keys,
            SystemTime::now(),
        );
        assert_eq!(e.map_err(|e| e.code), Err("AccessDenied"));
    }
}
