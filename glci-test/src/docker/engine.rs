//! Connecting to the engine: `DOCKER_HOST` (unix, tcp, ssh), the active Docker context, or the
//! local socket; API version negotiated (the engines we meet speak as old as 1.41, bollard
//! defaults to a newer one and would be refused); one clear error when nothing answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use sha2::{Digest, Sha256};

/// How long to wait for the engine to answer a ping before saying it is not there.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors talking to the Docker engine, each naming what glci was doing.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no Docker engine answers at {endpoint}: {reason} (is dockerd running? `scripts/docker-engine` starts one)")]
    Unreachable { endpoint: String, reason: String },
    #[error("Docker endpoint `{endpoint}` is not supported: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("image `{image}` is not present and glci does not pull it here: {reason}")]
    MissingImage { image: String, reason: String },
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

/// A connected engine whose API version has been negotiated.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
}

impl Engine {
    /// Connects to the engine the user's environment names, negotiates the API version and
    /// pings it. Order: `DOCKER_HOST`, then the current Docker context (`DOCKER_CONTEXT` or
    /// `currentContext` in `$DOCKER_CONFIG/config.json`), then the local socket.
    pub async fn connect() -> Result<Engine, DockerError> {
        let endpoint = match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => host,
            _ => context_endpoint().unwrap_or_else(|| "unix:///var/run/docker.sock".to_string()),
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

    /// The gateway address of the default bridge network (`docker0`, usually 172.17.0.1):
    /// reachable from every container and from the host, not from other machines. `None` for
    /// engines without one (remote engines, rootless setups).
    pub async fn bridge_gateway(&self) -> Option<std::net::IpAddr> {
        let net = self
            .docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .ok()?;
        let gateway = net.ipam?.config?.into_iter().find_map(|c| c.gateway)?;
        let ip: std::net::IpAddr = gateway.parse().ok()?;
        // Only a local engine's bridge is an address of this host.
        (self.endpoint.starts_with("unix://") && std::net::UdpSocket::bind((ip, 0)).is_ok())
            .then_some(ip)
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

/// The endpoint of the active Docker context, when one other than `default` is selected.
/// bollard does not read contexts; the `docker` CLI stores them as
/// `$DOCKER_CONFIG/contexts/meta/<sha256(name)>/meta.json`.
fn context_endpoint() -> Option<String> {
    let config_dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
    let name = match std::env::var("DOCKER_CONTEXT") {
        Ok(n) if !n.is_empty() => n,
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
        assert_eq!(context_endpoint().as_deref(), Some("tcp://10.0.0.9:2375"));
        std::env::remove_var("DOCKER_CONFIG");
    }
}
