//! One container of a job driven the way the official Docker executor drives its build
//! container: created once, then for each stage attached, started, fed the stage script on
//! stdin, and waited for; its output goes to the trace as it arrives.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::docker::{DockerError, Engine, Owner};

use super::trace::Trace;

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageEnd {
    Exited(i64),
    TimedOut,
    Canceled,
}

/// What a job container is made from.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub network: Option<String>,
    pub aliases: Vec<String>,
    pub labels: HashMap<String, String>,
    pub user: Option<String>,
    /// Fed a script on stdin (build container) or left to run its own command (service).
    pub stdin: bool,
    /// Host directories mounted read-write: `(host path, container path)`.
    pub binds: Vec<(String, String)>,
    /// More `/etc/hosts` entries (`name:address`), e.g. the relay standing for the server.
    pub extra_hosts: Vec<String>,
    /// Named volumes mounted read-write: `(volume name, container path)`.
    pub volumes: Vec<(String, String)>,
    /// Empty in-memory directories mounted at these paths.
    pub tmpfs: Vec<String>,
    /// Privileges, volumes, devices... beyond Docker's defaults: what a runner configuration's
    /// `[runners.docker]` adds, and what a Docker-in-Docker service needs.
    pub host: super::docker_settings::HostSettings,
}

/// The bind mounts, named volumes and tmpfs directories of a container.
fn mounts(config: &ContainerConfig) -> Vec<Mount> {
    let mount = |typ, source: Option<&String>, target: &String| Mount {
        source: source.cloned(),
        target: Some(target.clone()),
        typ: Some(typ),
        ..Default::default()
    };
    let binds = config
        .binds
        .iter()
        .map(|(source, target)| mount(MountType::BIND, Some(source), target));
    let volumes = config
        .volumes
        .iter()
        .map(|(name, target)| mount(MountType::VOLUME, Some(name), target));
    let tmpfs = config
        .tmpfs
        .iter()
        .map(|target| mount(MountType::TMPFS, None, target));
    binds.chain(volumes).chain(tmpfs).collect()
}

/// A created container of a job.
#[derive(Debug, Clone)]
pub struct JobContainer {
    pub id: String,
    pub name: String,
}

impl JobContainer {
    pub async fn create(
        engine: &Engine,
        owner: &Owner,
        config: &ContainerConfig,
    ) -> Result<JobContainer, DockerError> {
        let mut labels = owner.labels();
        labels.extend(config.labels.clone());
        let networking_config = config.network.as_ref().map(|net| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.clone(),
                EndpointSettings {
                    aliases: (!config.aliases.is_empty()).then(|| config.aliases.clone()),
                    ..Default::default()
                },
            )])),
        });
        let body = ContainerCreateBody {
            image: Some(config.image.clone()),
            entrypoint: config.entrypoint.clone(),
            cmd: (!config.cmd.is_empty()).then(|| config.cmd.clone()),
            env: Some(config.env.clone()),
            labels: Some(labels),
            user: config.user.clone(),
            tty: Some(false),
            open_stdin: Some(config.stdin),
            stdin_once: Some(config.stdin),
            attach_stdin: Some(config.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(HostConfig {
                network_mode: config.network.clone(),
                // Job containers reach the host (the mock GitLab) by this name too.
                extra_hosts: Some(
                    std::iter::once("host.docker.internal:host-gateway".to_string())
                        .chain(config.extra_hosts.iter().cloned())
                        .collect(),
                ),
                // A bind mount (not a `-v` bind): the engine refuses a missing source instead
                // of creating an empty directory in its place.
                mounts: Some(mounts(config)).filter(|m| !m.is_empty()),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        };
        let body = config.host.apply(body);
        let opts = CreateContainerOptionsBuilder::new()
            .name(&config.name)
            .build();
        let id = engine
            .client()
            .create_container(Some(opts), body)
            .await
            .map_err(|e| DockerError::api(format!("create container `{}`", config.name), e))?
            .id;
        Ok(JobContainer {
            id,
            name: config.name.clone(),
        })
    }

    /// Unpacks a tar into the container's filesystem at `/` (works before the first start).
    pub async fn upload_tar(&self, engine: &Engine, tar: Vec<u8>) -> Result<(), DockerError> {
        let opts = UploadToContainerOptionsBuilder::new().path("/").build();
        engine
            .client()
            .upload_to_container(&self.id, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(|e| DockerError::api(format!("copy files into container `{}`", self.name), e))
    }

    /// [`JobContainer::upload_tar`] for a tar produced while it is sent (artifacts and
    /// caches: never held whole in memory).
    pub async fn upload_tar_stream(
        &self,
        engine: &Engine,
        tar: crate::runner::archive::TarStream,
    ) -> Result<(), DockerError> {
        let opts = UploadToContainerOptionsBuilder::new().path("/").build();
        engine
            .client()
            .upload_to_container(&self.id, Some(opts), bollard::body_try_stream(tar.0))
            .await
            .map_err(|e| DockerError::api(format!("copy files into container `{}`", self.name), e))
    }

    /// A tar of `path` inside the container (top-level entry: the directory's name).
    pub async fn download_tar(&self, engine: &Engine, path: &str) -> Result<Vec<u8>, DockerError> {
        let opts = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = engine
            .client()
            .download_from_container(&self.id, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                DockerError::api(format!("copy {path} out of container `{}`", self.name), e)
            })?;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Starts the container without attaching (services).
    pub async fn start(&self, engine: &Engine) -> Result<(), DockerError> {
        engine
            .client()
            .start_container(&self.id, None)
            .await
            .map_err(|e| DockerError::api(format!("start container `{}`", self.name), e))
    }

    /// Runs one stage: attach, start, write `script` to stdin, stream output into `trace`,
    /// wait for the exit. `timeout` kills it; `cancel` stops it (SIGTERM, then SIGKILL).
    pub async fn run_stage(
        &self,
        engine: &Engine,
        script: &str,
        trace: &Trace,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<StageEnd, DockerError> {
        // A stage after the first: the container must have stopped (the previous stage may
        // have been taken as ended from its `die` event, before the engine finished it).
        let _ = docker_wait(engine, &self.id).await;
        // Its `die` events may include the previous stage's: wait for the container instead.
        self.attach_and_start(engine, None)
            .await?
            .run(engine, script, trace, timeout, cancel)
            .await
    }

    /// Attaches and starts the container for a stage whose script is given later
    /// ([`StartedStage::run`]). The shell waits for its script on stdin, so starting is
    /// safe before the job's files are copied in: the executor starts the first stage while
    /// it gets the sources (a container start costs about a third of a second here).
    ///
    /// Only for the container's first start: the stage's exit code is taken from its `die`
    /// event, which a restarted container has more than one of.
    pub async fn start_stage(&self, engine: &Engine) -> Result<StartedStage, DockerError> {
        // Events are asked for from a little before the start, so the `die` is not missed
        // however late the events stream is opened.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| format!("{}.{:09}", d.as_secs().saturating_sub(1), d.subsec_nanos()))
            .ok();
        self.attach_and_start(engine, since).await
    }

    /// Attach, then start; `die_events_since` as in [`StartedStage`].
    async fn attach_and_start(
        &self,
        engine: &Engine,
        die_events_since: Option<String>,
    ) -> Result<StartedStage, DockerError> {
        let docker = engine.client();
        let attach = AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = docker
            .attach_container(&self.id, Some(attach))
            .await
            .map_err(|e| DockerError::api(format!("attach to container `{}`", self.name), e))?;
        docker
            .start_container(&self.id, None)
            .await
            .map_err(|e| DockerError::api(format!("start container `{}`", self.name), e))?;
        Ok(StartedStage {
            container: self.clone(),
            attached,
            exit_from_die_event: die_events_since,
        })
    }
    /// SIGTERM, a grace period, then SIGKILL; errors mean it already stopped.
    pub async fn stop(&self, engine: &Engine) {
        if !self.signal_and_wait(engine, "SIGTERM").await {
            let kill = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
            let _ = engine.client().kill_container(&self.id, Some(kill)).await;
        }
    }

    /// SIGKILL, and wait until the container has stopped.
    pub async fn kill(&self, engine: &Engine) {
        self.signal_and_wait(engine, "SIGKILL").await;
    }

    /// Sends `signal` and waits up to 5 s for the container to stop. `false` only when it
    /// is still running then (a failed kill means it had stopped already).
    async fn signal_and_wait(&self, engine: &Engine, signal: &str) -> bool {
        let opts = KillContainerOptionsBuilder::new().signal(signal).build();
        if engine
            .client()
            .kill_container(&self.id, Some(opts))
            .await
            .is_err()
        {
            return true;
        }
        tokio::time::timeout(Duration::from_secs(5), docker_wait(engine, &self.id))
            .await
            .is_ok()
    }

    pub async fn remove(&self, engine: &Engine) {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let _ = engine.client().remove_container(&self.id, Some(opts)).await;
    }
}

/// Waits until the container is not running; its exit code (`-1` when the engine gives none).
async fn docker_wait(engine: &Engine, id: &str) -> Result<i64, bollard::errors::Error> {
    match engine
        .client()
        .wait_container(id, None::<WaitContainerOptions>)
        .next()
        .await
    {
        Some(Ok(r)) => Ok(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(e),
        None => Ok(-1),
    }
}

/// The exit code of the container's first `die` event since `since`. Never resolves when
/// the events stream ends or fails without one: the wait it races against then decides.
async fn die_exit_code(engine: &Engine, id: &str, since: &str) -> i64 {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("container".to_string(), vec![id.to_string()]),
        ("event".to_string(), vec!["die".to_string()]),
    ]);
    let opts = EventsOptionsBuilder::new()
        .since(since)
        .filters(&filters)
        .build();
    let mut events = engine.client().events(Some(opts));
    while let Some(Ok(event)) = events.next().await {
        let code = event
            .actor
            .and_then(|a| a.attributes)
            .and_then(|attrs| attrs.get("exitCode").and_then(|c| c.parse().ok()));
        if let Some(code) = code {
            return code;
        }
    }
    std::future::pending().await
}

/// A stage whose container is attached and started, its shell waiting for the script.
pub struct StartedStage {
    container: JobContainer,
    attached: bollard::container::AttachContainerResults,
    /// `since` for the events query that gives the exit code as soon as the engine reports
    /// the `die`, about 60 ms before a wait returns (the engine first releases the network and
    /// mounts). `None`: wait for the container (not its first start).
    exit_from_die_event: Option<String>,
}

impl StartedStage {
    /// Writes `script` to stdin, streams the output into `trace` and waits for the exit.
    /// `timeout` kills the container; `cancel` stops it (SIGTERM, then SIGKILL).
    pub async fn run(
        self,
        engine: &Engine,
        script: &str,
        trace: &Trace,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<StageEnd, DockerError> {
        let StartedStage {
            container,
            mut attached,
            exit_from_die_event,
        } = self;
        // Write the script and close stdin so the shell reads to the end and exits.
        let script = script.to_string();
        let mut input = attached.input;
        let writer = tokio::spawn(async move {
            let _ = input.write_all(script.as_bytes()).await;
            let _ = input.shutdown().await;
        });
        let pump = async {
            while let Some(chunk) = attached.output.next().await {
                match chunk {
                    Ok(
                        LogOutput::StdOut { message }
                        | LogOutput::StdErr { message }
                        | LogOutput::Console { message },
                    ) => trace.output(&message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(_) => break,
                }
            }
        };
        let end = tokio::select! {
            _ = pump => None,
            _ = tokio::time::sleep(timeout) => Some(StageEnd::TimedOut),
            _ = cancel.cancelled() => Some(StageEnd::Canceled),
        };
        writer.abort();
        if let Some(end) = end {
            if end == StageEnd::TimedOut {
                // The time is up: no grace period (a shell as PID 1 ignores SIGTERM, so the
                // grace would only make the job overrun its timeout by the whole grace).
                container.kill(engine).await;
            } else {
                container.stop(engine).await;
            }
            trace.flush();
            return Ok(end);
        }
        trace.flush();
        let waited = async {
            match docker_wait(engine, &container.id).await {
                Ok(code) => Ok(code),
                Err(e) => Err(DockerError::api(
                    format!("wait for container `{}`", container.name),
                    e,
                )),
            }
        };
        let code = match exit_from_die_event {
            Some(since) => tokio::select! {
                code = die_exit_code(engine, &container.id, &since) => code,
                code = waited => code?,
            },
            None => waited.await?,
        };
        Ok(StageEnd::Exited(code))
    }
}
