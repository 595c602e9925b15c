//! The glci daemon: one pipeline session per test run, shared by every process of the run.
//!
//! Under `cargo nextest run` every test is its own process. Without help each would start its
//! own stand-in GitLab and run the job's whole upstream again: a chain of N jobs would cost
//! N(N+1)/2 job runs. The daemon holds the sessions instead, so each job runs once per run,
//! whichever process asks first, and the others wait for its report and log.
//!
//! Why a daemon rather than a nextest setup script: setup scripts are experimental in
//! nextest, would need the same coordination again for other runners, and cannot outlive the
//! run to serve `cargo glci daemon status|logs`. GitLab's own local tool made the same choice.
//!
//! - **Who starts it.** The first process that needs it, race-free: under the start lock
//!   (`GLCI_HOME/daemon/start.lock`) it tries the socket again, else starts this same program
//!   again with [`DAEMON_ARG`] (a `main!()` test binary or `cargo glci`, both call
//!   [`serve_if_asked`] first), detached in a session of its own with no inherited output,
//!   and waits for the socket. A test crate needs no `cargo glci` installed.
//! - **Where.** The socket `GLCI_HOME/daemon.sock` (mode 0600); the log
//!   `GLCI_HOME/daemon/daemon.log`, rotated at start-up by size into `daemon.log.1`, ….
//! - **The wire.** Newline-delimited JSON ([`protocol`]): a hello with the build id, then one
//!   request per connection.
//! - **Which build.** The build id is glci-test's version and a hash of its sources
//!   (`build.rs`): two test binaries of one crate (or `cargo glci` of the same glci) share a
//!   daemon; a client of another build asks it to stop (running jobs finish first) and starts
//!   its own.
//! - **Which session.** Keyed by the run — `NEXTEST_RUN_ID`, or `GLCI_RUN_ID` for any other
//!   runner — and a hash of the pipeline and run options, so two targets with different
//!   events share nothing. Plain `cargo test` (one process holds all trials) keeps its session
//!   in process, as before. `GLCI_DAEMON=0` turns the daemon off.
//! - **When.** nextest (0.9.138 and later) lists the tests with the run's `NEXTEST_RUN_ID`
//!   already: the listing asks the daemon to start the session then
//!   ([`protocol::Request::Prepare`]), so the stand-in GitLab and the job network are ready
//!   when the first test asks, instead of after.
//! - **A client that dies.** The job goes on: it belongs to the run, and another process may
//!   want it (nextest retries, a test that needs it). A session no client has used for
//!   [`SESSION_LINGER`] and with no job running is shut down (its Docker objects removed).
//! - **Stopping.** After [`DaemonSettings::idle_timeout`] without sessions or clients it
//!   exits; `cargo glci daemon stop` waits for running jobs, `--force` cancels them.
//! - **A crash.** Each live session leaves a marker (`GLCI_HOME/daemon/sessions/`); the next
//!   daemon marks the jobs that were running failed in the pipeline's records and removes the
//!   Docker objects of dead owners and the staging directory.

pub mod client;
pub mod log_file;
pub mod protocol;
mod recovery;
mod server;
mod sessions;
mod spawn;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::Client;
pub use protocol::{DaemonStatus, SessionStatus, BUILD_ID};

/// The argument that makes a glci program the daemon.
pub const DAEMON_ARG: &str = "__glci-daemon";

/// How long a session stays after its last client left, with no job running.
pub const SESSION_LINGER: Duration = Duration::from_secs(60);

/// The daemon's knobs, from glci's settings by [`DaemonSettings::from_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// How long the daemon waits, with no session and no client, before it exits.
    pub idle_timeout: Duration,
    /// The log is rotated at start-up when it is larger than this.
    pub log_max_bytes: u64,
    /// How many rotated logs are kept (`daemon.log.1` … `daemon.log.N`).
    pub log_keep: usize,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            idle_timeout: Duration::from_secs(300),
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
        }
    }
}

impl DaemonSettings {
    /// The defaults, with what glci's settings say instead (the `[daemon]` section of the
    /// settings files, or `GLCI_DAEMON_IDLE_TIMEOUT`, `GLCI_DAEMON_LOG_MAX_BYTES`,
    /// `GLCI_DAEMON_LOG_KEEP`; see `crate::settings`).
    pub fn from_settings() -> Result<DaemonSettings, crate::settings::SettingsError> {
        let settings = crate::settings::check()?;
        let mut out = DaemonSettings::default();
        if let Some(timeout) = settings.daemon_idle_timeout() {
            out.idle_timeout = timeout;
        }
        if let Some(bytes) = settings.daemon_log_max_bytes() {
            out.log_max_bytes = bytes;
        }
        if let Some(keep) = settings.daemon_log_count() {
            out.log_keep = usize::try_from(keep).unwrap_or(usize::MAX);
        }
        Ok(out)
    }
}

/// Where the daemon keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `GLCI_HOME`.
    pub home: PathBuf,
    /// `GLCI_HOME/daemon.sock`.
    pub socket: PathBuf,
    /// `GLCI_HOME/daemon/`: logs, the start lock, session markers.
    pub dir: PathBuf,
}

impl Paths {
    pub fn in_home(home: &Path) -> Paths {
        Paths {
            home: home.to_path_buf(),
            socket: home.join("daemon.sock"),
            dir: home.join("daemon"),
        }
    }

    /// Under `GLCI_HOME` (default `~/.glci`).
    pub fn from_env() -> Result<Paths, DaemonError> {
        let home = crate::pipeline::home::glci_home_path()
            .map_err(|e| DaemonError::io("the glci data directory", e))?;
        Ok(Paths::in_home(&home))
    }

    /// The current log, `daemon/daemon.log`.
    pub fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    fn lock(&self) -> PathBuf {
        self.dir.join("start.lock")
    }

    fn sessions(&self) -> PathBuf {
        self.dir.join("sessions")
    }
}

/// What went wrong talking to (or being) the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the glci daemon sent something unreadable: {0}")]
    Protocol(String),
    #[error("the glci daemon did not start: {0}")]
    Start(String),
    #[error("{0}")]
    Settings(#[from] crate::settings::SettingsError),
    /// What the daemon answered instead of a result.
    #[error("{0}")]
    Remote(String),
}

impl DaemonError {
    fn io(what: impl Into<String>, source: std::io::Error) -> DaemonError {
        DaemonError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The run this process belongs to, when its session should live in the daemon:
/// `NEXTEST_RUN_ID` (nextest gives it to every process of one run) or `GLCI_RUN_ID`; none
/// when `GLCI_DAEMON` is `0`, `false` or `off`.
pub fn run_id() -> Option<String> {
    let off = std::env::var("GLCI_DAEMON")
        .is_ok_and(|v| matches!(v.trim(), "0" | "false" | "off" | "no"));
    if off {
        return None;
    }
    ["GLCI_RUN_ID", "NEXTEST_RUN_ID"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
}

/// First thing in `main` of every glci program (`cargo glci`, `glci_test::main!()`): when
/// started as the daemon ([`DAEMON_ARG`]), serve until stopped and exit; otherwise return at
/// once.
pub fn serve_if_asked() {
    if std::env::args_os().nth(1).is_none_or(|a| a != DAEMON_ARG) {
        return;
    }
    let code = match server::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("glci daemon: {e}");
            1
        }
    };
    std::process::exit(code);
}
