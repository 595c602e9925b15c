//! The daemon's log: rotated by size when the daemon starts (`daemon.log` becomes
//! `daemon.log.1`, the oldest beyond the count is removed), read back by
//! `cargo glci daemon logs [-F] [-n N]`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn numbered(log: &Path, n: usize) -> PathBuf {
    let mut name = log.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// When `log` is larger than `max_bytes`, shifts it to `log.1` (and `log.1` to `log.2`, …),
/// keeping `keep` rotated files; with `keep` 0 it is simply removed.
pub fn rotate(log: &Path, max_bytes: u64, keep: usize) -> io::Result<()> {
    let size = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if size <= max_bytes {
        return Ok(());
    }
    if keep == 0 {
        return std::fs::remove_file(log);
    }
    match std::fs::remove_file(numbered(log, keep)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for n in (1..keep).rev() {
        match std::fs::rename(numbered(log, n), numbered(log, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(log, numbered(log, 1))
}

/// The last `lines` lines of `log` written to `out` (all of it when `lines` is `None`).
/// Returns the offset read up to, for [`follow`].
pub fn tail(log: &Path, lines: Option<usize>, out: &mut dyn Write) -> io::Result<u64> {
    let file = File::open(log)?;
    let end = file.metadata()?.len();
    let mut kept = std::collections::VecDeque::new();
    for line in BufReader::new(&file).split(b'\n') {
        kept.push_back(line?);
        if lines.is_some_and(|n| kept.len() > n) {
            kept.pop_front();
        }
    }
    for line in kept {
        out.write_all(&line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(end)
}

/// Writes what is appended to `log` after `offset`, until `out` fails; follows a rotation
/// (a new file at the same path) from its start.
pub fn follow(log: &Path, mut offset: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut file = File::open(log)?;
    let mut inode = file.metadata()?.ino();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        file.seek(SeekFrom::Start(offset))?;
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            out.flush()?;
            offset += n as u64;
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(meta) = std::fs::metadata(log) {
            if meta.ino() != inode || meta.len() < offset {
                file = File::open(log)?;
                inode = meta.ino();
                offset = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_shifts_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("daemon.log");
        for round in 0..4 {
            std::fs::write(&log, format!("round {round} {}", "x".repeat(100))).unwrap();
            rotate(&log, 50, 2).unwrap();
        }
        assert!(!log.exists());
        let one = std::fs::read_to_string(numbered(&log, 1)).unwrap();
        let two = std::fs::read_to_string(numbered(&log, 2)).unwrap();
        assert!(one.starts_with("round 3"), "{one}");
        assert!(two.starts_with("round 2"), "{two}");
        assert!(!numbered(&log, 3).exists());
        // Small enough: left alone.
        std::fs::write(&log, "short").unwrap();
        rotate(&log, 50, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "short");
    }

    #[test]
    fn tail_prints_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("daemon.log");
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        let mut out = Vec::new();
        tail(&log, Some(2), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "b\nc\n");
    }
}
