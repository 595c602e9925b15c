//! `cargo glci run --json`: one JSON object per line on stdout for each event of the run, for
//! editors and dashboards. The shape is documented in the README ("Machine-readable runs");
//! every object has `event` and, for job events, `job`. The human view (logs with `--json`
//! but without `--json-logs`, the summary) goes to stderr in this mode.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use glci_test::pipeline::{JobReport, RunObserver, RunReport, Session};
use glci_test::runner::progress::ProgressEvent;
use serde_json::{json, Value};

/// Writes one event as a line of stdout (a whole line per write, so lines never interleave).
pub fn emit(event: Value) {
    let mut line = event.to_string();
    line.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// The run's events as JSON lines, passed on to the human printer (on stderr) as well.
pub struct JsonEvents {
    human: Arc<dyn RunObserver>,
    /// Also emit `log` events with the job's output.
    logs: bool,
    /// Per job, the start of a UTF-8 character a chunk ended in the middle of.
    pending: Mutex<HashMap<String, Vec<u8>>>,
}

impl JsonEvents {
    pub fn new(human: Arc<dyn RunObserver>, logs: bool) -> JsonEvents {
        JsonEvents {
            human,
            logs,
            pending: Mutex::default(),
        }
    }

    /// `chunk` as text after what the job's previous chunk left pending; a character cut at
    /// the chunk's end waits for the next one (invalid bytes become U+FFFD).
    fn text(&self, job: &str, chunk: &[u8]) -> String {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = pending.remove(job).unwrap_or_default();
        bytes.extend_from_slice(chunk);
        let keep = match std::str::from_utf8(&bytes) {
            Err(e) if e.error_len().is_none() => bytes.len() - e.valid_up_to(),
            _ => 0,
        };
        let rest = bytes.split_off(bytes.len() - keep);
        if !rest.is_empty() {
            pending.insert(job.to_string(), rest);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl RunObserver for JsonEvents {
    fn job_started(&self, job: &str) {
        self.human.job_started(job);
        emit(json!({"event": "job_started", "job": job}));
    }

    fn job_log(&self, job: &str, chunk: &[u8]) {
        self.human.job_log(job, chunk);
        if self.logs {
            // Masked already.
            let text = self.text(job, chunk);
            if !text.is_empty() {
                emit(json!({"event": "log", "job": job, "text": text}));
            }
        }
    }

    fn job_retried(&self, job: &str, attempt: u32) {
        self.human.job_retried(job, attempt);
        emit(json!({"event": "job_retried", "job": job, "attempt": attempt}));
    }

    fn job_finished(&self, report: &JobReport) {
        self.human.job_finished(report);
        emit(job_finished(report));
    }

    /// Progress stays human (stderr): bytes and seconds many times a second are no events
    /// of the run.
    fn progress(&self, event: &ProgressEvent) {
        self.human.progress(event);
    }
}

/// `pipeline_created`: the pipeline's id, the server and the jobs; with an external runner
/// also how to register and the cache's S3 credentials (what the plain lines say without
/// --json).
pub fn pipeline_created(session: &Session, external_runner: bool) -> Value {
    let jobs: Vec<Value> = session
        .planned()
        .plan
        .jobs
        .iter()
        .map(|j| json!({"name": j.name, "stage": j.stage, "when": j.when.as_str()}))
        .collect();
    let mut event = json!({
        "event": "pipeline_created",
        "pipeline_id": session.pipeline_id(),
        "server_url": session.server_url(),
        "jobs": jobs,
    });
    if external_runner {
        let s3 = session.s3_credentials();
        event["registration_token"] = json!(session.registration_token());
        event["cache_s3"] = json!({
            "server": s3.server_address,
            "bucket": s3.bucket,
            "access_key": s3.access_key,
            "secret_key": s3.secret_key,
        });
    }
    event
}

/// `job_finished`: the job's final status (also for jobs that never ran).
fn job_finished(job: &JobReport) -> Value {
    json!({
        "event": "job_finished",
        "job": job.name,
        "stage": job.stage,
        "status": job.status.as_str(),
        "allowed_failure": job.allowed_failure,
        "duration_secs": job.duration.as_secs_f64(),
        "failure_reason": job.failure_reason,
        "exit_code": job.exit_code,
        "attempts": job.attempts,
        "not_run_because": job.not_run_because,
        "log_path": job.log_path,
        "artifacts_dir": job.artifacts_dir,
        "tests": job.tests.counts().map(|c| json!({
            "passed": c.passed, "failed": c.failed, "skipped": c.skipped,
        })),
        "coverage": job.tests.coverage,
    })
}

/// `pipeline_finished`: GitLab's status of the pipeline and whether it passed.
pub fn pipeline_finished(report: &RunReport) -> Value {
    json!({
        "event": "pipeline_finished",
        "pipeline_id": report.pipeline_id,
        "status": report.status.as_str(),
        "passed": report.passed(),
        "dir": report.dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_between_chunks_arrives_whole() {
        let events = JsonEvents::new(Arc::new(glci_test::pipeline::Quiet), true);
        let bytes = "é!".as_bytes();
        assert_eq!(events.text("j", &bytes[..1]), "");
        assert_eq!(events.text("j", &bytes[1..]), "é!");
        assert_eq!(events.text("j", b"\xff ok"), "\u{fffd} ok");
    }
}
