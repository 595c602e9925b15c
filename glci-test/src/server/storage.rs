//! Atomic files under the server's data directory: every write goes to a temp file in the
//! destination directory and is renamed into place, so a reader or a crash never sees half a
//! file.

use std::io;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A file being written; it vanishes unless [`PendingFile::commit`] is called.
pub(crate) struct PendingFile {
    temp: NamedTempFile,
    pub(crate) file: tokio::fs::File,
}

impl PendingFile {
    /// Opens a temp file in `dir` (created if missing), the directory the final file will
    /// live in, so the rename cannot cross file systems.
    pub(crate) fn new_in(dir: &Path) -> io::Result<PendingFile> {
        std::fs::create_dir_all(dir)?;
        let temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        let file = tokio::fs::File::from_std(temp.reopen()?);
        Ok(PendingFile { temp, file })
    }

    pub(crate) fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Flushes the data to disk and renames it over `dest`.
    pub(crate) async fn commit(self, dest: &Path) -> io::Result<()> {
        self.file.sync_all().await?;
        drop(self.file);
        self.temp.persist(dest).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Writes `data` to `dest` atomically.
pub(crate) fn write_atomic(dest: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = dest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir)?;
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
    temp.write_all(data)?;
    temp.as_file().sync_all()?;
    temp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}
