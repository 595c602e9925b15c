//! The container registry of the stand-in GitLab: the OCI Distribution Spec v1.1 under
//! `/v2/`, GitLab's token realm at `/jwt/auth` (`auth.rs`), content-addressed storage in
//! `GLCI_HOME/registry` (`store.rs`), and a pull-through cache for repositories that received
//! no pushes (`upstream.rs`, with the job engine as the last upstream in `engine_source.rs`).
//!
//! Every blob and manifest is hashed while it arrives and becomes visible only when its
//! digest matches; bodies are streamed to disk, never held whole (manifests, at most
//! [`RegistryConfig::max_manifest_bytes`](crate::server::RegistryConfig), excepted).

pub mod admin;
mod auth;
mod engine_source;
mod error;
mod manifest;
mod names;
mod push_through;
mod store;
mod upstream;

use std::io;
use std::path::Path;

use http::{header, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use self::auth::{Action, Identity};
use self::error::ApiError;
use self::names::Digest;
use super::http::{self as h, Request, Response};
use super::{RegistryConfig, Shared};

pub(crate) use auth::HOST_USER;
pub use push_through::PushThroughConfig;
pub use upstream::{Upstream, UpstreamListError, DOCKER_HUB, UPSTREAMS_ENV};

pub(crate) struct Registry {
    store: store::Store,
    auth: auth::Auth,
    max_manifest_bytes: u64,
    max_blob_bytes: u64,
    cache: upstream::Cache,
    /// Whether the job engine is the cache's last upstream.
    engine_upstream: bool,
    /// Where pushes are mirrored (`--push-through`).
    push_through: Option<std::sync::Arc<push_through::PushThrough>>,
}

impl Registry {
    pub(crate) fn open(dir: &Path, config: &RegistryConfig) -> io::Result<Registry> {
        Ok(Registry {
            store: store::Store::open(dir, config.max_blob_bytes)?,
            auth: auth::Auth::new(),
            max_manifest_bytes: config.max_manifest_bytes,
            max_blob_bytes: config.max_blob_bytes,
            cache: upstream::Cache::new(
                config.upstreams.clone(),
                config.max_manifest_bytes,
                config.max_blob_bytes,
            ),
            engine_upstream: config.engine_upstream,
            push_through: config
                .push_through
                .as_ref()
                .map(|c| std::sync::Arc::new(push_through::PushThrough::new(c))),
        })
    }

    pub(crate) fn host_password(&self) -> &str {
        self.auth.host_password()
    }
}

/// Paths the registry answers.
pub(crate) fn owns_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/") || path == "/jwt/auth"
}

/// What a `/v2/...` path asks for. Names come first and may have any number of components,
/// so the kind is read from the end of the path, as distribution's router does.
#[derive(Debug, PartialEq)]
enum Endpoint {
    Base,
    Catalog,
    Tags { name: String },
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    Uploads { name: String },
    Upload { name: String, id: String },
    Referrers { name: String, digest: String },
}

impl Endpoint {
    fn parse(path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Endpoint::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if rest == "_catalog" {
            return Some(Endpoint::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name = |k: usize| segs[..n - k].join("/");
        let last = |k: usize| segs[n - k];
        if n >= 3 && last(2) == "tags" && last(1) == "list" {
            return Some(Endpoint::Tags { name: name(2) });
        }
        if n >= 4 && last(3) == "blobs" && last(2) == "uploads" {
            return Some(if last(1).is_empty() {
                Endpoint::Uploads { name: name(3) }
            } else {
                Endpoint::Upload {
                    name: name(3),
                    id: last(1).to_string(),
                }
            });
        }
        if n >= 3 && last(2) == "blobs" && last(1) == "uploads" {
            return Some(Endpoint::Uploads { name: name(2) });
        }
        if n >= 3 {
            let (kind, value) = (last(2), last(1).to_string());
            return match kind {
                "manifests" => Some(Endpoint::Manifest {
                    name: name(2),
                    reference: value,
                }),
                "blobs" => Some(Endpoint::Blob {
                    name: name(2),
                    digest: value,
                }),
                "referrers" => Some(Endpoint::Referrers {
                    name: name(2),
                    digest: value,
                }),
                _ => None,
            };
        }
        None
    }

    fn repository(&self) -> Option<&str> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags { name }
            | Endpoint::Manifest { name, .. }
            | Endpoint::Blob { name, .. }
            | Endpoint::Uploads { name }
            | Endpoint::Upload { name, .. }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }
}

fn action_for(method: &Method) -> Action {
    match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    }
}

pub(crate) async fn handle(shared: &Shared, req: Request) -> Response {
    let registry = &shared.registry;
    let host = h::header_str(req.headers(), "host")
        .unwrap_or(&shared.registry_host_port)
        .to_string();
    // The token realm is on the listener the client used, with its scheme.
    let tls = req.extensions().get::<super::tls::ViaTls>().is_some();
    let mut resp = if req.uri().path() == "/jwt/auth" {
        registry
            .auth
            .token_endpoint(&shared.api, req.headers(), req.uri().query())
    } else {
        let endpoint = Endpoint::parse(req.uri().path());
        let scope = endpoint
            .as_ref()
            .and_then(|e| e.repository())
            .map(|r| (r.to_string(), action_for(req.method())));
        match serve(shared, endpoint, req).await {
            Ok(resp) => resp,
            Err(err) => {
                let unauthorized = err.status == StatusCode::UNAUTHORIZED;
                let mut resp = err.into_response();
                if unauthorized {
                    let value =
                        auth::challenge(&host, tls, scope.as_ref().map(|(r, a)| (r.as_str(), *a)));
                    h::set_header(&mut resp, "www-authenticate", &value);
                }
                resp
            }
        }
    };
    h::set_header(&mut resp, "docker-distribution-api-version", "registry/2.0");
    resp
}

async fn serve(
    shared: &Shared,
    endpoint: Option<Endpoint>,
    req: Request,
) -> Result<Response, ApiError> {
    let registry = &shared.registry;
    let identity = registry.auth.authenticate(&shared.api, req.headers());
    let Some(endpoint) = endpoint else {
        identity.ok_or_else(|| ApiError::unauthorized("authentication required"))?;
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no registry endpoint at {}", req.uri().path()),
        ));
    };
    let method = req.method().clone();
    // Pulls of a repository that is not the caller's project and received no pushes go
    // through the cache; anyone who reaches the registry may make them (a Docker daemon
    // asks its `registry-mirrors` anonymously).
    let mut mirror = false;
    if let Some(name) = endpoint.repository() {
        names::repository(name)?;
        let action = action_for(&method);
        // A blob `HEAD` is a pusher asking whether to upload, never a pull: local only.
        mirror = matches!(
            (&method, &endpoint),
            (&Method::GET | &Method::HEAD, Endpoint::Manifest { .. })
                | (&Method::GET, Endpoint::Blob { .. })
        ) && registry.is_mirror(identity.as_ref(), name).await;
        let identity = identity
            .as_ref()
            .filter(|i| mirror || **i != Identity::Anonymous)
            .ok_or_else(|| ApiError::unauthorized("authentication required"))?;
        if !mirror && !auth::allowed(identity, name, action) {
            return Err(ApiError::denied(format!(
                "this job's token may not {} {name}: a job reaches its own project's \
                 repositories only",
                match action {
                    Action::Pull => "pull from",
                    Action::Push => "push to",
                    Action::Delete => "delete in",
                }
            )));
        }
    } else if !matches!(endpoint, Endpoint::Base) || identity.is_none() {
        identity
            .as_ref()
            .filter(|i| **i != Identity::Anonymous)
            .ok_or_else(|| ApiError::unauthorized("authentication required"))?;
    }
    let identity = identity.unwrap_or(Identity::Anonymous);
    let r = registry;
    match (method, endpoint) {
        (Method::GET | Method::HEAD, Endpoint::Base) => {
            Ok(h::json(StatusCode::OK, &serde_json::json!({})))
        }
        (Method::GET, Endpoint::Catalog) => catalog(r, &identity, &req).await,
        (Method::GET, Endpoint::Tags { name }) => tags(r, &name, &req).await,
        (m @ (Method::GET | Method::HEAD), Endpoint::Manifest { name, reference }) => {
            if mirror {
                r.cache_manifest(&name, &reference).await?;
            }
            get_manifest(r, &name, &reference, &req, m == Method::HEAD).await
        }
        (Method::PUT, Endpoint::Manifest { name, reference }) => {
            r.store.forget_mirror(&name).await?;
            put_manifest(r, &name, &reference, req).await
        }
        (Method::DELETE, Endpoint::Manifest { name, reference }) => {
            delete_manifest(r, &name, &reference).await
        }
        (m @ (Method::GET | Method::HEAD), Endpoint::Blob { name, digest }) => {
            if mirror {
                r.cache_blob(&name, &Digest::parse(&digest)?).await?;
            }
            get_blob(r, &name, &digest, &req, m == Method::HEAD).await
        }
        (Method::DELETE, Endpoint::Blob { name, digest }) => {
            let digest = Digest::parse(&digest)?;
            if !r.store.unlink_blob(&name, &digest).await? {
                return Err(ApiError::blob_unknown(&digest.to_string()));
            }
            Ok(accepted_empty())
        }
        (Method::POST, Endpoint::Uploads { name }) => {
            r.store.forget_mirror(&name).await?;
            start_upload(r, &identity, &name, req).await
        }
        (Method::GET, Endpoint::Upload { name, id }) => {
            let size = r.store.upload_size(&name, &id)?;
            Ok(upload_status(StatusCode::NO_CONTENT, &name, &id, size))
        }
        (Method::PATCH, Endpoint::Upload { name, id }) => {
            let range = content_range(&req)?;
            let size = r.store.append(&name, &id, range, req.into_body()).await?;
            Ok(upload_status(StatusCode::ACCEPTED, &name, &id, size))
        }
        (Method::PUT, Endpoint::Upload { name, id }) => finish_upload(r, &name, &id, req).await,
        (Method::DELETE, Endpoint::Upload { name, id }) => {
            r.store.cancel(&name, &id).await?;
            Ok(h::response(StatusCode::NO_CONTENT, h::empty()))
        }
        (Method::GET, Endpoint::Referrers { name, digest }) => {
            referrers(r, &name, &digest, &req).await
        }
        (method, _) => Err(ApiError::unsupported(format!(
            "{method} is not supported here"
        ))),
    }
}

impl Registry {
    /// Whether a pull of `name` goes through the cache: not the caller's own project
    /// (a job's pushes land there: a miss is a miss), and no pushes ever went there.
    async fn is_mirror(&self, identity: Option<&Identity>, name: &str) -> bool {
        if let Some(id @ Identity::Job { .. }) = identity {
            if auth::allowed(id, name, Action::Pull) {
                return false;
            }
        }
        !self.store.is_pushed_repository(name).await
    }

    /// Makes sure the manifest is in `name`, fetching it on a miss: from the upstreams, then
    /// (for a tag) the job engine. The error lists what was tried.
    async fn cache_manifest(&self, name: &str, reference: &str) -> Result<(), ApiError> {
        if reference.contains(':') {
            let digest = Digest::parse(reference)?;
            if self.store.has_manifest(name, &digest).await {
                return Ok(());
            }
        } else if !names::is_tag(reference)
            || self.store.resolve_tag(name, reference).await?.is_some()
        {
            return Ok(());
        }
        let mut tried = match self.cache.fetch_manifest(name, reference).await {
            Ok(fetched) => {
                let tag = (!reference.contains(':')).then_some(reference);
                // Marked first: a repository with content but no mark is a project's.
                self.store.mark_mirrored(name, &fetched.origin).await?;
                self.store
                    .put_manifest(name, fetched.data, &fetched.media_type, tag)
                    .await?;
                return Ok(());
            }
            Err(tried) => tried,
        };
        if self.engine_upstream && !reference.contains(':') {
            match engine_source::import(&self.store, name, reference, self.max_blob_bytes).await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => tried.push(format!(
                    "the Docker engine: no image {}:{reference}",
                    upstream::engine_name(name)
                )),
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!(
                "manifest {name}:{reference} is not in this registry, and no upstream has it; \
                 tried: {}",
                tried_list(&tried)
            ),
        ))
    }

    /// Makes sure the blob is in `name`: linked when another repository has its data,
    /// else fetched from the upstreams.
    async fn cache_blob(&self, name: &str, digest: &Digest) -> Result<(), ApiError> {
        if self.store.blob_size(name, digest).await.is_some() {
            return Ok(());
        }
        if !self.store.has_blob_data(digest).await {
            if let Err(tried) = self.cache.fetch_blob(&self.store, name, digest).await {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                    format!(
                        "blob {digest} of {name} is not in this registry, and no upstream has \
                         it; tried: {}",
                        tried_list(&tried)
                    ),
                ));
            }
        }
        if self.store.mirror_origin(name).await.is_none() {
            self.store.mark_mirrored(name, "blobs only").await?;
        }
        self.store.link_blob(name, digest).await
    }
}

fn tried_list(tried: &[String]) -> String {
    if tried.is_empty() {
        "no upstream is configured".to_string()
    } else {
        tried.join("; ")
    }
}

fn accepted_empty() -> Response {
    h::response(StatusCode::ACCEPTED, h::empty())
}

fn with_digest(resp: &mut Response, digest: &Digest) {
    h::set_header(resp, "docker-content-digest", &digest.to_string());
}

/// `Content-Range: <start>-<end>` of a chunk (distribution's form, without `bytes `).
fn content_range(req: &Request) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = h::header_str(req.headers(), "content-range") else {
        return Ok(None);
    };
    let text = value
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let parsed = text
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(start, end)| start <= end);
    match parsed {
        Some(range) => Ok(Some(range)),
        None => Err(ApiError::upload_invalid(format!(
            "Content-Range {value:?} is not `<start>-<end>`"
        ))),
    }
}

/// The answer to every upload step: where to continue and what arrived (`Range: 0-<last>`).
fn upload_status(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    let mut resp = h::response(status, h::empty());
    h::set_header(
        &mut resp,
        "location",
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    h::set_header(&mut resp, "range", &format!("0-{}", size.saturating_sub(1)));
    h::set_header(&mut resp, "docker-upload-uuid", id);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    let mut resp = h::response(StatusCode::CREATED, h::empty());
    h::set_header(&mut resp, "location", &format!("/v2/{name}/blobs/{digest}"));
    with_digest(&mut resp, digest);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

async fn start_upload(
    r: &Registry,
    identity: &Identity,
    name: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let query = h::query_pairs(req.uri().query());
    if let Some(mount) = h::query_get(&query, "mount") {
        let digest = Digest::parse(mount)?;
        // Mounting reads `from`: only from a repository the client may pull.
        if let Some(from) = h::query_get(&query, "from") {
            if names::repository(from).is_ok()
                && auth::allowed(identity, from, Action::Pull)
                && r.store.mount(name, from, &digest).await?
            {
                return Ok(blob_created(name, &digest));
            }
        }
        // Otherwise the spec says: fall back to an upload session.
    } else if let Some(digest) = h::query_get(&query, "digest") {
        let digest = Digest::parse(digest)?;
        r.store
            .put_blob_stream(name, &digest, req.into_body())
            .await?;
        return Ok(blob_created(name, &digest));
    }
    let id = r.store.start_upload(name).await?;
    Ok(upload_status(StatusCode::ACCEPTED, name, &id, 0))
}

async fn finish_upload(
    r: &Registry,
    name: &str,
    id: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let query = h::query_pairs(req.uri().query());
    let Some(digest) = h::query_get(&query, "digest") else {
        return Err(ApiError::digest_invalid("closing an upload needs ?digest="));
    };
    let digest = Digest::parse(digest)?;
    let range = content_range(&req)?;
    // The last chunk may come with the PUT.
    r.store.append(name, id, range, req.into_body()).await?;
    r.store.finish(name, id, &digest).await?;
    Ok(blob_created(name, &digest))
}

/// `Range: bytes=<start>-[<end>]` of a blob of `size` bytes.
fn byte_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let (start, end) = if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        (size.checked_sub(suffix.min(size))?, size.checked_sub(1)?)
    } else {
        let start: u64 = start.parse().ok()?;
        let end = if end.is_empty() {
            size.checked_sub(1)?
        } else {
            end.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && end < size).then_some((start, end))
}

async fn get_blob(
    r: &Registry,
    name: &str,
    digest: &str,
    req: &Request,
    head: bool,
) -> Result<Response, ApiError> {
    let digest = Digest::parse(digest)?;
    let mut blob = r.store.open_blob(name, &digest).await?;
    let range = match h::header_str(req.headers(), "range") {
        Some(value) if !head => match byte_range(value, blob.size) {
            Some(range) => Some(range),
            None => {
                let mut resp = h::response(StatusCode::RANGE_NOT_SATISFIABLE, h::empty());
                h::set_header(
                    &mut resp,
                    "content-range",
                    &format!("bytes */{}", blob.size),
                );
                return Ok(resp);
            }
        },
        _ => None,
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, blob.size),
    };
    let body = if head {
        h::empty()
    } else {
        if start > 0 {
            blob.file
                .seek(io::SeekFrom::Start(start))
                .await
                .map_err(|e| ApiError::internal("seeking in a blob", e))?;
        }
        h::reader_body(blob.file.take(len))
    };
    let mut resp = h::response(status, body);
    if let Some((start, end)) = range {
        h::set_header(
            &mut resp,
            "content-range",
            &format!("bytes {start}-{end}/{}", blob.size),
        );
    }
    h::set_header(&mut resp, "content-length", &len.to_string());
    h::set_header(&mut resp, "content-type", "application/octet-stream");
    h::set_header(&mut resp, "accept-ranges", "bytes");
    with_digest(&mut resp, &digest);
    Ok(resp)
}

/// A tag or a digest, resolved to the manifest's digest.
async fn resolve(r: &Registry, name: &str, reference: &str) -> Result<Digest, ApiError> {
    if reference.contains(':') {
        return Digest::parse(reference);
    }
    if !names::is_tag(reference) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("{reference:?} is neither a tag nor a digest"),
        ));
    }
    r.store
        .resolve_tag(name, reference)
        .await?
        .ok_or_else(|| ApiError::manifest_unknown(reference))
}

async fn get_manifest(
    r: &Registry,
    name: &str,
    reference: &str,
    req: &Request,
    head: bool,
) -> Result<Response, ApiError> {
    let mut digest = resolve(r, name, reference).await?;
    let (mut data, mut media_type) = r
        .store
        .manifest(name, &digest)
        .await?
        .ok_or_else(|| ApiError::manifest_unknown(reference))?;
    if let Some(accept) = manifest::accepted(req.headers()) {
        if !accept.contains(&media_type) {
            let is_index = media_type == manifest::DOCKER_LIST || media_type == manifest::OCI_INDEX;
            // Distribution's answer to a client that cannot read an index: the index's
            // linux/amd64 image, if the client reads that.
            let image = if is_index {
                match manifest::default_platform(&data) {
                    Some(child) => r.store.manifest(name, &child).await?.map(|m| (child, m)),
                    None => None,
                }
            } else {
                None
            };
            match image {
                Some((child, (d, t))) if accept.contains(&t) => {
                    digest = child;
                    data = d;
                    media_type = t;
                }
                _ => {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "MANIFEST_UNKNOWN",
                        format!(
                            "manifest {reference} is {media_type}, which the request's Accept \
                             header does not list"
                        ),
                    ))
                }
            }
        }
    }
    let len = data.len();
    let mut resp = h::response(
        StatusCode::OK,
        if head { h::empty() } else { h::full(data) },
    );
    h::set_header(&mut resp, "content-type", &media_type);
    h::set_header(&mut resp, "content-length", &len.to_string());
    with_digest(&mut resp, &digest);
    Ok(resp)
}

async fn put_manifest(
    r: &Registry,
    name: &str,
    reference: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let by_digest = reference.contains(':');
    let expected = if by_digest {
        Some(Digest::parse(reference)?)
    } else if names::is_tag(reference) {
        None
    } else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("{reference:?} is neither a tag nor a digest"),
        ));
    };
    let content_type = h::header_str(req.headers(), "content-type").map(str::to_string);
    let data = match h::collect_limited(req.into_body(), r.max_manifest_bytes).await {
        Ok(data) => data,
        Err(h::BodyError::TooLarge(limit)) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("manifest larger than the registry's limit of {limit} bytes"),
            ))
        }
        Err(e) => return Err(ApiError::manifest_invalid(e.to_string())),
    };
    let digest = Digest::of(&data);
    if let Some(expected) = &expected {
        if &digest != expected {
            return Err(ApiError::digest_invalid(format!(
                "the manifest's digest is {digest}, not {expected}"
            )));
        }
    }
    let parsed = manifest::parse(&data, content_type.as_deref())?;
    for blob in &parsed.blobs {
        if r.store.blob_size(name, blob).await.is_none() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!("the manifest references blob {blob}, which is not in {name}"),
            ));
        }
    }
    for child in &parsed.manifests {
        if !r.store.has_manifest(name, child).await {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!("the index references manifest {child}, which is not in {name}"),
            ));
        }
    }
    let size = data.len();
    let tag = (!by_digest).then_some(reference);
    let mirrored = r.push_through.as_ref().map(|_| data.clone());
    let stored = r
        .store
        .put_manifest(name, data, &parsed.media_type, tag)
        .await?;
    if let (Some(mirror), Some(data)) = (&r.push_through, mirrored) {
        let blobs = parsed
            .blobs
            .iter()
            .map(|digest| push_through::BlobFile {
                digest: digest.clone(),
                path: r.store.blob_path(digest),
            })
            .collect();
        if let Err(why) = mirror
            .mirror(name, reference, data, &parsed.media_type, blobs)
            .await
        {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "UNKNOWN",
                format!(
                    "stored here, but the push-through to {} failed: {why}",
                    mirror.url()
                ),
            ));
        }
    }
    let mut resp = h::response(StatusCode::CREATED, h::empty());
    if let Some(subject) = &parsed.subject {
        let mut descriptor = serde_json::json!({
            "mediaType": parsed.media_type,
            "digest": stored.to_string(),
            "size": size,
        });
        if let Some(t) = &parsed.artifact_type {
            descriptor["artifactType"] = t.clone().into();
        }
        if let Some(a) = &parsed.annotations {
            descriptor["annotations"] = a.clone();
        }
        r.store
            .add_referrer(name, subject, &stored, &descriptor)
            .await?;
        h::set_header(&mut resp, "oci-subject", &subject.to_string());
    }
    h::set_header(
        &mut resp,
        "location",
        &format!("/v2/{name}/manifests/{stored}"),
    );
    with_digest(&mut resp, &stored);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(resp)
}

async fn delete_manifest(r: &Registry, name: &str, reference: &str) -> Result<Response, ApiError> {
    if !reference.contains(':') {
        // Spec v1.1: deleting by tag removes the tag only.
        if !names::is_tag(reference) || !r.store.delete_tag(name, reference).await? {
            return Err(ApiError::manifest_unknown(reference));
        }
        return Ok(accepted_empty());
    }
    let digest = Digest::parse(reference)?;
    let Some((data, _)) = r.store.manifest(name, &digest).await? else {
        return Err(ApiError::manifest_unknown(reference));
    };
    if let Ok(parsed) = manifest::parse(&data, None) {
        if let Some(subject) = parsed.subject {
            r.store.remove_referrer(name, &subject, &digest).await?;
        }
    }
    r.store.delete_manifest(name, &digest).await?;
    Ok(accepted_empty())
}

/// `n` and `last` of a list request: the page after `last`, at most `n` long, and whether
/// more follow.
fn page(all: Vec<String>, req: &Request) -> Result<(Vec<String>, Option<String>), ApiError> {
    let query = h::query_pairs(req.uri().query());
    let n = match h::query_get(&query, "n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("n={n:?} is not a number"),
            )
        })?),
        None => None,
    };
    let last = h::query_get(&query, "last");
    let mut items: Vec<String> = all
        .into_iter()
        .filter(|t| last.is_none_or(|l| t.as_str() > l))
        .collect();
    let mut next = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            next = items.last().cloned();
        }
    }
    Ok((items, next))
}

fn link_next(resp: &mut Response, path: &str, n: usize, last: Option<String>) {
    if let Some(last) = last {
        let value = format!(
            "<{path}?n={n}&last={}>; rel=\"next\"",
            form_urlencoded::byte_serialize(last.as_bytes()).collect::<String>()
        );
        h::set_header(resp, "link", &value);
    }
}

async fn tags(r: &Registry, name: &str, req: &Request) -> Result<Response, ApiError> {
    if !r.store.repository_exists(name).await {
        return Err(ApiError::name_unknown(name));
    }
    let (tags, next) = page(r.store.tags(name).await?, req)?;
    let n = tags.len();
    let mut resp = h::json(
        StatusCode::OK,
        &serde_json::json!({ "name": name, "tags": tags }),
    );
    link_next(&mut resp, &format!("/v2/{name}/tags/list"), n, next);
    Ok(resp)
}

async fn catalog(r: &Registry, identity: &Identity, req: &Request) -> Result<Response, ApiError> {
    // GitLab gives the catalog to administrators only; here that is the host.
    if *identity != Identity::Host {
        return Err(ApiError::denied(
            "the catalog is for the host's credential only",
        ));
    }
    let (repositories, next) = page(r.store.catalog().await?, req)?;
    let n = repositories.len();
    let mut resp = h::json(
        StatusCode::OK,
        &serde_json::json!({ "repositories": repositories }),
    );
    link_next(&mut resp, "/v2/_catalog", n, next);
    Ok(resp)
}

async fn referrers(
    r: &Registry,
    name: &str,
    digest: &str,
    req: &Request,
) -> Result<Response, ApiError> {
    let subject = Digest::parse(digest)?;
    let query = h::query_pairs(req.uri().query());
    let filter = h::query_get(&query, "artifactType");
    let manifests: Vec<serde_json::Value> = r
        .store
        .referrers(name, &subject)
        .await?
        .into_iter()
        .filter(|d| {
            filter.is_none_or(|f| d.get("artifactType").and_then(|t| t.as_str()) == Some(f))
        })
        .collect();
    let mut resp = h::json(
        StatusCode::OK,
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_INDEX,
            "manifests": manifests,
        }),
    );
    h::set_header(&mut resp, "content-type", manifest::OCI_INDEX);
    if filter.is_some() {
        h::set_header(&mut resp, "oci-filters-applied", "artifactType");
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_read_from_the_end_of_the_path() {
        assert_eq!(Endpoint::parse("/v2/"), Some(Endpoint::Base));
        assert_eq!(
            Endpoint::parse("/v2/a/manifests/b/manifests/latest"),
            Some(Endpoint::Manifest {
                name: "a/manifests/b".into(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            Endpoint::parse("/v2/g/p/blobs/uploads/"),
            Some(Endpoint::Uploads { name: "g/p".into() })
        );
        assert_eq!(
            Endpoint::parse("/v2/g/p/blobs/uploads/abc"),
            Some(Endpoint::Upload {
                name: "g/p".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            Endpoint::parse("/v2/g/p/tags/list"),
            Some(Endpoint::Tags { name: "g/p".into() })
        );
        assert_eq!(Endpoint::parse("/v2/x"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-2", 100), None);
    }
}
