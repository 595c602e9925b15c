//! What stays of a finished job after the run: its log under a stable name and its
//! artifacts archive extracted, in the pipeline's directory (`<GLCI_HOME>/pipelines/<id>/`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::server::storage::write_atomic;
use crate::server::{JobId, RunningServer};

/// The most of a job's log kept as text in its report: the end of a longer log (the whole
/// log stays in `job.log`), so a run's memory does not grow with the size of its logs.
pub const LOG_TEXT_MAX: u64 = 4 * 1024 * 1024;

/// A finished job's log and artifacts as kept on disk.
pub struct Stored {
    /// The log as text, for rendering and snapshots (see [`log_text`]).
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
    let job_dir = dir.join("jobs").join(file_name(job));
    let log_path = job_dir.join("job.log");
    let copied = match server.trace_path(id) {
        Some(trace) if trace.exists() => copy_atomic(&trace, &log_path),
        _ => write_atomic(&log_path, b""),
    };
    let log_path = copied.ok().map(|_| log_path);
    let log = log_path
        .as_deref()
        .map(|p| log_text(p, LOG_TEXT_MAX).unwrap_or_default())
        .unwrap_or_default();

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

/// Copies `from` to `dest` without holding it in memory: into a temp file next to `dest`,
/// synced, renamed over it.
fn copy_atomic(from: &Path, dest: &Path) -> std::io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    std::io::copy(&mut std::fs::File::open(from)?, temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    temp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// A stored log as text: the bytes are kept as the job wrote them, only this view replaces
/// invalid UTF-8. A log longer than `max` bytes gives its last `max` bytes, from a line start,
/// after a line saying so.
pub fn log_text(path: &Path, max: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len <= max {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    file.seek(SeekFrom::Start(len - max))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    let start = memchr::memchr(b'\n', &bytes).map_or(0, |i| i + 1);
    Ok(format!(
        "[the first {} bytes of this {len}-byte log are in {}]\n{}",
        len - (bytes.len() - start) as u64,
        path.display(),
        String::from_utf8_lossy(&bytes[start..])
    ))
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
