//! The record a successful job's artifacts archive leaves next to it,
//! `artifacts/<job id>/job.json` under the data directory, and the lookup over earlier runs
//! that reads it back.
//!
//! GitLab serves `GET /projects/:id/jobs/artifacts/:ref_name/...?job=NAME` from the newest
//! successful job of that name on that ref, whichever pipeline ran it. The job API finds
//! such a job in the current pipeline from the job state; for earlier runs (each its own
//! data directory) only these records remain. The job state writes them when a job succeeds
//! and the job API reads them: this module sits below both so neither calls into the other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::server::storage::write_atomic;

/// The record's file name inside `artifacts/<job id>/`.
const RECORD: &str = "job.json";

/// The name an archive was uploaded under, when a record does not say.
const DEFAULT_FILENAME: &str = "artifacts.zip";

/// One successful job's archive, as recorded for runs after this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ArchiveRecord {
    /// The job's name (`job=NAME`).
    pub(crate) name: String,
    /// The ref the job ran for (`:ref_name`).
    #[serde(rename = "ref")]
    pub(crate) ref_name: String,
    /// The project's path (`group/project`).
    pub(crate) project: String,
    #[serde(default)]
    pub(crate) pipeline_id: u64,
    pub(crate) job_id: u64,
    /// The stored archive's file name inside `artifacts/<job id>/`.
    pub(crate) archive: Option<String>,
    /// The name the runner uploaded it as.
    #[serde(default = "default_filename")]
    pub(crate) filename: String,
}

fn default_filename() -> String {
    DEFAULT_FILENAME.to_string()
}

/// An archive to serve: where it is and the name it was uploaded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Archive {
    pub(crate) path: PathBuf,
    pub(crate) filename: String,
}

/// Saves `record` under `data_dir`: off the caller's thread when a runtime is there (the job
/// state calls this with its lock held), otherwise right away. A failure is only logged: the
/// record serves later runs, the current one does not need it.
pub(crate) fn save(data_dir: &Path, record: ArchiveRecord) {
    let path = data_dir
        .join("artifacts")
        .join(record.job_id.to_string())
        .join(RECORD);
    let save = move || {
        let written = serde_json::to_vec(&record)
            .map_err(std::io::Error::from)
            .and_then(|text| write_atomic(&path, &text));
        if let Err(e) = written {
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

/// The newest successful job named `job` on `ref_name` in an earlier pipeline directory
/// under `runs` (numeric names; the current one, `current`, and any later ones are skipped).
/// Unreadable records are skipped.
pub(crate) fn find_earlier(
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
            let Ok(record) = serde_json::from_slice::<ArchiveRecord>(&text) else {
                continue;
            };
            if record.project != project || record.ref_name != ref_name || record.name != job {
                continue;
            }
            let Some(archive) = record.archive else {
                continue;
            };
            if best.as_ref().is_some_and(|(b, _)| *b >= record.job_id) {
                continue;
            }
            best = Some((
                record.job_id,
                Archive {
                    path: entry.path().join(archive),
                    filename: record.filename,
                },
            ));
        }
        if let Some((_, archive)) = best {
            return Some(archive);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(job_id: u64, name: &str) -> ArchiveRecord {
        ArchiveRecord {
            name: name.to_string(),
            ref_name: "main".to_string(),
            project: "group/project".to_string(),
            pipeline_id: 7,
            job_id,
            archive: Some("artifacts.zip".to_string()),
            filename: "build.zip".to_string(),
        }
    }

    #[test]
    fn a_saved_record_is_found_from_a_later_run() {
        let runs = tempfile::tempdir().unwrap();
        save(&runs.path().join("3"), record(5, "build"));
        save(&runs.path().join("3"), record(4, "build"));
        save(&runs.path().join("3"), record(6, "test"));
        let found = find_earlier(
            runs.path(),
            &runs.path().join("4"),
            "group/project",
            "main",
            "build",
        );
        assert_eq!(
            found,
            Some(Archive {
                path: runs.path().join("3/artifacts/5/artifacts.zip"),
                filename: "build.zip".to_string(),
            })
        );
        // The current run and later ones are not "earlier".
        let none = find_earlier(
            runs.path(),
            &runs.path().join("3"),
            "group/project",
            "main",
            "build",
        );
        assert_eq!(none, None);
    }

    #[test]
    fn the_record_keeps_its_field_names() {
        let text = serde_json::to_string(&record(5, "build")).unwrap();
        assert_eq!(
            text,
            r#"{"name":"build","ref":"main","project":"group/project","pipeline_id":7,"job_id":5,"archive":"artifacts.zip","filename":"build.zip"}"#
        );
    }
}
