//! The Distribution Spec's grammar for repository names, tags and digests. A name that passes
//! [`repository`] has only `[a-z0-9._-]` components that start with a letter or digit, so it
//! can never be `..`, absolute, or reach outside the registry's directory when joined to it.

use std::sync::LazyLock;

use regex::Regex;

use super::error::ApiError;

/// The spec's `<name>` pattern, one component at a time.
static COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$").expect("valid regex"));
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("valid regex"));

/// Longest repository name distribution accepts.
const MAX_NAME_LEN: usize = 255;

/// Checks a repository name (`group/project/image`) against the spec's grammar.
pub(crate) fn repository(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ApiError::name_invalid(format!(
            "repository name must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    if let Some(bad) = name.split('/').find(|c| !COMPONENT.is_match(c)) {
        return Err(ApiError::name_invalid(format!(
            "invalid repository name component {bad:?}: components are lower-case letters and \
             digits separated by `.`, `_`, `__` or dashes"
        )));
    }
    Ok(())
}

pub(crate) fn is_tag(reference: &str) -> bool {
    TAG.is_match(reference)
}

/// A `sha256:<64 hex>` digest, the only algorithm this registry computes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest {
    hex: String,
}

impl Digest {
    pub(crate) fn parse(text: &str) -> Result<Digest, ApiError> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(ApiError::digest_invalid(format!(
                "{text:?} is not a digest (`algorithm:hex`)"
            )));
        };
        if algorithm != "sha256" {
            return Err(ApiError::digest_invalid(format!(
                "digest algorithm {algorithm:?} is not supported (only sha256)"
            )));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ApiError::digest_invalid(format!(
                "{text:?} is not a sha256 digest (64 lower-case hex digits)"
            )));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    pub(crate) fn from_sha256(hash: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(hash),
        }
    }

    pub(crate) fn of(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::from_sha256(&sha2::Sha256::digest(data))
    }

    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        for bad in [
            "..",
            "a/../b",
            "/abs",
            "a//b",
            "a/",
            "A/b",
            "a/.hidden",
            "a/_manifests",
            "a\\b",
            "",
        ] {
            let err = repository(bad).expect_err(bad);
            assert_eq!(err.code, "NAME_INVALID", "{bad}");
        }
        for good in ["group/project", "a.b/c_d/e__f/g--h", "x"] {
            repository(good).expect(good);
        }
    }

    #[test]
    fn digests_and_tags() {
        let hex = "a".repeat(64);
        assert_eq!(
            Digest::parse(&format!("sha256:{hex}")).unwrap().to_string(),
            format!("sha256:{hex}")
        );
        for bad in [
            "sha256:abc",
            "md5:00",
            "sha256",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert_eq!(Digest::parse(bad).unwrap_err().code, "DIGEST_INVALID");
        }
        assert!(is_tag("v1.0_rc-1"));
        assert!(!is_tag(".."));
        assert!(!is_tag("-x"));
        assert!(!is_tag(&"a".repeat(129)));
    }
}
