//! Setting a session up, one named step each, in the order [`Session::start_planned`]
//! (super::Session::start_planned) takes them: the data directory and pipeline id, the
//! snapshot (taken in the background), the engine, how jobs reach the server, the server, the
//! plan again for the real server, the facts every job spec shares, and the built-in runners.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::docker::{self, DockerError, Engine, HostAddress, Owner};
use crate::git::{self, CommitTree, GitError, Snapshot, SnapshotRequest};
use crate::plan::predefined::{self, PipelineContext};
use crate::plan::{Event, PipelineSource};
use crate::relay::{self, Relay};
use crate::runner::api::RunnerApi;
use crate::runner::executor::{CleanupTasks, ExecutorOptions};
use crate::runner::progress::Progress;
use crate::runner::registry_access::RegistryAccess;
use crate::runner::runner_config::{RunnerConfig, RunnerEntry};
use crate::runner::socket;
use crate::runner::sources::SourceCache;
use crate::runner::worker::serve;
use crate::server::{
    ProjectSpec, RefType, RegistryLogin, RegistryTlsConfig, RunningServer, Server, ServerConfig,
};

use crate::pipeline::history::PipelineRecord;
use crate::pipeline::home;
use crate::pipeline::job_spec::PipelineFacts;
use crate::pipeline::staging;
use crate::pipeline::{replan, PipelineOptions, Planned};

use super::error::RunError;
use super::options::{RegistryChoice, RunOptions};
use super::report::ObservedProgress;
use super::runner_cache_config;
use super::Shared;

/// How many earlier pipelines' directories are kept in the data directory.
const PIPELINES_KEPT: usize = 20;

/// Refuses a pipeline GitLab would not create (no job, `workflow:rules`), with its reason.
pub(super) fn ensure_created(draft: &Planned) -> Result<(), RunError> {
    if draft.plan.created {
        return Ok(());
    }
    Err(RunError::NotCreated(
        draft
            .plan
            .reason
            .clone()
            .unwrap_or_else(|| "no job runs for this event".to_string()),
    ))
}

/// The built-in runners' configuration (`--runner-config`, `GLCI_RUNNER_CONFIG` or the
/// project's `.glci/runner.toml`), read before anything starts; its warnings, and socket
/// passthrough's, go to the observer once.
pub(super) fn runner_config(
    options: &RunOptions,
    draft: &Planned,
    observer: &dyn super::RunObserver,
) -> Result<Option<Arc<RunnerConfig>>, RunError> {
    if options.external_runner {
        return Ok(None);
    }
    let config = RunnerConfig::find(
        options.runner_config.as_deref(),
        draft.loaded.repo.top_level(),
    )?;
    if let Some(config) = &config {
        for warning in &config.warnings {
            observer.warning(warning);
        }
        crate::runner::runner_config::refuse_privileged_runners(
            config,
            crate::settings::current(),
        )?;
    }
    let in_job = crate::settings::current().docker_socket_path();
    let socket = options.docker_socket
        || config.as_ref().is_some_and(|c| {
            c.runners
                .iter()
                .any(|r| socket::mounts_socket(&r.docker.volumes, in_job))
        });
    if socket {
        observer.warning(socket::SECURITY_WARNING);
    }
    Ok(config.map(Arc::new))
}

/// The entries glci's runners are made from: the configuration's, with the engine's socket
/// added to each for `--docker-socket` at `socket_path` (one entry standing for glci's default
/// runner when there is no configuration). Empty: glci's default runner.
fn runner_entries(
    config: Option<&RunnerConfig>,
    docker_socket: bool,
    socket_path: &str,
    engine: &Engine,
) -> Vec<RunnerEntry> {
    let mut entries = config.map(|c| c.runners.clone()).unwrap_or_default();
    if docker_socket {
        if entries.is_empty() {
            entries.push(RunnerEntry::default());
        }
        if let Some(volume) = socket::socket_volume(engine, socket_path) {
            for entry in &mut entries {
                if !socket::mounts_socket(&entry.docker.volumes, socket_path) {
                    entry.docker.volumes.push(volume.clone());
                }
            }
        }
    }
    entries
}

/// Where a pipeline keeps what it leaves behind.
pub(super) struct PipelineHome {
    /// glci's data directory (cache, registry, packages, pipelines).
    pub(super) home: PathBuf,
    /// `CI_PIPELINE_ID`: one more than the last pipeline of this data directory.
    pub(super) pipeline_id: u64,
    /// This pipeline's logs and artifacts.
    pub(super) dir: PathBuf,
}

/// The data directory (created if needed), the next pipeline id and its directory; the
/// oldest pipelines' directories beyond [`PIPELINES_KEPT`] go.
pub(super) fn pipeline_home(options: &RunOptions) -> Result<PipelineHome, RunError> {
    let home = match &options.home {
        Some(dir) => std::fs::create_dir_all(dir).map(|_| dir.clone()),
        None => home::glci_home(),
    }
    .map_err(RunError::Home)?;
    let pipeline_id = home::next_pipeline_id(&home).map_err(RunError::Home)?;
    let dir = home.join("pipelines").join(pipeline_id.to_string());
    let _ = home::prune_pipelines(&home, PIPELINES_KEPT);
    Ok(PipelineHome {
        home,
        pipeline_id,
        dir,
    })
}

/// The pipeline's record as it starts (`cargo glci history`), written by [`write_record`].
pub(super) fn pipeline_record(
    at: &PipelineHome,
    draft: &Planned,
    event: &Event,
    refs: &PipelineRef,
) -> PipelineRecord {
    PipelineRecord::starting(
        at.pipeline_id,
        &draft.loaded.facts.top_level,
        event.source.as_str(),
        refs.tag.clone().or_else(|| refs.branch.clone()),
        refs.tag.is_some(),
    )
}

/// Writes the pipeline's record into its directory `dir`; a record that cannot be written
/// costs the history line, not the run.
pub(super) fn write_record(dir: &std::path::Path, record: &PipelineRecord) {
    if let Err(e) = crate::pipeline::history::write(dir, record) {
        tracing::warn!("pipeline record not kept: {e}");
    }
}

/// The ref a pipeline runs for: a tag pipeline has no branch; otherwise the event's branch,
/// else the checkout's.
pub(super) struct PipelineRef {
    pub(super) tag: Option<String>,
    pub(super) branch: Option<String>,
}

impl PipelineRef {
    pub(super) fn of(event: &Event, draft: &Planned) -> PipelineRef {
        let tag = event.tag.clone();
        let branch = if tag.is_some() {
            None
        } else {
            event
                .branch
                .clone()
                .or_else(|| draft.loaded.facts.branch.clone())
        };
        PipelineRef { tag, branch }
    }
}

/// Starts taking the pipeline's commit, the working tree as it is now, on a blocking thread.
/// A handful of git processes, taken while the engine is asked for leftovers and the server
/// starts (they need nothing from each other), so they cost no wall time of their own.
pub(super) fn spawn_snapshot(
    draft: &Planned,
    event: &Event,
    at: &PipelineHome,
    refs: &PipelineRef,
) -> JoinHandle<Result<Snapshot, GitError>> {
    let repo = draft.loaded.repo.clone();
    let home = at.home.clone();
    let request = SnapshotRequest {
        pipeline_id: at.pipeline_id,
        branch: refs.branch.clone(),
        tag: refs.tag.clone(),
        merge_request_iid: (event.source == PipelineSource::MergeRequestEvent).then_some(1),
    };
    tokio::task::spawn_blocking(move || git::snapshot(&repo, &home, &request))
}

/// The engine the built-in runners use (`None` with an external runner), with the leftovers
/// of runs that died (SIGKILL, power loss) removed before anything starts.
pub(super) async fn connect_engine(options: &RunOptions) -> Result<Option<Engine>, RunError> {
    if options.external_runner {
        return Ok(None);
    }
    let engine = Engine::connect().await?;
    let _ = docker::remove_orphans(&engine).await;
    Ok(Some(engine))
}

/// How jobs reach the server.
pub(super) struct Reach {
    /// This host's address as the engine's containers see it (`None` without an engine).
    pub(super) host_address: Option<HostAddress>,
    /// The relay agent binary, when jobs reach the server through a relay container.
    pub(super) relay_agent: Option<PathBuf>,
    /// The address the server listens on.
    pub(super) bind: IpAddr,
    /// The name jobs know the server by, in every URL they are given (`None`: its address):
    /// `[network] container_host`, else [`relay::SERVER_HOST`] when relayed.
    pub(super) server_host: Option<String>,
}

impl Reach {
    /// The `/etc/hosts` entry that makes the configured server name the server's address
    /// in jobs, their services and Docker-in-Docker daemons, as `[network] extra_hosts` does
    /// (`None`: jobs are given the address itself, or the relay answers to the name).
    fn server_host_entry(&self, server: IpAddr) -> Option<String> {
        let name = self.server_host.as_ref()?;
        self.relay_agent
            .is_none()
            .then(|| format!("{name}:{server}"))
    }
}

/// Jobs reach the server at an address of this host on the engine's bridge; an engine
/// elsewhere cannot reach this host at all, and loopback is no address jobs can use. Jobs on
/// an engine that cannot connect to this host reach the server through a relay container
/// (see `relay`): the server stays on loopback, jobs know it by name.
pub(super) async fn reach(
    engine: Option<&Engine>,
    bind: Option<IpAddr>,
) -> Result<Reach, RunError> {
    let host_address = match engine {
        Some(engine) => Some(engine.host_address().await),
        None => None,
    };
    let relay_agent = match (engine, &host_address, bind) {
        (Some(engine), Some(address), None) => relay::agent_for(engine, address)?,
        _ => None,
    };
    let bind = match (bind, &host_address, engine) {
        (Some(ip), _, _) => ip,
        (None, _, _) if relay_agent.is_some() => IpAddr::V4(Ipv4Addr::LOCALHOST),
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
                HostAddress::NotHere { .. } => IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
    };
    let server_host = crate::settings::current()
        .container_host()
        .map(str::to_string)
        .or_else(|| relay_agent.as_ref().map(|_| relay::SERVER_HOST.to_string()));
    Ok(Reach {
        host_address,
        relay_agent,
        bind,
        server_host,
    })
}

/// The mock GitLab for this pipeline, listening where [`reach`] decided.
pub(super) async fn start_server(
    at: &PipelineHome,
    reach: &Reach,
    options: &RunOptions,
) -> Result<RunningServer, RunError> {
    let home = &at.home;
    let mut config = ServerConfig::new(&at.dir);
    config.bind = reach.bind;
    config.public_host = reach.server_host.clone();
    // `[cache]`: kept across runs in GLCI_HOME/cache unless `persistent = false` (then in the
    // pipeline's own directory, gone with it), within the configured size and age.
    let settings = crate::settings::current();
    if settings.cache_persistent() {
        config.s3.dir = Some(home.join("cache"));
    }
    if let Some(max) = settings.cache_max_size() {
        config.s3.max_total_bytes = max;
    }
    if let Some(ttl) = settings.cache_ttl() {
        config.s3.ttl = ttl;
    }
    // Images persist across runs, like the cache.
    config.registry.dir = Some(home.join("registry"));
    // Jobs reach the registry over TLS on the address they reach the server at (see
    // `runner::registry_access`); a relayed server is on loopback, where jobs cannot see it.
    // An external runner neither maps pulls to the loopback listener nor puts glci's CA
    // into its jobs: its engine pulls `$CI_REGISTRY_IMAGE/...` from loopback, as before.
    let served = options.registry == RegistryChoice::Served;
    config.registry.served = served;
    let tls = served && !options.external_runner && reach.relay_agent.is_none();
    if tls && !reach.bind.is_loopback() {
        config.registry.tls = Some(RegistryTlsConfig {
            ca_dir: home.join("registry-ca"),
            port: 0,
            extra_names: crate::settings::current().tls_extra_sans(),
            leaf_validity: crate::settings::current().tls_validity(),
        });
    }
    config.registry.push_through = options.push_through.clone();
    config.registry.upstreams = crate::server::Upstream::configured();
    // Generic packages and earlier runs' artifacts are reachable from later pipelines.
    config.api.packages_dir = Some(home.join("packages"));
    config.api.earlier_runs = Some(home.join("pipelines"));
    Ok(Server::start(config).await?)
}

/// The registry as jobs and the job engine reach it, when jobs reach it over TLS.
pub(super) fn registry_access(server: &RunningServer) -> Option<RegistryAccess> {
    server.registry_tls().map(|tls| RegistryAccess {
        job_address: tls.address.clone(),
        engine_address: server.registry_credentials().address,
        ca_pem: tls.ca_pem.clone(),
    })
}

/// The login jobs get for a real registry used instead of the stand-in's (`None`: the job
/// token, as GitLab gives for its own).
pub(super) fn registry_login(registry: &RegistryChoice) -> Option<RegistryLogin> {
    match registry {
        RegistryChoice::External(external) => Some(RegistryLogin {
            username: external.username.clone(),
            password: external.password.clone(),
        }),
        _ => None,
    }
}

/// The snapshot [`spawn_snapshot`] started. On failure the server is shut down: the session
/// never existed.
pub(super) async fn finish_snapshot(
    snapshot: JoinHandle<Result<Snapshot, GitError>>,
    server: RunningServer,
) -> Result<(Snapshot, RunningServer), RunError> {
    match snapshot.await {
        Ok(Ok(s)) => Ok((s, server)),
        Ok(Err(e)) => {
            server.shutdown().await;
            Err(e.into())
        }
        Err(joined) => {
            server.shutdown().await;
            if joined.is_panic() {
                std::panic::resume_unwind(joined.into_panic());
            }
            // Only when the runtime shuts down under us.
            Err(RunError::Home(std::io::Error::other(format!(
                "taking the pipeline's snapshot: {joined}"
            ))))
        }
    }
}

/// The pipeline planned again for what only the run knows (the server's URL and registry,
/// the pipeline id, the snapshot's commit), without asking git again; its repository is
/// then served under the project's path. On failure the server is shut down.
pub(super) async fn replan_for_server(
    opts: &PipelineOptions,
    draft: &Planned,
    pipeline_id: u64,
    snapshot: &Snapshot,
    server: RunningServer,
    registry: &RegistryChoice,
) -> Result<(Planned, RunningServer), RunError> {
    let mut real = opts.clone();
    real.server_url = server.url().to_string();
    // `CI_REGISTRY` is where jobs reach it: the TLS listener when there is one.
    real.registry = match registry {
        RegistryChoice::Served => Some(match server.registry_tls() {
            Some(tls) => tls.address.clone(),
            None => server.registry_credentials().address,
        }),
        RegistryChoice::Disabled => None,
        RegistryChoice::External(external) => Some(external.address.clone()),
    };
    real.pipeline_id = pipeline_id;
    real.commit_sha = Some(snapshot.sha.clone());
    let planned = match replan(&real, draft) {
        Ok(p) => p,
        Err(e) => {
            server.shutdown().await;
            return Err(e.into());
        }
    };
    server.add_repository(&planned.loaded.facts.project.path(), &snapshot.bare_repo)?;
    Ok((planned, server))
}

/// What every job spec of the pipeline shares, read once from the plan's predefined
/// variables (GitLab's project and ref facts), the snapshot and the pipeline's options.
pub(super) fn job_facts(
    opts: &PipelineOptions,
    planned: &Planned,
    snapshot: &Snapshot,
    pipeline_id: u64,
    refs: PipelineRef,
    server_url: &str,
) -> PipelineFacts {
    let var = |key: &str| {
        planned
            .predefined
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let PipelineRef { tag, branch } = refs;
    PipelineFacts {
        pipeline_id,
        project: ProjectSpec {
            id: var("CI_PROJECT_ID")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            path: planned.loaded.facts.project.path(),
            namespace_id: var("CI_PROJECT_NAMESPACE_ID")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            root_namespace_id: var("CI_PROJECT_ROOT_NAMESPACE_ID")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
        },
        ref_type: if tag.is_some() {
            RefType::Tag
        } else {
            RefType::Branch
        },
        ref_name: tag
            .or(branch)
            .or_else(|| var("CI_COMMIT_REF_NAME"))
            .unwrap_or_default(),
        before_sha: var("CI_COMMIT_BEFORE_SHA").unwrap_or_else(|| "0".repeat(40)),
        protected: var("CI_COMMIT_REF_PROTECTED").as_deref() == Some("true"),
        user_variables: predefined::user_variables(
            &planned.loaded.facts,
            &PipelineContext::new(server_url),
        ),
        event: opts.event.clone(),
        predefined: planned.predefined.clone(),
        settings_variables: opts.settings_variables.clone(),
        commit: CommitTree::new(snapshot.bare_repo.clone(), snapshot.sha.clone()),
        registry_login: None,
    }
}

/// The built-in runners, as [`start_runners`] left them.
pub(super) struct Runners {
    pub(super) tasks: Vec<JoinHandle<()>>,
    /// The watchdog that removes the session's objects and staging directory if this
    /// process dies first.
    pub(super) reaper: Option<docker::Reaper>,
}

/// The relay (when jobs need one) and `options.concurrency` built-in runners on `engine`,
/// registered for every tag of the plan. With an external runner (`engine` is `None`) there
/// is nothing to start.
pub(super) async fn start_runners(
    shared: &Arc<Shared>,
    engine: Option<Engine>,
    reach: &Reach,
    owner: Owner,
    cleanup: &CleanupTasks,
) -> Result<Runners, RunError> {
    let mut runners = Runners {
        tasks: Vec::new(),
        reaper: None,
    };
    let options = &shared.options;
    // This process reaches the server directly, whatever name jobs know it by.
    let local_url = format!("http://{}", shared.server.local_addr());
    let relay = match (&engine, &reach.relay_agent) {
        (Some(engine), Some(agent)) => Some(
            Relay::start(
                engine,
                &owner,
                agent,
                shared.server.local_addr(),
                reach.server_host.as_deref().unwrap_or(relay::SERVER_HOST),
            )
            .await?,
        ),
        _ => None,
    };
    let Some(engine) = engine else {
        return Ok(runners);
    };
    let tags: std::collections::BTreeSet<String> = shared
        .planned
        .plan
        .jobs
        .iter()
        .flat_map(|j| j.tags.iter().cloned())
        .collect();
    // Checkouts and jobs' builds directories live with the pipeline, private to this user:
    // removed when the session ends, by the watchdog if the process dies first.
    let staging_root = staging::create(&shared.dir, &owner).ok();
    runners.reaper = docker::Reaper::spawn(&owner, staging_root.as_deref());
    let mut executor = ExecutorOptions {
        default_image: options.default_image.clone(),
        services_timeout: options.services_timeout,
        keep_failed: options.keep_failed,
        deferred_cleanup: Some(cleanup.clone()),
        source_cache: Some(match &staging_root {
            Some(root) => SourceCache::in_dir(root.clone()),
            None => SourceCache::default(),
        }),
        stage_files_by_mount: reach
            .host_address
            .as_ref()
            .is_some_and(HostAddress::is_local),
        staging_root: staging_root.clone(),
        // Shared: the cache outlives the per-pipeline runner tokens, so the next run finds
        // it.
        cache: Some(runner_cache_config(
            &crate::server::S3Credentials {
                server_address: shared.server.local_addr().to_string(),
                ..shared.server.s3_credentials()
            },
            true,
        )),
        clone_url: (local_url != shared.server.url()).then(|| local_url.clone()),
        relay,
        registry: registry_access(&shared.server),
        progress: Progress::to(Arc::new(ObservedProgress(shared.observer.clone()))),
        ..ExecutorOptions::default()
    };
    executor
        .extra_hosts
        .extend(reach.server_host_entry(shared.server.local_addr().ip()));
    let entries = runner_entries(
        shared.runner_config.as_deref(),
        options.docker_socket,
        &executor.socket_path,
        &engine,
    );
    let concurrent = shared.runner_config.as_ref().and_then(|c| c.concurrent);
    let engine = Arc::new(engine);
    let owner = Arc::new(owner);
    // One runner per `[[runners]]` entry, registered with its tags; without a configuration
    // one runner that takes every job, tagged or not: it stands for "the project's runners".
    let runner_set: Vec<(Vec<String>, bool, usize, ExecutorOptions)> = if entries.is_empty() {
        let workers = options.concurrency.max(1);
        vec![(tags.iter().cloned().collect(), true, workers, executor)]
    } else {
        entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let (tags, run_untagged) = entry.registration(&tags);
                let workers = entry.workers(concurrent, options.concurrency);
                let mut executor = executor.clone();
                if let Some(image) = entry.docker.image.clone().filter(|i| !i.is_empty()) {
                    executor.default_image = image;
                }
                // Each runner its own short token: its jobs' directories in a shared builds
                // directory never meet another runner's.
                executor.identity.short_token = format!("glci{i:05}");
                executor.runner_config = Some(Arc::new(entry));
                (tags, run_untagged, workers, executor)
            })
            .collect()
    };
    for (tags, run_untagged, workers, executor) in runner_set {
        let creds = shared.server.create_runner(&tags, run_untagged);
        for slot in 0..workers {
            let mut executor = executor.clone();
            executor.concurrent_id = slot;
            runners.tasks.push(tokio::spawn(work(
                shared.clone(),
                RunnerApi::new(&local_url),
                creds.token.clone(),
                engine.clone(),
                owner.clone(),
                executor,
            )));
        }
    }
    Ok(runners)
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
