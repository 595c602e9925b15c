//! The pipelines glci ran, as `cargo glci history` and `cargo glci logs` read them back.
//!
//! Each run writes `pipelines/<id>/pipeline.json` when it starts (project, event, ref, start
//! time, and the process running it, in the terms of its Docker objects' owner labels) and
//! again when it ends (status and end time), atomically both times. A record still without an
//! end whose process is gone is a run that died: it is shown as failed. Pipeline directories
//! from an older glci have no record; what their job records (`job.json`) say is shown then.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::past_runs::{self, now_secs, PastRunError};
use super::results::file_name;
use crate::docker::{owner_is_dead, Owner, LABEL_OWNER};

/// The record's file name inside `pipelines/<id>/`.
const RECORD: &str = "pipeline.json";

/// One pipeline run, as written by the process that ran it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PipelineRecord {
    pub id: u64,
    /// The repository's top level.
    pub project: PathBuf,
    /// `CI_PIPELINE_SOURCE`: `push`, `web`, `merge_request_event`, ...
    pub source: String,
    /// The branch (or tag) the pipeline ran for.
    pub ref_name: Option<String>,
    pub tag: bool,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    /// `None` while the run goes on (or when its process died).
    pub finished_at: Option<u64>,
    /// GitLab's pipeline status when the run ended (`success`, `failed`, `canceled`, ...).
    pub status: Option<String>,
    /// The running process as owner labels (pid, start time, host), for liveness.
    pub owner: HashMap<String, String>,
}

impl PipelineRecord {
    /// A record for a run starting now in this process.
    pub fn starting(
        id: u64,
        project: &Path,
        source: &str,
        ref_name: Option<String>,
        tag: bool,
    ) -> PipelineRecord {
        let mut owner = Owner::for_this_process(id.to_string()).labels();
        // The random run id means nothing here; pid, start time and host name the process.
        owner.remove(LABEL_OWNER);
        PipelineRecord {
            id,
            project: project.to_path_buf(),
            source: source.to_string(),
            ref_name,
            tag,
            started_at: now_secs(),
            finished_at: None,
            status: None,
            owner,
        }
    }

    /// Whether the process that runs (or ran) this pipeline is still there.
    pub fn process_alive(&self) -> bool {
        !owner_is_dead(&self.owner)
    }
}

/// Writes `record` to `pipelines/<id>/pipeline.json` in `dir` (the pipeline's directory):
/// a temp file next to it, synced, renamed over it.
pub fn write(dir: &Path, record: &PipelineRecord) -> Result<(), PastRunError> {
    let dest = dir.join(RECORD);
    let io = |source| PastRunError::Io {
        path: dest.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    serde_json::to_writer_pretty(temp.as_file_mut(), record).map_err(|source| {
        PastRunError::Json {
            path: dest.clone(),
            source,
        }
    })?;
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(&dest).map_err(|e| io(e.error))?;
    Ok(())
}

/// The record of the pipeline in `dir`, if it has a readable one.
pub fn read(dir: &Path) -> Option<PipelineRecord> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
}

/// Marks the record in `dir` finished with `status` (nothing when there is no record).
pub fn finish(dir: &Path, status: &str) -> Result<(), PastRunError> {
    let Some(mut record) = read(dir) else {
        return Ok(());
    };
    record.finished_at = Some(now_secs());
    record.status = Some(status.to_string());
    write(dir, &record)
}

/// One line of `cargo glci history`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryEntry {
    pub id: u64,
    pub project: Option<PathBuf>,
    /// `CI_PIPELINE_SOURCE`, when recorded.
    pub source: Option<String>,
    pub ref_name: Option<String>,
    /// `success`, `failed`, ... as recorded; `running` while its process lives; `failed` for
    /// a run whose process died before it ended (then `died` is true).
    pub status: String,
    pub died: bool,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Seconds from start to end (to now while running).
    pub duration_secs: Option<u64>,
    /// Jobs that have a record (finished).
    pub jobs: usize,
}

/// The pipelines kept in `home`, newest first (all projects).
pub fn list(home: &Path) -> Vec<HistoryEntry> {
    pipeline_ids(home)
        .into_iter()
        .filter_map(|id| entry(home, id))
        .collect()
}

/// The kept pipeline ids in `home`, newest first.
pub fn pipeline_ids(home: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(home.join("pipelines"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

fn entry(home: &Path, id: u64) -> Option<HistoryEntry> {
    let dir = home.join("pipelines").join(id.to_string());
    let jobs = past_runs::pipeline(home, id);
    let job_count = jobs.as_ref().map_or(0, |p| p.jobs.len());
    if let Some(record) = read(&dir) {
        let died = record.finished_at.is_none() && !record.process_alive();
        let status = match (&record.status, died) {
            (Some(s), _) => s.clone(),
            (None, true) => "failed".to_string(),
            (None, false) => "running".to_string(),
        };
        let end = record.finished_at.or_else(|| {
            if died {
                jobs.as_ref().map(past_runs::PastPipeline::finished_at)
            } else {
                Some(now_secs())
            }
        });
        return Some(HistoryEntry {
            id,
            project: Some(record.project.clone()),
            source: Some(record.source.clone()),
            ref_name: record.ref_name.clone(),
            status,
            died,
            started_at: Some(record.started_at),
            finished_at: record.finished_at,
            duration_secs: end.map(|e| e.saturating_sub(record.started_at)),
            jobs: job_count,
        });
    }
    // An older glci's pipeline (or one that died before writing its record): what the jobs
    // recorded.
    let jobs = jobs?;
    let failed = jobs.jobs.iter().any(|j| j.status == "failed");
    Some(HistoryEntry {
        id,
        project: jobs.project().map(Path::to_path_buf),
        source: None,
        ref_name: None,
        status: if failed { "failed" } else { "success" }.to_string(),
        died: false,
        started_at: None,
        finished_at: Some(jobs.finished_at()),
        duration_secs: None,
        jobs: job_count,
    })
}

/// Why a job's log was not found.
#[derive(Debug, thiserror::Error)]
pub enum LogLookupError {
    #[error("pipeline #{id} is not kept in {}", home.display())]
    NoPipeline { id: u64, home: PathBuf },
    #[error("pipeline #{id} has no log of job `{job}`{}", known(.jobs))]
    NoJobInPipeline {
        id: u64,
        job: String,
        jobs: Vec<String>,
    },
    #[error("no kept pipeline{} has a log of job `{job}`", scope(.project))]
    NoJob {
        job: String,
        project: Option<PathBuf>,
    },
}

fn known(jobs: &[String]) -> String {
    if jobs.is_empty() {
        String::new()
    } else {
        format!(" (jobs with logs: {})", jobs.join(", "))
    }
}

fn scope(project: &Option<PathBuf>) -> String {
    project
        .as_ref()
        .map(|p| format!(" of {}", p.display()))
        .unwrap_or_default()
}

/// The log of `job` (`jobs/<job>/job.log`): of pipeline `pipeline` when given, else of the
/// newest kept pipeline that has one — of `project` when given (a pipeline is of a project
/// when its record or its jobs' records say so). Returns the pipeline id and the log's path.
pub fn job_log(
    home: &Path,
    job: &str,
    pipeline: Option<u64>,
    project: Option<&Path>,
) -> Result<(u64, PathBuf), LogLookupError> {
    let log_of = |id: u64| {
        home.join("pipelines")
            .join(id.to_string())
            .join("jobs")
            .join(file_name(job))
            .join("job.log")
    };
    if let Some(id) = pipeline {
        let dir = home.join("pipelines").join(id.to_string());
        if !dir.is_dir() {
            return Err(LogLookupError::NoPipeline {
                id,
                home: home.to_path_buf(),
            });
        }
        let path = log_of(id);
        if path.is_file() {
            return Ok((id, path));
        }
        let mut jobs: Vec<String> = std::fs::read_dir(dir.join("jobs"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.path().join("job.log").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        jobs.sort();
        return Err(LogLookupError::NoJobInPipeline {
            id,
            job: job.to_string(),
            jobs,
        });
    }
    pipeline_ids(home)
        .into_iter()
        .filter(|&id| log_of(id).is_file())
        .find(|&id| project.is_none_or(|p| project_of(home, id).as_deref() == Some(p)))
        .map(|id| (id, log_of(id)))
        .ok_or_else(|| LogLookupError::NoJob {
            job: job.to_string(),
            project: project.map(Path::to_path_buf),
        })
}

/// The project pipeline `id` ran for, by its record, else by its jobs' records.
fn project_of(home: &Path, id: u64) -> Option<PathBuf> {
    let dir = home.join("pipelines").join(id.to_string());
    read(&dir)
        .map(|r| r.project)
        .or_else(|| Some(past_runs::pipeline(home, id)?.project()?.to_path_buf()))
}

/// Whether the pipeline in `dir` belongs to a run that is still going: its record has no end
/// and its process lives, or its staging directory names a live process.
pub fn is_live(dir: &Path) -> bool {
    let by_record = read(dir).is_some_and(|r| r.finished_at.is_none() && r.process_alive());
    by_record || super::staging::is_live(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_running_then_finished_and_a_dead_run_is_failed() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("pipelines/1");
        let record =
            PipelineRecord::starting(1, Path::new("/src/p"), "push", Some("main".into()), false);
        write(&dir, &record).unwrap();
        let listed = list(home.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, "running");
        assert!(is_live(&dir));
        finish(&dir, "success").unwrap();
        let listed = list(home.path());
        assert_eq!(listed[0].status, "success");
        assert!(!listed[0].died);
        assert!(!is_live(&dir));

        // A run whose process is gone, never finished.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut dead = PipelineRecord::starting(2, Path::new("/src/p"), "web", None, false);
        dead.owner
            .insert(crate::docker::LABEL_OWNER_PID.to_string(), pid.to_string());
        write(&home.path().join("pipelines/2"), &dead).unwrap();
        let listed = list(home.path());
        assert_eq!(listed[0].id, 2);
        assert_eq!(listed[0].status, "failed");
        assert!(listed[0].died);
    }

    #[test]
    fn job_log_finds_the_newest_pipeline_of_the_project_or_the_given_one() {
        let home = tempfile::tempdir().unwrap();
        for (id, project) in [(1, "/src/a"), (2, "/src/a"), (3, "/src/b")] {
            let dir = home.path().join(format!("pipelines/{id}"));
            let record = PipelineRecord::starting(id, Path::new(project), "push", None, false);
            write(&dir, &record).unwrap();
            std::fs::create_dir_all(dir.join("jobs/build_it")).unwrap();
            std::fs::write(dir.join("jobs/build_it/job.log"), format!("log {id}")).unwrap();
        }
        let (id, _) = job_log(home.path(), "build it", None, Some(Path::new("/src/a"))).unwrap();
        assert_eq!(id, 2);
        let (id, _) = job_log(home.path(), "build it", None, None).unwrap();
        assert_eq!(id, 3);
        let (id, path) = job_log(home.path(), "build it", Some(1), None).unwrap();
        assert_eq!(id, 1);
        assert_eq!(std::fs::read_to_string(path).unwrap(), "log 1");
        let e = job_log(home.path(), "deploy", Some(1), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline #1 has no log of job `deploy` (jobs with logs: build_it)"
        );
        assert!(job_log(home.path(), "x", Some(9), None).is_err());
    }
}
