//! The command-line surface: subcommands and the event flags they share.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use glci_test::pipeline::env_file::{self, PROJECT_ENV_FILE};
use glci_test::pipeline::{ExternalRegistry, PipelineOptions, RegistryChoice, SettingsVariable};
use glci_test::plan::{Event, PipelineSource};
use glci_test::settings::schema;

/// Run your GitLab CI pipeline on this machine, in Docker, each job as a Rust test.
#[derive(Debug, Parser)]
#[command(name = "cargo-glci", bin_name = "cargo glci", version, about, long_about = None)]
#[command(disable_version_flag = true, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print the version (with -v: also the Docker engine's version and API version).
    #[arg(short = 'V', long)]
    pub version: bool,
    /// With --version: more detail.
    #[arg(short = 'v', long, requires = "version")]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the pipeline GitLab would create for an event: stages, jobs, when, needs.
    Plan {
        #[command(flatten)]
        event: EventArgs,
        /// Print the plan as JSON (a stable shape; see the README).
        #[arg(long)]
        json: bool,
    },
    /// Run the pipeline (or the named jobs with what they need) in Docker, for real.
    Run(RunArgs),
    /// Run the pipeline as Rust tests: one test per job (`-- --list`, filters, `--ignored`...).
    Test(TestArgs),
    /// Check the CI configuration; one `FILE:LINE:COL: MESSAGE` line per error.
    Lint {
        #[command(flatten)]
        event: EventArgs,
    },
    /// Print the fully merged configuration (includes, extends, default, !reference) as YAML;
    /// with --show, glci's own settings instead.
    Config {
        #[command(flatten)]
        event: EventArgs,
        /// Print every glci setting (GLCI_HOME/config.toml, .glci.toml, environment,
        /// defaults) with where its value came from.
        #[arg(long)]
        show: bool,
    },
    /// glci's runner on its own, against any GitLab-compatible server (e.g. `cargo glci run
    /// --runner external` in another terminal): register, take jobs, run them in Docker.
    Runner(RunnerArgs),
    /// Every variable a job would get, its value (masked: `[MASKED]`) and where it comes
    /// from, in GitLab's order of precedence. No Docker.
    Variables(VariablesArgs),
    /// The artifacts of this project's earlier runs: `list`, `inspect JOB`, `extract JOB`.
    Artifacts(crate::artifacts_cmd::ArtifactsArgs),
    /// This project's environments and their last deployment (as glci's runs left them).
    Environments,
    /// Show or set a resource group's process mode (`--process-mode`).
    ResourceGroup(crate::deploy_cmd::ResourceGroupArgs),
    /// Check the Docker engine and what runs will meet there: the bridge address jobs use,
    /// privileged containers, free disk in GLCI_HOME, the fixture images.
    Doctor,
    /// The registry's store in GLCI_HOME/registry: list, stats, pull, clean.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// What glci holds in Docker and GLCI_HOME, and freeing it: df, prune, cache clean,
    /// logs info|clean.
    System(crate::system_cmd::SystemArgs),
    /// The kept pipelines, newest first: status, event, ref, duration.
    History(crate::system_cmd::HistoryArgs),
    /// A job's log from the newest pipeline of this repository that ran it (or --pipeline N).
    Logs(crate::system_cmd::LogsArgs),
    /// The daemon that holds one pipeline session per test run: status, start, stop, logs.
    Daemon(crate::daemon_cmd::DaemonArgs),
    /// Remove Docker objects left behind by glci runs whose process is gone.
    Clean {
        /// Also remove objects of glci runs that are still alive.
        #[arg(long)]
        all: bool,
    },
}

/// `cargo glci registry`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Repositories and their tags (a pull-through cache's repositories say where from).
    List {
        /// Only this project's repositories (`group/project` and below).
        #[arg(long, value_name = "GROUP/PROJECT")]
        project: Option<String>,
    },
    /// Repositories, tags, blobs, bytes on disk and the deduplication ratio.
    Stats,
    /// Pull an image from the registry (through its cache) into the local engine.
    Pull {
        /// `NAME[:TAG]` in the registry, e.g. `group/project/app:1` or `library/busybox`.
        #[arg(value_name = "REF")]
        reference: String,
        /// Tag the pulled image `PREFIX/NAME:TAG` in the engine (default: `NAME:TAG`).
        #[arg(value_name = "PREFIX")]
        prefix: Option<String>,
    },
    /// Garbage-collect: drop untagged manifests, then blobs nothing uses. Safe while runs go
    /// on: nothing younger than the grace period is removed.
    Clean {
        /// Only this project's repositories (the blob sweep still looks at all).
        #[arg(long, value_name = "GROUP/PROJECT")]
        project: Option<String>,
        /// Keep what is younger than this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        grace: u64,
    },
}

/// The event a pipeline is planned for (shared by `plan`, `run` and `test`).
#[derive(Debug, Args, Clone, Default)]
pub struct EventArgs {
    /// The CI configuration file, relative to the repository root.
    #[arg(long, value_name = "PATH", default_value = ".gitlab-ci.yml")]
    pub file: PathBuf,
    /// Why the pipeline runs (CI_PIPELINE_SOURCE).
    #[arg(long, value_name = "SOURCE", default_value = "push", value_parser = parse_source)]
    pub source: PipelineSource,
    /// Branch pushed to, or the merge request's source branch (default: the current branch).
    #[arg(long, value_name = "NAME", conflicts_with = "tag")]
    pub branch: Option<String>,
    /// Tag pushed (a tag pipeline).
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// Target branch of the merge request (with --source merge_request_event).
    #[arg(long, value_name = "NAME")]
    pub target_branch: Option<String>,
    /// The project's default branch (default: from origin/HEAD, else main or master).
    #[arg(long, value_name = "NAME")]
    pub default_branch: Option<String>,
    /// A changed path for rules:changes (repeatable; default: computed from git).
    #[arg(long = "changed", value_name = "PATH")]
    pub changed: Vec<String>,
    /// A pipeline variable, highest precedence (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// A pipeline input for `spec:inputs` (repeatable).
    #[arg(long = "input", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub inputs: Vec<(String, String)>,
    /// Where `include:project`/`component` finds a project: `group/project=PATH` (repeatable).
    #[arg(long = "project", value_name = "GROUP/PROJECT=PATH", value_parser = parse_project)]
    pub project_map: Vec<(String, PathBuf)>,
    /// Where `include:template` finds GitLab's CI templates (a copy of GitLab's
    /// `lib/gitlab/ci/templates`) instead of fetching them.
    #[arg(long = "template-dir", value_name = "DIR")]
    pub template_dir: Option<PathBuf>,
    /// The GitLab release whose templates `include:template` fetches (a gitlab-org/gitlab
    /// tag such as `v17.11.0-ee`; default: GLCI_TEMPLATE_REF, else the release glci pins).
    #[arg(long = "template-ref", value_name = "REF")]
    pub template_ref: Option<String>,
    /// URL prefix `include:template` fetches from, `{ref}` standing for the release
    /// (default: GLCI_TEMPLATE_URL, else GitLab's raw files on gitlab.com).
    #[arg(long = "template-url", value_name = "URL")]
    pub template_url: Option<String>,
    /// Base URL standing for `https://<host>` of `include:component` addresses not mapped
    /// with `--project` (default: GLCI_COMPONENT_URL, else the address's own host).
    #[arg(long = "component-url", value_name = "URL")]
    pub component_url: Option<String>,
    /// Let `include:remote` fetch from loopback, private and link-local addresses (refused
    /// by default, as on GitLab).
    #[arg(long)]
    pub allow_private_includes: bool,
    /// Read fetched includes (`remote`, `template`, `component`) only from glci's cache
    /// (`GLCI_HOME/includes`, filled by earlier runs), never from the network.
    #[arg(long)]
    pub offline: bool,
    /// A masked variable, as in the project's CI/CD settings: `[MASKED]` in every log
    /// (repeatable).
    #[arg(long = "masked-var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub masked_vars: Vec<(String, String)>,
    /// Masked variables from a file of KEY=VALUE lines (blank lines and `#` comments
    /// skipped), so the values stay out of `ps` (repeatable). `GLCI_MASKED_VAR_<KEY>`
    /// environment variables do the same.
    #[arg(long = "masked-var-file", value_name = "PATH", value_parser = read_var_file)]
    pub masked_var_files: Vec<Vec<(String, String)>>,
    /// A file-type variable: the job sees the path of a file holding VALUE (repeatable).
    #[arg(long = "file-var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub file_vars: Vec<(String, String)>,
    /// Variables as in the project's CI/CD settings from a file of `KEY=VALUE` lines; a line
    /// ending in ` # masked` is a masked variable (repeatable; read after `.glci.env`).
    #[arg(long = "env-file", value_name = "PATH")]
    pub env_files: Vec<PathBuf>,
    /// Don't read the project's `.glci.env`.
    #[arg(long)]
    pub no_project_env_file: bool,
}

/// `cargo glci runner`.
#[derive(Debug, Args, Clone)]
pub struct RunnerArgs {
    /// The server's URL (what `cargo glci run --runner external` prints as `url:`).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// A registration token (legacy registration).
    #[arg(long, value_name = "TOKEN")]
    pub registration_token: String,
    /// Jobs running at once.
    #[arg(long = "jobs", short = 'j', value_name = "N", default_value_t = 1)]
    pub concurrency: usize,
    /// Image for jobs without `image:` (default: glci-fixture/debian:bookworm, or
    /// GLCI_DEFAULT_IMAGE).
    #[arg(long, value_name = "IMAGE")]
    pub default_image: Option<String>,
    /// Exit after this many jobs (default: run until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<usize>,
}

/// `cargo glci run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub event: EventArgs,
    /// Jobs to run, with what they need (default: the whole pipeline). A named manual job is
    /// played.
    #[arg(value_name = "JOB")]
    pub names: Vec<String>,
    /// Jobs running at once (default: the number of CPUs).
    #[arg(long = "jobs", short = 'j', value_name = "N")]
    pub concurrency: Option<usize>,
    /// Keep the containers of failed jobs and print how to enter them.
    #[arg(long)]
    pub keep: bool,
    /// One JSON object per line on stdout for each event (pipeline created, job started,
    /// job finished, pipeline finished); the human output goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// With --json, also a `log` event for each chunk of job output.
    #[arg(long, requires = "json")]
    pub json_logs: bool,
    /// `builtin`: glci's own runner; `external`: print the server's URL and registration
    /// token and wait for a runner you start (e.g. the official gitlab-runner).
    #[arg(long, value_name = "RUNNER", default_value = "builtin", value_parser = ["builtin", "external"])]
    pub runner: String,
    /// Start delayed jobs at once instead of waiting their `start_in`.
    #[arg(long)]
    pub no_delay: bool,
    /// Image for jobs without `image:` (default: glci-fixture/debian:bookworm, or
    /// GLCI_DEFAULT_IMAGE).
    #[arg(long, value_name = "IMAGE")]
    pub default_image: Option<String>,
    /// Seconds services get to accept connections on their exposed ports.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub services_timeout: u64,
    /// Don't stream job logs; print only the summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// gitlab-runner's `config.toml` for glci's runners (default: GLCI_RUNNER_CONFIG, else
    /// `.glci/runner.toml` in the project if it exists).
    #[arg(long, value_name = "PATH")]
    pub runner_config: Option<PathBuf>,
    /// Give jobs the Docker engine's socket (socket passthrough; see the README's warning).
    #[arg(long)]
    pub docker_socket: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Which container registry jobs get (`run` and `test`).
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Serve no container registry: jobs get no CI_REGISTRY* variables, as on a GitLab
    /// instance without one (also GLCI_NO_REGISTRY=1).
    #[arg(long, conflicts_with = "registry")]
    pub no_registry: bool,
    /// Use a real registry (`[https://]host[:port]`) instead of glci's: CI_REGISTRY and
    /// CI_REGISTRY_IMAGE name it (also GLCI_REGISTRY).
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// The user jobs log in to --registry as (CI_REGISTRY_USER; also GLCI_REGISTRY_USER).
    #[arg(long, value_name = "USER", requires = "registry")]
    pub registry_user: Option<String>,
    /// Its password (CI_REGISTRY_PASSWORD, masked); GLCI_REGISTRY_PASSWORD keeps it out of
    /// `ps`.
    #[arg(long, value_name = "PASSWORD", requires = "registry")]
    pub registry_password: Option<String>,
    /// Mirror every push to glci's registry to this registry too (`http(s)://host[:port]`;
    /// also GLCI_PUSH_THROUGH); a push fails when the mirror cannot take it.
    #[arg(long, value_name = "URL", conflicts_with = "no_registry")]
    pub push_through: Option<String>,
    /// The user for --push-through (also GLCI_PUSH_THROUGH_USER).
    #[arg(long, value_name = "USER", requires = "push_through")]
    pub push_through_user: Option<String>,
    /// Its password (also GLCI_PUSH_THROUGH_PASSWORD, which keeps it out of `ps`).
    #[arg(long, value_name = "PASSWORD", requires = "push_through")]
    pub push_through_password: Option<String>,
}

impl RegistryArgs {
    /// The push-through mirror these flags name, `None` without `--push-through` (the
    /// environment's choice then); `Err` for a URL that is not `http(s)://`.
    pub fn push_through(&self) -> anyhow::Result<Option<glci_test::server::PushThroughConfig>> {
        let Some(url) = &self.push_through else {
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--push-through `{url}` is not an http:// or https:// URL");
        }
        let setting = |key: &str| glci_test::settings::current().text(key).map(str::to_string);
        Ok(Some(glci_test::server::PushThroughConfig {
            url: url.clone(),
            username: self
                .push_through_user
                .clone()
                .or_else(|| setting(schema::REGISTRY_PUSH_THROUGH_USER))
                .unwrap_or_default(),
            password: self
                .push_through_password
                .clone()
                .or_else(|| setting(schema::REGISTRY_PUSH_THROUGH_PASSWORD))
                .unwrap_or_default(),
        }))
    }

    /// The registry these flags choose, `None` without any (the settings' choice, see
    /// `Settings::registry_choice`).
    pub fn choice(&self) -> anyhow::Result<Option<RegistryChoice>> {
        if self.no_registry {
            return Ok(Some(RegistryChoice::Disabled));
        }
        let Some(url) = &self.registry else {
            return Ok(None);
        };
        let setting = |key: &str| glci_test::settings::current().text(key).map(str::to_string);
        Ok(Some(RegistryChoice::External(ExternalRegistry {
            address: ExternalRegistry::address_of(url)?,
            username: self
                .registry_user
                .clone()
                .or_else(|| setting(schema::REGISTRY_USER))
                .unwrap_or_default(),
            password: self
                .registry_password
                .clone()
                .or_else(|| setting(schema::REGISTRY_PASSWORD))
                .unwrap_or_default(),
        })))
    }
}

impl EventArgs {
    /// The pipeline these flags (and `GLCI_MASKED_VAR_<KEY>` environment variables) describe,
    /// for the repository containing the current directory.
    pub fn to_options(&self) -> anyhow::Result<PipelineOptions> {
        let mut opts = PipelineOptions::new(".");
        opts.file = self.file.to_string_lossy().into_owned();
        opts.event = self.to_event();
        opts.project_map = self.project_map.iter().cloned().collect();
        opts.template_dir = self.template_dir.clone();
        let setting = |flag: &Option<String>, env: &str| {
            flag.clone()
                .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
        };
        let defaults = glci_test::config::FetchSources::default();
        opts.include_sources = glci_test::config::FetchSources {
            template_url: setting(&self.template_url, "GLCI_TEMPLATE_URL")
                .unwrap_or(defaults.template_url),
            template_ref: setting(&self.template_ref, "GLCI_TEMPLATE_REF")
                .unwrap_or(defaults.template_ref),
            component_url: setting(&self.component_url, "GLCI_COMPONENT_URL"),
        };
        opts.allow_private_includes = self.allow_private_includes;
        opts.offline = self.offline;
        opts.inputs = self.inputs.clone();
        opts.settings_variables = self.settings()?.into_iter().map(|(v, _)| v).collect();
        Ok(opts)
    }

    /// The CI/CD settings variables of these flags, each with where it was given, lowest
    /// precedence first: the project's `.glci.env`, `--env-file`s in order, then
    /// `--masked-var`, `--masked-var-file`, `GLCI_MASKED_VAR_<KEY>`, `--file-var`. For one
    /// key the last one wins (a project has one value per key); `--var` is a pipeline
    /// variable and wins over all of them.
    pub fn settings(&self) -> anyhow::Result<Vec<(SettingsVariable, String)>> {
        let mut all: Vec<(SettingsVariable, String)> = Vec::new();
        let setting = |key: &str, value: &str, masked: bool, file: bool| SettingsVariable {
            key: key.to_string(),
            value: value.to_string(),
            masked,
            file,
        };
        let project_file = if self.no_project_env_file {
            None
        } else {
            env_file::project_env_file(Path::new("."))
        };
        let files = project_file
            .iter()
            .map(|p| (p.as_path(), PROJECT_ENV_FILE.to_string()))
            .chain(
                self.env_files
                    .iter()
                    .map(|p| (p.as_path(), p.display().to_string())),
            );
        for (path, shown) in files {
            for entry in env_file::read(path)? {
                all.push((entry.to_settings(), format!("{shown}:{}", entry.line)));
            }
        }
        for (key, value) in &self.masked_vars {
            all.push((setting(key, value, true, false), "--masked-var".to_string()));
        }
        for (key, value) in self.masked_var_files.iter().flatten() {
            all.push((
                setting(key, value, true, false),
                "--masked-var-file".to_string(),
            ));
        }
        let from_env =
            glci_test::harness::env::masked_vars(std::env::vars()).map_err(anyhow::Error::msg)?;
        for (key, value) in &from_env {
            all.push((
                setting(key, value, true, false),
                format!("GLCI_MASKED_VAR_{key}"),
            ));
        }
        for (key, value) in &self.file_vars {
            all.push((setting(key, value, false, true), "--file-var".to_string()));
        }
        let mut settings: Vec<(SettingsVariable, String)> = Vec::new();
        for (var, source) in all {
            settings.retain(|(v, _)| v.key != var.key);
            settings.push((var, source));
        }
        Ok(settings)
    }

    /// Where each settings variable was given (see [`EventArgs::settings`]), by key.
    pub fn settings_sources(&self) -> anyhow::Result<std::collections::HashMap<String, String>> {
        Ok(self
            .settings()?
            .into_iter()
            .map(|(v, source)| (v.key, source))
            .collect())
    }

    pub fn to_event(&self) -> Event {
        Event {
            source: self.source,
            branch: self.branch.clone(),
            tag: self.tag.clone(),
            target_branch: self.target_branch.clone(),
            default_branch: self.default_branch.clone(),
            changed_files: (!self.changed.is_empty()).then(|| self.changed.clone()),
            variables: self.vars.clone(),
        }
    }
}

fn parse_source(s: &str) -> Result<PipelineSource, String> {
    s.parse()
}

fn parse_project(s: &str) -> Result<(String, PathBuf), String> {
    let (k, v) = parse_var(s)?;
    Ok((k, PathBuf::from(v)))
}

/// `--masked-var-file`: `KEY=VALUE` lines, values taken literally (everything after the
/// first `=`, as a dotenv report's); blank lines and lines starting with `#` are skipped.
fn read_var_file(path: &str) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
    let mut vars = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{path}:{}: expected KEY=VALUE", i + 1))?;
        let key = key.trim();
        let valid = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            anyhow::bail!(
                "{path}:{}: `{key}` is not a variable name (letters, digits and `_`)",
                i + 1
            );
        }
        vars.push((key.to_string(), value.to_string()));
    }
    Ok(vars)
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("`{s}` has an empty variable name"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `cargo glci test`.
#[derive(Debug, Args, Clone)]
pub struct TestArgs {
    #[command(flatten)]
    pub event: EventArgs,
    /// Snapshot this job's normalized log with insta (repeatable; `*` for every job).
    #[arg(long = "snapshot", value_name = "JOB")]
    pub snapshots: Vec<String>,
    /// Where snapshots live, relative to the current directory (default tests/snapshots).
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<String>,
    /// Also a test per JUnit test case, `<job>/<suite>::<case>`, for the cases the last
    /// recorded run of each job reported.
    #[arg(long)]
    pub report_tests: bool,
    /// A snapshot redaction: matches of REGEX become REPLACEMENT (repeatable).
    #[arg(long = "redact", value_name = "REGEX=REPLACEMENT")]
    pub redactions: Vec<String>,
    /// Jobs running at once (default: the number of CPUs).
    #[arg(long = "jobs", short = 'j', value_name = "N")]
    pub concurrency: Option<usize>,
    /// Keep the containers of failed jobs.
    #[arg(long)]
    pub keep: bool,
    /// Image for jobs without `image:`.
    #[arg(long, value_name = "IMAGE")]
    pub default_image: Option<String>,
    /// Seconds services get to accept connections.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub services_timeout: u64,
    /// gitlab-runner's `config.toml` for glci's runners (default: GLCI_RUNNER_CONFIG, else
    /// `.glci/runner.toml` in the project if it exists).
    #[arg(long, value_name = "PATH")]
    pub runner_config: Option<PathBuf>,
    /// Give jobs the Docker engine's socket (socket passthrough; see the README's warning).
    #[arg(long)]
    pub docker_socket: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// libtest arguments (after `--`): filters, `--exact`, `--skip`, `--list`, `--ignored`,
    /// `--include-ignored`, `--test-threads`, `--format`, `--nocapture`.
    #[arg(last = true, value_name = "LIBTEST_ARGS")]
    pub libtest: Vec<String>,
}

/// `cargo glci variables`.
#[derive(Debug, Args, Clone)]
pub struct VariablesArgs {
    #[command(flatten)]
    pub event: EventArgs,
    /// The job whose variables to list.
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Also list the definitions that were overridden, and by what.
    #[arg(long)]
    pub all: bool,
    /// One JSON object: `variables` (the winning definitions), `overridden` (with `--all`),
    /// `dotenv_unknown`.
    #[arg(long)]
    pub json: bool,
}
