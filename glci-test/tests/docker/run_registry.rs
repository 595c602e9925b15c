//! A pipeline against the registry: images pushed in one run persist in `GLCI_HOME/registry`,
//! and a later run's job runs in `image: $CI_REGISTRY_IMAGE/...`, which glci's runner pulls
//! from a server that did not exist when it was pushed, with the job's own credentials.

use std::process::Command;
use std::sync::Arc;

use glci_test::pipeline::{self, PipelineOptions, Quiet, RunOptions, Session};
use glci_test::plan::status::Status;
use glci_test::server::{Server, ServerConfig};

const PIPELINE: &str = r#"
use:
  image: $CI_REGISTRY_IMAGE/busybox:persisted
  variables:
    GIT_STRATEGY: none
  script:
    - echo "image=$CI_REGISTRY_IMAGE user=$CI_REGISTRY_USER"
"#;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the given local tags when the test ends, passing or not.
struct Untag(std::sync::Mutex<Vec<String>>);
impl Drop for Untag {
    fn drop(&mut self) {
        for tag in self.0.lock().unwrap().iter() {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_in_an_image_from_the_registry_of_an_earlier_run() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), PIPELINE).unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(project.path())
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args))
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one"]);
    let home = tempfile::tempdir().unwrap();
    let untag = Untag(std::sync::Mutex::new(Vec::new()));

    // An earlier "run": a server on the same GLCI_HOME/registry gets the image pushed.
    let planned = pipeline::plan(&PipelineOptions::new(project.path())).unwrap();
    let path = planned
        .predefined
        .iter()
        .find(|(k, _)| k == "CI_PROJECT_PATH")
        .map(|(_, v)| v.to_lowercase())
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(scratch.path().join("data"));
    config.registry.dir = Some(home.path().join("registry"));
    let server = Server::start(config).await.unwrap();
    let creds = server.registry_credentials();
    let pushed = format!("{}/{path}/busybox:persisted", creds.address);
    untag.0.lock().unwrap().push(pushed.clone());
    let docker_config = scratch.path().join("docker");
    let push = {
        let (pushed, docker_config) = (pushed.clone(), docker_config.clone());
        tokio::task::spawn_blocking(move || {
            let docker = || {
                let mut c = Command::new("docker");
                c.env("DOCKER_CONFIG", &docker_config);
                c
            };
            run(docker().args([
                "login",
                &creds.address,
                "-u",
                &creds.username,
                "-p",
                &creds.password,
            ]));
            run(docker().args(["tag", "glci-fixture/busybox:latest", &pushed]));
            run(docker().args(["push", &pushed]));
            run(docker().args(["rmi", &pushed]));
        })
    };
    push.await.unwrap();
    server.shutdown().await;

    let options = RunOptions {
        home: Some(home.path().to_path_buf()),
        ..RunOptions::default()
    };
    let session = Session::start(
        &PipelineOptions::new(project.path()),
        options,
        Arc::new(Quiet),
    )
    .await
    .expect("session");
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    let job = report.job("use").unwrap();
    let image = job
        .log
        .lines()
        .find_map(|l| l.strip_prefix("image="))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string);
    // The engine pulled it from the registry's loopback address, under that name.
    let listed = Command::new("docker")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .unwrap();
    untag.0.lock().unwrap().extend(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|l| l.ends_with(&format!("/{path}/busybox:persisted")))
            .map(str::to_string),
    );
    assert_eq!(job.status, Status::Success, "{}", job.log);
    let image = image.expect("the job printed CI_REGISTRY_IMAGE");
    // Jobs name the registry's TLS listener on the bridge, not loopback.
    assert!(!image.starts_with("127.0.0.1:"), "{image}");
    assert!(image.ends_with(&format!("/{path}")), "{image}");
    assert!(job.log.contains("user=gitlab-ci-token"), "{}", job.log);
    assert!(
        job.log
            .contains(&format!("Pulling docker image {image}/busybox:persisted")),
        "{}",
        job.log
    );
}
