//! A past job's artifacts archive, as `cargo glci artifacts inspect|extract` read it: the
//! zip the runner uploaded, kept by the server in the pipeline's directory (see
//! [`super::past_runs`]). Both go through the checks an upload gets ([`check_zip`]): an
//! entry or link that would leave the destination (`../`, an absolute path, a link
//! pointing out) refuses the whole archive.

use std::path::{Path, PathBuf};

use crate::runner::archive::{check_zip, CheckedEntry, ExpandLimits, UnpackError};

use super::past_runs::{ArtifactRecord, PastPipeline};
use super::results::{extract_zip, ExtractError};

/// Why an archive cannot be listed or extracted.
#[derive(Debug, thiserror::Error)]
pub enum KeptArtifactsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Unpack { path: PathBuf, source: UnpackError },
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("the archive is stored as {format}, not zip")]
    NotZip { format: String },
    #[error("{} exists already: extract into another directory (--to)", path.display())]
    Exists { path: PathBuf },
}

fn zip_path(
    pipeline: &PastPipeline,
    archive: &ArtifactRecord,
) -> Result<PathBuf, KeptArtifactsError> {
    if archive.format != "zip" {
        return Err(KeptArtifactsError::NotZip {
            format: archive.format.clone(),
        });
    }
    Ok(pipeline.dir.join(&archive.path))
}

/// The entries of the archive, checked as on upload, in archive order.
pub fn entries(
    pipeline: &PastPipeline,
    archive: &ArtifactRecord,
) -> Result<Vec<CheckedEntry>, KeptArtifactsError> {
    let path = zip_path(pipeline, archive)?;
    let io = |source| KeptArtifactsError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut zip = zip::ZipArchive::new(file).map_err(|e| KeptArtifactsError::Unpack {
        path: path.clone(),
        source: UnpackError::NotZip(e),
    })?;
    check_zip(&mut zip, len, ExpandLimits::default()).map_err(|source| KeptArtifactsError::Unpack {
        path: path.clone(),
        source,
    })
}

/// Extracts the archive into `to` (created if missing) and returns the top-level names it
/// added. Everything is unpacked into a private directory inside `to` first, then each
/// top-level entry is renamed into place: an existing file or directory of the same name is
/// an error before anything moves, and nothing is written through a link that is already in
/// `to`.
pub fn extract(
    pipeline: &PastPipeline,
    archive: &ArtifactRecord,
    to: &Path,
) -> Result<Vec<String>, KeptArtifactsError> {
    let zip = zip_path(pipeline, archive)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeptArtifactsError::Io { path, source }
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    let staging = tempfile::Builder::new()
        .prefix(".glci-extract-")
        .tempdir_in(to)
        .map_err(io(to))?;
    let unpacked = staging.path().join("a");
    extract_zip(&zip, &unpacked, ExpandLimits::default())?;
    let mut names: Vec<String> = std::fs::read_dir(&unpacked)
        .map_err(io(&unpacked))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if let Some(taken) = names
        .iter()
        .map(|n| to.join(n))
        .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(KeptArtifactsError::Exists { path: taken });
    }
    for name in &names {
        let dest = to.join(name);
        std::fs::rename(unpacked.join(name), &dest).map_err(io(&dest))?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn archive_in(dir: &Path, entries: &[(&str, &[u8])]) -> (PastPipeline, ArtifactRecord) {
        let path = dir.join("artifacts/1/archive.zip");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (name, content) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(content).unwrap();
        }
        zip.finish().unwrap();
        let record = ArtifactRecord {
            artifact_type: "archive".into(),
            format: "zip".into(),
            filename: "artifacts.zip".into(),
            path: "artifacts/1/archive.zip".into(),
            size: 0,
            expire_in: None,
        };
        let pipeline = PastPipeline {
            id: 1,
            dir: dir.to_path_buf(),
            jobs: Vec::new(),
        };
        (pipeline, record)
    }

    #[test]
    fn extract_adds_top_level_entries_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (p, a) = archive_in(dir.path(), &[("out/a.txt", b"A"), ("b.txt", b"B")]);
        let to = dir.path().join("here");
        assert_eq!(extract(&p, &a, &to).unwrap(), ["b.txt", "out"]);
        assert_eq!(std::fs::read(to.join("out/a.txt")).unwrap(), b"A");
        let err = extract(&p, &a, &to).unwrap_err();
        assert!(err.to_string().contains("b.txt exists already"), "{err}");
        // Nothing left behind but what the first extraction wrote.
        let mut left: Vec<_> = std::fs::read_dir(&to)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["b.txt", "out"]);
    }

    #[test]
    fn an_escaping_entry_refuses_the_whole_archive() {
        let dir = tempfile::tempdir().unwrap();
        let (p, a) = archive_in(dir.path(), &[("ok.txt", b"x"), ("../evil.txt", b"x")]);
        let to = dir.path().join("here");
        let err = extract(&p, &a, &to).unwrap_err();
        assert!(err.to_string().contains("escapes the directory"), "{err}");
        assert!(!dir.path().join("evil.txt").exists());
        assert!(!to.join("ok.txt").exists());
        assert!(entries(&p, &a).is_err());
    }
}
