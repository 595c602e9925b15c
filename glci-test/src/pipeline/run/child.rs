//! Trigger jobs at run time. A trigger job (GitLab's `Ci::Bridge`) is never sent to a runner:
//! when the scheduler releases it, its child pipeline is planned (`pipeline::child`) with the
//! parent's finished jobs' artifacts at hand, gets its own pipeline id and persistent ref, and
//! runs in the same session — same server, same runners — under a scheduler of its own. The
//! child's jobs are reported to the parent as `<trigger job>/<job>`, nested children as
//! `<trigger>/<trigger>/<job>`.
//!
//! The trigger job's status is GitLab's (`Ci::CreateDownstreamPipelineService`,
//! `Ci::Bridge#inherit_status_from_downstream!`): without `strategy: depend` it succeeds once
//! the child is created; with it, it becomes success when the child succeeds, canceled when
//! the child is canceled and failed when the child fails or is skipped. A child that cannot
//! be created fails it with `downstream_pipeline_creation_failed` and the creation's errors;
//! one nested too deep with `reached_max_descendant_pipelines_depth`. A multi-project trigger
//! (`trigger: project:`) runs the pipeline of the checkout `--project` maps the project to
//! (snapshotted and served like the run's own repository), and is skipped with one line
//! saying how to map it otherwise; one whose upstream chain already runs a project and ref
//! twice fails with `pipeline_loop_detected`, as on GitLab.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::git::SnapshotRequest;
use crate::pipeline::child::{
    plan_child, plan_project, ChildError, ChildSource, PlannedChild, PlannedProject,
};
use crate::pipeline::job_spec::PipelineFacts;
use crate::pipeline::Planned;
use crate::pipeline::{home, JobReport, PipelineOptions};
use crate::plan::model::Trigger;
use crate::plan::status::{self, Outcome, Status};
use crate::plan::PlannedJob;
use crate::server::JobId;

use super::report::{not_run, RunObserver};
use super::scheduler::schedule;
use super::setup::{job_facts, PipelineRef};
use super::{Shared, State};

/// What a pipeline knows of the pipelines its trigger jobs create.
pub(super) struct Downstream {
    /// The root pipeline's options (project mappings, templates, settings variables), which
    /// every child's configuration is read with.
    pub(super) opts: PipelineOptions,
    /// Pipelines above this one: 0 for the root.
    pub(super) depth: usize,
    /// (project, ref) of this pipeline and the pipelines upstream of it, child pipelines
    /// left out, root first: what GitLab's loop check looks at (`child::check_loop`).
    pub(super) chain: Vec<(String, String)>,
    /// The children started from this pipeline's trigger jobs, for cancel and shutdown.
    pub(super) started: Mutex<Vec<(Arc<Shared>, JoinHandle<()>)>>,
}

impl Downstream {
    pub(super) fn root(
        opts: &PipelineOptions,
        planned: &Planned,
        facts: &PipelineFacts,
    ) -> Downstream {
        let chain = vec![(planned.loaded.facts.project.path(), facts.ref_name.clone())];
        Downstream::new(opts.clone(), 0, chain)
    }

    fn new(opts: PipelineOptions, depth: usize, chain: Vec<(String, String)>) -> Downstream {
        Downstream {
            opts,
            depth,
            chain,
            started: Mutex::new(Vec::new()),
        }
    }

    fn started(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<Shared>, JoinHandle<()>)>> {
        self.started.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The scheduler's view of its trigger jobs (part of [`State`]).
#[derive(Default)]
pub(super) struct Children {
    /// Trigger jobs without their final status yet (creating the child, or waiting for it
    /// with `strategy: depend`): the pipeline is not stuck while one remains.
    bridges: HashSet<String>,
    /// Trigger jobs whose child pipeline still runs (also after a trigger without
    /// `strategy: depend` succeeded).
    running: HashSet<String>,
    /// Trigger job → its child's jobs (full names, nested children's after their trigger),
    /// once the child has finished.
    jobs: HashMap<String, Vec<String>>,
}

impl Children {
    /// A trigger job has not finished yet.
    pub(super) fn bridges_pending(&self) -> bool {
        !self.bridges.is_empty()
    }

    /// Every child pipeline started so far has finished.
    pub(super) fn all_finished(&self) -> bool {
        self.running.is_empty()
    }

    /// The child jobs reported under `trigger`, in plan order.
    pub(super) fn jobs_of(&self, trigger: &str) -> &[String] {
        self.jobs
            .get(trigger)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// The trigger job of the root plan that `name` (`trigger/job`, possibly nested) belongs to.
pub(super) fn root_trigger<'a>(shared: &'a Shared, name: &str) -> Option<&'a PlannedJob> {
    shared
        .planned
        .plan
        .jobs
        .iter()
        .filter(|j| j.trigger.is_some())
        .find(|j| {
            name.strip_prefix(j.name.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// The report of child job `name` once its trigger's child has finished without it: the
/// child was never created (failed, with the trigger's reason) or has no such job (skipped).
pub(super) fn missing_report(shared: &Shared, state: &State, name: &str) -> Option<JobReport> {
    let trigger = root_trigger(shared, name)?;
    let trigger_report = state.reports.get(&trigger.name)?;
    if state.children.running.contains(&trigger.name) {
        return None;
    }
    let mut report = not_run(trigger, Status::Skipped, None);
    report.name = name.to_string();
    if state.children.jobs.contains_key(&trigger.name) {
        report.not_run_because = Some(format!(
            "`{name}` is not a job of the child pipeline of `{}`",
            trigger.name
        ));
    } else {
        report.status = Status::Failed;
        report.failure_reason = trigger_report.failure_reason.clone();
        report.not_run_because = Some(format!(
            "the child pipeline of `{}` was not created: {}",
            trigger.name,
            trigger_report
                .not_run_because
                .as_deref()
                .unwrap_or("see the trigger job")
        ));
    }
    Some(report)
}

/// Releases trigger job `job`: its outcome is running until [`run`] gives the final one.
pub(super) fn start(shared: &Arc<Shared>, state: &mut State, job: &PlannedJob) {
    state.attempts.entry(job.name.clone()).or_insert(1);
    state
        .outcomes
        .insert(job.name.clone(), Outcome::new(Status::Running));
    state.children.bridges.insert(job.name.clone());
    shared.observer.job_started(&job.name);
    // GitLab's `find_job_with_archive_artifacts`: the parent's jobs that have artifacts.
    let artifacts: BTreeMap<String, PathBuf> = state
        .reports
        .values()
        .filter_map(|r| Some((r.name.clone(), r.artifacts_dir.clone()?)))
        .collect();
    let ids = state.ids.clone();
    let parent = Arc::clone(shared);
    let bridge = job.clone();
    tokio::spawn(async move { run(parent, bridge, artifacts, ids).await });
}

async fn run(
    parent: Arc<Shared>,
    bridge: PlannedJob,
    artifacts: BTreeMap<String, PathBuf>,
    ids: HashMap<String, JobId>,
) {
    let began = Instant::now();
    let (depend, created) = match &bridge.trigger {
        Some(Trigger::Project { strategy, .. }) => (
            strategy.as_deref() == Some("depend"),
            create_project(&parent, &bridge).await,
        ),
        Some(Trigger::Child { strategy, .. }) => (
            strategy.as_deref() == Some("depend"),
            create(&parent, &bridge, artifacts, ids).await,
        ),
        None => return,
    };
    let child = match created {
        Ok(child) => child,
        Err(e @ ChildError::NotMapped { .. }) => {
            let why = format!("not run: {e}");
            finish(
                &parent,
                &bridge,
                Status::Skipped,
                None,
                why,
                began,
                String::new(),
            );
            return;
        }
        Err(e) => {
            let log = format!("Downstream pipeline can not be created: {e}\n");
            finish(
                &parent,
                &bridge,
                Status::Failed,
                Some(e.failure_reason()),
                e.to_string(),
                began,
                log,
            );
            return;
        }
    };
    let created = format!(
        "Created downstream pipeline #{} ({} jobs)\n",
        child.facts.pipeline_id,
        child.planned.plan.jobs.len()
    );
    parent.lock().children.running.insert(bridge.name.clone());
    if !depend {
        finish(
            &parent,
            &bridge,
            Status::Success,
            None,
            String::new(),
            began,
            created.clone(),
        );
    }
    let status = wait(&child).await;
    let jobs = flattened_jobs(&child, &format!("{}/", bridge.name));
    child.stop.cancel();
    {
        let mut state = parent.lock();
        state.children.jobs.insert(bridge.name.clone(), jobs);
        state.children.running.remove(&bridge.name);
    }
    parent.reports_changed.send_modify(|n| *n += 1);
    parent.wake.notify_one();
    if depend {
        // `Ci::Bridge#inherit_status_from_downstream!`.
        let (mirrored, why) = match status {
            Status::Success | Status::SuccessWithWarnings => (Status::Success, String::new()),
            Status::Canceled => (
                Status::Canceled,
                "the downstream pipeline was canceled".into(),
            ),
            other => (
                Status::Failed,
                format!(
                    "the downstream pipeline {} (strategy: depend)",
                    other.as_str()
                ),
            ),
        };
        let log = format!("{created}Downstream pipeline status: {}\n", status.as_str());
        finish(&parent, &bridge, mirrored, None, why, began, log);
    }
}

/// Plans the child and starts its scheduler.
async fn create(
    parent: &Arc<Shared>,
    bridge: &PlannedJob,
    artifacts: BTreeMap<String, PathBuf>,
    ids: HashMap<String, JobId>,
) -> Result<Arc<Shared>, ChildError> {
    let depth = parent.downstream.depth;
    let creation = {
        let parent = Arc::clone(parent);
        let bridge = bridge.clone();
        tokio::task::spawn_blocking(move || plan_for_run(&parent, &bridge, &artifacts, depth))
            .await
            .map_err(|e| ChildError::NotCreated(vec![e.to_string()]))?
    };
    let (PlannedChild { mut planned, event }, pipeline_id, dir) = creation?;
    // `needs:pipeline:job`: artifacts of the parent's jobs, fetched by their ids.
    let mut seeded = HashMap::new();
    for job in &mut planned.plan.jobs {
        for need in &job.pipeline_needs {
            if let Some(id) = ids.get(need) {
                seeded.insert(need.clone(), *id);
                if !job.dependencies.contains(need) {
                    job.dependencies.push(need.clone());
                }
            }
        }
    }
    let mut facts = parent.facts.clone();
    facts.pipeline_id = pipeline_id;
    facts.predefined = planned.predefined.clone();
    facts.event = event;
    let opts = parent.downstream.opts.clone();
    Ok(start_pipeline(
        parent,
        bridge,
        planned,
        facts,
        dir,
        // A child runs its parent's project and ref, and GitLab's loop check leaves it out.
        Downstream::new(opts, depth + 1, parent.downstream.chain.clone()),
        seeded,
    ))
}

/// Plans a multi-project trigger's pipeline from the mapped checkout, snapshots that
/// checkout into the served repositories under the new pipeline's id and starts it.
async fn create_project(
    parent: &Arc<Shared>,
    bridge: &PlannedJob,
) -> Result<Arc<Shared>, ChildError> {
    let creation = {
        let parent = Arc::clone(parent);
        let bridge = bridge.clone();
        tokio::task::spawn_blocking(move || plan_project_for_run(&parent, &bridge))
            .await
            .map_err(|e| ChildError::NotCreated(vec![e.to_string()]))?
    };
    let (planned, facts, opts, dir) = creation?;
    let mut chain = parent.downstream.chain.clone();
    chain.push((planned.loaded.facts.project.path(), facts.ref_name.clone()));
    Ok(start_pipeline(
        parent,
        bridge,
        planned,
        facts,
        dir,
        // A project's pipeline starts a hierarchy of its own (the depth counts ancestors
        // of the same project).
        Downstream::new(opts, 0, chain),
        HashMap::new(),
    ))
}

fn plan_project_for_run(
    parent: &Shared,
    bridge: &PlannedJob,
) -> Result<(Planned, PipelineFacts, PipelineOptions, PathBuf), ChildError> {
    let not_created = |e: String| ChildError::NotCreated(vec![e]);
    let home = data_home(parent)?;
    if let Some(Trigger::Project { project, .. }) = &bridge.trigger {
        if !parent.downstream.opts.project_map.contains_key(project) {
            return Err(ChildError::NotMapped {
                project: project.clone(),
            });
        }
    }
    crate::pipeline::child::check_loop(&parent.downstream.chain)?;
    let pipeline_id = home::next_pipeline_id(&home).map_err(|e| not_created(e.to_string()))?;
    let PlannedProject { mut opts, planned } = plan_project(&ChildSource {
        opts: &parent.downstream.opts,
        parent: &parent.planned,
        parent_depth: parent.downstream.depth,
        bridge,
        artifacts: None,
        pipeline_id,
    })?;
    let refs = PipelineRef::of(&opts.event, &planned);
    let request = SnapshotRequest {
        pipeline_id,
        branch: refs.branch.clone(),
        tag: refs.tag.clone(),
        merge_request_iid: None,
    };
    let snapshot = crate::git::snapshot(&planned.loaded.repo, &home, &request)
        .map_err(|e| not_created(e.to_string()))?;
    // Planned again as the run plans its own pipeline: this server, this commit.
    opts.server_url = parent.server.url().to_string();
    opts.registry = parent
        .planned
        .predefined
        .iter()
        .find(|(k, _)| k == "CI_REGISTRY")
        .map(|(_, v)| v.clone());
    opts.commit_sha = Some(snapshot.sha.clone());
    let planned = crate::pipeline::replan(&opts, &planned)
        .map_err(|e| ChildError::NotCreated(e.messages()))?;
    parent
        .server
        .add_repository(&planned.loaded.facts.project.path(), &snapshot.bare_repo)
        .map_err(|e| not_created(e.to_string()))?;
    let mut facts = job_facts(
        &opts,
        &planned,
        &snapshot,
        pipeline_id,
        refs,
        parent.server.url(),
    );
    facts.registry_login = parent.facts.registry_login.clone();
    let dir = home.join("pipelines").join(pipeline_id.to_string());
    Ok((planned, facts, opts, dir))
}

/// The data directory: a pipeline's directory is `<home>/pipelines/<id>`.
fn data_home(parent: &Shared) -> Result<PathBuf, ChildError> {
    parent
        .dir
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .ok_or_else(|| ChildError::NotCreated(vec!["no data directory".into()]))
}

/// Starts the scheduler of a downstream pipeline `bridge` created, its jobs reported to
/// `parent` as `<bridge>/<job>`.
fn start_pipeline(
    parent: &Arc<Shared>,
    bridge: &PlannedJob,
    planned: Planned,
    facts: PipelineFacts,
    dir: PathBuf,
    downstream: Downstream,
    seeded: HashMap<String, JobId>,
) -> Arc<Shared> {
    let wanted: HashSet<String> = planned.plan.jobs.iter().map(|j| j.name.clone()).collect();
    let (reports_changed, _) = watch::channel(0);
    let child = Arc::new(Shared {
        server: Arc::clone(&parent.server),
        planned,
        facts,
        options: parent.options.clone(),
        observer: Arc::new(Nested {
            parent: Arc::downgrade(parent),
            prefix: format!("{}/", bridge.name),
        }),
        runner_config: parent.runner_config.clone(),
        dir,
        state: Mutex::new(State {
            wanted,
            ids: seeded,
            canceling: parent.lock().canceling,
            ..State::default()
        }),
        wake: Notify::new(),
        reports_changed,
        workers_done: Arc::clone(&parent.workers_done),
        stop: parent.stop.child_token(),
        downstream,
    });
    let task = tokio::spawn(schedule(Arc::clone(&child)));
    parent.downstream.started().push((Arc::clone(&child), task));
    child
}

/// The blocking part of creating a child: its pipeline id (and directory), its plan, and its
/// persistent ref in the served repository.
fn plan_for_run(
    parent: &Shared,
    bridge: &PlannedJob,
    artifacts: &BTreeMap<String, PathBuf>,
    depth: usize,
) -> Result<(PlannedChild, u64, PathBuf), ChildError> {
    let not_created = |e: String| ChildError::NotCreated(vec![e]);
    // The data directory holds `pipelines/<id>/`: a child takes the next id like any pipeline.
    let home = data_home(parent)?;
    let pipeline_id = if depth + 1 > crate::pipeline::child::MAX_DEPTH {
        0
    } else {
        home::next_pipeline_id(&home).map_err(|e| not_created(e.to_string()))?
    };
    let planned = plan_child(&ChildSource {
        opts: &parent.downstream.opts,
        parent: &parent.planned,
        parent_depth: depth,
        bridge,
        artifacts: Some(artifacts),
        pipeline_id,
    })?;
    let commit = &parent.facts.commit;
    crate::git::add_pipeline_ref(commit.repo(), pipeline_id, commit.sha())
        .map_err(|e| not_created(e.to_string()))?;
    Ok((
        planned,
        pipeline_id,
        home.join("pipelines").join(pipeline_id.to_string()),
    ))
}

/// Waits until every job of `child` (and every child of its own) has its report; the
/// child's pipeline status.
async fn wait(child: &Arc<Shared>) -> Status {
    let mut changed = child.reports_changed.subscribe();
    loop {
        {
            let state = child.lock();
            let plan = &child.planned.plan;
            if plan
                .jobs
                .iter()
                .all(|j| state.reports.contains_key(&j.name))
                && state.children.all_finished()
            {
                if state.canceling {
                    return Status::Canceled;
                }
                return status::propagate(plan, &state.outcomes).pipeline;
            }
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = child.stop.cancelled() => return Status::Canceled,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The child's job names under `prefix`, plan order, each nested child's after its trigger.
fn flattened_jobs(child: &Shared, prefix: &str) -> Vec<String> {
    let state = child.lock();
    let mut out = Vec::new();
    for job in &child.planned.plan.jobs {
        out.push(format!("{prefix}{}", job.name));
        for nested in state.children.jobs_of(&job.name) {
            out.push(format!("{prefix}{nested}"));
        }
    }
    out
}

/// The trigger job's final report.
fn finish(
    parent: &Shared,
    bridge: &PlannedJob,
    status: Status,
    failure_reason: Option<&str>,
    why: String,
    began: Instant,
    log: String,
) {
    let outcome = Outcome::new(status);
    let mut report = not_run(bridge, status, (!why.is_empty()).then_some(why));
    report.attempts = 1;
    report.duration = began.elapsed();
    report.log = log;
    report.failure_reason = match (status, failure_reason) {
        (Status::Failed, Some(r)) => Some(r.to_string()),
        (Status::Failed, None) => Some("unknown_failure".to_string()),
        _ => None,
    };
    report.allowed_failure =
        matches!(status, Status::Failed | Status::Canceled) && status::allowed(bridge, outcome);
    {
        let mut state = parent.lock();
        state.children.bridges.remove(&bridge.name);
        state.outcomes.insert(bridge.name.clone(), outcome);
        parent.add_report(&mut state, report);
    }
    parent.wake.notify_one();
}

/// Cancels the running jobs of every child started from `shared`, and theirs (first
/// Ctrl-C), or drops them (`abort`).
pub(super) fn cancel_children(shared: &Shared, abort: bool) {
    let children: Vec<Arc<Shared>> = shared
        .downstream
        .started()
        .iter()
        .map(|(c, _)| Arc::clone(c))
        .collect();
    for child in children {
        let ids: Vec<JobId> = {
            let mut state = child.lock();
            state.canceling = true;
            state.aborted |= abort;
            state.in_flight.keys().copied().collect()
        };
        for id in ids {
            if abort {
                child.server.abort(id);
            } else {
                child.server.cancel(id);
            }
        }
        child.wake.notify_one();
        cancel_children(&child, abort);
    }
}

/// Waits for the schedulers of every child started from `shared` (they end with the
/// session's stop token) and lets go of them.
pub(super) async fn shut_down_children(shared: &Shared) {
    let started: Vec<(Arc<Shared>, JoinHandle<()>)> =
        shared.downstream.started().drain(..).collect();
    for (child, task) in started {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        Box::pin(shut_down_children(&child)).await;
    }
}

/// A child's observer: its jobs are the parent's `<trigger>/<job>`.
struct Nested {
    parent: Weak<Shared>,
    prefix: String,
}

impl Nested {
    fn name(&self, job: &str) -> String {
        format!("{}{job}", self.prefix)
    }
}

impl RunObserver for Nested {
    fn job_started(&self, job: &str) {
        if let Some(parent) = self.parent.upgrade() {
            parent.observer.job_started(&self.name(job));
        }
    }

    fn job_log(&self, job: &str, chunk: &[u8]) {
        if let Some(parent) = self.parent.upgrade() {
            parent.observer.job_log(&self.name(job), chunk);
        }
    }

    fn job_finished(&self, report: &JobReport) {
        if let Some(parent) = self.parent.upgrade() {
            let mut report = report.clone();
            report.name = self.name(&report.name);
            let mut state = parent.lock();
            parent.add_report(&mut state, report);
        }
    }

    fn job_retried(&self, job: &str, attempt: u32) {
        if let Some(parent) = self.parent.upgrade() {
            parent.observer.job_retried(&self.name(job), attempt);
        }
    }

    fn warning(&self, message: &str) {
        if let Some(parent) = self.parent.upgrade() {
            parent.observer.warning(message);
        }
    }
}
