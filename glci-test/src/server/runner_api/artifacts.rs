//! Artifact upload (`POST /jobs/:id/artifacts`, multipart field `file`) and download
//! (`GET /jobs/:id/artifacts`), docs/runner-contract.md §2.5.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::jobs::job_headers;
use super::spec::JobId;
use super::state::{ApiState, StoredArtifact};
use super::{dotenv, forbidden, job_token_from, not_found};
use crate::server::http::{self as h, BodyError, Request, Response};
use crate::server::params::{boundary_of, disposition_param};
use crate::server::storage::PendingFile;
use crate::server::Shared;

/// Offset of the first `needle` at or after `from`, scanning the file in chunks so a large
/// upload is never held in memory.
async fn find_in_file(
    file: &mut tokio::fs::File,
    from: u64,
    needle: &[u8],
) -> std::io::Result<Option<u64>> {
    const CHUNK: usize = 256 * 1024;
    let finder = memchr::memmem::Finder::new(needle);
    let mut pos = from;
    let mut carry: Vec<u8> = Vec::new();
    file.seek(SeekFrom::Start(from)).await?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        let base = pos - carry.len() as u64;
        carry.extend_from_slice(&buf[..n]);
        if let Some(i) = finder.find(&carry) {
            return Ok(Some(base + i as u64));
        }
        pos += n as u64;
        let keep = needle.len().saturating_sub(1).min(carry.len());
        carry.drain(..carry.len() - keep);
    }
}

/// Why the `file` part of an upload could not be found; the message goes into the 400 answer.
#[derive(Debug, thiserror::Error)]
enum MultipartError {
    #[error("multipart body has no part named `file`")]
    NoFilePart,
    #[error("multipart part headers are not terminated")]
    UnterminatedHeaders,
    #[error("multipart body ends without its closing boundary")]
    NoClosingBoundary,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The `file` part of a multipart body stored in `raw`: (data start, data end, filename).
async fn locate_file_part(
    raw: &mut tokio::fs::File,
    boundary: &str,
) -> Result<(u64, u64, String), MultipartError> {
    let delimiter = format!("--{boundary}");
    let mut offset = 0u64;
    loop {
        let Some(start) = find_in_file(raw, offset, delimiter.as_bytes()).await? else {
            return Err(MultipartError::NoFilePart);
        };
        let after = start + delimiter.len() as u64;
        raw.seek(SeekFrom::Start(after)).await?;
        let mut head = vec![0u8; 8192];
        let n = raw.read(&mut head).await?;
        head.truncate(n);
        if head.starts_with(b"--") {
            return Err(MultipartError::NoFilePart);
        }
        let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") else {
            return Err(MultipartError::UnterminatedHeaders);
        };
        let headers = String::from_utf8_lossy(&head[..end]).to_string();
        let data_start = after + end as u64 + 4;
        let closing = format!("\r\n--{boundary}");
        let Some(data_end) = find_in_file(raw, data_start, closing.as_bytes()).await? else {
            return Err(MultipartError::NoClosingBoundary);
        };
        if disposition_param(&headers, "name").as_deref() == Some("file") {
            let filename = disposition_param(&headers, "filename").unwrap_or_default();
            return Ok((data_start, data_end, filename));
        }
        offset = data_end + 2;
    }
}

fn bad_request(msg: &str) -> Response {
    h::json_message(StatusCode::BAD_REQUEST, &format!("400 Bad request - {msg}"))
}

/// The uploaded bytes must be what `artifact_format` says, or consumers fail later.
fn format_matches(format: &str, magic: &[u8]) -> bool {
    match format {
        "zip" => magic.starts_with(b"PK\x03\x04") || magic.starts_with(b"PK\x05\x06"),
        "gzip" => magic.starts_with(&[0x1f, 0x8b]),
        "zipzstd" | "tarzstd" => magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        _ => true,
    }
}

/// Why the upload must be refused, if it must: the token has to be the running job's own.
fn upload_refusal(api: &ApiState, id: JobId, token: &str) -> Option<Response> {
    let inner = api.lock();
    let Some(job) = inner.jobs.get(&id.0) else {
        return Some(forbidden());
    };
    if !crate::server::sigv4::constant_time_eq(job.token.as_bytes(), token.as_bytes()) {
        return Some(forbidden());
    }
    if !job.state.is_active() {
        let mut resp = forbidden();
        h::set_header(&mut resp, "job-status", job.state.gitlab_status());
        return Some(resp);
    }
    None
}

pub(super) async fn upload(shared: &Shared, req: Request, id: JobId) -> Response {
    let token = job_token_from(&req).unwrap_or_default();
    if let Some(resp) = upload_refusal(&shared.api, id, &token) {
        return resp;
    }
    let query = h::query_pairs(req.uri().query());
    let artifact_type = h::query_get(&query, "artifact_type")
        .unwrap_or("archive")
        .to_string();
    let format = h::query_get(&query, "artifact_format")
        .unwrap_or("zip")
        .to_string();
    let expire_in = h::query_get(&query, "expire_in").map(str::to_string);
    let type_ok = !artifact_type.is_empty()
        && artifact_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !type_ok {
        return bad_request(&format!("artifact_type {artifact_type:?} is invalid"));
    }
    if !["zip", "gzip", "raw", "zipzstd", "tarzstd"].contains(&format.as_str()) {
        return bad_request(&format!("artifact_format {format:?} is invalid"));
    }
    let Some(boundary) = h::header_str(req.headers(), "content-type").and_then(boundary_of) else {
        return bad_request("expected a multipart/form-data body with a boundary");
    };

    let dir = shared.api.data_dir.join("artifacts").join(id.0.to_string());
    let limit = shared.config.api.max_artifact_bytes;
    let mut raw = match PendingFile::new_in(&dir) {
        Ok(f) => f,
        Err(e) => return storage_error(&dir, &e),
    };
    match h::copy_limited(
        req.into_body(),
        &mut raw.file,
        limit.saturating_add(64 * 1024),
        |_| {},
    )
    .await
    {
        Ok(_) => {}
        Err(BodyError::TooLarge(_)) => {
            return h::json_message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Request Entity Too Large",
            )
        }
        Err(BodyError::Io(e)) => return storage_error(&dir, &e),
        Err(e) => return bad_request(&e.to_string()),
    }
    let (start, end, filename) = match locate_file_part(&mut raw.file, &boundary).await {
        Ok(p) => p,
        Err(e) => return bad_request(&e.to_string()),
    };
    let size = end - start;
    if size > limit {
        return h::json_message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Request Entity Too Large",
        );
    }
    // Copy the part out of the multipart envelope into its own atomically written file.
    let mut out = match PendingFile::new_in(&dir) {
        Ok(f) => f,
        Err(e) => return storage_error(&dir, &e),
    };
    let copied = async {
        raw.file.seek(SeekFrom::Start(start)).await?;
        let mut part = (&mut raw.file).take(size);
        tokio::io::copy(&mut part, &mut out.file).await?;
        out.file.flush().await
    }
    .await;
    if let Err(e) = copied {
        return storage_error(&dir, &e);
    }
    let mut magic = [0u8; 4];
    let magic_len = match std::fs::File::open(out.path()).and_then(|mut f| {
        use std::io::Read;
        f.read(&mut magic)
    }) {
        Ok(n) => n,
        Err(e) => return storage_error(&dir, &e),
    };
    if !format_matches(&format, &magic[..magic_len]) {
        return bad_request(&format!(
            "{filename:?} is not in artifact_format {format:?}"
        ));
    }
    let mut dotenv_vars = None;
    if artifact_type == "dotenv" {
        let data = match std::fs::read(out.path()) {
            Ok(d) => d,
            Err(e) => return storage_error(&dir, &e),
        };
        let cfg = &shared.config.api;
        let parsed = if format == "gzip" {
            dotenv::parse_gzip(&data, cfg.dotenv_max_bytes, cfg.dotenv_max_variables)
        } else if (data.len() as u64) < cfg.dotenv_max_bytes {
            dotenv::parse(&String::from_utf8_lossy(&data), cfg.dotenv_max_variables)
        } else {
            Err(dotenv::DotenvError::TooBig(cfg.dotenv_max_bytes))
        };
        match parsed {
            Ok(v) => dotenv_vars = Some(v),
            Err(e) => return bad_request(&format!("dotenv report {filename:?}: {e}")),
        }
    }
    let ext = match format.as_str() {
        "gzip" => "gz",
        "zipzstd" => "zip",
        "tarzstd" => "tar.zst",
        other => other,
    };
    let dest: PathBuf = dir.join(format!("{artifact_type}.{ext}"));
    if let Err(e) = out.commit(&dest).await {
        return storage_error(&dir, &e);
    }
    let base = Path::new(&filename)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("artifacts.{ext}"));
    let stored = StoredArtifact {
        artifact_type: artifact_type.clone(),
        format,
        filename: base,
        path: dest,
        size,
        expire_in,
    };
    let mut inner = shared.api.lock();
    let Some(job) = inner.jobs.get_mut(&id.0) else {
        return not_found();
    };
    job.artifacts.retain(|a| a.artifact_type != artifact_type);
    job.artifacts.push(stored);
    if let Some(vars) = dotenv_vars {
        job.dotenv = vars;
    }
    let state = job.state.clone();
    drop(inner);
    job_headers(
        shared,
        h::json(StatusCode::CREATED, &serde_json::json!({})),
        &state,
    )
}

fn storage_error(dir: &Path, e: &std::io::Error) -> Response {
    tracing::error!("artifact storage {}: {e}", dir.display());
    h::json_message(
        StatusCode::INSUFFICIENT_STORAGE,
        &format!("507 cannot store artifact: {e}"),
    )
}

pub(super) async fn download(shared: &Shared, req: Request, id: JobId) -> Response {
    let token = job_token_from(&req).unwrap_or_default();
    let archive = {
        let inner = shared.api.lock();
        let Some(target) = inner.jobs.get(&id.0) else {
            return not_found();
        };
        let Some(caller) = ApiState::job_by_token(&inner, &token) else {
            return h::json_message(StatusCode::UNAUTHORIZED, "401 Unauthorized");
        };
        // The producer itself while it runs, or any running job of the same project
        // (current GitLab hands consumers their own token for dependencies, and a job token
        // reads its own project's artifacts: a child pipeline's `needs:pipeline:job` fetches
        // the parent's).
        let allowed = caller.state.is_active()
            && (caller.id == target.id || caller.spec.project.path == target.spec.project.path);
        if !allowed {
            return forbidden();
        }
        target
            .artifacts
            .iter()
            .find(|a| a.artifact_type == "archive")
            .cloned()
    };
    let Some(archive) = archive else {
        return h::json_message(
            StatusCode::NOT_FOUND,
            "404 Not Found - job has no artifacts archive",
        );
    };
    let file = match tokio::fs::File::open(&archive.path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("artifact {}: {e}", archive.path.display());
            return not_found();
        }
    };
    h::download(file, Some(archive.size), &archive.filename)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_read_from_content_type() {
        assert_eq!(
            boundary_of("multipart/form-data; boundary=abc123").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            boundary_of("multipart/form-data; charset=x; boundary=\"q r\"").as_deref(),
            Some("q r")
        );
        assert_eq!(boundary_of("application/json"), None);
        assert_eq!(boundary_of("multipart/form-data"), None);
    }

    #[tokio::test]
    async fn file_part_is_found_among_other_parts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let body = b"--XY\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nvalue\r\n--XY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.zip\"\r\nContent-Type: application/octet-stream\r\n\r\nPK\x03\x04da\r\n-ta\r\n--XY--\r\n";
        let path = dir.path().join("raw");
        std::fs::write(&path, body).expect("write");
        let mut f = tokio::fs::File::open(&path).await.expect("open");
        let (s, e, name) = locate_file_part(&mut f, "XY").await.expect("part");
        assert_eq!(&body[s as usize..e as usize], b"PK\x03\x04da\r\n-ta");
        assert_eq!(name, "a.zip");
    }
}
