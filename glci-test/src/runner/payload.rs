//! The job payload as GitLab sends it in the 201 answer of `POST /api/v4/jobs/request`.
//!
//! Decoding is lenient the way the official runner's is: unknown fields are ignored, missing
//! ones take their zero value, `null` equals absent. Only what the built-in runner reads is
//! modelled.

use serde::{Deserialize, Deserializer};

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobPayload {
    pub id: u64,
    pub token: String,
    #[serde(default)]
    pub allow_git_fetch: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub job_info: JobInfo,
    #[serde(default, deserialize_with = "null_as_default")]
    pub git_info: GitInfo,
    #[serde(default, deserialize_with = "null_as_default")]
    pub runner_info: RunnerInfo,
    #[serde(default, deserialize_with = "null_as_default")]
    pub variables: Vec<JobVariable>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub steps: Vec<Step>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: Option<Image>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub services: Vec<Image>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub artifacts: Vec<Artifact>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cache: Vec<Cache>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub dependencies: Vec<Dependency>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub features: Features,
    /// Registry logins for pulling `image:` and `services:` (GitLab sends the job's own
    /// `gitlab-ci-token` for its registry).
    #[serde(default, deserialize_with = "null_as_default")]
    pub credentials: Vec<Credential>,
    /// Where the runner keeps builds: the runner's `builds_dir`, not sent by GitLab (`None`:
    /// `/builds`).
    #[serde(skip)]
    pub builds: Option<BuildsLocation>,
}

/// A runner's builds directory for one job (`builds_dir` in its configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildsLocation {
    /// `CI_BUILDS_DIR`.
    pub root: String,
    /// The job's own directory below it when the builds directory is shared with the host
    /// (gitlab-runner's `<short token>/<concurrent id>`).
    pub unique: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Credential {
    #[serde(default, rename = "type")]
    pub kind: String,
    /// `host[:port]`, sometimes with a scheme.
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

impl JobPayload {
    /// The registry login for `image`, as the runner picks it: the credential whose host is
    /// the image's registry (its first path component, when that names a host).
    pub fn registry_credential(&self, image: &str) -> Option<&Credential> {
        let first = image.split('/').next()?;
        let names_host = image.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if !names_host {
            return None;
        }
        self.credentials.iter().find(|c| {
            let host = c
                .url
                .split("://")
                .last()
                .unwrap_or(&c.url)
                .trim_end_matches('/');
            c.kind == "registry" && host == first
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub pipeline_id: u64,
    #[serde(default)]
    pub project_id: u64,
    #[serde(default)]
    pub project_name: String,
    #[serde(default)]
    pub project_full_path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GitInfo {
    #[serde(default)]
    pub repo_url: String,
    #[serde(rename = "ref", default)]
    pub git_ref: String,
    #[serde(default)]
    pub sha: String,
    #[serde(default)]
    pub before_sha: String,
    #[serde(default)]
    pub ref_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub refspecs: Vec<String>,
    #[serde(default)]
    pub depth: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunnerInfo {
    /// The job timeout in seconds (≤ 0: the runner's default of 7200).
    #[serde(default)]
    pub timeout: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct JobVariable {
    pub key: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub masked: bool,
    #[serde(default)]
    pub file: bool,
    #[serde(default)]
    pub raw: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Step {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub script: Vec<String>,
    #[serde(default)]
    pub timeout: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub when: String,
    #[serde(default)]
    pub allow_failure: bool,
}

/// `image` and each of `services`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Image {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub alias: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub command: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub pull_policy: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub variables: Vec<JobVariable>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Artifact {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub untracked: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub paths: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub exclude: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub when: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub expire_in: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub artifact_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub artifact_format: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Cache {
    #[serde(default, deserialize_with = "null_as_default")]
    pub key: String,
    #[serde(default)]
    pub untracked: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub paths: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub policy: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub when: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub fallback_keys: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Dependency {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub token: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub artifacts_file: Option<ArtifactsFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ArtifactsFile {
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub size: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Features {
    #[serde(default)]
    pub trace_sections: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub failure_reasons: Vec<String>,
}

impl JobPayload {
    /// The dependencies whose artifacts the job downloads (those that uploaded an archive).
    pub fn artifact_dependencies(&self) -> impl Iterator<Item = &Dependency> {
        self.dependencies.iter().filter(|d| {
            d.artifacts_file
                .as_ref()
                .is_some_and(|f| !f.filename.is_empty())
        })
    }

    /// The value of a job variable; the last definition wins, as in the official runner.
    pub fn variable(&self, key: &str) -> Option<&str> {
        self.variables
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }

    /// `CI_BUILDS_DIR`: the runner's builds directory, `/builds` by default.
    pub fn builds_root(&self) -> &str {
        self.builds.as_ref().map_or("/builds", |b| b.root.as_str())
    }

    /// `CI_PROJECT_DIR`: the builds directory (and the job's unique directory in a shared
    /// one) + the path of `repo_url` without `.git`.
    pub fn project_dir(&self) -> String {
        let path = url_path(&self.git_info.repo_url)
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .trim_matches('/')
            .to_string();
        let path = if path.is_empty() {
            self.job_info.project_full_path.clone()
        } else {
            path
        };
        let root = self.builds_root().trim_end_matches('/');
        match self.builds.as_ref().and_then(|b| b.unique.as_deref()) {
            Some(unique) => format!("{root}/{unique}/{path}"),
            None => format!("{root}/{path}"),
        }
    }

    /// The job timeout in seconds, with the runner's default when GitLab sends none.
    pub fn timeout_secs(&self) -> u64 {
        if self.runner_info.timeout > 0 {
            self.runner_info.timeout as u64
        } else {
            7200
        }
    }
}

/// The path part of an URL (`http://u:p@host:port/a/b.git?x` → `/a/b.git`).
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    rest.find('/').map_or("", |i| &rest[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_minimal_payload_with_nulls_and_unknown_fields() {
        let json = r#"{"id": 42, "token": "glcbt-x", "image": null, "artifacts": null,
            "services": null, "features": {"trace_sections": true}, "unknown": {"a": 1},
            "git_info": {"repo_url": "http://gitlab-ci-token:t@172.17.0.1:7080/acme/demo.git",
                         "ref": "main", "sha": "3f786850e387550fdab836ed7e6dc881de23001b",
                         "refspecs": ["+refs/pipelines/7:refs/pipelines/7"], "depth": 20},
            "variables": [{"key": "A", "value": "1", "public": true, "masked": false},
                          {"key": "A", "value": "2", "public": true, "masked": false}]}"#;
        let p: JobPayload = serde_json::from_str(json).unwrap();
        assert_eq!(p.id, 42);
        assert!(p.image.is_none());
        assert!(p.features.trace_sections);
        assert_eq!(p.variable("A"), Some("2"));
        assert_eq!(p.project_dir(), "/builds/acme/demo");
        assert_eq!(p.timeout_secs(), 7200);
    }
}
