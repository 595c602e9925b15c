//! What loading a configuration is asked for: the project, the file, where includes come
//! from ([`LoadOptions`], [`FetchSources`]), and the names of the files read
//! ([`SourceFile`]). Plain data, below both the loader (`load.rs`) and the include resolver
//! (`include/`), which both take it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What to load and how to reach what it includes.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The project's root directory (local includes are relative to it).
    pub project_dir: PathBuf,
    /// The configuration file, relative to `project_dir`.
    pub file: String,
    /// `group/project` → local checkout, for `include:project` and `include:component`.
    pub project_map: BTreeMap<String, PathBuf>,
    /// A directory holding GitLab's CI templates, for `include:template` (else they are
    /// fetched from `sources`).
    pub template_dir: Option<PathBuf>,
    /// Where `include:template` and unmapped `include:component` are fetched from.
    pub sources: FetchSources,
    /// Variables for include paths, `include:rules` and `| expand_vars` (predefined and
    /// CI/CD variables; YAML `variables:` never apply there).
    pub variables: Vec<(String, String)>,
    /// Pipeline inputs for the main file's `spec:inputs`, as strings (typed inputs are read
    /// as JSON, as GitLab does).
    pub inputs: Vec<(String, String)>,
    /// Files the pipeline's push changed, for `include:rules:changes`; `None` (no diff
    /// known) makes `changes` match, as GitLab does when it has no diff.
    pub changed_files: Option<Vec<String>>,
    /// Deadline for one `include:remote` fetch (GitLab: 30 s).
    pub remote_timeout: Duration,
    /// Let `include:remote` fetch from loopback, private and link-local addresses (GitLab's
    /// `allow_local_requests_from_web_hooks_and_services`, off by default).
    pub allow_private_remote: bool,
    /// Where fetched includes (remote, template, component) are kept (`GLCI_HOME/includes`);
    /// `None`: nowhere.
    pub include_cache: Option<PathBuf>,
    /// Read fetched includes only from `include_cache`, never from the network.
    pub offline: bool,
    /// The parent pipeline's jobs and their extracted artifacts, when the configuration is a
    /// child pipeline's (`include:artifact` reads from them); `None` for a pipeline of its own.
    pub parent_artifacts: Option<BTreeMap<String, PathBuf>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            project_dir: PathBuf::from("."),
            file: ".gitlab-ci.yml".into(),
            project_map: BTreeMap::new(),
            template_dir: None,
            sources: FetchSources::default(),
            variables: Vec::new(),
            inputs: Vec::new(),
            changed_files: None,
            remote_timeout: Duration::from_secs(30),
            allow_private_remote: false,
            include_cache: None,
            offline: false,
            parent_artifacts: None,
        }
    }
}

impl LoadOptions {
    /// Options for the project in `project_dir`, everything else at its default.
    pub fn new(project_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            project_dir: project_dir.into(),
            ..LoadOptions::default()
        }
    }
}

/// Where a file that was read came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    Path(PathBuf),
    Url(String),
}

/// A file that went into the configuration, under the name its spans use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub location: SourceLocation,
}

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
}
