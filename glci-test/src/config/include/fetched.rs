//! Includes glci fetches because they name no local file: `include:template` from GitLab's
//! public templates and `include:component` from the component's project, both over HTTP(S)
//! through [`remote::fetch`] (so the private-address refusal applies) and kept in the
//! content-addressed include cache.
//!
//! Unlike `include:remote`, which GitLab fetches anew for every pipeline (so glci does too when
//! online), these name a version: GitLab's templates are those of one GitLab release
//! ([`DEFAULT_TEMPLATE_REF`] unless `--template-ref`), and a component is read at `@version`.
//! A cached copy is used without asking the network again, except for a component version that
//! looks like a branch name (not a tag like `1.2.3`/`v1.2`, not a commit SHA): a branch moves.

use super::cache::IncludeCache;
use super::remote::{self, FetchError};
use super::LoadOptions;

/// Where GitLab keeps its CI templates (`lib/gitlab/ci/templates` of gitlab-org/gitlab), as
/// raw files on gitlab.com; `{ref}` is replaced by the release.
pub const DEFAULT_TEMPLATE_URL: &str =
    "https://gitlab.com/gitlab-org/gitlab/-/raw/{ref}/lib/gitlab/ci/templates";

/// The GitLab release whose templates `include:template` reads by default: the templates a
/// self-managed GitLab of that version serves. Pinned so that plans do not change under the
/// user; `--template-ref` picks another (a tag such as `v17.11.0-ee`, or `master`).
pub const DEFAULT_TEMPLATE_REF: &str = "v18.8.2-ee";

/// Where `include:template` and `include:component` are fetched from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchSources {
    /// URL prefix of the templates, `{ref}` standing for `template_ref`.
    pub template_url: String,
    /// The gitlab-org/gitlab ref (release tag) the templates are read at.
    pub template_ref: String,
    /// Base URL standing for `https://<fqdn>` of every component address (a mirror, or a test
    /// server); `None`: the address's own host over HTTPS.
    pub component_url: Option<String>,
}

impl Default for FetchSources {
    fn default() -> Self {
        FetchSources {
            template_url: DEFAULT_TEMPLATE_URL.to_string(),
            template_ref: DEFAULT_TEMPLATE_REF.to_string(),
            component_url: None,
        }
    }
}

impl FetchSources {
    /// The raw URL of template `name` (e.g. `Jobs/SAST.gitlab-ci.yml`).
    pub fn template(&self, name: &str) -> String {
        let prefix = self.template_url.replace("{ref}", &self.template_ref);
        format!(
            "{}/{}",
            prefix.trim_end_matches('/'),
            name.trim_start_matches('/')
        )
    }

    /// The raw URL of file `rel` of project `project` on host `fqdn` at `version`, GitLab's
    /// `/-/raw/<ref>/<path>` form.
    pub fn component_file(&self, fqdn: &str, project: &str, version: &str, rel: &str) -> String {
        let base = match &self.component_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://{fqdn}"),
        };
        format!("{base}/{project}/-/raw/{version}/{rel}")
    }
}

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
    fn urls() {
        let sources = FetchSources::default();
        assert_eq!(
            sources.template("Jobs/SAST.gitlab-ci.yml"),
            format!("https://gitlab.com/gitlab-org/gitlab/-/raw/{DEFAULT_TEMPLATE_REF}/lib/gitlab/ci/templates/Jobs/SAST.gitlab-ci.yml")
        );
        assert_eq!(
            sources.component_file("gitlab.com", "g/p", "1.0", "templates/x.yml"),
            "https://gitlab.com/g/p/-/raw/1.0/templates/x.yml"
        );
        let mirror = FetchSources {
            template_url: "http://127.0.0.1:1/t/".into(),
            component_url: Some("http://127.0.0.1:2/".into()),
            ..FetchSources::default()
        };
        assert_eq!(mirror.template("A.yml"), "http://127.0.0.1:1/t/A.yml");
        assert_eq!(
            mirror.component_file("gitlab.com", "g/p", "v1", "templates/x/template.yml"),
            "http://127.0.0.1:2/g/p/-/raw/v1/templates/x/template.yml"
        );
    }

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
