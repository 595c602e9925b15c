//! One job, start to end, as the official Docker executor runs it: the stages and section
//! names of docs/runner-contract.md §5.2, its messages, its failure reasons; and cleanup of every
//! container and network of the job on every path.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::query_parameters::InspectContainerOptions;
use tokio_util::sync::CancellationToken;

use crate::docker::{create_network, DockerError, Engine, Owner};

use super::api::ApiError;
use super::archive::{self, Selection, TarStream};
use super::build_container::{ContainerConfig, JobContainer, StageEnd};
use super::buildx::{self, JobDaemon};
use super::cache::{CacheConfig, JobCache, ProjectFiles};
use super::dind::{self, DindOptions, DindService};
use super::image_pull;
use super::job_variables::{job_variables, service_variables, RunnerIdentity};
use super::payload::{Artifact, Dependency, JobPayload, JobVariable};
use super::progress::{Direction, JobProgress, Progress, Transfer};
use super::registry_trust::{inject_ca, write_files, FileEntry};
use super::runner_config::{configure_job, BuildsPlacement};
use super::services::{service_aliases, service_slug, wait_for_ports};
use super::shell::{tmp_dir, ScriptVariable, StageScript, SHELL_DETECTOR};
use super::sources;
use super::trace::Trace;

/// What the executor needs from GitLab besides the payload: artifacts of dependencies, and a
/// place to upload the job's own. The runner API client implements it, and its errors are
/// the API's.
pub trait JobIo: Sync {
    /// The artifacts archive (zip) of a dependency.
    fn download_artifacts(
        &self,
        dependency: &Dependency,
    ) -> impl Future<Output = Result<Vec<u8>, ApiError>> + Send;
    /// [`JobIo::download_artifacts`], telling `transfer` the bytes as they arrive (by
    /// default it hears nothing).
    fn download_artifacts_counting(
        &self,
        dependency: &Dependency,
        transfer: &mut Transfer,
    ) -> impl Future<Output = Result<Vec<u8>, ApiError>> + Send {
        let _ = transfer;
        self.download_artifacts(dependency)
    }
    /// Uploads one artifact archive of this job.
    fn upload_artifacts(
        &self,
        artifact: &Artifact,
        zip: Vec<u8>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// Why a dependency's artifacts did not reach the build container, or one of the job's
/// artifacts did not reach the coordinator. The job's log says it after
/// `Downloading artifacts from coordinator... error: ` or `Uploading artifacts as "…" to
/// coordinator... error: `, as the helper's messages go, and the job fails with
/// `script_failure`.
#[derive(Debug, thiserror::Error)]
enum ArtifactsError {
    #[error(transparent)]
    Coordinator(#[from] ApiError),
    /// A dependency's zip that cannot be unpacked into the project directory.
    #[error(transparent)]
    Unpack(#[from] archive::UnpackError),
    /// The job's `artifacts:` paths, or the archive made of them.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
}

/// Executor settings a user can change.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Image for jobs that name none.
    pub default_image: String,
    /// How long to wait for services to accept connections.
    pub services_timeout: Duration,
    /// Leave the containers of a failed job for inspection.
    pub keep_failed: bool,
    pub identity: RunnerIdentity,
    /// When set, a job's containers and network are removed in the background after the
    /// job reports back (its result does not wait for Docker's slow removals); whoever owns
    /// the set waits for it before declaring the run clean. `None`: removed before
    /// [`execute`] returns.
    pub deferred_cleanup: Option<CleanupTasks>,
    /// Checkouts shared by the jobs this executor runs (`None`: every job fetches).
    pub source_cache: Option<sources::SourceCache>,
    /// The S3 cache (`[runners.cache]`); `None`: no shared cache, as a runner without one.
    pub cache: Option<CacheConfig>,
    /// The engine runs on this host and sees its files: a job's build container mounts a host
    /// directory as its builds directory (as the official runner mounts its builds volume),
    /// and the sources are copied there while the container starts, instead of going in as a
    /// tar the engine extracts (about 80 ms less per job). Only when glci runs as root, so
    /// that the files are root's as on GitLab and glci can remove what the job writes;
    /// `keep_failed` runs still use the tar (a kept container outlives the directory).
    pub stage_files_by_mount: bool,
    /// Where builds directories are made (`None`: the system's temporary directory).
    pub staging_root: Option<std::path::PathBuf>,
    /// The relay jobs reach the server through, on engines that cannot connect to this host
    /// (see [`crate::relay`]): on the default network through an `/etc/hosts` entry, on a
    /// job's own network by joining it under the server's host name.
    pub relay: Option<crate::relay::Relay>,
    /// Where this runner fetches the sources when the server URL jobs get is not reachable
    /// from here (it names the relay); the checkout's `origin` stays the jobs' URL. As
    /// gitlab-runner's `clone_url`, for the runner's own fetch only.
    pub clone_url: Option<String>,
    /// The stand-in's registry as jobs and the engine reach it (`None`: no registry served,
    /// or one that needs no translation).
    pub registry: Option<super::registry_access::RegistryAccess>,
    /// Which services are Docker-in-Docker daemons and how they may start (see
    /// [`super::dind`]).
    pub dind: DindOptions,
    /// This runner's `[[runners]]` entry of a runner configuration (`config.toml`): builds
    /// directory, environment, build scripts, `[runners.docker]` (see
    /// [`super::runner_config`]). `None`: glci's defaults.
    pub runner_config: Option<std::sync::Arc<super::runner_config::RunnerEntry>>,
    /// This worker's slot among its runner's (gitlab-runner's concurrent id): names the job's
    /// directory in a builds directory shared with the host.
    pub concurrent_id: usize,
    /// Where image pulls, readiness waits and large cache and artifact transfers report
    /// their progress (never into the job log; see [`super::progress`]).
    pub progress: Progress,
    /// `/etc/hosts` entries (`name:address`) of every job and service container, as
    /// gitlab-runner's `[runners.docker] extra_hosts` (default: glci's settings' `[network]
    /// extra_hosts`; a runner configuration's own are added to these).
    pub extra_hosts: Vec<String>,
    /// Where a job given the engine's socket finds it (`[docker] socket_path`, default
    /// [`super::socket::SOCKET_IN_JOB`]).
    pub socket_path: String,
}

impl ExecutorOptions {
    /// What of these options a runner configuration's builds directory depends on.
    pub fn builds_placement(&self) -> BuildsPlacement<'_> {
        BuildsPlacement {
            socket_path: &self.socket_path,
            host_staging: self
                .staging_root
                .as_deref()
                .filter(|_| self.stage_files_by_mount && !self.keep_failed),
            short_token: &self.identity.short_token,
            concurrent_id: self.concurrent_id,
        }
    }
}

/// Background removals of finished jobs' containers and networks.
#[derive(Debug, Clone, Default)]
pub struct CleanupTasks(std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl CleanupTasks {
    fn push(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Waits until every removal started so far has finished.
    pub async fn wait(&self) {
        let tasks: Vec<_> = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        ExecutorOptions {
            // `[images] default` (`GLCI_DEFAULT_IMAGE`), else the offline fixture image with
            // bash and git.
            default_image: crate::settings::current().default_image(),
            services_timeout: Duration::from_secs(30),
            keep_failed: false,
            identity: RunnerIdentity::default(),
            deferred_cleanup: None,
            source_cache: None,
            cache: None,
            stage_files_by_mount: false,
            staging_root: None,
            relay: None,
            clone_url: None,
            registry: None,
            dind: DindOptions::default(),
            runner_config: None,
            concurrent_id: 0,
            progress: Progress::default(),
            extra_hosts: crate::settings::current().extra_hosts(),
            socket_path: crate::settings::current().docker_socket_path().to_string(),
        }
    }
}

/// How a job ended, as the final `PUT /jobs/:id` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub success: bool,
    /// GitLab failure reason (`script_failure`, `job_execution_timeout`, …).
    pub failure_reason: Option<String>,
    pub exit_code: Option<i64>,
    /// The build container kept for inspection (`keep_failed`).
    pub kept_container: Option<String>,
    /// Containers the job started through the engine's socket and left running (see
    /// [`super::socket::left_running`]).
    pub left_running: Vec<String>,
}

impl JobOutcome {
    fn success() -> JobOutcome {
        JobOutcome {
            success: true,
            failure_reason: None,
            exit_code: None,
            kept_container: None,
            left_running: Vec::new(),
        }
    }
    fn failed(reason: FailureReason, exit_code: Option<i64>) -> JobOutcome {
        JobOutcome {
            success: false,
            failure_reason: Some(reason.as_str().to_string()),
            exit_code,
            kept_container: None,
            left_running: Vec::new(),
        }
    }
}

/// The failure reasons this executor reports, as GitLab names them (`failure_reason` of the
/// final `PUT /jobs/:id`; gitlab-runner's `JobFailureReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureReason {
    /// The script, the sources, a pull or the artifacts failed: the job's own failure.
    ScriptFailure,
    /// The runner or the engine failed, not the job.
    RunnerSystemFailure,
    JobExecutionTimeout,
    JobCanceled,
}

impl FailureReason {
    fn as_str(self) -> &'static str {
        match self {
            FailureReason::ScriptFailure => "script_failure",
            FailureReason::RunnerSystemFailure => "runner_system_failure",
            FailureReason::JobExecutionTimeout => "job_execution_timeout",
            FailureReason::JobCanceled => "job_canceled",
        }
    }
}

/// A failure that ends the job before or outside the script.
struct Failure {
    reason: FailureReason,
    message: String,
}

impl Failure {
    fn system(e: impl std::fmt::Display) -> Failure {
        Failure {
            reason: FailureReason::RunnerSystemFailure,
            message: e.to_string(),
        }
    }
}

/// Everything created for one job, removed at the end.
struct JobResources {
    network: Option<String>,
    containers: Vec<JobContainer>,
    /// The host directory the build container mounts (see [`BuildsDir`]).
    builds_dir: Option<BuildsDir>,
    /// The relay, joined to `network`: it leaves before the network is removed.
    relay: Option<crate::relay::Relay>,
    /// Volumes (Docker-in-Docker storage and certificates), removed after the containers.
    volumes: Vec<String>,
}

/// A job's builds directory on the host, mounted at `/builds` in its build container: the
/// project directory and its `.tmp` made as the official helper makes them (root's, mode
/// 0777, under `umask 0000`), the sources copied in before the script runs, the job's writes
/// landing here. Removed with the job.
struct BuildsDir {
    /// The directory mounted as the builds directory (`None`: a builds directory shared with
    /// the host, mounted by the runner's configuration; see [`super::socket::SharedBuilds`]).
    dir: Option<tempfile::TempDir>,
    /// The project directory inside it.
    project: std::path::PathBuf,
    /// What goes with the job in a shared builds directory: the project directory and its
    /// `.tmp`.
    shared_paths: Vec<std::path::PathBuf>,
}

impl BuildsDir {
    /// The job's directories in a builds directory shared with the host (`builds_root` in
    /// the job is `on_host` there), made as [`BuildsDir::new`] makes them; whatever an earlier
    /// job left in the project directory goes first.
    fn shared(on_host: &Path, builds_root: &str, project_dir: &str) -> std::io::Result<BuildsDir> {
        let on_host_path = |container_path: &str| {
            let relative = container_path
                .strip_prefix(builds_root)
                .unwrap_or(container_path);
            on_host.join(relative.trim_matches('/'))
        };
        let project = on_host_path(project_dir);
        let tmp = on_host_path(&tmp_dir(project_dir));
        for dir in [&project, &tmp] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)?;
            }
            std::fs::create_dir_all(dir)?;
            sources::set_mode(dir, 0o777)?;
        }
        Ok(BuildsDir {
            dir: None,
            shared_paths: vec![project.clone(), tmp],
            project,
        })
    }

    /// Fails too when files made here are not root's: the container would see another owner
    /// than on GitLab, and glci could not remove what the job writes as root.
    fn new(
        root: Option<&Path>,
        builds_root: &str,
        project_dir: &str,
    ) -> std::io::Result<BuildsDir> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("glci-job-");
        let dir = match root {
            Some(root) => builder.tempdir_in(root)?,
            None => builder.tempdir()?,
        };
        if !sources::owned_by_root(dir.path())? {
            return Err(std::io::Error::other("glci does not run as root"));
        }
        sources::set_mode(dir.path(), 0o755)?;
        let on_host = |container_path: &str| {
            let relative = container_path
                .strip_prefix(builds_root)
                .unwrap_or(container_path);
            dir.path().join(relative.trim_matches('/'))
        };
        let project = on_host(project_dir);
        // Each directory down to the project's, and its `.tmp`.
        let mut made = dir.path().to_path_buf();
        for part in project.strip_prefix(dir.path()).unwrap_or(&project) {
            made.push(part);
            std::fs::create_dir(&made)?;
            sources::set_mode(&made, 0o777)?;
        }
        let tmp = on_host(&tmp_dir(project_dir));
        std::fs::create_dir(&tmp)?;
        sources::set_mode(&tmp, 0o777)?;
        Ok(BuildsDir {
            dir: Some(dir),
            project,
            shared_paths: Vec::new(),
        })
    }
}

/// Runs the job. Never panics on bad input; every Docker object it made is removed before it
/// returns (unless kept for inspection after a failure).
pub async fn execute(
    engine: &Engine,
    owner: &Owner,
    payload: &JobPayload,
    io: &impl JobIo,
    trace: &Trace,
    options: &ExecutorOptions,
    cancel: &CancellationToken,
) -> JobOutcome {
    let started = Instant::now();
    // A runner configuration's builds directory and environment (runner/runner_config.rs).
    let configured = options
        .runner_config
        .as_deref()
        .map(|entry| configure_job(payload, entry, &options.builds_placement()));
    let payload = configured.as_ref().unwrap_or(payload);
    let identity = &options.identity;
    trace.line(&format!(
        "Running with {} {} ({})",
        identity.name, identity.version, identity.revision
    ));
    trace.line(&format!("  on {} {}", identity.name, identity.short_token));
    let mut resources = JobResources {
        network: None,
        containers: Vec::new(),
        builds_dir: None,
        relay: None,
        volumes: Vec::new(),
    };
    let result = run_stages(
        engine,
        owner,
        payload,
        io,
        trace,
        options,
        cancel,
        started,
        &mut resources,
    )
    .await;
    let mut outcome = match result {
        Ok(outcome) => outcome,
        Err(f) if f.reason == FailureReason::RunnerSystemFailure => {
            trace.error(&format!("Job failed (system failure): {}", f.message));
            JobOutcome::failed(f.reason, None)
        }
        Err(f) => {
            trace.error(&format!("Job failed: {}", f.message));
            JobOutcome::failed(f.reason, None)
        }
    };
    if !outcome.success && options.keep_failed {
        outcome.kept_container = resources.containers.first().map(|c| c.name.clone());
    } else if let Some(tasks) = &options.deferred_cleanup {
        // A builds directory shared with the host gives the next job the same project
        // directory (gitlab-runner's `<token>/<concurrent id>/<project>` layout): this job's
        // must be gone before the next one starts there, not removed under it later.
        if let Some(builds) = resources.builds_dir.as_mut().filter(|b| b.dir.is_none()) {
            let dirs = std::mem::take(&mut builds.shared_paths);
            let _ = tokio::task::spawn_blocking(move || {
                for dir in dirs {
                    let _ = std::fs::remove_dir_all(dir);
                }
            })
            .await;
        }
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            remove_resources(&engine, &resources).await;
        }));
    } else {
        remove_resources(engine, &resources).await;
    }
    outcome
}

/// get_sources, restore_cache and download_artifacts: the job's files copied into the build
/// container, or the sources copied to `host_project_dir` (the project directory in the job's
/// [`BuildsDir`]). `Ok(Err(outcome))` when the job fails here (as a script failure, like the
/// official runner); `Ok(Ok(checkout))` when the script can run.
async fn prepare_files(
    payload: &JobPayload,
    io: &impl JobIo,
    trace: &Trace,
    options: &ExecutorOptions,
    job_cache: &JobCache<'_>,
    build_files: &BuildFiles<'_>,
    host_project_dir: Option<&Path>,
) -> Result<Result<sources::Checkout, JobOutcome>, Failure> {
    let BuildFiles { engine, build, .. } = *build_files;
    let project_dir = payload.project_dir();
    // get_sources
    trace.section_start("get_sources", "Getting source from Git repository");
    let cache = options.source_cache.as_ref();
    let clone_url = options.clone_url.as_deref();
    let sources = match host_project_dir {
        Some(dir) => sources::sources_into(payload, trace, cache, dir, clone_url)
            .await
            .map(|checkout| (None, checkout)),
        None => sources::sources_tar(payload, trace, cache, clone_url)
            .await
            .map(|(tar, checkout)| (Some(tar), checkout)),
    };
    let (tar, checkout) = match sources {
        Ok(s) => s,
        Err(e) => {
            trace.section_end("get_sources");
            trace.error(&format!("Job failed: {e}"));
            return Ok(Err(JobOutcome::failed(FailureReason::ScriptFailure, None)));
        }
    };
    if let Some(tar) = tar {
        build
            .upload_tar(engine, tar)
            .await
            .map_err(Failure::system)?;
    }
    trace.section_end("get_sources");

    // --- cache: restore_cache (runner/cache.rs) ---
    job_cache.restore(build_files, &project_dir).await;
    // --- end cache ---

    // download_artifacts
    let deps: Vec<&Dependency> = payload.artifact_dependencies().collect();
    if !deps.is_empty() {
        trace.section_start("download_artifacts", "Downloading artifacts");
        for dep in deps {
            trace.line(&format!(
                "Downloading artifacts for {} ({})...",
                dep.name, dep.id
            ));
            let mut transfer = options.progress.for_job(&payload.job_info.name).transfer(
                &format!("artifacts of {}", dep.name),
                Direction::Download,
                None,
            );
            let downloaded = io.download_artifacts_counting(dep, &mut transfer).await;
            transfer.finish();
            let result = downloaded.map_err(ArtifactsError::from).and_then(|zip| {
                archive::zip_to_tar_stream(
                    zip.into(),
                    &project_dir,
                    archive::ExpandLimits::default(),
                )
                .map_err(ArtifactsError::from)
            });
            match result {
                Ok(tar) => {
                    build
                        .upload_tar_stream(engine, tar)
                        .await
                        .map_err(Failure::system)?;
                    trace.line(&format!("Downloading artifacts from coordinator... ok        id={} responseStatus=200 OK", dep.id));
                }
                Err(e) => {
                    trace.section_end("download_artifacts");
                    trace.error(&format!(
                        "Downloading artifacts from coordinator... error: {e}"
                    ));
                    trace.error("Job failed: exit code 1");
                    return Ok(Err(JobOutcome::failed(
                        FailureReason::ScriptFailure,
                        Some(1),
                    )));
                }
            }
        }
        trace.section_end("download_artifacts");
    }

    Ok(Ok(checkout))
}

async fn remove_resources(engine: &Engine, resources: &JobResources) {
    for c in &resources.containers {
        c.remove(engine).await;
    }
    if let Some(net) = &resources.network {
        if let Some(relay) = &resources.relay {
            relay.leave(engine, net).await;
        }
        let _ = engine.client().remove_network(net).await;
    }
    for volume in &resources.volumes {
        let opts = bollard::query_parameters::RemoveVolumeOptionsBuilder::new()
            .force(true)
            .build();
        let _ = engine.client().remove_volume(volume, Some(opts)).await;
    }
    if let Some(builds) = &resources.builds_dir {
        let dirs = match &builds.dir {
            Some(dir) => vec![dir.path().to_path_buf()],
            None => builds.shared_paths.clone(),
        };
        // Deleting a checkout takes tens of milliseconds: not on the async runtime.
        let _ = tokio::task::spawn_blocking(move || {
            for dir in dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        })
        .await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_stages(
    engine: &Engine,
    owner: &Owner,
    payload: &JobPayload,
    io: &impl JobIo,
    trace: &Trace,
    options: &ExecutorOptions,
    cancel: &CancellationToken,
    started: Instant,
    resources: &mut JobResources,
) -> Result<JobOutcome, Failure> {
    let job_timeout = Duration::from_secs(payload.timeout_secs());
    // The runner expands `image:` with the job's variables (`$CI_REGISTRY_IMAGE/...`).
    let image = payload
        .image
        .as_ref()
        .map(|i| expand_with_job_variables(payload, &i.name))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| options.default_image.clone());
    let project_dir = payload.project_dir();
    let prefix = format!("{}-job-{}", owner.name_prefix(), payload.id);
    let entry = options.runner_config.as_deref();
    if let Some(entry) = entry {
        entry.check_image(&image).map_err(Failure::system)?;
    }

    // prepare_executor
    trace.section_start("prepare_executor", "Preparing the \"docker\" executor");
    trace.line(&format!("Using Docker executor with image {image} ..."));
    let mut pull_policy = payload
        .image
        .as_ref()
        .map(|i| i.pull_policy.clone())
        .unwrap_or_default();
    if pull_policy.is_empty() {
        pull_policy = entry
            .map(|e| e.docker.pull_policy.clone())
            .unwrap_or_default();
    }
    let image_reference = ensure_image(
        engine,
        &payload.job_info.name,
        &image,
        &pull_policy,
        payload.registry_credential(&image),
        options,
        trace,
    )
    .await?;
    // A network of its own only when services need one to be reached by alias; a job
    // without services uses the default bridge, as the official runner does (and creating and
    // removing a network costs a quarter of a second).
    let network = if payload.services.is_empty() {
        None
    } else {
        let network = format!("{prefix}-network");
        create_network(engine, owner, &network)
            .await
            .map_err(Failure::system)?;
        resources.network = Some(network.clone());
        if let Some(relay) = &options.relay {
            relay
                .join(engine, &network)
                .await
                .map_err(Failure::system)?;
            resources.relay = Some(relay.clone());
        }
        Some(network)
    };
    let mut variables = job_variables(payload, &options.identity, &image, network.as_deref());
    if let (Some(entry), Some(access)) = (entry, &options.registry) {
        if super::socket::mounts_socket(&entry.docker.volumes, &options.socket_path) {
            access.for_host_engine(&mut variables);
        }
    }
    // `[runners.docker]` for the build container and the services (runner/docker_settings.rs).
    let (build_host, service_host) = match entry {
        Some(entry) => {
            super::privileges::job_host_settings(engine, owner, &image, &entry.docker, trace).await
        }
        None => Default::default(),
    };
    // A runner configuration decides services' privileges, as gitlab-runner's does: a daemon
    // it gives none cannot start, so say so instead of starting a DinD that never answers.
    // (Without a configuration glci gives DinD what it needs, like GitLab's local tool.)
    if let Some(entry) = entry {
        let docker = &entry.docker;
        let service = payload.services.iter().find(|s| options.dind.recognises(s));
        if let (Some(service), false) = (
            service,
            docker.services_privileged.unwrap_or(docker.privileged),
        ) {
            return Err(Failure::system(format!(
                "service {} is Docker-in-Docker, which needs privileges, and the runner configuration gives services none (privileged = false, services_privileged unset or false); set `privileged = true` or `services_privileged = true` under [runners.docker], as gitlab-runner needs too",
                service.name
            )));
        }
    }
    let dinds = match &network {
        Some(network) => {
            start_services(
                engine,
                owner,
                payload,
                &variables,
                network,
                &prefix,
                trace,
                options,
                &service_host,
                resources,
            )
            .await?
        }
        None => Vec::new(),
    };
    variables.extend(dind::job_variables(&dinds, &variables));
    // A job with a Docker daemon gets a buildx configuration directory of its own, whose
    // default BuildKit configuration trusts the registry (runner/buildx.rs).
    let socket = entry
        .is_some_and(|e| super::socket::mounts_socket(&e.docker.volumes, &options.socket_path));
    let job_daemon = match (dinds.is_empty(), socket) {
        (false, _) => Some(JobDaemon::Dind),
        (true, true) => Some(JobDaemon::HostEngine),
        (true, false) => None,
    };
    // A socket away from where Docker clients look needs `DOCKER_HOST`; the job's own wins,
    // and a job with Docker-in-Docker keeps talking to its daemon.
    if job_daemon == Some(JobDaemon::HostEngine)
        && !variables.iter().any(|v| v.key == "DOCKER_HOST")
    {
        let volumes = entry.map_or(&[][..], |e| &e.docker.volumes[..]);
        if let Some(host) = super::socket::docker_host(volumes, &options.socket_path) {
            variables.push(JobVariable {
                key: "DOCKER_HOST".to_string(),
                value: host,
                public: true,
                ..JobVariable::default()
            });
        }
    }
    let buildx_files = match job_daemon.zip(buildx::job_variable(&variables)) {
        Some((daemon, variable)) => {
            variables.push(variable);
            buildx::files(options.registry.as_ref(), daemon)
        }
        None => Vec::new(),
    };
    trace.section_end("prepare_executor");

    // The build container exists from here on; sources and artifacts are copied into it.
    let entrypoint = payload
        .image
        .as_ref()
        .filter(|i| !i.entrypoint.is_empty())
        .map(|i| i.entrypoint.clone());
    let mut build_config = ContainerConfig {
        name: format!("{prefix}-build"),
        image: image_reference,
        entrypoint,
        cmd: vec!["sh".into(), "-c".into(), SHELL_DETECTOR.into()],
        env: variables
            .iter()
            .map(|v| format!("{}={}", v.key, v.value))
            .collect(),
        network: network.clone(),
        stdin: true,
        // On a job network the relay answers to its alias; the default network has no DNS.
        extra_hosts: match (&options.relay, &network) {
            (Some(relay), None) => vec![relay.host_entry()],
            _ => Vec::new(),
        }
        .into_iter()
        .chain(options.extra_hosts.iter().cloned())
        .collect(),
        host: build_host,
        ..Default::default()
    };
    dind::prepare_build_container(&dinds, &mut build_config);
    // The builds directory from the host when the engine can mount it; cache and artifacts
    // still go in as tars, which the engine extracts into it.
    // A builds directory shared with the host (a runner configuration's builds volume, or
    // socket passthrough) is mounted by the configuration or at its own path.
    let builds_root = payload.builds_root().to_string();
    let shared = entry.and_then(|e| e.shared_builds(&options.builds_placement()));
    let mut builds_dir = (options.stage_files_by_mount && !options.keep_failed)
        .then(|| match &shared {
            Some(shared) => BuildsDir::shared(&shared.on_host, &builds_root, &project_dir).ok(),
            None => {
                BuildsDir::new(options.staging_root.as_deref(), &builds_root, &project_dir).ok()
            }
        })
        .flatten();
    let mut build = None;
    if let Some(builds) = &builds_dir {
        let mut with_mount = build_config.clone();
        with_mount.binds = match (&builds.dir, shared.as_ref().and_then(|s| s.bind.clone())) {
            (Some(dir), _) => vec![(
                dir.path().to_string_lossy().into_owned(),
                builds_root.clone(),
            )],
            (None, Some(bind)) => vec![bind],
            (None, None) => Vec::new(),
        };
        build = JobContainer::create(engine, owner, &with_mount).await.ok();
    }
    let build = match build {
        Some(build) => build,
        None => {
            // No builds directory, or an engine that cannot mount it (a confined or remote
            // one): the files go in as a tar.
            builds_dir = None;
            JobContainer::create(engine, owner, &build_config)
                .await
                .map_err(Failure::system)?
        }
    };
    resources.containers.insert(0, build.clone());
    // Where the sources go on the host (`None`: a tar into the container).
    let host_project_dir = builds_dir.as_ref().map(|b| b.project.clone());
    resources.builds_dir = builds_dir;

    trace.section_start("prepare_script", "Preparing environment");
    trace.line(&format!("Running on {} via {}...", build.name, host_name()));
    trace.section_end("prepare_script");

    // The script's shell can be started now: it waits for its script on stdin, which is
    // written only once sources, cache and artifacts are in place. Starting a container is
    // the slowest step of a short job, so it runs while the files are prepared.
    let has_script = payload.steps.iter().any(|s| s.name != "after_script");
    let first_stage = async {
        if has_script {
            Some(build.start_stage(engine).await)
        } else {
            None
        }
    };
    // glci's registry CA goes in at the same time: the shell only waits for its script, which
    // is written once the CA is in place (a put-archive costs ~100 ms on the critical path).
    let trust = trust_registry(engine, &build, options, &variables, buildx_files);
    let job_cache = JobCache {
        payload,
        variables: &variables,
        config: options.cache.as_ref(),
        short_token: &options.identity.short_token,
        trace,
        progress: &options.progress.for_job(&payload.job_info.name),
    };
    let build_files = BuildFiles {
        engine,
        build: &build,
        project_dir: &project_dir,
    };
    let files = prepare_files(
        payload,
        io,
        trace,
        options,
        &job_cache,
        &build_files,
        host_project_dir.as_deref(),
    );
    let (first_stage, files, ca_variable) = tokio::join!(first_stage, files, trust);
    let checkout = match files? {
        Ok(checkout) => checkout,
        Err(failed) => return Ok(failed),
    };
    let ca_variable = ca_variable?;
    let mut first_stage = first_stage.transpose().map_err(Failure::system)?;

    // step_script (and any other non-after_script steps, in order)
    let script_vars: Vec<ScriptVariable> = variables
        .iter()
        .map(|v| ScriptVariable {
            key: v.key.clone(),
            value: v.value.clone(),
            file: v.file,
        })
        .chain(ca_variable)
        .collect();
    let debug_trace = payload.variable("CI_DEBUG_TRACE") == Some("true");
    let mut script_end = StageEnd::Exited(0);
    for step in payload.steps.iter().filter(|s| s.name != "after_script") {
        let stage = format!("step_{}", step.name);
        trace.section_start(
            &stage,
            &format!("Executing \"{stage}\" stage of the job script"),
        );
        // A runner configuration's pre_build_script and post_build_script around it.
        let commands = match entry {
            Some(entry) => entry.step_commands(&step.script),
            None => step.script.clone(),
        };
        let script = StageScript {
            project_dir: &project_dir,
            variables: &script_vars,
            commands: &commands,
            debug_trace,
        };
        let remaining = job_timeout.saturating_sub(started.elapsed());
        let stage_run = match first_stage.take() {
            Some(stage) => {
                stage
                    .run(engine, &script.render(), trace, remaining, cancel)
                    .await
            }
            None => {
                build
                    .run_stage(engine, &script.render(), trace, remaining, cancel)
                    .await
            }
        };
        script_end = stage_run.map_err(Failure::system)?;
        trace.section_end(&stage);
        if script_end != StageEnd::Exited(0) {
            break;
        }
    }
    if script_end == StageEnd::Canceled {
        trace.warning("script canceled externally (UI, API)");
    }
    let job_status = match script_end {
        StageEnd::Exited(0) => "success",
        StageEnd::Exited(_) => "failed",
        StageEnd::TimedOut => "timedout",
        StageEnd::Canceled => "canceled",
    };

    // after_script runs whatever happened to the script (a hard abort skips it: see runner).
    if let Some(after) = payload
        .steps
        .iter()
        .find(|s| s.name == "after_script" && !s.script.is_empty())
    {
        trace.section_start("after_script", "Running after_script");
        let mut after_vars = script_vars.clone();
        after_vars.retain(|v| v.key != "CI_JOB_STATUS");
        after_vars.push(ScriptVariable {
            key: "CI_JOB_STATUS".into(),
            value: job_status.into(),
            file: false,
        });
        let script = StageScript {
            project_dir: &project_dir,
            variables: &after_vars,
            commands: &after.script,
            debug_trace,
        };
        // after_script has its own 5-minute budget and is not cancelled by a graceful cancel.
        let end = build
            .run_stage(
                engine,
                &script.render(),
                trace,
                Duration::from_secs(300),
                &CancellationToken::new(),
            )
            .await
            .map_err(Failure::system)?;
        match end {
            StageEnd::Exited(0) => {}
            StageEnd::Exited(code) => trace.warning(&format!("after_script failed, but job will continue unaffected: exit code {code}")),
            StageEnd::TimedOut => trace.warning("after_script failed, but job will continue unaffected: execution took longer than 5m0s seconds"),
            StageEnd::Canceled => {}
        }
        trace.section_end("after_script");
    }

    let succeeded = job_status == "success";

    // Containers the job started through the engine's socket are the job's: said, not removed.
    let left_running = match entry {
        Some(entry)
            if super::socket::mounts_socket(&entry.docker.volumes, &options.socket_path) =>
        {
            super::socket::left_running(engine, &build.id).await
        }
        _ => Vec::new(),
    };
    if !left_running.is_empty() {
        trace.warning(&format!(
            "containers this job started through the Docker socket are still running (glci leaves them; they are the job's): {}",
            left_running.join(", ")
        ));
    }

    // --- cache: archive_cache / archive_cache_on_failure (runner/cache.rs) ---
    job_cache
        .archive(&build_files, &checkout.tracked, succeeded)
        .await;
    // --- end cache ---

    // upload_artifacts_on_success / _on_failure
    let artifacts: Vec<&Artifact> = payload
        .artifacts
        .iter()
        .filter(|a| match a.when.as_str() {
            "always" => true,
            "on_failure" => !succeeded,
            _ => succeeded,
        })
        .collect();
    let mut upload_failed = false;
    if !artifacts.is_empty() {
        let (stage, title) = if succeeded {
            (
                "upload_artifacts_on_success",
                "Uploading artifacts for successful job",
            )
        } else {
            (
                "upload_artifacts_on_failure",
                "Uploading artifacts for failed job",
            )
        };
        trace.section_start(stage, title);
        let project_tar = build
            .download_tar(engine, &project_dir)
            .await
            .map_err(Failure::system)?;
        let progress = options.progress.for_job(&payload.job_info.name);
        for artifact in artifacts {
            let tracked = &checkout.tracked;
            if let Err(e) =
                upload_artifact(io, artifact, &project_tar, tracked, trace, &progress).await
            {
                trace.error(&format!(
                    "Uploading artifacts as \"{}\" to coordinator... error: {e}",
                    artifact_type(artifact)
                ));
                upload_failed = true;
            }
        }
        trace.section_end(stage);
    }

    trace.section_start(
        "cleanup_file_variables",
        "Cleaning up project directory and file based variables",
    );
    trace.section_end("cleanup_file_variables");

    let mut outcome = match script_end {
        StageEnd::Exited(0) if upload_failed => {
            trace.error("Job failed: exit code 1");
            JobOutcome::failed(FailureReason::ScriptFailure, Some(1))
        }
        StageEnd::Exited(0) => {
            trace.info("Job succeeded");
            JobOutcome::success()
        }
        StageEnd::Exited(code) => {
            trace.error(&format!("Job failed: exit code {code}"));
            JobOutcome::failed(FailureReason::ScriptFailure, Some(code))
        }
        StageEnd::TimedOut => {
            trace.error(&format!(
                "Job failed: execution took longer than {} seconds",
                go_duration(job_timeout)
            ));
            JobOutcome::failed(FailureReason::JobExecutionTimeout, None)
        }
        StageEnd::Canceled => {
            trace.error("Job failed: canceled");
            JobOutcome::failed(FailureReason::JobCanceled, None)
        }
    };
    outcome.left_running = left_running;
    Ok(outcome)
}

/// The build container's project directory, for the cache.
struct BuildFiles<'a> {
    engine: &'a Engine,
    build: &'a JobContainer,
    project_dir: &'a str,
}

impl ProjectFiles for BuildFiles<'_> {
    async fn upload_tar(&self, tar: TarStream) -> Result<(), DockerError> {
        self.build.upload_tar_stream(self.engine, tar).await
    }

    async fn project_tar(&self) -> Result<Vec<u8>, DockerError> {
        self.build.download_tar(self.engine, self.project_dir).await
    }
}

fn artifact_type(a: &Artifact) -> &str {
    if a.artifact_type.is_empty() {
        "archive"
    } else {
        &a.artifact_type
    }
}

async fn upload_artifact(
    io: &impl JobIo,
    artifact: &Artifact,
    project_tar: &[u8],
    tracked: &BTreeSet<String>,
    trace: &Trace,
    progress: &JobProgress,
) -> Result<(), ArtifactsError> {
    trace.line("Uploading artifacts...");
    let selection = Selection::new(
        &artifact.paths,
        &artifact.exclude,
        artifact.untracked,
        tracked.clone(),
    )?;
    // Reports are uploaded in their own format (`Ci::JobArtifact::TYPE_AND_FORMAT_PAIRS`);
    // the server refuses a zip sent as `gzip`.
    let (zip, count) = match artifact.artifact_format.as_str() {
        "gzip" => archive::tar_to_gzip(project_tar, &selection),
        "raw" => archive::tar_to_raw(project_tar, &selection),
        _ => archive::tar_to_zip(project_tar, &selection),
    }?;
    for path in &artifact.paths {
        trace.line(&format!(
            "{path}: found matching artifact files and directories"
        ));
    }
    if count == 0 {
        trace.warning("No files to upload");
        return Ok(());
    }
    // The archive goes whole: its start and end are all there is to report.
    let size = zip.len() as u64;
    let mut transfer = progress.transfer("artifacts", Direction::Upload, Some(size));
    let uploaded = io.upload_artifacts(artifact, zip).await;
    if uploaded.is_ok() {
        transfer.advance(size);
    }
    transfer.finish();
    uploaded?;
    trace.line(&format!(
        "Uploading artifacts as \"{}\" to coordinator... 201 Created",
        artifact_type(artifact)
    ));
    Ok(())
}

/// `value` with the payload's variables expanded once (the last definition wins), as the
/// official runner expands image names.
fn expand_with_job_variables(payload: &JobPayload, value: &str) -> String {
    crate::runner::job_variables::expand(value, &payload.variables)
}

/// Makes `image` present per the job's pull policies (runner/image_pull.rs) and returns the
/// reference its containers are created from.
async fn ensure_image(
    engine: &Engine,
    job: &str,
    image: &str,
    pull_policy: &[String],
    credential: Option<&crate::runner::payload::Credential>,
    options: &ExecutorOptions,
    trace: &Trace,
) -> Result<String, Failure> {
    let registry = options.registry.as_ref();
    let progress = options.progress.for_job(job);
    image_pull::ensure_image(
        engine,
        image,
        pull_policy,
        credential,
        registry,
        trace,
        &progress,
    )
    .await
    .map_err(|e| Failure {
        // As the runner: a failed pull fails the job, a missing local image the system.
        reason: if e.pulled {
            FailureReason::ScriptFailure
        } else {
            FailureReason::RunnerSystemFailure
        },
        message: e.to_string(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn start_services(
    engine: &Engine,
    owner: &Owner,
    payload: &JobPayload,
    variables: &[JobVariable],
    network: &str,
    prefix: &str,
    trace: &Trace,
    options: &ExecutorOptions,
    host: &super::docker_settings::HostSettings,
    resources: &mut JobResources,
) -> Result<Vec<DindService>, Failure> {
    let mut started = Vec::new();
    let mut dinds = Vec::new();
    for (index, service) in payload.services.iter().enumerate() {
        trace.line(&format!("Starting service {} ...", service.name));
        let image = ensure_image(
            engine,
            &payload.job_info.name,
            &service.name,
            &service.pull_policy,
            payload.registry_credential(&service.name),
            options,
            trace,
        )
        .await?;
        let env = service_variables(variables, &service.variables)
            .into_iter()
            .map(|v| format!("{}={}", v.key, v.value))
            .collect();
        let config = ContainerConfig {
            name: format!("{prefix}-{}-{index}", service_slug(&service.name)),
            image,
            entrypoint: (!service.entrypoint.is_empty()).then(|| service.entrypoint.clone()),
            cmd: service.command.clone(),
            env,
            network: Some(network.to_string()),
            aliases: service_aliases(&service.name, &service.alias),
            stdin: false,
            extra_hosts: options.extra_hosts.clone(),
            host: host.clone(),
            ..Default::default()
        };
        if options.dind.recognises(service) {
            let start = dind::DindStart {
                engine,
                owner,
                config,
                services: &payload.services,
                index,
                options: &options.dind,
                registry: options.registry.as_ref(),
                trace,
            };
            let dind = dind::start(start, &mut resources.volumes, &mut resources.containers)
                .await
                .map_err(Failure::system)?;
            dinds.push(dind);
            continue;
        }
        let container = JobContainer::create(engine, owner, &config)
            .await
            .map_err(Failure::system)?;
        resources.containers.push(container.clone());
        trust_registry(engine, &container, options, &[], Vec::new()).await?;
        container.start(engine).await.map_err(Failure::system)?;
        started.push((service, container));
    }
    if started.is_empty() && dinds.is_empty() {
        return Ok(dinds);
    }
    trace.line(&format!(
        "Waiting for services to be up and running (timeout {} seconds)...",
        options.services_timeout.as_secs()
    ));
    // Docker daemons: a readiness gate instead of the port check (a daemon is of no use to
    // the job until it answers), waited for alongside the other services.
    let progress = options.progress.for_job(&payload.job_info.name);
    let progress = &progress;
    let dind_waits = dinds.iter().map(|dind| async move {
        let since = Instant::now();
        let ready = dind::wait_until_ready(engine, dind, options.services_timeout);
        progress
            .wait(&dind.service, ready)
            .await
            .map(|id| (dind, id, since.elapsed()))
    });
    let waits = started.iter().map(|(service, container)| async move {
        let (ip, ports) = service_endpoint(engine, container, network).await;
        let dead = match ip {
            Some(ip) if !ports.is_empty() => {
                let open = wait_for_ports(ip, &ports, options.services_timeout);
                progress.wait(&service.name, open).await
            }
            _ => Vec::new(),
        };
        (service, container, ports, dead)
    });
    let (waited, dind_ready) = tokio::join!(
        futures_util::future::join_all(waits),
        futures_util::future::join_all(dind_waits)
    );
    for ready in dind_ready {
        let (dind, id, after) = ready.map_err(Failure::system)?;
        dind::ready_line(trace, dind, &id, after);
    }
    for (service, container, ports, dead) in waited {
        if ports.is_empty() || dead.is_empty() {
            continue;
        }
        trace.warning(&format!(
            "Service {} probably didn't start properly.\n\nHealth check error:\nservice \"{}\" timeout: no answer on port(s) {:?}",
            service.name, container.name, dead
        ));
        let logs = crate::docker::container_logs(engine, &container.id)
            .await
            .unwrap_or_default();
        trace.line("Service container logs:");
        trace.output(logs.as_bytes());
        trace.flush();
    }
    Ok(dinds)
}

/// glci's registry CA into a created job container (runner/registry_trust.rs), with the
/// buildx configuration in the same upload; the `SSL_CERT_FILE` the script then needs, if any.
async fn trust_registry(
    engine: &Engine,
    container: &JobContainer,
    options: &ExecutorOptions,
    variables: &[JobVariable],
    buildx_files: Vec<FileEntry>,
) -> Result<Option<ScriptVariable>, Failure> {
    let Some(access) = &options.registry else {
        if !buildx_files.is_empty() {
            write_files(engine, container, &buildx_files)
                .await
                .map_err(Failure::system)?;
        }
        return Ok(None);
    };
    let has_bundle = inject_ca(engine, container, access, buildx_files)
        .await
        .map_err(Failure::system)?;
    Ok(super::registry_trust::ssl_cert_file(has_bundle, variables))
}

/// The service's address on the job network and its exposed TCP ports (from the image).
async fn service_endpoint(
    engine: &Engine,
    container: &JobContainer,
    network: &str,
) -> (Option<std::net::IpAddr>, Vec<u16>) {
    let Ok(info) = engine
        .client()
        .inspect_container(&container.id, None::<InspectContainerOptions>)
        .await
    else {
        return (None, Vec::new());
    };
    let ip = info
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(network))
        .and_then(|e| e.ip_address.as_ref())
        .and_then(|ip| ip.parse().ok());
    let mut ports: Vec<u16> = info
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref())
        .map(|p| {
            p.iter()
                .filter_map(|port| port.strip_suffix("/tcp").and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    ports.sort_unstable();
    ports.truncate(20);
    (ip, ports)
}

/// Go's `time.Duration` string (`1h0m0s`, `30s`), which the runner's messages print.
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_read_like_the_runners_messages() {
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
    }
}
