//! The S3 subset the runner's cache uses (docs/protocols.md §2): path-style `GET`/`HEAD`/`PUT`/
//! `DELETE /<bucket>/<key>` and `GET /<bucket>?location`, every request SigV4-verified.
//! Objects are single files (fixed-size JSON header + data) written atomically; a size cap per
//! object, a total cap (oldest objects evicted first) and a TTL bound the disk used.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::http::{self as h, BodyError, Request, Response};
use super::sigv4::{self, Keys};
use super::storage::PendingFile;
use super::{random_string, S3Config, Shared};

/// Bytes reserved for the object header; S3 caps keys at 1 KiB and user metadata at 2 KiB.
const HEADER_LEN: u64 = 8192;
const MAX_KEY_LEN: usize = 1024;
const MAX_META_BYTES: usize = 2048;

#[derive(Debug, Serialize, Deserialize)]
struct ObjectHeader {
    key: String,
    size: u64,
    etag: String,
    content_type: String,
    /// Seconds since the epoch.
    last_modified: u64,
    meta: Vec<(String, String)>,
}

pub(crate) struct Store {
    dir: PathBuf,
    access_key: String,
    secret_key: String,
    config: S3Config,
    /// Serialises space accounting and eviction so two uploads cannot both claim the room.
    space: tokio::sync::Mutex<()>,
}

/// What [`clear_cache`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClearedCache {
    pub objects: u64,
    /// Their sizes (header included).
    pub bytes: u64,
    /// Temporary files of uploads that never ended.
    pub temp_files: u64,
}

/// Empties the cache store in `dir` (`cargo glci system cache clean`): every object, and the
/// temporary files older than `temp_grace` (younger ones are uploads going on now; a live
/// run's upload then lands in an empty cache, and a download already open reads on).
pub fn clear_cache(dir: &Path, temp_grace: Duration) -> io::Result<ClearedCache> {
    let mut cleared = ClearedCache::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(cleared),
        Err(e) => return Err(e),
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(md) = entry.metadata() else { continue };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let object = name.ends_with(".obj");
        let stale_temp = name.starts_with(".tmp-")
            && md
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > temp_grace);
        if !md.is_file() || !(object || stale_temp) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) if object => {
                cleared.objects += 1;
                cleared.bytes += md.len();
            }
            Ok(()) => cleared.temp_files += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(cleared)
}

pub(crate) fn owns_path(bucket: &str, path: &str) -> bool {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let first = rest.split('/').next().unwrap_or("");
    first == bucket
}

fn xml_error(status: StatusCode, code: &str, message: &str, resource: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId></Error>",
        esc(code),
        esc(message),
        esc(resource),
        random_string(16)
    );
    let mut resp = h::response(status, h::full(body));
    h::set_header(&mut resp, "content-type", "application/xml");
    resp
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    pub(crate) fn open(dir: &Path, config: &S3Config) -> io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        let store = Store {
            dir: dir.to_path_buf(),
            access_key: format!("GLCI{}", random_string(16).to_ascii_uppercase()),
            secret_key: random_string(40),
            config: config.clone(),
            space: tokio::sync::Mutex::new(()),
        };
        store.sweep_expired();
        Ok(store)
    }

    pub(crate) fn access_key(&self) -> &str {
        &self.access_key
    }

    pub(crate) fn secret_key(&self) -> &str {
        &self.secret_key
    }

    fn object_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.obj",
            hex::encode(Sha256::digest(key.as_bytes()))
        ))
    }

    fn is_expired(&self, last_modified: u64) -> bool {
        now_secs().saturating_sub(last_modified) > self.config.ttl.as_secs()
    }

    /// (path, size, mtime) of every stored object.
    fn objects(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "obj"))
            .filter_map(|e| {
                let md = e.metadata().ok()?;
                Some((e.path(), md.len(), md.modified().unwrap_or(UNIX_EPOCH)))
            })
            .collect()
    }

    fn sweep_expired(&self) {
        let ttl = self.config.ttl;
        for (path, _, mtime) in self.objects() {
            let age = SystemTime::now()
                .duration_since(mtime)
                .unwrap_or(Duration::ZERO);
            if age > ttl {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Deletes the oldest objects until `incoming` more bytes fit under the total cap.
    fn make_room(&self, incoming: u64) -> bool {
        let max = self.config.max_total_bytes;
        if incoming > max {
            return false;
        }
        let mut objects = self.objects();
        let mut total: u64 = objects.iter().map(|o| o.1).sum();
        objects.sort_by_key(|o| o.2);
        for (path, size, _) in objects {
            if total + incoming <= max {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
        total + incoming <= max
    }

    async fn read_header(&self, key: &str) -> io::Result<Option<(ObjectHeader, tokio::fs::File)>> {
        let path = self.object_path(key);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut head = vec![0u8; HEADER_LEN as usize];
        let end = match file.read_exact(&mut head).await {
            Ok(_) => head.iter().position(|b| *b == 0).unwrap_or(head.len()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        let Ok(header) = serde_json::from_slice::<ObjectHeader>(&head[..end]) else {
            // Not written by us (or damaged on disk): a cache miss, and the space is freed.
            tracing::warn!("S3 object file {} is damaged; removing it", path.display());
            let _ = tokio::fs::remove_file(&path).await;
            return Ok(None);
        };
        // Two keys with one hash are impossible in practice; still never serve the wrong one.
        if header.key != key {
            return Ok(None);
        }
        if self.is_expired(header.last_modified) {
            let _ = tokio::fs::remove_file(&path).await;
            return Ok(None);
        }
        Ok(Some((header, file)))
    }
}

fn object_headers(resp: &mut Response, header: &ObjectHeader) {
    h::set_header(resp, "etag", &header.etag);
    h::set_header(resp, "content-type", &header.content_type);
    h::set_header(
        resp,
        "last-modified",
        &httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(header.last_modified)),
    );
    h::set_header(resp, "accept-ranges", "bytes");
    for (k, v) in &header.meta {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
}

/// A single `bytes=` range against `size`: `Ok(None)` = whole object, `Err` = 416.
fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Multiple ranges: S3 ignores the header and sends everything.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

pub(crate) async fn handle(shared: &Shared, req: Request) -> Response {
    let store = &shared.s3;
    let raw_path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(str::to_string);
    let keys = Keys {
        access_key: &store.access_key,
        secret_key: &store.secret_key,
        region: &store.config.region,
    };
    let verified = match sigv4::verify(
        req.method().as_str(),
        &raw_path,
        raw_query.as_deref(),
        req.headers(),
        &keys,
        SystemTime::now(),
    ) {
        Ok(v) => v,
        Err(e) => {
            let status = match e.code {
                "AuthorizationQueryParametersError"
                | "AuthorizationHeaderMalformed"
                | "InvalidRequest" => StatusCode::BAD_REQUEST,
                _ => StatusCode::FORBIDDEN,
            };
            return xml_error(status, e.code, &e.message, &raw_path);
        }
    };
    let bucket = &store.config.bucket;
    let after_bucket = raw_path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(bucket.as_str()))
        .unwrap_or("");
    let key = percent_encoding::percent_decode_str(after_bucket.strip_prefix('/').unwrap_or(""))
        .decode_utf8_lossy()
        .into_owned();
    let query = h::query_pairs(raw_query.as_deref());
    let method = req.method().clone();
    if key.is_empty() {
        return match method {
            Method::GET if query.iter().any(|(k, _)| k == "location") => {
                // us-east-1 is spelled as an empty constraint.
                let region = &store.config.region;
                let inner = if region == "us-east-1" {
                    "<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>"
                        .to_string()
                } else {
                    format!("<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{region}</LocationConstraint>")
                };
                let mut resp = h::response(
                    StatusCode::OK,
                    h::full(format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{inner}"
                    )),
                );
                h::set_header(&mut resp, "content-type", "application/xml");
                resp
            }
            Method::HEAD => h::response(StatusCode::OK, h::empty()),
            _ => xml_error(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "only object GET/HEAD/PUT/DELETE and ?location are implemented",
                &raw_path,
            ),
        };
    }
    if key.len() > MAX_KEY_LEN {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "KeyTooLongError",
            "Your key is too long",
            &raw_path,
        );
    }
    match method {
        Method::PUT => put(store, req, &key, &raw_path, verified).await,
        Method::GET | Method::HEAD => {
            get(store, &req, &key, &raw_path, method == Method::HEAD).await
        }
        Method::DELETE => {
            let _ = tokio::fs::remove_file(store.object_path(&key)).await;
            h::response(StatusCode::NO_CONTENT, h::empty())
        }
        _ => xml_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            &raw_path,
        ),
    }
}

fn internal(path: &str, e: &io::Error) -> Response {
    tracing::error!("S3 storage for {path}: {e}");
    xml_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        &e.to_string(),
        path,
    )
}

async fn put(
    store: &Store,
    req: Request,
    key: &str,
    resource: &str,
    verified: sigv4::Verified,
) -> Response {
    let Some(len) =
        h::header_str(req.headers(), "content-length").and_then(|v| v.parse::<u64>().ok())
    else {
        return xml_error(
            StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
            resource,
        );
    };
    if len > store.config.max_entry_bytes {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            &format!(
                "Your proposed upload exceeds the maximum allowed size of {} bytes",
                store.config.max_entry_bytes
            ),
            resource,
        );
    }
    let expected_hash = match verified.payload_hash.as_deref() {
        None | Some("UNSIGNED-PAYLOAD") => None,
        Some(h) if h.starts_with("STREAMING-") => {
            return xml_error(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "aws-chunked uploads are not supported; use a presigned URL",
                resource,
            )
        }
        Some(h) => Some(h.to_ascii_lowercase()),
    };
    let mut meta: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-amz-meta-"))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    // Presigners may hoist `x-amz-meta-*` into the query string; S3 treats those as headers.
    for (k, v) in h::query_pairs(req.uri().query()) {
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("x-amz-meta-") && !meta.iter().any(|(m, _)| *m == lower) {
            meta.push((lower, v));
        }
    }
    meta.sort();
    if meta.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_META_BYTES {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size.",
            resource,
        );
    }
    let content_type = h::header_str(req.headers(), "content-type")
        .unwrap_or("binary/octet-stream")
        .to_string();
    let dest = store.object_path(key);
    let mut pending = match PendingFile::new_in(&store.dir) {
        Ok(p) => p,
        Err(e) => return internal(resource, &e),
    };
    if let Err(e) = pending.file.seek(SeekFrom::Start(HEADER_LEN)).await {
        return internal(resource, &e);
    }
    let mut hasher = Sha256::new();
    let written = match h::copy_limited(req.into_body(), &mut pending.file, len, |c| {
        hasher.update(c)
    })
    .await
    {
        Ok(n) => n,
        Err(BodyError::TooLarge(_)) => {
            return xml_error(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                "The body is longer than its Content-Length",
                resource,
            )
        }
        Err(BodyError::Io(e)) => return internal(resource, &e),
        Err(e) => {
            return xml_error(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                &e.to_string(),
                resource,
            )
        }
    };
    if written != len {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            resource,
        );
    }
    let digest = hex::encode(hasher.finalize());
    if let Some(expected) = expected_hash {
        if expected != digest {
            return xml_error(
                StatusCode::BAD_REQUEST,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                resource,
            );
        }
    }
    let header = ObjectHeader {
        key: key.to_string(),
        size: len,
        etag: format!("\"{}\"", &digest[..32]),
        content_type,
        last_modified: now_secs(),
        meta,
    };
    let mut encoded = match serde_json::to_vec(&header) {
        Ok(v) => v,
        Err(e) => return internal(resource, &io::Error::other(e)),
    };
    if encoded.len() as u64 >= HEADER_LEN {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "MetadataTooLarge",
            "object metadata too large",
            resource,
        );
    }
    encoded.resize(HEADER_LEN as usize, 0);
    let wrote = async {
        pending.file.seek(SeekFrom::Start(0)).await?;
        pending.file.write_all(&encoded).await?;
        pending.file.flush().await
    }
    .await;
    if let Err(e) = wrote {
        return internal(resource, &e);
    }
    let _guard = store.space.lock().await;
    // The object being replaced frees its space first.
    let _ = std::fs::remove_file(&dest);
    if !store.make_room(len + HEADER_LEN) {
        // Only when the object alone exceeds the total: evicting cannot help. S3-compatible
        // stores answer a full disk with 507.
        return xml_error(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            &format!(
                "the object does not fit in the cache's {} bytes",
                store.config.max_total_bytes
            ),
            resource,
        );
    }
    if let Err(e) = pending.commit(&dest).await {
        return internal(resource, &e);
    }
    let mut resp = h::response(StatusCode::OK, h::empty());
    h::set_header(&mut resp, "etag", &header.etag);
    resp
}

async fn get(store: &Store, req: &Request, key: &str, resource: &str, head_only: bool) -> Response {
    let (header, mut file) = match store.read_header(key).await {
        Ok(Some(found)) => found,
        Ok(None) if head_only => return h::response(StatusCode::NOT_FOUND, h::empty()),
        Ok(None) => {
            return xml_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
                resource,
            )
        }
        Err(e) => return internal(resource, &e),
    };
    let size = header.size;
    let range = match h::header_str(req.headers(), "range") {
        Some(r) => match parse_range(r, size) {
            Ok(r) => r,
            Err(()) => {
                let mut resp = xml_error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                    resource,
                );
                h::set_header(&mut resp, "content-range", &format!("bytes */{size}"));
                return resp;
            }
        },
        None => None,
    };
    let (start, len, status) = match range {
        Some((s, e)) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let body = if head_only {
        h::empty()
    } else {
        if let Err(e) = file.seek(SeekFrom::Start(HEADER_LEN + start)).await {
            return internal(resource, &e);
        }
        h::reader_body(file.take(len))
    };
    let mut resp = h::response(status, body);
    object_headers(&mut resp, &header);
    h::set_header(&mut resp, "content-length", &len.to_string());
    if let Some((s, e)) = range {
        h::set_header(&mut resp, "content-range", &format!("bytes {s}-{e}/{size}"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-0", 10), Ok(Some((0, 0))));
        assert_eq!(parse_range("bytes=5-", 10), Ok(Some((5, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=2-100", 10), Ok(Some((2, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("items=1-2", 10), Ok(None));
    }
}
