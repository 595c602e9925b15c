//! Taking jobs from the server and running them: the official runner's job life cycle
//! (docs/runner-contract.md §2.7) — acknowledge, stream the log while the job runs, hear a
//! cancel, send the final state with the log's checksum.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::docker::{Engine, Owner};

use super::api::{ApiError, PatchResult, RemoteJobState, RunnerApi, UpdateResult};
use super::executor::{execute, ExecutorOptions, JobIo, JobOutcome};
use super::payload::{Artifact, Dependency, JobPayload};
use super::trace::{Masker, Trace};

/// How often new log output is sent while a job runs. GitLab's runners default to 3 s; the
/// server is local, so glci streams closer to real time.
const TRACE_INTERVAL: Duration = Duration::from_millis(250);

/// How long a job may go without output before the runner touches it (`PUT /jobs/:id`,
/// state `running`), as the official runner's keep-alive does: a cancel is only heard in the
/// answer to a trace patch or a touch, so a silent `sleep` must not hide one.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// Artifacts through the runner API, as the official helper moves them.
struct ApiIo<'a> {
    api: &'a RunnerApi,
    job: &'a JobPayload,
}

impl JobIo for ApiIo<'_> {
    async fn download_artifacts(&self, dependency: &Dependency) -> Result<Vec<u8>, String> {
        let token = if dependency.token.is_empty() {
            &self.job.token
        } else {
            &dependency.token
        };
        self.api
            .download_artifacts(dependency.id, token)
            .await
            .map_err(|e| e.to_string())
    }

    async fn upload_artifacts(&self, artifact: &Artifact, zip: Vec<u8>) -> Result<(), String> {
        self.api
            .upload_artifacts(self.job, artifact, zip)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What the owner of a [`serve`] loop hears. Every method has a default.
pub trait WorkerHooks: Sync {
    /// Asked before each job request; `false` ends the loop (e.g. a job budget is spent).
    fn want_more(&self) -> bool {
        true
    }
    /// A job was taken and is about to run.
    fn started(&self, _job: &JobPayload) {}
    /// A job reported its final state.
    fn finished(&self, _job_id: u64, _name: &str, _outcome: &JobOutcome) {}
    /// A job request failed; the loop waits a moment and asks again.
    fn request_failed(&self, _error: &ApiError) {}
}

/// A runner's job loop, as `gitlab-runner run` has it: ask for a job (the server holds the
/// request while none is ready), run it, repeat, until `stop` fires. A job still running
/// when `stop` fires is canceled gracefully (its after_script runs).
pub async fn serve(
    api: &RunnerApi,
    runner_token: &str,
    engine: &Engine,
    owner: &Owner,
    executor: &ExecutorOptions,
    stop: &CancellationToken,
    hooks: &impl WorkerHooks,
) {
    let mut last_update: Option<String> = None;
    while hooks.want_more() {
        let request = tokio::select! {
            _ = stop.cancelled() => return,
            r = api.request_job(runner_token, last_update.as_deref()) => r,
        };
        match request {
            Ok((Some(job), _)) => {
                hooks.started(&job);
                let (id, name) = (job.id, job.job_info.name.clone());
                let outcome =
                    run_job(api, engine, owner, job, executor, &stop.child_token(), None).await;
                hooks.finished(id, &name, &outcome);
            }
            Ok((None, update)) => last_update = update.or(last_update),
            Err(e) => {
                hooks.request_failed(&e);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Runs one job the server gave us, from acknowledgement to final update. `cancel` is the
/// user's cancel (Ctrl-C): the script stops, after_script still runs.
pub async fn run_job(
    api: &RunnerApi,
    engine: &Engine,
    owner: &Owner,
    job: JobPayload,
    options: &ExecutorOptions,
    cancel: &CancellationToken,
    trace_sink: Option<&(dyn Fn(&Trace) + Sync)>,
) -> JobOutcome {
    // Two-phase commit: the server keeps the job pending until this acknowledgement.
    let _ = api.update_job(&job, "running", None, None, None).await;

    let mut secrets: Vec<String> = job
        .variables
        .iter()
        .filter(|v| v.masked)
        .map(|v| v.value.clone())
        .collect();
    secrets.push(job.token.clone());
    let trace = Trace::new(Masker::new(secrets), job.features.trace_sections);
    if let Some(sink) = trace_sink {
        sink(&trace);
    }
    let job_cancel = cancel.child_token();
    let stop_patching = CancellationToken::new();
    let patcher = {
        let (api, job, trace, job_cancel, stop) = (
            api.clone(),
            job.clone(),
            trace.clone(),
            job_cancel.clone(),
            stop_patching.clone(),
        );
        tokio::spawn(async move { stream_trace(&api, &job, &trace, &job_cancel, &stop).await })
    };

    let io = ApiIo { api, job: &job };
    let outcome = execute(engine, owner, &job, &io, &trace, options, &job_cancel).await;

    stop_patching.cancel();
    let _ = patcher.await;
    let log = trace.bytes();
    let state = if outcome.success { "success" } else { "failed" };
    // The final update is retried while the server says "not yet" (202), briefly.
    for _ in 0..20 {
        match api
            .update_job(
                &job,
                state,
                outcome.failure_reason.as_deref(),
                outcome.exit_code,
                Some((&log, log.len())),
            )
            .await
        {
            Ok(UpdateResult::TryAgain) => tokio::time::sleep(Duration::from_millis(250)).await,
            Ok(_) => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    outcome
}

/// Sends new log bytes every interval, and everything left when `stop` fires. Follows the
/// server's offsets (416 + Range) and its cancel requests.
async fn stream_trace(
    api: &RunnerApi,
    job: &JobPayload,
    trace: &Trace,
    cancel: &CancellationToken,
    stop: &CancellationToken,
) {
    let mut sent = 0usize;
    let mut changes = trace.subscribe();
    let mut gone = false;
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            // Batch output for an interval, but a finished job must not wait it out: its
            // final update (and the next job) would be a quarter of a second late.
            _ = changes.changed() => tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(TRACE_INTERVAL) => false,
            },
            _ = tokio::time::sleep(KEEPALIVE_INTERVAL), if !gone => {
                match api.update_job(job, "running", None, None, None).await {
                    Ok(UpdateResult::Accepted(RemoteJobState::Canceling)) => cancel.cancel(),
                    Ok(UpdateResult::Abort) => {
                        cancel.cancel();
                        gone = true;
                    }
                    _ => {}
                }
                false
            }
        };
        // Send until the server has everything (bounded, so a broken server cannot hang us).
        for _ in 0..10 {
            if gone {
                break;
            }
            let pending = trace.bytes_from(sent);
            if pending.is_empty() {
                break;
            }
            // At most 1 MiB per request, as the official runner.
            let chunk = &pending[..pending.len().min(1 << 20)];
            match api.patch_trace(job, sent, chunk).await {
                Ok(PatchResult::Accepted { stored, state }) => {
                    sent = stored.min(trace.len());
                    if state == RemoteJobState::Canceling {
                        cancel.cancel();
                    }
                }
                Ok(PatchResult::RangeMismatch { stored }) => sent = stored.min(trace.len()),
                Ok(PatchResult::Gone(_)) => {
                    cancel.cancel();
                    gone = true;
                }
                Err(_) => {
                    tokio::time::sleep(TRACE_INTERVAL).await;
                }
            }
        }
        if stopping {
            return;
        }
    }
}
