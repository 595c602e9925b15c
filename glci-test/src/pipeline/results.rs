//! What stays of a finished job after the run: its log under a stable name and its
//! artifacts archive extracted, in the pipeline's directory (`<GLCI_HOME>/pipelines/<id>/`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::runner::archive::{self, check_zip, DeclaredSize, EntryKind, ExpandLimits, UnpackError};
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
/// `jobs/<job>/artifacts/` (next to the server's own `artifacts/<id>/` and `traces/`).
/// Failures leave the field empty and the run goes on. glci's own lines follow the runner's
/// trace in `job.log`: API calls it does not implement, releases, and why an archive was not
/// extracted (over a bound of [`ExpandLimits`], or escaping its directory).
pub fn store(server: &RunningServer, id: JobId, dir: &Path, job: &str) -> Stored {
    let job_dir = dir.join("jobs").join(file_name(job));
    let mut glci_lines = Vec::new();
    for note in server.notes(id) {
        glci_lines.extend_from_slice(note.as_bytes());
        glci_lines.push(b'\n');
    }
    let mut artifacts_dir = None;
    if let Some(archive) = server
        .artifacts(id)
        .into_iter()
        .find(|a| a.artifact_type == "archive")
    {
        let dest = job_dir.join("artifacts");
        match extract_zip(&archive.path, &dest, ExpandLimits::default()) {
            Ok(()) => artifacts_dir = Some(dest),
            Err(e) => glci_lines.extend_from_slice(
                format!(
                    "glci: the artifacts were not extracted to {}: {e}\n",
                    dest.display()
                )
                .as_bytes(),
            ),
        }
    }

    let log_path = job_dir.join("job.log");
    let trace = server.trace_path(id).filter(|t| t.exists());
    let log_path = write_log(trace.as_deref(), &glci_lines, &log_path)
        .ok()
        .map(|_| log_path);
    let log = log_path
        .as_deref()
        .map(|p| log_text(p, LOG_TEXT_MAX).unwrap_or_default())
        .unwrap_or_default();
    Stored {
        log,
        log_path,
        artifacts_dir,
    }
}

/// Writes `dest` as the trace (streamed, never held in memory) followed by `glci_lines` on a
/// line of their own: into a temp file next to `dest`, synced, renamed over it.
fn write_log(trace: Option<&Path>, glci_lines: &[u8], dest: &Path) -> std::io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    if let Some(trace) = trace {
        let mut from = std::fs::File::open(trace)?;
        let copied = std::io::copy(&mut from, temp.as_file_mut())?;
        if copied > 0 && !glci_lines.is_empty() {
            let mut last = [0u8];
            from.seek(SeekFrom::Start(copied - 1))?;
            from.read_exact(&mut last)?;
            if last[0] != b'\n' {
                temp.as_file_mut().write_all(b"\n")?;
            }
        }
    }
    temp.as_file_mut().write_all(glci_lines)?;
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

/// Why an artifacts archive was not extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Extracts a zip into `dest` (replaced as a whole) within `limits`, refusing the whole
/// archive when an entry or link would land outside it. Each file is streamed to disk;
/// everything is written next to `dest` and renamed, so `dest` is never half-extracted.
pub fn extract_zip(zip_path: &Path, dest: &Path, limits: ExpandLimits) -> Result<(), ExtractError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExtractError::Io { path, source }
    };
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    let file = std::fs::File::open(zip_path).map_err(io(zip_path))?;
    let archive_len = file.metadata().map_err(io(zip_path))?.len();
    let mut archive = zip::ZipArchive::new(file).map_err(UnpackError::NotZip)?;
    let entries = check_zip(&mut archive, archive_len, limits)?;
    for checked in &entries {
        let target = staging.path().join(&checked.rel);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        match &checked.kind {
            EntryKind::Dir => std::fs::create_dir_all(&target).map_err(io(&target))?,
            EntryKind::Symlink { target: link } => {
                // Checked to stay inside `dest`.
                #[cfg(unix)]
                std::os::unix::fs::symlink(link, &target).map_err(io(&target))?;
                #[cfg(not(unix))]
                let _ = link;
            }
            EntryKind::File { size } => {
                let entry =
                    archive
                        .by_index(checked.index)
                        .map_err(|source| UnpackError::Corrupt {
                            index: checked.index,
                            source,
                        })?;
                let mut out = std::fs::File::create(&target).map_err(io(&target))?;
                std::io::copy(&mut DeclaredSize::new(entry, *size, &checked.rel), &mut out)
                    .map_err(|e| archive::copy_error(e, &checked.rel))?;
            }
        }
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(io(dest))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dest).map_err(io(dest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_zip(path: &Path, name: &str, content: &[u8]) {
        let file = std::fs::File::create(path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file(name, options).unwrap();
        zip.write_all(content).unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn a_zip_bomb_is_not_extracted_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("artifacts.zip");
        write_zip(&zip, "zeros.bin", &vec![0u8; 64 * 1024 * 1024]);
        let dest = dir.path().join("jobs/j/artifacts");
        let err = extract_zip(&zip, &dest, ExpandLimits::default()).unwrap_err();
        assert!(err.to_string().contains("(a zip bomb?)"), "{err}");
        assert!(!dest.exists());
        let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn files_are_streamed_to_disk_and_escapes_refuse_the_whole_archive() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("a.zip");
        write_zip(&zip, "out/report.txt", b"ok");
        let dest = dir.path().join("artifacts");
        extract_zip(&zip, &dest, ExpandLimits::default()).unwrap();
        assert_eq!(std::fs::read(dest.join("out/report.txt")).unwrap(), b"ok");

        write_zip(&zip, "../escaped.txt", b"x");
        let err = extract_zip(&zip, &dest, ExpandLimits::default()).unwrap_err();
        assert!(err.to_string().contains("escapes the directory"), "{err}");
        assert!(!dir.path().join("escaped.txt").exists());
        // The earlier extraction is still whole.
        assert!(dest.join("out/report.txt").exists());
    }
}
