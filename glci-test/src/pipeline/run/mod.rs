//! Running a pipeline for real: the mock GitLab in this process, the working tree's snapshot
//! served over git HTTP, jobs released as GitLab releases them (status propagation, retry,
//! manual, delayed) and taken by runners over the runner API — the built-in ones in this
//! process, or any runner the user points at the server (`external_runner`).
//!
//! A [`Session`] is one pipeline. [`Session::job`] runs one job and what it needs, each job at
//! most once per session, so the test harness can ask for jobs in any order and from any
//! thread; [`Session::run`] runs the whole pipeline (or a selection).
//!
//! `session.rs` is the API, `setup.rs` its set-up steps, `scheduler.rs` GitLab's job
//! release, `report.rs` what a caller hears, `options.rs` how a run is configured; the state
//! they share is here.

mod cache;
mod child;
mod deployments;
mod error;
mod options;
mod report;
mod resources;
mod scheduler;
mod session;
mod setup;

pub use cache::runner_cache_config;
pub use error::RunError;
pub use options::{
    checked_settings, push_through_from_settings, BadRegistryAddress, ExternalRegistry,
    RegistryChoice, RunOptions,
};
pub use report::{JobReport, Quiet, RunObserver, RunReport};
pub use session::Session;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::plan::status::Outcome;
use crate::plan::PlannedJob;
use crate::runner::executor::JobOutcome;
use crate::runner::worker::WorkerHooks;
use crate::server::{JobId, RunningServer};

use super::job_spec::PipelineFacts;
use super::Planned;

/// What the session API, the scheduler and the built-in runners share.
struct Shared {
    /// Shared with the session's child pipelines (`child.rs`).
    server: Arc<RunningServer>,
    planned: Planned,
    /// What every job spec shares (project, ref, commit, variables).
    facts: PipelineFacts,
    options: RunOptions,
    observer: Arc<dyn RunObserver>,
    /// The built-in runners' configuration (`config.toml`), for routing jobs by tags.
    runner_config: Option<Arc<crate::runner::runner_config::RunnerConfig>>,
    dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the scheduler (new wanted jobs, timers, cancel).
    wake: Notify,
    /// Bumped whenever a report is added.
    reports_changed: watch::Sender<u64>,
    /// What the built-in runners' workers said when a job ended, by server job id: the
    /// container kept for inspection, if any. The scheduler waits for this before writing
    /// the report of a job a built-in runner ran (the server hears the final state first).
    /// Shared with the session's child pipelines, whose jobs the same runners run.
    workers_done: Arc<Mutex<HashMap<u64, Option<String>>>>,
    stop: CancellationToken,
    /// The pipelines this one's trigger jobs created, and its depth.
    downstream: child::Downstream,
}

/// The scheduler's view of the pipeline, behind [`Shared::lock`].
#[derive(Default)]
struct State {
    wanted: HashSet<String>,
    played: HashSet<String>,
    /// Running and finished jobs, as status propagation sees them.
    outcomes: HashMap<String, Outcome>,
    in_flight: HashMap<JobId, InFlight>,
    ids: HashMap<String, JobId>,
    attempts: HashMap<String, u32>,
    /// Delayed jobs and when they are due.
    due: HashMap<String, Instant>,
    reports: HashMap<String, JobReport>,
    log_offsets: HashMap<JobId, u64>,
    canceling: bool,
    /// The built-in runners' workers were dropped mid-job ([`Session::abort`]).
    aborted: bool,
    /// `resource_group`: tickets of waiting jobs, resources held by running ones.
    resources: resources::Resources,
    /// What finished jobs did to their environments, in the order they finished.
    deployments: Vec<crate::pipeline::environments::EnvironmentChange>,
    /// Trigger jobs and their child pipelines.
    children: child::Children,
}

struct InFlight {
    name: String,
    queued: Instant,
    started: Option<Instant>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not stop the reports: the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn job(&self, name: &str) -> Option<&PlannedJob> {
        self.planned.plan.job(name)
    }

    /// Why no built-in runner would ever take `job`: GitLab leaves such a job pending (stuck)
    /// until it times out; glci fails it at once instead of waiting forever.
    fn no_runner_for(&self, job: &PlannedJob) -> Option<String> {
        let config = self.runner_config.as_ref()?;
        if self.options.external_runner || config.routes(&job.tags) {
            return None;
        }
        let needs = if job.tags.is_empty() {
            "untagged, and no runner has run_untagged".to_string()
        } else {
            format!("tags [{}]", job.tags.join(", "))
        };
        Some(format!(
            "stuck: no runner of {} takes this job ({needs}); runners: {}",
            config.path.display(),
            config.describe_runners()
        ))
    }

    /// A built-in runner's worker has finished with the job (see [`WorkerHooks::finished`]).
    fn worker_done(&self, id: JobId) -> bool {
        self.workers_done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id.0)
    }

    fn add_report(&self, state: &mut State, report: JobReport) {
        self.observer.job_finished(&report);
        state.resources.release(&report.name);
        state.reports.insert(report.name.clone(), report);
        self.reports_changed.send_modify(|n| *n += 1);
    }
}

impl WorkerHooks for Shared {
    fn finished(&self, job_id: u64, name: &str, outcome: &JobOutcome) {
        if !outcome.left_running.is_empty() {
            self.observer.warning(&format!(
                "job `{name}` left containers running that it started through the Docker socket (they are the job's; glci does not remove them): {}",
                outcome.left_running.join(", ")
            ));
        }
        self.workers_done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id, outcome.kept_container.clone());
        self.wake.notify_one();
    }
}
