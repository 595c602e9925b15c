//! AWS Signature Version 4 *presigning* for the cache's S3 objects: the runner process signs
//! GET, HEAD and PUT URLs with the S3 credentials, as gitlab-runner's `s3v2` adapter does
//! (path-style URLs, `UNSIGNED-PAYLOAD`, `x-amz-meta-*` headers signed into the PUT), so any
//! S3-compatible server — glci's own, or MinIO — accepts them. Follows AWS's
//! "sigv4-query-string-auth" document; the algorithm itself is [`crate::sigv4`], shared with
//! the server's verifier.

use std::time::{Duration, SystemTime};

use crate::calendar::amz_date;
use crate::sigv4::{self, encode, CanonicalRequest, Scope};

/// Where the cache lives and how to sign for it (`[runners.cache.s3]` of config.toml).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Target {
    /// `host:port` (`ServerAddress`), reachable from the runner process.
    pub server_address: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// `Insecure = true`: plain `http://`.
    pub insecure: bool,
}

impl std::fmt::Debug for S3Target {
    // The secret key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Target")
            .field("server_address", &self.server_address)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl S3Target {
    /// The object's URL without any query (what the runner prints: `CleanURL`).
    pub fn object_url(&self, object_key: &str) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!(
            "{scheme}://{}{}",
            self.server_address,
            self.canonical_path(object_key)
        )
    }

    /// `/<bucket>/<key>`, each segment encoded once, slashes kept (no bucket segment when the
    /// bucket is empty: a virtual-hosted address names it).
    fn canonical_path(&self, object_key: &str) -> String {
        let key = sigv4::encode_path(&format!("/{object_key}"));
        if self.bucket.is_empty() {
            key
        } else {
            format!("/{}{key}", encode(&self.bucket))
        }
    }

    /// A presigned URL for `method` on `object_key`, valid for `expires` from `now`. Every
    /// header in `headers` (lower-case names, e.g. `x-amz-meta-cachekey`) is signed and must
    /// be sent with exactly that value.
    pub fn presign(
        &self,
        method: &str,
        object_key: &str,
        headers: &[(&str, &str)],
        expires: Duration,
        now: SystemTime,
    ) -> String {
        let date_time = amz_date(now);
        let scope = Scope {
            date: &date_time[..8],
            region: &self.region,
        };
        let mut signed: Vec<(String, String)> = vec![("host".into(), self.server_address.clone())];
        signed.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), sigv4::canonical_header_value(v))),
        );
        signed.sort();
        let signed_names = signed
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let expires = expires.as_secs().clamp(1, sigv4::MAX_EXPIRES).to_string();
        let credential = format!("{}/{scope}", self.access_key);
        let query = sigv4::canonical_query([
            ("X-Amz-Algorithm", sigv4::ALGORITHM),
            ("X-Amz-Credential", credential.as_str()),
            ("X-Amz-Date", date_time.as_str()),
            ("X-Amz-Expires", expires.as_str()),
            ("X-Amz-SignedHeaders", signed_names.as_str()),
        ]);
        let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let path = self.canonical_path(object_key);
        let signature = sigv4::signature(
            &self.secret_key,
            &scope,
            &date_time,
            &CanonicalRequest {
                method,
                path: &path,
                query: &query,
                headers: &canonical_headers,
                signed_headers: &signed_names,
                payload_hash: sigv4::UNSIGNED_PAYLOAD,
            },
        );
        format!(
            "{}?{query}&X-Amz-Signature={signature}",
            self.object_url(object_key)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn aws_example() -> S3Target {
        S3Target {
            server_address: "examplebucket.s3.amazonaws.com".into(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            insecure: false,
        }
    }

    #[test]
    fn reproduces_the_aws_presigned_get_example() {
        // AWS's documented example ("sigv4-query-string-auth"): GET /test.txt on a
        // virtual-hosted bucket, valid 24 h, and the signature it publishes.
        let target = aws_example();
        let t = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let url = target.presign("GET", "test.txt", &[], Duration::from_secs(86_400), t);
        assert!(url.starts_with("https://examplebucket.s3.amazonaws.com/test.txt?"));
        assert!(url.ends_with(
            "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        ));
        assert!(url.contains(
            "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        ));
        assert!(url.contains("X-Amz-Expires=86400"));
        assert!(url.contains("X-Amz-SignedHeaders=host"));
    }

    #[test]
    fn signs_meta_headers_and_encodes_keys_per_segment() {
        let target = S3Target {
            server_address: "127.0.0.1:9000".into(),
            bucket: "glci-cache".into(),
            region: "us-east-1".into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
            insecure: true,
        };
        let url = target.presign(
            "PUT",
            "runner/abc/project/3/my key",
            &[("x-amz-meta-cachekey", "my key")],
            Duration::from_secs(3600),
            SystemTime::now(),
        );
        assert!(
            url.starts_with("http://127.0.0.1:9000/glci-cache/runner/abc/project/3/my%20key?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-SignedHeaders=host%3Bx-amz-meta-cachekey"));
        let signature = url.rsplit("X-Amz-Signature=").next().unwrap_or("");
        assert_eq!(signature.len(), 64);
        assert!(!format!("{target:?}").contains("SK\""));
    }
}
