//! Status propagation through a planned pipeline (`AtomicProcessingService`,
//! `Gitlab::Ci::Status::Composite`, `ProcessBuildService`): given the statuses of the jobs
//! that finished, which jobs become ready, which are skipped, and the pipeline's status.

use std::collections::HashMap;

use super::model::{AllowFailure, When};
use super::{Plan, PlannedJob};

/// A job's (or pipeline's) status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Status {
    Created,
    /// Ready to run (GitLab `pending`).
    Pending,
    Running,
    Success,
    Failed,
    Canceled,
    Skipped,
    /// A manual job waiting to be played.
    Manual,
    /// A delayed job waiting for `start_in`.
    Scheduled,
    /// Composite only: everything passed, some failures were allowed.
    SuccessWithWarnings,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::Skipped => "skipped",
            Status::Manual => "manual",
            Status::Scheduled => "scheduled",
            Status::SuccessWithWarnings => "success_with_warnings",
        }
    }

    fn is_complete(self) -> bool {
        matches!(
            self,
            Status::Success | Status::Failed | Status::Canceled | Status::Skipped
        )
    }
}

/// What a job finished with: its status and, for failures, the exit code (for
/// `allow_failure: {exit_codes}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub exit_code: Option<i32>,
}

impl Outcome {
    pub fn new(status: Status) -> Self {
        Outcome {
            status,
            exit_code: None,
        }
    }
}

/// The result of one propagation step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Every job's status after propagation (unfinished jobs: created, pending, manual,
    /// scheduled, skipped).
    pub statuses: HashMap<String, Status>,
    /// Jobs that just became `pending` (or `scheduled`/`manual`), in plan order.
    pub ready: Vec<String>,
    /// Jobs that just became `skipped`, in plan order.
    pub skipped: Vec<String>,
    /// The pipeline's composite status.
    pub pipeline: Status,
}

/// Whether a failure with `outcome` is allowed (`allow_failure`, or its `exit_codes`).
pub fn allowed(job: &PlannedJob, outcome: Outcome) -> bool {
    match &job.allow_failure {
        AllowFailure::Bool(b) => *b,
        AllowFailure::ExitCodes(codes) => outcome
            .exit_code
            .is_some_and(|c| codes.contains(&i64::from(c))),
    }
}

/// A status as the composite counts it: allowed failures are successes with a warning, an
/// optional manual job is `ignored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    Plain(Status),
    Warning,
    Ignored,
}

/// `Gitlab::Ci::Status::Composite#status` over (status, failure allowed) pairs, in
/// GitLab's order of checks.
fn composite<I: IntoIterator<Item = (Status, bool)>>(items: I, dag: bool) -> Status {
    use Counted::{Ignored, Plain, Warning};
    let seen: Vec<Counted> = items
        .into_iter()
        .map(|(status, allow)| match status {
            Status::Failed | Status::Canceled if allow => Warning,
            Status::Manual if allow => Ignored,
            s => Plain(s),
        })
        .collect();
    if seen.is_empty() {
        return Status::Success;
    }
    let any = |s: Status| seen.contains(&Plain(s));
    let only = |set: &[Status]| {
        seen.iter().all(|c| match c {
            Plain(s) => set.contains(s),
            Warning | Ignored => true,
        })
    };
    let only_skipped_or_ignored = seen
        .iter()
        .all(|c| matches!(c, Plain(Status::Skipped) | Ignored));
    if dag && (any(Status::Skipped) || seen.contains(&Ignored)) {
        return Status::Skipped;
    }
    if only_skipped_or_ignored {
        return Status::Skipped;
    }
    if only(&[Status::Success, Status::Skipped]) {
        return if seen.contains(&Warning) {
            Status::SuccessWithWarnings
        } else {
            Status::Success
        };
    }
    if only(&[Status::Created]) {
        return Status::Created;
    }
    if only(&[Status::Canceled, Status::Success, Status::Skipped]) {
        return Status::Canceled;
    }
    if only(&[Status::Pending, Status::Created, Status::Skipped]) {
        return Status::Pending;
    }
    if any(Status::Running) || any(Status::Pending) {
        return Status::Running;
    }
    if any(Status::Manual) {
        return Status::Manual;
    }
    if any(Status::Scheduled) {
        return Status::Scheduled;
    }
    if any(Status::Created) {
        return Status::Running;
    }
    Status::Failed
}

/// A job's status and whether its failure (or unplayed manual state) is allowed.
fn view(job: &PlannedJob, status: Status, outcome: Option<Outcome>) -> (Status, bool) {
    let allow = match outcome {
        Some(o) => allowed(job, o),
        None => job.allows_failure(),
    };
    (status, allow)
}

/// Propagates `finished` through the plan: every `created` job whose previous status is
/// complete becomes pending/manual/scheduled or skipped, repeatedly until nothing changes.
/// `finished` holds jobs that ended (success, failed, canceled) or are running; jobs not in
/// it start as `created`.
pub fn propagate(plan: &Plan, finished: &HashMap<String, Outcome>) -> Progress {
    let mut statuses: HashMap<String, Status> = plan
        .jobs
        .iter()
        .map(|j| {
            let s = finished.get(&j.name).map_or(Status::Created, |o| o.status);
            (j.name.clone(), s)
        })
        .collect();
    let by_name: HashMap<&str, &PlannedJob> =
        plan.jobs.iter().map(|j| (j.name.as_str(), j)).collect();
    let mut ready = Vec::new();
    let mut skipped = Vec::new();
    loop {
        let mut changed = false;
        for job in &plan.jobs {
            if statuses.get(&job.name) != Some(&Status::Created) {
                continue;
            }
            let dag = job.needs.is_some();
            let prev = match &job.needs {
                Some(needs) => composite(
                    needs.iter().filter_map(|n| {
                        let j = by_name.get(n.name.as_str())?;
                        let s = *statuses.get(&n.name)?;
                        Some(view(j, s, finished.get(&n.name).copied()))
                    }),
                    true,
                ),
                None => composite(
                    plan.jobs
                        .iter()
                        .filter(|j| j.stage_index < job.stage_index)
                        .filter_map(|j| {
                            let s = *statuses.get(&j.name)?;
                            Some(view(j, s, finished.get(&j.name).copied()))
                        }),
                    false,
                ),
            };
            let prev = if prev == Status::SuccessWithWarnings {
                Status::Success
            } else {
                prev
            };
            if !prev.is_complete() {
                continue;
            }
            let ok = match job.when {
                When::OnSuccess | When::Manual | When::Delayed => {
                    if dag {
                        prev == Status::Success
                    } else {
                        matches!(prev, Status::Success | Status::Skipped)
                    }
                }
                When::OnFailure => prev == Status::Failed,
                When::Always => {
                    matches!(prev, Status::Success | Status::Failed | Status::Skipped)
                }
                When::Never => false,
            };
            let next = match (ok, job.when) {
                (false, _) => Status::Skipped,
                (true, When::Delayed) => Status::Scheduled,
                (true, When::Manual) => Status::Manual,
                (true, _) => Status::Pending,
            };
            statuses.insert(job.name.clone(), next);
            if next == Status::Skipped {
                skipped.push(job.name.clone());
            } else {
                ready.push(job.name.clone());
            }
            changed = true;
        }
        if !changed {
            break;
        }
    }
    let pipeline = composite(
        plan.jobs.iter().filter_map(|j| {
            let s = *statuses.get(&j.name)?;
            Some(view(j, s, finished.get(&j.name).copied()))
        }),
        false,
    );
    Progress {
        statuses,
        ready,
        skipped,
        pipeline,
    }
}
