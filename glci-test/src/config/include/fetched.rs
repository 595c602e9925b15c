//! Includes glci fetches because they name no local file: `include:template` from GitLab's
//! public templates and `include:component` from the component's project, both over HTTP(S)
//! through [`remote::fetch`] (so the private-address refusal applies) and kept in the
//! content-addressed include cache.
//!
//! Unlike `include:remote`, which GitLab fetches anew for every pipeline (so glci does too when
//! online), these name a version: GitLab's templates are those of one GitLab release
//! (`DEFAULT_TEMPLATE_REF` unless `--template-ref`), and a component is read at `@version`.
//! A cached copy is used without asking the network again, except for a component version that
//! looks like a branch name (not a tag like `1.2.3`/`v1.2`, not a commit SHA): a branch moves.

use super::cache::IncludeCache;
use super::remote::{self, FetchError};
use crate::config::load_options::LoadOptions;

/// Why a fetched include could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("it is not in glci's include cache and `--offline` is set (run once without `--offline` to fetch it)")]
    NotCached,
    #[error("{0}")]
    Fetch(#[from] FetchError),
}

/// The text at `url`: from the cache when there and `reuse` (or `--offline`), else fetched and
/// kept in the cache.
pub fn text(opts: &LoadOptions, url: &str, reuse: bool) -> Result<String, Unavailable> {
    if reuse || opts.offline {
        if let Some(text) = cached(opts, url) {
            return Ok(text);
        }
    }
    let cache = opts.include_cache.as_deref().map(IncludeCache::new);
    if opts.offline {
        return Err(Unavailable::NotCached);
    }
    let text = remote::fetch(url, opts.remote_timeout, opts.allow_private_remote)?;
    if let Some(cache) = &cache {
        // A cache that cannot be written only costs a later fetch.
        let _ = cache.put(url, &text);
    }
    Ok(text)
}

/// The cached text of `url`, if any.
pub fn cached(opts: &LoadOptions, url: &str) -> Option<String> {
    IncludeCache::new(opts.include_cache.as_deref()?).get(url)
}

/// Whether a component version names something that does not move: a release tag (`1.2.3`,
/// `v1.2`) or a commit SHA. A branch (`main`) is fetched again on every online run.
pub fn is_fixed_version(version: &str) -> bool {
    let tag = version.strip_prefix('v').unwrap_or(version);
    let semver_like = tag.starts_with(|c: char| c.is_ascii_digit())
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    let sha = version.len() == 40 && version.bytes().all(|b| b.is_ascii_hexdigit());
    semver_like || sha
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_versions() {
        for v in ["1.2.3", "v1.2", "2", "1.0.0-rc1", &"a".repeat(40)] {
            assert!(is_fixed_version(v), "{v}");
        }
        for v in ["main", "feature/x", "~latest", "vnext"] {
            assert!(!is_fixed_version(v), "{v}");
        }
    }
}
