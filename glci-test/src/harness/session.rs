//! The one place the harness touches the run engine (`pipeline::Session`): a session started
//! lazily by the first trial that runs (so `--list` and filtered-out runs never touch
//! Docker), on a tokio runtime the harness owns. Trials block their own test thread only;
//! the jobs they depend on run on the runtime, so no `--test-threads` value can deadlock.
//!
//! When the process is one of many of a test run (nextest's process per test), the session
//! lives in the glci daemon instead (`crate::daemon`): every process of the run shares it,
//! and each job runs once per run.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use crate::daemon::DaemonError;
use crate::pipeline::interrupt::Interrupts;
use crate::pipeline::{JobReport, PipelineOptions, RunError, RunObserver, RunOptions, Session};

/// Why a trial's job could not be run: its test fails with this message. Shared (every trial
/// of a session that could not start fails with the same error), hence the `Arc`s.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(Arc<std::io::Error>),
    #[error("cannot listen for signals: {0}")]
    Signals(Arc<std::io::Error>),
    #[error("the pipeline could not start: {0}")]
    Start(Arc<RunError>),
    #[error("{0}")]
    Job(Arc<RunError>),
    #[error("glci daemon: {0}")]
    Daemon(Arc<DaemonError>),
}

/// Remembers every finished job (to explain skipped ones) and streams logs when asked.
pub struct Collector {
    reports: Mutex<HashMap<String, JobReport>>,
    stream: bool,
}

impl Collector {
    pub fn new(stream: bool) -> Collector {
        Collector {
            reports: Mutex::new(HashMap::new()),
            stream,
        }
    }

    pub fn reports(&self) -> HashMap<String, JobReport> {
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl RunObserver for Collector {
    fn job_log(&self, job: &str, chunk: &[u8]) {
        if !self.stream {
            return;
        }
        // stderr: stdout belongs to the harness (nextest reads `--list` from it).
        let mut err = std::io::stderr().lock();
        for line in String::from_utf8_lossy(chunk).split_inclusive('\n') {
            let _ = write!(err, "[{job}] {line}");
        }
    }

    fn job_finished(&self, report: &JobReport) {
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(report.name.clone(), report.clone());
    }
}

pub struct LazySession {
    runtime: tokio::runtime::Runtime,
    options: PipelineOptions,
    run: RunOptions,
    collector: Arc<Collector>,
    session: OnceCell<Result<Started, SessionError>>,
    /// The test run whose shared session (in the daemon) this process uses; `None`: the
    /// session is this process's own.
    shared_run: Option<String>,
}

/// A running session and the task that turns Ctrl-C, SIGTERM or SIGHUP into a cancel (then
/// an abort).
struct Started {
    session: Arc<Session>,
    interrupts: tokio::task::JoinHandle<()>,
}

/// First Ctrl-C (or SIGTERM, SIGHUP): running jobs stop and run their `after_script`, the
/// trials fail as canceled, and the harness ends normally (cleaning up). Second: jobs are
/// dropped where they are; the cleanup still runs.
async fn on_interrupts(session: Arc<Session>, mut interrupts: Interrupts) {
    let mut count = 0;
    loop {
        let signal = interrupts.next().await;
        count += 1;
        if count == 1 {
            eprintln!(
                "\n{}: canceling: running jobs stop and run their after_script (Ctrl-C again to abort)",
                signal.describe()
            );
            session.cancel();
        } else {
            eprintln!("\n{}: aborting", signal.describe());
            session.abort();
        }
    }
}

impl LazySession {
    pub fn new(
        options: PipelineOptions,
        run: RunOptions,
        stream_logs: bool,
        shared_run: Option<String>,
    ) -> Result<LazySession, SessionError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("glci-harness")
            .build()
            .map_err(|e| SessionError::Runtime(Arc::new(e)))?;
        Ok(LazySession {
            runtime,
            options,
            run,
            collector: Arc::new(Collector::new(stream_logs)),
            session: OnceCell::new(),
            shared_run,
        })
    }

    /// Runs `job` with what it needs (once per session) and returns its report with every
    /// report known so far.
    pub fn job(&self, job: &str) -> Result<(JobReport, HashMap<String, JobReport>), SessionError> {
        if let Some(run) = &self.shared_run {
            return self.job_in_daemon(run, job);
        }
        self.runtime.block_on(async {
            let session = self
                .session
                .get_or_init(|| async {
                    let observer: Arc<dyn RunObserver> = self.collector.clone();
                    // Before the session: a signal while it starts is heard once it runs.
                    let signals =
                        Interrupts::new().map_err(|e| SessionError::Signals(Arc::new(e)))?;
                    let session = Session::start(&self.options, self.run.clone(), observer)
                        .await
                        .map_err(|e| SessionError::Start(Arc::new(e)))?;
                    let session = Arc::new(session);
                    let interrupts = tokio::spawn(on_interrupts(Arc::clone(&session), signals));
                    Ok(Started {
                        session,
                        interrupts,
                    })
                })
                .await
                .as_ref()
                .map_err(Clone::clone)?;
            let report = session
                .session
                .job(job)
                .await
                .map_err(|e| SessionError::Job(Arc::new(e)))?;
            Ok((report, self.collector.reports()))
        })
    }

    /// [`LazySession::job`] in the run's shared session. A signal ends this process only: the
    /// job goes on for the rest of the run.
    fn job_in_daemon(
        &self,
        run: &str,
        job: &str,
    ) -> Result<(JobReport, HashMap<String, JobReport>), SessionError> {
        let request = crate::daemon::protocol::JobRequest {
            session: self.session_request(run),
            job: job.to_string(),
            stream: self.collector.stream,
        };
        let collector = &self.collector;
        let (report, reports) = crate::daemon::client::run_job(&request, &mut |job, text| {
            collector.job_log(job, text.as_bytes())
        })
        .map_err(|e| SessionError::Daemon(Arc::new(e)))?;
        let reports = reports.into_iter().map(|r| (r.name.clone(), r)).collect();
        Ok((report, reports))
    }

    fn session_request(&self, run: &str) -> crate::daemon::protocol::SessionRequest {
        crate::daemon::protocol::SessionRequest {
            run: run.to_string(),
            pipeline: self.options.clone(),
            options: self.run.clone(),
            client_pid: std::process::id(),
        }
    }

    /// Has the glci daemon start run `run`'s session now, not when its first test asks: see
    /// `Harness::prepare`. Best effort: whatever fails here fails again, and is reported, in
    /// the tests.
    pub fn prepare_in_daemon(&self, run: &str) {
        let _ = crate::daemon::client::prepare(self.session_request(run));
    }

    /// Stops the session (if one started) and removes its Docker objects.
    pub fn shutdown(self) {
        let LazySession {
            runtime, session, ..
        } = self;
        if let Some(Ok(started)) = session.into_inner() {
            runtime.block_on(async {
                started.interrupts.abort();
                // The task holds a handle on the session until it is gone.
                let _ = started.interrupts.await;
                if let Ok(session) = Arc::try_unwrap(started.session) {
                    session.shutdown().await;
                }
            });
        }
    }
}
