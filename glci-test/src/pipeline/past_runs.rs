//! What glci remembers of finished jobs, for the commands that look back at earlier runs
//! (`cargo glci artifacts`, the dotenv variables `cargo glci variables` shows).
//!
//! Each finished job leaves a record, `pipelines/<id>/jobs/<job>/job.json` (next to its
//! `job.log` and extracted `artifacts/`, see [`super::home`]): its server id, status, when it
//! finished, the artifacts the server stored (type, format, size, `expire_in`) and the
//! variables of its dotenv report. Records are written atomically; reading skips anything
//! unreadable, so a pipeline directory from an older glci simply has no records.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::duration::parse_duration;
use super::results::file_name;

/// The record's file name inside `jobs/<job>/`.
const RECORD: &str = "job.json";

/// GitLab's default for artifacts without `expire_in` (the instance's "Default artifacts
/// expiration" setting, 30 days).
pub const DEFAULT_EXPIRE_IN: &str = "30 days";

/// One finished job as glci keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    pub name: String,
    pub stage: String,
    /// The server's job id (`CI_JOB_ID`).
    pub job_id: u64,
    pub pipeline_id: u64,
    /// GitLab's status word (`success`, `failed`, `canceled`).
    pub status: String,
    /// Seconds since the Unix epoch.
    pub finished_at: u64,
    /// The repository's top level the pipeline ran for.
    pub project: PathBuf,
    pub artifacts: Vec<ArtifactRecord>,
    /// `artifacts:reports:dotenv` variables, in file order.
    pub dotenv: Vec<(String, String)>,
}

/// One stored artifact of a job: the archive or a report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArtifactRecord {
    /// `archive`, `junit`, `dotenv`, ...
    pub artifact_type: String,
    /// `zip`, `gzip`, `raw`, ...
    pub format: String,
    /// The name the runner uploaded it as.
    pub filename: String,
    /// The stored file, relative to the pipeline's directory.
    pub path: PathBuf,
    pub size: u64,
    /// `artifacts:expire_in` as written.
    pub expire_in: Option<String>,
}

/// When an artifact expires, as GitLab computes it from `expire_in` at upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `expire_in: never`.
    Never,
    /// Seconds since the Unix epoch.
    At(u64),
}

impl ArtifactRecord {
    /// `expire_in` from the job's end (GitLab counts from the upload, which is the job's end);
    /// no `expire_in` is the instance default, [`DEFAULT_EXPIRE_IN`]. A value GitLab would
    /// have refused at validation counts as the default too.
    pub fn expiry(&self, finished_at: u64) -> Expiry {
        let text = self.expire_in.as_deref().unwrap_or(DEFAULT_EXPIRE_IN);
        if text.trim().eq_ignore_ascii_case("never") {
            return Expiry::Never;
        }
        let after = parse_duration(text)
            .or_else(|| parse_duration(DEFAULT_EXPIRE_IN))
            .unwrap_or(Duration::ZERO);
        Expiry::At(finished_at.saturating_add(after.as_secs()))
    }
}

/// Why records could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PastRunError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PastRunError + '_ {
    move |source| PastRunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` as `2026-12-03T00:55:00Z`.
pub fn utc(secs: u64) -> String {
    crate::calendar::xmlschema_utc(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Writes `record` into `jobs/<job>/job.json` of the pipeline directory `dir`: a temp file
/// next to it, synced, renamed over it.
pub fn write(dir: &Path, record: &JobRecord) -> Result<(), PastRunError> {
    let job_dir = dir.join("jobs").join(file_name(&record.name));
    std::fs::create_dir_all(&job_dir).map_err(io(&job_dir))?;
    let dest = job_dir.join(RECORD);
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&job_dir)
        .map_err(io(&job_dir))?;
    serde_json::to_writer_pretty(temp.as_file_mut(), record).map_err(|source| {
        PastRunError::Json {
            path: dest.clone(),
            source,
        }
    })?;
    temp.as_file().sync_all().map_err(io(&dest))?;
    temp.persist(&dest).map_err(|e| PastRunError::Io {
        path: dest.clone(),
        source: e.error,
    })?;
    Ok(())
}

/// One pipeline directory with its job records, in the order the jobs finished.
#[derive(Debug, Clone)]
pub struct PastPipeline {
    pub id: u64,
    pub dir: PathBuf,
    pub jobs: Vec<JobRecord>,
}

impl PastPipeline {
    pub fn job(&self, name: &str) -> Option<&JobRecord> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The repository the pipeline ran for (every record names it).
    pub fn project(&self) -> Option<&Path> {
        self.jobs.first().map(|j| j.project.as_path())
    }

    /// When its last job finished.
    pub fn finished_at(&self) -> u64 {
        self.jobs.iter().map(|j| j.finished_at).max().unwrap_or(0)
    }
}

/// The pipeline ids kept in `home`, newest first.
fn pipeline_ids(home: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(home.join("pipelines"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

/// Pipeline `id` of `home` with the records of its finished jobs (`None` when the directory
/// is gone or no job of it finished).
pub fn pipeline(home: &Path, id: u64) -> Option<PastPipeline> {
    let dir = home.join("pipelines").join(id.to_string());
    let mut jobs: Vec<JobRecord> = std::fs::read_dir(dir.join("jobs"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join(RECORD)).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    if jobs.is_empty() {
        return None;
    }
    jobs.sort_by_key(|j| (j.finished_at, j.job_id));
    Some(PastPipeline { id, dir, jobs })
}

/// The pipelines of `project` kept in `home` that have finished jobs, newest first.
pub fn pipelines_of(home: &Path, project: &Path) -> Vec<PastPipeline> {
    pipeline_ids(home)
        .into_iter()
        .filter_map(|id| pipeline(home, id))
        .filter(|p| p.project() == Some(project))
        .collect()
}

/// The newest record of job `name` of `project` (the last run that ran it).
pub fn last_job(home: &Path, project: &Path, name: &str) -> Option<(PastPipeline, JobRecord)> {
    pipeline_ids(home)
        .into_iter()
        .filter_map(|id| pipeline(home, id))
        .filter(|p| p.project() == Some(project))
        .find_map(|p| {
            let job = p.job(name)?.clone();
            Some((p, job))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, project: &Path, finished_at: u64) -> JobRecord {
        JobRecord {
            name: name.to_string(),
            stage: "test".to_string(),
            job_id: 7,
            pipeline_id: 3,
            status: "success".to_string(),
            finished_at,
            project: project.to_path_buf(),
            artifacts: vec![ArtifactRecord {
                artifact_type: "archive".to_string(),
                format: "zip".to_string(),
                filename: "artifacts.zip".to_string(),
                path: PathBuf::from("artifacts/7/archive.zip"),
                size: 10,
                expire_in: Some("1 week".to_string()),
            }],
            dotenv: vec![("VERSION".to_string(), "1.2".to_string())],
        }
    }

    #[test]
    fn records_round_trip_and_the_newest_pipeline_of_the_project_answers() {
        let home = tempfile::tempdir().unwrap();
        let me = Path::new("/src/me");
        let other = Path::new("/src/other");
        write(
            &home.path().join("pipelines/3"),
            &record("build job", me, 100),
        )
        .unwrap();
        write(
            &home.path().join("pipelines/4"),
            &record("build job", other, 200),
        )
        .unwrap();
        let (p, job) = last_job(home.path(), me, "build job").unwrap();
        assert_eq!(p.id, 3);
        assert_eq!(job, record("build job", me, 100));
        assert!(home
            .path()
            .join("pipelines/3/jobs/build_job/job.json")
            .exists());
        assert_eq!(pipelines_of(home.path(), other).len(), 1);
        assert!(last_job(home.path(), me, "deploy").is_none());
    }

    #[test]
    fn expiry_follows_expire_in_the_default_and_never() {
        let mut a = record("j", Path::new("/p"), 0).artifacts.remove(0);
        assert_eq!(a.expiry(1000), Expiry::At(1000 + 7 * 86400));
        a.expire_in = None;
        assert_eq!(a.expiry(0), Expiry::At(30 * 86400));
        a.expire_in = Some("never".to_string());
        assert_eq!(a.expiry(0), Expiry::Never);
    }
}
