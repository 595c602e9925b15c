//! What a run tells its caller: the observer it calls while jobs run, and the reports of
//! jobs and of the pipeline when they end.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use crate::pipeline::test_reports::TestResults;
use crate::plan::status::Status;
use crate::plan::PlannedJob;
use crate::runner::progress::{ProgressEvent, ProgressSink};
use crate::server::{PackageFile, Release};

/// What a caller hears while a pipeline runs. Every method has an empty default.
pub trait RunObserver: Send + Sync {
    /// A runner took the job.
    fn job_started(&self, _job: &str) {}
    /// New log output of a running job (masked already).
    fn job_log(&self, _job: &str, _chunk: &[u8]) {}
    /// The job has its final status (also for skipped and not-run jobs).
    fn job_finished(&self, _report: &JobReport) {}
    /// A job failed and is queued again (`retry`).
    fn job_retried(&self, _job: &str, _attempt: u32) {}
    /// Something the user must hear about the run (a runner configuration key glci does not
    /// honour, socket passthrough's risk, containers a job left running). Printed to stderr
    /// unless the observer shows it elsewhere: never dropped.
    fn warning(&self, message: &str) {
        eprintln!("warning: {message}");
    }
    /// Progress of a built-in runner's slow steps (image layers, readiness waits, large
    /// cache transfers; see [`crate::runner::progress`]). Never part of a job's log.
    fn progress(&self, _event: &ProgressEvent) {}
}

/// The built-in runners' progress, passed on to the run's observer.
pub(super) struct ObservedProgress(pub(super) Arc<dyn RunObserver>);

impl ProgressSink for ObservedProgress {
    fn progress(&self, event: &ProgressEvent) {
        self.0.progress(event);
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl RunObserver for Quiet {}

/// One job's result.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobReport {
    pub name: String,
    pub stage: String,
    /// `success`, `failed`, `canceled`, `skipped`; `manual`/`created`/`scheduled` for jobs that
    /// never ran (see `not_run_because`).
    pub status: Status,
    /// Failed, but `allow_failure` lets the pipeline pass.
    pub allowed_failure: bool,
    pub exit_code: Option<i64>,
    /// GitLab's failure reason (`script_failure`, `job_execution_timeout`, ...).
    pub failure_reason: Option<String>,
    /// Runs of the job (more than 1 after `retry`).
    pub attempts: u32,
    pub duration: Duration,
    /// The job log (masked) as text, for rendering and snapshots: the bytes as GitLab stores
    /// them are in `log_path`; a log over `results::LOG_TEXT_MAX` keeps only its end here.
    pub log: String,
    /// Where the log is kept after the run.
    pub log_path: Option<PathBuf>,
    /// The job's artifacts archive, extracted.
    pub artifacts_dir: Option<PathBuf>,
    /// `artifacts:reports:dotenv` variables.
    pub dotenv: Vec<(String, String)>,
    /// Releases the job created (`release:` or `POST /projects/:id/releases`).
    pub releases: Vec<Release>,
    /// Generic package files the job uploaded.
    pub packages: Vec<PackageFile>,
    /// The container left for inspection (`keep_failed`).
    pub kept_container: Option<String>,
    /// Why a job did not run (skipped, manual, blocked, canceled).
    pub not_run_because: Option<String>,
    /// Its JUnit cases, `coverage:` figure and other reports.
    pub tests: TestResults,
}

impl JobReport {
    /// The job ran and passed, or failed with its failure allowed.
    pub fn passed(&self) -> bool {
        self.status == Status::Success || self.allowed_failure
    }
}

/// A finished pipeline (or the selected part of it).
#[derive(Debug, Clone)]
pub struct RunReport {
    pub pipeline_id: u64,
    /// GitLab's pipeline status.
    pub status: Status,
    /// In plan order.
    pub jobs: Vec<JobReport>,
    /// Where logs and artifacts of this pipeline are kept.
    pub dir: PathBuf,
    /// What the jobs did to their environments (`environment:`), in the order they finished.
    pub deployments: Vec<crate::pipeline::environments::EnvironmentChange>,
}

impl RunReport {
    /// What GitLab calls a passed pipeline (allowed failures are warnings).
    pub fn passed(&self) -> bool {
        matches!(self.status, Status::Success | Status::SuccessWithWarnings)
    }

    pub fn job(&self, name: &str) -> Option<&JobReport> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

pub(super) fn not_run(job: &PlannedJob, status: Status, why: Option<String>) -> JobReport {
    JobReport {
        name: job.name.clone(),
        stage: job.stage.clone(),
        status,
        allowed_failure: false,
        exit_code: None,
        failure_reason: None,
        attempts: 0,
        duration: Duration::ZERO,
        log: String::new(),
        log_path: None,
        artifacts_dir: None,
        dotenv: Vec::new(),
        releases: Vec::new(),
        packages: Vec::new(),
        kept_container: None,
        not_run_because: why,
        tests: TestResults::default(),
    }
}
