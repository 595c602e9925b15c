//! glci's data directory: `GLCI_HOME`, else `~/.glci`.
//!
//! Layout (also in the README):
//! - `repos/<key>.git` — bare snapshot repositories, one per user repository;
//! - `cache/` — the S3 cache objects, shared by all pipelines;
//! - `includes/` — fetched `include:remote` files, content-addressed, for `--offline`;
//! - `pipelines/last-id` — the last pipeline id handed out;
//! - `pipelines/<id>/` — one pipeline (the newest 20 are kept): `jobs/<job>/job.log`,
//!   `jobs/<job>/artifacts/` (extracted), `jobs/<job>/job.json` (the job's record, see
//!   [`super::past_runs`]), and the server's own `artifacts/<job id>/` and
//!   `traces/<job id>.log`.

use std::path::PathBuf;

/// The data directory (created if missing).
pub fn glci_home() -> std::io::Result<PathBuf> {
    let dir = glci_home_path()?;
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Where the data directory is, without creating it (for what is written only on demand).
pub fn glci_home_path() -> std::io::Result<PathBuf> {
    Ok(match std::env::var_os("GLCI_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let home = std::env::var_os("HOME").ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "neither GLCI_HOME nor HOME is set",
                )
            })?;
            PathBuf::from(home).join(".glci")
        }
    })
}

/// Bytes free for an unprivileged user on the file system holding `path` (or, when it does
/// not exist yet, its nearest existing ancestor), for `cargo glci doctor`.
pub fn free_space(path: &std::path::Path) -> std::io::Result<u64> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(std::path::Path::new("/"));
    let stat = rustix::fs::statvfs(existing)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The next pipeline id: one more than the last one handed out in this data directory, so
/// refs (`refs/pipelines/<id>`) of runs that overlap do not collide. The id is claimed by
/// creating `pipelines/<id>/` (atomic: of two runs starting at once, one gets the next id);
/// `last-id` is written atomically after.
pub fn next_pipeline_id(home: &std::path::Path) -> std::io::Result<u64> {
    let dir = home.join("pipelines");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("last-id");
    let mut last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let next = loop {
        let next = last + 1;
        match std::fs::create_dir(dir.join(next.to_string())) {
            Ok(()) => break next,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = next,
            Err(e) => return Err(e),
        }
    };
    let tmp = tempfile::NamedTempFile::new_in(&dir)?;
    std::fs::write(tmp.path(), format!("{next}\n"))?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(next)
}

/// Removes the oldest pipeline directories (`pipelines/<id>/`) beyond the newest `keep`.
pub fn prune_pipelines(home: &std::path::Path, keep: usize) -> std::io::Result<()> {
    let mut ids: Vec<u64> = std::fs::read_dir(home.join("pipelines"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable();
    let excess = ids.len().saturating_sub(keep);
    for id in &ids[..excess] {
        std::fs::remove_dir_all(home.join("pipelines").join(id.to_string()))?;
    }
    Ok(())
}

/// A project's GitLab path (`group/project`) as one file name of the data directory: what is
/// not `[A-Za-z0-9._-]` becomes `+`, so two checkouts of one project share what is kept per
/// project, as one GitLab project does.
pub fn project_key(project_path: &str) -> String {
    project_path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '+'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_claimed_concurrently_are_distinct() {
        let home = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let home = home.path().to_path_buf();
                std::thread::spawn(move || next_pipeline_id(&home).unwrap())
            })
            .collect();
        let mut ids: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=8).collect::<Vec<u64>>());
        assert_eq!(next_pipeline_id(home.path()).unwrap(), 9);
    }
}
