//! The session API: start a pipeline, ask for jobs, cancel, shut down.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::docker::{self, Engine, Owner};
use crate::plan::status::{self, Status};
use crate::runner::executor::CleanupTasks;
use crate::server::JobId;

use crate::pipeline::staging;
use crate::pipeline::{plan, PipelineOptions, Planned};

use super::child;
use super::error::RunError;
use super::options::RunOptions;
use super::report::{JobReport, RunObserver, RunReport};
use super::scheduler::{closure, schedule, sub_plan};
use super::setup;
use super::{Shared, State};

/// One pipeline being run.
pub struct Session {
    shared: Arc<Shared>,
    /// The scheduler first, then the built-in runners.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Removals of finished jobs' containers, off the jobs' critical path.
    cleanup: CleanupTasks,
    guard: CleanupGuard,
    /// The engine the built-in runner uses (`None` with an external runner), for the final
    /// sweep without connecting again.
    engine: Option<Engine>,
    /// The watchdog that removes the session's objects and staging directory if this
    /// process dies before [`Session::shutdown`] (one per session, with the built-in runner).
    reaper: Option<docker::Reaper>,
}

impl Session {
    /// Plans the pipeline, starts the server and (unless external) the runners. Nothing runs
    /// until [`Session::job`] or [`Session::run`] asks.
    pub async fn start(
        opts: &PipelineOptions,
        options: RunOptions,
        observer: Arc<dyn RunObserver>,
    ) -> Result<Session, RunError> {
        // Configuration errors first: they need neither Docker nor a server.
        let draft = plan(opts)?;
        Session::start_planned(opts, draft, options, observer).await
    }

    /// [`Session::start`] for a pipeline already planned from `opts` (by [`plan`]): the run
    /// plans it again for the real server, pipeline id and snapshot commit without asking
    /// git again.
    pub async fn start_planned(
        opts: &PipelineOptions,
        draft: Planned,
        options: RunOptions,
        observer: Arc<dyn RunObserver>,
    ) -> Result<Session, RunError> {
        // A bad settings file stops the run here, before anything starts (its defaults would
        // otherwise stand in for what the user wrote).
        super::checked_settings()?;
        setup::ensure_created(&draft)?;
        let runner_config = setup::runner_config(&options, &draft, observer.as_ref())?;
        let at = setup::pipeline_home(&options)?;
        let refs = setup::PipelineRef::of(&opts.event, &draft);
        let record = setup::pipeline_record(&at, &draft, &opts.event, &refs);
        let snapshot = setup::spawn_snapshot(&draft, &opts.event, &at, &refs);
        let engine = setup::connect_engine(&options).await?;
        let reach = setup::reach(engine.as_ref(), options.bind).await?;
        let server = setup::start_server(&at, &reach, &options).await?;
        let (snapshot, server) = setup::finish_snapshot(snapshot, server).await?;
        let (planned, server) = setup::replan_for_server(
            opts,
            &draft,
            at.pipeline_id,
            &snapshot,
            server,
            &options.registry,
        )
        .await?;
        let mut facts = setup::job_facts(
            opts,
            &planned,
            &snapshot,
            at.pipeline_id,
            refs,
            server.url(),
        );
        facts.registry_login = setup::registry_login(&options.registry);

        let (reports_changed, _) = watch::channel(0);
        let downstream = child::Downstream::root(opts, &planned, &facts);
        let shared = Arc::new(Shared {
            server: Arc::new(server),
            planned,
            facts,
            options,
            observer,
            runner_config,
            dir: at.dir,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            reports_changed,
            workers_done: Arc::new(Mutex::new(HashMap::new())),
            stop: CancellationToken::new(),
            downstream,
        });

        let mut tasks = vec![tokio::spawn(schedule(shared.clone()))];
        let cleanup = CleanupTasks::default();
        let owner = Owner::for_this_process(at.pipeline_id.to_string());
        let guard = CleanupGuard {
            owner_id: engine.as_ref().map(|_| owner.id.clone()),
        };
        let sweep_engine = engine.clone();
        let runners = match setup::start_runners(&shared, engine, &reach, owner, &cleanup).await {
            Ok(runners) => runners,
            Err(e) => {
                shared.stop.cancel();
                return Err(e);
            }
        };
        tasks.extend(runners.tasks);
        // Once the pipeline exists (a run that could not start leaves no history line).
        setup::write_record(&shared.dir, &record);
        Ok(Session {
            shared,
            tasks: Mutex::new(tasks),
            cleanup,
            guard,
            engine: sweep_engine,
            reaper: runners.reaper,
        })
    }

    /// The pipeline as planned for the run (with the server's URL and the snapshot's SHA).
    pub fn planned(&self) -> &Planned {
        &self.shared.planned
    }

    pub fn pipeline_id(&self) -> u64 {
        self.shared.facts.pipeline_id
    }

    /// The server's base URL (for external runners).
    pub fn server_url(&self) -> &str {
        self.shared.server.url()
    }

    /// The S3 cache endpoint and keys, for an external runner's `[runners.cache.s3]`.
    pub fn s3_credentials(&self) -> crate::server::S3Credentials {
        self.shared.server.s3_credentials()
    }

    /// The legacy registration token external runners register with.
    pub fn registration_token(&self) -> &str {
        self.shared.server.registration_token()
    }

    /// Where this pipeline's logs and artifacts are kept.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Runs `name` and what it needs (its `needs`, or every job of earlier stages), each job
    /// once per session; a manual `name` is played. Returns when the job has its final status.
    /// A child pipeline's job is `<trigger job>/<job>`: its trigger job runs, and the report
    /// comes once the child has run it.
    pub async fn job(&self, name: &str) -> Result<JobReport, RunError> {
        self.want(std::slice::from_ref(&name.to_string()))?;
        let mut changed = self.shared.reports_changed.subscribe();
        loop {
            {
                let state = self.shared.lock();
                if let Some(report) = state.reports.get(name) {
                    return Ok(report.clone());
                }
                if let Some(report) = child::missing_report(&self.shared, &state, name) {
                    return Ok(report);
                }
            }
            if changed.changed().await.is_err() {
                return Err(RunError::NotCreated("the session ended".to_string()));
            }
        }
    }

    /// Runs the named jobs with what they need (all jobs when `names` is empty; manual jobs
    /// are then not played, as on GitLab) and reports the pipeline.
    pub async fn run(&self, names: &[String]) -> Result<RunReport, RunError> {
        let names: Vec<String> = if names.is_empty() {
            self.shared
                .planned
                .plan
                .jobs
                .iter()
                .map(|j| j.name.clone())
                .collect()
        } else {
            names.to_vec()
        };
        let play = !names.is_empty() && names.len() < self.shared.planned.plan.jobs.len();
        if play {
            self.want(&names)?;
        } else {
            self.want_unplayed(&names)?;
        }
        let names: Vec<String> = names.iter().map(|n| self.own_job(n)).collect();
        let closure = closure(&self.shared.planned.plan, &names);
        let mut changed = self.shared.reports_changed.subscribe();
        loop {
            {
                let state = self.shared.lock();
                if closure.iter().all(|n| state.reports.contains_key(n))
                    && state.children.all_finished()
                {
                    let sub = sub_plan(&self.shared.planned.plan, &closure);
                    let mut status = status::propagate(&sub, &state.outcomes).pipeline;
                    if state.canceling {
                        status = Status::Canceled;
                    }
                    return Ok(RunReport {
                        pipeline_id: self.pipeline_id(),
                        status,
                        // Each child pipeline's jobs right after its trigger job.
                        jobs: sub
                            .jobs
                            .iter()
                            .flat_map(|j| {
                                std::iter::once(&j.name).chain(state.children.jobs_of(&j.name))
                            })
                            .filter_map(|n| state.reports.get(n).cloned())
                            .collect(),
                        dir: self.shared.dir.clone(),
                        deployments: state
                            .deployments
                            .iter()
                            .filter(|d| closure.contains(&d.job))
                            .cloned()
                            .collect(),
                    });
                }
            }
            if changed.changed().await.is_err() {
                return Err(RunError::NotCreated("the session ended".to_string()));
            }
        }
    }

    /// The job of this pipeline that runs `name`: itself, or the trigger job of the child
    /// pipeline `name` belongs to.
    fn own_job(&self, name: &str) -> String {
        if self.shared.planned.plan.job(name).is_some() {
            return name.to_string();
        }
        child::root_trigger(&self.shared, name)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| name.to_string())
    }

    fn want(&self, names: &[String]) -> Result<(), RunError> {
        let names: Vec<String> = names.iter().map(|n| self.own_job(n)).collect();
        self.check_names(&names)?;
        {
            let mut state = self.shared.lock();
            for n in &names {
                state.wanted.insert(n.clone());
                state.played.insert(n.clone());
            }
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    fn want_unplayed(&self, names: &[String]) -> Result<(), RunError> {
        let names: Vec<String> = names.iter().map(|n| self.own_job(n)).collect();
        self.check_names(&names)?;
        self.shared.lock().wanted.extend(names.iter().cloned());
        self.shared.wake.notify_one();
        Ok(())
    }

    fn check_names(&self, names: &[String]) -> Result<(), RunError> {
        let plan = &self.shared.planned.plan;
        for n in names {
            if plan.job(n).is_none() {
                return Err(RunError::UnknownJob {
                    name: n.clone(),
                    planned: plan.jobs.iter().map(|j| j.name.clone()).collect(),
                });
            }
        }
        Ok(())
    }

    /// Graceful cancel (first Ctrl-C): no new job starts; running jobs stop their script,
    /// run `after_script` and report back.
    pub fn cancel(&self) {
        let ids: Vec<JobId> = {
            let mut state = self.shared.lock();
            state.canceling = true;
            state.in_flight.keys().copied().collect()
        };
        for id in ids {
            self.shared.server.cancel(id);
        }
        child::cancel_children(&self.shared, false);
        self.shared.wake.notify_one();
    }

    /// Immediate stop (second Ctrl-C): running jobs are dropped where they are; their
    /// containers go with [`Session::shutdown`].
    pub fn abort(&self) {
        {
            let mut state = self.shared.lock();
            state.canceling = true;
            state.aborted = true;
            let ids: Vec<JobId> = state.in_flight.keys().copied().collect();
            for id in ids {
                self.shared.server.abort(id);
            }
        }
        child::cancel_children(&self.shared, true);
        // Workers are dropped mid-job; the scheduler stays to write the reports.
        for task in self.tasks().iter().skip(1) {
            task.abort();
        }
        self.shared.wake.notify_one();
    }

    /// Stops runners, scheduler and server, and removes every Docker object of the session.
    pub async fn shutdown(mut self) {
        self.shared.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = self.tasks().drain(..).collect();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        child::shut_down_children(&self.shared).await;
        self.cleanup.wait().await;
        self.record_end();
        let dir = self.shared.dir.clone();
        let _ = tokio::task::spawn_blocking(move || staging::remove(&dir)).await;
        if let Some(owner) = self.guard.owner_id.take() {
            let kept: Vec<String> = self
                .shared
                .lock()
                .reports
                .values()
                .filter_map(|r| r.kept_container.clone())
                .collect();
            let engine = match self.engine.take() {
                Some(engine) => Ok(engine),
                None => Engine::connect().await,
            };
            if let Ok(engine) = engine {
                let _ = docker::remove_owned_except(&engine, &owner, &kept).await;
                // Images the runner pulled by the registry's loopback name, a name that
                // dies with this run (runner/image_pull.rs).
                if self.shared.server.registry_tls().is_some() {
                    let loopback = self.shared.server.registry_credentials().address;
                    crate::runner::image_pull::forget_pulled_names(&engine, &loopback).await;
                }
            }
        }
        // Cleaned up (kept containers stay): the watchdog ends without touching anything.
        if let Some(reaper) = self.reaper.take() {
            let _ = tokio::task::spawn_blocking(move || reaper.release()).await;
        }
        let shared = self.shared.clone();
        drop(self);
        if let Ok(shared) = Arc::try_unwrap(shared) {
            let server = Arc::clone(&shared.server);
            drop(shared);
            if let Ok(server) = Arc::try_unwrap(server) {
                server.shutdown().await;
            }
        }
    }
}

impl Session {
    /// The pipeline's status as the run ends, into its record (`cargo glci history`): that of
    /// the jobs that ran and what they need, `canceled` after a cancel.
    fn record_end(&self) {
        let status = {
            let state = self.shared.lock();
            if state.canceling {
                Status::Canceled
            } else {
                let plan = &self.shared.planned.plan;
                let ran: Vec<String> = state.reports.keys().cloned().collect();
                status::propagate(&sub_plan(plan, &closure(plan, &ran)), &state.outcomes).pipeline
            }
        };
        if let Err(e) = crate::pipeline::history::finish(&self.shared.dir, status.as_str()) {
            tracing::warn!("pipeline record not finished: {e}");
        }
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        for task in self.tasks().iter() {
            task.abort();
        }
    }
}

/// Removes the session's Docker objects if the session ends without
/// [`Session::shutdown`] (an early return, a panic): on a thread of its own, because a
/// destructor cannot await.
struct CleanupGuard {
    owner_id: Option<String>,
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let Some(owner) = self.owner_id.take() else {
            return;
        };
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(engine) = Engine::connect().await {
                    let _ = docker::remove_owned(&engine, &owner).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
