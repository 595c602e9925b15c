//! A Rust API for hand-written tests: build a pipeline (file, event, variables), plan it
//! (no Docker) or run it, one job with what it needs or all of it, and inspect each job.
//!
//! ```no_run
//! use glci_test::harness::Pipeline;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::new(env!("CARGO_MANIFEST_DIR")).tag("v1.0.0");
//! // Which jobs run on a tag? (milliseconds, no Docker)
//! let plan = pipeline.plan()?;
//! assert!(plan.jobs().contains(&"release"));
//!
//! // Run `release` and what it needs, in Docker.
//! let job = pipeline.job("release")?;
//! assert!(job.passed(), "{}", job.log_text());
//! assert_eq!(job.status, glci_test::plan::status::Status::Success);
//! assert_eq!(job.dotenv("VERSION"), Some("1.0.0"));
//! assert!(job.artifacts().contains(&"dist/app.tar.gz".to_string()));
//! let notes = job.read_artifact_string("dist/NOTES.md")?;
//! # let _ = notes;
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::ops::Deref;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::pipeline::{
    self, render, JobReport, PipelineError, PipelineOptions, Planned, Quiet, RunError, RunOptions,
    RunReport, Session,
};
use crate::plan::{PipelineSource, PlannedJob};

/// Why a pipeline could not be planned or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Run(#[from] RunError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// A pipeline to plan or run: the repository, the CI file, the event and variables.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub(super) options: PipelineOptions,
    pub(super) run: RunOptions,
}

impl Pipeline {
    /// The repository containing `dir`, a push to its current branch.
    pub fn new(dir: impl Into<PathBuf>) -> Pipeline {
        Pipeline::from_options(PipelineOptions::new(dir))
    }

    /// The pipeline described by `options` as they are.
    pub fn from_options(options: PipelineOptions) -> Pipeline {
        Pipeline {
            options,
            run: RunOptions::default(),
        }
    }

    pub fn file(mut self, file: &str) -> Pipeline {
        self.options.file = file.to_string();
        self
    }

    pub fn branch(mut self, branch: &str) -> Pipeline {
        self.options.set_branch(branch);
        self
    }

    pub fn tag(mut self, tag: &str) -> Pipeline {
        self.options.set_tag(tag);
        self
    }

    pub fn source(mut self, source: PipelineSource) -> Pipeline {
        self.options.event.source = source;
        self
    }

    /// A merge request pipeline from the current (or [`branch`](Self::branch)) branch into
    /// `target`.
    pub fn merge_request(mut self, target: &str) -> Pipeline {
        self.options.event.source = PipelineSource::MergeRequestEvent;
        self.options.event.target_branch = Some(target.to_string());
        self
    }

    /// A changed path for `rules:changes` (once called, git is not asked).
    pub fn changed(mut self, path: &str) -> Pipeline {
        self.options.add_changed(path);
        self
    }

    /// A pipeline variable (highest precedence).
    pub fn var(mut self, key: &str, value: &str) -> Pipeline {
        self.options.add_var(key, value);
        self
    }

    /// A masked CI/CD settings variable.
    pub fn masked_var(mut self, key: &str, value: &str) -> Pipeline {
        self.options.add_masked_var(key, value);
        self
    }

    pub fn run_options(mut self, run: RunOptions) -> Pipeline {
        self.run = run;
        self
    }

    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// The pipeline GitLab would create for the event. Needs git and the files, not Docker.
    pub fn plan(&self) -> Result<PlanSummary, Error> {
        Ok(PlanSummary {
            planned: pipeline::plan(&self.options)?,
        })
    }

    /// Starts a session (server and runners) in which jobs run at most once each.
    pub fn start(&self) -> Result<RunningPipeline, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let session = runtime.block_on(Session::start(
            &self.options,
            self.run.clone(),
            Arc::new(Quiet),
        ))?;
        Ok(RunningPipeline {
            session: Some(session),
            runtime,
        })
    }

    /// Runs `name` and what it needs, then stops everything.
    pub fn job(&self, name: &str) -> Result<Job, Error> {
        self.start()?.job(name)
    }

    /// Runs the whole pipeline (manual jobs are not played, as on GitLab).
    pub fn run(&self) -> Result<PipelineRun, Error> {
        self.start()?.run_all()
    }
}

/// A started pipeline; dropping it stops the server and removes its Docker objects.
pub struct RunningPipeline {
    session: Option<Session>,
    runtime: tokio::runtime::Runtime,
}

impl RunningPipeline {
    /// Runs `name` with what it needs (once per session; a manual job is played).
    pub fn job(&self, name: &str) -> Result<Job, Error> {
        let Some(session) = &self.session else {
            return Err(Error::Run(RunError::NotCreated("the session ended".into())));
        };
        let report = self.runtime.block_on(session.job(name))?;
        Ok(Job { report })
    }

    /// Runs every job not run yet (manual jobs stay unplayed).
    pub fn run_all(&self) -> Result<PipelineRun, Error> {
        let Some(session) = &self.session else {
            return Err(Error::Run(RunError::NotCreated("the session ended".into())));
        };
        let report = self.runtime.block_on(session.run(&[]))?;
        Ok(PipelineRun { report })
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.runtime.block_on(session.shutdown());
        }
    }
}

/// A finished pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    pub report: RunReport,
}

impl PipelineRun {
    /// Passed as GitLab says (allowed failures are warnings).
    pub fn passed(&self) -> bool {
        self.report.passed()
    }

    pub fn job(&self, name: &str) -> Option<Job> {
        self.report.job(name).cloned().map(|report| Job { report })
    }

    pub fn jobs(&self) -> impl Iterator<Item = Job> + '_ {
        self.report
            .jobs
            .iter()
            .cloned()
            .map(|report| Job { report })
    }
}

/// One finished job: status, exit code, log (masked), artifacts and dotenv variables. Derefs
/// to [`JobReport`] for every field.
#[derive(Debug, Clone)]
pub struct Job {
    pub report: JobReport,
}

impl Deref for Job {
    type Target = JobReport;

    fn deref(&self) -> &JobReport {
        &self.report
    }
}

impl Job {
    /// Ran and passed, or failed with the failure allowed.
    pub fn passed(&self) -> bool {
        self.report.passed()
    }

    /// The job log rendered as a terminal shows it (no colours, no section markers).
    pub fn log_text(&self) -> String {
        super::normalize::render(&self.report.log)
    }

    /// A variable of the job's `artifacts:reports:dotenv`.
    pub fn dotenv(&self, key: &str) -> Option<&str> {
        self.report
            .dotenv
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Paths of the job's artifact files, relative to the project, sorted.
    pub fn artifacts(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(dir) = &self.report.artifacts_dir {
            list_files(dir, dir, &mut out);
        }
        out.sort();
        out
    }

    /// The bytes of artifact file `path` (as listed by [`artifacts`](Self::artifacts)).
    pub fn read_artifact(&self, path: &str) -> std::io::Result<Vec<u8>> {
        let not_found = || {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("job `{}` has no artifact `{path}`", self.report.name),
            )
        };
        let dir = self.report.artifacts_dir.as_ref().ok_or_else(not_found)?;
        let rel = Path::new(path);
        // Only paths inside the artifacts directory.
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(not_found());
        }
        std::fs::read(dir.join(rel)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => not_found(),
            _ => e,
        })
    }

    pub fn read_artifact_string(&self, path: &str) -> std::io::Result<String> {
        let bytes = self.read_artifact(path)?;
        String::from_utf8(bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("artifact `{path}` of job `{}`: {e}", self.report.name),
            )
        })
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// A planned pipeline, for assertions on which jobs run.
#[derive(Debug, Clone)]
pub struct PlanSummary {
    pub planned: Planned,
}

impl PlanSummary {
    /// Whether GitLab would create the pipeline at all (`workflow:rules`).
    pub fn created(&self) -> bool {
        self.planned.plan.created
    }

    /// Job names in stage order.
    pub fn jobs(&self) -> Vec<&str> {
        self.planned
            .plan
            .jobs
            .iter()
            .map(|j| j.name.as_str())
            .collect()
    }

    pub fn job(&self, name: &str) -> Option<&PlannedJob> {
        self.planned.plan.jobs.iter().find(|j| j.name == name)
    }

    /// One line per job (`stage / job  when  [allow_failure]  [needs: ...]`): stable text
    /// for a snapshot.
    pub fn to_text(&self) -> String {
        let plan = &self.planned.plan;
        let mut out = String::new();
        if !plan.created {
            let _ = writeln!(
                out,
                "no pipeline: {}",
                plan.reason
                    .as_deref()
                    .unwrap_or("no job runs for this event")
            );
            return out;
        }
        for job in &plan.jobs {
            let _ = writeln!(
                out,
                "{} / {}  {}",
                job.stage,
                job.name,
                render::job_attributes(job)
            );
        }
        out
    }
}

/// The text [`assert_plan_snapshot!`](crate::assert_plan_snapshot) snapshots: the plan, or
/// the error that kept it from being made (an error is an answer worth pinning too).
pub fn plan_text(pipeline: &Pipeline) -> String {
    match pipeline.plan() {
        Ok(summary) => summary.to_text(),
        Err(e) => format!("error: {e}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::test_support::temp_repo;

    const CI: &str = "stages: [build, test, release]\n\
        build: {stage: build, script: [make]}\n\
        test: {stage: test, needs: [build], script: [make test], allow_failure: true}\n\
        release: {stage: release, script: [make release], rules: [{if: $CI_COMMIT_TAG}]}\n\
        deploy: {stage: release, script: [deploy], when: manual}\n";

    #[test]
    fn plan_answers_which_jobs_run_for_an_event() {
        let repo = match temp_repo(CI) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let on_main = Pipeline::new(repo.path()).plan();
        let on_main = on_main.map_err(|e| e.to_string());
        assert_eq!(
            on_main.as_ref().map(|p| p.jobs()),
            Ok(vec!["build", "test", "deploy"])
        );
        let on_tag = Pipeline::new(repo.path()).tag("v1.0.0").plan();
        let text = on_tag.map(|p| p.to_text()).unwrap_or_default();
        assert_eq!(
            text,
            "build / build  on_success\n\
             test / test  on_success  allow_failure  needs: [build]\n\
             release / release  on_success\n\
             release / deploy  manual  allow_failure\n"
        );
    }

    #[test]
    fn plan_text_shows_errors_naming_the_file() {
        let repo = match temp_repo("job: {script: [x], when: sometimes}\n") {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let text = plan_text(&Pipeline::new(repo.path()));
        assert!(text.starts_with("error: "), "{text}");
        assert!(text.contains("when"), "{text}");
        let missing = plan_text(&Pipeline::new(repo.path()).file("nope.yml"));
        assert!(missing.contains("nope.yml"), "{missing}");
    }

    fn job_with_artifacts(dir: &Path) -> Job {
        let mut report =
            crate::harness::outcome::tests::report("build", crate::plan::status::Status::Success);
        report.artifacts_dir = Some(dir.to_path_buf());
        report.dotenv = vec![
            ("VERSION".into(), "1".into()),
            ("VERSION".into(), "2".into()),
        ];
        Job { report }
    }

    #[test]
    fn artifacts_are_listed_and_read_but_never_outside_their_directory() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let _ = std::fs::create_dir_all(dir.path().join("dist/sub"));
        let _ = std::fs::write(dir.path().join("dist/sub/a.txt"), "A");
        let _ = std::fs::write(dir.path().join("top.txt"), "T");
        let job = job_with_artifacts(dir.path());
        assert_eq!(job.artifacts(), vec!["dist/sub/a.txt", "top.txt"]);
        assert_eq!(
            job.read_artifact_string("dist/sub/a.txt").ok().as_deref(),
            Some("A")
        );
        let err = job
            .read_artifact("../etc/passwd")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("job `build` has no artifact `../etc/passwd`")
        );
        assert!(job.read_artifact("missing").is_err());
        assert_eq!(job.dotenv("VERSION"), Some("2"));
        assert_eq!(job.dotenv("OTHER"), None);
    }
}
