//! Docker-in-Docker services: a job's `docker:dind` service made to work the way GitLab's
//! documentation sets it up by hand (a privileged service, a shared `/certs/client` volume,
//! `DOCKER_HOST` and friends in the job), without the user writing any of it.
//!
//! - **Recognition**: a service is a Docker daemon when its image matches one of
//!   [`DindOptions::images`] (`docker:*dind*`, `*/docker:*-dind*`; `GLCI_DIND_SERVICES`
//!   replaces the list, `none` turns all of this off), its alias is `docker`, or its command or
//!   entrypoint runs `dockerd`.
//! - **Privileges**: `--privileged` where the engine allows it; engines whose capability
//!   bounding set lacks a capability (hardened or nested hosts) refuse it, so then the
//!   explicit set of [`with_capability_set`]. Which one works is learned once per engine (the
//!   first DinD service's start is the probe) and remembered on the engine (see
//!   [`super::privileges`]), so later runs skip the refused start. Neither: the job fails saying why, never with a
//!   daemon that half-works.
//! - **Isolation**: each service gets its own `/var/lib/docker` volume; the job already has its
//!   own network, on which the service answers to `docker` (the name in its certificate).
//! - **TLS**: with `DOCKER_TLS_CERTDIR` set (by the job, else by the image, as the official
//!   `docker:dind` sets `/certs`), a volume shared at `$DOCKER_TLS_CERTDIR/client` in the
//!   service and the build container carries the client certificates the service's entrypoint
//!   makes; the job gets `DOCKER_HOST=tcp://docker:2376`, `DOCKER_TLS_VERIFY=1` and
//!   `DOCKER_CERT_PATH`. Without it, `tcp://docker:2375`.
//! - **Readiness**: `docker info` run in the service against the TCP endpoint the job will
//!   use (so certificates and listener are checked too), until it answers, bounded.
//! - **Registry trust**: with the stand-in's registry served, its CA goes into the service's
//!   `/etc/docker/certs.d/<registry>/ca.crt`, and `daemon.json` names the registry as a
//!   `registry-mirrors` entry, so Docker Hub names pulled inside DinD come through glci.
//!   `daemon.json` also moves the inner daemon's bridge off `172.17.0.0/16`, where it would
//!   hide the outer bridge address that glci's server and registry listen on.
//! - **Buildx**: the job gets a buildx configuration directory of its own whose default
//!   BuildKit configuration trusts the registry (see [`super::buildx`]).
//!
//! Volumes carry the owner's labels: removed with the job, by the watchdog and by the next
//! run's orphan sweep like every other glci object.

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::VolumeCreateRequest;
use futures_util::StreamExt;

use crate::docker::{DockerError, Engine, Owner};

use super::build_container::{ContainerConfig, JobContainer};
use super::docker_settings::HostSettings;
use super::payload::{Image, JobVariable};
use super::privileges::{learn, recall, PrivilegedStart};
use super::registry_access::RegistryAccess;
use super::services::service_aliases;
use super::trace::Trace;

/// The environment variable that replaces the image globs of DinD services.
pub const ENV_DIND_SERVICES: &str = "GLCI_DIND_SERVICES";
/// The images recognised as Docker daemons by default: the official `docker:*-dind*` tags,
/// also from another registry or mirror.
pub const DEFAULT_DIND_IMAGES: [&str; 2] = ["docker:*dind*", "*/docker:*-dind*"];
/// The alias under which jobs reach the daemon: `DOCKER_HOST` names it, and the daemon's
/// TLS certificate is made for it.
const DOCKER_ALIAS: &str = "docker";
/// The label that marks a DinD service's volumes (value: `storage` or `certs`).
pub const LABEL_DIND_VOLUME: &str = "io.glci.dind-volume";
/// How often the readiness gate asks the daemon.
const READY_POLL: Duration = Duration::from_millis(150);

/// Errors of a DinD service; each ends the job as a system failure.
#[derive(Debug, thiserror::Error)]
pub enum DindError {
    #[error(
        "Docker-in-Docker service `{service}` cannot start on this engine: it refuses \
         --privileged ({privileged}) and the capability set {set} ({capabilities}); the engine's \
         host must allow these capabilities for Docker-in-Docker"
    )]
    Refused {
        service: String,
        privileged: String,
        set: String,
        capabilities: String,
    },
    #[error(
        "Docker-in-Docker service `{service}` did not answer `docker info` within {waited_secs} s \
         (raise the services timeout if the engine is slow); last error: {last_error}"
    )]
    NotReady {
        service: String,
        waited_secs: u64,
        last_error: String,
    },
    #[error("Docker-in-Docker service `{service}`: {action}: {source}")]
    Docker {
        service: String,
        action: &'static str,
        #[source]
        source: DockerError,
    },
    #[error("Docker-in-Docker service `{service}`: the image's /etc/docker/daemon.json is not a JSON object, so glci cannot add the registry mirror to it: {source}")]
    BadDaemonJson {
        service: String,
        source: DaemonJsonError,
    },
    #[error("Docker-in-Docker service `{service}`: cannot package its daemon.json and registry CA: {source}")]
    Package {
        service: String,
        source: std::io::Error,
    },
}

/// Why an image's `daemon.json` cannot take what glci adds to it ([`DindError::BadDaemonJson`]).
#[derive(Debug, thiserror::Error)]
pub enum DaemonJsonError {
    #[error("{0}")]
    Parse(serde_json::Error),
    #[error("not an object")]
    NotAnObject,
    #[error("`registry-mirrors` is not a list")]
    MirrorsNotAList,
    #[error("{0}")]
    Write(serde_json::Error),
}

/// How glci may start DinD services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DindPrivileges {
    /// `--privileged` where the engine allows it, else the capability set of
    /// [`capability_set_flags`] (learned once, see [`super::privileges`]).
    #[default]
    Probe,
    /// `--privileged` only (a runner configured `privileged = true`).
    Privileged,
    /// The capability set of [`capability_set_flags`] only, never `--privileged`.
    Capabilities,
}

/// Which services are Docker daemons, and how they may be started.
#[derive(Debug, Clone)]
pub struct DindOptions {
    /// Off: services are started as any other (the user set everything up by hand).
    pub enabled: bool,
    /// Image-name globs (`*` matches any characters, `/` included) of DinD services.
    pub images: Vec<String>,
    pub privileges: DindPrivileges,
}

impl Default for DindOptions {
    /// The default images, or the comma-separated globs of `GLCI_DIND_SERVICES` (`none`: off);
    /// never `--privileged` when glci's settings say `[docker] privileged = "never"`.
    fn default() -> Self {
        let configured = std::env::var(ENV_DIND_SERVICES).ok();
        DindOptions::from_setting(configured.as_deref()).with_policy(crate::settings::current())
    }
}

impl DindOptions {
    /// Options from a `GLCI_DIND_SERVICES`-style setting: globs, comma separated; `none` turns
    /// recognition off; unset or blank keeps [`DEFAULT_DIND_IMAGES`].
    pub fn from_setting(setting: Option<&str>) -> DindOptions {
        let setting = setting.map(str::trim).filter(|s| !s.is_empty());
        let images: Vec<String> = match setting {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
            None => DEFAULT_DIND_IMAGES.map(str::to_string).to_vec(),
        };
        DindOptions {
            enabled: setting != Some("none"),
            images,
            privileges: DindPrivileges::default(),
        }
    }

    /// These options under glci's settings: `[docker] privileged = "never"` starts daemons
    /// with the capability set only, never `--privileged`.
    pub fn with_policy(mut self, settings: &crate::settings::Settings) -> DindOptions {
        if settings.privileged_never() {
            self.privileges = DindPrivileges::Capabilities;
        }
        self
    }

    /// Whether `service` runs a Docker daemon.
    pub fn recognises(&self, service: &Image) -> bool {
        if !self.enabled {
            return false;
        }
        let by_image = self.images.iter().any(|pattern| {
            globset::GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .is_ok_and(|g| g.compile_matcher().is_match(&service.name))
        });
        let by_alias = service
            .alias
            .split([',', ' '])
            .any(|alias| alias == DOCKER_ALIAS);
        let by_command = service
            .entrypoint
            .iter()
            .chain(&service.command)
            .any(|word| word.rsplit('/').next() == Some("dockerd"));
        by_image || by_alias || by_command
    }
}

/// `host` with `--privileged` added: the first way to start a Docker daemon.
fn with_privileged(host: &HostSettings) -> HostSettings {
    HostSettings {
        privileged: true,
        ..host.clone()
    }
}

/// `host` with the capability set that runs a Docker daemon where `--privileged` is refused
/// ([`HostSettings::without_privileged`]: every capability but `SYS_RESOURCE`, the one such
/// hosts lack, as `--cap-add ALL` alone is refused like `--privileged`; no seccomp, AppArmor
/// or masked `/proc` paths; the host's cgroup hierarchy writable).
fn with_capability_set(host: &HostSettings) -> HostSettings {
    with_privileged(host).without_privileged()
}

/// [`with_capability_set`] as `docker run` flags: for the message of a refused start, and for
/// whatever starts a Docker daemon by hand the way glci does (tests, scripts).
pub fn capability_set_flags() -> Vec<String> {
    let set = with_capability_set(&HostSettings::default());
    let flagged = |flag: &str, values: &[String]| -> Vec<String> {
        values
            .iter()
            .flat_map(|v| [flag.to_string(), v.clone()])
            .collect()
    };
    [
        flagged("--cap-add", &set.cap_add),
        flagged("--cap-drop", &set.cap_drop),
        flagged("--security-opt", &set.security_opt),
        flagged("-v", &set.volumes),
    ]
    .concat()
}

/// A started DinD service of a job.
#[derive(Debug, Clone)]
pub struct DindService {
    /// The service's image name, for messages.
    pub service: String,
    pub container: JobContainer,
    /// `DOCKER_TLS_CERTDIR` as the service sees it (`None`: TLS off).
    pub tls_certdir: Option<String>,
    /// The volume holding the client certificates, mounted at `$DOCKER_TLS_CERTDIR/client`.
    pub certs_volume: Option<String>,
    /// Whether jobs reach this daemon as `docker` (the first DinD service of a job).
    pub is_docker_host: bool,
}

impl DindService {
    /// The daemon's TCP port: 2376 with TLS, 2375 without (the official image's ports).
    pub fn port(&self) -> u16 {
        if self.tls_certdir.is_some() {
            2376
        } else {
            2375
        }
    }
}

/// What the executor hands over to start one DinD service.
pub struct DindStart<'a> {
    pub engine: &'a Engine,
    pub owner: &'a Owner,
    /// The service container as any service would be made (name, image, env, network,
    /// aliases).
    pub config: ContainerConfig,
    /// All services of the job, and which one this is: the `docker` alias goes to the first
    /// DinD service unless another service already claims it.
    pub services: &'a [Image],
    pub index: usize,
    pub options: &'a DindOptions,
    pub registry: Option<&'a RegistryAccess>,
    pub trace: &'a Trace,
}

/// Creates and starts a DinD service: its volumes, its privileges, its registry trust. The
/// volumes and the container are pushed to `volumes` and `containers` as soon as they exist,
/// so the caller removes them whatever happens next.
pub async fn start(
    start: DindStart<'_>,
    volumes: &mut Vec<String>,
    containers: &mut Vec<JobContainer>,
) -> Result<DindService, DindError> {
    let DindStart {
        engine,
        owner,
        mut config,
        services,
        index,
        options,
        registry,
        trace,
    } = start;
    let name = services[index].name.clone();
    let docker_error = |action: &'static str| {
        let name = name.clone();
        move |source: DockerError| DindError::Docker {
            service: name,
            action,
            source,
        }
    };

    let tls_certdir = tls_certdir(engine, &config).await;
    let storage = format!("{}-docker", config.name);
    create_volume(engine, owner, &storage, "storage")
        .await
        .map_err(docker_error("create its /var/lib/docker volume"))?;
    volumes.push(storage.clone());
    config.volumes.push((storage, "/var/lib/docker".into()));
    let certs_volume = match &tls_certdir {
        Some(dir) => {
            let certs = format!("{}-certs", config.name);
            create_volume(engine, owner, &certs, "certs")
                .await
                .map_err(docker_error("create its certificates volume"))?;
            volumes.push(certs.clone());
            config.volumes.push((
                certs.clone(),
                format!("{}/client", dir.trim_end_matches('/')),
            ));
            Some(certs)
        }
        None => None,
    };
    let is_docker_host = claims_docker_alias(services, index, options);
    if is_docker_host && !config.aliases.iter().any(|a| a == DOCKER_ALIAS) {
        config.aliases.push(DOCKER_ALIAS.into());
    }

    let mut daemon_config: Option<Vec<u8>> = None;
    let command: Vec<String> = config
        .entrypoint
        .iter()
        .flatten()
        .chain(&config.cmd)
        .cloned()
        .collect();
    // What worked before goes first; the other way is still tried if it fails (the engine's
    // host may have changed), and what works then is remembered instead.
    let recalled = match options.privileges {
        DindPrivileges::Probe => recall(engine).await,
        _ => None,
    };
    let attempts: &[PrivilegedStart] = match (options.privileges, recalled) {
        (DindPrivileges::Privileged, _) => &[PrivilegedStart::Privileged],
        (DindPrivileges::Capabilities, _) => &[PrivilegedStart::Capabilities],
        (DindPrivileges::Probe, Some(PrivilegedStart::Capabilities)) => {
            &[PrivilegedStart::Capabilities, PrivilegedStart::Privileged]
        }
        (DindPrivileges::Probe, _) => &[PrivilegedStart::Privileged, PrivilegedStart::Capabilities],
    };
    let mut refusals: Vec<(PrivilegedStart, String)> = Vec::new();
    for &how in attempts {
        let mut attempt = config.clone();
        attempt.host = match how {
            PrivilegedStart::Privileged => with_privileged(&config.host),
            PrivilegedStart::Capabilities => with_capability_set(&config.host),
        };
        let container = JobContainer::create(engine, owner, &attempt)
            .await
            .map_err(docker_error("create its container"))?;
        containers.push(container.clone());
        let files = match &daemon_config {
            Some(files) => files.clone(),
            None => {
                let files = daemon_files(engine, &container, registry, &command, &name).await?;
                daemon_config = Some(files.clone());
                files
            }
        };
        container
            .upload_tar(engine, files)
            .await
            .map_err(docker_error(
                "copy daemon.json and the registry's CA into it",
            ))?;
        match container.start(engine).await {
            Ok(()) => {
                if options.privileges == DindPrivileges::Probe && recalled != Some(how) {
                    learn(engine, how).await;
                }
                let refused = refusals
                    .iter()
                    .find(|(way, _)| *way == PrivilegedStart::Privileged);
                match (how, refused, options.privileges) {
                    (PrivilegedStart::Capabilities, Some((_, error)), _) => trace.line(&format!(
                        "Service {name}: the engine refuses --privileged ({error}); Docker-in-Docker runs with the capability set instead"
                    )),
                    (PrivilegedStart::Capabilities, None, DindPrivileges::Probe) => trace.line(&format!(
                        "Service {name} runs Docker-in-Docker with the capability set (the engine refused --privileged before)"
                    )),
                    (PrivilegedStart::Capabilities, None, _) => trace.line(&format!(
                        "Service {name} runs Docker-in-Docker with the capability set (as configured)"
                    )),
                    (PrivilegedStart::Privileged, ..) => {}
                }
                return Ok(DindService {
                    service: name,
                    container,
                    tls_certdir,
                    certs_volume,
                    is_docker_host,
                });
            }
            Err(e) => {
                refusals.push((how, e.to_string()));
                container.remove(engine).await;
                containers.retain(|c| c.id != container.id);
            }
        }
    }
    let set = capability_set_flags().join(" ");
    let refusal = |way: PrivilegedStart| {
        refusals
            .iter()
            .find(|(how, _)| *how == way)
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| "not tried, as configured".into())
    };
    let (privileged, capabilities) = (
        refusal(PrivilegedStart::Privileged),
        refusal(PrivilegedStart::Capabilities),
    );
    Err(DindError::Refused {
        service: name,
        privileged,
        set,
        capabilities,
    })
}

/// Whether `services[index]` is the one jobs reach as `docker`: the service named `docker`
/// (by alias or image), else the first DinD service.
fn claims_docker_alias(services: &[Image], index: usize, options: &DindOptions) -> bool {
    let named_docker = |s: &Image| {
        service_aliases(&s.name, &s.alias)
            .iter()
            .any(|a| a == DOCKER_ALIAS)
    };
    match services.iter().position(named_docker) {
        Some(named) => named == index,
        None => services.iter().position(|s| options.recognises(s)) == Some(index),
    }
}

/// `DOCKER_TLS_CERTDIR` as the service will see it: from its environment (job and service
/// variables), else the image's (`/certs` for the official image). Empty: TLS off.
async fn tls_certdir(engine: &Engine, config: &ContainerConfig) -> Option<String> {
    const KEY: &str = "DOCKER_TLS_CERTDIR=";
    let from_env = config
        .env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(KEY).map(str::to_string));
    let value = match from_env {
        Some(v) => v,
        None => engine
            .client()
            .inspect_image(&config.image)
            .await
            .ok()
            .and_then(|i| i.config)
            .and_then(|c| c.env)
            .and_then(|env| {
                env.iter()
                    .rev()
                    .find_map(|kv| kv.strip_prefix(KEY).map(str::to_string))
            })
            .unwrap_or_default(),
    };
    Some(value).filter(|v| !v.is_empty())
}

async fn create_volume(
    engine: &Engine,
    owner: &Owner,
    name: &str,
    role: &str,
) -> Result<(), DockerError> {
    let mut labels = owner.labels();
    labels.insert(LABEL_DIND_VOLUME.into(), role.into());
    engine
        .client()
        .create_volume(VolumeCreateRequest {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| DockerError::api(format!("create volume `{name}`"), e))
}

/// Candidates for the inner daemon's own bridge (`bip`). Left to itself it takes
/// `172.17.0.0/16`, as the outer engine did, and then the outer bridge's address (where glci's
/// server and registry listen) is its own inside the service: a push to the registry would
/// reach nothing. The first candidate not holding the registry's address is used.
const INNER_BRIDGES: [&str; 2] = ["10.254.253.1/24", "192.168.253.1/24"];

/// The inner bridge that does not hold `avoid` (the registry's address, when an IPv4 one).
fn inner_bridge(avoid: Option<std::net::Ipv4Addr>) -> &'static str {
    let holds = |cidr: &str, ip: std::net::Ipv4Addr| {
        let Some((net, len)) = cidr.split_once('/') else {
            return false;
        };
        let (Ok(net), Ok(len)) = (net.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) else {
            return false;
        };
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        u32::from(net) & mask == u32::from(ip) & mask
    };
    INNER_BRIDGES
        .iter()
        .copied()
        .find(|cidr| avoid.is_none_or(|ip| !holds(cidr, ip)))
        .unwrap_or(INNER_BRIDGES[0])
}

/// A tar for `/` of the service: `/etc/docker/daemon.json` (the image's own, if any, with an
/// inner bridge that does not hide the outer one and, with a registry, the registry as
/// mirror) and the registry's CA in `certs.d`. Settings the service's command gives as flags
/// are left out: dockerd refuses a setting given both ways.
async fn daemon_files(
    engine: &Engine,
    container: &JobContainer,
    registry: Option<&RegistryAccess>,
    command: &[String],
    service: &str,
) -> Result<Vec<u8>, DindError> {
    let flagged = |flag: &str| command.iter().any(|arg| arg.starts_with(flag));
    let registry_ip = registry.and_then(|r| {
        r.job_address
            .rsplit_once(':')
            .and_then(|(host, _)| host.parse().ok())
    });
    let settings = DaemonSettings {
        mirror: registry
            .filter(|_| !flagged("--registry-mirror"))
            .map(|r| format!("https://{}", r.job_address)),
        bip: (!flagged("--bip")).then(|| inner_bridge(registry_ip).to_string()),
    };
    let existing = daemon_json(engine, container).await;
    let daemon_json =
        settings
            .merge_into(existing.as_deref())
            .map_err(|source| DindError::BadDaemonJson {
                service: service.to_string(),
                source,
            })?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: Option<&[u8]>| {
        let mut header = tar::Header::new_gnu();
        match data {
            Some(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o755);
            }
        }
        header.set_mtime(0);
        tar.append_data(&mut header, path, data.unwrap_or_default())
    };
    let mut built = add("etc/docker/", None)
        .and_then(|()| add("etc/docker/daemon.json", Some(daemon_json.as_bytes())));
    if let Some(registry) = registry {
        let certs_dir = format!("etc/docker/certs.d/{}", registry.job_address);
        built = built
            .and_then(|()| add("etc/docker/certs.d/", None))
            .and_then(|()| add(&format!("{certs_dir}/"), None))
            .and_then(|()| {
                add(
                    &format!("{certs_dir}/ca.crt"),
                    Some(registry.ca_pem.as_bytes()),
                )
            });
    }
    // Writing a tar into memory fails only if a path is unrepresentable (a registry address
    // longer than a tar name): say so rather than start a daemon that does not trust it.
    built
        .and_then(|()| tar.into_inner())
        .map_err(|source| DindError::Package {
            service: service.to_string(),
            source,
        })
}

/// What glci adds to a DinD service's `daemon.json`.
#[derive(Debug, Default)]
struct DaemonSettings {
    /// A `registry-mirrors` entry (`https://host:port`).
    mirror: Option<String>,
    /// The inner bridge's address (`bip`), unless the image's file sets one.
    bip: Option<String>,
}

impl DaemonSettings {
    /// `existing` (a daemon.json, or none) with these settings added.
    fn merge_into(&self, existing: Option<&str>) -> Result<String, DaemonJsonError> {
        let mut json = match existing.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => {
                serde_json::from_str::<serde_json::Value>(text).map_err(DaemonJsonError::Parse)?
            }
            None => serde_json::json!({}),
        };
        let object = json.as_object_mut().ok_or(DaemonJsonError::NotAnObject)?;
        if let Some(mirror) = &self.mirror {
            let mirror = serde_json::Value::String(mirror.clone());
            let mirrors = object
                .entry("registry-mirrors")
                .or_insert_with(|| serde_json::json!([]));
            let list = mirrors
                .as_array_mut()
                .ok_or(DaemonJsonError::MirrorsNotAList)?;
            if !list.contains(&mirror) {
                list.push(mirror);
            }
        }
        if let Some(bip) = &self.bip {
            object
                .entry("bip")
                .or_insert_with(|| serde_json::Value::String(bip.clone()));
        }
        serde_json::to_string_pretty(&json).map_err(DaemonJsonError::Write)
    }
}

/// The `/etc/docker/daemon.json` a created (not yet started) container has from its image.
async fn daemon_json(engine: &Engine, container: &JobContainer) -> Option<String> {
    let tar = container
        .download_tar(engine, "/etc/docker/daemon.json")
        .await
        .ok()?;
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).ok()?;
    Some(text)
}

/// Waits until the daemon answers `docker info` on the TCP endpoint jobs use, asked from
/// inside the service (with the client certificates when TLS is on, so the wait covers
/// them too). Returns the daemon's ID.
pub async fn wait_until_ready(
    engine: &Engine,
    dind: &DindService,
    timeout: Duration,
) -> Result<String, DindError> {
    let started = Instant::now();
    let mut env = vec![format!("DOCKER_HOST=tcp://127.0.0.1:{}", dind.port())];
    match &dind.tls_certdir {
        Some(dir) => {
            env.push("DOCKER_TLS_VERIFY=1".into());
            env.push(format!(
                "DOCKER_CERT_PATH={}/client",
                dir.trim_end_matches('/')
            ));
        }
        None => env.push("DOCKER_TLS_VERIFY=".into()),
    }
    let mut last_error = loop {
        match docker_info(engine, &dind.container, &env).await {
            Ok(id) => return Ok(id),
            Err(Probe::Stopped(e)) => break e,
            Err(Probe::Retry(e)) if started.elapsed() + READY_POLL > timeout => break e,
            Err(Probe::Retry(_)) => tokio::time::sleep(READY_POLL).await,
        }
    };
    let logs = crate::docker::container_logs(engine, &dind.container.id)
        .await
        .unwrap_or_default();
    let tail: Vec<&str> = logs.lines().rev().take(5).collect();
    if !tail.is_empty() {
        last_error = format!(
            "{last_error}; last lines of its log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Err(DindError::NotReady {
        service: dind.service.clone(),
        waited_secs: started.elapsed().as_secs(),
        last_error,
    })
}

enum Probe {
    /// Not (yet) answering: ask again.
    Retry(String),
    /// The service is gone: asking again is pointless.
    Stopped(String),
}

/// One `docker info --format {{.ID}}` in the service container.
async fn docker_info(
    engine: &Engine,
    container: &JobContainer,
    env: &[String],
) -> Result<String, Probe> {
    let client = engine.client();
    let exec = client
        .create_exec(
            &container.id,
            CreateExecOptions {
                cmd: Some(vec!["docker", "info", "--format", "{{.ID}}"]),
                env: Some(env.iter().map(String::as_str).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            let message = e.to_string();
            if message.contains("is not running") {
                Probe::Stopped(format!("the service container stopped: {message}"))
            } else {
                Probe::Retry(message)
            }
        })?;
    let mut output = String::new();
    match client.start_exec(&exec.id, None).await {
        Ok(StartExecResults::Attached {
            output: mut stream, ..
        }) => {
            while let Some(Ok(chunk)) = stream.next().await {
                output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        Ok(StartExecResults::Detached) => {}
        Err(e) => return Err(Probe::Retry(e.to_string())),
    }
    let code = client
        .inspect_exec(&exec.id)
        .await
        .ok()
        .and_then(|i| i.exit_code);
    let output = output.trim().to_string();
    match code {
        Some(0) if !output.is_empty() => Ok(output),
        // No `docker` CLI in the image: nothing will change by asking again.
        Some(126 | 127) => Err(Probe::Stopped(format!(
            "the service image has no usable `docker` CLI to ask the daemon with: {output}"
        ))),
        _ => Err(Probe::Retry(if output.is_empty() {
            format!("`docker info` exited with {code:?}")
        } else {
            output
        })),
    }
}

/// The variables a job with DinD services gets, unless the job sets them itself:
/// `DOCKER_HOST` naming the `docker` service, and with TLS `DOCKER_TLS_VERIFY` and
/// `DOCKER_CERT_PATH` (the client certificates' directory, shared with the service).
pub fn job_variables(dinds: &[DindService], job: &[JobVariable]) -> Vec<JobVariable> {
    let Some(dind) = dinds.iter().find(|d| d.is_docker_host) else {
        return Vec::new();
    };
    let mut vars = vec![(
        "DOCKER_HOST",
        format!("tcp://{DOCKER_ALIAS}:{}", dind.port()),
    )];
    if let Some(dir) = &dind.tls_certdir {
        vars.push(("DOCKER_TLS_VERIFY", "1".into()));
        vars.push((
            "DOCKER_CERT_PATH",
            format!("{}/client", dir.trim_end_matches('/')),
        ));
    }
    vars.into_iter()
        .filter(|(key, _)| !job.iter().any(|v| v.key == *key))
        .map(|(key, value)| JobVariable {
            key: key.into(),
            value,
            public: true,
            ..Default::default()
        })
        .collect()
}

/// The build container's mounts for a job with DinD services: each TLS service's client
/// certificates at the same path as in the service. (Builder state baked into the image is
/// left unused by the job's own buildx configuration directory, see [`super::buildx`].)
pub fn prepare_build_container(dinds: &[DindService], config: &mut ContainerConfig) {
    for dind in dinds {
        if let (Some(dir), Some(volume)) = (&dind.tls_certdir, &dind.certs_volume) {
            let target = format!("{}/client", dir.trim_end_matches('/'));
            if !config.volumes.iter().any(|(_, t)| *t == target) {
                config.volumes.push((volume.clone(), target));
            }
        }
    }
}

/// Says in the trace that a DinD service answers, and how it is reached.
pub fn ready_line(trace: &Trace, dind: &DindService, id: &str, waited: Duration) {
    trace.line(&format!(
        "Docker-in-Docker service {} is ready (daemon {}, {:.1} s after start, {})",
        dind.service,
        id.chars().take(12).collect::<String>(),
        waited.as_secs_f64(),
        match &dind.tls_certdir {
            Some(dir) => format!("TLS, client certificates in {dir}/client"),
            None => "no TLS".to_string(),
        }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, alias: &str, command: &[&str]) -> Image {
        Image {
            name: name.into(),
            alias: alias.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn recognises_dind_by_image_alias_or_command() {
        let o = DindOptions::from_setting(None);
        assert!(o.recognises(&service("docker:27-dind", "", &[])));
        assert!(o.recognises(&service("docker:dind", "", &[])));
        assert!(o.recognises(&service("docker:27.1-dind-rootless", "", &[])));
        assert!(o.recognises(&service(
            "registry.example.com/library/docker:27-dind",
            "",
            &[]
        )));
        assert!(o.recognises(&service("glci-fixture/docker:dind", "docker", &[])));
        assert!(o.recognises(&service(
            "my/engine:1",
            "",
            &["/usr/bin/dockerd", "--tls=false"]
        )));
        assert!(!o.recognises(&service("docker:27", "", &[])));
        assert!(!o.recognises(&service("postgres:16", "db", &[])));

        let custom = DindOptions::from_setting(Some("my/engine:*, other:*"));
        assert!(custom.recognises(&service("my/engine:1", "", &[])));
        assert!(!custom.recognises(&service("docker:27-dind", "", &[])));
        let off = DindOptions::from_setting(Some("none"));
        assert!(!off.recognises(&service("docker:27-dind", "docker", &[])));
    }

    #[test]
    fn the_docker_alias_goes_to_the_first_dind_service_unless_taken() {
        let o = DindOptions::from_setting(None);
        let services = [
            service("postgres:16", "", &[]),
            service("registry.local/docker:27-dind", "", &[]),
            service("registry.local/docker:26-dind", "", &[]),
        ];
        assert!(!claims_docker_alias(&services, 0, &o));
        assert!(claims_docker_alias(&services, 1, &o));
        assert!(!claims_docker_alias(&services, 2, &o));
        let taken = [
            service("registry.local/docker:27-dind", "", &[]),
            service("glci-fixture/docker:dind", "docker", &[]),
        ];
        assert!(!claims_docker_alias(&taken, 0, &o));
        assert!(claims_docker_alias(&taken, 1, &o));
    }

    #[test]
    fn daemon_json_gets_mirror_and_bridge_merged() {
        let settings = DaemonSettings {
            mirror: Some("https://172.17.0.1:5443".into()),
            bip: Some(inner_bridge(Some("172.17.0.1".parse().unwrap())).into()),
        };
        let fresh = settings.merge_into(None).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fresh).unwrap();
        assert_eq!(v["registry-mirrors"][0], "https://172.17.0.1:5443");
        assert_eq!(v["bip"], "10.254.253.1/24");

        let merged = settings
            .merge_into(Some(
                r#"{"storage-driver":"vfs","bip":"10.9.0.1/16","registry-mirrors":["https://m.example"]}"#,
            ))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(v["storage-driver"], "vfs");
        assert_eq!(v["bip"], "10.9.0.1/16", "the image's own bridge is kept");
        assert_eq!(
            v["registry-mirrors"],
            serde_json::json!(["https://m.example", "https://172.17.0.1:5443"])
        );
        assert!(settings.merge_into(Some("[1]")).is_err());
        assert!(settings.merge_into(Some("{nope")).is_err());
    }

    #[test]
    fn the_capability_set_as_docker_run_flags() {
        assert_eq!(
            capability_set_flags().join(" "),
            "--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
             --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
             -v /sys/fs/cgroup:/sys/fs/cgroup:rw"
        );
    }

    #[test]
    fn the_inner_bridge_avoids_the_registry_address() {
        assert_eq!(inner_bridge(None), "10.254.253.1/24");
        assert_eq!(
            inner_bridge(Some("10.254.253.7".parse().unwrap())),
            "192.168.253.1/24"
        );
    }

    #[test]
    fn job_variables_name_the_docker_service_and_leave_the_jobs_own() {
        let dind = DindService {
            service: "docker:27-dind".into(),
            container: JobContainer {
                id: "x".into(),
                name: "x".into(),
            },
            tls_certdir: Some("/certs/".into()),
            certs_volume: Some("v".into()),
            is_docker_host: true,
        };
        let vars = job_variables(std::slice::from_ref(&dind), &[]);
        let get = |k: &str| vars.iter().find(|v| v.key == k).map(|v| v.value.clone());
        assert_eq!(get("DOCKER_HOST").as_deref(), Some("tcp://docker:2376"));
        assert_eq!(get("DOCKER_TLS_VERIFY").as_deref(), Some("1"));
        assert_eq!(get("DOCKER_CERT_PATH").as_deref(), Some("/certs/client"));

        let own = [JobVariable {
            key: "DOCKER_HOST".into(),
            value: "tcp://elsewhere:2376".into(),
            ..Default::default()
        }];
        let vars = job_variables(std::slice::from_ref(&dind), &own);
        assert!(vars.iter().all(|v| v.key != "DOCKER_HOST"));

        let plain = DindService {
            tls_certdir: None,
            ..dind
        };
        let vars = job_variables(&[plain], &[]);
        assert_eq!(vars.len(), 1);
        assert_eq!(vars[0].value, "tcp://docker:2375");
    }
}
