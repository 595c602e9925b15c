//! Runners, the job queue and every job's state, trace and artifacts. One mutex guards it
//! all and is never held across an await; waiting happens on `Notify`/`watch` channels.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::{broadcast, watch, Notify};

use super::archive_record::{self, ArchiveRecord};
use super::spec::{JobId, JobSpec};
use crate::server::random_string;

/// Where a job is in its life, with GitLab's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Queued, not yet handed to a runner.
    Pending,
    /// Sent to a runner that announced `two_phase_job_commit` and has not acknowledged it yet:
    /// GitLab keeps such a job pending until the runner's first `PUT {state: running}`.
    Assigned,
    Running,
    /// Graceful cancel requested; the runner still runs after_script and reports back.
    Canceling,
    Success,
    Failed {
        reason: String,
        exit_code: Option<i64>,
    },
    Canceled,
}

impl JobState {
    /// The job may still use its token.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            JobState::Assigned | JobState::Running | JobState::Canceling
        )
    }

    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            JobState::Success | JobState::Failed { .. } | JobState::Canceled
        )
    }

    /// The value of GitLab's `Job-Status` header.
    pub fn gitlab_status(&self) -> &'static str {
        match self {
            JobState::Pending | JobState::Assigned => "pending",
            JobState::Running => "running",
            JobState::Canceling => "canceling",
            JobState::Success => "success",
            JobState::Failed { .. } => "failed",
            JobState::Canceled => "canceled",
        }
    }
}

/// What the caller can observe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    State {
        job: JobId,
        state: JobState,
    },
    Trace {
        job: JobId,
        offset: u64,
        data: Bytes,
    },
}

/// A release a job created (`POST /projects/:id/releases`, the `release:` keyword).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    pub job: JobId,
    pub tag_name: String,
    pub name: String,
    pub description: String,
    /// The commit or branch the tag is created from when it does not exist yet.
    pub ref_name: String,
    pub released_at: String,
    pub milestones: Vec<String>,
    /// `assets[links]`.
    pub links: Vec<ReleaseAssetLink>,
}

/// A link of a release's assets (`Releases::Link`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseAssetLink {
    pub name: String,
    pub url: String,
    pub direct_asset_path: Option<String>,
    /// `other` unless given.
    pub link_type: String,
}

/// One generic package file a job uploaded (`PUT /projects/:id/packages/generic/...`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageFile {
    pub job: JobId,
    pub package: String,
    pub version: String,
    pub file_name: String,
    pub size: u64,
    /// Where it is kept (under `GLCI_HOME` when run by `cargo glci`).
    pub path: PathBuf,
}

/// A runner's identity as registration returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerCredentials {
    pub id: u64,
    pub token: String,
}

/// One uploaded artifact file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    pub artifact_type: String,
    pub format: String,
    /// The name the uploader gave (`artifacts.zip`, `junit.xml.gz`, ...).
    pub filename: String,
    pub path: PathBuf,
    pub size: u64,
    pub expire_in: Option<String>,
}

pub(crate) struct Runner {
    pub(crate) id: u64,
    pub(crate) tags: Vec<String>,
    pub(crate) run_untagged: bool,
    /// From the runner's last request: whether it understands `Job-Status: canceling`.
    pub(crate) cancel_gracefully: bool,
    /// From the runner's last request: `info.features.two_phase_job_commit`, whether a job
    /// handed to it waits for its `running` acknowledgement.
    pub(crate) two_phase_commit: bool,
}

/// A job's log as the runner sent it: appended to `traces/<id>.log` under the data directory
/// as the patches arrive (GitLab's live trace), never held in memory, with its size and CRC32
/// kept to check the runner's final `output` against.
pub(crate) struct JobTrace {
    pub(crate) path: PathBuf,
    file: Option<File>,
    len: u64,
    checksum: crc32fast::Hasher,
}

impl JobTrace {
    fn new(path: PathBuf) -> JobTrace {
        JobTrace {
            path,
            file: None,
            len: 0,
            checksum: crc32fast::Hasher::new(),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// `crc32:<hex>`, as the runner reports it.
    pub(crate) fn checksum(&self) -> String {
        format!("crc32:{:08x}", self.checksum.clone().finalize())
    }

    /// Appends `data` at the end; on a failed write the file is cut back, so the stored log
    /// never holds half a patch.
    pub(crate) fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&self.path)?;
                self.file.insert(f)
            }
        };
        if let Err(e) = file.write_all(data) {
            let _ = file.set_len(self.len);
            let _ = file.seek(SeekFrom::Start(self.len));
            return Err(e);
        }
        self.checksum.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// The job is over: its log is flushed to disk (off the lock's thread when a runtime
    /// is there) and the file closed.
    fn archive(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        let path = self.path.clone();
        let sync = move || {
            if let Err(e) = file.sync_data() {
                tracing::warn!("saving the trace {}: {e}", path.display());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(sync);
            }
            Err(_) => sync(),
        }
    }
}

pub(crate) struct Job {
    pub(crate) id: JobId,
    pub(crate) spec: JobSpec,
    pub(crate) token: String,
    pub(crate) state: JobState,
    pub(crate) trace: JobTrace,
    /// When the runner first sent a final state the log did not match (see `jobs::update`).
    pub(crate) final_update_waiting_since: Option<Instant>,
    pub(crate) artifacts: Vec<StoredArtifact>,
    pub(crate) dotenv: Vec<(String, String)>,
    pub(crate) runner_id: Option<u64>,
    pub(crate) runner_cancels_gracefully: bool,
    pub(crate) queued_at: Instant,
    /// Wall-clock times for the jobs API (`created_at`, `started_at`, `finished_at`).
    pub(crate) created_at: SystemTime,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) finished_at: Option<SystemTime>,
    /// Lines glci adds to the job's log after the runner's trace (an API call glci does not
    /// implement, a release the job created), so users see them with the job.
    pub(crate) notes: Vec<String>,
    pub(crate) watch: watch::Sender<JobState>,
}

pub(crate) struct Inner {
    pub(crate) next_job: u64,
    pub(crate) next_runner: u64,
    /// Opaque queue version sent as `X-GitLab-Last-Update`; bumped whenever the queue
    /// changes so a runner can tell "nothing new" from "look again".
    pub(crate) queue_version: u64,
    pub(crate) runners: HashMap<String, Runner>,
    pub(crate) jobs: BTreeMap<u64, Job>,
    pub(crate) pending: VecDeque<u64>,
    /// Releases jobs created through the jobs API, in order.
    pub(crate) releases: Vec<Release>,
    /// Generic package files jobs uploaded during this server's life, in order.
    pub(crate) packages: Vec<PackageFile>,
}

pub(crate) struct ApiState {
    inner: Mutex<Inner>,
    pub(crate) queue_changed: Notify,
    events: broadcast::Sender<JobEvent>,
    registration_token: String,
    pub(crate) data_dir: PathBuf,
}

impl ApiState {
    pub(crate) fn new(data_dir: &Path) -> ApiState {
        let (events, _) = broadcast::channel(4096);
        ApiState {
            inner: Mutex::new(Inner {
                next_job: 1,
                next_runner: 1,
                queue_version: 1,
                runners: HashMap::new(),
                jobs: BTreeMap::new(),
                pending: VecDeque::new(),
                releases: Vec::new(),
                packages: Vec::new(),
            }),
            queue_changed: Notify::new(),
            events,
            // GitLab's legacy registration tokens carry the `GR1348941` prefix.
            registration_token: format!("GR1348941{}", random_string(20)),
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the whole server down with poisoned state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn registration_token(&self) -> &str {
        &self.registration_token
    }

    pub(crate) fn create_runner(
        &self,
        tags: &[String],
        run_untagged: bool,
        _description: &str,
    ) -> RunnerCredentials {
        let mut inner = self.lock();
        let id = inner.next_runner;
        inner.next_runner += 1;
        let token = format!("glrt-{}", random_string(24));
        inner.runners.insert(
            token.clone(),
            Runner {
                id,
                tags: tags.to_vec(),
                run_untagged,
                cancel_gracefully: false,
                two_phase_commit: false,
            },
        );
        // A new runner may fit a job nobody could take before.
        inner.queue_version += 1;
        drop(inner);
        self.queue_changed.notify_waiters();
        RunnerCredentials { id, token }
    }

    pub(crate) fn emit(&self, event: JobEvent) {
        // No subscriber is fine: the caller may only use wait_job.
        let _ = self.events.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    pub(crate) fn enqueue(&self, spec: JobSpec) -> Result<JobId, JobSpecError> {
        validate_spec(&spec)?;
        let mut inner = self.lock();
        for dep in &spec.dependencies {
            if !inner.jobs.contains_key(&dep.job.0) {
                return Err(JobSpecError::UnknownDependency {
                    job: spec.name.clone(),
                    dependency: dep.name.clone(),
                    id: dep.job,
                });
            }
        }
        let id = JobId(inner.next_job);
        inner.next_job += 1;
        let (watch, _) = watch::channel(JobState::Pending);
        inner.jobs.insert(
            id.0,
            Job {
                id,
                spec,
                token: format!("glcbt-64_{}", random_string(20)),
                state: JobState::Pending,
                trace: JobTrace::new(self.data_dir.join("traces").join(format!("{}.log", id.0))),
                final_update_waiting_since: None,
                artifacts: Vec::new(),
                dotenv: Vec::new(),
                runner_id: None,
                runner_cancels_gracefully: false,
                queued_at: Instant::now(),
                created_at: SystemTime::now(),
                started_at: None,
                finished_at: None,
                notes: Vec::new(),
                watch,
            },
        );
        inner.pending.push_back(id.0);
        inner.queue_version += 1;
        drop(inner);
        self.emit(JobEvent::State {
            job: id,
            state: JobState::Pending,
        });
        self.queue_changed.notify_waiters();
        Ok(id)
    }

    /// Moves a job to `state`, tells watchers, and persists the trace once it is final.
    pub(crate) fn set_state(&self, inner: &mut Inner, id: JobId, state: JobState) {
        let Some(job) = inner.jobs.get_mut(&id.0) else {
            return;
        };
        if job.state == state {
            return;
        }
        job.state = state.clone();
        job.watch.send_replace(state.clone());
        if state == JobState::Running && job.started_at.is_none() {
            job.started_at = Some(SystemTime::now());
        }
        if state.is_finished() {
            job.finished_at = Some(SystemTime::now());
            if state == JobState::Success {
                if let Some(record) = archive_record_of(job) {
                    archive_record::save(&self.data_dir, record);
                }
            }
            job.trace.archive();
        }
        self.emit(JobEvent::State { job: id, state });
    }

    pub(crate) fn job_state(&self, id: JobId) -> Option<JobState> {
        self.lock().jobs.get(&id.0).map(|j| j.state.clone())
    }

    pub(crate) async fn wait_job(&self, id: JobId) -> Option<JobState> {
        let mut rx = self.lock().jobs.get(&id.0)?.watch.subscribe();
        let state = rx.wait_for(JobState::is_finished).await.ok()?.clone();
        Some(state)
    }

    /// The whole log of a job, read from its file.
    pub(crate) fn trace(&self, id: JobId) -> Option<Vec<u8>> {
        let path = self.trace_path(id)?;
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
            Err(e) => {
                tracing::warn!("reading the trace {}: {e}", path.display());
                Some(Vec::new())
            }
        }
    }

    /// The file holding a job's log (absent while nothing was sent).
    pub(crate) fn trace_path(&self, id: JobId) -> Option<PathBuf> {
        self.lock().jobs.get(&id.0).map(|j| j.trace.path.clone())
    }

    pub(crate) fn job_token(&self, id: JobId) -> Option<String> {
        let inner = self.lock();
        let job = inner.jobs.get(&id.0)?;
        job.state.is_active().then(|| job.token.clone())
    }

    pub(crate) fn releases(&self, id: JobId) -> Vec<Release> {
        let inner = self.lock();
        inner
            .releases
            .iter()
            .filter(|r| r.job == id)
            .cloned()
            .collect()
    }

    pub(crate) fn packages(&self, id: JobId) -> Vec<PackageFile> {
        let inner = self.lock();
        inner
            .packages
            .iter()
            .filter(|p| p.job == id)
            .cloned()
            .collect()
    }

    pub(crate) fn notes(&self, id: JobId) -> Vec<String> {
        self.lock()
            .jobs
            .get(&id.0)
            .map(|j| j.notes.clone())
            .unwrap_or_default()
    }

    pub(crate) fn artifacts(&self, id: JobId) -> Vec<StoredArtifact> {
        self.lock()
            .jobs
            .get(&id.0)
            .map(|j| j.artifacts.clone())
            .unwrap_or_default()
    }

    pub(crate) fn dotenv(&self, id: JobId) -> Vec<(String, String)> {
        self.lock()
            .jobs
            .get(&id.0)
            .map(|j| j.dotenv.clone())
            .unwrap_or_default()
    }

    pub(crate) fn cancel(&self, id: JobId, abort: bool) -> bool {
        let mut inner = self.lock();
        let Some(job) = inner.jobs.get(&id.0) else {
            return false;
        };
        let next = match job.state {
            JobState::Pending | JobState::Assigned => JobState::Canceled,
            JobState::Running if !abort && job.runner_cancels_gracefully => JobState::Canceling,
            JobState::Running | JobState::Canceling => JobState::Canceled,
            _ => return false,
        };
        inner.pending.retain(|j| *j != id.0);
        inner.queue_version += 1;
        self.set_state(&mut inner, id, next);
        drop(inner);
        self.queue_changed.notify_waiters();
        true
    }

    /// Active job owning `token`, if any.
    pub(crate) fn job_by_token<'a>(inner: &'a Inner, token: &str) -> Option<&'a Job> {
        if token.is_empty() {
            return None;
        }
        inner
            .jobs
            .values()
            .find(|j| crate::server::sigv4::constant_time_eq(j.token.as_bytes(), token.as_bytes()))
    }
}

/// What a successful job's archive leaves for later runs' `jobs/artifacts/:ref_name` lookups
/// (none without an archive).
fn archive_record_of(job: &Job) -> Option<ArchiveRecord> {
    let archive = job
        .artifacts
        .iter()
        .find(|a| a.artifact_type == "archive")?;
    Some(ArchiveRecord {
        name: job.spec.name.clone(),
        ref_name: job.spec.git.ref_name.clone(),
        project: job.spec.project.path.clone(),
        pipeline_id: job.spec.pipeline_id,
        job_id: job.id.0,
        archive: archive
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        filename: archive.filename.clone(),
    })
}

/// Why a job spec was refused at `enqueue`: what the runner would choke on after the job is
/// already assigned, or a dependency the server never queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobSpecError {
    #[error("job spec without a name")]
    NoName,
    #[error("job {job:?}: git sha {sha:?} is not a full commit id")]
    NotACommitId { job: String, sha: String },
    #[error("job {job:?}: project path {path:?} must look like `group/project`")]
    ProjectPath { job: String, path: String },
    #[error("job {job:?}: a variable has an empty name")]
    EmptyVariableName { job: String },
    #[error("job {job:?}: dependency {dependency:?} is job {id}, which was never queued")]
    UnknownDependency {
        job: String,
        dependency: String,
        id: JobId,
    },
}

/// Refuses specs the runner would choke on after the job is already assigned.
fn validate_spec(spec: &JobSpec) -> Result<(), JobSpecError> {
    let name = &spec.name;
    if name.is_empty() {
        return Err(JobSpecError::NoName);
    }
    // The runner prints `sha[0:8]`; a shorter value panics the build (docs/runner-contract.md
    // §3.2).
    if spec.git.sha.len() < 8 || !spec.git.sha.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(JobSpecError::NotACommitId {
            job: name.clone(),
            sha: spec.git.sha.clone(),
        });
    }
    let path = &spec.project.path;
    if path.is_empty() || !path.contains('/') || path.starts_with('/') || path.ends_with('/') {
        return Err(JobSpecError::ProjectPath {
            job: name.clone(),
            path: path.clone(),
        });
    }
    for v in spec.variables.iter().chain(&spec.override_variables) {
        if v.key.is_empty() {
            return Err(JobSpecError::EmptyVariableName { job: name.clone() });
        }
    }
    Ok(())
}
