//! The engine that runs the jobs as the pull-through cache's last upstream (glci's addition
//! to GitLab's tool): an image no upstream has but the engine's local store does (the
//! offline fixture images, a base image the user built) is read with `docker save`
//! (`GET /images/{name}/get`) and stored as an OCI image: the config as it is (its digest is
//! the image's ID) and each layer as the uncompressed tar the engine saves, which hashes to
//! the layer's `diff_id`, both checked against the config. Layers are not recompressed, so
//! the same image always gives the same manifest digest; Docker, containerd and skopeo read
//! `application/vnd.oci.image.layer.v1.tar` layers.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::ApiError;
use super::manifest;
use super::names::Digest;
use super::store::{write_blob_sync, Store};
use crate::docker::Engine;

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Largest `manifest.json` or image config read from a saved image.
const MAX_JSON_BYTES: u64 = 8 * 1024 * 1024;

/// What went wrong asking the engine, for the error listing what was tried.
#[derive(Debug, thiserror::Error)]
pub(super) enum EngineSourceError {
    #[error("the Docker engine: {0}")]
    Engine(#[from] crate::docker::DockerError),
    #[error("the Docker engine: reading `docker save` of {image}: {why}")]
    Saved { image: String, why: SavedImageError },
    #[error("the Docker engine: {0}")]
    Store(#[from] ApiError),
}

/// Why the image `docker save` wrote cannot be stored.
#[derive(Debug, thiserror::Error)]
pub(super) enum SavedImageError {
    #[error(transparent)]
    Read(#[from] io::Error),
    /// Storing a layer failed; the registry's message, without its code.
    #[error("{}", .0.message)]
    Layer(ApiError),
    #[error("a layer symlink without a target")]
    LinkWithoutTarget,
    #[error("no manifest.json in the saved image")]
    NoManifest,
    #[error("manifest.json: {0}")]
    ManifestNotJson(serde_json::Error),
    #[error("manifest.json lists no image")]
    NoImage,
    #[error("manifest.json names no Config")]
    NoConfig,
    #[error("the saved image lacks its config {0}")]
    MissingConfig(String),
    #[error("manifest.json names no Layers")]
    NoLayers,
    #[error("a layer path is not text")]
    LayerPathNotText,
    #[error("the saved image lacks its layer {}", .0.display())]
    MissingLayer(PathBuf),
    #[error("the image config is not JSON: {0}")]
    ConfigNotJson(serde_json::Error),
    #[error("the saved layers hash to {layers:?}, the config's diff_ids are {diff_ids:?}")]
    DiffIds {
        layers: Vec<String>,
        diff_ids: Vec<String>,
    },
    /// Writing the OCI manifest (cannot fail for a `serde_json::Value`).
    #[error(transparent)]
    Manifest(serde_json::Error),
    /// The blocking task reading the tar panicked or was cancelled.
    #[error(transparent)]
    Task(tokio::task::JoinError),
}

/// Imports `name:tag` from the engine into `name`; `Ok(None)` when the engine has no such
/// image. Returns the manifest's digest.
pub(super) async fn import(
    store: &Store,
    name: &str,
    tag: &str,
    max_blob_bytes: u64,
) -> Result<Option<Digest>, EngineSourceError> {
    let engine = Engine::connect().await?;
    let image = format!("{}:{tag}", super::upstream::engine_name(name));
    match engine.client().inspect_image(&image).await {
        Ok(_) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(e) => {
            return Err(crate::docker::DockerError::api(format!("inspect image {image}"), e).into())
        }
    }
    let saved_err = |why: SavedImageError| EngineSourceError::Saved {
        image: image.clone(),
        why,
    };
    let stream = engine.client().export_image(&image);
    let reader = StreamRead {
        stream: Box::pin(stream.map(|r| r.map_err(io::Error::other))),
        handle: tokio::runtime::Handle::current(),
        chunk: Bytes::new(),
    };
    let blobs_root = store.blobs_root();
    let saved =
        tokio::task::spawn_blocking(move || read_saved(reader, &blobs_root, max_blob_bytes))
            .await
            .map_err(|e| saved_err(SavedImageError::Task(e)))?
            .map_err(saved_err)?;
    let config = saved.config;
    let config_digest = Digest::of(&config);
    let parsed: serde_json::Value = serde_json::from_slice(&config)
        .map_err(|e| saved_err(SavedImageError::ConfigNotJson(e)))?;
    let diff_ids: Vec<String> = parsed
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let layer_ids: Vec<String> = saved.layers.iter().map(|(d, _)| d.to_string()).collect();
    if diff_ids != layer_ids {
        return Err(saved_err(SavedImageError::DiffIds {
            layers: layer_ids,
            diff_ids,
        }));
    }
    // Marked first: a repository with content but no mark is a project's.
    store
        .mark_mirrored(name, &format!("docker engine {}", engine.endpoint()))
        .await?;
    store.put_blob_bytes(config.clone()).await?;
    store.link_blob(name, &config_digest).await?;
    for (digest, _) in &saved.layers {
        store.link_blob(name, digest).await?;
    }
    let layers: Vec<serde_json::Value> = saved
        .layers
        .iter()
        .map(|(digest, size)| {
            serde_json::json!({
                "mediaType": OCI_LAYER,
                "digest": digest.to_string(),
                "size": size,
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": layers,
    });
    let data =
        serde_json::to_vec(&manifest).map_err(|e| saved_err(SavedImageError::Manifest(e)))?;
    let digest = store
        .put_manifest(name, data, manifest::OCI_MANIFEST, Some(tag))
        .await?;
    Ok(Some(digest))
}

/// An image as `docker save` wrote it: its config, and its layers' digests and sizes in
/// order (the layer data already in the blob store).
struct Saved {
    config: Vec<u8>,
    layers: Vec<(Digest, u64)>,
}

/// Reads a `docker save` tar (`manifest.json`, `<id>.json`, `<dir>/layer.tar`, a layer
/// saved twice being a symlink to the first), storing each layer as a blob on the way.
fn read_saved(
    reader: impl Read,
    blobs_root: &Path,
    max_blob_bytes: u64,
) -> Result<Saved, SavedImageError> {
    let mut archive = tar::Archive::new(reader);
    let mut layers: HashMap<PathBuf, (Digest, u64)> = HashMap::new();
    let mut links: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut jsons: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = normal(&entry.path()?);
        let kind = entry.header().entry_type();
        if path.file_name().is_some_and(|f| f == "layer.tar") {
            if kind.is_symlink() {
                let target = entry
                    .link_name()?
                    .ok_or(SavedImageError::LinkWithoutTarget)?;
                let dir = path.parent().unwrap_or(Path::new(""));
                links.insert(path.clone(), normal(&dir.join(target)));
            } else if kind.is_file() {
                let stored = write_blob_sync(blobs_root, &mut entry, None, max_blob_bytes)
                    .map_err(SavedImageError::Layer)?;
                layers.insert(path, stored);
            }
        } else if kind.is_file()
            && path.extension().is_some_and(|e| e == "json")
            && path.components().count() == 1
        {
            let mut data = Vec::new();
            (&mut entry).take(MAX_JSON_BYTES).read_to_end(&mut data)?;
            jsons.insert(path, data);
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        jsons
            .get(Path::new("manifest.json"))
            .ok_or(SavedImageError::NoManifest)?,
    )
    .map_err(SavedImageError::ManifestNotJson)?;
    let entry = manifest.get(0).ok_or(SavedImageError::NoImage)?;
    let config_path = entry
        .get("Config")
        .and_then(|c| c.as_str())
        .ok_or(SavedImageError::NoConfig)?;
    let config = jsons
        .get(&normal(Path::new(config_path)))
        .ok_or_else(|| SavedImageError::MissingConfig(config_path.to_string()))?
        .clone();
    let mut ordered = Vec::new();
    for layer in entry
        .get("Layers")
        .and_then(|l| l.as_array())
        .ok_or(SavedImageError::NoLayers)?
    {
        let mut path = normal(Path::new(
            layer.as_str().ok_or(SavedImageError::LayerPathNotText)?,
        ));
        for _ in 0..8 {
            match links.get(&path) {
                Some(target) => path = target.clone(),
                None => break,
            }
        }
        let stored = layers
            .get(&path)
            .ok_or_else(|| SavedImageError::MissingLayer(path.clone()))?;
        ordered.push(stored.clone());
    }
    Ok(Saved {
        config,
        layers: ordered,
    })
}

/// A tar path without `.` and with `..` applied (link targets are relative).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The engine's response body as a blocking reader, for the tar parser on a blocking thread.
struct StreamRead {
    stream: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    handle: tokio::runtime::Handle,
    chunk: Bytes,
}

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
