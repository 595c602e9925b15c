//! Buildx in Docker-in-Docker jobs on a real engine, with `glci-fixture/docker:buildx` (the
//! docker CLI fixture plus Debian's buildx plugin; `scripts/fixture-images docker-buildx`,
//! built here when missing) and the DinD fixture.
//!
//! What runs offline here: the `docker` driver (the inner daemon's own BuildKit), and
//! `docker buildx create`, which records a `docker-container` builder without starting it
//! (starting one pulls `moby/buildkit`, which is not on this machine).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use glci_test::pipeline::{PipelineOptions, Quiet, RunOptions, Session};
use glci_test::plan::status::Status;

use super::run_dind::{assert_clean, project, run, run_pipeline, Untag};

const BUILDX_IMAGE: &str = "glci-fixture/docker:buildx";
/// The buildx fixture with builder state baked in under both home directories a job may have
/// (`/` when the image has no passwd entry, else `/root`), naming a daemon of another machine.
const STALE_IMAGE: &str = "glci-fixture/docker:buildx-stale-state";

/// Builds the buildx fixture and the image with stale builder state when missing (labelled
/// as a fixture, `io.glci.fixture`).
fn ensure_images() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fixture-images");
        run(Command::new(script).arg("docker-buildx"));
        let present = Command::new("docker")
            .args(["image", "inspect", STALE_IMAGE])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            return;
        }
        let ctx = tempfile::tempdir().unwrap();
        let stale = r#"{"Name":"stale","Driver":"docker-container","Nodes":[{"Name":"stale0","Endpoint":"tcp://elsewhere:2376"}]}"#;
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM {BUILDX_IMAGE}\n\
                 RUN for home in / /root; do mkdir -p $home/.docker/buildx/instances \
                 && echo '{stale}' > $home/.docker/buildx/instances/stale; done\n"
            ),
        )
        .unwrap();
        run(Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "--label", "io.glci.fixture=docker-buildx"])
            .args(["-t", STALE_IMAGE])
            .arg(ctx.path()));
    });
}

/// The value after `key=` on a line of `log`.
fn value<'a>(log: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    log.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= line in {log}"))
}

fn decoded(files: &serde_json::Value, name: &str) -> Vec<u8> {
    let text = files[name]
        .as_str()
        .unwrap_or_else(|| panic!("no file {name} in the builder's state: {files}"));
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// `docker buildx create` in a DinD job records a builder whose BuildKit configuration trusts
/// the pipeline's registry with glci's CA and mirrors Docker Hub through it; builder state
/// baked into the image is not seen; and a container on the network such a builder gets
/// (the inner daemon's default bridge) reaches the registry.
#[tokio::test(flavor = "multi_thread")]
async fn buildx_create_in_dind_gets_a_configuration_trusting_the_registry() {
    ensure_images();
    let project = project(&format!(
        r#"
create:
  image: {STALE_IMAGE}
  services:
    - name: glci-fixture/docker:dind
      alias: docker
  variables:
    DOCKER_TLS_CERTDIR: /certs
  script:
    - echo "registry=$CI_REGISTRY"
    - echo "config-dir-mode=$(stat -c %a "$BUILDX_CONFIG")"
    - echo "ca=$(base64 -w0 /etc/glci/registry-ca.crt)"
    - echo "builders=$(docker buildx ls | tr '\n' ' ')"
    # buildx makes no builder from TLS settings in the environment: a context first, as
    # GitLab's documentation says.
    - docker context create tls-env
    - docker buildx create --name b tls-env
    - echo "state=$(cat "$BUILDX_CONFIG/instances/b")"
    - docker run --rm glci-fixture/busybox:latest sh -c "echo | nc -w 5 ${{CI_REGISTRY%:*}} ${{CI_REGISTRY#*:}} >/dev/null && echo registry-reachable"
"#
    ));
    let (report, owners) = run_pipeline(project.path()).await;
    let job = report.job("create").unwrap();
    assert_eq!(job.status, Status::Success, "{}", job.log);
    let log = &job.log;
    let builders = value(log, "builders");
    assert!(builders.contains("default"), "{log}");
    assert!(
        !builders.contains("stale"),
        "the image's builder state was used: {log}"
    );

    // Writable by any user the job may run as: buildx keeps its state there.
    assert_eq!(value(log, "config-dir-mode"), "1777", "{log}");
    let registry = value(log, "registry");
    let state: serde_json::Value = serde_json::from_str(value(log, "state")).unwrap();
    let node = &state["Nodes"][0];
    assert_eq!(node["Endpoint"], "tls-env", "{state}");
    let files = &node["Files"];
    let text = String::from_utf8(decoded(files, "buildkitd.toml")).unwrap();
    let config: toml::Table = text.parse().unwrap();
    let cert_dir = registry.replace(':', "_");
    assert_eq!(
        config["registry"][registry]["ca"][0].as_str(),
        Some(format!("/etc/buildkit/certs/{cert_dir}/registry-ca.crt").as_str()),
        "{text}"
    );
    assert_eq!(
        config["registry"]["docker.io"]["mirrors"][0].as_str(),
        Some(registry),
        "{text}"
    );
    let ca = decoded(files, &format!("certs/{cert_dir}/registry-ca.crt"));
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(ca),
        value(log, "ca"),
        "the builder carries glci's CA"
    );
    assert!(
        log.lines().any(|l| l.trim() == "registry-reachable"),
        "{log}"
    );
    assert_clean(&owners);
}

/// `docker buildx build --push` with the default (`docker`) driver, the inner daemon's own
/// BuildKit, pushes to the pipeline's registry; a later job runs the image.
#[tokio::test(flavor = "multi_thread")]
async fn buildx_build_pushes_from_dind_and_a_later_job_runs_the_image() {
    ensure_images();
    let project = project(&format!(
        r#"
stages: [build, use]
build:
  stage: build
  image: {BUILDX_IMAGE}
  services:
    - name: glci-fixture/docker:dind
      alias: docker
  variables:
    DOCKER_TLS_CERTDIR: /certs
  script:
    - printf 'FROM glci-fixture/busybox:latest\nRUN echo built-by-buildx > /built\n' > Dockerfile
    - echo "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"
    - docker buildx build --push -t "$CI_REGISTRY_IMAGE/buildx:$CI_COMMIT_SHORT_SHA" .
use:
  stage: use
  image: $CI_REGISTRY_IMAGE/buildx:$CI_COMMIT_SHORT_SHA
  variables:
    GIT_STRATEGY: none
  script:
    - echo "pulled=$CI_REGISTRY_IMAGE/buildx:$CI_COMMIT_SHORT_SHA"
    - echo "from the pushed image=$(cat /built)"
"#
    ));
    let (report, owners) = run_pipeline(project.path()).await;
    let used = report.job("use").unwrap();
    let _untag = Untag(
        used.log
            .lines()
            .filter_map(|l| l.strip_prefix("pulled="))
            .map(str::to_string)
            .collect(),
    );
    let build = report.job("build").unwrap();
    assert_eq!(build.status, Status::Success, "{}", build.log);
    assert!(
        build
            .log
            .contains("building with \"default\" instance using docker driver"),
        "{}",
        build.log
    );
    assert_eq!(used.status, Status::Success, "{}", used.log);
    assert!(
        used.log.contains("from the pushed image=built-by-buildx"),
        "{}",
        used.log
    );
    assert_clean(&owners);
}

/// With the engine's socket: `docker buildx create` records a builder whose configuration also
/// lets BuildKit reach `CI_REGISTRY` (the loopback listener) over plain HTTP, and
/// `docker buildx build --push` with the default driver (this machine's engine) pushes to it;
/// a later job runs the image.
#[tokio::test(flavor = "multi_thread")]
async fn buildx_with_the_engines_socket_pushes_and_its_builders_reach_the_loopback_registry() {
    ensure_images();
    let builder = format!("glci-test-{}", std::process::id());
    let project = project(&format!(
        r#"
stages: [build, use]
build:
  stage: build
  image: {BUILDX_IMAGE}
  script:
    - echo "registry=$CI_REGISTRY"
    - docker buildx create --name {builder}
    - echo "state=$(cat "$BUILDX_CONFIG/instances/{builder}")"
    - printf 'FROM glci-fixture/busybox:latest\nRUN echo built-by-buildx > /built\n' > Dockerfile
    - echo "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"
    - docker buildx build --push -t "$CI_REGISTRY_IMAGE/buildx:$CI_COMMIT_SHORT_SHA" .
    - echo "pushed=$CI_REGISTRY_IMAGE/buildx:$CI_COMMIT_SHORT_SHA"
use:
  stage: use
  image: $CI_REGISTRY_IMAGE/buildx:$CI_COMMIT_SHORT_SHA
  variables:
    GIT_STRATEGY: none
  script:
    - echo "from the pushed image=$(cat /built)"
"#
    ));
    let home = tempfile::tempdir().unwrap();
    let options = RunOptions {
        home: Some(home.path().to_path_buf()),
        docker_socket: true,
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
    let build = report.job("build").unwrap();
    // The host engine keeps the image it built and the one the next job ran: one tag.
    let _untag = Untag(
        build
            .log
            .lines()
            .filter_map(|l| l.strip_prefix("pushed="))
            .map(str::to_string)
            .collect(),
    );
    assert_eq!(build.status, Status::Success, "{}", build.log);
    let registry = value(&build.log, "registry");
    assert!(registry.starts_with("127.0.0.1:"), "{}", build.log);
    let state: serde_json::Value = serde_json::from_str(value(&build.log, "state")).unwrap();
    let text = String::from_utf8(decoded(&state["Nodes"][0]["Files"], "buildkitd.toml")).unwrap();
    let config: toml::Table = text.parse().unwrap();
    assert_eq!(
        config["registry"][registry]["http"].as_bool(),
        Some(true),
        "{text}"
    );
    let used = report.job("use").unwrap();
    assert_eq!(used.status, Status::Success, "{}", used.log);
    assert!(
        used.log.contains("from the pushed image=built-by-buildx"),
        "{}",
        used.log
    );
}
