//! Docker-in-Docker jobs on a real engine, with the fixture images `glci-fixture/docker:dind`
//! and `glci-fixture/docker:cli` (built here when missing: `scripts/fixture-images docker
//! docker-cli`, about 5 minutes for the daemon image). On this machine's engine
//! `--privileged` is refused, so each test also covers the fall-back to the capability set.
//!
//! The inner daemons have no images and no registry is reachable: the base image of the
//! `docker build` comes through the daemon's registry mirror, glci's registry, whose last
//! upstream is the engine the job runs on.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use glci_test::pipeline::{PipelineOptions, Quiet, RunOptions, RunReport, Session};
use glci_test::plan::status::Status;

const DIND_IMAGE: &str = "glci-fixture/docker:dind";
const CLI_IMAGE: &str = "glci-fixture/docker:cli";

pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the DinD and CLI fixture images when missing (once per test process).
fn ensure_fixtures() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let missing = [DIND_IMAGE, CLI_IMAGE].iter().any(|image| {
            !Command::new("docker")
                .args(["image", "inspect", image])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if missing {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fixture-images");
            run(Command::new(script).args(["docker", "docker-cli"]));
        }
    });
}

/// A committed project with `pipeline` as its `.gitlab-ci.yml`.
pub(crate) fn project(pipeline: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".gitlab-ci.yml"), pipeline).unwrap();
    let git = |args: &[&str]| crate::support::git(dir.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one"]);
    dir
}

/// Runs the whole pipeline in a fresh glci home; returns the report and the owner ids of the
/// run's Docker objects (from the jobs' `Running on glci-<owner>-job-…` lines).
pub(crate) async fn run_pipeline(project: &Path) -> (RunReport, Vec<String>) {
    ensure_fixtures();
    let home = tempfile::tempdir().unwrap();
    let options = RunOptions {
        home: Some(home.path().to_path_buf()),
        concurrency: 2,
        ..RunOptions::default()
    };
    let session = Session::start(&PipelineOptions::new(project), options, Arc::new(Quiet))
        .await
        .expect("session");
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    let mut owners: Vec<String> = report
        .jobs
        .iter()
        .filter_map(|j| {
            j.log.lines().find_map(|l| {
                let at = l.find("Running on glci-")? + "Running on glci-".len();
                let name = &l[at..];
                Some(name.split('-').next()?.to_string())
            })
        })
        .collect();
    owners.sort();
    owners.dedup();
    (report, owners)
}

/// Containers, networks and volumes of `owner` still on the engine.
fn left_behind(owner: &str) -> String {
    let filter = format!("label=io.glci.owner={owner}");
    let mut left = String::new();
    for what in [
        &["ps", "-a", "-q"][..],
        &["network", "ls", "-q"][..],
        &["volume", "ls", "-q"][..],
    ] {
        left += &run(Command::new("docker")
            .args(what)
            .args(["--filter", &filter]));
    }
    left
}

pub(crate) fn assert_clean(owners: &[String]) {
    assert!(!owners.is_empty(), "no job said where it ran");
    for owner in owners {
        let left = left_behind(owner);
        assert!(left.trim().is_empty(), "left behind by {owner}: {left}");
    }
}

/// Removes the given local tags when the test ends, passing or not.
pub(crate) struct Untag(pub(crate) Vec<String>);
impl Drop for Untag {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
    }
}

/// The issue's core scenario: build in DinD with TLS, run it, push it to the pipeline's
/// registry (trusted inside DinD through the CA glci puts in its `certs.d`), and run a later
/// job in that image.
#[tokio::test(flavor = "multi_thread")]
async fn dind_with_tls_builds_runs_and_pushes_an_image_a_later_job_uses() {
    let project = project(
        r#"
stages: [build, use]
build:
  stage: build
  image: glci-fixture/docker:cli
  services:
    - name: glci-fixture/docker:dind
      alias: docker
  variables:
    DOCKER_TLS_CERTDIR: /certs
  script:
    - echo "host=$DOCKER_HOST verify=$DOCKER_TLS_VERIFY certs=$DOCKER_CERT_PATH"
    - echo "client files:" $(ls /certs/client)
    # The inner daemon has no images: the base comes through its registry mirror, glci's
    # registry, whose last upstream is the engine this job runs on.
    - printf 'FROM glci-fixture/busybox:latest\nRUN echo built-in-dind > /built\nCMD ["cat", "/built"]\n' > Dockerfile
    - docker build -q -t dind-test:1 .
    - docker run --rm dind-test:1
    - echo "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"
    - docker tag dind-test:1 "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA"
    - docker push "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA"
use:
  stage: use
  image: $CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA
  variables:
    GIT_STRATEGY: none
  script:
    - echo "pulled=$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA"
    - echo "from the pushed image=$(cat /built)"
"#,
    );
    let (report, owners) = run_pipeline(project.path()).await;
    let used = report.job("use").unwrap();
    let _untag = Untag(
        used.log
            .lines()
            .filter_map(|l| l.strip_prefix("pulled="))
            .map(str::to_string)
            .collect(),
    );
    let job = report.job("build").unwrap();
    assert_eq!(job.status, Status::Success, "{}", job.log);
    assert!(
        job.log
            .contains("host=tcp://docker:2376 verify=1 certs=/certs/client"),
        "{}",
        job.log
    );
    assert!(
        job.log.contains("client files: ca.pem cert.pem key.pem"),
        "{}",
        job.log
    );
    // The output of the image built and run inside the job's own daemon.
    assert!(
        job.log.lines().any(|l| l.trim() == "built-in-dind"),
        "{}",
        job.log
    );
    assert!(job.log.contains("is ready (daemon"), "{}", job.log);
    // This engine refuses --privileged: the job ran with the capability set.
    assert!(
        job.log.contains("Docker-in-Docker runs with the capability set instead")
            || job.log.contains(
                "runs Docker-in-Docker with the capability set (the engine refused --privileged before)"
            ),
        "{}",
        job.log
    );
    assert_eq!(used.status, Status::Success, "{}", used.log);
    assert!(
        used.log.contains("from the pushed image=built-in-dind"),
        "{}",
        used.log
    );
    assert_clean(&owners);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_dind_jobs_without_tls_each_see_their_own_daemon() {
    let job = |name: &str| {
        format!(
            r#"
{name}:
  image: glci-fixture/docker:cli
  services:
    - name: glci-fixture/docker:dind
      alias: docker
  variables:
    DOCKER_TLS_CERTDIR: ""
  script:
    - echo "host=$DOCKER_HOST verify=[$DOCKER_TLS_VERIFY]"
    - docker volume create only-{name} >/dev/null
    - sleep 2
    - echo "id=$(docker info --format '{{{{.ID}}}}')"
    - echo "volumes=$(docker volume ls -q | tr '\n' ' ')"
"#
        )
    };
    let project = project(&(job("one") + &job("two")));
    let (report, owners) = run_pipeline(project.path()).await;
    let mut ids = Vec::new();
    for (name, other) in [("one", "two"), ("two", "one")] {
        let job = report.job(name).unwrap();
        assert_eq!(job.status, Status::Success, "{}", job.log);
        assert!(
            job.log.contains("host=tcp://docker:2375 verify=[]"),
            "{}",
            job.log
        );
        let id = job
            .log
            .lines()
            .find_map(|l| l.strip_prefix("id="))
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| panic!("no daemon id in {}", job.log))
            .to_string();
        ids.push(id);
        let volumes = job
            .log
            .lines()
            .find_map(|l| l.strip_prefix("volumes="))
            .unwrap_or_default();
        assert!(volumes.contains(&format!("only-{name}")), "{}", job.log);
        assert!(!volumes.contains(&format!("only-{other}")), "{}", job.log);
    }
    assert_ne!(ids[0], ids[1], "both jobs talked to one daemon");
    assert_clean(&owners);
}

/// A job the executor runs without a server (GIT_STRATEGY none, no artifacts).
mod without_server {
    use std::time::Duration;

    use glci_test::docker::{count_labelled, Engine, Owner, LABEL_OWNER};
    use glci_test::runner::api::ApiError;
    use glci_test::runner::dind::{DindOptions, DindPrivileges};
    use glci_test::runner::executor::{execute, ExecutorOptions, JobIo, JobOutcome};
    use glci_test::runner::payload::{Artifact, Dependency, JobPayload};
    use glci_test::runner::privileges::forget_privileges;
    use glci_test::runner::trace::{Masker, Trace};
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    struct NoIo;

    impl JobIo for NoIo {
        async fn download_artifacts(&self, d: &Dependency) -> Result<Vec<u8>, ApiError> {
            panic!("unexpected artifact download for {}", d.name)
        }
        async fn upload_artifacts(&self, a: &Artifact, _zip: Vec<u8>) -> Result<(), ApiError> {
            panic!("unexpected artifact upload of {}", a.name)
        }
    }

    fn payload(service: serde_json::Value) -> JobPayload {
        serde_json::from_value(json!({
            "id": 7, "token": "glcbt-jobtoken123",
            "job_info": {"name": "dind", "stage": "test", "project_full_path": "acme/demo"},
            "git_info": {"repo_url": "http://127.0.0.1:1/acme/demo.git", "ref": "main",
                         "sha": "0123456789abcdef0123456789abcdef01234567", "refspecs": [],
                         "depth": 20},
            "runner_info": {"timeout": 60},
            "image": {"name": "glci-fixture/busybox:latest"},
            "services": [service],
            "variables": [{"key": "GIT_STRATEGY", "value": "none", "public": true}],
            "steps": [{"name": "script", "script": ["echo script ran"], "when": "on_success"}],
            "features": {"trace_sections": true}
        }))
        .unwrap()
    }

    /// Runs the job; asserts nothing of it is left (containers, networks, volumes).
    async fn run(payload: &JobPayload, options: &ExecutorOptions) -> (JobOutcome, String) {
        super::ensure_fixtures();
        let engine = Engine::connect().await.expect("a Docker engine");
        let owner = Owner::for_this_process("dind-test");
        let trace = Trace::new(Masker::new(std::iter::empty()), true);
        let outcome = execute(
            &engine,
            &owner,
            payload,
            &NoIo,
            &trace,
            options,
            &CancellationToken::new(),
        )
        .await;
        let left = count_labelled(&engine, &format!("{LABEL_OWNER}={}", owner.id))
            .await
            .unwrap();
        assert!(left.is_empty(), "left behind: {left:?}");
        (outcome, String::from_utf8(trace.bytes()).unwrap())
    }

    /// This engine refuses `--privileged`: the first DinD service after the engine's memo is
    /// forgotten tries it, falls back to the capability set, and the memo says so after.
    #[tokio::test]
    async fn privileged_refused_falls_back_to_the_capability_set_and_remembers() {
        let engine = Engine::connect().await.expect("a Docker engine");
        forget_privileges(&engine).await;
        let job = payload(json!({"name": super::DIND_IMAGE, "alias": "docker"}));
        let (outcome, log) = run(&job, &ExecutorOptions::default()).await;
        assert!(outcome.success, "{log}");
        assert!(log.contains("the engine refuses --privileged ("), "{log}");
        assert!(log.contains("unable to apply caps"), "{log}");
        assert!(
            log.contains("Docker-in-Docker runs with the capability set instead"),
            "{log}"
        );
        assert!(log.contains("script ran"), "{log}");
        let memo = engine
            .client()
            .inspect_volume("glci-dind-privileges")
            .await
            .expect("the engine remembers");
        assert_eq!(
            memo.labels
                .get("io.glci.dind-privileges")
                .map(String::as_str),
            Some("capabilities")
        );
    }

    /// Where `--privileged` is the only allowed way (a runner configured so) and the engine
    /// refuses it, the job fails saying why, before its script.
    #[tokio::test]
    async fn a_refused_privileged_start_fails_the_job_saying_why() {
        let options = ExecutorOptions {
            dind: DindOptions {
                privileges: DindPrivileges::Privileged,
                ..DindOptions::from_setting(None)
            },
            ..ExecutorOptions::default()
        };
        let job = payload(json!({"name": super::DIND_IMAGE, "alias": "docker"}));
        let (outcome, log) = run(&job, &options).await;
        assert!(!outcome.success, "{log}");
        assert_eq!(
            outcome.failure_reason.as_deref(),
            Some("runner_system_failure")
        );
        assert!(
            log.contains("cannot start on this engine: it refuses --privileged"),
            "{log}"
        );
        assert!(log.contains("unable to apply caps"), "{log}");
        assert!(!log.contains("script ran"), "{log}");
    }

    /// A daemon that never answers ends the job at the services timeout, naming the service
    /// and the last error.
    #[tokio::test]
    async fn a_daemon_that_never_answers_fails_the_job_at_the_timeout() {
        let options = ExecutorOptions {
            services_timeout: Duration::from_secs(3),
            ..ExecutorOptions::default()
        };
        let job = payload(json!({
            "name": super::DIND_IMAGE, "alias": "docker", "command": ["sleep", "60"]
        }));
        let started = std::time::Instant::now();
        let (outcome, log) = run(&job, &options).await;
        assert!(!outcome.success, "{log}");
        assert!(
            log.contains(&format!(
                "Docker-in-Docker service `{}` did not answer `docker info` within",
                super::DIND_IMAGE
            )),
            "{log}"
        );
        assert!(log.contains("last error: "), "{log}");
        assert!(!log.contains("script ran"), "{log}");
        assert!(started.elapsed() < Duration::from_secs(20), "{log}");
    }
}
