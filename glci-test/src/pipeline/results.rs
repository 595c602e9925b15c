//! What stays of a finished job after the run: its log under a stable name and its
//! artifacts archive extracted, in the pipeline's directory (`<GLCI_HOME>/pipelines/<id>/`).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::server::storage::write_atomic;
use crate::server::{JobId, RunningServer};

/// A finished job's log and artifacts as kept on disk.
pub struct Stored {
    pub log: String,
    pub log_path: Option<PathBuf>,
    pub artifacts_dir: Option<PathBuf>,
}

/// A job name as a file name: GitLab job names may hold spaces, slashes and brackets.
pub fn file_name(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Copies the job's log to `jobs/<job>/job.log` and extracts its `archive` artifact into
/// `jobs/<job>/artifacts/` (next to the server's own `artifacts/<id>/` and `traces/`). Failures leave the field empty; the run goes on.
pub fn store(server: &RunningServer, id: JobId, dir: &Path, job: &str) -> Stored {
    let mut bytes = server.trace(id).unwrap_or_default();
    // glci's own lines (API calls it does not implement, releases) follow the runner's trace.
    for note in server.notes(id) {
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(note.as_bytes());
        bytes.push(b'\n');
    }
    let log = String::from_utf8_lossy(&bytes).into_owned();
    let job_dir = dir.join("jobs").join(file_name(job));
    let log_path = job_dir.join("job.log");
    let log_path = write_atomic(&log_path, &bytes).ok().map(|_| log_path);

    let artifacts_dir = server
        .artifacts(id)
        .into_iter()
        .find(|a| a.artifact_type == "archive")
        .and_then(|archive| {
            let dest = job_dir.join("artifacts");
            extract_zip(&archive.path, &dest).ok().map(|_| dest)
        });
    Stored {
        log,
        log_path,
        artifacts_dir,
    }
}

/// Extracts a zip into `dest` (replaced as a whole), refusing entries that would land
/// outside it. Written next to `dest` and renamed, so `dest` is never half-extracted.
fn extract_zip(zip_path: &Path, dest: &Path) -> std::io::Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(parent)?;
    let file = std::fs::File::open(zip_path)?;
    let mut archive = zip::ZipArchive::new(file).map_err(std::io::Error::other)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(std::io::Error::other)?;
        let Some(relative) = entry.enclosed_name() else {
            continue;
        };
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            continue;
        }
        let target = staging.path().join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        std::fs::write(&target, data)?;
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dest)?;
    Ok(())
}
