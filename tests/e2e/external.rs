//! `cargo glci run --runner external`: the server waits for a runner that is not glci's
//! built-in one. Here the runner is a second process (`cargo glci runner`) that registers with
//! the printed registration token, exactly as an official gitlab-runner would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use glci_e2e::{glci_bin, temp_project};

const PIPELINE: &str = r#"
default:
  image: glci-fixture/busybox:latest
stages: [build, test]
build:
  stage: build
  script:
    - echo "secret is $TOKEN"
    - mkdir out && echo from-build > out/file.txt
  artifacts:
    paths: [out/]
check:
  stage: test
  script:
    - cat out/file.txt
"#;

/// Docker objects created by the process `pid` (other tests may run their own meanwhile).
fn labelled_objects(pid: u32) -> usize {
    let filter = format!("label=io.glci.owner-pid={pid}");
    let count = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().expect("docker");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    count(&["ps", "-aq", "--filter", &filter])
        + count(&["network", "ls", "-q", "--filter", &filter])
}

#[test]
fn an_external_runner_registers_with_the_printed_token_and_runs_the_pipeline() {
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let home = tempfile::tempdir().unwrap();
    let mut server = Command::new(glci_bin!())
        .args([
            "glci",
            "run",
            "--runner",
            "external",
            "-q",
            "--masked-var",
            "TOKEN=hunter2-very-secret",
        ])
        .current_dir(project.path())
        .env("GLCI_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cargo glci run");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut token = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("url: ") {
            url = Some(u.to_string());
        }
        if let Some(t) = line.strip_prefix("registration-token: ") {
            token = Some(t.to_string());
        }
        if line.starts_with("cache-s3-secret-key: ") {
            break;
        }
    }
    let (url, token) = (
        url.expect("a url: line"),
        token.expect("a registration-token: line"),
    );
    assert!(url.starts_with("http://"), "{url}");
    assert!(!url.contains("0.0.0.0"), "{url}");

    let runner = Command::new(glci_bin!())
        .args([
            "runner",
            "--url",
            &url,
            "--registration-token",
            &token,
            "--max-jobs",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cargo glci runner");
    let runner_pid = runner.id();
    let runner = runner.wait_with_output().unwrap();
    assert!(
        runner.status.success(),
        "runner: {}",
        String::from_utf8_lossy(&runner.stderr)
    );

    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = server.wait().unwrap();
    let summary = rest.join("\n");
    assert!(status.success(), "run: {summary}");
    assert!(summary.contains("build"), "{summary}");
    assert!(summary.contains("passed"), "{summary}");

    let log = std::fs::read_to_string(home.path().join("pipelines/1/jobs/build/job.log")).unwrap();
    assert!(log.contains("secret is [MASKED]"), "{log}");
    assert!(!log.contains("hunter2-very-secret"), "{log}");
    let check =
        std::fs::read_to_string(home.path().join("pipelines/1/jobs/check/job.log")).unwrap();
    assert!(check.contains("from-build"), "{check}");

    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        labelled_objects(runner_pid),
        0,
        "the runner left Docker objects"
    );
    assert_eq!(
        labelled_objects(server.id()),
        0,
        "the run left Docker objects"
    );
}

#[test]
fn a_wrong_registration_token_is_refused() {
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let home = tempfile::tempdir().unwrap();
    let mut server = Command::new(glci_bin!())
        .args(["glci", "run", "--runner", "external", "-q"])
        .current_dir(project.path())
        .env("GLCI_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find_map(|l| l.strip_prefix("url: ").map(str::to_string))
        .unwrap();
    let runner = Command::new(glci_bin!())
        .args([
            "runner",
            "--url",
            &url,
            "--registration-token",
            "GR1348941wrong",
        ])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(!runner.status.success());
    let err = String::from_utf8_lossy(&runner.stderr);
    assert!(err.contains("403") || err.contains("401"), "{err}");
}

/// `cargo glci runner` hears SIGTERM as a Ctrl-C: the running job is canceled (its
/// after_script runs), everything the runner made is removed, the exit status is SIGTERM's.
#[test]
fn sigterm_stops_the_runner_and_leaves_nothing() {
    let sleeper = "sleeper:\n  image: glci-fixture/busybox:latest\n  services: [glci-fixture/tcp-service:latest]\n  script: [echo started, sleep 30]\n  after_script: [echo after]\n";
    let project = temp_project(None, &[(".gitlab-ci.yml", sleeper)]);
    let home = tempfile::tempdir().unwrap();
    let mut server = Command::new(glci_bin!())
        .args(["run", "--runner", "external", "-q"])
        .current_dir(project.path())
        .env("GLCI_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cargo glci run");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let (mut url, mut token) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("url: ") {
            url = u.to_string();
        }
        if let Some(t) = line.strip_prefix("registration-token: ") {
            token = t.to_string();
        }
        if line.starts_with("cache-s3-secret-key: ") {
            break;
        }
    }
    let mut runner = Command::new(glci_bin!())
        .args(["runner", "--url", &url, "--registration-token", &token])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cargo glci runner");
    let pid = runner.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while labelled_objects(pid) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(labelled_objects(pid) >= 3, "the job never started");
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let started = std::time::Instant::now();
    let status = runner.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(143));
    assert_eq!(labelled_objects(pid), 0, "the runner left Docker objects");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
}
