//! `cargo glci run`: the pipeline in Docker, logs streamed with a job-name prefix, a summary
//! table, exit 0 exactly when GitLab would call the pipeline passed. The first Ctrl-C,
//! SIGTERM or SIGHUP cancels (after_script runs), a second aborts; both clean up, and the exit
//! status is then the signal's (130 after Ctrl-C).

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use glci_test::pipeline::interrupt::{Interrupt, Interrupts};
use glci_test::pipeline::{JobReport, RunError, RunObserver, RunOptions, RunReport, Session};
use glci_test::plan::status::Status;
use glci_test::printable::{printable, printable_lines};
use glci_test::runner::progress::ProgressEvent;
use regex::bytes::Regex;
use serde_json::json;

use crate::args::{RunArgs, RunnerArgs};
use crate::exit;
use crate::json_events::{self, JsonEvents};
use crate::progress::ProgressView;

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let opts = match exit::options(&args.event) {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let mut options = RunOptions {
        keep_failed: args.keep,
        services_timeout: Duration::from_secs(args.services_timeout),
        wait_delayed: !args.no_delay,
        external_runner: args.runner == "external",
        runner_config: args.runner_config.clone(),
        ..RunOptions::default()
    };
    options.docker_socket |= args.docker_socket;
    if let Some(n) = args.concurrency {
        options.concurrency = n.max(1);
    }
    match args.registry.push_through() {
        Ok(Some(mirror)) => options.push_through = Some(mirror),
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    match args.registry.choice() {
        Ok(Some(registry)) => options.registry = registry,
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    if let Some(image) = &args.default_image {
        options.default_image = image.clone();
    }
    // Unknown job names and configuration errors are reported before anything starts.
    let draft = match glci_test::pipeline::plan(&opts) {
        Ok(planned) => planned,
        Err(e) => {
            json_error(args.json, &e.to_string());
            return Ok(exit::config_failure(&e, false));
        }
    };
    let known: Vec<&str> = draft.plan.jobs.iter().map(|j| j.name.as_str()).collect();
    if let Some(unknown) = args.names.iter().find(|n| !known.contains(&n.as_str())) {
        let message = format!(
            "no job `{}` in this pipeline (jobs: {})",
            printable(unknown),
            printable(&known.join(", "))
        );
        json_error(args.json, &message);
        eprintln!("error: {message}");
        return Ok(ExitCode::from(1));
    }
    // From here on a signal cancels the run instead of ending the process (one arriving
    // while the session starts is heard once it runs).
    let mut interrupts = Interrupts::new()?;
    let width = 0;
    let printer = Arc::new(Printer::new(args.quiet, width, args.json));
    let observer: Arc<dyn RunObserver> = if args.json {
        Arc::new(JsonEvents::new(printer.clone(), args.json_logs))
    } else {
        printer.clone()
    };
    let session = match Session::start_planned(&opts, draft, options.clone(), observer).await {
        Ok(s) => s,
        Err(RunError::Pipeline(e)) => {
            json_error(args.json, &e.to_string());
            return Ok(exit::config_failure(&e, false));
        }
        Err(e) => {
            json_error(args.json, &e.to_string());
            eprintln!("error: {}", printable_lines(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    printer.set_width(
        session
            .planned()
            .plan
            .jobs
            .iter()
            .map(|j| printable(&j.name).chars().count())
            .max()
            .unwrap_or(0),
    );
    if args.json {
        json_events::emit(json_events::pipeline_created(
            &session,
            options.external_runner,
        ));
    }
    if options.external_runner {
        // Machine-readable, on stdout: a script can read these lines (with --json they are
        // in the `pipeline_created` event).
        if !args.json {
            print_external_runner_lines(&session);
        }
        eprintln!("waiting for a runner to register and take the jobs (Ctrl-C to stop)");
    } else {
        let jobs = session.planned().plan.jobs.len();
        eprintln!(
            "pipeline #{} on {} ({jobs} job{}, {} at once)",
            session.pipeline_id(),
            session.server_url(),
            if jobs == 1 { "" } else { "s" },
            options.concurrency
        );
    }

    let mut interrupted: Option<Interrupt> = None;
    let report = {
        let run = session.run(&args.names);
        tokio::pin!(run);
        loop {
            tokio::select! {
                r = &mut run => break r,
                signal = interrupts.next() => {
                    if interrupted.is_none() {
                        eprintln!("\n{}: canceling: running jobs stop and run their after_script (Ctrl-C again to abort)", signal.describe());
                        interrupted = Some(signal);
                        session.cancel();
                    } else {
                        eprintln!("\n{}: aborting", signal.describe());
                        session.abort();
                    }
                }
            }
        }
    };
    session.shutdown().await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            json_error(args.json, &e.to_string());
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    print_summary(&report, args.json);
    // What jobs left behind (containers started through the socket) ends the summary too.
    for warning in printer.job_warnings() {
        eprintln!("warning: {}", printable_lines(&warning));
    }
    if args.json {
        json_events::emit(json_events::pipeline_finished(&report));
    }
    Ok(match interrupted {
        // A canceled run ends as the signal would have ended it.
        Some(signal) if !report.passed() => ExitCode::from(signal.exit_code()),
        _ if report.passed() => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// `--runner external` without --json: where the server is and how to register, one
/// `name: value` per line.
fn print_external_runner_lines(session: &Session) {
    println!("url: {}", session.server_url());
    println!("registration-token: {}", session.registration_token());
    let s3 = session.s3_credentials();
    println!("cache-s3-server: {}", s3.server_address);
    println!("cache-s3-bucket: {}", s3.bucket);
    println!("cache-s3-access-key: {}", s3.access_key);
    println!("cache-s3-secret-key: {}", s3.secret_key);
    let _ = std::io::stdout().flush();
}

/// With --json, an `error` event for what stops the run before or instead of its end.
fn json_error(json: bool, message: &str) {
    if json {
        json_events::emit(json!({"event": "error", "message": message}));
    }
}

/// Streams job logs line by line, each line prefixed with its job's name.
struct Printer {
    quiet: bool,
    /// Job logs to stderr (with --json, whose events own stdout).
    to_stderr: bool,
    /// Colours only for a terminal without `NO_COLOR`; a file or pipe gets plain text.
    plain: Option<Regex>,
    width: Mutex<usize>,
    partial: Mutex<HashMap<String, Vec<u8>>>,
    sections: Regex,
    /// Warnings heard while jobs ran, repeated after the summary.
    job_warnings: Mutex<Vec<String>>,
    /// The runner's progress (pulls, waits, transfers), on stderr.
    progress: ProgressView,
}

impl Printer {
    fn new(quiet: bool, width: usize, to_stderr: bool) -> Printer {
        use std::io::IsTerminal;
        let terminal = if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        Printer {
            quiet,
            to_stderr,
            // `NO_COLOR` (any non-empty value) too: no colour on a terminal either.
            plain: (!terminal || crate::progress::no_color())
                .then(|| Regex::new(r"\x1b\[[0-9;]*[A-Za-z]").expect("a valid regex")),
            width: Mutex::new(width),
            partial: Mutex::new(HashMap::new()),
            // GitLab section markers: invisible in GitLab's log view, noise in a terminal.
            sections: Regex::new(r"section_(start|end):[0-9]+:[^\r\n]*\r\x1b\[0K")
                .expect("a valid regex"),
            job_warnings: Mutex::new(Vec::new()),
            progress: ProgressView::for_stderr(quiet),
        }
    }

    fn job_warnings(&self) -> Vec<String> {
        self.job_warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_width(&self, width: usize) {
        *self.width.lock().unwrap_or_else(|e| e.into_inner()) = width;
    }

    fn line(&self, job: &str, line: &[u8]) {
        let width = *self.width.lock().unwrap_or_else(|e| e.into_inner());
        let mut clean = self.sections.replace_all(line, &b""[..]).into_owned();
        if let Some(ansi) = &self.plain {
            clean = ansi.replace_all(&clean, &b""[..]).into_owned();
        }
        let text = String::from_utf8_lossy(&clean);
        let text = text.trim_end_matches('\r');
        // A carriage return inside a line redraws it: show what the terminal would.
        let text = text.rsplit('\r').next().unwrap_or(text);
        let job = printable(job);
        let width = width.max(job.chars().count());
        let line = format!("{job:>width$} | {text}\n");
        self.progress.suspend(|| {
            if self.to_stderr {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            } else {
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            }
        });
    }
}

impl RunObserver for Printer {
    fn job_started(&self, job: &str) {
        if !self.quiet {
            self.progress
                .suspend(|| eprintln!("▶ {} started", printable(job)));
        }
    }

    fn job_log(&self, job: &str, chunk: &[u8]) {
        if self.quiet {
            return;
        }
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        let buf = partial.entry(job.to_string()).or_default();
        buf.extend_from_slice(chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            self.line(job, &line[..line.len() - 1]);
        }
    }

    fn job_retried(&self, job: &str, attempt: u32) {
        eprintln!("↻ {} failed; retrying (attempt {attempt})", printable(job));
    }

    fn warning(&self, message: &str) {
        eprintln!("warning: {}", printable_lines(message));
        // Set-up warnings (configuration, socket) come before the width is known.
        if *self.width.lock().unwrap_or_else(|e| e.into_inner()) > 0 {
            self.job_warnings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(message.to_string());
        }
    }

    fn job_finished(&self, report: &JobReport) {
        let rest = self
            .partial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&report.name);
        if let Some(rest) = rest.filter(|r| !r.is_empty() && !self.quiet) {
            self.line(&report.name, &rest);
        }
        self.progress.job_finished(&report.name);
        if report.attempts > 0 {
            self.progress.suspend(|| {
                eprintln!(
                    "■ {} {} in {}",
                    printable(&report.name),
                    status_word(report),
                    seconds(report.duration)
                )
            });
        }
    }

    fn progress(&self, event: &ProgressEvent) {
        self.progress.event(event);
    }
}

fn status_word(job: &JobReport) -> String {
    match job.status {
        Status::Success => "passed".to_string(),
        Status::Failed if job.allowed_failure => "failed (allowed)".to_string(),
        Status::Failed => match (&job.failure_reason, job.exit_code) {
            (Some(reason), Some(code)) => format!("failed ({reason}, exit code {code})"),
            (Some(reason), None) => format!("failed ({reason})"),
            _ => "failed".to_string(),
        },
        Status::Canceled => "canceled".to_string(),
        Status::Skipped => "skipped".to_string(),
        Status::Manual => "manual".to_string(),
        Status::Created => "not run".to_string(),
        other => other.as_str().to_string(),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The summary table and notes. Job and stage names are the user's: escaped
/// ([`printable_lines`]) so a name cannot drive the terminal or corrupt a redirected file.
fn print_summary(report: &RunReport, to_stderr: bool) {
    let mut out = String::new();
    write_summary(&mut out, report);
    let text = printable_lines(&out);
    if to_stderr {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    } else {
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

fn write_summary(out: &mut String, report: &RunReport) {
    use std::fmt::Write;
    let name_w = report
        .jobs
        .iter()
        .map(|j| printable(&j.name).chars().count())
        .max()
        .unwrap_or(3)
        .max(3);
    let stage_w = report
        .jobs
        .iter()
        .map(|j| printable(&j.stage).chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<name_w$}  {:<stage_w$}  {:<8}  STATUS",
        "JOB", "STAGE", "DURATION"
    );
    for job in &report.jobs {
        let duration = if job.attempts > 0 {
            seconds(job.duration)
        } else {
            "-".to_string()
        };
        let mut status = status_word(job);
        if job.attempts > 1 {
            status.push_str(&format!(" after {} attempts", job.attempts));
        }
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<stage_w$}  {:<8}  {status}",
            printable(&job.name),
            printable(&job.stage),
            duration
        );
    }
    let _ = writeln!(out);
    for job in &report.jobs {
        if let Some(why) = &job.not_run_because {
            if job.status != Status::Skipped || why.starts_with("not run") {
                let _ = writeln!(out, "{}: {why}", printable(&job.name));
            }
        }
        if let Some(tests) = job.tests.summary_line() {
            let _ = writeln!(out, "{}: {tests}", printable(&job.name));
        }
        for release in &job.releases {
            let _ = writeln!(
                out,
                "{}: release {:?} (tag {})",
                job.name, release.name, release.tag_name
            );
            for link in &release.links {
                let _ = writeln!(
                    out,
                    "  asset {:?} ({}): {}",
                    link.name, link.link_type, link.url
                );
            }
        }
        for package in &job.packages {
            let _ = writeln!(
                out,
                "{}: package {}/{}/{} ({} bytes) in {}",
                job.name,
                package.package,
                package.version,
                package.file_name,
                package.size,
                package.path.display()
            );
        }
        for change in report.deployments.iter().filter(|d| d.job == job.name) {
            let _ = writeln!(out, "{}: {}", printable(&job.name), change.describe());
        }
        if matches!(job.status, Status::Failed) && !job.allowed_failure {
            if let Some(path) = &job.log_path {
                let _ = writeln!(
                    out,
                    "{}: full log: {}",
                    printable(&job.name),
                    path.display()
                );
            }
        }
        if let Some(container) = &job.kept_container {
            let _ = writeln!(
                out,
                "{}: container kept: enter it with\n  docker commit {container} glci-kept:{container} && docker run --rm -it --entrypoint sh glci-kept:{container}\n  (removed by the next run or `cargo glci clean`; `docker rmi glci-kept:{container}` afterwards)",
                printable(&job.name)
            );
        }
    }
    let verdict = match report.status {
        Status::Success => "passed".to_string(),
        Status::SuccessWithWarnings => "passed with warnings".to_string(),
        Status::Manual => "blocked: waiting for a manual job".to_string(),
        other => other.as_str().to_string(),
    };
    let _ = writeln!(
        out,
        "pipeline #{} {verdict} (logs and artifacts: {})",
        report.pipeline_id,
        report.dir.display()
    );
}

/// `cargo glci runner`: registers with the server and runs its jobs until Ctrl-C, SIGTERM or
/// SIGHUP (or `--max-jobs`), then removes every Docker object it created.
pub async fn runner(args: RunnerArgs) -> Result<ExitCode> {
    use glci_test::docker::{self, Engine, Owner};
    use glci_test::runner::api::RunnerApi;
    use glci_test::runner::executor::ExecutorOptions;
    use glci_test::runner::worker::serve;
    use tokio_util::sync::CancellationToken;

    let mut interrupts = Interrupts::new()?;
    let engine = Engine::connect().await?;
    let _ = docker::remove_orphans(&engine).await;
    let api = RunnerApi::new(&args.url);
    let token = api
        .register(&args.registration_token, "glci runner", &[], true)
        .await?;
    eprintln!(
        "registered with {}; waiting for jobs (Ctrl-C to stop)",
        args.url
    );
    let mut executor = ExecutorOptions {
        // Files through a mount only when the engine shares this host's file system.
        stage_files_by_mount: engine.host_address().await.is_local(),
        ..ExecutorOptions::default()
    };
    if let Some(image) = &args.default_image {
        executor.default_image = image.clone();
    }
    // The runner's progress as `run` shows it; its jobs' logs go to the server.
    let progress = Arc::new(ProgressView::for_stderr(false));
    executor.progress = glci_test::runner::progress::Progress::to(progress.clone());
    let owner = Owner::for_this_process("runner");
    // Removes the runner's containers if it is killed.
    let reaper = docker::Reaper::spawn(&owner, None);
    let stop = CancellationToken::new();
    let tally = Tally {
        max_jobs: args.max_jobs,
        taken: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        progress,
    };
    let workers = futures_util::future::join_all(
        (0..args.concurrency.max(1))
            .map(|_| serve(&api, &token, &engine, &owner, &executor, &stop, &tally)),
    );
    tokio::pin!(workers);
    let mut interrupted = None;
    tokio::select! {
        _ = &mut workers => {}
        signal = interrupts.next() => {
            eprintln!("{}: stopping: running jobs are canceled", signal.describe());
            interrupted = Some(signal);
            stop.cancel();
            workers.await;
        }
    }
    let _ = docker::remove_owned(&engine, &owner.id).await;
    if let Some(reaper) = reaper {
        let _ = tokio::task::spawn_blocking(move || reaper.release()).await;
    }
    Ok(match interrupted {
        Some(signal) => ExitCode::from(signal.exit_code()),
        None if tally.failed.load(Ordering::SeqCst) == 0 => ExitCode::SUCCESS,
        None => ExitCode::from(1),
    })
}

/// The standalone runner's job budget and its results.
struct Tally {
    max_jobs: Option<usize>,
    taken: AtomicUsize,
    failed: AtomicUsize,
    progress: Arc<ProgressView>,
}

impl glci_test::runner::worker::WorkerHooks for Tally {
    fn want_more(&self) -> bool {
        self.max_jobs
            .is_none_or(|m| self.taken.load(Ordering::SeqCst) < m)
    }

    fn started(&self, job: &glci_test::runner::payload::JobPayload) {
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.progress
            .suspend(|| eprintln!("▶ job {} ({})", job.id, printable(&job.job_info.name)));
    }

    fn finished(
        &self,
        _job_id: u64,
        name: &str,
        outcome: &glci_test::runner::executor::JobOutcome,
    ) {
        if !outcome.success {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        let word = if outcome.success { "passed" } else { "failed" };
        self.progress.job_finished(name);
        self.progress
            .suspend(|| eprintln!("■ {} {word}", printable(name)));
    }

    fn request_failed(&self, error: &glci_test::runner::api::ApiError) {
        eprintln!("request job: {error}");
    }
}
