//! The bytes glci holds in `GLCI_HOME`, by part, counted as `du` counts them: every file,
//! directory and link once (hard links once), not following links. Two numbers each:
//! `apparent` is the files' sizes (`du --apparent-size`), `allocated` the blocks the file
//! system gave them (`du`, what the disk loses).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// Bytes and files of one part.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Sum of sizes (`du -s -B1 --apparent-size`).
    pub apparent: u64,
    /// Sum of allocated blocks × 512 (`du -s -B1`).
    pub allocated: u64,
    /// Regular files.
    pub files: u64,
}

impl Usage {
    fn add(&mut self, md: &std::fs::Metadata) {
        self.apparent += md.len();
        self.allocated += md.blocks() * 512;
        if md.is_file() {
            self.files += 1;
        }
    }

    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            apparent: self.apparent + other.apparent,
            allocated: self.allocated + other.allocated,
            files: self.files + other.files,
        }
    }
}

/// `GLCI_HOME`, by part. The parts add up to the whole directory.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct HomeUsage {
    /// `cache/`: the S3 cache.
    pub cache: Usage,
    /// `registry/`: the container registry's store.
    pub registry: Usage,
    /// `packages/`: generic packages jobs uploaded.
    pub packages: Usage,
    /// `includes/`: fetched include files (what `--offline` reads).
    pub includes: Usage,
    /// `repos/`: the working-tree snapshot repositories.
    pub snapshots: Usage,
    /// `pipelines/`: the kept pipelines' records, artifacts and staging directories, without
    /// their logs.
    pub pipelines: Usage,
    /// Job logs (`pipelines/<id>/jobs/<job>/job.log`, the server's `traces/*.log`) and glci's
    /// own logs (`daemon/daemon.log*`).
    pub logs: Usage,
    /// Everything else (`registry-ca/`, settings, the directory itself, ...).
    pub other: Usage,
    /// Directories that could not be read (their contents are not counted).
    pub unreadable: Vec<PathBuf>,
}

impl HomeUsage {
    pub fn total(&self) -> Usage {
        [
            self.cache,
            self.registry,
            self.packages,
            self.includes,
            self.snapshots,
            self.pipelines,
            self.logs,
            self.other,
        ]
        .into_iter()
        .fold(Usage::default(), Usage::plus)
    }
}

/// Which part of `GLCI_HOME` the path `rel` (relative to it) belongs to.
fn part<'a>(usage: &'a mut HomeUsage, rel: &Path) -> &'a mut Usage {
    let names: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    match names.as_slice() {
        ["cache", ..] => &mut usage.cache,
        ["registry", ..] => &mut usage.registry,
        ["packages", ..] => &mut usage.packages,
        ["includes", ..] => &mut usage.includes,
        ["repos", ..] => &mut usage.snapshots,
        ["pipelines", ..] if is_log(rel) => &mut usage.logs,
        ["pipelines", ..] => &mut usage.pipelines,
        ["daemon", ..] if is_log(rel) => &mut usage.logs,
        _ => &mut usage.other,
    }
}

/// Whether `rel` (relative to `GLCI_HOME`) is a log: a job's `job.log`, a server trace, or
/// one of the daemon's logs (`daemon.log`, `daemon.log.1`, ...).
pub fn is_log(rel: &Path) -> bool {
    let names: Vec<&str> = rel.iter().filter_map(|n| n.to_str()).collect();
    match names.as_slice() {
        ["pipelines", id, "jobs", _, "job.log"] => id.parse::<u64>().is_ok(),
        ["pipelines", id, "traces", trace] => id.parse::<u64>().is_ok() && trace.ends_with(".log"),
        ["daemon", name] => is_daemon_log(name),
        _ => false,
    }
}

/// `daemon.log` and its rotated copies `daemon.log.N`.
pub fn is_daemon_log(name: &str) -> bool {
    name == "daemon.log"
        || name
            .strip_prefix("daemon.log.")
            .is_some_and(|n| n.parse::<u32>().is_ok())
}

/// What `GLCI_HOME` (`home`) holds, by part; a missing `home` holds nothing.
pub fn home_usage(home: &Path) -> HomeUsage {
    let mut usage = HomeUsage::default();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let Ok(md) = std::fs::symlink_metadata(home) else {
        return usage;
    };
    seen.insert((md.dev(), md.ino()));
    usage.other.add(&md);
    if !md.is_dir() {
        return usage;
    }
    let mut todo: Vec<PathBuf> = vec![home.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            usage.unreadable.push(dir);
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            // Gone meanwhile (a run removed it): not there, not counted.
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            // Hard links once, as du counts them.
            if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
                continue;
            }
            let rel = path.strip_prefix(home).unwrap_or(&path);
            part(&mut usage, rel).add(&md);
            if md.is_dir() {
                todo.push(path);
            }
        }
    }
    usage
}

/// `du`-style usage of one tree (`path` itself included); a missing path is empty.
pub fn tree_usage(path: &Path) -> Usage {
    let mut usage = Usage::default();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        usage.add(&md);
        if md.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                todo.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_told_from_the_rest() {
        assert!(is_log(Path::new("pipelines/3/jobs/build/job.log")));
        assert!(is_log(Path::new("pipelines/3/traces/17.log")));
        assert!(is_log(Path::new("daemon/daemon.log.2")));
        assert!(!is_log(Path::new("pipelines/3/jobs/build/job.json")));
        assert!(!is_log(Path::new(
            "pipelines/3/jobs/build/artifacts/job.log"
        )));
        assert!(!is_log(Path::new("daemon/daemon.sock")));
    }

    #[test]
    fn parts_add_up_and_hard_links_count_once() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        std::fs::create_dir_all(h.join("cache")).unwrap();
        std::fs::write(h.join("cache/a.obj"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(h.join("cache/a.obj"), h.join("cache/b.obj")).unwrap();
        std::fs::create_dir_all(h.join("pipelines/1/jobs/j")).unwrap();
        std::fs::write(h.join("pipelines/1/jobs/j/job.log"), "hello").unwrap();
        std::fs::write(h.join("pipelines/1/jobs/j/job.json"), "{}").unwrap();
        let u = home_usage(h);
        assert_eq!(u.cache.files, 1);
        let dir = std::fs::metadata(h.join("cache")).unwrap().len();
        assert_eq!(u.cache.apparent, 10_000 + dir);
        assert_eq!(u.logs.apparent, 5);
        assert_eq!(u.logs.files, 1);
        assert_eq!(u.total(), tree_usage(h));
    }
}
