//! Manifests: which formats are accepted, what they reference, and `Accept` negotiation.

use serde_json::Value;

use super::error::ApiError;
use super::names::Digest;

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A manifest that passed [`parse`].
pub(crate) struct Manifest {
    pub(crate) media_type: String,
    /// Blobs it needs in the repository (config and layers of an image manifest).
    pub(crate) blobs: Vec<Digest>,
    /// Manifests it needs in the repository (the entries of an index or list).
    pub(crate) manifests: Vec<Digest>,
    pub(crate) subject: Option<Digest>,
    /// `artifactType`, else the config's media type: what the referrers API reports.
    pub(crate) artifact_type: Option<String>,
    pub(crate) annotations: Option<Value>,
}

fn media_type_of(header: &str) -> &str {
    header.split(';').next().unwrap_or("").trim()
}

fn digest_field(descriptor: &Value, what: &str) -> Result<Digest, ApiError> {
    let text = descriptor
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::manifest_invalid(format!("{what} has no digest")))?;
    Digest::parse(text).map_err(|e| ApiError::manifest_invalid(format!("{what}: {}", e.message)))
}

/// Checks a pushed manifest's format; `content_type` is the request's `Content-Type`.
pub(crate) fn parse(data: &[u8], content_type: Option<&str>) -> Result<Manifest, ApiError> {
    let value: Value = serde_json::from_slice(data)
        .map_err(|e| ApiError::manifest_invalid(format!("manifest is not JSON: {e}")))?;
    if value.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(ApiError::manifest_invalid(
            "only schemaVersion 2 manifests are accepted (Docker schema 2 and OCI)",
        ));
    }
    let declared = value.get("mediaType").and_then(Value::as_str);
    let header = content_type.map(media_type_of).filter(|t| !t.is_empty());
    if let (Some(declared), Some(header)) = (declared, header) {
        if declared != header && header != "application/json" {
            return Err(ApiError::manifest_invalid(format!(
                "Content-Type {header} does not match the manifest's mediaType {declared}"
            )));
        }
    }
    let media_type = match declared.or(header) {
        Some(t) => t.to_string(),
        // OCI allows leaving mediaType out; the shape decides.
        None if value.get("manifests").is_some() => OCI_INDEX.to_string(),
        None => OCI_MANIFEST.to_string(),
    };
    let mut manifest = Manifest {
        media_type,
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject: None,
        artifact_type: value
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_string),
        annotations: value.get("annotations").cloned(),
    };
    match manifest.media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let config = value
                .get("config")
                .ok_or_else(|| ApiError::manifest_invalid("image manifest without config"))?;
            manifest.blobs.push(digest_field(config, "config")?);
            if manifest.artifact_type.is_none() {
                manifest.artifact_type = config
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            let layers = value
                .get("layers")
                .and_then(Value::as_array)
                .ok_or_else(|| ApiError::manifest_invalid("image manifest without layers"))?;
            for (i, layer) in layers.iter().enumerate() {
                let digest = digest_field(layer, &format!("layer {i}"))?;
                // Foreign layers (`urls`) live elsewhere by design.
                if layer.get("urls").is_none() {
                    manifest.blobs.push(digest);
                }
            }
        }
        DOCKER_LIST | OCI_INDEX => {
            let entries = value
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| ApiError::manifest_invalid("index without manifests"))?;
            for (i, entry) in entries.iter().enumerate() {
                manifest
                    .manifests
                    .push(digest_field(entry, &format!("manifest {i}"))?);
            }
        }
        other => {
            return Err(ApiError::manifest_invalid(format!(
                "manifest media type {other} is not supported (Docker schema 2, manifest \
                 lists, OCI manifests and indexes are)"
            )))
        }
    }
    if let Some(subject) = value.get("subject") {
        manifest.subject = Some(digest_field(subject, "subject")?);
    }
    Ok(manifest)
}

/// The media types an `Accept` header (all its values) lists; `None` means anything goes.
pub(crate) fn accepted(headers: &http::HeaderMap) -> Option<Vec<String>> {
    let mut types = Vec::new();
    for value in headers.get_all(http::header::ACCEPT) {
        for item in value.to_str().unwrap_or("").split(',') {
            let t = media_type_of(item);
            if t == "*/*" {
                return None;
            }
            if !t.is_empty() {
                types.push(t.to_string());
            }
        }
    }
    (!types.is_empty()).then_some(types)
}

/// For a client that does not accept an index, distribution serves the index's linux/amd64
/// image: its digest, if the index has one.
pub(crate) fn default_platform(index: &[u8]) -> Option<Digest> {
    let value: Value = serde_json::from_slice(index).ok()?;
    value
        .get("manifests")?
        .as_array()?
        .iter()
        .find(|m| {
            let p = m.get("platform");
            p.and_then(|p| p.get("os")).and_then(Value::as_str) == Some("linux")
                && p.and_then(|p| p.get("architecture"))
                    .and_then(Value::as_str)
                    == Some("amd64")
        })
        .and_then(|m| Digest::parse(m.get("digest")?.as_str()?).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_needs_its_config_and_layers() {
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d('a'), "size": 1},
            "layers": [{"digest": d('b'), "size": 2}, {"digest": d('c'), "size": 3, "urls": ["x"]}],
        });
        let parsed = parse(m.to_string().as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(parsed.blobs.len(), 2, "the foreign layer is not required");
    }

    #[test]
    fn mismatched_or_unknown_types_are_invalid() {
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
        assert_eq!(
            parse(m.to_string().as_bytes(), Some(DOCKER_MANIFEST))
                .err()
                .map(|e| e.code),
            Some("MANIFEST_INVALID")
        );
        let m = serde_json::json!({"schemaVersion": 1});
        assert!(parse(m.to_string().as_bytes(), None).is_err());
        assert!(parse(b"not json", None).is_err());
    }
}
