//! `cargo glci run` through the real binary: its exit status, and what is left in Docker when
//! the process is killed mid-job (SIGKILL: its watchdog removes it, no glci command needed) or
//! interrupted (SIGINT, SIGTERM, SIGHUP: after_script runs, everything is removed, the exit
//! status is the signal's).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

/// A job that sleeps, with a service so that it also has a network of its own.
const SLEEPER: &str = r#"sleeper:
  image: glci-fixture/busybox:latest
  services: [glci-fixture/tcp-service:latest]
  script:
    - echo started
    - sleep 30
    - echo woke up
  after_script:
    - 'echo "after_script ran: $CI_JOB_STATUS"'
"#;

/// [`SLEEPER`] with a Docker-in-Docker service: a daemon with its own storage and
/// certificates volumes.
const DIND_SLEEPER: &str = r#"sleeper:
  image: glci-fixture/busybox:latest
  services:
    - name: glci-fixture/docker:dind
      alias: docker
  script:
    - echo started
    - sleep 30
    - echo woke up
  after_script:
    - 'echo "after_script ran: $CI_JOB_STATUS"'
"#;

const QUICK: &str = "quick:\n  image: glci-fixture/busybox:latest\n  script: [echo quick]\n";

/// Container, network and volume ids of glci objects owned by process `pid`.
fn objects_of(pid: u32) -> Vec<String> {
    let filter = format!("label=io.glci.owner-pid={pid}");
    let mut ids = Vec::new();
    for kind in [
        &["ps", "-a", "-q"][..],
        &["network", "ls", "-q"][..],
        &["volume", "ls", "-q"][..],
    ] {
        let out = Command::new("docker")
            .args(kind)
            .args(["--filter", &filter])
            .output()
            .expect("run docker");
        assert!(out.status.success(), "docker {kind:?}");
        ids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string),
        );
    }
    ids
}

/// `cargo-glci run` in `dir` with its own data directory, output piped.
fn spawn_run(dir: &Path, home: &Path) -> Child {
    Command::new(glci_bin!())
        .args(["run", "--jobs", "1"])
        .current_dir(dir)
        .env("GLCI_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cargo-glci run")
}

/// Forwards the child's stdout lines to a channel (and keeps them for the failure message).
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The lines still on their way after the process ended: until its output closes (the reader
/// thread ends), so a line written just before the exit is not lost to the race between the
/// exit and the reader thread.
fn drain(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>) {
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) {
        seen.push(line);
    }
}

/// Waits for a line containing `needle`; returns every line seen so far.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("no line with {needle:?} in:\n{}", seen.join("\n"));
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for cargo-glci") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cargo-glci run did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn exit_status_is_0_exactly_when_the_pipeline_passes() {
    let home = tempfile::tempdir().unwrap();
    let home_env = home.path().to_str().unwrap();
    let passing = temp_project(None, &[(".gitlab-ci.yml", QUICK)]);
    let out = run(
        glci_bin!(),
        passing.path(),
        &["run", "-q"],
        &[("GLCI_HOME", home_env)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("quick  test   ") && text.contains("passed"),
        "{text}"
    );
    assert!(text.contains("pipeline #1 passed"), "{text}");

    let failing = temp_project(
        None,
        &[(
            ".gitlab-ci.yml",
            "default:\n  image: glci-fixture/busybox:latest\nok:\n  script: [echo ok]\nbad:\n  script: [exit 4]\nwarn:\n  allow_failure: true\n  script: [exit 5]\n",
        )],
    );
    let out = run(
        glci_bin!(),
        failing.path(),
        &["run", "-q"],
        &[("GLCI_HOME", home_env)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("failed (script_failure, exit code 4)"),
        "{text}"
    );
    assert!(text.contains("pipeline #2 failed"), "{text}");

    // Only an allowed failure: passed with warnings, exit 0.
    let out = run(
        glci_bin!(),
        failing.path(),
        &["run", "-q", "ok", "warn"],
        &[("GLCI_HOME", home_env)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("passed with warnings"),
        "{}",
        stdout(&out)
    );
}

/// Processes whose parent is `pid` and that were started as a run's watchdog.
fn watchdogs_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let is_watchdog = environ
            .split(|b| *b == 0)
            .any(|var| var.starts_with(b"GLCI_REAPER_OWNER="));
        if parent == Some(pid) && is_watchdog {
            found.push(child);
        }
    }
    found
}

/// The staging directories (checkouts, builds directories) under a data directory.
fn staging_dirs(home: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(home.join("pipelines"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("staging"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_run_killed_mid_job_is_cleaned_up_by_its_watchdog_alone() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", SLEEPER)]);
    let mut child = spawn_run(project.path(), home.path());
    let pid = child.id();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for_line(&lines, "sleeper | started", &mut seen);
    assert_eq!(watchdogs_of(pid).len(), 1, "one watchdog per run");
    assert!(objects_of(pid).len() >= 3, "{:?}", objects_of(pid));
    assert_eq!(staging_dirs(home.path()).len(), 1);

    // A glci object of another owner that also looks dead (same pid): a general orphan
    // sweep would take it, the run's watchdog must not.
    let decoy = format!("glci-decoy-{pid}");
    let made = Command::new("docker")
        .args(["network", "create", "--label", "io.glci.pipeline=decoy"])
        .args(["--label", "io.glci.owner=someone-else"])
        .args(["--label", &format!("io.glci.owner-pid={pid}"), &decoy])
        .output()
        .expect("docker network create");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    child.kill().expect("SIGKILL cargo-glci");
    let _ = child.wait();
    let killed = Instant::now();
    // No glci command from here on: the watchdog alone removes the run's objects (the decoy
    // stays) and its staging directory.
    let mut left = objects_of(pid);
    while Instant::now() < killed + Duration::from_secs(10)
        && (left.len() > 1
            || !staging_dirs(home.path()).is_empty()
            || !watchdogs_of(pid).is_empty())
    {
        std::thread::sleep(Duration::from_millis(200));
        left = objects_of(pid);
    }
    let decoy_id = Command::new("docker")
        .args([
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{decoy}$"),
        ])
        .output()
        .expect("docker network ls");
    let decoy_id = String::from_utf8_lossy(&decoy_id.stdout).trim().to_string();
    let _ = Command::new("docker")
        .args(["network", "rm", &decoy])
        .output();
    assert!(
        !decoy_id.is_empty(),
        "the watchdog removed another owner's network"
    );
    assert_eq!(left, vec![decoy_id], "left 10 s after the kill");
    assert_eq!(staging_dirs(home.path()), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        watchdogs_of(pid),
        Vec::<u32>::new(),
        "the watchdog outlived its work"
    );
}

/// Sends `signal` once the job runs; the run cancels, after_script runs, nothing stays.
fn a_signal_cancels_the_run(signal: &str, exit_code: i32) {
    a_signal_cancels_the_pipeline(SLEEPER, signal, exit_code);
}

fn a_signal_cancels_the_pipeline(pipeline: &str, signal: &str, exit_code: i32) {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", pipeline)]);
    let mut child = spawn_run(project.path(), home.path());
    let pid = child.id();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for_line(&lines, "sleeper | started", &mut seen);
    let watchdog = watchdogs_of(pid);

    let started = Instant::now();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(60));
    drain(&lines, &mut seen);
    let text = seen.join("\n");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the cancel waited for the sleep: {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(exit_code), "{text}");
    assert!(
        text.contains("sleeper | after_script ran: canceled"),
        "{text}"
    );
    assert!(!text.contains("woke up"), "{text}");
    assert_eq!(objects_of(pid), Vec::<String>::new());
    assert_eq!(staging_dirs(home.path()), Vec::<std::path::PathBuf>::new());
    // The watchdog heard the clean end and is gone with its owner.
    assert_eq!(watchdog.len(), 1);
    assert!(!Path::new(&format!("/proc/{}", watchdog[0])).exists());
}

#[test]
fn ctrl_c_cancels_runs_after_script_exits_130_and_leaves_nothing() {
    a_signal_cancels_the_run("INT", 130);
}

/// The DinD fixture image, built when missing (about 5 minutes).
fn ensure_dind_image() {
    let present = Command::new("docker")
        .args(["image", "inspect", "glci-fixture/docker:dind"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fixture-images");
        let built = Command::new(script).arg("docker").status();
        assert!(
            built.is_ok_and(|s| s.success()),
            "scripts/fixture-images docker"
        );
    }
}

#[test]
fn ctrl_c_leaves_nothing_of_a_dind_job_its_volumes_included() {
    ensure_dind_image();
    a_signal_cancels_the_pipeline(DIND_SLEEPER, "INT", 130);
}

#[test]
fn a_killed_dind_run_is_cleaned_up_by_its_watchdog_volumes_included() {
    ensure_dind_image();
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", DIND_SLEEPER)]);
    let mut child = spawn_run(project.path(), home.path());
    let pid = child.id();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for_line(&lines, "sleeper | started", &mut seen);
    // The build and DinD containers, the network, the storage volume at least.
    assert!(objects_of(pid).len() >= 4, "{:?}", objects_of(pid));
    child.kill().expect("SIGKILL cargo-glci");
    let _ = child.wait();
    let killed = Instant::now();
    let mut left = objects_of(pid);
    while !left.is_empty() && killed.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
        left = objects_of(pid);
    }
    assert_eq!(left, Vec::<String>::new(), "left 15 s after the kill");
}

#[test]
fn sigterm_cancels_like_ctrl_c() {
    a_signal_cancels_the_run("TERM", 143);
}

#[test]
fn sighup_cancels_like_ctrl_c() {
    a_signal_cancels_the_run("HUP", 129);
}

/// A Ctrl-C that lands after a job's script ended (its after_script still runs): GitLab
/// records a job canceled while `canceling` as canceled whatever the runner reports; the
/// jobs after it are canceled with the pipeline (not "skipped: it failed"), and the exit
/// status is Ctrl-C's.
#[test]
fn ctrl_c_after_a_script_ended_cancels_the_pipeline_not_fails_it() {
    let home = tempfile::tempdir().unwrap();
    let pipeline = r#"default:
  image: glci-fixture/busybox:latest
stages: [build, test]
build:
  stage: build
  script: [echo script-done]
  after_script:
    - echo in-after-script
    - sleep 3
next:
  stage: test
  needs: [build]
  script: [echo next ran]
"#;
    let project = temp_project(None, &[(".gitlab-ci.yml", pipeline)]);
    let mut child = spawn_run(project.path(), home.path());
    let pid = child.id();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for_line(&lines, "build | in-after-script", &mut seen);
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(60));
    drain(&lines, &mut seen);
    let text = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(!text.contains("which failed"), "{text}");
    assert!(!text.contains("next ran"), "{text}");
    assert!(text.contains("next: the pipeline was canceled"), "{text}");
    assert!(text.contains("canceled (logs and artifacts"), "{text}");
    assert_eq!(objects_of(pid), Vec::<String>::new());
}

/// `cargo glci test` (the `main!()` harness) hears SIGTERM as a Ctrl-C: the job's
/// after_script runs and its log is kept, the trial fails, nothing stays.
#[test]
fn sigterm_cancels_cargo_glci_test_like_ctrl_c() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", SLEEPER)]);
    let mut child = Command::new(glci_bin!())
        .args(["test"])
        .current_dir(project.path())
        .env("GLCI_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cargo-glci test");
    let pid = child.id();
    // The job runs once its containers exist; give the script a moment to start.
    let deadline = Instant::now() + Duration::from_secs(90);
    while objects_of(pid).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(101), "the trial fails as canceled");
    let log = std::fs::read_to_string(home.path().join("pipelines/1/jobs/sleeper/job.log"))
        .unwrap_or_default();
    assert!(log.contains("after_script ran: canceled"), "{log}");
    assert_eq!(objects_of(pid), Vec::<String>::new());
    assert_eq!(staging_dirs(home.path()), Vec::<std::path::PathBuf>::new());
}
