//! Jobs as libtest trials: plan → trials, DAG-aware scheduling, snapshot assertions.
//!
//! Three ways in, one engine:
//! - `cargo glci test [event flags] [--snapshot JOB] [-- libtest args]`: no code to write;
//! - [`main!`](crate::main) in a `[[test]] name = "ci" harness = false` target:
//!   `cargo test --test ci`, `cargo nextest run --test ci`, `cargo insta test` run the
//!   pipeline;
//! - [`Pipeline`]: hand-written tests that plan, run, and inspect jobs, and
//!   [`assert_plan_snapshot!`](crate::assert_plan_snapshot) for "which jobs run on a tag?".
//!
//! Each job that runs for the event is a trial named after the job, shown with its stage as
//! kind (`[test] unit`); `when: manual` jobs are ignored trials (`--ignored`,
//! `--include-ignored` play them); jobs excluded by rules are not trials. Running a trial
//! runs what it needs first, once per run, on the harness's own async runtime (or in the
//! daemon, under nextest). An allowed failure passes with the failure printed on stderr; a
//! failure prints the failed cases of the job's JUnit reports, the last 40 log lines and the
//! path of the full log; a job kept from running by a failed upstream
//! fails with "not run: needs `X`, which failed". Filters, `--exact`, `--skip`, `--list`,
//! `--test-threads`, `--format` are libtest-mimic's; `--nocapture` streams job logs to
//! stderr, each line prefixed with `[job]`.
//!
//! The event and variables can also come from `GLCI_*` environment variables (see [`env`](mod@env)),
//! which win over the macro's options, so CI can run one target for several events:
//! `GLCI_TAG=v1.0.0 cargo test --test ci`.
//!
//! # Which jobs are snapshotted
//!
//! None unless named. Name them in the macro (`snapshots = ["build", "test"]`, `["*"]` for
//! all), with `cargo glci test --snapshot JOB`, or in `GLCI_SNAPSHOTS=build,test`; the sets
//! add up. Snapshots live in `tests/snapshots/glci-<job>.snap` of the project (change with
//! `snapshot_dir = ".."`, `--snapshot-dir` or `GLCI_SNAPSHOT_DIR`) and are reviewed with
//! `cargo insta review` (outside a cargo project: `cargo insta review --workspace-root .`).
//! A snapshot holds the job log normalized by [`normalize::Normalizer`]; add redactions with
//! `redact = [(r"regex", "replacement")]` or `--redact REGEX=REPLACEMENT`. Masked variables
//! are `[MASKED]` in the log already and are replaced again, by value, before a snapshot
//! is compared. insta's rules apply: locally a mismatch writes `.snap.new` and fails; with
//! `CI` set nothing is written and it fails; `INSTA_UPDATE=always` accepts.
//!
//! # Under nextest
//!
//! nextest runs each test in its own process (`<bin> --exact <job> --nocapture`). Those
//! processes share one session through the glci daemon ([`crate::daemon`]), keyed by
//! `NEXTEST_RUN_ID` (or `GLCI_RUN_ID`) and the pipeline's options: each job runs once per
//! run, and a trial streams only its own job's log. `cargo test` (one process) keeps its
//! session in process. Listing (`--list`) never touches Docker and prints exactly
//! `<job>: test` lines, as nextest requires.

mod case_trials;
pub mod env;
pub mod macros;
pub mod normalize;
pub mod outcome;
mod session;
pub mod snapshot;
pub mod test_api;
#[cfg(test)]
mod test_support;
mod trials;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::pipeline::{self, PipelineOptions, RunOptions};
use crate::plan::PipelineSource;

/// libtest's command line, as the harness reads it.
pub use libtest_mimic::Arguments;
pub use normalize::Normalizer;
pub use session::SessionError;
pub use snapshot::Selection;
pub use test_api::{Job, Pipeline, PipelineRun, PlanSummary, RunningPipeline};

/// A pipeline as a test suite: what to run, and how to snapshot it. What to run is a
/// [`Pipeline`], the builder hand-written tests use, so both entry points set the repository,
/// file, event and variables the same way.
#[derive(Debug, Clone)]
pub struct Harness {
    pipeline: Pipeline,
    snapshots: Selection,
    snapshot_dir: Option<PathBuf>,
    redactions: Vec<(String, String)>,
    use_env: bool,
    /// A trial per JUnit case too (`--report-tests`).
    report_tests: bool,
    /// Started by [`Harness::main`] (a `main!` test binary, which can serve as the glci
    /// daemon): under nextest its session is shared through the daemon.
    from_main: bool,
    /// Why [`Harness::source_str`]'s name is no pipeline source, reported when the suite
    /// starts.
    bad_source: Option<String>,
}

/// Why the suite could not start (the harness prints it and exits with 2).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// [`Harness::source_str`] was given no pipeline source (the reason is the source
    /// parser's).
    #[error("source: {0}")]
    Source(String),
    #[error("glci settings: {0}")]
    Settings(#[from] crate::settings::SettingsError),
    #[error("{0}")]
    Env(#[from] env::EnvError),
    #[error("{0}")]
    Plan(#[from] crate::pipeline::PipelineError),
    #[error("{0}")]
    Redaction(#[from] normalize::RedactionError),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("glci data directory: {0}")]
    Home(std::io::Error),
}

impl Harness {
    /// The pipeline of the repository containing `project_dir` (for `main!`, the test
    /// crate's directory), for a push to its current branch.
    pub fn new(project_dir: impl Into<PathBuf>) -> Harness {
        Harness::from_pipeline(Pipeline::new(project_dir))
    }

    /// The pipeline described by `options` as they are.
    pub fn from_options(options: PipelineOptions) -> Harness {
        Harness::from_pipeline(Pipeline::from_options(options))
    }

    /// `pipeline` as a test suite.
    pub fn from_pipeline(pipeline: Pipeline) -> Harness {
        Harness {
            pipeline,
            snapshots: Selection::None,
            snapshot_dir: None,
            redactions: Vec::new(),
            use_env: true,
            report_tests: false,
            from_main: false,
            bad_source: None,
        }
    }

    fn with_pipeline(mut self, set: impl FnOnce(Pipeline) -> Pipeline) -> Harness {
        self.pipeline = set(self.pipeline);
        self
    }

    /// The CI file, relative to the repository root (default `.gitlab-ci.yml`).
    pub fn file(self, file: &str) -> Harness {
        self.with_pipeline(|p| p.file(file))
    }

    pub fn branch(self, branch: &str) -> Harness {
        self.with_pipeline(|p| p.branch(branch))
    }

    pub fn tag(self, tag: &str) -> Harness {
        self.with_pipeline(|p| p.tag(tag))
    }

    pub fn source(self, source: PipelineSource) -> Harness {
        self.with_pipeline(|p| p.source(source))
    }

    /// `CI_PIPELINE_SOURCE` by name (`push`, `merge_request_event`...); a bad name is
    /// reported when the suite starts.
    pub fn source_str(mut self, source: &str) -> Harness {
        match source.parse() {
            Ok(s) => self.with_pipeline(|p| p.source(s)),
            Err(e) => {
                self.bad_source.get_or_insert(e);
                self
            }
        }
    }

    /// A pipeline variable (highest precedence, as on GitLab).
    pub fn var(self, key: &str, value: &str) -> Harness {
        self.with_pipeline(|p| p.var(key, value))
    }

    /// A masked CI/CD settings variable: `[MASKED]` in logs and snapshots.
    pub fn masked_var(self, key: &str, value: &str) -> Harness {
        self.with_pipeline(|p| p.masked_var(key, value))
    }

    /// Adds jobs whose log is snapshotted (`"*"`: all).
    pub fn snapshots<I, S>(mut self, jobs: I) -> Harness
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.snapshots = self.snapshots.union(Selection::from_names(jobs));
        self
    }

    /// Where snapshots live, relative to the project directory (default `tests/snapshots`).
    pub fn snapshot_dir(mut self, dir: impl Into<PathBuf>) -> Harness {
        self.snapshot_dir = Some(dir.into());
        self
    }

    /// A redaction for snapshots: matches of `pattern` become `replacement`.
    pub fn redact(mut self, pattern: &str, replacement: &str) -> Harness {
        self.redactions
            .push((pattern.to_string(), replacement.to_string()));
        self
    }

    pub fn run_options(self, run: RunOptions) -> Harness {
        self.with_pipeline(|p| p.run_options(run))
    }

    /// Adds a trial per JUnit test case, `<job>/<suite>::<case>`, for the cases of the last
    /// recorded run of each job (see `case_trials`).
    pub fn report_tests(mut self, on: bool) -> Harness {
        self.report_tests = on;
        self
    }

    /// Ignore the `GLCI_*` environment variables (see [`env`](mod@env)).
    pub fn ignore_env(mut self) -> Harness {
        self.use_env = false;
        self
    }

    /// Runs the suite with the process's own arguments; for `fn main`.
    pub fn main(mut self) -> ExitCode {
        crate::docker::serve_if_asked();
        // Started as the glci daemon (by another process of a test run): serve, then exit.
        crate::daemon::serve_if_asked();
        self.from_main = true;
        self.run_with(&Arguments::from_args())
    }

    /// Runs the suite with libtest arguments `args`. Exit code 101 when a trial failed, as
    /// libtest; 2 when the pipeline could not be read or planned.
    pub fn run_with(mut self, args: &Arguments) -> ExitCode {
        // Started as the watchdog of a session (see `docker::Reaper`): that is all it does.
        crate::docker::serve_if_asked();
        // insta finds its workspace (tool config, pending snapshots) from this variable
        // before anything else; glci-test's own manifest directory would be wrong for the
        // user's snapshots. Set before any thread of ours exists.
        if std::env::var_os("INSTA_WORKSPACE_ROOT").is_none() {
            std::env::set_var(
                "INSTA_WORKSPACE_ROOT",
                absolute(&self.pipeline.options.project_dir),
            );
        }
        match self.prepare(args) {
            Ok((trials, session)) => {
                let conclusion = libtest_mimic::run(args, trials);
                // The trials (and their handles on the session) are gone: stop it before
                // returning, never through `process::exit`, which skips the cleanup.
                if let Ok(session) = Arc::try_unwrap(session) {
                    session.shutdown();
                }
                conclusion.exit_code()
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        }
    }

    fn prepare(
        &mut self,
        args: &Arguments,
    ) -> Result<(Vec<libtest_mimic::Trial>, Arc<session::LazySession>), HarnessError> {
        if let Some(e) = &self.bad_source {
            return Err(HarnessError::Source(e.clone()));
        }
        // glci's settings files, read once for the whole run, as `cargo glci` reads them.
        let settings = crate::pipeline::checked_settings()?;
        for warning in &settings.warnings {
            eprintln!("warning: {warning}");
        }
        if self.use_env {
            let env = env::apply(&mut self.pipeline.options, std::env::vars())?;
            self.snapshots = std::mem::take(&mut self.snapshots).union(env.snapshots);
            if env.snapshot_dir.is_some() {
                self.snapshot_dir = env.snapshot_dir;
            }
        }
        let project_dir = absolute(&self.pipeline.options.project_dir);
        self.pipeline.options.project_dir = project_dir.clone();
        let planned = pipeline::plan(&self.pipeline.options)?;
        if !planned.plan.created {
            // No pipeline for this event: no trial, and say why (not an error: GitLab
            // would simply not create one).
            eprintln!(
                "no pipeline for this event: {}",
                planned
                    .plan
                    .reason
                    .as_deref()
                    .unwrap_or("no job runs for this event")
            );
        }
        let mut normalizer = Normalizer::new().mask(
            self.pipeline
                .options
                .settings_variables
                .iter()
                .filter(|v| v.masked)
                .map(|v| v.value.clone()),
        );
        for (pattern, replacement) in &self.redactions {
            normalizer = normalizer.redact(pattern, replacement)?;
        }
        let snapshot_dir = project_dir.join(
            self.snapshot_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("tests/snapshots")),
        );
        let project_top = planned.loaded.facts.top_level.clone();
        let ci_file = project_top.join(&self.pipeline.options.file);
        let stream_logs = args.nocapture && !args.list;
        let shared_run = if self.from_main {
            shared_run(args)
        } else {
            None
        };
        let session = Arc::new(session::LazySession::new(
            self.pipeline.options.clone(),
            self.pipeline.run.clone(),
            stream_logs,
            shared_run,
        )?);
        if let Some(run) = self.from_main.then(|| listing_run(args)).flatten() {
            if planned.plan.created {
                session.prepare_in_daemon(&run);
            }
        }
        let children = child_trials(&self.pipeline.options, &planned);
        let ctx = Arc::new(trials::Context {
            plan: planned.plan,
            children,
            session: Arc::clone(&session),
            snapshots: self.snapshots.clone(),
            snapshot_settings: snapshot::SnapshotSettings {
                dir: snapshot_dir,
                ci_file,
                normalizer,
            },
        });
        let with_kind = !args.list && !under_nextest();
        let mut trials = trials::trials(&ctx, with_kind);
        if self.report_tests {
            let home = match &self.pipeline.run.home {
                Some(home) => home.clone(),
                None => crate::pipeline::home::glci_home_path().map_err(HarnessError::Home)?,
            };
            trials.extend(case_trials::trials(&ctx, &home, &project_top, with_kind));
        }
        drop(ctx);
        Ok((trials, session))
    }
}

/// The trials of the child pipelines that can be planned before the run. A child generated
/// at run time, or one that cannot be planned, has none: its trigger job alone is a trial,
/// and a note on stderr says why (stdout is the listing's).
fn child_trials(options: &PipelineOptions, planned: &pipeline::Planned) -> Vec<trials::ChildTrial> {
    let mut out = Vec::new();
    for child in pipeline::child::static_children(options, planned) {
        // Each pipeline's plan, by the prefix of its jobs' names.
        let mut plans: Vec<(String, Arc<crate::plan::Plan>)> = Vec::new();
        for nested in child.flatten() {
            match &nested.planned {
                Ok(p) => plans.push((format!("{}/", nested.trigger), Arc::new(p.plan.clone()))),
                Err(e) => eprintln!("note: trigger job `{}`: {e}", nested.trigger),
            }
        }
        for (name, job) in child.jobs() {
            // The longest prefix is the job's own pipeline.
            let Some((prefix, plan)) = plans
                .iter()
                .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
            else {
                continue;
            };
            out.push(trials::ChildTrial {
                trigger: child.trigger.clone(),
                name,
                stage: job.stage.clone(),
                manual: job.when == crate::plan::model::When::Manual,
                plan: Arc::clone(plan),
                prefix: prefix.clone(),
            });
        }
    }
    out
}

/// The run whose session lives in the glci daemon: `GLCI_RUN_ID` when set, else nextest's
/// `NEXTEST_RUN_ID` when this process runs one test (`--exact <name>`, nextest's process per
/// test). A process running the whole suite (`cargo test`) keeps its session to itself.
fn shared_run(args: &Arguments) -> Option<String> {
    let run = crate::daemon::run_id()?;
    let explicit = std::env::var_os("GLCI_RUN_ID").is_some_and(|v| !v.is_empty());
    (explicit || (args.exact && args.filter.is_some() && !args.list)).then_some(run)
}

/// The run whose session the glci daemon can start while nextest lists the tests: nextest
/// (0.9.138 and later) gives its listing processes the run's `NEXTEST_RUN_ID` too. Starting
/// the session then (the daemon, the stand-in GitLab, the job network) overlaps nextest's own
/// start-up instead of delaying the first job. Only the plain listing asks, not the
/// `--ignored` one that follows it.
fn listing_run(args: &Arguments) -> Option<String> {
    let nextest_run = std::env::var_os("NEXTEST_RUN_ID").is_some_and(|v| !v.is_empty());
    (args.list && !args.ignored && nextest_run)
        .then(crate::daemon::run_id)
        .flatten()
}

/// nextest runs `--exact <name>` per test; the name it knows has no `[kind]`.
fn under_nextest() -> bool {
    std::env::var_os("NEXTEST").is_some_and(|v| v == "1")
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::test_support::temp_repo;

    const CI: &str = "build: {script: [x]}\ndeploy: {script: [x], when: manual}\n";

    fn list_args() -> Arguments {
        Arguments::from_iter(["harness", "--list"])
    }

    #[test]
    fn trials_come_from_the_plan_without_docker() {
        let repo = match temp_repo(CI) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let mut h = Harness::new(repo.path()).ignore_env();
        let names: Vec<(String, bool)> = match h.prepare(&list_args()) {
            Ok((trials, _)) => trials
                .iter()
                .map(|t| (t.name().to_string(), t.has_ignored_flag()))
                .collect(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            names,
            vec![("build".to_string(), false), ("deploy".to_string(), true)]
        );
    }

    #[test]
    fn bad_options_are_reported_naming_the_option() {
        let repo = match temp_repo(CI) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let err = |mut h: Harness| {
            h.prepare(&list_args())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let bad_source = err(Harness::new(repo.path()).ignore_env().source_str("nope"));
        assert!(
            bad_source.starts_with("source: unknown pipeline source `nope`"),
            "{bad_source}"
        );
        let bad_redaction = err(Harness::new(repo.path()).ignore_env().redact("(", "x"));
        assert!(
            bad_redaction.starts_with("redaction pattern `(`"),
            "{bad_redaction}"
        );
        let missing = err(Harness::new(repo.path())
            .ignore_env()
            .file("ci/missing.yml"));
        assert!(missing.contains("ci/missing.yml"), "{missing}");
    }
}
