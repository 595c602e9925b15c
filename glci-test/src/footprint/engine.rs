//! What glci holds in the Docker engine, in the engine's own numbers: those of its
//! `GET /system/df` (what `docker system df -v` prints), kept to glci's objects.
//!
//! glci's objects: containers and volumes labelled `io.glci.pipeline` (every object a run
//! makes, see `docker::labels`), networks with that label (the engine's df has no networks:
//! they hold no bytes, so they are counted), and the images glci builds: the relay image
//! (`io.glci.relay-agent`) and the fixture images (`io.glci.fixture`, built by the
//! repository's `scripts/fixture-images`). Images a user pulled carry neither label and are
//! never counted.
//!
//! bollard (0.21) models only the newest shape of `/system/df` (API 1.52, `ImageUsage`, ...),
//! while the engines glci meets answer older versions with the older shape (`Images`,
//! `Containers`, `Volumes` at the top; API 1.41 here). The request is therefore made here,
//! over the engine's socket (or plain `tcp://`), and both shapes are read.

use std::collections::HashMap;

use bollard::query_parameters::ListNetworksOptionsBuilder;
use serde::{Deserialize, Serialize};

use crate::docker::{DockerError, Engine, LABEL_PIPELINE};

/// Marks a fixture image (`scripts/fixture-images` builds them with it).
pub const LABEL_FIXTURE: &str = "io.glci.fixture";
pub use crate::relay::LABEL_RELAY_AGENT;

/// Only objects carrying this label too (`key` or `key=value`), as `docker ... --filter
/// label=` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
}

impl LabelFilter {
    /// `key` or `key=value`.
    pub fn parse(text: &str) -> LabelFilter {
        match text.split_once('=') {
            Some((k, v)) => LabelFilter {
                key: k.to_string(),
                value: Some(v.to_string()),
            },
            None => LabelFilter {
                key: text.to_string(),
                value: None,
            },
        }
    }

    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (Some(_), None) => true,
            (Some(v), Some(want)) => v == want,
            (None, _) => false,
        }
    }
}

/// One of glci's containers.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerUse {
    pub id: String,
    pub name: String,
    /// `running`, `exited`, ...
    pub state: String,
    /// Its writable layer (`SizeRw`): the bytes removing it frees.
    pub size: u64,
    #[serde(skip)]
    pub labels: HashMap<String, String>,
}

/// One of glci's networks.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkUse {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub labels: HashMap<String, String>,
}

/// One of glci's volumes.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeUse {
    pub name: String,
    /// `UsageData.Size`; `None` when the engine does not know (a volume driver other than
    /// `local`).
    pub size: Option<u64>,
    /// Containers using it.
    pub containers: u64,
    #[serde(skip)]
    pub labels: HashMap<String, String>,
}

/// What built an image glci counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// The relay agent image glci builds for remote engines.
    Relay,
    /// A fixture image of glci's repository.
    Fixture,
}

/// One image glci built.
#[derive(Debug, Clone, Serialize)]
pub struct ImageUse {
    pub id: String,
    pub tags: Vec<String>,
    pub kind: ImageKind,
    /// All its layers (`Size`, `docker system df -v`'s SIZE).
    pub size: u64,
    /// Layers it shares with other images (`SharedSize`).
    pub shared_size: u64,
    /// Containers using it.
    pub containers: u64,
}

impl ImageUse {
    /// What only this image holds (`docker system df -v`'s UNIQUE SIZE).
    pub fn unique_size(&self) -> u64 {
        self.size.saturating_sub(self.shared_size)
    }
}

/// glci's objects in the engine.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineUsage {
    pub containers: Vec<ContainerUse>,
    pub networks: Vec<NetworkUse>,
    pub volumes: Vec<VolumeUse>,
    pub images: Vec<ImageUse>,
}

impl EngineUsage {
    pub fn container_bytes(&self) -> u64 {
        self.containers.iter().map(|c| c.size).sum()
    }

    pub fn volume_bytes(&self) -> u64 {
        self.volumes.iter().filter_map(|v| v.size).sum()
    }

    /// Sum of the images' unique sizes: the bytes removing all of them frees at least.
    pub fn image_unique_bytes(&self) -> u64 {
        self.images.iter().map(ImageUse::unique_size).sum()
    }

    /// Sum of the images' sizes (shared layers counted with each image).
    pub fn image_bytes(&self) -> u64 {
        self.images.iter().map(|i| i.size).sum()
    }

    pub fn images_of(&self, kind: ImageKind) -> usize {
        self.images.iter().filter(|i| i.kind == kind).count()
    }
}

/// Why the engine's usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{0}")]
    Docker(#[from] DockerError),
    #[error("reading the engine's disk usage (GET {path}) at {endpoint}: {reason}")]
    Df {
        endpoint: String,
        path: String,
        reason: DfError,
    },
}

/// Why the `GET /system/df` behind [`UsageError::Df`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DfError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Http(hyper::Error),
    #[error("{0}")]
    Request(http::Error),
    #[error("{status}: {body}")]
    Status {
        status: http::StatusCode,
        /// The engine's answer, trimmed.
        body: String,
    },
    #[error("unexpected answer: {0}")]
    Unexpected(serde_json::Error),
    #[error("glci reads the engine's disk usage over a unix socket or plain tcp:// only")]
    UnsupportedEndpoint,
}

/// glci's objects in `engine` with the engine's numbers, those also carrying `filter`'s
/// label when given.
pub async fn engine_usage(
    engine: &Engine,
    filter: Option<&LabelFilter>,
) -> Result<EngineUsage, UsageError> {
    let keep = |labels: &HashMap<String, String>| filter.is_none_or(|f| f.matches(labels));
    let df = system_df(engine).await?;
    let mut usage = EngineUsage::default();
    for c in df.containers {
        if !c.labels.contains_key(LABEL_PIPELINE) || !keep(&c.labels) {
            continue;
        }
        usage.containers.push(ContainerUse {
            name: c
                .names
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            id: c.id,
            state: c.state,
            size: c.size_rw.max(0) as u64,
            labels: c.labels,
        });
    }
    for v in df.volumes {
        if !v.labels.contains_key(LABEL_PIPELINE) || !keep(&v.labels) {
            continue;
        }
        let data = v.usage_data.unwrap_or_default();
        usage.volumes.push(VolumeUse {
            name: v.name,
            size: u64::try_from(data.size).ok(),
            containers: data.ref_count.max(0) as u64,
            labels: v.labels,
        });
    }
    for i in df.images {
        let kind = if i.labels.contains_key(LABEL_RELAY_AGENT) {
            ImageKind::Relay
        } else if i.labels.contains_key(LABEL_FIXTURE) {
            ImageKind::Fixture
        } else {
            continue;
        };
        if !keep(&i.labels) {
            continue;
        }
        usage.images.push(ImageUse {
            id: i.id,
            tags: i.repo_tags,
            kind,
            size: i.size.max(0) as u64,
            shared_size: i.shared_size.max(0) as u64,
            containers: i.containers.max(0) as u64,
        });
    }
    let filters = HashMap::from([("label", vec![LABEL_PIPELINE])]);
    let networks = engine
        .client()
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .map_err(|e| DockerError::api("list glci networks", e))?;
    for n in networks {
        let labels = n.labels.unwrap_or_default();
        if !keep(&labels) {
            continue;
        }
        usage.networks.push(NetworkUse {
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            labels,
        });
    }
    Ok(usage)
}

/// The parts of `/system/df` read here, in both of its shapes.
#[derive(Debug, Default, Deserialize)]
struct DfResponse {
    #[serde(rename = "Images", default, deserialize_with = "null_as_empty")]
    images: Vec<DfImage>,
    #[serde(rename = "Containers", default, deserialize_with = "null_as_empty")]
    containers: Vec<DfContainer>,
    #[serde(rename = "Volumes", default, deserialize_with = "null_as_empty")]
    volumes: Vec<DfVolume>,
    #[serde(rename = "ImageUsage", default)]
    image_usage: Option<DfItems<DfImage>>,
    #[serde(rename = "ContainerUsage", default)]
    container_usage: Option<DfItems<DfContainer>>,
    #[serde(rename = "VolumeUsage", default)]
    volume_usage: Option<DfItems<DfVolume>>,
}

#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct DfItems<T> {
    #[serde(
        rename = "Items",
        default = "Vec::new",
        deserialize_with = "null_as_empty"
    )]
    items: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct DfImage {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    repo_tags: Vec<String>,
    #[serde(rename = "Size", default)]
    size: i64,
    #[serde(rename = "SharedSize", default)]
    shared_size: i64,
    #[serde(rename = "Containers", default)]
    containers: i64,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_empty")]
    labels: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct DfContainer {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default, deserialize_with = "null_as_empty")]
    names: Vec<String>,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "SizeRw", default)]
    size_rw: i64,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_empty")]
    labels: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct DfVolume {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_empty")]
    labels: HashMap<String, String>,
    #[serde(rename = "UsageData", default)]
    usage_data: Option<DfVolumeUsage>,
}

#[derive(Debug, Default, Deserialize)]
struct DfVolumeUsage {
    #[serde(rename = "Size", default)]
    size: i64,
    #[serde(rename = "RefCount", default)]
    ref_count: i64,
}

/// The engine sends `null` for empty lists and maps.
fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GET /v<negotiated>/system/df?verbose=1`, read in either shape.
async fn system_df(engine: &Engine) -> Result<DfResponse, UsageError> {
    let path = format!("/v{}/system/df?verbose=1", engine.api_version());
    let body = get(engine.endpoint(), &path).await?;
    let mut df: DfResponse = serde_json::from_slice(&body).map_err(|e| UsageError::Df {
        endpoint: engine.endpoint().to_string(),
        path: path.clone(),
        reason: DfError::Unexpected(e),
    })?;
    if let Some(u) = df.image_usage.take() {
        df.images.extend(u.items);
    }
    if let Some(u) = df.container_usage.take() {
        df.containers.extend(u.items);
    }
    if let Some(u) = df.volume_usage.take() {
        df.volumes.extend(u.items);
    }
    Ok(df)
}

/// One GET to the engine at `endpoint` (`unix://` or plain `tcp://`/`http://`), its body.
async fn get(endpoint: &str, path: &str) -> Result<Vec<u8>, UsageError> {
    let fail = |reason: DfError| UsageError::Df {
        endpoint: endpoint.to_string(),
        path: path.to_string(),
        reason,
    };
    if let Some(socket) = endpoint.strip_prefix("unix://") {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| fail(DfError::Connect(e)))?;
        return request(stream, path).await.map_err(fail);
    }
    let address = endpoint
        .strip_prefix("tcp://")
        .or_else(|| endpoint.strip_prefix("http://"));
    let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
    match address {
        Some(address) if !tls => {
            let stream = tokio::net::TcpStream::connect(address.trim_end_matches('/'))
                .await
                .map_err(|e| fail(DfError::Connect(e)))?;
            request(stream, path).await.map_err(fail)
        }
        _ => Err(fail(DfError::UnsupportedEndpoint)),
    }
}

async fn request<S>(stream: S, path: &str) -> Result<Vec<u8>, DfError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(DfError::Http)?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, "docker")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(DfError::Request)?;
    let response = sender.send_request(request).await.map_err(DfError::Http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(DfError::Http)?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(DfError::Status {
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_of_system_df_are_read() {
        let old = r#"{"LayersSize":1,"Images":[{"Id":"sha256:a","RepoTags":null,"Size":10,"SharedSize":4,"Containers":1,"Labels":{"io.glci.fixture":"x"}}],
            "Containers":[{"Id":"c","Names":["/n"],"State":"exited","SizeRw":7,"Labels":null}],
            "Volumes":[{"Name":"v","Labels":{},"UsageData":{"Size":-1,"RefCount":0}}],"BuildCache":null}"#;
        let df: DfResponse = serde_json::from_str(old).unwrap();
        assert_eq!(df.images[0].size, 10);
        assert_eq!(df.containers[0].size_rw, 7);
        assert_eq!(df.volumes[0].usage_data.as_ref().unwrap().size, -1);
        let new = r#"{"ImageUsage":{"Items":[{"Id":"sha256:b","Size":3,"SharedSize":0,"Containers":0,"Labels":{}}]},
            "ContainerUsage":{"Items":null},"VolumeUsage":{"Items":[]}}"#;
        let df: DfResponse = serde_json::from_str(new).unwrap();
        assert_eq!(df.image_usage.unwrap().items[0].size, 3);
    }

    #[test]
    fn label_filters_match_keys_and_values() {
        let labels = HashMap::from([("a".to_string(), "1".to_string())]);
        assert!(LabelFilter::parse("a").matches(&labels));
        assert!(LabelFilter::parse("a=1").matches(&labels));
        assert!(!LabelFilter::parse("a=2").matches(&labels));
        assert!(!LabelFilter::parse("b").matches(&labels));
    }
}
