//! The catalog of issue 5: fixture pipelines under `fixtures/runs/<name>/` run for real
//! through [`Session`] (mock GitLab, built-in runner, Docker with the offline fixture images)
//! in throw-away git repositories, with the outcome of every job asserted, and after every
//! test no Docker object of the pipeline left behind.
//!
//! All tests share one data directory, so pipeline ids are distinct within this binary and a
//! leftover check can name exactly one pipeline (`io.glci.pipeline` + `io.glci.owner-pid`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use crate::support::git;
use glci_test::pipeline::{
    JobReport, PipelineOptions, Quiet, RunObserver, RunOptions, RunReport, Session,
    SettingsVariable,
};
use glci_test::plan::status::Status;

/// glci's data directory for the whole test binary (kept until the process exits).
fn home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().expect("temp dir for GLCI_HOME"))
        .path()
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/runs")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("create dir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A git repository holding `fixtures/runs/<name>`, committed on `main`, with a GitLab
/// `origin` (project `acme/demo`).
fn project(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&fixture_dir(name), dir.path());
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "fixture"]);
    git(
        dir.path(),
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/acme/demo.git",
        ],
    );
    dir
}

fn run_options() -> RunOptions {
    RunOptions {
        home: Some(home().to_path_buf()),
        concurrency: 2,
        services_timeout: std::time::Duration::from_secs(20),
        ..RunOptions::default()
    }
}

/// Runs the pipeline of `dir` (the jobs `names`, or all), shuts the session down and checks
/// that nothing of it is left in Docker.
async fn run(opts: PipelineOptions, options: RunOptions, names: &[&str]) -> RunReport {
    let session = Session::start(&opts, options, Arc::new(Quiet))
        .await
        .unwrap_or_else(|e| panic!("session for {}: {e}", opts.project_dir.display()));
    let id = session.pipeline_id();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let report = session.run(&names).await;
    session.shutdown().await;
    assert_nothing_left(id);
    report.unwrap_or_else(|e| panic!("pipeline {id}: {e}"))
}

async fn run_fixture(name: &str) -> RunReport {
    let dir = project(name);
    run(PipelineOptions::new(dir.path()), run_options(), &[]).await
}

/// No container, network or volume of pipeline `id` of this process remains.
fn assert_nothing_left(id: u64) {
    let pipeline = format!("label=io.glci.pipeline={id}");
    let owner = format!("label=io.glci.owner-pid={}", std::process::id());
    for kind in [
        &["ps", "-a", "-q"][..],
        &["network", "ls", "-q"][..],
        &["volume", "ls", "-q"][..],
    ] {
        let out = Command::new("docker")
            .args(kind)
            .args(["--filter", &pipeline, "--filter", &owner])
            .output()
            .expect("run docker");
        assert!(out.status.success(), "docker {kind:?} failed");
        let left = String::from_utf8_lossy(&out.stdout);
        assert!(
            left.trim().is_empty(),
            "pipeline {id} left docker {}: {left}",
            kind[0]
        );
    }
}

fn job<'a>(report: &'a RunReport, name: &str) -> &'a JobReport {
    report.job(name).unwrap_or_else(|| {
        let names: Vec<&str> = report.jobs.iter().map(|j| j.name.as_str()).collect();
        panic!("no job `{name}` in the report (jobs: {names:?})")
    })
}

/// The job's log without ANSI colours and section markers' control characters.
fn plain_log(job: &JobReport) -> String {
    let re = regex::Regex::new(r"\x1b\[[0-9;]*[A-Za-z]|\r").expect("regex");
    re.replace_all(&job.log, "").into_owned()
}

fn assert_log_has(job: &JobReport, needle: &str) {
    let log = plain_log(job);
    assert!(
        log.lines().any(|l| l == needle),
        "job `{}`: no line {needle:?} in its log:\n{log}",
        job.name
    );
}

fn assert_passed(job: &JobReport) {
    assert_eq!(
        job.status,
        Status::Success,
        "job `{}` ({:?}, {:?}):\n{}",
        job.name,
        job.failure_reason,
        job.not_run_because,
        plain_log(job)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_answer_on_every_alias() {
    let report = run_fixture("services").await;
    let greet = job(&report, "greet");
    assert_passed(greet);
    for alias in [
        "greeter",
        "glci-fixture__tcp-service",
        "glci-fixture-tcp-service",
    ] {
        assert_log_has(greet, &format!("alias {alias} says hello via service"));
    }
    assert!(report.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_and_dotenv_reach_later_jobs_but_not_dependencies_none() {
    let report = run_fixture("artifacts").await;
    let build = job(&report, "build");
    assert_passed(build);
    assert_eq!(
        build.dotenv,
        vec![("BUILD_VERSION".to_string(), "1.2.3".to_string())]
    );
    let stored = build
        .artifacts_dir
        .as_ref()
        .expect("build's artifacts are kept");
    assert_eq!(
        std::fs::read_to_string(stored.join("out/result.txt")).expect("artifact file"),
        "artifact from build\n"
    );
    for consumer in ["consume", "consume-needs"] {
        let j = job(&report, consumer);
        assert_passed(j);
        assert_log_has(j, "artifact from build");
        assert_log_has(j, "version=1.2.3");
    }
    let isolated = job(&report, "isolated");
    assert_passed(isolated);
    assert_log_has(isolated, "artifact absent");
    assert_log_has(isolated, "version=[unset]");
    assert!(report.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_script_sees_the_job_status() {
    let report = run_fixture("after-script").await;
    let passes = job(&report, "passes");
    assert_passed(passes);
    assert_log_has(passes, "after says CI_JOB_STATUS=success");
    let fails = job(&report, "fails");
    assert_eq!(fails.status, Status::Failed);
    assert_eq!(fails.exit_code, Some(3));
    assert_eq!(fails.failure_reason.as_deref(), Some("script_failure"));
    assert_log_has(fails, "after says CI_JOB_STATUS=failed");
    assert!(!report.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_skips_on_success_jobs_runs_on_failure_and_always_jobs() {
    let report = run_fixture("failures").await;
    assert_eq!(report.status, Status::Failed);
    let broken = job(&report, "broken");
    assert_eq!(broken.status, Status::Failed);
    assert_eq!(broken.exit_code, Some(1));
    assert!(!broken.allowed_failure);
    assert_log_has(broken, "about to fail");
    assert!(!plain_log(broken).contains("never printed\n"));
    assert_passed(job(&report, "fine"));

    let next = job(&report, "next");
    assert_eq!(next.status, Status::Skipped);
    assert_eq!(next.attempts, 0);
    assert_eq!(
        next.not_run_because.as_deref(),
        Some("not run: needs `broken`, which failed")
    );
    assert_log_has(job(&report, "report-failure"), "on_failure ran");
    assert_log_has(job(&report, "cleanup"), "always ran");
    // A manual job after a failed stage is skipped, as on GitLab; it never ran.
    let button = job(&report, "button");
    assert_eq!(button.attempts, 0);
    assert!(button.log.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_failures_pass_the_pipeline_with_warnings() {
    let report = run_fixture("allow-failure").await;
    assert_eq!(report.status, Status::SuccessWithWarnings);
    assert!(report.passed());
    let allowed = job(&report, "allowed");
    assert_eq!(allowed.status, Status::Failed);
    assert!(allowed.allowed_failure);
    let code = job(&report, "allowed-code");
    assert_eq!(code.status, Status::Failed);
    assert_eq!(code.exit_code, Some(42));
    assert!(code.allowed_failure);
    assert_log_has(job(&report, "next"), "next ran");
    // Allowed failures are not failures for `when: on_failure`.
    assert_eq!(job(&report, "report-failure").status, Status::Skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_code_not_in_allow_failure_exit_codes_fails_the_pipeline() {
    let dir = project("allow-failure");
    std::fs::write(
        dir.path().join(".gitlab-ci.yml"),
        "job:\n  image: glci-fixture/busybox:latest\n  allow_failure:\n    exit_codes: [42]\n  script: [exit 7]\n",
    )
    .expect("write pipeline");
    let report = run(PipelineOptions::new(dir.path()), run_options(), &[]).await;
    let j = job(&report, "job");
    assert_eq!(j.exit_code, Some(7));
    assert!(!j.allowed_failure);
    assert_eq!(report.status, Status::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_jobs_are_not_run_unless_named() {
    let dir = project("allow-failure");
    std::fs::write(
        dir.path().join(".gitlab-ci.yml"),
        "default:\n  image: glci-fixture/busybox:latest\nauto:\n  script: [echo auto ran]\nbutton:\n  when: manual\n  script: [echo button ran]\n",
    )
    .expect("write pipeline");
    let report = run(PipelineOptions::new(dir.path()), run_options(), &[]).await;
    assert!(report.passed());
    assert_log_has(job(&report, "auto"), "auto ran");
    let button = job(&report, "button");
    assert_eq!(button.status, Status::Manual);
    assert_eq!(button.attempts, 0);
    assert!(button.log.is_empty());

    // Named, it is played.
    let report = run(PipelineOptions::new(dir.path()), run_options(), &["button"]).await;
    assert_log_has(job(&report, "button"), "button ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_matrix_jobs_get_their_variables() {
    let report = run_fixture("matrix").await;
    assert_eq!(report.jobs.len(), 4);
    for provider in ["aws", "gcp"] {
        for stack in ["app", "db"] {
            let j = job(&report, &format!("deploy: [{provider}, {stack}]"));
            assert_passed(j);
            assert_log_has(j, &format!("provider={provider} stack={stack} total=4"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_stops_a_job_and_retry_runs_it_again() {
    let started = std::time::Instant::now();
    let report = run_fixture("timeout-retry").await;
    let slow = job(&report, "slow");
    assert_eq!(slow.status, Status::Failed);
    assert_eq!(
        slow.failure_reason.as_deref(),
        Some("job_execution_timeout")
    );
    assert_log_has(
        slow,
        "ERROR: Job failed: execution took longer than 3s seconds",
    );
    assert!(!plain_log(slow).contains("woke up\n"));
    // The job is stopped at its timeout, not when `sleep 30` ends.
    assert!(started.elapsed().as_secs() < 25, "{:?}", started.elapsed());

    let flaky = job(&report, "flaky");
    assert_eq!(flaky.status, Status::Failed);
    assert_eq!(flaky.attempts, 3);
    assert_log_has(flaky, "attempt of flaky");
    // `retry:exit_codes: [137]` does not cover exit code 1.
    let other = job(&report, "other-code");
    assert_eq!(other.attempts, 1);
    assert_eq!(other.exit_code, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_and_untracked_files_are_visible_in_the_job() {
    let dir = project("uncommitted");
    std::fs::write(dir.path().join("tracked.txt"), "edited, not committed\n").expect("edit");
    std::fs::write(dir.path().join("untracked.txt"), "never added\n").expect("new file");
    let report = run(PipelineOptions::new(dir.path()), run_options(), &[]).await;
    let look = job(&report, "look");
    assert_passed(look);
    assert_log_has(look, "edited, not committed");
    assert_log_has(look, "never added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_values_stay_out_of_the_log_and_file_variables_are_files() {
    let dir = project("variables");
    let mut opts = PipelineOptions::new(dir.path());
    opts.settings_variables = vec![
        SettingsVariable {
            key: "SECRET_TOKEN".to_string(),
            value: "s3cr3t-token-value".to_string(),
            masked: true,
            file: false,
        },
        SettingsVariable {
            key: "CONFIG_FILE".to_string(),
            value: "config-content".to_string(),
            masked: false,
            file: true,
        },
    ];
    let report = run(opts, run_options(), &[]).await;
    let show = job(&report, "show");
    assert_passed(show);
    assert_log_has(show, "secret is [MASKED]");
    assert!(!show.log.contains("s3cr3t-token-value"), "{}", show.log);
    let on_disk =
        std::fs::read_to_string(show.log_path.as_ref().expect("log kept")).expect("read kept log");
    assert!(!on_disk.contains("s3cr3t-token-value"));
    assert_log_has(
        show,
        "file var is a path [/builds/acme/demo.tmp/CONFIG_FILE]",
    );
    assert_log_has(show, "file holds [config-content]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_gitlab_sections_in_the_runners_order() {
    let report = run_fixture("sections").await;
    let j = job(&report, "job");
    assert_passed(j);
    let re = regex::Regex::new(r"section_(start|end):(\d+):([a-z_]+)\r\x1b\[0K").expect("regex");
    let sections: Vec<String> = re
        .captures_iter(&j.log)
        .map(|c| format!("{} {}", &c[1], &c[3]))
        .collect();
    let expected = [
        "prepare_executor",
        "prepare_script",
        "get_sources",
        "step_script",
        "after_script",
        "cleanup_file_variables",
    ];
    let want: Vec<String> = expected
        .iter()
        .flat_map(|s| [format!("start {s}"), format!("end {s}")])
        .collect();
    assert_eq!(sections, want, "{}", j.log);
    assert!(j
        .log
        .contains("\x1b[32;1m$ echo \"in the script\"\x1b[0;m\nin the script\n"));
    assert!(
        j.log.ends_with("\x1b[32;1mJob succeeded\x1b[0;m\n"),
        "{:?}",
        j.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_strategy_none_and_git_depth_shape_the_checkout() {
    let dir = project("git-strategy");
    for n in 2..=3 {
        std::fs::write(dir.path().join("history.txt"), format!("{n}\n")).expect("write");
        git(dir.path(), &["add", "history.txt"]);
        git(dir.path(), &["commit", "-q", "-m", &format!("commit {n}")]);
    }
    let report = run(PipelineOptions::new(dir.path()), run_options(), &[]).await;
    assert_log_has(job(&report, "no-sources"), "entries=[]");
    assert_log_has(job(&report, "depth-one"), "commits=1");
    // A clean working tree is its own snapshot: the three commits, all within depth 20.
    assert_log_has(job(&report, "default-depth"), "commits=3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_image_runs_in_the_default_image() {
    let dir = project("default-image");
    let report = run(PipelineOptions::new(dir.path()), run_options(), &[]).await;
    let j = job(&report, "which-image");
    assert_passed(j);
    assert_log_has(
        j,
        "Using Docker executor with image glci-fixture/debian:bookworm ...",
    );
    assert!(plain_log(j).contains("\ndebian=12"), "{}", plain_log(j));

    // The default is an option.
    let options = RunOptions {
        default_image: "glci-fixture/busybox:latest".to_string(),
        ..run_options()
    };
    let report = run(PipelineOptions::new(dir.path()), options, &[]).await;
    let j = job(&report, "which-image");
    assert_log_has(
        j,
        "Using Docker executor with image glci-fixture/busybox:latest ...",
    );
    assert_eq!(
        j.status,
        Status::Failed,
        "busybox has no /etc/debian_version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_one_clear_error_naming_it() {
    let report = run_fixture("missing-image").await;
    // As the runner's pull manager: a missing local image (`never`) is the system's failure,
    // a failed pull (a `BuildError` of `script_failure`) the job's.
    for (name, image, reason, prefix) in [
        (
            "ghost",
            "glci-fixture/no-such-image:1.0",
            "runner_system_failure",
            "ERROR: Job failed (system failure): ",
        ),
        (
            "ghost-pull",
            "glci-fixture/no-such-image:2.0",
            "script_failure",
            "ERROR: Job failed: ",
        ),
    ] {
        let j = job(&report, name);
        assert_eq!(j.status, Status::Failed);
        assert_eq!(j.failure_reason.as_deref(), Some(reason));
        let log = plain_log(j);
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{log}");
        assert!(
            errors[0].starts_with(&format!("{prefix}failed to pull image \"{image}\"")),
            "{log}"
        );
        assert!(!log.contains("never runs"));
    }
}

/// Tells when a job's log has shown `needle`.
struct LogWatch {
    needle: &'static str,
    seen: std::sync::Mutex<String>,
    found: tokio::sync::Notify,
}

impl RunObserver for LogWatch {
    fn job_log(&self, _job: &str, chunk: &[u8]) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push_str(&String::from_utf8_lossy(chunk));
        if seen.contains(self.needle) {
            self.found.notify_one();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_silent_job_and_after_script_sees_canceled() {
    let dir = project("uncommitted");
    std::fs::write(
        dir.path().join(".gitlab-ci.yml"),
        "sleeper:\n  image: glci-fixture/busybox:latest\n  script:\n    - echo sleeping now\n    - sleep 60\n  after_script:\n    - echo \"after_script sees $CI_JOB_STATUS\"\n",
    )
    .expect("write pipeline");
    let watch = Arc::new(LogWatch {
        needle: "\nsleeping now\n",
        seen: std::sync::Mutex::new(String::new()),
        found: tokio::sync::Notify::new(),
    });
    let session = Session::start(
        &PipelineOptions::new(dir.path()),
        run_options(),
        watch.clone(),
    )
    .await
    .expect("session");
    let id = session.pipeline_id();
    let report = {
        let run = session.run(&[]);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => panic!("the pipeline ended before the cancel: {r:?}"),
            _ = watch.found.notified() => {}
        }
        let canceled_at = std::time::Instant::now();
        session.cancel();
        let report = run.await.expect("report");
        // The job says nothing during `sleep`: the runner must still hear the cancel.
        assert!(
            canceled_at.elapsed().as_secs() < 20,
            "the cancel took {:?}",
            canceled_at.elapsed()
        );
        report
    };
    session.shutdown().await;
    assert_nothing_left(id);
    assert_eq!(report.status, Status::Canceled);
    let sleeper = job(&report, "sleeper");
    assert_eq!(sleeper.status, Status::Canceled);
    assert_log_has(sleeper, "after_script sees canceled");
    // The observer got the whole log, after_script included.
    let streamed = watch.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        streamed.contains("after_script sees canceled"),
        "{streamed}"
    );
}

/// Needs the cache (restore/save through the S3 endpoint), which the `cache` branch brings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_persists_across_two_runs() {
    let dir = project("cache");
    let first = run(PipelineOptions::new(dir.path()), run_options(), &[]).await;
    let cached = job(&first, "cached");
    assert_passed(cached);
    assert_log_has(cached, "cache miss");
    let second = run(PipelineOptions::new(dir.path()), run_options(), &[]).await;
    assert_log_has(
        job(&second, "cached"),
        &format!("cache hit [{}]", first.pipeline_id),
    );
}
