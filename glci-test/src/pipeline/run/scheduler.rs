//! GitLab's job release: which jobs of the wanted ones may start now (status propagation,
//! `when: manual`/`delayed`, `retry`), what each finished job reports, and why the rest did
//! not run. It follows the server's job states; it never talks to a runner.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::plan::model::When;
use crate::plan::status::{self, Outcome, Status};
use crate::plan::{Plan, PlannedJob};
use crate::server::{JobEvent, JobId, JobState};

use crate::pipeline::duration::parse_duration;
use crate::pipeline::job_spec::{dependency, job_spec};
use crate::pipeline::test_reports::TestResults;
use crate::pipeline::{past_runs, results};

use super::report::{not_run, JobReport};
use super::{InFlight, Shared, State};

/// The scheduler: follows the server's job states, releases jobs as status propagation
/// says, writes reports, streams logs to the observer.
pub(super) async fn schedule(shared: Arc<Shared>) {
    let mut events = shared.server.subscribe();
    loop {
        // Log bytes sent before a job's final state must reach the observer before the
        // reconcile in `step` forgets the job (the tail of a canceled job's log was lost).
        loop {
            match events.try_recv() {
                Ok(event) => forward_log(&shared, event),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        step(&shared);
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            event = events.recv() => {
                let mut next = event.ok();
                while let Some(event) = next {
                    forward_log(&shared, event);
                    next = events.try_recv().ok();
                }
            }
        }
    }
}

fn forward_log(shared: &Shared, event: JobEvent) {
    let JobEvent::Trace { job, offset, data } = event else {
        return;
    };
    // Only bytes not seen yet: a runner may resend a range after a 416.
    let (name, skip) = {
        let mut state = shared.lock();
        let Some(name) = state.in_flight.get(&job).map(|f| f.name.clone()) else {
            return;
        };
        let seen = state.log_offsets.entry(job).or_insert(0);
        let end = offset + data.len() as u64;
        if end <= *seen {
            return;
        }
        let skip = seen.saturating_sub(offset) as usize;
        *seen = end;
        (name, skip)
    };
    shared.observer.job_log(&name, &data[skip..]);
}

/// One scheduling round.
fn step(shared: &Arc<Shared>) {
    let mut state = shared.lock();
    reconcile(shared, &mut state);

    let wanted: Vec<String> = state.wanted.iter().cloned().collect();
    let closure = closure(&shared.planned.plan, &wanted);
    let sub = sub_plan(&shared.planned.plan, &closure);
    let progress = status::propagate(&sub, &state.outcomes);
    let now = Instant::now();
    let mut dispatched = false;
    for job in &sub.jobs {
        if state.outcomes.contains_key(&job.name) || state.reports.contains_key(&job.name) {
            continue;
        }
        let release = match progress.statuses.get(&job.name) {
            Some(Status::Pending) => true,
            Some(Status::Manual) => state.played.contains(&job.name),
            Some(Status::Scheduled) => {
                if !shared.options.wait_delayed {
                    true
                } else {
                    let start_in = job
                        .start_in
                        .as_deref()
                        .and_then(parse_duration)
                        .unwrap_or_default();
                    let due = *state.due.entry(job.name.clone()).or_insert(now + start_in);
                    due <= now
                }
            }
            // A job that would wait for a canceled one during a cancel is canceled with the
            // pipeline, as GitLab cancels created jobs; not skipped "because it failed".
            Some(Status::Skipped) if state.canceling => {
                let why = "the pipeline was canceled".to_string();
                let report = not_run(job, Status::Canceled, Some(why));
                shared.add_report(&mut state, report);
                false
            }
            Some(Status::Skipped) => {
                let report = not_run(job, Status::Skipped, Some(skip_reason(&sub, job, &state)));
                shared.add_report(&mut state, report);
                false
            }
            _ => false,
        };
        // `resource_group`: released, but waiting for the group's resource (run/resources.rs).
        if release && !state.canceling && state.resources.ready(shared, job) {
            dispatch(shared, &mut state, job);
            dispatched = true;
        }
    }

    // Nothing runs and nothing can start: what is left never runs (blocked by a manual job,
    // a delayed job nobody waits for, or a cancel).
    let waiting_on_timer = state
        .due
        .keys()
        .any(|n| !state.outcomes.contains_key(n) && closure.contains(n));
    if state.in_flight.is_empty()
        && !dispatched
        && !waiting_on_timer
        && !state.resources.any_waiting()
        && !state.children.bridges_pending()
    {
        let progress = status::propagate(&sub, &state.outcomes);
        for job in &sub.jobs {
            if state.reports.contains_key(&job.name) {
                continue;
            }
            let status = progress
                .statuses
                .get(&job.name)
                .copied()
                .unwrap_or(Status::Created);
            let why = if state.canceling {
                "the pipeline was canceled".to_string()
            } else if status == Status::Manual {
                format!(
                    "manual job: run it by name to play it (`cargo glci run {}`)",
                    job.name
                )
            } else {
                blocked_reason(&sub, job, &progress.statuses)
            };
            let status = if state.canceling {
                Status::Canceled
            } else {
                status
            };
            let report = not_run(job, status, Some(why));
            shared.add_report(&mut state, report);
        }
    }
}

/// Picks up state changes of queued and running jobs from the server.
fn reconcile(shared: &Arc<Shared>, state: &mut State) {
    let ids: Vec<JobId> = state.in_flight.keys().copied().collect();
    for id in ids {
        let Some(job_state) = shared.server.job_state(id) else {
            continue;
        };
        if let Some(flight) = state.in_flight.get_mut(&id) {
            if flight.started.is_none()
                && matches!(job_state, JobState::Running | JobState::Canceling)
            {
                flight.started = Some(Instant::now());
                shared.observer.job_started(&flight.name);
            }
        }
        if !job_state.is_finished() {
            continue;
        }
        // The server hears a failed job's final state before its worker can say which
        // container it kept: wait for the worker, or `keep_failed` would miss it.
        if shared.options.keep_failed
            && !shared.options.external_runner
            && !state.aborted
            && matches!(job_state, JobState::Failed { .. })
            && !shared.worker_done(id)
        {
            continue;
        }
        let Some(flight) = state.in_flight.remove(&id) else {
            continue;
        };
        finished(shared, state, id, flight, job_state);
    }
}

fn finished(
    shared: &Arc<Shared>,
    state: &mut State,
    id: JobId,
    flight: InFlight,
    job_state: JobState,
) {
    let Some(job) = shared.job(&flight.name) else {
        return;
    };
    let (status, exit_code, reason) = match &job_state {
        JobState::Success => (Status::Success, None, None),
        JobState::Failed { reason, exit_code } => {
            (Status::Failed, *exit_code, Some(reason.clone()))
        }
        _ => (Status::Canceled, None, None),
    };
    let attempts = *state.attempts.get(&job.name).unwrap_or(&1);
    if status == Status::Failed
        && !state.canceling
        && retry_allowed(job, attempts, reason.as_deref(), exit_code)
    {
        shared.observer.job_retried(&job.name, attempts + 1);
        state.attempts.insert(job.name.clone(), attempts + 1);
        state.outcomes.remove(&job.name);
        dispatch(shared, state, job);
        return;
    }
    let outcome = Outcome {
        status,
        exit_code: exit_code.and_then(|c| i32::try_from(c).ok()),
    };
    state.outcomes.insert(job.name.clone(), outcome);
    let started = flight.started.unwrap_or(flight.queued);
    let kept = shared
        .workers_done
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id.0)
        .flatten();
    let stored = results::store(&shared.server, id, &shared.dir, &job.name);
    let tests = TestResults::collect(
        &shared.server.artifacts(id),
        job.coverage.as_deref(),
        stored.log_path.as_deref(),
    );
    let allowed_failure =
        matches!(status, Status::Failed | Status::Canceled) && status::allowed(job, outcome);
    let report = JobReport {
        name: job.name.clone(),
        stage: job.stage.clone(),
        status,
        allowed_failure,
        exit_code,
        failure_reason: reason,
        attempts,
        duration: started.elapsed(),
        log: stored.log,
        log_path: stored.log_path,
        artifacts_dir: stored.artifacts_dir,
        dotenv: shared.server.dotenv(id),
        releases: shared.server.releases(id),
        packages: shared.server.packages(id),
        kept_container: kept,
        not_run_because: None,
        tests,
    };
    remember(shared, id, &report);
    super::deployments::record(shared, state, job, id, status);
    shared.add_report(state, report);
}

/// Leaves the job's record for the commands that look back at runs (`cargo glci
/// artifacts`, dotenv in `cargo glci variables`); a run goes on without it.
fn remember(shared: &Shared, id: JobId, report: &JobReport) {
    let artifacts = shared
        .server
        .artifacts(id)
        .into_iter()
        .map(|a| past_runs::ArtifactRecord {
            path: a
                .path
                .strip_prefix(&shared.dir)
                .map(Path::to_path_buf)
                .unwrap_or(a.path),
            artifact_type: a.artifact_type,
            format: a.format,
            filename: a.filename,
            size: a.size,
            expire_in: a.expire_in,
        })
        .collect();
    let record = past_runs::JobRecord {
        name: report.name.clone(),
        stage: report.stage.clone(),
        job_id: id.0,
        pipeline_id: shared.facts.pipeline_id,
        status: report.status.as_str().to_string(),
        finished_at: past_runs::now_secs(),
        project: shared.planned.loaded.facts.top_level.clone(),
        artifacts,
        dotenv: report.dotenv.clone(),
    };
    if let Err(e) = past_runs::write(&shared.dir, &record) {
        tracing::warn!("job record not kept: {e}");
    }
}

/// `retry:max`, `retry:when` (failure reasons, `always`) and `retry:exit_codes`.
fn retry_allowed(
    job: &PlannedJob,
    attempts: u32,
    reason: Option<&str>,
    exit_code: Option<i64>,
) -> bool {
    let Some(retry) = &job.retry else {
        return false;
    };
    if attempts > u32::from(retry.max) {
        return false;
    }
    let when_ok = retry.when.is_empty()
        || retry.when.iter().any(|w| w == "always")
        || reason.is_some_and(|r| retry.when.iter().any(|w| w == r));
    let code_ok =
        retry.exit_codes.is_empty() || exit_code.is_some_and(|c| retry.exit_codes.contains(&c));
    when_ok && code_ok
}

fn dispatch(shared: &Arc<Shared>, state: &mut State, job: &PlannedJob) {
    // A trigger job creates a pipeline instead of going to a runner.
    if job.trigger.is_some() {
        super::child::start(shared, state, job);
        return;
    }
    if let Some(why) = shared.no_runner_for(job) {
        state
            .outcomes
            .insert(job.name.clone(), Outcome::new(Status::Failed));
        let mut report = not_run(job, Status::Failed, Some(why));
        report.failure_reason = Some("stuck_or_timeout_failure".to_string());
        shared.add_report(state, report);
        return;
    }
    let dependencies = job
        .dependencies
        .iter()
        .filter_map(|d| state.ids.get(d).map(|id| dependency(d, *id)))
        .collect();
    let spec = job_spec(job, &shared.facts, dependencies);
    match shared.server.enqueue(spec) {
        Ok(id) => {
            state.resources.dispatched(shared, &job.name, Some(id));
            state.attempts.entry(job.name.clone()).or_insert(1);
            state.ids.insert(job.name.clone(), id);
            state
                .outcomes
                .insert(job.name.clone(), Outcome::new(Status::Running));
            state.in_flight.insert(
                id,
                InFlight {
                    name: job.name.clone(),
                    queued: Instant::now(),
                    started: None,
                },
            );
        }
        Err(e) => {
            state
                .outcomes
                .insert(job.name.clone(), Outcome::new(Status::Failed));
            let mut report = not_run(job, Status::Failed, Some(format!("could not queue: {e}")));
            report.failure_reason = Some("runner_system_failure".to_string());
            shared.add_report(state, report);
        }
    }
}

fn skip_reason(plan: &Plan, job: &PlannedJob, state: &State) -> String {
    let failed = plan.upstream(job).into_iter().find(|u| {
        state.outcomes.get(&u.name).is_some_and(|o| {
            matches!(o.status, Status::Failed | Status::Canceled) && !status::allowed(u, *o)
        })
    });
    match (failed, job.when) {
        (_, When::OnFailure) => "when: on_failure, and nothing before it failed".to_string(),
        (Some(u), _) => {
            let how = match state.outcomes.get(&u.name).map(|o| o.status) {
                Some(Status::Canceled) => "was canceled",
                _ => "failed",
            };
            format!("not run: needs `{}`, which {how}", u.name)
        }
        (None, _) => "skipped by status propagation".to_string(),
    }
}

fn blocked_reason(plan: &Plan, job: &PlannedJob, statuses: &HashMap<String, Status>) -> String {
    match plan.upstream(job).into_iter().find(|u| {
        matches!(
            statuses.get(&u.name),
            Some(Status::Manual | Status::Created)
        )
    }) {
        Some(u) if statuses.get(&u.name) == Some(&Status::Manual) => {
            format!("not run: waits for manual job `{}`", u.name)
        }
        Some(u) => format!("not run: waits for `{}`, which did not run", u.name),
        None => "not run".to_string(),
    }
}

/// `names` with everything they wait for, transitively.
pub(super) fn closure(plan: &Plan, names: &[String]) -> HashSet<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut todo: Vec<&PlannedJob> = names.iter().filter_map(|n| plan.job(n)).collect();
    while let Some(job) = todo.pop() {
        if !seen.insert(job.name.clone()) {
            continue;
        }
        todo.extend(plan.upstream(job));
    }
    seen
}

/// The plan restricted to `names` (order kept), so status propagation ignores the rest.
pub(super) fn sub_plan(plan: &Plan, names: &HashSet<String>) -> Plan {
    let mut sub = plan.clone();
    sub.jobs.retain(|j| names.contains(&j.name));
    sub
}
