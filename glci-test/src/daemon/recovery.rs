//! Crash recovery. Each live session keeps a marker, `GLCI_HOME/daemon/sessions/<id>.json`
//! (its pipeline, directory, project and the jobs running now), written atomically on every
//! change and removed when the session shuts down. A marker left behind belongs to a daemon
//! that died (SIGKILL, a crash, the OOM killer): the next daemon marks the jobs that were
//! running `failed` in the pipeline's records (`pipeline::past_runs`), as GitLab fails the
//! jobs of a runner that vanished, removes the pipeline's staging directory and every Docker
//! object whose owning process is dead (`docker::remove_orphans`; the session's watchdog
//! usually got there first).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pipeline::past_runs::{self, JobRecord};
use crate::pipeline::{staging, Session};

#[derive(Debug, Serialize, Deserialize)]
pub struct Marker {
    pub pipeline_id: u64,
    pub dir: PathBuf,
    pub project: PathBuf,
    /// The daemon holding the session.
    pub daemon_pid: u32,
    /// The jobs running now.
    pub running: Vec<String>,
    /// Each job's stage, for the records of the jobs marked failed.
    #[serde(default)]
    pub stages: std::collections::BTreeMap<String, String>,
    #[serde(skip)]
    path: PathBuf,
}

impl Marker {
    pub fn new(markers: &Path, session: &Session) -> Marker {
        let pipeline_id = session.pipeline_id();
        let stages = session
            .planned()
            .plan
            .jobs
            .iter()
            .map(|j| (j.name.clone(), j.stage.clone()))
            .collect();
        Marker {
            pipeline_id,
            dir: session.dir().to_path_buf(),
            project: session.planned().loaded.facts.top_level.clone(),
            daemon_pid: std::process::id(),
            running: Vec::new(),
            stages,
            path: markers.join(format!("{pipeline_id}.json")),
        }
    }

    /// Written atomically (a temporary file renamed over the marker); a failure is logged,
    /// never fatal: the marker only helps after a crash.
    pub fn save(&self) {
        let write = || -> std::io::Result<()> {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
            serde_json::to_writer(temp.as_file_mut(), self)?;
            temp.persist(&self.path).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            eprintln!("cannot write {}: {e}", self.path.display());
        }
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Recovers from a dead daemon's sessions; returns how many pipelines it marked.
pub async fn recover(markers: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(markers) else {
        return 0;
    };
    let mut recovered = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let marker: Option<Marker> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let Some(marker) = marker else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        if marker.daemon_pid != std::process::id() && process_alive(marker.daemon_pid) {
            // Another daemon's (one being drained by a restart): not dead.
            continue;
        }
        for job in &marker.running {
            let record = JobRecord {
                name: job.clone(),
                stage: marker.stages.get(job).cloned().unwrap_or_default(),
                // The server's id is not known here; the name and stage identify the job.
                job_id: 0,
                pipeline_id: marker.pipeline_id,
                status: "failed".to_string(),
                finished_at: past_runs::now_secs(),
                project: marker.project.clone(),
                artifacts: Vec::new(),
                dotenv: Vec::new(),
            };
            if let Err(e) = past_runs::write(&marker.dir, &record) {
                eprintln!("cannot mark job `{job}` failed: {e}");
            }
        }
        let dir = marker.dir.clone();
        let _ = tokio::task::spawn_blocking(move || staging::remove(&dir)).await;
        eprintln!(
            "recovered pipeline {} of a dead daemon (pid {}): {} running job(s) marked failed",
            marker.pipeline_id,
            marker.daemon_pid,
            marker.running.len()
        );
        let _ = std::fs::remove_file(&path);
        recovered += 1;
    }
    if recovered > 0 {
        if let Ok(engine) = crate::docker::Engine::connect().await {
            match crate::docker::remove_orphans(&engine).await {
                Ok(report) => eprintln!("removed the Docker objects of dead owners: {report:?}"),
                Err(e) => eprintln!("cannot remove the Docker objects of dead owners: {e}"),
            }
        }
    }
    recovered
}

/// Whether `pid` is a live process (a zombie, which has ended but not been reaped, is not).
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name (field 2) may hold spaces and parentheses: the state follows its
    // last ')'.
    let state = stat
        .rfind(')')
        .and_then(|at| stat[at + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}
