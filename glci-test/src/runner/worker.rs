//! Taking jobs from the server and running them: the official runner's job life cycle
//! (docs/runner-contract.md §2.7) — acknowledge, stream the log while the job runs, hear a
//! cancel, send the final state with the log's checksum.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::docker::{Engine, Owner};

use super::api::{ApiError, PatchResult, RemoteJobState, RunnerApi, UpdateResult};
use super::executor::{execute, ExecutorOptions, JobIo, JobOutcome};
use super::payload::{Artifact, Dependency, JobPayload};
use super::progress::Transfer;
use super::trace::{Masker, Trace};

/// How often new log output is sent while a job runs. GitLab's runners default to 3 s; the
/// server is local, so glci streams closer to real time.
const TRACE_INTERVAL: Duration = Duration::from_millis(250);

/// How long a job may go without output before the runner touches it (`PUT /jobs/:id`,
/// state `running`), as the official runner's keep-alive does: a cancel is only heard in the
/// answer to a trace patch or a touch, so a silent `sleep` must not hide one.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// Most log bytes per trace PATCH, as the official runner sends.
const PATCH_MAX: usize = 1 << 20;

/// Failed requests in a row after which a delivery of the log gives up for now.
const DELIVERY_ATTEMPTS: u32 = 20;

/// Final updates tried before the runner gives up on a server that never takes the job's end.
const FINAL_UPDATE_ATTEMPTS: u32 = 20;

/// Pause after a failed request.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Artifacts through the runner API, as the official helper moves them.
struct ApiIo<'a> {
    api: &'a RunnerApi,
    job: &'a JobPayload,
}

impl JobIo for ApiIo<'_> {
    async fn download_artifacts(&self, dependency: &Dependency) -> Result<Vec<u8>, ApiError> {
        let token = if dependency.token.is_empty() {
            &self.job.token
        } else {
            &dependency.token
        };
        self.api.download_artifacts(dependency.id, token).await
    }

    async fn download_artifacts_counting(
        &self,
        dependency: &Dependency,
        transfer: &mut Transfer,
    ) -> Result<Vec<u8>, ApiError> {
        let token = if dependency.token.is_empty() {
            &self.job.token
        } else {
            &dependency.token
        };
        self.api
            .download_artifacts_counting(dependency.id, token, Some(transfer))
            .await
    }

    async fn upload_artifacts(&self, artifact: &Artifact, zip: Vec<u8>) -> Result<(), ApiError> {
        self.api.upload_artifacts(self.job, artifact, zip).await
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
    let sent = patcher.await.unwrap_or(0);
    finish(api, &job, &trace, &outcome, sent).await;
    outcome
}

/// The final update, as the official runner's `finishTrace`: the log is delivered to its last
/// byte, then the state goes out with the log's size and checksum. A server that does not
/// have the whole log yet answers 202 and hears the rest before it is asked again.
async fn finish(
    api: &RunnerApi,
    job: &JobPayload,
    trace: &Trace,
    outcome: &JobOutcome,
    sent: usize,
) {
    let state = if outcome.success { "success" } else { "failed" };
    let (size, checksum) = (trace.len(), trace.checksum());
    let mut sent = sent;
    let mut failures = 0;
    while failures < FINAL_UPDATE_ATTEMPTS {
        match deliver(api, job, trace, &mut sent).await {
            Delivery::Complete => {}
            Delivery::Gone => return,
            // The server has not answered for a while: one last try of the state, no more.
            Delivery::Failing => failures = FINAL_UPDATE_ATTEMPTS - 1,
        }
        match api
            .update_job(
                job,
                state,
                outcome.failure_reason.as_deref(),
                outcome.exit_code,
                Some((&checksum, size)),
            )
            .await
        {
            Ok(UpdateResult::Accepted(_) | UpdateResult::Abort) => return,
            Ok(UpdateResult::TryAgain) => {
                // The server is missing bytes we took for delivered: send them again.
                failures += 1;
                sent = 0;
                tokio::time::sleep(TRACE_INTERVAL).await;
            }
            Err(_) => {
                failures += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// How a delivery of the log ended.
enum Delivery {
    /// The server has every byte stored so far.
    Complete,
    /// The server stopped answering; try again later.
    Failing,
    /// The server refuses the job's log for good (job canceled, failed, unknown).
    Gone,
}

/// Sends the log from `sent` on until the server has all of it, at most 1 MiB per request as
/// the official runner, following the server's offsets (416 + Range). Gives up only after
/// [`DELIVERY_ATTEMPTS`] failed requests in a row, so a dead server cannot hold us forever.
async fn deliver(api: &RunnerApi, job: &JobPayload, trace: &Trace, sent: &mut usize) -> Delivery {
    deliver_watching(api, job, trace, sent, None).await
}

async fn deliver_watching(
    api: &RunnerApi,
    job: &JobPayload,
    trace: &Trace,
    sent: &mut usize,
    cancel: Option<&CancellationToken>,
) -> Delivery {
    let mut failures = 0;
    loop {
        let chunk = trace.bytes_from(*sent, PATCH_MAX);
        if chunk.is_empty() {
            return Delivery::Complete;
        }
        match api.patch_trace(job, *sent, &chunk).await {
            Ok(PatchResult::Accepted { stored, state }) => {
                failures = 0;
                *sent = stored.min(trace.len());
                if state == RemoteJobState::Canceling {
                    if let Some(cancel) = cancel {
                        cancel.cancel();
                    }
                }
            }
            Ok(PatchResult::RangeMismatch { stored }) => {
                failures += 1;
                *sent = stored.min(trace.len());
            }
            Ok(PatchResult::Gone(_)) => {
                if let Some(cancel) = cancel {
                    cancel.cancel();
                }
                return Delivery::Gone;
            }
            Err(_) => {
                failures += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        if failures >= DELIVERY_ATTEMPTS {
            return Delivery::Failing;
        }
    }
}

/// Sends new log bytes while the job runs: whenever the log grew (batched for an interval),
/// all of it. Follows the server's cancel requests. Returns how much the server has when
/// `stop` fires; the rest goes out with the final update.
async fn stream_trace(
    api: &RunnerApi,
    job: &JobPayload,
    trace: &Trace,
    cancel: &CancellationToken,
    stop: &CancellationToken,
) -> usize {
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
        if stopping {
            return sent;
        }
        if !gone
            && matches!(
                deliver_watching(api, job, trace, &mut sent, Some(cancel)).await,
                Delivery::Gone
            )
        {
            gone = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{GitSpec, JobSpec, JobState, ProjectSpec, Server, ServerConfig, StepSpec};

    /// A log far larger than what goes out per wake-up, written in one burst just before the
    /// job ends (a fast `base64` of 45 MB): the final update waits until the server has every
    /// byte (the old streamer sent 10 more MiB after the job ended, and the stand-in took the
    /// final state regardless).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_at_the_end_of_a_job_is_delivered_before_its_final_state() {
        let tmp = tempfile::tempdir().unwrap();
        let server = Server::start(ServerConfig::new(tmp.path().join("data")))
            .await
            .unwrap();
        let id = server
            .enqueue(JobSpec {
                name: "burst".into(),
                stage: "test".into(),
                pipeline_id: 1,
                project: ProjectSpec {
                    id: 3,
                    path: "g/p".into(),
                    namespace_id: 2,
                    root_namespace_id: 2,
                },
                steps: vec![StepSpec {
                    name: "script".into(),
                    script: vec!["true".into()],
                    ..StepSpec::default()
                }],
                timeout_secs: 60,
                git: GitSpec {
                    ref_name: "main".into(),
                    sha: "3f786850e387550fdab836ed7e6dc881de23001b".into(),
                    ..GitSpec::default()
                },
                ..JobSpec::default()
            })
            .unwrap();
        let runner = server.create_runner(&[], true);
        let api = RunnerApi::new(server.url());
        let (job, _) = api.request_job(&runner.token, None).await.unwrap();
        let job = job.expect("a job");
        api.update_job(&job, "running", None, None, None)
            .await
            .unwrap();

        let trace = Trace::new(Masker::new([job.token.clone()]), false);
        let (cancel, stop) = (CancellationToken::new(), CancellationToken::new());
        let streamer = {
            let (api, job, trace) = (api.clone(), job.clone(), trace.clone());
            let (cancel, stop) = (cancel.clone(), stop.clone());
            tokio::spawn(async move { stream_trace(&api, &job, &trace, &cancel, &stop).await })
        };
        let line = [b'A'; 999];
        for _ in 0..30_000 {
            trace.output(&line);
            trace.output(b"\n");
        }
        trace.info("Job succeeded");
        stop.cancel();
        let sent = streamer.await.unwrap();
        let outcome = JobOutcome {
            success: true,
            failure_reason: None,
            exit_code: None,
            kept_container: None,
            left_running: Vec::new(),
        };
        finish(&api, &job, &trace, &outcome, sent).await;

        let state = tokio::time::timeout(Duration::from_secs(30), server.wait_job(id)).await;
        assert_eq!(state.ok().flatten(), Some(JobState::Success));
        let stored = server.trace(id).unwrap();
        assert_eq!(stored.len(), trace.len());
        assert_eq!(stored, trace.bytes());
        server.shutdown().await;
    }
}
