//! The local stand-in for GitLab: runner API, git over HTTP and S3 cache on one port.
//!
//! [`Server::start`] binds one HTTP/1.1 listener and routes by path: `/api/v4/...` is the
//! runner API ([`runner_api`]), `/<bucket>[/<key>]` the S3 cache (`s3.rs`, bucket
//! `glci-cache` unless configured), `/<namespace>/<project>.git/...` git smart HTTP
//! (`git_http.rs`), `/v2/...` and `/jwt/auth` the container registry (`registry/`, also on a
//! loopback listener of its own when the main one is not loopback). The caller fills the job queue with [`JobSpec`]s
//! ([`RunningServer::enqueue`]) and watches jobs through [`RunningServer::subscribe`] /
//! [`RunningServer::wait_job`]; the server never decides what a job means.
//!
//! For the official runner, a generated `config.toml` uses (docs/runner-contract.md §6.1):
//!
//! ```text
//! url   = server.url()                       # also the git remote and artifact endpoint
//! token = server.create_runner(&tags, run_untagged).token
//! [runners.cache.s3]                         # from server.s3_credentials()
//!   ServerAddress = server_address, BucketName = bucket, BucketLocation = region,
//!   AccessKey = access_key, SecretKey = secret_key, Insecure = true,
//!   AuthenticationType = "access-key"
//! ```
//!
//! Storage lives under `ServerConfig::data_dir`: `artifacts/<job id>/`, `traces/<job id>.log`
//! and `s3/` (which persists across servers; job ids restart at 1 with every server).

mod config;
mod git_http;
mod http;
pub(crate) mod job_api;
mod params;
mod registry;
pub mod runner_api;
mod s3;
mod sigv4;
pub(crate) mod storage;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::distr::{Alphanumeric, SampleString};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use config::{
    ApiConfig, RegistryConfig, RegistryCredentials, RegistryTlsConfig, RegistryTlsEndpoint,
    S3Config, S3Credentials, ServerConfig, ServerError,
};
pub use registry::admin as registry_admin;
pub use registry::{PushThroughConfig, Upstream, UpstreamListError, DOCKER_HUB, UPSTREAMS_ENV};
pub use runner_api::spec::{
    ArtifactSpec, CacheSpec, DependencySpec, GitSpec, HookSpec, ImageSpec, JobId, JobSpec,
    JobVariable, PortSpec, ProjectSpec, RefType, RegistryLogin, ServiceSpec, StepSpec, StepWhen,
};
pub use runner_api::state::{
    JobEvent, JobSpecError, JobState, PackageFile, Release, ReleaseAssetLink, RunnerCredentials,
    StoredArtifact,
};
pub use s3::{clear_cache, ClearedCache};

/// State every handler shares.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// `http://host:port` as jobs see it.
    pub(crate) url: String,
    /// `host:port` as jobs see it.
    pub(crate) host_port: String,
    pub(crate) repos: RwLock<HashMap<String, PathBuf>>,
    pub(crate) api: runner_api::ApiState,
    pub(crate) s3: s3::Store,
    pub(crate) registry: registry::Registry,
    /// `127.0.0.1:port` (or `[::1]:port`): the registry's loopback address (`CI_REGISTRY`).
    pub(crate) registry_host_port: String,
    /// The registry's TLS listener for jobs, when one is served.
    pub(crate) registry_tls: Option<RegistryTlsEndpoint>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Random token material; every server instance gets fresh secrets.
pub(crate) fn random_string(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

pub struct Server;

impl Server {
    /// Binds the listener and starts serving; returns once connections are accepted, so a
    /// runner started afterwards never meets a refused connection (docs/runner-contract.md §1).
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
        if config.s3.bucket.is_empty() || config.s3.bucket.contains('/') {
            return Err(ServerError::BucketName(config.s3.bucket.clone()));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let host = match &config.public_host {
            Some(h) => h.clone(),
            None => match local.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            },
        };
        let host_port = format!("{host}:{}", local.port());
        let url = format!("http://{host_port}");
        let (stop_tx, stop_rx) = watch::channel(false);
        let s3_dir = config
            .s3
            .dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("s3"));
        let s3 = s3::Store::open(&s3_dir, &config.s3).map_err(|source| ServerError::DataDir {
            path: s3_dir,
            source,
        })?;
        let registry_dir = config
            .registry
            .dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("registry"));
        let registry =
            registry::Registry::open(&registry_dir, &config.registry).map_err(|source| {
                ServerError::DataDir {
                    path: registry_dir,
                    source,
                }
            })?;
        // Docker engines speak plain HTTP only to loopback registries (or ones configured as
        // insecure, which glci never asks of the user): the registry is always reachable on
        // a loopback address, the main listener's when that is one, else its own.
        let loopback = if local.ip().is_loopback() || !config.registry.served {
            None
        } else {
            let addr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            )
        };
        let registry_addr = match &loopback {
            Some(l) => l.local_addr().map_err(|source| ServerError::Bind {
                addr: local,
                source,
            })?,
            None => local,
        };
        let registry_host_port = match registry_addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]:{}", registry_addr.port()),
            IpAddr::V4(ip) => format!("{ip}:{}", registry_addr.port()),
        };
        let tls = match config
            .registry
            .tls
            .as_ref()
            .filter(|_| config.registry.served)
        {
            Some(tls) => {
                Some(bind_registry_tls(tls, local, &host, config.public_host.as_deref()).await?)
            }
            None => None,
        };
        let api = runner_api::ApiState::new(&config.data_dir);
        let shared = Arc::new(Shared {
            config,
            url,
            host_port,
            repos: RwLock::new(HashMap::new()),
            api,
            s3,
            registry,
            registry_host_port,
            registry_tls: tls.as_ref().map(|t| t.endpoint.clone()),
            shutdown: stop_rx.clone(),
        });
        let main_loop = accept_loop(listener, shared.clone(), stop_rx.clone(), None);
        let registry_loop = {
            let (shared, stop) = (shared.clone(), stop_rx.clone());
            async move {
                if let Some(l) = loopback {
                    accept_loop(l, shared, stop, None).await;
                }
            }
        };
        let tls_loop = {
            let (shared, stop) = (shared.clone(), stop_rx);
            async move {
                if let Some(t) = tls {
                    accept_loop(t.listener, shared, stop, Some(t.acceptor)).await;
                }
            }
        };
        let joined = async move {
            tokio::join!(main_loop, registry_loop, tls_loop);
        };
        let task = tokio::spawn(joined);
        Ok(RunningServer {
            shared,
            addr: local,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// The registry's TLS listener, bound and ready.
struct RegistryTlsListener {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    endpoint: RegistryTlsEndpoint,
}

/// Binds the registry's TLS listener on the main listener's address, with a leaf certificate
/// for that address, loopback, the public host name and the configured extra names.
async fn bind_registry_tls(
    config: &RegistryTlsConfig,
    main: SocketAddr,
    host: &str,
    public_host: Option<&str>,
) -> Result<RegistryTlsListener, ServerError> {
    let addr = SocketAddr::new(main.ip(), config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?
        .port();
    let mut names = vec![
        main.ip().to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    names.extend(public_host.map(str::to_string));
    names.extend(config.extra_names.iter().cloned());
    names.retain(|n| !n.is_empty());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let ca_dir = config.ca_dir.clone();
    // Making a CA the first time is file I/O and key generation: not on the async runtime.
    let ca = tokio::task::spawn_blocking(move || tls::RegistryCa::load_or_create(&ca_dir))
        .await
        .map_err(ServerError::RegistryCaTask)??;
    let ca_pem = ca.cert_pem().to_string();
    let validity = match config.leaf_validity {
        Some(validity) => time::Duration::try_from(validity).map_err(ServerError::LeafValidity)?,
        None => tls::LEAF_VALIDITY,
    };
    let resolver = tls::LeafResolver::new(ca, names, validity)?;
    Ok(RegistryTlsListener {
        listener,
        acceptor: tokio_rustls::TlsAcceptor::from(tls::server_config(resolver)?),
        endpoint: RegistryTlsEndpoint {
            address: format!("{host}:{port}"),
            ca_pem,
        },
    })
}

/// Accepts connections until `stop`; over TLS when `tls` is given (the registry's job
/// listener, which answers registry requests only).
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = JoinSet::new();
    let mut stop_outer = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Answers go out as soon as they are written: with Nagle's algorithm a
                    // response written in parts waits for the client's delayed ACK, 40 ms a
                    // request (three of them in every git fetch).
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let stop = stop.clone();
                    let tls = tls.clone();
                    conns.spawn(async move {
                        match tls {
                            None => serve_connection(stream, shared, stop, peer, false).await,
                            Some(acceptor) => {
                                // A client that never finishes its handshake must not hold a
                                // task forever either.
                                let handshake = tokio::time::timeout(
                                    Duration::from_secs(30),
                                    acceptor.accept(stream),
                                );
                                match handshake.await {
                                    Ok(Ok(stream)) => {
                                        serve_connection(stream, shared, stop, peer, true).await
                                    }
                                    Ok(Err(e)) => tracing::debug!("TLS handshake with {peer}: {e}"),
                                    Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // Running out of file descriptors must not end the server; back off.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop_outer.changed() => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    // In-flight requests get a moment to finish; long polls end on the same signal.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}

/// Serves HTTP/1.1 on one connection until it closes or the server stops.
async fn serve_connection<S>(
    stream: S,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
    via_tls: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |mut req: http::Request| {
        let shared = shared.clone();
        async move {
            if !via_tls {
                return Ok::<_, Infallible>(route(shared, req).await);
            }
            // The TLS listener is the registry's alone.
            if !registry::owns_path(req.uri().path()) {
                let path = req.uri().path().to_string();
                return Ok(http::text(
                    hyper::StatusCode::NOT_FOUND,
                    &format!("no such endpoint on the registry's listener: {path}"),
                ));
            }
            req.extensions_mut().insert(tls::ViaTls);
            Ok(route(shared, req).await)
        }
    });
    // A client that never finishes its headers must not hold a task forever.
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!("connection from {peer}: {e}");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn route(shared: Arc<Shared>, req: http::Request) -> http::Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let request_id = req.headers().get("x-request-id").cloned();
    let mut resp = if path == "/api/v4" || path.starts_with("/api/v4/") {
        runner_api::handle(&shared, req).await
    } else if shared.config.registry.served && registry::owns_path(&path) {
        registry::handle(&shared, req).await
    } else if s3::owns_path(&shared.config.s3.bucket, &path) {
        // Before git: a cache key may well end in `.git`; the bucket name is reserved.
        s3::handle(&shared, req).await
    } else if let Some((repo, rest)) = git_http::split_path(&path) {
        git_http::handle(&shared, req, &repo, &rest).await
    } else {
        http::text(
            hyper::StatusCode::NOT_FOUND,
            &format!("no such endpoint: {path}"),
        )
    };
    // GitLab echoes the runner's correlation id; the runner logs it.
    if let Some(id) = request_id {
        resp.headers_mut().insert("x-request-id", id);
    }
    if resp.status().is_server_error() {
        // The runner silently retries 5xx for seconds (docs/runner-contract.md §1): make them
        // visible.
        tracing::warn!("{method} {path} -> {}", resp.status());
    } else {
        tracing::debug!("{method} {path} -> {}", resp.status());
    }
    resp
}

/// A server that is accepting connections. Dropping it stops the listener too.
pub struct RunningServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// `http://host:port`, the runner's `url` and the base of every URL jobs get.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The socket actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The legacy registration token for `POST /api/v4/runners`.
    pub fn registration_token(&self) -> &str {
        self.shared.api.registration_token()
    }

    /// Creates a runner the way GitLab's UI does and returns its `glrt-` token.
    pub fn create_runner(&self, tags: &[String], run_untagged: bool) -> RunnerCredentials {
        self.shared.api.create_runner(tags, run_untagged, "glci")
    }

    /// Settings for the runner's `[runners.cache.s3]`.
    pub fn s3_credentials(&self) -> S3Credentials {
        S3Credentials {
            server_address: self.shared.host_port.clone(),
            bucket: self.shared.config.s3.bucket.clone(),
            region: self.shared.config.s3.region.clone(),
            access_key: self.shared.s3.access_key().to_string(),
            secret_key: self.shared.s3.secret_key().to_string(),
        }
    }

    /// The registry's loopback address and the host's credential for it.
    pub fn registry_credentials(&self) -> RegistryCredentials {
        RegistryCredentials {
            address: self.shared.registry_host_port.clone(),
            username: registry::HOST_USER.to_string(),
            password: self.shared.registry.host_password().to_string(),
        }
    }

    /// Where jobs reach the registry over TLS and the CA to trust (`None` without
    /// [`RegistryConfig::tls`]).
    pub fn registry_tls(&self) -> Option<&RegistryTlsEndpoint> {
        self.shared.registry_tls.as_ref()
    }

    /// Serves the bare repository at `bare_path` as `<url>/<project_path>.git`.
    pub fn add_repository(&self, project_path: &str, bare_path: &Path) -> Result<(), ServerError> {
        let clean = project_path.trim_matches('/');
        let bucket = &self.shared.config.s3.bucket;
        let valid = !clean.is_empty()
            && clean.split('/').next() != Some(bucket.as_str())
            && clean.contains('/')
            && clean
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.ends_with(".git"));
        if !valid {
            return Err(ServerError::ProjectPath {
                path: project_path.to_string(),
                bucket: bucket.clone(),
            });
        }
        if !bare_path.is_dir() {
            return Err(ServerError::NotARepository {
                project: clean.to_string(),
                path: bare_path.to_path_buf(),
            });
        }
        let mut repos = self
            .shared
            .repos
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        repos.insert(clean.to_string(), bare_path.to_path_buf());
        Ok(())
    }

    /// Queues a job; a runner whose tags fit picks it up on its next request.
    pub fn enqueue(&self, spec: JobSpec) -> Result<JobId, ServerError> {
        self.shared.api.enqueue(spec).map_err(ServerError::JobSpec)
    }

    /// Every state change and trace append of every job, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.shared.api.subscribe()
    }

    /// The current state of a job.
    pub fn job_state(&self, id: JobId) -> Option<JobState> {
        self.shared.api.job_state(id)
    }

    /// Waits until the job is finished (success, failed or canceled).
    pub async fn wait_job(&self, id: JobId) -> Option<JobState> {
        self.shared.api.wait_job(id).await
    }

    /// The trace received so far, byte for byte.
    pub fn trace(&self, id: JobId) -> Option<Vec<u8>> {
        self.shared.api.trace(id)
    }

    /// The file the job's trace is stored in as it arrives (absent until the first byte).
    pub fn trace_path(&self, id: JobId) -> Option<std::path::PathBuf> {
        self.shared.api.trace_path(id)
    }

    /// The job's token while it can be used (assigned or running).
    pub fn job_token(&self, id: JobId) -> Option<String> {
        self.shared.api.job_token(id)
    }

    /// Artifacts the job uploaded so far.
    pub fn artifacts(&self, id: JobId) -> Vec<StoredArtifact> {
        self.shared.api.artifacts(id)
    }

    /// Releases the job created through the API.
    pub fn releases(&self, id: JobId) -> Vec<Release> {
        self.shared.api.releases(id)
    }

    /// Generic package files the job uploaded.
    pub fn packages(&self, id: JobId) -> Vec<PackageFile> {
        self.shared.api.packages(id)
    }

    /// Lines glci adds to the job's log after its trace (API calls glci does not implement,
    /// releases created).
    pub fn notes(&self, id: JobId) -> Vec<String> {
        self.shared.api.notes(id)
    }

    /// Adds a line to the job's notes (see [`Self::notes`]).
    pub fn add_note(&self, id: JobId, line: String) {
        job_api::note(&mut self.shared.api.lock(), id, line);
    }

    /// Variables parsed from the job's `dotenv` report.
    pub fn dotenv(&self, id: JobId) -> Vec<(String, String)> {
        self.shared.api.dotenv(id)
    }

    /// Cancels a job: a pending one at once, a running one gracefully (`Job-Status:
    /// canceling`, after_script still runs) when its runner supports that, else by abort.
    pub fn cancel(&self, id: JobId) -> bool {
        self.shared.api.cancel(id, false)
    }

    /// Aborts a job at once (`Job-Status: canceled`): no after_script.
    pub fn abort(&self, id: JobId) -> bool {
        self.shared.api.cancel(id, true)
    }

    /// Stops accepting, lets in-flight requests finish (held long polls end with 204) and
    /// waits for the listener task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
