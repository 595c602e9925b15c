//! The sessions a daemon holds: one `pipeline::Session` per run and options, started by the
//! first client that asks, shared by the rest, and the observer that hands each waiting client
//! its job's log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, OnceCell};

use crate::pipeline::{JobReport, RunError, RunObserver, Session};

use super::protocol::{SessionRequest, SessionStatus};
use super::recovery::Marker;

/// Log bytes of one running job kept for clients that start waiting while it runs; beyond
/// this only the live stream is sent (the full log is in the report and on disk).
const REPLAY_MAX: usize = 4 * 1024 * 1024;

/// The session's key: the run and a hash of everything the session is made from.
pub fn key(request: &SessionRequest) -> String {
    let mut hash = Sha256::new();
    hash.update(serde_json::to_vec(&request.pipeline).unwrap_or_default());
    hash.update([0]);
    hash.update(serde_json::to_vec(&request.options).unwrap_or_default());
    let digest = hash.finalize();
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}/{short}", request.run)
}

/// What one waiting client hears: a log chunk of a job.
#[derive(Clone, Debug)]
pub struct LogChunk {
    pub job: String,
    pub text: String,
}

#[derive(Default)]
struct Seen {
    reports: HashMap<String, JobReport>,
    running: BTreeSet<String>,
    runs: BTreeMap<String, u32>,
    /// The log so far of each running job (up to [`REPLAY_MAX`]).
    logs: HashMap<String, String>,
}

/// The session's observer: reports, runs per job, live logs.
pub struct Observer {
    run: String,
    seen: Mutex<Seen>,
    logs: broadcast::Sender<LogChunk>,
    marker: Mutex<Option<Marker>>,
}

impl Observer {
    fn new(run: String) -> Observer {
        Observer {
            run,
            seen: Mutex::new(Seen::default()),
            logs: broadcast::channel(4096).0,
            marker: Mutex::new(None),
        }
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn reports(&self) -> Vec<JobReport> {
        self.seen().reports.values().cloned().collect()
    }

    /// `job`'s log so far and the live stream from there on (nothing lost, nothing twice).
    pub fn subscribe(&self, job: &str) -> (String, broadcast::Receiver<LogChunk>) {
        let seen = self.seen();
        let so_far = seen.logs.get(job).cloned().unwrap_or_default();
        (so_far, self.logs.subscribe())
    }

    fn update_marker(&self, seen: &Seen) {
        let mut marker = self.marker.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(marker) = marker.as_mut() {
            marker.running = seen.running.iter().cloned().collect();
            marker.save();
        }
    }
}

impl RunObserver for Observer {
    fn job_started(&self, job: &str) {
        let mut seen = self.seen();
        seen.running.insert(job.to_string());
        seen.logs.insert(job.to_string(), String::new());
        let runs = seen.runs.entry(job.to_string()).or_default();
        *runs += 1;
        let runs = *runs;
        // The crash marker first: once the log says a job started, a daemon killed from then
        // on leaves it in the marker for the next one to fail.
        self.update_marker(&seen);
        // The daemon's record of job runs (the log tests and the benchmark count).
        eprintln!("[{}] job `{job}` started (run {runs})", self.run);
    }

    fn job_log(&self, job: &str, chunk: &[u8]) {
        let text = String::from_utf8_lossy(chunk).into_owned();
        let mut seen = self.seen();
        if let Some(log) = seen.logs.get_mut(job) {
            if log.len() + text.len() <= REPLAY_MAX {
                log.push_str(&text);
            }
        }
        // Under the lock: a subscriber gets either the replay or the chunk, never both.
        let _ = self.logs.send(LogChunk {
            job: job.to_string(),
            text,
        });
    }

    fn job_finished(&self, report: &JobReport) {
        let mut seen = self.seen();
        seen.running.remove(&report.name);
        seen.logs.remove(&report.name);
        seen.reports.insert(report.name.clone(), report.clone());
        self.update_marker(&seen);
        eprintln!(
            "[{}] job `{}` finished: {:?}",
            self.run, report.name, report.status
        );
    }

    fn warning(&self, message: &str) {
        eprintln!("[{}] warning: {message}", self.run);
    }
}

/// One session the daemon holds.
pub struct Hosted {
    pub run: String,
    pub session: Session,
    pub observer: Arc<Observer>,
    clients: AtomicUsize,
    last_used: Mutex<Instant>,
    /// A job was asked for. A session started ahead (while nextest listed the tests) that
    /// none was asked for (`cargo nextest list`, a run that filtered this binary's tests out)
    /// leaves no pipeline record behind.
    asked: AtomicBool,
}

impl Hosted {
    /// Counts a waiting client until the guard is dropped.
    pub fn attach(self: &Arc<Self>) -> Attached {
        self.asked.store(true, Ordering::SeqCst);
        self.clients.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Attached(Arc::clone(self))
    }

    fn touch(&self) {
        *self
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// No client and no running job since `linger`.
    pub fn idle_for(&self, linger: std::time::Duration) -> bool {
        self.clients.load(Ordering::SeqCst) == 0
            && self.observer.seen().running.is_empty()
            && self
                .last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed()
                >= linger
    }

    pub fn has_running_jobs(&self) -> bool {
        !self.observer.seen().running.is_empty()
    }

    pub fn status(&self) -> SessionStatus {
        let seen = self.observer.seen();
        SessionStatus {
            run: self.run.clone(),
            pipeline_id: self.session.pipeline_id(),
            dir: self.session.dir().to_path_buf(),
            clients: self.clients.load(Ordering::SeqCst),
            running: seen.running.iter().cloned().collect(),
            job_runs: seen.runs.clone(),
        }
    }

    /// Shuts the session down and removes its marker (and its pipeline's record when no job
    /// was asked for).
    pub async fn shutdown(self) {
        let marker = self
            .observer
            .marker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let unused = !self.asked.load(Ordering::SeqCst);
        let dir = self.session.dir().to_path_buf();
        self.session.shutdown().await;
        if let Some(marker) = marker {
            marker.remove();
        }
        if unused {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => eprintln!(
                    "[{}] no job was asked for: pipeline record {} removed",
                    self.run,
                    dir.display()
                ),
                Err(e) => eprintln!("[{}] cannot remove {}: {e}", self.run, dir.display()),
            }
        }
    }
}

pub struct Attached(Arc<Hosted>);

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.touch();
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A session, or why it could not start (shared by every client that asked meanwhile).
type Slot = Arc<OnceCell<Result<Arc<Hosted>, Arc<RunError>>>>;

/// Every session of the daemon, by key.
#[derive(Default)]
pub struct Table {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Table {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session for `request`, started by the first caller (the others wait for it):
    /// for a job, or (`for_listing`) before any, while the client lists the tests.
    pub async fn get_or_start(
        &self,
        request: &SessionRequest,
        markers: &std::path::Path,
        for_listing: bool,
    ) -> Result<Arc<Hosted>, Arc<RunError>> {
        let key = key(request);
        let slot = Arc::clone(self.slots().entry(key.clone()).or_default());
        slot.get_or_init(|| async {
            eprintln!(
                "[{key}] starting a session for {} ({} pid {})",
                request.pipeline.project_dir.display(),
                if for_listing {
                    "ahead of its jobs, while it is listed by"
                } else {
                    "asked by"
                },
                request.client_pid
            );
            let observer = Arc::new(Observer::new(key.clone()));
            let session = Session::start(
                &request.pipeline,
                request.options.clone(),
                Arc::clone(&observer) as Arc<dyn RunObserver>,
            )
            .await
            .map_err(Arc::new)?;
            let marker = Marker::new(markers, &session);
            marker.save();
            *observer
                .marker
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(marker);
            eprintln!(
                "[{key}] pipeline {} in {}",
                session.pipeline_id(),
                session.dir().display()
            );
            Ok(Arc::new(Hosted {
                run: key.clone(),
                session,
                observer,
                clients: AtomicUsize::new(0),
                last_used: Mutex::new(Instant::now()),
                asked: AtomicBool::new(false),
            }))
        })
        .await
        .clone()
    }

    /// The sessions started (failed starts left out).
    pub fn started(&self) -> Vec<Arc<Hosted>> {
        self.slots()
            .values()
            .filter_map(|slot| slot.get().and_then(|r| r.as_ref().ok()).cloned())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.slots().is_empty()
    }

    /// Takes out every session for the daemon's shutdown, once those still starting have
    /// started (or failed to): a session taken while it starts would never be shut down, and
    /// its pipeline would be left half made. One that takes longer than `patience` is left
    /// (its Docker objects are removed by its watchdog when the daemon exits).
    pub async fn take_all(&self, patience: std::time::Duration) -> Vec<Arc<Hosted>> {
        let deadline = Instant::now() + patience;
        loop {
            let starting = self.slots().values().filter(|s| s.get().is_none()).count();
            if starting == 0 {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("{starting} session(s) still starting: not waited for");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.take(|_| true)
    }

    /// Takes out the sessions `pick` chooses (and failed starts no client used since), for
    /// shutting down.
    pub fn take(&self, pick: impl Fn(&Hosted) -> bool) -> Vec<Arc<Hosted>> {
        let mut slots = self.slots();
        let keys: Vec<String> = slots
            .iter()
            .filter(|(_, slot)| match slot.get() {
                Some(Ok(hosted)) => pick(hosted),
                // A start that failed: the clients have their error; a later one may retry.
                Some(Err(_)) => Arc::strong_count(slot) == 1,
                // Starting.
                None => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .filter_map(|k| slots.remove(k))
            .filter_map(|slot| slot.get().and_then(|r| r.as_ref().ok()).cloned())
            .collect()
    }
}

/// Shuts down sessions taken out of the table once no handler holds them.
pub async fn shut_down(sessions: Vec<Arc<Hosted>>) {
    for hosted in sessions {
        let mut hosted = hosted;
        // A handler that just finished may still hold its clone for a moment.
        for _ in 0..100 {
            match Arc::try_unwrap(hosted) {
                Ok(owned) => {
                    eprintln!("[{}] session shut down", owned.run);
                    owned.shutdown().await;
                    break;
                }
                Err(shared) => {
                    hosted = shared;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}
