//! `cargo glci run` through the real binary: its exit status, and what is left in Docker when
//! the process is killed mid-job (SIGKILL: the next run removes it) or interrupted (SIGINT:
//! after_script runs, everything is removed, the exit status says the pipeline did not pass).

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

const QUICK: &str = "quick:\n  image: glci-fixture/busybox:latest\n  script: [echo quick]\n";

/// Container and network ids of glci objects owned by process `pid`.
fn objects_of(pid: u32) -> Vec<String> {
    let filter = format!("label=io.glci.owner-pid={pid}");
    let mut ids = Vec::new();
    for kind in [&["ps", "-a", "-q"][..], &["network", "ls", "-q"][..]] {
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

#[test]
fn a_run_killed_mid_job_is_cleaned_up_by_the_next_run() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", SLEEPER)]);
    let mut child = spawn_run(project.path(), home.path());
    let pid = child.id();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for_line(&lines, "sleeper | started", &mut seen);

    child.kill().expect("SIGKILL cargo-glci");
    let _ = child.wait();
    // The dead run's job container, service container and network are still there...
    let left = objects_of(pid);
    assert!(
        left.len() >= 3,
        "expected the killed run's objects, found {left:?}"
    );

    // ...until the next run in the same data directory starts.
    let quick = temp_project(None, &[(".gitlab-ci.yml", QUICK)]);
    let out = run(
        glci_bin!(),
        quick.path(),
        &["run", "-q"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(objects_of(pid), Vec::<String>::new());
}

#[test]
fn ctrl_c_cancels_runs_after_script_exits_non_zero_and_leaves_nothing() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", SLEEPER)]);
    let mut child = spawn_run(project.path(), home.path());
    let pid = child.id();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for_line(&lines, "sleeper | started", &mut seen);

    let started = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(60));
    seen.extend(lines.try_iter());
    let text = seen.join("\n");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the cancel waited for the sleep: {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("sleeper | after_script ran: canceled"),
        "{text}"
    );
    assert!(!text.contains("woke up"), "{text}");
    assert_eq!(objects_of(pid), Vec::<String>::new());
}
