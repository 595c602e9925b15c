//! The glci daemon end to end, with real processes and the real engine: a
//! `glci_test::main!()` crate (the README's example) under `cargo nextest run` runs each job
//! of a chain exactly once — the daemon's log records every job start — and still works under
//! `cargo test`; a client killed while it waits leaves its job running for the next one; a
//! client of another build or other settings restarts the daemon; `daemon stop` waits for
//! running jobs and `--force` cancels them; after a daemon is killed, the next one fails its
//! running jobs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use glci_e2e::{clear_package_env, glci_bin, repo_root, stderr, stdout, temp_project};

use super::harness::target_dir;

/// A chain a → b → c → d, and two manual jobs the tests play by name.
const CI: &str = r#"
default:
  image: glci-fixture/busybox:latest
stages: [one, two, three, four]
a: {stage: one, script: [echo job a ran]}
b: {stage: two, needs: [a], script: [echo job b ran]}
c: {stage: three, needs: [b], script: [echo job c ran]}
d: {stage: four, needs: [c], script: [echo job d ran]}
slow: {stage: one, when: manual, script: [sleep 6, echo slow done]}
forever: {stage: one, when: manual, script: [sleep 300]}
hosts: {stage: one, when: manual, script: [cat /etc/hosts]}
"#;

/// A crate named `name` with the README's `main!()` target, built against this glci-test in
/// the shared target directory (see `harness::user_crate_manifest`). Each test needs its own
/// name: see there why.
fn user_crate(name: &str) -> tempfile::TempDir {
    let manifest = super::harness::user_crate_manifest(name);
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap();
    temp_project(
        None,
        &[
            (".gitlab-ci.yml", CI),
            ("Cargo.toml", &manifest),
            ("Cargo.lock", &lock),
            ("src/lib.rs", ""),
            ("tests/ci.rs", "glci_test::main!();\n"),
        ],
    )
}

/// A command with a clean environment for the daemon: its own `GLCI_HOME`, no run id of the
/// outer test run.
fn command(program: &Path, dir: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    clear_package_env(&mut cmd)
        .current_dir(dir)
        .env("GLCI_HOME", home)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("GLCI_DAEMON_IDLE_TIMEOUT", "120")
        .env_remove("NEXTEST")
        .env_remove("NEXTEST_RUN_ID")
        .env_remove("GLCI_RUN_ID")
        .env_remove("GLCI_DAEMON")
        .env_remove("GLCI_DAEMON_BUILD_TAG")
        .env_remove("CI")
        .env_remove("INSTA_UPDATE")
        .env_remove("INSTA_WORKSPACE_ROOT");
    cmd
}

fn cargo(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let cargo = PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command(&cargo, dir, home)
        .args(args)
        .output()
        .expect("cargo")
}

fn glci(dir: &Path, home: &Path, args: &[&str]) -> Output {
    command(glci_bin!(), dir, home)
        .args(args)
        .output()
        .expect("cargo-glci")
}

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn daemon_log(home: &Path) -> String {
    std::fs::read_to_string(home.join("daemon/daemon.log")).unwrap_or_default()
}

/// How many times the daemon started `job` (its log has one line per start).
fn runs(home: &Path, job: &str) -> usize {
    daemon_log(home)
        .matches(&format!("job `{job}` started"))
        .count()
}

fn wait_for_log(home: &Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !daemon_log(home).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the daemon log:\n{}",
            daemon_log(home)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the daemon has started `job` in the session of run `run`.
fn wait_for_start(home: &Path, run: &str, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = format!("job `{job}` started");
    let prefix = format!("[{run}/");
    while !daemon_log(home)
        .lines()
        .any(|l| l.starts_with(&prefix) && l.contains(&started))
    {
        assert!(
            Instant::now() < deadline,
            "`{job}` never started in {run}:\n{}",
            daemon_log(home)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_daemon(dir: &Path, home: &Path) {
    let stop = glci(dir, home, &["daemon", "stop", "--force"]);
    assert!(stop.status.success(), "{}", both(&stop));
}

#[test]
fn nextest_runs_each_job_once_and_cargo_test_still_works() {
    let project = user_crate("daemon-nextest-ci");
    let dir = project.path();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();

    // Listing alone starts the run's session ahead (nextest's listing cannot tell a `list`
    // from a `run`); no job is asked for, so it leaves no pipeline record.
    let list = cargo(dir, home, &["nextest", "list", "--offline", "--test", "ci"]);
    assert!(list.status.success(), "{}", both(&list));
    assert!(
        daemon_log(home).contains("while it is listed by pid"),
        "{}",
        daemon_log(home)
    );
    stop_daemon(dir, home);
    assert!(
        daemon_log(home).contains("no job was asked for: pipeline record"),
        "{}",
        daemon_log(home)
    );
    let records: Vec<_> = std::fs::read_dir(home.join("pipelines"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(records.is_empty(), "{records:?}");
    let listed = daemon_log(home).len();

    let nextest = cargo(
        dir,
        home,
        &[
            "nextest",
            "run",
            "--offline",
            "--no-fail-fast",
            "--test",
            "ci",
        ],
    );
    let text = both(&nextest);
    assert!(nextest.status.success(), "{text}\n{}", daemon_log(home));
    assert!(text.contains("4 tests run: 4 passed"), "{text}");
    for job in ["a", "b", "c", "d"] {
        assert_eq!(runs(home, job), 1, "{}", daemon_log(home));
    }
    // One session for the run, started while nextest listed the tests, before any job was
    // asked for (in the log of the daemon started since the listing's was stopped).
    let log = daemon_log(home)[listed..].to_string();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("starting a session"))
        .collect();
    assert_eq!(starts.len(), 1, "{log}");
    assert!(starts[0].contains("while it is listed by pid"), "{log}");
    // The session is still there (it lingers for the rest of the run) with its record.
    let status = glci(dir, home, &["daemon", "status"]);
    let shown = both(&status);
    assert!(status.status.success(), "{shown}");
    assert!(shown.contains("  d: 1 run(s)"), "{shown}");
    let mode = std::fs::metadata(home.join("daemon.sock")).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.ok(), Some(0o600));

    // One process holding every trial keeps its session to itself, as before.
    let test = cargo(dir, home, &["test", "--offline", "--test", "ci"]);
    let text = both(&test);
    assert!(
        text.contains("test result: ok. 4 passed; 0 failed; 3 ignored"),
        "{text}"
    );
    assert_eq!(runs(home, "a"), 1, "cargo test used the daemon");

    let stop = glci(dir, home, &["daemon", "stop"]);
    assert!(stop.status.success(), "{}", both(&stop));
    assert!(!home.join("daemon.sock").exists());
    let status = glci(dir, home, &["daemon", "status"]);
    assert_eq!(status.status.code(), Some(1), "{}", both(&status));
    let logs = glci(dir, home, &["daemon", "logs", "-n", "1"]);
    assert_eq!(stdout(&logs), "stopped\n", "{}", both(&logs));
}

/// The `ci` test binary of `dir`, built.
fn test_binary(dir: &Path, home: &Path) -> PathBuf {
    let build = cargo(
        dir,
        home,
        &["test", "--offline", "--no-run", "--test", "ci"],
    );
    let text = stderr(&build);
    assert!(build.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("Executable tests/ci.rs"))
        .unwrap_or_else(|| panic!("no executable in {text}"));
    let path = &line[line.find('(').unwrap() + 1..line.rfind(')').unwrap()];
    PathBuf::from(path)
}

/// One trial of the binary, as nextest runs it, in run `run`.
fn client(bin: &Path, dir: &Path, home: &Path, run: &str, job: &str, tag: &str) -> Child {
    let mut cmd = command(bin, dir, home);
    cmd.args(["--exact", job, "--nocapture", "--include-ignored"])
        .env("GLCI_RUN_ID", run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !tag.is_empty() {
        cmd.env("GLCI_DAEMON_BUILD_TAG", tag);
    }
    cmd.spawn().expect("spawn the test binary")
}

#[test]
fn killed_clients_other_builds_and_stopping() {
    let project = user_crate("daemon-clients-ci");
    let dir = project.path();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let bin = test_binary(dir, home);

    // A client killed while it waits: the job goes on, and the next client of the run gets
    // its report without running it again.
    let mut first = client(&bin, dir, home, "run-1", "slow", "");
    wait_for_start(home, "run-1", "slow");
    first.kill().unwrap();
    let _ = first.wait();
    wait_for_log(home, "left while waiting for `slow`: the job goes on");
    let second = client(&bin, dir, home, "run-1", "slow", "")
        .wait_with_output()
        .unwrap();
    let text = both(&second);
    assert!(second.status.success(), "{text}\n{}", daemon_log(home));
    assert!(text.contains("slow done"), "{text}");
    assert_eq!(runs(home, "slow"), 1, "{}", daemon_log(home));
    let old_pid = glci(dir, home, &["daemon", "status"]);
    let old_pid = stdout(&old_pid);

    // A client of another build: the daemon is stopped (after its jobs) and replaced.
    let other = client(&bin, dir, home, "run-2", "a", "other")
        .wait_with_output()
        .unwrap();
    let text = both(&other);
    assert!(other.status.success(), "{text}\n{}", daemon_log(home));
    assert!(
        text.contains("restarting it once its running jobs are done"),
        "{text}"
    );
    let status = glci(dir, home, &["daemon", "status"]);
    let shown = stdout(&status);
    assert!(shown.contains("-other"), "{shown}");
    assert_ne!(shown.lines().next(), old_pid.lines().next());

    // A client that reads other settings (here a project file written since): the daemon,
    // which read its own when it started, is restarted, and the job sees the new ones.
    std::fs::write(
        dir.join(".glci.toml"),
        "[network]\nextra_hosts = [\"settings-probe.test:10.9.8.7\"]\n",
    )
    .unwrap();
    let other_settings = client(&bin, dir, home, "run-2", "hosts", "other")
        .wait_with_output()
        .unwrap();
    let text = both(&other_settings);
    assert!(
        other_settings.status.success(),
        "{text}\n{}",
        daemon_log(home)
    );
    assert!(text.contains("read other glci settings"), "{text}");
    assert!(text.contains("10.9.8.7\tsettings-probe.test"), "{text}");
    // So does one whose Docker credentials are elsewhere (`DOCKER_CONFIG`), which the daemon
    // reads from its own environment for the registry's upstreams.
    let other_docker = command(&bin, dir, home)
        .args(["--exact", "a", "--include-ignored"])
        .env("GLCI_RUN_ID", "run-2b")
        .env("GLCI_DAEMON_BUILD_TAG", "other")
        .env("DOCKER_CONFIG", home.join("elsewhere"))
        .output()
        .unwrap();
    let text = both(&other_docker);
    assert!(
        other_docker.status.success(),
        "{text}\n{}",
        daemon_log(home)
    );
    assert!(text.contains("read other glci settings"), "{text}");

    // `stop` waits for the running job, which passes.
    let waited = client(&bin, dir, home, "run-3", "slow", "other");
    wait_for_start(home, "run-3", "slow");
    let stop = glci(dir, home, &["daemon", "stop"]);
    assert!(stop.status.success(), "{}", both(&stop));
    let waited = waited.wait_with_output().unwrap();
    assert!(waited.status.success(), "{}", both(&waited));
    let log = daemon_log(home);
    let finished = log.rfind("job `slow` finished: Success").unwrap();
    assert!(finished < log.rfind("stopped").unwrap(), "{log}");

    // `stop --force` does not: the job is canceled, its test fails, at once.
    let canceled = client(&bin, dir, home, "run-4", "forever", "");
    wait_for_start(home, "run-4", "forever");
    let started = Instant::now();
    stop_daemon(dir, home);
    let canceled = canceled.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    // (A manual job may fail by default, as on GitLab: the test passes with the note.)
    let text = both(&canceled);
    assert!(text.contains("Job failed: canceled"), "{text}");
    let log = daemon_log(home);
    // Nothing of the daemon's sessions is left in Docker.
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=io.glci.pipeline"])
        .args([
            "--filter",
            &format!("label=io.glci.owner-pid={}", daemon_pid(&log)),
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&left).trim(), "");

    // A daemon that dies (SIGKILL) mid-job: the next one marks the job failed in the
    // pipeline's records and no object of the dead one is left.
    let orphaned = client(&bin, dir, home, "run-5", "forever", "");
    wait_for_start(home, "run-5", "forever");
    let log = daemon_log(home);
    let dead = daemon_pid(&log);
    let kill = Command::new("kill")
        .args(["-KILL", &dead])
        .status()
        .unwrap();
    assert!(kill.success());
    let orphaned = orphaned.wait_with_output().unwrap();
    assert!(!orphaned.status.success(), "{}", both(&orphaned));
    let start = glci(dir, home, &["daemon", "start"]);
    assert!(start.status.success(), "{}", both(&start));
    let log = daemon_log(home);
    assert!(
        log.contains(&format!(
            "of a dead daemon (pid {dead}): 1 running job(s) marked failed"
        )),
        "{log}"
    );
    let record = std::fs::read_dir(home.join("pipelines"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("jobs/forever/job.json"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(record.contains("\"status\": \"failed\""), "{record}");
    assert!(record.contains("\"stage\": \"one\""), "{record}");
    // The session's watchdog and the new daemon both remove them; a forced removal of a
    // running container takes the engine a moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.glci.owner-pid={dead}"),
            ])
            .output()
            .unwrap();
        if stdout(&left).trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left: {}", stdout(&left));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop_daemon(dir, home);
}

/// The pid of the last daemon that started, from its log.
fn daemon_pid(log: &str) -> String {
    let line = log.lines().rfind(|l| l.contains(", pid ")).unwrap_or("");
    line.split(", pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("")
        .to_string()
}
