//! The daemon's wire: one JSON value per line over the unix socket. A connection opens with
//! [`Request::Hello`] and the daemon's [`Reply::Hello`]; then one request, answered by zero or
//! more [`Reply::Log`] lines and one final reply.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::pipeline::{JobReport, PipelineOptions, RunOptions};

/// This build of glci-test: its version and a hash of its sources (see `build.rs`). A daemon
/// serves only clients of the same build id.
pub const BUILD_ID: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("GLCI_BUILD_ID"));

/// Variables the daemon reads from its own environment besides the settings: where Docker
/// credentials are found (the registry's upstreams use them) and the home of its `git`.
const READ_FROM_ENVIRONMENT: [&str; 4] = [
    "DOCKER_CONFIG",
    "HOME",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
];

/// What a process runs pipelines with besides its build: a digest of its resolved settings
/// (`Settings::digest`) and of [`READ_FROM_ENVIRONMENT`]. The daemon reads both once, when it
/// starts, so it serves only clients of the same digest (another project's `.glci.toml`,
/// other `GLCI_*` or Docker variables restart it). Never shown. Computed once per process:
/// what it is made of is read once too.
pub fn configuration_digest() -> &'static str {
    static DIGEST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIGEST.get_or_init(compute_configuration_digest)
}

fn compute_configuration_digest() -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(crate::settings::current().digest().as_bytes());
    for name in READ_FROM_ENVIRONMENT {
        hash.update([0]);
        hash.update(name.as_bytes());
        if let Some(value) = std::env::var_os(name) {
            hash.update([1]);
            hash.update(value.as_encoded_bytes());
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// [`BUILD_ID`], with `GLCI_DAEMON_BUILD_TAG` appended when set: two programs of one build
/// told apart, so that tests can meet a daemon of "another build" without building twice.
pub fn build_id() -> String {
    match std::env::var("GLCI_DAEMON_BUILD_TAG") {
        Ok(tag) if !tag.is_empty() => format!("{BUILD_ID}-{tag}"),
        _ => BUILD_ID.to_string(),
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Hello {
        build: String,
    },
    /// Run a job (with what it needs) in the run's session and report it.
    Job(Box<JobRequest>),
    /// Start the run's session now, without running anything, and answer at once: sent while
    /// nextest lists the tests, so that the session is ready when the first test asks.
    Prepare(Box<SessionRequest>),
    Status,
    /// Stop the daemon: after the running jobs, or (`force`) canceling them.
    Stop {
        force: bool,
    },
}

/// Which session: the run and everything the session is made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRequest {
    /// The test run (`NEXTEST_RUN_ID`, `GLCI_RUN_ID`).
    pub run: String,
    pub pipeline: PipelineOptions,
    pub options: RunOptions,
    /// The asking process, for the daemon's log.
    pub client_pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRequest {
    pub session: SessionRequest,
    pub job: String,
    /// Send the job's log as it runs.
    pub stream: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Hello {
        build: String,
        pid: u32,
        /// The daemon's [`configuration_digest`] (absent from daemons before it was sent).
        #[serde(default)]
        settings: String,
    },
    /// Log output of the job asked for (masked already by the runner).
    Log {
        job: String,
        text: String,
    },
    /// The job's final report, and every report of the session so far (to explain skipped
    /// jobs).
    Report {
        report: Box<JobReport>,
        reports: Vec<JobReport>,
    },
    Status(DaemonStatus),
    /// The session asked for by [`Request::Prepare`] is starting (or started).
    Preparing,
    /// The daemon is stopping; it exits when its sessions are shut down.
    Stopping,
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub build: String,
    pub socket: PathBuf,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub idle_timeout_secs: u64,
    pub stopping: bool,
    pub sessions: Vec<SessionStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionStatus {
    pub run: String,
    pub pipeline_id: u64,
    pub dir: PathBuf,
    /// Clients waiting on this session now.
    pub clients: usize,
    pub running: Vec<String>,
    /// How many times each job started (retries count).
    pub job_runs: BTreeMap<String, u32>,
}

/// One line of JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these types cannot fail (string keys only).
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}
