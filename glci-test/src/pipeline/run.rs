//! Running a pipeline for real: the mock GitLab in this process, the working tree's snapshot
//! served over git HTTP, jobs released as GitLab releases them (status propagation, retry,
//! manual, delayed) and taken by runners over the runner API — the built-in ones in this
//! process, or any runner the user points at the server (`external_runner`).
//!
//! A [`Session`] is one pipeline. [`Session::job`] runs one job and what it needs, each job at
//! most once per session, so the test harness can ask for jobs in any order and from any
//! thread; [`Session::run`] runs the whole pipeline (or a selection).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::docker::{self, DockerError, Engine, HostAddress, Owner};
use crate::git::{self, GitError, SnapshotRequest};
use crate::plan::cache_key::KeySource;
use crate::plan::model::When;
use crate::plan::predefined::{self, PipelineContext};
use crate::plan::status::{self, Outcome, Status};
use crate::plan::{Event, PipelineSource, Plan, PlannedJob};
use crate::relay::{self, Relay, RelayError};
use crate::runner::api::RunnerApi;
use crate::runner::cache::CacheConfig;
use crate::runner::executor::JobOutcome;
use crate::runner::executor::{CleanupTasks, ExecutorOptions};
use crate::runner::worker::{serve, WorkerHooks};
use crate::server::{
    JobEvent, JobId, JobState, PackageFile, ProjectSpec, RefType, Release, RunningServer, Server,
    ServerConfig, ServerError,
};

use super::duration::parse_duration;
use super::home;
use super::job_spec::{dependency, job_spec, PipelineFacts};
use super::results;
use super::staging;
use super::{plan, replan, PipelineError, PipelineOptions, Planned, SettingsVariable};

/// How a pipeline is run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Jobs running at once (built-in runners).
    pub concurrency: usize,
    /// Leave the containers of failed jobs for inspection.
    pub keep_failed: bool,
    /// Image for jobs without `image:`: `GLCI_DEFAULT_IMAGE`, else
    /// `glci-fixture/debian:bookworm` (built offline by `scripts/fixture-images`).
    pub default_image: String,
    /// How long services get to accept connections.
    pub services_timeout: Duration,
    /// Wait `start_in` before a delayed job starts (false: start it at once).
    pub wait_delayed: bool,
    /// Start no built-in runner: jobs wait for a runner the user registers.
    pub external_runner: bool,
    /// Address the server listens on; default this host's address on the Docker bridge (see
    /// [`Engine::host_address`]); an error when the engine has none.
    pub bind: Option<IpAddr>,
    /// glci's data directory; default `GLCI_HOME`, else `~/.glci`.
    pub home: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        let executor = ExecutorOptions::default();
        RunOptions {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keep_failed: false,
            default_image: executor.default_image,
            services_timeout: executor.services_timeout,
            wait_delayed: true,
            external_runner: false,
            bind: None,
            home: None,
        }
    }
}

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
}

/// An observer that ignores everything.
pub struct Quiet;
impl RunObserver for Quiet {}

/// One job's result.
#[derive(Debug, Clone)]
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

struct Shared {
    server: RunningServer,
    planned: Planned,
    event: Event,
    settings: Vec<SettingsVariable>,
    specs: SpecFacts,
    options: RunOptions,
    observer: Arc<dyn RunObserver>,
    dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the scheduler (new wanted jobs, timers, cancel).
    wake: Notify,
    /// Bumped whenever a report is added.
    reports_changed: watch::Sender<u64>,
    /// What the built-in runners' workers said when a job ended, by server job id: the
    /// container kept for inspection, if any. The scheduler waits for this before writing
    /// the report of a job a built-in runner ran (the server hears the final state first).
    workers_done: Mutex<HashMap<u64, Option<String>>>,
    stop: CancellationToken,
}

/// What every job spec of the pipeline shares (owned form of [`PipelineFacts`]).
struct SpecFacts {
    /// The snapshot repository, for `cache:key:files`.
    bare_repo: PathBuf,
    /// Every file of the pipeline commit, listed at the first `key:files` cache.
    commit_files: std::sync::OnceLock<Vec<String>>,
    pipeline_id: u64,
    project: ProjectSpec,
    ref_name: String,
    ref_type: RefType,
    sha: String,
    before_sha: String,
    protected: bool,
    user_variables: Vec<(String, String)>,
}

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
}

struct InFlight {
    name: String,
    queued: Instant,
    started: Option<Instant>,
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

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not stop the reports: the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn job(&self, name: &str) -> Option<&PlannedJob> {
        self.planned.plan.job(name)
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
        state.reports.insert(report.name.clone(), report);
        self.reports_changed.send_modify(|n| *n += 1);
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

impl WorkerHooks for Shared {
    fn finished(&self, job_id: u64, _name: &str, outcome: &JobOutcome) {
        self.workers_done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id, outcome.kept_container.clone());
        self.wake.notify_one();
    }
}

/// The scheduler: follows the server's job states, releases jobs as status propagation
/// says, writes reports, streams logs to the observer.
async fn schedule(shared: Arc<Shared>) {
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
fn step(shared: &Shared) {
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
        if release && !state.canceling {
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
    if state.in_flight.is_empty() && !dispatched && !waiting_on_timer {
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
fn reconcile(shared: &Shared, state: &mut State) {
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

fn finished(shared: &Shared, state: &mut State, id: JobId, flight: InFlight, job_state: JobState) {
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
    };
    shared.add_report(state, report);
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

fn dispatch(shared: &Shared, state: &mut State, job: &PlannedJob) {
    let dependencies = job
        .dependencies
        .iter()
        .filter_map(|d| state.ids.get(d).map(|id| dependency(d, *id)))
        .collect();
    let specs = &shared.specs;
    let git = |args: &[&str]| -> Option<Vec<u8>> {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&specs.bare_repo)
            .args(args)
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    };
    let file = |path: &str| git(&["cat-file", "blob", &format!("{}:{path}", specs.sha)]);
    let last_commit = |paths: &[String]| {
        let mut args = vec!["log", "-1", "--format=%H", specs.sha.as_str(), "--"];
        args.extend(paths.iter().map(String::as_str));
        let out = git(&args)?;
        let sha = String::from_utf8_lossy(&out).trim().to_string();
        (!sha.is_empty()).then_some(sha)
    };
    let uses_files = job
        .cache
        .iter()
        .any(|c| !matches!(c.key, crate::plan::model::CacheKey::Literal(_)));
    // The commit's file list (for `key:files` wildcards) is listed once per session.
    let no_files = Vec::new();
    let all_files: &[String] = if uses_files {
        specs.commit_files.get_or_init(|| {
            git(&["ls-tree", "-r", "--name-only", "-z", &specs.sha])
                .map(|out| {
                    String::from_utf8_lossy(&out)
                        .split('\0')
                        .filter(|f| !f.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        })
    } else {
        &no_files
    };
    let key_source = KeySource {
        file: &file,
        all_files,
        last_commit: &last_commit,
    };
    let facts = PipelineFacts {
        key_source: &key_source,
        pipeline_id: shared.specs.pipeline_id,
        project: shared.specs.project.clone(),
        event: &shared.event,
        ref_name: shared.specs.ref_name.clone(),
        ref_type: shared.specs.ref_type,
        sha: shared.specs.sha.clone(),
        before_sha: shared.specs.before_sha.clone(),
        protected: shared.specs.protected,
        predefined: &shared.planned.predefined,
        user_variables: &shared.specs.user_variables,
        settings_variables: &shared.settings,
    };
    let spec = job_spec(job, &facts, dependencies);
    match shared.server.enqueue(spec) {
        Ok(id) => {
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

fn not_run(job: &PlannedJob, status: Status, why: Option<String>) -> JobReport {
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
fn closure(plan: &Plan, names: &[String]) -> HashSet<String> {
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
fn sub_plan(plan: &Plan, names: &HashSet<String>) -> Plan {
    let mut sub = plan.clone();
    sub.jobs.retain(|j| names.contains(&j.name));
    sub
}
