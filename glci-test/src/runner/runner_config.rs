//! gitlab-runner's own `config.toml` as the configuration of glci's built-in runners
//! (`--runner-config PATH`, `GLCI_RUNNER_CONFIG`, or `.glci/runner.toml` in the project).
//!
//! Each `[[runners]]` entry becomes one built-in runner with its own executor settings, as each
//! entry is one runner in gitlab-runner. The keys glci honours are the fields of the structs
//! below (the names and meanings of gitlab-runner's `common/config.go`); every other key is
//! reported as a warning naming it, never dropped silently.
//!
//! Tags are not part of gitlab-runner's `config.toml`: GitLab keeps them with the runner's
//! registration (`--tag-list`, `--run-untagged`). glci reads `tags` and `run_untagged` in an
//! entry to stand for that registration; an entry without `tags` stands for a runner
//! registered for whatever the pipeline needs (it takes every job, as glci's default runner).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::payload::{BuildsLocation, JobPayload, JobVariable};
use super::socket::{self, SharedBuilds};

/// Where glci looks for a runner configuration in the project when none is named.
pub const PROJECT_RUNNER_CONFIG: &str = ".glci/runner.toml";

/// The environment variable naming a runner configuration (for `glci_test::main!()`).
pub const RUNNER_CONFIG_ENV: &str = "GLCI_RUNNER_CONFIG";

/// A runner configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunnerConfigError {
    #[error("cannot read runner configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: `{key}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A parsed runner configuration: the runners it describes and what glci did not take.
#[derive(Debug, Clone, Default)]
pub struct RunnerConfig {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// `concurrent`: the most jobs each runner entry runs at once (see [`RunnerEntry::workers`]).
    pub concurrent: Option<usize>,
    pub runners: Vec<RunnerEntry>,
    /// One line per key glci does not honour, naming it.
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    concurrent: Option<usize>,
    runners: Vec<RunnerEntry>,
}

/// One `[[runners]]` entry: one built-in runner.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunnerEntry {
    pub name: String,
    /// Only `docker` is supported (anything else is an error).
    pub executor: Option<String>,
    /// `limit`: the most jobs this runner runs at once (0: no limit of its own).
    pub limit: usize,
    /// The registration's tag list (glci extension, see the module doc). `None`: the runner
    /// takes every job of the pipeline.
    #[serde(deserialize_with = "string_or_list_opt")]
    pub tags: Option<Vec<String>>,
    /// The registration's `run_untagged`; default as `gitlab-runner register`: true exactly
    /// when the runner has no tags.
    pub run_untagged: Option<bool>,
    /// `builds_dir`: where jobs' project directories live in the build container.
    pub builds_dir: Option<String>,
    /// `cache_dir`: read, but glci's caches always go through its S3 store (warned).
    pub cache_dir: Option<String>,
    /// `environment`: `KEY=VALUE` variables added to every job (job variables win).
    pub environment: Vec<String>,
    /// `pre_build_script`: runs in the job's shell before `before_script`.
    pub pre_build_script: Option<String>,
    /// `post_build_script`: runs in the job's shell after `script` (if it succeeded).
    pub post_build_script: Option<String>,
    pub docker: DockerSettings,
}

/// `[runners.docker]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DockerSettings {
    /// Image for jobs that name none.
    pub image: Option<String>,
    pub privileged: bool,
    /// Privileged services (default: `privileged`).
    pub services_privileged: Option<bool>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    /// `HOST:CONTAINER[:MODE]` binds, or a bare `CONTAINER` path (a volume of the job).
    pub volumes: Vec<String>,
    /// `host:address` entries for `/etc/hosts`.
    pub extra_hosts: Vec<String>,
    /// The network of jobs without services (jobs with services get a network of their own).
    pub network_mode: Option<String>,
    /// Pull policies allowed for jobs (`never`, `if-not-present`, `always`); the first is the
    /// default of jobs that name none.
    #[serde(deserialize_with = "string_or_list")]
    pub pull_policy: Vec<String>,
    /// `/dev/shm` size in bytes (0: the engine's default).
    pub shm_size: i64,
    /// `HOST[:CONTAINER[:PERMISSIONS]]` devices.
    pub devices: Vec<String>,
    /// Image globs jobs may use (empty: any); gitlab-runner's `allowed_images`.
    pub allowed_images: Vec<String>,
}

/// A string or a list of strings (TOML `"a"` or `["a", "b"]`), as gitlab-runner's
/// `StringOrArray`.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl From<StringOrList> for Vec<String> {
    fn from(v: StringOrList) -> Vec<String> {
        match v {
            // A single string may be comma-separated, as `--tag-list`.
            StringOrList::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            StringOrList::Many(v) => v,
        }
    }
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(StringOrList::deserialize(d)?.into())
}

fn string_or_list_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Some(StringOrList::deserialize(d)?.into()))
}

impl RunnerConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<RunnerConfig, RunnerConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| RunnerConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        RunnerConfig::parse(path, &text)
    }

    /// The configuration for a run: `explicit` (a flag), else `GLCI_RUNNER_CONFIG`, else the
    /// project's `.glci/runner.toml` if it exists; `None` when there is none.
    pub fn find(
        explicit: Option<&Path>,
        project_dir: &Path,
    ) -> Result<Option<RunnerConfig>, RunnerConfigError> {
        let from_env = std::env::var_os(RUNNER_CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let path = match explicit.map(Path::to_path_buf).or(from_env) {
            Some(path) => path,
            None => {
                let in_project = project_dir.join(PROJECT_RUNNER_CONFIG);
                if !in_project.exists() {
                    return Ok(None);
                }
                in_project
            }
        };
        RunnerConfig::load(&path).map(Some)
    }

    /// Parses `text` (read from `path`).
    pub fn parse(path: &Path, text: &str) -> Result<RunnerConfig, RunnerConfigError> {
        let parse_error = |e: toml::de::Error| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            RunnerConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        };
        let deserializer = toml::de::Deserializer::parse(text).map_err(parse_error)?;
        let mut ignored: Vec<String> = Vec::new();
        let file: FileConfig = serde_ignored::deserialize(deserializer, |key| {
            ignored.push(key.to_string());
        })
        .map_err(parse_error)?;
        let mut config = RunnerConfig {
            path: path.to_path_buf(),
            concurrent: file.concurrent.filter(|n| *n > 0),
            runners: file.runners,
            warnings: Vec::new(),
        };
        for key in ignored {
            config.warnings.push(format!(
                "{}: `{}` is not supported by glci and has no effect{}",
                path.display(),
                key,
                why_ignored(&key)
            ));
        }
        config.check()?;
        Ok(config)
    }

    fn check(&mut self) -> Result<(), RunnerConfigError> {
        let invalid = |key: String, message: String| RunnerConfigError::Invalid {
            path: self.path.clone(),
            key,
            message,
        };
        if self.runners.is_empty() {
            return Err(invalid(
                "runners".into(),
                "no [[runners]] entry: glci would have no runner to run jobs".into(),
            ));
        }
        for (i, runner) in self.runners.iter().enumerate() {
            let key = |k: &str| format!("runners[{i}].{k}");
            if let Some(executor) = &runner.executor {
                if executor != "docker" {
                    return Err(invalid(
                        key("executor"),
                        format!("glci runs jobs with the docker executor only, not `{executor}`"),
                    ));
                }
            }
            for (j, entry) in runner.environment.iter().enumerate() {
                if parse_environment(entry).is_none() {
                    return Err(invalid(
                        format!("runners[{i}].environment[{j}]"),
                        format!("`{entry}` is not KEY=VALUE"),
                    ));
                }
            }
            if let Some(dir) = &runner.builds_dir {
                if !dir.starts_with('/') || dir.trim_end_matches('/').is_empty() {
                    return Err(invalid(
                        key("builds_dir"),
                        format!("`{dir}` is not an absolute directory below `/`"),
                    ));
                }
            }
            for policy in &runner.docker.pull_policy {
                if !matches!(policy.as_str(), "never" | "if-not-present" | "always") {
                    return Err(invalid(
                        key("docker.pull_policy"),
                        format!("unknown pull policy `{policy}` (never, if-not-present, always)"),
                    ));
                }
            }
            for (j, volume) in runner.docker.volumes.iter().enumerate() {
                if !volume.starts_with('/') {
                    return Err(invalid(
                        format!("runners[{i}].docker.volumes[{j}]"),
                        format!(
                            "`{volume}`: glci takes HOST:CONTAINER[:MODE] binds and CONTAINER paths, both absolute"
                        ),
                    ));
                }
            }
            if runner.cache_dir.is_some() {
                self.warnings.push(format!(
                    "{}: `runners[{i}].cache_dir` has no effect: glci keeps caches in its own S3 store (GLCI_HOME/cache)",
                    self.path.display()
                ));
            }
        }
        Ok(())
    }

    /// Whether some runner of this configuration would take a job with `tags` (GitLab's
    /// matching: see [`RunnerEntry::takes`]).
    pub fn routes(&self, tags: &[String]) -> bool {
        self.runners.iter().any(|r| r.takes(tags))
    }

    /// Every runner's tags, for a message.
    pub fn describe_runners(&self) -> String {
        self.runners
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let name = if r.name.is_empty() {
                    format!("runners[{i}]")
                } else {
                    format!("`{}`", r.name)
                };
                match &r.tags {
                    None => format!("{name} (any job)"),
                    Some(tags) => format!(
                        "{name} (tags [{}], run_untagged {})",
                        tags.join(", "),
                        r.runs_untagged()
                    ),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl RunnerEntry {
    /// `run_untagged` as GitLab stores it: the given value, else true exactly when the
    /// runner has no tags (`gitlab-runner register`'s default).
    pub fn runs_untagged(&self) -> bool {
        match (&self.tags, self.run_untagged) {
            (_, Some(v)) => v,
            (None, None) => true,
            (Some(tags), None) => tags.is_empty(),
        }
    }

    /// GitLab's matching (`Ci::Runner#matches_build?`): a tagged job goes to a runner that
    /// has every one of its tags; an untagged job to a runner with `run_untagged`. An entry
    /// without `tags` takes every job.
    pub fn takes(&self, job_tags: &[String]) -> bool {
        let Some(tags) = &self.tags else {
            return true;
        };
        if job_tags.is_empty() {
            self.runs_untagged()
        } else {
            job_tags.iter().all(|t| tags.contains(t))
        }
    }

    /// What this runner registers with: its tags (for an entry without `tags`, every tag of
    /// the pipeline) and `run_untagged`.
    pub fn registration(&self, pipeline_tags: &BTreeSet<String>) -> (Vec<String>, bool) {
        match &self.tags {
            None => (pipeline_tags.iter().cloned().collect(), true),
            Some(tags) => (tags.clone(), self.runs_untagged()),
        }
    }

    /// Jobs this runner runs at once: `limit`, capped by `concurrent` and by `default` (the
    /// run's `--jobs`).
    pub fn workers(&self, concurrent: Option<usize>, default: usize) -> usize {
        let mut n = default.max(1);
        if self.limit > 0 {
            n = n.min(self.limit);
        }
        if let Some(c) = concurrent {
            n = n.min(c);
        }
        n
    }

    /// `environment` as variables, in order.
    pub fn environment_variables(&self) -> Vec<(String, String)> {
        self.environment
            .iter()
            .filter_map(|e| parse_environment(e))
            .collect()
    }
}

/// A job's image outside the runner's `allowed_images`.
#[derive(Debug, thiserror::Error)]
#[error("the \"{image}\" image is not present on list of allowed images:\n{}\nPlease check runner's configuration (allowed_images)", allowed.iter().map(|a| format!("- {a}")).collect::<Vec<_>>().join("\n"))]
pub struct ImageNotAllowed {
    pub image: String,
    pub allowed: Vec<String>,
}

impl RunnerEntry {
    /// gitlab-runner's `allowed_images` check: with a list, the image must match one of its
    /// globs (`*` within a path segment, `**` across them).
    pub fn check_image(&self, image: &str) -> Result<(), ImageNotAllowed> {
        let allowed = &self.docker.allowed_images;
        if allowed.is_empty() {
            return Ok(());
        }
        let matches = allowed.iter().any(|pattern| {
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .is_ok_and(|glob| glob.compile_matcher().is_match(image))
        });
        if matches {
            Ok(())
        } else {
            Err(ImageNotAllowed {
                image: image.to_string(),
                allowed: allowed.clone(),
            })
        }
    }

    /// A step's commands with `pre_build_script` before and `post_build_script` after, in
    /// the same shell, as gitlab-runner's `writeUserScript` writes them.
    pub fn step_commands(&self, script: &[String]) -> Vec<String> {
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        non_empty(&self.pre_build_script)
            .into_iter()
            .chain(script.iter().cloned())
            .chain(non_empty(&self.post_build_script))
            .collect()
    }

    /// The builds directory jobs share with the host: one a volume mounts (the blog posts'
    /// `/builds:/builds`), else, when jobs get the engine's socket and their files are staged
    /// on this host, the run's staging directory at its own path.
    pub fn shared_builds(&self, placement: &BuildsPlacement) -> Option<SharedBuilds> {
        let builds_dir = self.builds_dir.as_deref().unwrap_or("/builds");
        if let Some(shared) = SharedBuilds::from_volumes(builds_dir, &self.docker.volumes) {
            return Some(shared);
        }
        if !socket::mounts_socket(&self.docker.volumes, placement.socket_path) {
            return None;
        }
        let staging = placement.host_staging?;
        Some(SharedBuilds::same_path(&staging.join("builds")))
    }
}

/// What of the executor's set-up decides where a configured runner's builds directory lives.
/// The executor makes it from its options (`ExecutorOptions::builds_placement`) and passes it
/// down: this file sits below the executor and does not import it.
#[derive(Debug, Clone, Copy)]
pub struct BuildsPlacement<'a> {
    /// Where a job given the engine's socket finds it (`[docker] socket_path`).
    pub socket_path: &'a str,
    /// Where this host stages the builds directories the engine mounts; `None` when jobs' files
    /// go in as tars instead (not staged by mount, or failed jobs' containers kept) or no
    /// staging root is set.
    pub host_staging: Option<&'a Path>,
    /// The runner's short token and the worker's concurrent id: they name the job's own
    /// directory in a builds directory shared with the host.
    pub short_token: &'a str,
    pub concurrent_id: usize,
}

/// `payload` as this runner runs it: its builds directory (`CI_BUILDS_DIR`, `CI_PROJECT_DIR`)
/// and `environment` before the job's own variables, which win (gitlab-runner puts the
/// runner's variables before the job's).
pub fn configure_job(
    payload: &JobPayload,
    entry: &RunnerEntry,
    placement: &BuildsPlacement,
) -> JobPayload {
    let mut job = payload.clone();
    let shared = entry.shared_builds(placement);
    let root = match (&shared, &entry.builds_dir) {
        (Some(shared), _) => shared.in_job.clone(),
        (None, Some(dir)) => dir.trim_end_matches('/').to_string(),
        (None, None) => "/builds".to_string(),
    };
    job.builds = Some(BuildsLocation {
        root,
        unique: shared
            .map(|_| SharedBuilds::unique_dir(placement.short_token, placement.concurrent_id)),
    });
    let environment = entry
        .environment_variables()
        .into_iter()
        .map(|(key, value)| JobVariable {
            key,
            value,
            public: true,
            ..JobVariable::default()
        });
    job.variables = environment.chain(job.variables).collect();
    job
}

/// `KEY=VALUE` (gitlab-runner's `parseVariable`: the first `=` splits, the key is not empty).
fn parse_environment(entry: &str) -> Option<(String, String)> {
    let (key, value) = entry.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| (key.to_string(), value.to_string()))
}

/// Why a well-known gitlab-runner key does nothing in glci.
fn why_ignored(key: &str) -> &'static str {
    let last = key.rsplit('.').next().unwrap_or(key);
    if key.contains(".cache") {
        " (glci's jobs use glci's own S3 cache)"
    } else if matches!(
        last,
        "url" | "token" | "id" | "token_obtained_at" | "token_expires_at" | "tls-ca-file"
    ) {
        " (glci's runners talk to glci's own server)"
    } else {
        ""
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Under `[docker] privileged = "never"`, a runner configuration asking for privileged
/// containers (`privileged` or `services_privileged`) is refused at start rather than run
/// without them.
pub fn refuse_privileged_runners(
    config: &RunnerConfig,
    settings: &crate::settings::Settings,
) -> Result<(), RunnerConfigError> {
    if !settings.privileged_never() {
        return Ok(());
    }
    let origin = settings
        .get(crate::settings::schema::DOCKER_PRIVILEGED)
        .map(|s| s.origin.to_string())
        .unwrap_or_default();
    for (i, runner) in config.runners.iter().enumerate() {
        let docker = &runner.docker;
        for (key, on) in [
            ("privileged", docker.privileged),
            (
                "services_privileged",
                docker.services_privileged == Some(true),
            ),
        ] {
            if on {
                return Err(RunnerConfigError::Invalid {
                    path: config.path.clone(),
                    key: format!("runners[{i}].docker.{key}"),
                    message: format!(
                        "privileged containers are off: glci's settings say `privileged = \"never\"` under [docker] ({origin})"
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunnerConfig, RunnerConfigError> {
        RunnerConfig::parse(Path::new("runner.toml"), text)
    }

    #[test]
    fn the_blog_posts_socket_configuration_reads() {
        let config = parse(
            r#"
concurrent = 4
check_interval = 0

[[runners]]
  name = "dockerd"
  url = "https://gitlab.example.com/"
  token = "glrt-xxxxxxxx"
  executor = "docker"
  builds_dir = "/builds"
  environment = ["DOCKER_DRIVER=overlay2", "A=b=c"]
  [runners.docker]
    image = "docker:27"
    privileged = false
    volumes = ["/var/run/docker.sock:/var/run/docker.sock", "/builds:/builds", "/cache"]
    pull_policy = "if-not-present"
    shm_size = 0
    memory = "1g"
  [runners.cache]
    Type = "s3"
"#,
        )
        .unwrap();
        assert_eq!(config.concurrent, Some(4));
        let runner = &config.runners[0];
        assert_eq!(runner.builds_dir.as_deref(), Some("/builds"));
        assert_eq!(runner.docker.volumes.len(), 3);
        assert_eq!(runner.docker.pull_policy, vec!["if-not-present"]);
        assert_eq!(
            runner.environment_variables(),
            vec![
                ("DOCKER_DRIVER".to_string(), "overlay2".to_string()),
                ("A".to_string(), "b=c".to_string())
            ]
        );
        let warned = config.warnings.join("\n");
        for key in [
            "check_interval",
            "runners.0.url",
            "runners.0.token",
            "runners.0.docker.memory",
            "runners.0.cache",
        ] {
            assert!(warned.contains(&format!("`{key}`")), "{key} in {warned}");
        }
        assert!(!warned.contains("`runners.0.docker.volumes`"), "{warned}");
        assert!(!warned.contains("`concurrent`"), "{warned}");
    }

    #[test]
    fn a_bad_value_names_its_line() {
        let err = parse("[[runners]]\n  name = \"a\"\n  limit = \"two\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("runner.toml:3:"), "{text}");
        let err = parse("[[runners]]\nname = \"a\n").unwrap_err();
        assert!(err.to_string().starts_with("runner.toml:2:"), "{err}");
    }

    #[test]
    fn invalid_settings_name_the_key() {
        let err = parse("[[runners]]\n  environment = [\"NOVALUE\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`runners[0].environment[0]`"), "{err}");
        let err = parse("[[runners]]\n  executor = \"shell\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`runners[0].executor`"), "{err}");
        let err = parse("concurrent = 1\n").unwrap_err().to_string();
        assert!(err.contains("`runners`"), "{err}");
    }

    #[test]
    fn jobs_are_routed_as_gitlab_routes_them() {
        let config = parse(
            "[[runners]]\n name = \"tagged\"\n tags = [\"dockerd\", \"linux\"]\n\
             [[runners]]\n name = \"plain\"\n tags = []\n",
        )
        .unwrap();
        let tagged = &config.runners[0];
        let plain = &config.runners[1];
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(tagged.takes(&tags(&["dockerd"])));
        assert!(tagged.takes(&tags(&["dockerd", "linux"])));
        assert!(!tagged.takes(&tags(&["dockerd", "arm"])));
        // A tagged runner takes untagged jobs only with run_untagged.
        assert!(!tagged.takes(&[]));
        assert!(plain.takes(&[]));
        assert!(!plain.takes(&tags(&["dockerd"])));
        assert!(!config.routes(&tags(&["gpu"])));
        let config = parse("[[runners]]\n tags = \"a, b\"\n run_untagged = true\n").unwrap();
        assert_eq!(config.runners[0].tags, Some(tags(&["a", "b"])));
        assert!(config.runners[0].takes(&[]));
        // Without `tags` the entry stands for a runner registered for the pipeline.
        let config = parse("[[runners]]\n name = \"any\"\n").unwrap();
        assert!(config.routes(&tags(&["whatever"])));
    }

    #[test]
    fn allowed_images_and_build_scripts() {
        let config = parse(
            "[[runners]]\n pre_build_script = \"echo pre\"\n post_build_script = \"echo post\"\n\
             [runners.docker]\n allowed_images = [\"glci-fixture/*\", \"registry.example.com/**\"]\n",
        )
        .unwrap();
        let entry = &config.runners[0];
        assert!(entry.check_image("glci-fixture/busybox:latest").is_ok());
        assert!(entry.check_image("registry.example.com/a/b/c:1").is_ok());
        let refused = entry.check_image("docker.io/library/alpine").unwrap_err();
        assert!(
            refused.to_string().contains("- glci-fixture/*"),
            "{refused}"
        );
        assert_eq!(
            entry.step_commands(&["make".to_string()]),
            vec!["echo pre", "make", "echo post"]
        );
    }

    #[test]
    fn workers_follow_limit_and_concurrent() {
        let entry = RunnerEntry {
            limit: 2,
            ..Default::default()
        };
        assert_eq!(entry.workers(None, 8), 2);
        assert_eq!(entry.workers(Some(1), 8), 1);
        assert_eq!(RunnerEntry::default().workers(None, 3), 3);
    }
}
