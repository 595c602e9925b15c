//! Connecting to the engine: `DOCKER_HOST` (unix, tcp, ssh), the active Docker context, or the
//! local socket; API version negotiated (the engines we meet speak as old as 1.41, bollard
//! defaults to a newer one and would be refused); one clear error when nothing answers.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use sha2::{Digest, Sha256};

/// How long to wait for the engine to answer a ping before saying it is not there.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors talking to the Docker engine, each naming what glci was doing.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no Docker engine answers at {endpoint}: {reason} (is dockerd running? start it, e.g. `sudo systemctl start docker`, or point DOCKER_HOST at one)")]
    Unreachable { endpoint: String, reason: String },
    #[error("Docker endpoint `{endpoint}` is not supported: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("image `{image}` is not present and glci does not pull it here: {reason}")]
    MissingImage { image: String, reason: String },
    #[error(
        "containers on the engine at {endpoint} cannot reach this host: no address of the engine's \
         bridge network is an address of this host (tried: {}); glci does not fall back to \
         loopback, which jobs cannot reach. Start the engine on this host, or pass the address \
         to listen on",
        tried.join("; ")
    )]
    NoHostAddress {
        endpoint: String,
        tried: Vec<String>,
    },
    #[error("failed to {action}: {source}")]
    Api {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl DockerError {
    pub(crate) fn api(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        DockerError::Api {
            action: action.into(),
            source,
        }
    }
}

/// Where containers reach a server that glci runs on this host; see [`Engine::host_address`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostAddress {
    /// An address of this host on the engine's default bridge.
    Bridge(IpAddr),
    /// No bridge address is an address of this host: the engine runs elsewhere, or its bridge
    /// is not set up. `tried` names each candidate and why it failed, for the error message.
    NotHere { tried: Vec<String> },
}

impl HostAddress {
    /// The engine shares this host's network (and, for a unix socket, its file system).
    pub fn is_local(&self) -> bool {
        matches!(self, HostAddress::Bridge(_))
    }
}

/// `172.17.0.0/16` -> `172.17.0.1`: the address Docker gives a bridge when IPAM names none.
fn first_host_address(subnet: &str) -> Option<IpAddr> {
    let (net, len) = subnet.split_once('/')?;
    let net: std::net::Ipv4Addr = net.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Some(IpAddr::V4((u32::from(net) & mask | 1).into()))
}

/// A connected engine whose API version has been negotiated.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
}

impl Engine {
    /// Connects to the engine the user's settings name, negotiates the API version and
    /// pings it. Order: `[docker] host` (`DOCKER_HOST`), then the Docker context
    /// (`[docker] context`, `DOCKER_CONTEXT`, else `currentContext` in
    /// `$DOCKER_CONFIG/config.json`), then the local socket.
    pub async fn connect() -> Result<Engine, DockerError> {
        let settings = crate::settings::current();
        let endpoint = match settings.docker_host() {
            Some(host) => host.to_string(),
            None => context_endpoint(settings.docker_context())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string()),
        };
        Engine::connect_to(&endpoint).await
    }

    /// Connects to one endpoint (`unix://`, `tcp://`, `http://`, `ssh://`).
    pub async fn connect_to(endpoint: &str) -> Result<Engine, DockerError> {
        // A missing socket means no engine, not a bad endpoint (bollard reports it as the latter).
        if let Some(path) = endpoint.strip_prefix("unix://") {
            if !Path::new(path).exists() {
                return Err(DockerError::Unreachable {
                    endpoint: endpoint.to_string(),
                    reason: format!("socket {path} does not exist"),
                });
            }
        }
        let docker = Docker::connect_with_host(endpoint).map_err(|e| DockerError::BadEndpoint {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
        let unreachable = |reason: String| DockerError::Unreachable {
            endpoint: endpoint.to_string(),
            reason,
        };
        let docker = tokio::time::timeout(PING_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", PING_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(PING_TIMEOUT, docker.ping())
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", PING_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine {
            docker,
            endpoint: endpoint.to_string(),
        })
    }

    /// The bollard client, for operations this module does not wrap.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Where the engine was reached, as given (`unix:///var/run/docker.sock`, ...).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let v = self.docker.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// The address of this host that containers on the engine's default bridge reach, for a
    /// server glci runs here. Candidates, in order:
    ///
    /// 1. the bridge's IPAM gateway — absent on an engine's very first start (Docker 20.10
    ///    writes it to its network store only on a later start, see docs/runner-contract.md);
    /// 2. the bridge interface's own IPv4 (`com.docker.network.bridge.name`, usually `docker0`),
    ///    which the kernel has in both states;
    /// 3. the subnet's first host address, the address Docker gives the bridge by default.
    ///
    /// A candidate counts only when the engine is reached through a unix socket and this host
    /// owns the address (binding it works): the bridge of an engine elsewhere (`tcp://`,
    /// `ssh://`, a desktop VM) is not an address of this host.
    pub async fn host_address(&self) -> HostAddress {
        let mut tried = Vec::new();
        // Over tcp or ssh even a bridge whose addresses match this host's is another machine's
        // (two hosts both have a 172.17.0.1 on their docker0).
        if !self.endpoint.starts_with("unix://") {
            tried.push(format!(
                "none: the engine is reached at {}, not through this host's socket",
                self.endpoint
            ));
            return HostAddress::NotHere { tried };
        }
        let net = match self
            .docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(net) => net,
            Err(e) => {
                tried.push(format!("inspecting the engine's `bridge` network: {e}"));
                return HostAddress::NotHere { tried };
            }
        };
        let configs = net.ipam.and_then(|i| i.config).unwrap_or_default();
        let interface = net
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.bridge.name"))
            .cloned();

        let mut candidates: Vec<(String, IpAddr)> = Vec::new();
        for gateway in configs.iter().filter_map(|c| c.gateway.as_deref()) {
            match gateway.parse::<IpAddr>() {
                Ok(ip) => candidates.push(("the bridge's IPAM gateway".into(), ip)),
                Err(_) => tried.push(format!("IPAM gateway `{gateway}` (not an address)")),
            }
        }
        if configs.iter().all(|c| c.gateway.is_none()) {
            tried.push("the bridge's IPAM gateway (none configured)".into());
        }
        match &interface {
            Some(name) => {
                let owned: Vec<IpAddr> = if_addrs::get_if_addrs()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| &i.name == name)
                    .map(|i| i.ip())
                    .filter(IpAddr::is_ipv4)
                    .collect();
                if owned.is_empty() {
                    tried.push(format!("interface `{name}` (no IPv4 address on this host)"));
                }
                candidates.extend(
                    owned
                        .into_iter()
                        .map(|ip| (format!("interface `{name}`"), ip)),
                );
            }
            None => tried.push("the bridge interface (the network names none)".into()),
        }
        for subnet in configs.iter().filter_map(|c| c.subnet.as_deref()) {
            match first_host_address(subnet) {
                Some(ip) => candidates.push((format!("the first address of subnet {subnet}"), ip)),
                None => tried.push(format!("subnet `{subnet}` (not an IPv4 subnet)")),
            }
        }

        for (what, ip) in candidates {
            if std::net::UdpSocket::bind((ip, 0)).is_ok() {
                return HostAddress::Bridge(ip);
            }
            tried.push(format!("{what}, {ip} (not an address of this host)"));
        }
        HostAddress::NotHere { tried }
    }

    /// Fails with [`DockerError::MissingImage`] unless `image` is present locally.
    pub async fn require_image(&self, image: &str) -> Result<(), DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(DockerError::MissingImage {
                image: image.to_string(),
                reason: "not found in the local image store (build fixtures with scripts/fixture-images)"
                    .to_string(),
            }),
            Err(e) => Err(DockerError::api(format!("inspect image `{image}`"), e)),
        }
    }
}

/// The endpoint of the Docker context `context` (`None`: the active one), when one other than
/// `default` is selected. bollard does not read contexts; the `docker` CLI stores them as
/// `$DOCKER_CONFIG/contexts/meta/<sha256(name)>/meta.json`.
fn context_endpoint(context: Option<&str>) -> Option<String> {
    let config_dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
    let name = match context {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            let config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(config_dir.join("config.json")).ok()?)
                    .ok()?;
            config.get("currentContext")?.as_str()?.to_string()
        }
    };
    if name == "default" {
        return None;
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let meta_path = config_dir
        .join("contexts/meta")
        .join(digest)
        .join("meta.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
    Some(
        meta.pointer("/Endpoints/docker/Host")?
            .as_str()?
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_engine_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let sock = format!("unix://{}/nothing.sock", dir.path().display());
        let err = Engine::connect_to(&sock).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("no Docker engine answers at unix://"),
            "{msg}"
        );
        assert!(msg.contains("is dockerd running?"), "{msg}");
    }

    #[test]
    fn first_host_address_of_a_subnet() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(first_host_address("172.17.0.0/16"), ip("172.17.0.1"));
        assert_eq!(first_host_address("10.1.2.128/25"), ip("10.1.2.129"));
        assert_eq!(first_host_address("172.18.5.7/16"), ip("172.18.0.1"));
        assert_eq!(first_host_address("fd00::/64"), None);
        assert_eq!(first_host_address("10.0.0.0/31"), None);
        assert_eq!(first_host_address("nonsense"), None);
    }

    #[tokio::test]
    async fn unknown_scheme_is_rejected() {
        let err = Engine::connect_to("ftp://example").await.unwrap_err();
        assert!(matches!(err, DockerError::BadEndpoint { .. }), "{err}");
    }

    #[test]
    fn context_endpoint_is_read_from_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let name = "remote";
        let digest = hex::encode(Sha256::digest(name.as_bytes()));
        let meta = dir.path().join("contexts/meta").join(digest);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"remote","Endpoints":{"docker":{"Host":"tcp://10.0.0.9:2375"}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"remote"}"#,
        )
        .unwrap();
        // Environment variables are process-wide: this is the only test that sets these.
        std::env::set_var("DOCKER_CONFIG", dir.path());
        assert_eq!(
            context_endpoint(None).as_deref(),
            Some("tcp://10.0.0.9:2375")
        );
        std::env::remove_var("DOCKER_CONFIG");
    }
}
