//! What the caller (the planner) tells the server about one job: everything the runner's job
//! payload needs, already decided. The server adds only what it alone knows: ids, tokens,
//! its own URLs and the artifacts and dotenv variables of finished jobs.

/// The server's id of a queued job (GitLab's `CI_JOB_ID`): `ApiState::enqueue` hands it
/// out, and the caller names a job's dependencies with it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One queued job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub stage: String,
    pub pipeline_id: u64,
    pub project: ProjectSpec,
    /// Runner tags the job needs; empty = untagged (needs a runner with `run_untagged`).
    pub tags: Vec<String>,
    /// `None` = the runner's default image.
    pub image: Option<ImageSpec>,
    pub services: Vec<ServiceSpec>,
    /// Predefined and YAML variables, in GitLab's order (later wins). The server drops the
    /// keys it owns (`CI_JOB_ID`, `CI_JOB_TOKEN`, `CI_SERVER_URL`, ...) and sends its own.
    pub variables: Vec<JobVariable>,
    /// Variables that must win over dependencies' dotenv variables (CI/CD settings,
    /// pipeline/trigger variables), sent after them.
    pub override_variables: Vec<JobVariable>,
    /// `before_script`+`script` as `script`, `after_script`, optional `release`.
    pub steps: Vec<StepSpec>,
    pub hooks: Vec<HookSpec>,
    pub artifacts: Vec<ArtifactSpec>,
    pub cache: Vec<CacheSpec>,
    /// Jobs whose artifacts this job downloads (their dotenv variables come too).
    pub dependencies: Vec<DependencySpec>,
    /// Job timeout in seconds (`runner_info.timeout`, every step's `timeout`).
    pub timeout_secs: u64,
    pub git: GitSpec,
    /// Project setting: default `GIT_STRATEGY` fetch (true) or clone (false).
    pub allow_git_fetch: bool,
    /// `host:port` of a registry whose credentials (`gitlab-ci-token` / job token) the job
    /// gets, and `CI_REGISTRY_USER`/`CI_REGISTRY_PASSWORD` with them.
    pub registry: Option<String>,
    /// The login for `registry` when it is not the stand-in's own (`cargo glci run
    /// --registry`): jobs get it instead of `gitlab-ci-token` and their job token.
    pub registry_login: Option<RegistryLogin>,
}

/// A user name and password for a registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectSpec {
    pub id: u64,
    /// `group/project`: decides the repository URL and so `CI_PROJECT_DIR`.
    pub path: String,
    pub namespace_id: u64,
    pub root_namespace_id: u64,
}

impl ProjectSpec {
    /// Last path segment, GitLab's `project_name`.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    pub entrypoint: Option<Vec<String>>,
    pub ports: Vec<PortSpec>,
    /// `executor_opts.docker.platform` / `.user`.
    pub docker_platform: Option<String>,
    pub docker_user: Option<String>,
    pub pull_policy: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSpec {
    pub number: u16,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    pub image: ImageSpec,
    /// One or several aliases separated by `,` or spaces, as GitLab sends them.
    pub alias: Option<String>,
    pub command: Option<Vec<String>>,
    pub variables: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobVariable {
    pub key: String,
    pub value: String,
    pub public: bool,
    pub masked: bool,
    pub file: bool,
    pub raw: bool,
}

impl JobVariable {
    /// A public, unmasked variable, like a YAML `variables:` entry.
    pub fn public(key: impl Into<String>, value: impl Into<String>) -> JobVariable {
        JobVariable {
            key: key.into(),
            value: value.into(),
            public: true,
            ..JobVariable::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StepWhen {
    #[default]
    OnSuccess,
    OnFailure,
    Always,
}

impl StepWhen {
    pub fn as_str(self) -> &'static str {
        match self {
            StepWhen::OnSuccess => "on_success",
            StepWhen::OnFailure => "on_failure",
            StepWhen::Always => "always",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepSpec {
    /// `script`, `after_script` or `release`.
    pub name: String,
    pub script: Vec<String>,
    pub when: StepWhen,
    pub allow_failure: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSpec {
    /// `pre_get_sources_script` or `post_get_sources_script`.
    pub name: String,
    pub script: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArtifactSpec {
    pub name: Option<String>,
    pub untracked: bool,
    pub paths: Vec<String>,
    pub exclude: Vec<String>,
    /// `on_success`, `on_failure` or `always`.
    pub when: String,
    pub expire_in: Option<String>,
    /// `archive`, `junit`, `dotenv`, ...
    pub artifact_type: String,
    /// `zip`, `gzip`, `raw`, ...
    pub artifact_format: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSpec {
    /// Already suffixed the way GitLab does (`-protected`/`-non_protected`).
    pub key: String,
    pub untracked: bool,
    pub paths: Vec<String>,
    /// `pull-push`, `pull` or `push`.
    pub policy: String,
    pub when: String,
    pub fallback_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RefType {
    #[default]
    Branch,
    Tag,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitSpec {
    /// Branch or tag name.
    pub ref_name: String,
    pub ref_type: RefType,
    /// Full commit SHA; the runner slices its first 8 characters.
    pub sha: String,
    pub before_sha: String,
    /// Computed like GitLab's presenter (`+refs/pipelines/<id>:refs/pipelines/<id>`, ...).
    pub refspecs: Vec<String>,
    pub depth: u32,
    pub protected: Option<bool>,
    /// `sha1` or `sha256`; empty means `sha1`.
    pub object_format: String,
}

/// A job whose artifacts (and dotenv variables) this job receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencySpec {
    pub job: JobId,
    pub name: String,
}
