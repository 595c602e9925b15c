//! The session API: start a pipeline, ask for jobs, cancel, shut down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::docker::{self, DockerError, Engine, HostAddress, Owner};
use crate::git::{self, GitError, SnapshotRequest};
use crate::plan::predefined::{self, PipelineContext};
use crate::plan::status::{self, Status};
use crate::plan::PipelineSource;
use crate::relay::{self, Relay, RelayError};
use crate::runner::api::RunnerApi;
use crate::runner::cache::CacheConfig;
use crate::runner::executor::{CleanupTasks, ExecutorOptions};
use crate::runner::worker::serve;
use crate::server::{JobId, ProjectSpec, RefType, Server, ServerConfig, ServerError};

use crate::pipeline::home;
use crate::pipeline::staging;
use crate::pipeline::{plan, replan, PipelineError, PipelineOptions, Planned};

use super::options::RunOptions;
use super::report::{JobReport, RunObserver, RunReport};
use super::scheduler::{closure, schedule, sub_plan};
use super::{Shared, SpecFacts, State};

/// Why a pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Docker(#[from] DockerError),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("{0}")]
    Git(#[from] GitError),
    #[error("{0}")]
    Relay(#[from] RelayError),
    #[error("glci data directory: {0}")]
    Home(std::io::Error),
    #[error("no job `{name}` in this pipeline{}", hint(.planned))]
    UnknownJob { name: String, planned: Vec<String> },
    #[error("the pipeline was not created: {0}")]
    NotCreated(String),
}

fn hint(planned: &[String]) -> String {
    if planned.is_empty() {
        String::new()
    } else {
        format!(" (jobs: {})", planned.join(", "))
    }
}

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
        if !draft.plan.created {
            return Err(RunError::NotCreated(
                draft
                    .plan
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no job runs for this event".to_string()),
            ));
        }

        let home = match &options.home {
            Some(dir) => std::fs::create_dir_all(dir).map(|_| dir.clone()),
            None => home::glci_home(),
        }
        .map_err(RunError::Home)?;
        let pipeline_id = home::next_pipeline_id(&home).map_err(RunError::Home)?;
        let dir = home.join("pipelines").join(pipeline_id.to_string());
        let _ = home::prune_pipelines(&home, 20);

        // The pipeline's commit: the working tree as it is now. A handful of git processes,
        // taken while the engine is asked for leftovers and the server starts (they need
        // nothing from each other), so they cost no wall time of their own.
        let event = &opts.event;
        let tag = event.tag.clone();
        let branch = if tag.is_some() {
            None
        } else {
            event
                .branch
                .clone()
                .or_else(|| draft.loaded.facts.branch.clone())
        };
        let snapshot = {
            let repo = draft.loaded.repo.clone();
            let home = home.clone();
            let request = SnapshotRequest {
                pipeline_id,
                branch: branch.clone(),
                tag: tag.clone(),
                merge_request_iid: (event.source == PipelineSource::MergeRequestEvent).then_some(1),
            };
            tokio::task::spawn_blocking(move || git::snapshot(&repo, &home, &request))
        };

        let engine = if options.external_runner {
            None
        } else {
            Some(Engine::connect().await?)
        };
        if let Some(engine) = &engine {
            // Leftovers of runs that died (SIGKILL, power loss) go before anything starts.
            let _ = docker::remove_orphans(engine).await;
        }

        // Jobs reach the server at an address of this host on the engine's bridge; an engine
        // elsewhere cannot reach this host at all, and loopback is no address jobs can use.
        let host_address = match &engine {
            Some(engine) => Some(engine.host_address().await),
            None => None,
        };
        // Jobs on an engine that cannot connect to this host reach the server through a
        // relay container (see `relay`): the server stays on loopback, jobs know it by name.
        let relay_agent = match (&engine, &host_address, options.bind) {
            (Some(engine), Some(address), None) => relay::agent_for(engine, address)?,
            _ => None,
        };
        let bind = match (options.bind, &host_address, &engine) {
            (Some(ip), _, _) => ip,
            (None, _, _) if relay_agent.is_some() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            (None, Some(HostAddress::Bridge(ip)), _) => *ip,
            (None, Some(HostAddress::NotHere { tried }), Some(engine)) => {
                return Err(DockerError::NoHostAddress {
                    endpoint: engine.endpoint().to_string(),
                    tried: tried.clone(),
                }
                .into());
            }
            // An external runner: the bridge when a local engine answers (its jobs likely run
            // there), else loopback for a runner process on this host.
            (None, _, _) => match Engine::connect().await {
                Ok(engine) => match engine.host_address().await {
                    HostAddress::Bridge(ip) => ip,
                    HostAddress::NotHere { .. } => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                },
                Err(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            },
        };
        let mut config = ServerConfig::new(&dir);
        config.bind = bind;
        config.public_host = relay_agent.as_ref().map(|_| relay::SERVER_HOST.to_string());
        config.s3.dir = Some(home.join("cache"));
        // Images persist across runs, like the cache.
        config.registry.dir = Some(home.join("registry"));
        // Generic packages and earlier runs' artifacts are reachable from later pipelines.
        config.api.packages_dir = Some(home.join("packages"));
        config.api.earlier_runs = Some(home.join("pipelines"));
        let server = Server::start(config).await?;

        let snapshot = match snapshot.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                server.shutdown().await;
                return Err(e.into());
            }
            Err(joined) => {
                server.shutdown().await;
                if joined.is_panic() {
                    std::panic::resume_unwind(joined.into_panic());
                }
                // Only when the runtime shuts down under us.
                return Err(RunError::Home(std::io::Error::other(format!(
                    "taking the pipeline's snapshot: {joined}"
                ))));
            }
        };

        let mut real = opts.clone();
        real.server_url = server.url().to_string();
        real.registry = Some(server.registry_credentials().address);
        real.pipeline_id = pipeline_id;
        real.commit_sha = Some(snapshot.sha.clone());
        let planned = match replan(&real, &draft) {
            Ok(p) => p,
            Err(e) => {
                server.shutdown().await;
                return Err(e.into());
            }
        };
        let project_path = planned.loaded.facts.project.path();
        server.add_repository(&project_path, &snapshot.bare_repo)?;

        let var = |key: &str| {
            planned
                .predefined
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let specs = SpecFacts {
            bare_repo: snapshot.bare_repo.clone(),
            commit_files: std::sync::OnceLock::new(),
            pipeline_id,
            project: ProjectSpec {
                id: var("CI_PROJECT_ID")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                path: project_path,
                namespace_id: var("CI_PROJECT_NAMESPACE_ID")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                root_namespace_id: var("CI_PROJECT_ROOT_NAMESPACE_ID")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            },
            ref_name: tag
                .clone()
                .or(branch)
                .or_else(|| var("CI_COMMIT_REF_NAME"))
                .unwrap_or_default(),
            ref_type: if tag.is_some() {
                RefType::Tag
            } else {
                RefType::Branch
            },
            sha: snapshot.sha.clone(),
            before_sha: var("CI_COMMIT_BEFORE_SHA").unwrap_or_else(|| "0".repeat(40)),
            protected: var("CI_COMMIT_REF_PROTECTED").as_deref() == Some("true"),
            user_variables: predefined::user_variables(
                &planned.loaded.facts,
                &PipelineContext::new(server.url()),
            ),
        };

        let (reports_changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            server,
            planned,
            event: opts.event.clone(),
            settings: opts.settings_variables.clone(),
            specs,
            options: options.clone(),
            observer,
            dir,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            reports_changed,
            workers_done: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        });

        let mut tasks = vec![tokio::spawn(schedule(shared.clone()))];
        let cleanup = CleanupTasks::default();
        let owner = Owner::for_this_process(pipeline_id.to_string());
        let guard = CleanupGuard {
            owner_id: engine.as_ref().map(|_| owner.id.clone()),
        };
        let sweep_engine = engine.clone();
        let mut reaper = None;
        // This process reaches the server directly, whatever name jobs know it by.
        let local_url = format!("http://{}", shared.server.local_addr());
        let relay = match (&engine, &relay_agent) {
            (Some(engine), Some(agent)) => {
                match Relay::start(engine, &owner, agent, shared.server.local_addr()).await {
                    Ok(relay) => Some(relay),
                    Err(e) => {
                        shared.stop.cancel();
                        return Err(e.into());
                    }
                }
            }
            _ => None,
        };
        if let Some(engine) = engine {
            let tags: Vec<String> = {
                let mut t: Vec<String> = shared
                    .planned
                    .plan
                    .jobs
                    .iter()
                    .flat_map(|j| j.tags.iter().cloned())
                    .collect();
                t.sort();
                t.dedup();
                t
            };
            // The built-in runner takes every job, tagged or not: it stands for "the
            // project's runners".
            let creds = shared.server.create_runner(&tags, true);
            // Checkouts and jobs' builds directories live with the pipeline, private to this
            // user: removed when the session ends, by the watchdog if the process dies first.
            let staging_root = staging::create(&shared.dir, &owner).ok();
            reaper = docker::Reaper::spawn(&owner, staging_root.as_deref());
            let executor = ExecutorOptions {
                default_image: options.default_image.clone(),
                services_timeout: options.services_timeout,
                keep_failed: options.keep_failed,
                deferred_cleanup: Some(cleanup.clone()),
                source_cache: Some(match &staging_root {
                    Some(root) => crate::runner::sources::SourceCache::in_dir(root.clone()),
                    None => crate::runner::sources::SourceCache::default(),
                }),
                stage_files_by_mount: host_address.as_ref().is_some_and(HostAddress::is_local),
                staging_root: staging_root.clone(),
                // Shared: the cache outlives the per-pipeline runner tokens, so the next run
                // finds it.
                cache: Some(CacheConfig {
                    shared: true,
                    ..CacheConfig::from_server(&crate::server::S3Credentials {
                        server_address: shared.server.local_addr().to_string(),
                        ..shared.server.s3_credentials()
                    })
                }),
                clone_url: (local_url != shared.server.url()).then(|| local_url.clone()),
                relay,
                ..ExecutorOptions::default()
            };
            let engine = Arc::new(engine);
            let owner = Arc::new(owner);
            for _ in 0..options.concurrency.max(1) {
                tasks.push(tokio::spawn(work(
                    shared.clone(),
                    RunnerApi::new(&local_url),
                    creds.token.clone(),
                    engine.clone(),
                    owner.clone(),
                    executor.clone(),
                )));
            }
        }
        Ok(Session {
            shared,
            tasks: Mutex::new(tasks),
            cleanup,
            guard,
            engine: sweep_engine,
            reaper,
        })
    }

    /// The pipeline as planned for the run (with the server's URL and the snapshot's SHA).
    pub fn planned(&self) -> &Planned {
        &self.shared.planned
    }

    pub fn pipeline_id(&self) -> u64 {
        self.shared.specs.pipeline_id
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
    pub async fn job(&self, name: &str) -> Result<JobReport, RunError> {
        self.want(std::slice::from_ref(&name.to_string()))?;
        let mut changed = self.shared.reports_changed.subscribe();
        loop {
            if let Some(report) = self.shared.lock().reports.get(name) {
                return Ok(report.clone());
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
        let closure = closure(&self.shared.planned.plan, &names);
        let mut changed = self.shared.reports_changed.subscribe();
        loop {
            {
                let state = self.shared.lock();
                if closure.iter().all(|n| state.reports.contains_key(n)) {
                    let sub = sub_plan(&self.shared.planned.plan, &closure);
                    let mut status = status::propagate(&sub, &state.outcomes).pipeline;
                    if state.canceling {
                        status = Status::Canceled;
                    }
                    return Ok(RunReport {
                        pipeline_id: self.pipeline_id(),
                        status,
                        jobs: sub
                            .jobs
                            .iter()
                            .filter_map(|j| state.reports.get(&j.name).cloned())
                            .collect(),
                        dir: self.shared.dir.clone(),
                    });
                }
            }
            if changed.changed().await.is_err() {
                return Err(RunError::NotCreated("the session ended".to_string()));
            }
        }
    }

    fn want(&self, names: &[String]) -> Result<(), RunError> {
        self.check_names(names)?;
        {
            let mut state = self.shared.lock();
            for n in names {
                state.wanted.insert(n.clone());
                state.played.insert(n.clone());
            }
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    fn want_unplayed(&self, names: &[String]) -> Result<(), RunError> {
        self.check_names(names)?;
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
        self.cleanup.wait().await;
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
            }
        }
        // Cleaned up (kept containers stay): the watchdog ends without touching anything.
        if let Some(reaper) = self.reaper.take() {
            let _ = tokio::task::spawn_blocking(move || reaper.release()).await;
        }
        let shared = self.shared.clone();
        drop(self);
        if let Ok(shared) = Arc::try_unwrap(shared) {
            shared.server.shutdown().await;
        }
    }
}

impl Session {
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

/// A built-in runner: takes jobs from the server over the runner API and runs them.
async fn work(
    shared: Arc<Shared>,
    api: RunnerApi,
    token: String,
    engine: Arc<Engine>,
    owner: Arc<Owner>,
    executor: ExecutorOptions,
) {
    let stop = shared.stop.clone();
    serve(&api, &token, &engine, &owner, &executor, &stop, &*shared).await;
}
