//! The command-line surface: subcommands and the event flags they share.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use glci_test::pipeline::{PipelineOptions, SettingsVariable};
use glci_test::plan::{Event, PipelineSource};

/// Run your GitLab CI pipeline on this machine, in Docker, each job as a Rust test.
#[derive(Debug, Parser)]
#[command(name = "cargo-glci", bin_name = "cargo glci", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
    /// Print the fully merged configuration (includes, extends, default, !reference) as YAML.
    Config {
        #[command(flatten)]
        event: EventArgs,
    },
    /// glci's runner on its own, against any GitLab-compatible server (e.g. `cargo glci run
    /// --runner external` in another terminal): register, take jobs, run them in Docker.
    Runner(RunnerArgs),
    /// Check that a Docker engine answers and say which one.
    Doctor,
    /// Remove Docker objects left behind by glci runs whose process is gone.
    Clean {
        /// Also remove objects of glci runs that are still alive.
        #[arg(long)]
        all: bool,
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
    /// `lib/gitlab/ci/templates`).
    #[arg(long = "template-dir", value_name = "DIR")]
    pub template_dir: Option<PathBuf>,
    /// Let `include:remote` fetch from loopback, private and link-local addresses (refused
    /// by default, as on GitLab).
    #[arg(long)]
    pub allow_private_includes: bool,
    /// Read `include:remote` files only from glci's cache (`GLCI_HOME/includes`, filled by
    /// earlier runs), never from the network.
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
        opts.allow_private_includes = self.allow_private_includes;
        opts.offline = self.offline;
        opts.inputs = self.inputs.clone();
        let settings = |vars: &[(String, String)], masked: bool, file: bool| {
            vars.iter()
                .map(|(key, value)| SettingsVariable {
                    key: key.clone(),
                    value: value.clone(),
                    masked,
                    file,
                })
                .collect::<Vec<_>>()
        };
        // Flags, then files, then the environment: for one key, the last one wins.
        let mut masked: Vec<(String, String)> = Vec::new();
        let from_env =
            glci_test::harness::env::masked_vars(std::env::vars()).map_err(anyhow::Error::msg)?;
        for (key, value) in self
            .masked_vars
            .iter()
            .chain(self.masked_var_files.iter().flatten())
            .chain(&from_env)
        {
            masked.retain(|(k, _)| k != key);
            masked.push((key.clone(), value.clone()));
        }
        opts.settings_variables = settings(&masked, true, false);
        opts.settings_variables
            .extend(settings(&self.file_vars, false, true));
        Ok(opts)
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
    /// libtest arguments (after `--`): filters, `--exact`, `--skip`, `--list`, `--ignored`,
    /// `--include-ignored`, `--test-threads`, `--format`, `--nocapture`.
    #[arg(last = true, value_name = "LIBTEST_ARGS")]
    pub libtest: Vec<String>,
}
