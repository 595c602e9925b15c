//! Job artifacts through the API (`Jobs::Artifacts` in GitLab):
//! `GET /projects/:id/jobs/artifacts/:ref_name/download?job=NAME`,
//! `GET /projects/:id/jobs/artifacts/:ref_name/raw/*path?job=NAME` and
//! `GET /projects/:id/jobs/:job_id/artifacts`.
//!
//! By ref and name, GitLab serves the newest successful job of that name on that ref. Here
//! that is this pipeline's newest such job, else the newest one in an earlier run kept in
//! `ApiConfig::earlier_runs`: each successful job with an archive leaves a small record
//! (`artifacts/<job id>/job.json`) next to it for that lookup.

use std::io::{Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use http::StatusCode;
use serde_json::{json, Value};

use super::{bad_request, not_found, project_job, Caller};
use crate::server::http::{self as h, Response};
use crate::server::runner_api::state::{Job, JobId, JobState};
use crate::server::storage::write_atomic;
use crate::server::Shared;

/// The record of a successful job's archive, for runs after this one.
const RECORD: &str = "job.json";

/// Called when a job succeeds: records name, ref and project next to its archive.
pub(crate) fn remember_finished(data_dir: &Path, job: &Job) {
    let Some(archive) = job.artifacts.iter().find(|a| a.artifact_type == "archive") else {
        return;
    };
    let record = json!({
        "name": job.spec.name,
        "ref": job.spec.git.ref_name,
        "project": job.spec.project.path,
        "pipeline_id": job.spec.pipeline_id,
        "job_id": job.id.0,
        "archive": archive.path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "filename": archive.filename,
    });
    let path = data_dir
        .join("artifacts")
        .join(job.id.0.to_string())
        .join(RECORD);
    let save = move || {
        if let Err(e) = write_atomic(&path, record.to_string().as_bytes()) {
            tracing::warn!("recording artifacts in {}: {e}", path.display());
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(save);
        }
        Err(_) => save(),
    }
}

/// An archive to serve: where it is and the name it was uploaded under.
struct Archive {
    path: PathBuf,
    filename: String,
}

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
                earlier
                    .and_then(|dir| find_earlier(&dir, &data_dir, &project, &ref_name, &job_name))
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

/// The newest successful job named `job` on `ref_name` in an earlier pipeline directory
/// under `runs` (numeric names; the current one and any later ones are skipped).
fn find_earlier(
    runs: &Path,
    current: &Path,
    project: &str,
    ref_name: &str,
    job: &str,
) -> Option<Archive> {
    let current_id: Option<u64> = current
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok());
    let mut ids: Vec<u64> = std::fs::read_dir(runs)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|id| current_id.is_none_or(|c| *id < c))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    for id in ids {
        let dir = runs.join(id.to_string()).join("artifacts");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut best: Option<(u64, Archive)> = None;
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read(entry.path().join(RECORD)) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            let field = |k: &str| record.get(k).and_then(Value::as_str);
            if field("project") != Some(project)
                || field("ref") != Some(ref_name)
                || field("name") != Some(job)
            {
                continue;
            }
            let (Some(job_id), Some(archive)) = (
                record.get("job_id").and_then(Value::as_u64),
                field("archive"),
            ) else {
                continue;
            };
            if best.as_ref().is_some_and(|(b, _)| *b >= job_id) {
                continue;
            }
            best = Some((
                job_id,
                Archive {
                    path: entry.path().join(archive),
                    filename: field("filename").unwrap_or("artifacts.zip").to_string(),
                },
            ));
        }
        if let Some((_, archive)) = best {
            return Some(archive);
        }
    }
    None
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
