//! `POST /jobs/request` (long-polled job assignment) and `PUT /jobs/:id` (job state).

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use super::payload::{self, ServerUrls, FAILURE_REASONS};
use super::spec::JobId;
use super::state::{ApiState, Inner, JobState};
use super::{forbidden, params_of};
use crate::server::http::{self as h, Request, Response};
use crate::server::params;
use crate::server::Shared;

fn with_last_update(mut resp: Response, version: u64) -> Response {
    h::set_header(&mut resp, "x-gitlab-last-update", &version.to_string());
    resp
}

/// Picks the oldest pending job this runner may take and marks it assigned.
fn try_assign(
    api: &ApiState,
    inner: &mut Inner,
    runner_token: &str,
    urls: &ServerUrls<'_>,
) -> Option<Value> {
    let runner = inner.runners.get(runner_token)?;
    let (tags, run_untagged, runner_id, graceful, two_phase) = (
        runner.tags.clone(),
        runner.run_untagged,
        runner.id,
        runner.cancel_gracefully,
        runner.two_phase_commit,
    );
    let pos = inner.pending.iter().position(|id| {
        inner.jobs.get(id).is_some_and(|job| {
            if job.spec.tags.is_empty() {
                run_untagged
            } else {
                job.spec.tags.iter().all(|t| tags.contains(t))
            }
        })
    })?;
    let id = inner.pending.remove(pos)?;
    inner.queue_version += 1;
    let job = inner.jobs.get(&id)?;
    let body = payload::build(inner, job, urls);
    if let Some(job) = inner.jobs.get_mut(&id) {
        job.runner_id = Some(runner_id);
        job.runner_cancels_gracefully = graceful;
    }
    // GitLab holds a job in `pending` until the runner acknowledges it only for runners that
    // announce `two_phase_job_commit`; for every other runner it runs once handed out.
    let state = if two_phase {
        JobState::Assigned
    } else {
        JobState::Running
    };
    api.set_state(inner, JobId(id), state);
    Some(body)
}

pub(super) async fn request(shared: &Shared, req: Request) -> Response {
    let header = h::header_str(req.headers(), "runner-token").map(str::to_string);
    let body = match params_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = params::string(&body, "token")
        .map(str::to_string)
        .or(header)
        .unwrap_or_default();
    let graceful = params::flag(&body, "/info/features/cancel_gracefully").unwrap_or(false);
    let two_phase = params::flag(&body, "/info/features/two_phase_job_commit").unwrap_or(false);
    {
        let mut inner = shared.api.lock();
        match inner.runners.get_mut(&token) {
            Some(r) => {
                r.cancel_gracefully = graceful;
                r.two_phase_commit = two_phase;
            }
            None => return forbidden(),
        }
    }
    let urls = ServerUrls {
        url: &shared.url,
        host_port: &shared.host_port,
    };
    let deadline = Instant::now() + shared.config.api.long_poll;
    let mut shutdown = shared.shutdown.clone();
    loop {
        // Register for wake-ups before looking, so an enqueue in between is not missed.
        let notified = shared.api.queue_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (assigned, version) = {
            let mut inner = shared.api.lock();
            if !inner.runners.contains_key(&token) {
                return forbidden();
            }
            let assigned = try_assign(&shared.api, &mut inner, &token, &urls);
            (assigned, inner.queue_version)
        };
        if let Some(job) = assigned {
            return with_last_update(h::json(StatusCode::CREATED, &job), version);
        }
        if Instant::now() >= deadline || *shutdown.borrow() {
            return with_last_update(h::response(StatusCode::NO_CONTENT, h::empty()), version);
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
        // Let a burst of enqueues settle into one assignment pass.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Headers GitLab puts on every job update answer.
pub(super) fn job_headers(shared: &Shared, mut resp: Response, state: &JobState) -> Response {
    h::set_header(&mut resp, "job-status", state.gitlab_status());
    h::set_header(
        &mut resp,
        "x-gitlab-trace-update-interval",
        &shared.config.api.trace_update_interval_secs.to_string(),
    );
    resp
}

/// How long a final state waits for the log it announces before it is taken anyway, so a
/// runner that lost bytes for good cannot keep a job running. GitLab waits 5 minutes
/// (`Ci::UpdateBuildStateService::ACCEPT_TIMEOUT`); the stand-in is local, a minute is ample.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// GitLab's answer to a final state whose `output.bytesize` is more than the stored log:
/// 202 Accepted, state unchanged, "send the rest and ask again" (its `accept_build_state!`),
/// so the job never finishes with the end of its log still on the way. `None`: take the
/// state now (the log is whole, the runner did not say, or the wait is over).
fn await_whole_log(
    shared: &Shared,
    inner: &mut Inner,
    id: JobId,
    body: &Value,
) -> Option<Response> {
    let job = inner.jobs.get_mut(&id.0)?;
    let output = body.get("output");
    let announced = output
        .and_then(|o| o.get("bytesize"))
        .and_then(Value::as_u64)?;
    let stored = job.trace.len();
    if stored >= announced {
        let checksum = output
            .and_then(|o| o.get("checksum"))
            .and_then(Value::as_str);
        if stored == announced && checksum.is_some_and(|c| c != job.trace.checksum()) {
            // GitLab takes the state and counts the log as corrupted; so does the stand-in.
            tracing::warn!("job {id}: the stored log's checksum differs from the runner's");
        }
        return None;
    }
    let since = *job
        .final_update_waiting_since
        .get_or_insert_with(std::time::Instant::now);
    if since.elapsed() >= ACCEPT_TIMEOUT {
        tracing::warn!("job {id}: finished with {stored} of {announced} log bytes");
        return None;
    }
    let state = job.state.clone();
    Some(job_headers(
        shared,
        h::response(StatusCode::ACCEPTED, h::empty()),
        &state,
    ))
}

pub(super) async fn update(shared: &Shared, req: Request, id: JobId) -> Response {
    let header = h::header_str(req.headers(), "job-token").map(str::to_string);
    let body = match params_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = params::string(&body, "token")
        .map(str::to_string)
        .or(header)
        .unwrap_or_default();
    let mut inner = shared.api.lock();
    // GitLab answers 403, not 404, for an unknown job, so a runner reliably stops it.
    let Some(job) = inner.jobs.get(&id.0) else {
        return forbidden();
    };
    if !crate::server::sigv4::constant_time_eq(job.token.as_bytes(), token.as_bytes()) {
        return forbidden();
    }
    let current = job.state.clone();
    if current == JobState::Pending {
        // Never handed out: the token cannot have come from a runner.
        return forbidden();
    }
    let state = params::string(&body, "state");
    // GitLab's two-phase commit (only jobs handed to a runner that announced it are ever
    // `Assigned`): until the runner's `running` acknowledgement only `pending` (a keep-alive
    // while preparing) and `running` are accepted (`handle_runner_ack_workflow`).
    if current == JobState::Assigned && !matches!(state, Some("pending" | "running")) {
        return h::json_message(
            StatusCode::BAD_REQUEST,
            &format!("400 Bad request - state {state:?} before the job was acknowledged"),
        );
    }
    if matches!(state, Some("success" | "failed")) && current.is_active() {
        if let Some(answer) = await_whole_log(shared, &mut inner, id, &body) {
            return answer;
        }
    }
    let next = match state {
        Some("pending") if current == JobState::Assigned => current,
        Some("running") => match current {
            JobState::Assigned => JobState::Running,
            other => other,
        },
        Some(s @ ("success" | "failed")) => match current {
            JobState::Canceling => JobState::Canceled,
            ref c if c.is_finished() => c.clone(),
            _ if s == "success" => JobState::Success,
            _ => {
                let reason = params::string(&body, "failure_reason").unwrap_or("unknown_failure");
                let reason = if FAILURE_REASONS.contains(&reason) {
                    reason
                } else {
                    "unknown_failure"
                };
                JobState::Failed {
                    reason: reason.to_string(),
                    exit_code: params::integer(&body, "exit_code"),
                }
            }
        },
        other => {
            return h::json_message(
                http::StatusCode::BAD_REQUEST,
                &format!("400 Bad request - state {other:?} is invalid"),
            )
        }
    };
    shared.api.set_state(&mut inner, id, next.clone());
    drop(inner);
    // Final updates of finished jobs still get 200 (docs/runner-contract.md §2.3); the runner
    // learns of a cancel from `Job-Status`.
    job_headers(shared, h::response(StatusCode::OK, h::empty()), &next)
}
