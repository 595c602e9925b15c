//! What a server is started with, and what it hands back for the runner's configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Everything [`Server::start`](super::Server::start) needs; [`ServerConfig::new`] gives safe defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on: the Docker bridge gateway or loopback, never all interfaces by
    /// default, since every job's secrets pass through this server.
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Host name put into URLs handed to jobs (`repo_url`, `CI_SERVER_URL`); defaults to the
    /// bound address. Set it when containers reach the server under another name.
    pub public_host: Option<String>,
    /// Root of everything the server stores (artifacts, traces, cache objects).
    pub data_dir: PathBuf,
    pub s3: S3Config,
    pub api: ApiConfig,
    pub registry: RegistryConfig,
}

/// The container registry (`/v2/`).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Serve the registry at all (`false`: `/v2/` and `/jwt/auth` answer 404 and no registry
    /// listener is opened, as a GitLab instance without a registry).
    pub served: bool,
    /// Where blobs and repositories live; default `<data_dir>/registry`. Point every server
    /// at one directory (`GLCI_HOME/registry`) to keep images across runs.
    pub dir: Option<PathBuf>,
    /// Largest manifest accepted (413 `SIZE_INVALID` above it); distribution's default 4 MiB.
    pub max_manifest_bytes: u64,
    /// Largest blob accepted.
    pub max_blob_bytes: u64,
    /// Serve the registry to jobs over TLS too, on the main listener's address (`None`: no
    /// TLS listener; jobs then use the plain one).
    pub tls: Option<RegistryTlsConfig>,
    /// The pull-through cache's upstreams, asked in order (default: Docker Hub, then
    /// `registry.gitlab.com`; `Upstream::from_env` reads `GLCI_REGISTRY_UPSTREAMS`).
    pub upstreams: Vec<super::Upstream>,
    /// Whether the engine the jobs run on (`DOCKER_HOST`, the Docker context, or the local
    /// socket) is the cache's last upstream: images only it has are served from it.
    pub engine_upstream: bool,
    /// Mirror every push to this registry too (`--push-through`; `None`: no mirror).
    pub push_through: Option<super::PushThroughConfig>,
}

/// The registry's TLS listener for jobs (see `server/tls.rs`).
#[derive(Debug, Clone)]
pub struct RegistryTlsConfig {
    /// glci's CA: `GLCI_HOME/registry-ca`, made there on first use.
    pub ca_dir: PathBuf,
    /// 0 picks a free port.
    pub port: u16,
    /// Names and addresses the certificate is valid for besides the listener's address,
    /// loopback and `localhost` (`GLCI_REGISTRY_NAMES`).
    pub extra_names: Vec<String>,
    /// How long each leaf certificate is valid (`[tls] validity`; `None`:
    /// [`LEAF_VALIDITY`](super::tls::LEAF_VALIDITY)).
    pub leaf_validity: Option<Duration>,
}

/// The S3 cache endpoint.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Path-style bucket name, the first path segment of every S3 request.
    pub bucket: String,
    /// Region signed into SigV4 credentials scopes; `us-east-1` like the runner's default.
    pub region: String,
    /// Largest single object (S3's `EntityTooLarge` above it).
    pub max_entry_bytes: u64,
    /// Total size of all objects; the oldest are evicted to make room (a cache stays useful
    /// when full), 507 only when one object alone exceeds it.
    pub max_total_bytes: u64,
    /// Objects older than this are treated as gone.
    pub ttl: Duration,
    /// Where the objects live; default `<data_dir>/s3`. Point several servers (one per
    /// pipeline) at one directory to keep the cache across runs.
    pub dir: Option<PathBuf>,
}

/// The runner API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long `POST /jobs/request` is held while no job is ready (GitLab/Workhorse
    /// long-polling), so a queued job is picked up at once.
    pub long_poll: Duration,
    /// Sent as `X-GitLab-Trace-Update-Interval` (seconds).
    pub trace_update_interval_secs: u32,
    /// Largest artifact upload; 413 above it, as GitLab (default 100 MiB, GitLab's default).
    pub max_artifact_bytes: u64,
    /// Largest stored trace; further PATCHes get 403, as GitLab's instance limit.
    pub max_trace_bytes: u64,
    /// GitLab's plan limits for `artifacts:reports:dotenv`.
    pub dotenv_max_bytes: u64,
    pub dotenv_max_variables: usize,
    /// Where generic packages (`/projects/:id/packages/generic/...`) are kept; default
    /// `<data_dir>/packages`. `cargo glci` points it into `GLCI_HOME` so later runs find them.
    pub packages_dir: Option<PathBuf>,
    /// Largest generic package file; 413 above it (GitLab's default plan limit, 5 GiB, is
    /// more than a local disk should take unasked: 1 GiB).
    pub max_package_bytes: u64,
    /// A directory holding earlier pipelines' data directories (`<GLCI_HOME>/pipelines`):
    /// artifacts asked for by ref and job name come from the newest earlier run when this
    /// pipeline has none.
    pub earlier_runs: Option<PathBuf>,
}

impl ServerConfig {
    /// Loopback, ephemeral port, the default bucket `glci-cache` and GitLab's limits.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            public_host: None,
            data_dir: data_dir.into(),
            s3: S3Config {
                bucket: "glci-cache".to_string(),
                region: "us-east-1".to_string(),
                max_entry_bytes: 5 * 1024 * 1024 * 1024,
                max_total_bytes: 20 * 1024 * 1024 * 1024,
                ttl: Duration::from_secs(14 * 24 * 3600),
                dir: None,
            },
            api: ApiConfig {
                long_poll: Duration::from_secs(10),
                trace_update_interval_secs: 3,
                max_artifact_bytes: 100 * 1024 * 1024,
                max_trace_bytes: 100 * 1024 * 1024,
                dotenv_max_bytes: 5 * 1024,
                dotenv_max_variables: 20,
                packages_dir: None,
                max_package_bytes: 1024 * 1024 * 1024,
                earlier_runs: None,
            },
            registry: RegistryConfig {
                served: true,
                dir: None,
                max_manifest_bytes: 4 * 1024 * 1024,
                max_blob_bytes: 64 * 1024 * 1024 * 1024,
                tls: None,
                upstreams: super::Upstream::defaults(),
                engine_upstream: true,
                push_through: None,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "invalid server configuration: S3 bucket name {0:?} must be one non-empty path segment"
    )]
    BucketName(String),
    #[error("invalid server configuration: making the registry CA: {0}")]
    RegistryCaTask(tokio::task::JoinError),
    #[error("invalid server configuration: registry certificate validity: {0}")]
    LeafValidity(time::error::ConversionRange),
    /// `RunningServer::add_repository` with a path git clients could not address.
    #[error(
        "invalid server configuration: project path {path:?} must look like `group/project` \
         and not start with the S3 bucket name {bucket:?}"
    )]
    ProjectPath { path: String, bucket: String },
    #[error("invalid server configuration: repository for {project}: {} is not a directory", .path.display())]
    NotARepository { project: String, path: PathBuf },
    /// A job spec `RunningServer::enqueue` refused.
    #[error("invalid server configuration: {0}")]
    JobSpec(super::runner_api::state::JobSpecError),
    #[error(transparent)]
    RegistryTls(#[from] super::tls::TlsError),
    #[error("{0}")]
    Upstreams(#[from] super::UpstreamListError),
}

/// The registry's address and the host's own credential (full access), for `docker login`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// `127.0.0.1:port`: a loopback address, which Docker engines on this host talk plain
    /// HTTP to without being told the registry is insecure. `CI_REGISTRY` carries it.
    pub address: String,
    pub username: String,
    pub password: String,
}

/// Where jobs reach the registry over TLS, and the CA its certificate chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTlsEndpoint {
    /// `host:port` of the TLS listener, as jobs address it (`CI_REGISTRY`).
    pub address: String,
    /// glci's registry CA certificate (PEM).
    pub ca_pem: String,
}

/// Credentials the runner's `[runners.cache.s3]` section needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `host:port`, the runner's `ServerAddress`.
    pub server_address: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::runner_api::state::JobSpecError;

    /// The typed variants read as the strings they replaced did.
    #[test]
    fn refusals_keep_their_wording() {
        let e = ServerError::ProjectPath {
            path: "glci-cache/x".into(),
            bucket: "glci-cache".into(),
        };
        assert_eq!(
            e.to_string(),
            "invalid server configuration: project path \"glci-cache/x\" must look like \
             `group/project` and not start with the S3 bucket name \"glci-cache\""
        );
        let e = ServerError::JobSpec(JobSpecError::NotACommitId {
            job: "build".into(),
            sha: "abc".into(),
        });
        assert_eq!(
            e.to_string(),
            "invalid server configuration: job \"build\": git sha \"abc\" is not a full commit id"
        );
        assert!(std::error::Error::source(&e).is_none(), "no repeated cause");
    }
}
