//! Progress of a job's slow steps — image layers pulled, services and Docker-in-Docker
//! daemons waited for, large cache transfers — for whoever started the runner to show.
//!
//! Progress is never part of the job log: GitLab's log of a pull says only
//! `Pulling docker image …` (the runner reads the engine's pull stream and drops the
//! rest), so glci's runner hands the events to a [`ProgressSink`] given to it at set-up
//! ([`super::executor::ExecutorOptions::progress`]) instead of to the [`super::trace`].
//! Without a sink nothing is reported.
//!
//! What is worth showing is decided here, once for every consumer: waits only once they last
//! longer than [`WAIT_SHOWN_AFTER`], transfers only from [`TRANSFER_SHOWN_FROM`] bytes on.
//! How often and how it is drawn is the consumer's business.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A wait shorter than this is not reported at all (most services answer at once).
pub const WAIT_SHOWN_AFTER: Duration = Duration::from_secs(1);

/// A transfer smaller than this is not reported (it is over before anyone could read it).
pub const TRANSFER_SHOWN_FROM: u64 = 4 << 20;

/// How often a running wait reports how long it has waited.
const WAIT_TICK: Duration = Duration::from_secs(1);

/// What is progressing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Task {
    /// One layer of an image the engine pulls, as its pull stream names it.
    Layer {
        /// The image as the job names it.
        image: String,
        /// The layer's short id in the engine's stream.
        layer: String,
        step: LayerStep,
    },
    /// A service (or Docker-in-Docker daemon) that does not answer yet.
    Wait {
        /// The service's image as the job names it.
        service: String,
    },
    /// A cache archive going to or coming from the cache server.
    Transfer {
        /// What moves (`cache default-1`).
        what: String,
        direction: Direction,
    },
}

/// The engine's two phases of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerStep {
    Download,
    Extract,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Download,
    Upload,
}

/// How far a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// Bytes so far, of `total` when known.
    Bytes { done: u64, total: Option<u64> },
    /// Time waited so far.
    Elapsed(Duration),
}

/// One report about one task of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// The job's name.
    pub job: String,
    pub task: Task,
    pub amount: Amount,
    /// The task is over (done, failed or given up); no more events about it follow.
    pub finished: bool,
}

/// Where a runner's progress goes. Called from the runner's tasks: must not block.
pub trait ProgressSink: Send + Sync {
    fn progress(&self, event: &ProgressEvent);
}

/// The sink a runner reports to (none by default).
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn ProgressSink>>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(sink)"
        } else {
            "Progress(none)"
        })
    }
}

impl Progress {
    pub fn to(sink: Arc<dyn ProgressSink>) -> Progress {
        Progress(Some(sink))
    }

    /// The reports of one job.
    pub fn for_job(&self, job: &str) -> JobProgress {
        JobProgress {
            sink: self.0.clone(),
            job: job.to_string(),
        }
    }
}

/// One job's progress reports.
#[derive(Clone, Default)]
pub struct JobProgress {
    sink: Option<Arc<dyn ProgressSink>>,
    job: String,
}

impl JobProgress {
    /// Reports `task` as far as `amount`.
    pub fn report(&self, task: &Task, amount: Amount, finished: bool) {
        if let Some(sink) = &self.sink {
            sink.progress(&ProgressEvent {
                job: self.job.clone(),
                task: task.clone(),
                amount,
                finished,
            });
        }
    }

    /// Runs `wait` (a readiness wait for `service`), reporting the time waited every second
    /// once it has lasted [`WAIT_SHOWN_AFTER`], and its end if anything was reported.
    pub async fn wait<F: Future>(&self, service: &str, wait: F) -> F::Output {
        self.wait_ticking(service, wait, WAIT_SHOWN_AFTER, WAIT_TICK)
            .await
    }

    async fn wait_ticking<F: Future>(
        &self,
        service: &str,
        wait: F,
        shown_after: Duration,
        tick: Duration,
    ) -> F::Output {
        if self.sink.is_none() {
            return wait.await;
        }
        let task = Task::Wait {
            service: service.to_string(),
        };
        let started = Instant::now();
        let mut reported = false;
        tokio::pin!(wait);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + shown_after, tick);
        let output = loop {
            tokio::select! {
                output = &mut wait => break output,
                _ = ticks.tick() => {
                    reported = true;
                    self.report(&task, Amount::Elapsed(started.elapsed()), false);
                }
            }
        };
        if reported {
            self.report(&task, Amount::Elapsed(started.elapsed()), true);
        }
        output
    }

    /// A transfer of `total` bytes (when known), reported only if it is large enough.
    pub fn transfer(&self, what: &str, direction: Direction, total: Option<u64>) -> Transfer {
        let mut transfer = Transfer {
            progress: self.clone(),
            task: Task::Transfer {
                what: what.to_string(),
                direction,
            },
            total,
            done: 0,
            shown: false,
        };
        transfer.advance(0);
        transfer
    }
}

/// A transfer under way: [`Transfer::advance`] as bytes move, [`Transfer::finish`] at the
/// end. Its first report comes once it is known to reach [`TRANSFER_SHOWN_FROM`] bytes (at
/// once when its size is known up front).
pub struct Transfer {
    progress: JobProgress,
    task: Task,
    total: Option<u64>,
    done: u64,
    shown: bool,
}

impl Transfer {
    fn large(&self) -> bool {
        self.total.unwrap_or(self.done).max(self.done) >= TRANSFER_SHOWN_FROM
    }

    fn amount(&self) -> Amount {
        Amount::Bytes {
            done: self.done,
            total: self.total,
        }
    }

    /// The size became known (a download's `Content-Length`); the count starts over (a
    /// retried request).
    pub fn restart(&mut self, total: Option<u64>) {
        self.total = total;
        self.done = 0;
        self.advance(0);
    }

    /// `bytes` more have moved.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.large() {
            self.shown = true;
            self.progress.report(&self.task, self.amount(), false);
        }
    }

    /// The transfer is over (whether it succeeded or not).
    pub fn finish(mut self) {
        if self.shown || self.large() {
            self.shown = false;
            self.progress.report(&self.task, self.amount(), true);
        }
    }
}

/// A download's progress as its answer arrives.
impl super::http_client::Received for Transfer {
    fn announced(&mut self, length: Option<u64>) {
        self.restart(length);
    }
    fn part(&mut self, bytes: u64) {
        self.advance(bytes);
    }
}

impl Drop for Transfer {
    /// A transfer dropped mid-way (an error, a timeout) ends for the consumer too.
    fn drop(&mut self) {
        if self.shown {
            self.progress.report(&self.task, self.amount(), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Heard(Mutex<Vec<ProgressEvent>>);
    impl ProgressSink for Heard {
        fn progress(&self, event: &ProgressEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    /// With the threshold and tick scaled down 1:20 (1 s → 50 ms).
    #[tokio::test]
    async fn only_waits_longer_than_the_threshold_are_reported_and_they_end() {
        let heard = Arc::new(Heard::default());
        let progress = Progress::to(heard.clone()).for_job("test");
        let (after, tick) = (Duration::from_millis(50), Duration::from_millis(50));
        let quick = tokio::time::sleep(Duration::from_millis(10));
        progress.wait_ticking("quick", quick, after, tick).await;
        assert!(heard.0.lock().unwrap().is_empty());
        let slow = tokio::time::sleep(Duration::from_millis(175));
        progress.wait_ticking("slow", slow, after, tick).await;
        let events = heard.0.lock().unwrap().clone();
        // Ticks at 50, 100, 150 ms (a loaded machine may lose one), then the end.
        assert!((3..=4).contains(&events.len()), "{events:?}");
        let (last, ticks) = events.split_last().unwrap();
        assert!(ticks.iter().all(|e| !e.finished) && last.finished);
        assert_eq!(
            events[0].task,
            Task::Wait {
                service: "slow".into()
            }
        );
    }

    #[test]
    fn small_transfers_are_not_reported_large_ones_start_to_end() {
        let heard = Arc::new(Heard::default());
        let progress = Progress::to(heard.clone()).for_job("build");
        let mut small = progress.transfer("cache a", Direction::Upload, Some(1000));
        small.advance(1000);
        small.finish();
        assert!(heard.0.lock().unwrap().is_empty());

        // Unknown size: reported from the moment it is large.
        let mut large = progress.transfer("cache b", Direction::Download, None);
        large.advance(TRANSFER_SHOWN_FROM - 1);
        assert!(heard.0.lock().unwrap().is_empty());
        large.advance(1);
        drop(large);
        let events = heard.0.lock().unwrap().clone();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[1].finished);
        assert_eq!(
            events[1].amount,
            Amount::Bytes {
                done: TRANSFER_SHOWN_FROM,
                total: None
            }
        );
    }
}
