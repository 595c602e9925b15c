//! Job artifacts through the API (`Jobs::Artifacts` in GitLab):
//! `GET /projects/:id/jobs/artifacts/:ref_name/download?job=NAME`,
//! `GET /projects/:id/jobs/artifacts/:ref_name/raw/*path?job=NAME` and
//! `GET /projects/:id/jobs/:job_id/artifacts`.
//!
//! By ref and name, GitLab serves the newest successful job of that name on that ref. Here
//! that is this pipeline's newest such job, else the newest one in an earlier run kept in
//! `ApiConfig::earlier_runs`, found through the record each successful job's archive leaves
//! next to it (see `runner_api::archive_record`).

use std::io::{Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use http::StatusCode;
use serde_json::Value;

use super::{bad_request, not_found, project_job, Caller};
use crate::server::http::{self as h, Response};
use crate::server::runner_api::archive_record::{self, Archive};
use crate::server::runner_api::spec::JobId;
use crate::server::runner_api::state::{Job, JobState};
use crate::server::Shared;

fn archive_of(job: &Job) -> Option<Archive> {
    job.artifacts
        .iter()
        .find(|a| a.artifact_type == "archive")
        .map(|a| Archive {
            path: a.path.clone(),
            filename: a.filename.clone(),
        })
}

pub(super) async fn by_ref(
    shared: &Shared,
    caller: &Caller,
    ref_name: String,
    file: Option<String>,
    query: &Value,
) -> Response {
    let Some(job_name) = crate::server::params::string(query, "job").map(str::to_string) else {
        return bad_request("job is missing");
    };
    let here = {
        let inner = shared.api.lock();
        inner
            .jobs
            .values()
            .rev()
            .filter(|j| j.state == JobState::Success)
            .filter(|j| j.spec.project.path == caller.project_path)
            .filter(|j| j.spec.git.ref_name == ref_name && j.spec.name == job_name)
            .find_map(archive_of)
    };
    let archive = match here {
        Some(a) => Some(a),
        None => {
            let earlier = shared.config.api.earlier_runs.clone();
            let data_dir = shared.config.data_dir.clone();
            let project = caller.project_path.clone();
            tokio::task::spawn_blocking(move || {
                earlier.and_then(|dir| {
                    archive_record::find_earlier(&dir, &data_dir, &project, &ref_name, &job_name)
                })
            })
            .await
            .ok()
            .flatten()
        }
    };
    let Some(archive) = archive else {
        return h::json_message(StatusCode::NOT_FOUND, "404 Not found");
    };
    match file {
        None => serve_archive(archive).await,
        Some(path) => serve_entry(shared, archive, path).await,
    }
}

pub(super) async fn by_id(shared: &Shared, caller: &Caller, id: JobId) -> Response {
    let archive = {
        let inner = shared.api.lock();
        project_job(&inner, caller, id).and_then(archive_of)
    };
    match archive {
        Some(a) => serve_archive(a).await,
        None => not_found(),
    }
}

async fn serve_archive(archive: Archive) -> Response {
    let file = match tokio::fs::File::open(&archive.path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("artifact {}: {e}", archive.path.display());
            return not_found();
        }
    };
    let size = file.metadata().await.map(|m| m.len()).ok();
    h::download(file, size, &archive.filename)
}

#[derive(Debug, thiserror::Error)]
enum EntryError {
    #[error("no such file in the artifacts archive")]
    Missing,
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Zip(#[from] zip::result::ZipError),
}

/// One file of the archive (`raw/*path`), copied out to an unnamed temp file and streamed.
async fn serve_entry(shared: &Shared, archive: Archive, path: String) -> Response {
    let wanted: PathBuf = Path::new(&path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let limit = shared.config.api.max_artifact_bytes;
    let scratch = shared.config.data_dir.clone();
    let extracted = tokio::task::spawn_blocking(move || -> Result<std::fs::File, EntryError> {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive.path)?)?;
        let index = (0..zip.len())
            .find(|&i| {
                zip.by_index(i).is_ok_and(|e| {
                    !e.is_dir() && e.enclosed_name().as_deref() == Some(wanted.as_path())
                })
            })
            .ok_or(EntryError::Missing)?;
        let entry = zip.by_index(index)?;
        if entry.size() > limit {
            return Err(EntryError::TooLarge(limit));
        }
        let mut out = tempfile::tempfile_in(&scratch)?;
        let copied = std::io::copy(&mut entry.take(limit + 1), &mut out)?;
        if copied > limit {
            return Err(EntryError::TooLarge(limit));
        }
        out.flush()?;
        out.rewind()?;
        Ok(out)
    })
    .await;
    match extracted {
        Ok(Ok(file)) => {
            let size = file.metadata().map(|m| m.len()).ok();
            let mut resp = h::response(
                StatusCode::OK,
                h::reader_body(tokio::fs::File::from_std(file)),
            );
            h::set_header(&mut resp, "content-type", "application/octet-stream");
            if let Some(size) = size {
                h::set_header(&mut resp, "content-length", &size.to_string());
            }
            resp
        }
        Ok(Err(EntryError::Missing)) => h::json_message(StatusCode::NOT_FOUND, "404 Not found"),
        Ok(Err(e)) => {
            tracing::warn!("artifact file {path}: {e}");
            h::json_message(StatusCode::NOT_FOUND, &format!("404 Not found - {e}"))
        }
        Err(_) => h::json_message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error",
        ),
    }
}
