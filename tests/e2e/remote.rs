//! `cargo glci run` against a second Docker engine reached over tcp (Docker in Docker, from
//! the `glci-fixture/docker:dind` fixture image, its API published on loopback only): jobs
//! reach the stand-in GitLab through the relay container, with no port of this machine
//! reachable from that engine. A job's `git fetch`, concurrent clones of a 16 MiB file,
//! `curl $CI_API_V4_URL/job`, artifacts, dotenv and cache must all work there, and the run
//! must leave no container or network behind on that engine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

const DIND_IMAGE: &str = "glci-fixture/docker:dind";
const FIXTURES: [&str; 3] = [
    "glci-fixture/debian:bookworm",
    "glci-fixture/busybox:latest",
    "glci-fixture/tcp-service:latest",
];

const PIPELINE: &str = r#"stages: [build, test]
build:
  stage: build
  image: glci-fixture/debian:bookworm
  cache: {key: relay, paths: [cached/]}
  script:
    - echo "api is $CI_API_V4_URL"
    - git fetch origin && echo fetch-ok
    # Two clones at once, 16 MiB each, through the relay.
    - git clone -q "$CI_REPOSITORY_URL" /tmp/a & git clone -q "$CI_REPOSITORY_URL" /tmp/b & wait
    - cmp /tmp/a/big.bin big.bin && cmp /tmp/b/big.bin big.bin && echo clones-ok
    # The job-token API: this job, as GitLab shows it.
    - 'curl -sSf -H "JOB-TOKEN: $CI_JOB_TOKEN" "$CI_API_V4_URL/job" | grep -q "\"name\":\"build\"" && echo job-api-ok'
    - mkdir -p out cached && echo built > out/result.txt && echo kept > cached/c.txt
    - echo VERSION=1.2.3 > build.env
  artifacts:
    paths: [out/]
    reports: {dotenv: build.env}
test:
  stage: test
  image: glci-fixture/debian:bookworm
  # A service gives the job a network of its own, which the relay joins.
  services: [glci-fixture/tcp-service:latest]
  cache: {key: relay, paths: [cached/]}
  script:
    - test "$VERSION" = 1.2.3 && echo dotenv-ok
    - cat out/result.txt cached/c.txt
    - git fetch origin && echo fetch-on-job-network-ok
"#;

/// The DinD container; removed (with its volumes) when dropped, also when the test fails.
struct Dind {
    id: String,
}

impl Drop for Dind {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn docker(args: &[&str], host: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    if let Some(host) = host {
        cmd.env("DOCKER_HOST", host);
    }
    cmd.output().expect("run docker")
}

fn sh(script: &str) -> std::process::Output {
    Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("run sh")
}

/// The fixture image with dockerd, built when missing; `None` when it cannot be built here.
fn dind_image() -> Option<()> {
    if docker(&["image", "inspect", DIND_IMAGE], None)
        .status
        .success()
    {
        return Some(());
    }
    let script = glci_e2e::repo_root().join("scripts/fixture-images");
    let built = Command::new(script).arg("docker").output().ok()?;
    if !built.status.success() {
        eprintln!(
            "SKIPPED: the {DIND_IMAGE} image could not be built (scripts/fixture-images docker): {}",
            String::from_utf8_lossy(&built.stderr).trim()
        );
        return None;
    }
    Some(())
}

/// Starts DinD with glci's capability set (`--privileged` is refused on some hosts), its API
/// on a loopback port of this machine only, labelled as a glci object of this process so
/// glci's orphan cleanup removes it if the test dies.
fn start_dind() -> (Dind, String) {
    let labels = glci_test::docker::Owner::for_this_process("remote-engine-test").labels();
    let mut args: Vec<String> = ["run", "-d", "-p", "127.0.0.1::2375"]
        .map(str::to_string)
        .to_vec();
    args.extend(glci_test::runner::dind::capability_set_flags());
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(
        [
            DIND_IMAGE,
            "dockerd",
            "--host=unix:///var/run/docker.sock",
            "--host=tcp://0.0.0.0:2375",
            "--tls=false",
        ]
        .map(str::to_string),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker(&args, None);
    assert!(out.status.success(), "docker run dind: {}", stderr(&out));
    let dind = Dind {
        id: stdout(&out).trim().to_string(),
    };
    let port = docker(&["port", &dind.id, "2375/tcp"], None);
    let port = stdout(&port)
        .lines()
        .find_map(|l| l.strip_prefix("127.0.0.1:").map(str::to_string))
        .expect("the engine's port is published on loopback");
    let host = format!("tcp://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !docker(&["version"], Some(&host)).status.success() {
        assert!(
            Instant::now() < deadline,
            "the DinD engine did not answer at {host}: {}",
            stdout(&docker(&["logs", "--tail", "20", &dind.id], None))
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    (dind, host)
}

/// Pseudo-random bytes (incompressible, so git moves all of them).
/// `cargo glci run` of `project` on the remote engine `host` with `home` as `GLCI_HOME`;
/// its output, once it passed.
fn run_on(host: &str, project: &Path, home: &Path) -> String {
    let out = run(
        glci_bin!(),
        project,
        &["run"],
        &[("DOCKER_HOST", host), ("GLCI_HOME", home.to_str().unwrap())],
    );
    let text = format!("{}\n{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    text
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn jobs_on_a_remote_engine_reach_the_server_through_the_relay() {
    if dind_image().is_none() {
        return;
    }
    let (dind, host) = start_dind();
    let load = sh(&format!(
        "docker save {} | DOCKER_HOST={host} docker load -q",
        FIXTURES.join(" ")
    ));
    assert!(load.status.success(), "docker load: {}", stderr(&load));

    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    // Untracked: glci's snapshot takes the working tree as it is.
    std::fs::write(project.path().join("big.bin"), noise(16 * 1024 * 1024)).unwrap();
    let home = tempfile::tempdir().unwrap();
    let text = run_on(&host, project.path(), home.path());
    for marker in [
        "api is http://glci-server:",
        "fetch-ok",
        "clones-ok",
        "job-api-ok",
        "dotenv-ok",
        "built",
        "kept",
        "fetch-on-job-network-ok",
    ] {
        assert!(text.contains(marker), "no `{marker}` in:\n{text}");
    }

    // Nothing of the run is left on that engine; the relay image stays, labelled.
    let left = docker(
        &["ps", "-a", "-q", "--filter", "label=io.glci.pipeline"],
        Some(&host),
    );
    assert_eq!(stdout(&left).trim(), "", "containers left behind");
    let left = docker(
        &["network", "ls", "-q", "--filter", "label=io.glci.pipeline"],
        Some(&host),
    );
    assert_eq!(stdout(&left).trim(), "", "networks left behind");
    let images = docker(
        &["images", "-q", "--filter", "label=io.glci.relay-agent"],
        Some(&host),
    );
    assert_eq!(stdout(&images).lines().count(), 1, "one relay image");
    drop(dind);
    assert!(Path::new(home.path()).join("pipelines/1").is_dir());
}

#[test]
fn a_container_host_names_the_relay_on_a_remote_engine() {
    const NAMED: &str = r#"direct:
  image: glci-fixture/debian:bookworm
  script:
    - echo "api is $CI_API_V4_URL"
    - git fetch origin && echo fetch-ok
    - 'curl -sSf -H "JOB-TOKEN: $CI_JOB_TOKEN" "$CI_API_V4_URL/job" | grep -q "\"name\":\"direct\"" && echo job-api-ok'
networked:
  image: glci-fixture/debian:bookworm
  services: [glci-fixture/tcp-service:latest]
  script:
    - git fetch origin && echo fetch-on-job-network-ok
"#;
    if dind_image().is_none() {
        return;
    }
    let (_dind, host) = start_dind();
    let load = sh(&format!(
        "docker save {} {} | DOCKER_HOST={host} docker load -q",
        FIXTURES[0], FIXTURES[2]
    ));
    assert!(load.status.success(), "docker load: {}", stderr(&load));
    let project = temp_project(None, &[(".gitlab-ci.yml", NAMED)]);
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("config.toml"),
        "[network]\ncontainer_host = \"gitlab.test\"\n",
    )
    .unwrap();
    let text = run_on(&host, project.path(), home.path());
    for marker in [
        "api is http://gitlab.test:",
        "fetch-ok",
        "job-api-ok",
        "fetch-on-job-network-ok",
    ] {
        assert!(text.contains(marker), "no `{marker}` in:\n{text}");
    }
}
