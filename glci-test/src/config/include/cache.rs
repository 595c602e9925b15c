//! `include:remote` files kept in glci's data directory so a later run works offline
//! (`--offline`). Content-addressed: `blobs/<sha256 of the text>` holds each text once, and
//! `urls/<sha256 of the URL>` names the blob last fetched for that URL. Both are written to
//! a temporary file and renamed, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The cache under one directory (`GLCI_HOME/includes`).
pub struct IncludeCache {
    dir: PathBuf,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl IncludeCache {
    pub fn new(dir: &Path) -> Self {
        IncludeCache {
            dir: dir.to_path_buf(),
        }
    }

    /// The text last fetched for `url`, when it is cached and intact.
    pub fn get(&self, url: &str) -> Option<String> {
        let index = self.dir.join("urls").join(sha256_hex(url.as_bytes()));
        let digest = std::fs::read_to_string(index).ok()?;
        let digest = digest.trim();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let text = std::fs::read_to_string(self.dir.join("blobs").join(digest)).ok()?;
        // A blob that no longer matches its name was damaged: not a cache hit.
        (sha256_hex(text.as_bytes()) == digest).then_some(text)
    }

    /// Keeps `text` as what `url` served.
    pub fn put(&self, url: &str, text: &str) -> std::io::Result<()> {
        let digest = sha256_hex(text.as_bytes());
        write_atomic(&self.dir.join("blobs"), &digest, text.as_bytes())?;
        write_atomic(
            &self.dir.join("urls"),
            &sha256_hex(url.as_bytes()),
            digest.as_bytes(),
        )
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damaged_blobs_miss() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = IncludeCache::new(dir.path());
        assert_eq!(cache.get("https://h/a.yml"), None);
        cache
            .put("https://h/a.yml", "a: 1\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.get("https://h/a.yml").as_deref(), Some("a: 1\n"));
        let blob = dir.path().join("blobs").join(sha256_hex(b"a: 1\n"));
        std::fs::write(blob, "a: 2\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.get("https://h/a.yml"), None);
    }
}
