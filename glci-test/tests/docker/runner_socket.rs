//! gitlab-runner's `config.toml` as glci's runner configuration, and socket passthrough: a job
//! tagged `dockerd` on the blog post's runner (the engine's socket and a builds volume at the
//! same path) runs `docker build` and `docker run -v "$CI_PROJECT_DIR:/src"` against this
//! machine's engine; jobs go to the runner whose tags they have, with its environment and
//! build scripts; what glci does not honour is said.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use glci_test::pipeline::{PipelineOptions, RunError, RunObserver, RunOptions, Session};
use glci_test::plan::status::Status;

/// An image with the docker CLI. `glci-fixture/docker:dind` has it (its entrypoint starts a
/// daemon, hence `entrypoint: [""]`); `scripts/fixture-images docker` builds it.
const DOCKER_CLI_IMAGE: &str = "glci-fixture/docker:dind";

fn commit(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "one"],
    ] {
        crate::support::git(dir, args);
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Collects the run's warnings.
#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);

impl RunObserver for Warnings {
    fn warning(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

impl Warnings {
    fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Removes what a test made through the socket, whatever happens to the test.
struct DockerLeftovers {
    images: Vec<String>,
    containers: Vec<String>,
}

impl Drop for DockerLeftovers {
    fn drop(&mut self) {
        for c in &self.containers {
            docker(&["rm", "-f", c]);
        }
        for i in &self.images {
            docker(&["rmi", "-f", i]);
        }
    }
}

async fn run(
    project: &Path,
    runner_config: &Path,
) -> (glci_test::pipeline::RunReport, Arc<Warnings>) {
    let home = tempfile::tempdir().unwrap();
    let warnings = Arc::new(Warnings::default());
    let options = RunOptions {
        home: Some(home.path().to_path_buf()),
        runner_config: Some(runner_config.to_path_buf()),
        ..RunOptions::default()
    };
    let session = Session::start(&PipelineOptions::new(project), options, warnings.clone())
        .await
        .expect("session");
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    (report, warnings)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerd_job_on_the_blog_posts_socket_runner_builds_and_shares_its_files() {
    let suffix = format!("{}-{}", std::process::id(), rand_suffix());
    let image = format!("glci-socket-test:{suffix}");
    let left = format!("glci-socket-left-{suffix}");
    let _leftovers = DockerLeftovers {
        images: vec![image.clone()],
        containers: vec![left.clone()],
    };
    let project = tempfile::tempdir().unwrap();
    let pipeline = format!(
        r#"
build:
  image:
    name: {DOCKER_CLI_IMAGE}
    entrypoint: [""]
  tags: [dockerd]
  script:
    - docker version --format 'engine {{{{.Server.Version}}}}'
    - docker build -q -t {image} docker/
    - docker run --rm {image} cat /greeting.txt
    - docker run --rm -v "$CI_PROJECT_DIR:/src" glci-fixture/busybox:latest cat /src/docker/greeting.txt
    - echo "project dir $CI_PROJECT_DIR builds dir [$CI_BUILDS_DIR]"
    - docker run -d --name {left} glci-fixture/busybox:latest sleep 120
    # The pipeline's registry through the host engine: pushed here, run by the next job.
    - echo "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"
    - docker tag {image} "$CI_REGISTRY_IMAGE/app:$CI_COMMIT_SHORT_SHA"
    - docker push -q "$CI_REGISTRY_IMAGE/app:$CI_COMMIT_SHORT_SHA"
    - docker rmi "$CI_REGISTRY_IMAGE/app:$CI_COMMIT_SHORT_SHA"

use:
  stage: test
  image: $CI_REGISTRY_IMAGE/app:$CI_COMMIT_SHORT_SHA
  tags: [dockerd]
  script:
    - cat /greeting.txt
"#
    );
    commit(
        project.path(),
        &[
            (".gitlab-ci.yml", &pipeline),
            (
                "docker/Dockerfile",
                "FROM glci-fixture/busybox:latest\nCOPY greeting.txt /greeting.txt\n",
            ),
            ("docker/greeting.txt", "hello from the project\n"),
        ],
    );
    // The second blog post's runner: the socket plus a builds volume at the same path (a
    // temporary directory standing for the post's `/builds`).
    let builds_dir = tempfile::tempdir().unwrap();
    let builds = builds_dir.path().to_str().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
concurrent = 1
check_interval = 0

[[runners]]
  name = "dockerd"
  url = "https://gitlab.example.com/"
  token = "glrt-not-a-token"
  executor = "docker"
  tags = ["dockerd"]
  builds_dir = "{builds}"
  [runners.docker]
    image = "glci-fixture/busybox:latest"
    privileged = false
    disable_cache = false
    volumes = ["/var/run/docker.sock:/var/run/docker.sock", "{builds}:{builds}", "/cache"]
    shm_size = 0
"#
        ),
    )
    .unwrap();

    let (report, warnings) = run(project.path(), &config).await;
    let job = report.job("build").unwrap();
    assert_eq!(job.status, Status::Success, "{}", job.log);
    assert!(job.log.contains("engine 2"), "{}", job.log);
    assert!(job.log.contains("Login Succeeded"), "{}", job.log);
    let used = report.job("use").unwrap();
    assert_eq!(used.status, Status::Success, "{}", used.log);
    assert!(used.log.contains("hello from the project"), "{}", used.log);
    // Built by the host engine from the job's files, and the job's files seen by a container
    // the host engine started with `-v "$CI_PROJECT_DIR:/src"`.
    assert_eq!(
        job.log.matches("hello from the project").count(),
        2,
        "{}",
        job.log
    );
    assert!(
        job.log
            .contains(&format!("project dir {builds}/glci00000/0/")),
        "{}",
        job.log
    );
    assert!(
        job.log.contains(&format!("builds dir [{builds}]")),
        "{}",
        job.log
    );
    let warned = warnings.all();
    assert!(warned.contains("socket passthrough"), "{warned}");
    assert!(warned.contains("controls every container"), "{warned}");
    for key in [
        "check_interval",
        "runners.0.url",
        "runners.0.docker.disable_cache",
    ] {
        assert!(warned.contains(&format!("`{key}`")), "{key}: {warned}");
    }
    // The container the job left running is named as the job's, and left alone.
    assert!(warned.contains(&left), "{warned}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &left]),
        "true"
    );
    // The job's directory in the shared builds directory goes with the job.
    let leftover = walk_files(Path::new(builds));
    assert!(leftover.is_empty(), "{leftover:?}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk_files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_go_to_the_runner_gitlab_would_give_them() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        &[(
            ".gitlab-ci.yml",
            r#"
default:
  image: glci-fixture/busybox:latest
untagged:
  script:
    - echo "runner=$RUNNER_NAME_IS shared=$SHARED"
    - grep glci-config-host /etc/hosts
    - df -k /dev/shm | tail -n 1
tagged:
  tags: [special]
  variables:
    SHARED: from-the-job
  before_script:
    - echo before-script-line
  script:
    - echo "runner=$RUNNER_NAME_IS shared=$SHARED"
    - grep -q CapEff /proc/self/status && echo caps-readable
nowhere:
  tags: [gpu]
  script:
    - echo never
"#,
        )],
    );
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[[runners]]
  name = "tagged"
  tags = ["special", "linux"]
  environment = ["RUNNER_NAME_IS=tagged", "SHARED=from-the-runner"]
  pre_build_script = "echo pre-build-of-tagged"
  post_build_script = "echo post-build-of-tagged"
  [runners.docker]
    privileged = true
    memory = "1g"

[[runners]]
  name = "plain"
  tags = []
  environment = ["RUNNER_NAME_IS=plain", "SHARED=from-the-runner"]
  [runners.docker]
    extra_hosts = ["glci-config-host:10.9.8.7"]
    shm_size = 134217728
    allowed_images = ["glci-fixture/*"]
"#,
    )
    .unwrap();

    let (report, warnings) = run(project.path(), &config).await;
    let untagged = report.job("untagged").unwrap();
    assert_eq!(untagged.status, Status::Success, "{}", untagged.log);
    assert!(
        untagged.log.contains("runner=plain shared=from-the-runner"),
        "{}",
        untagged.log
    );
    assert!(
        !untagged.log.contains("pre-build-of-tagged"),
        "{}",
        untagged.log
    );
    // `[runners.docker]` of its runner: hosts entries and `/dev/shm` of 128 MiB.
    assert!(untagged.log.contains("10.9.8.7"), "{}", untagged.log);
    assert!(untagged.log.contains(" 131072 "), "{}", untagged.log);

    let tagged = report.job("tagged").unwrap();
    assert_eq!(tagged.status, Status::Success, "{}", tagged.log);
    // The job's own variable wins over the runner's environment.
    assert!(
        tagged.log.contains("runner=tagged shared=from-the-job"),
        "{}",
        tagged.log
    );
    let at = |needle: &str| {
        tagged
            .log
            .find(needle)
            .unwrap_or_else(|| panic!("{needle}: {}", tagged.log))
    };
    assert!(at("pre-build-of-tagged") < at("before-script-line"));
    assert!(at("before-script-line") < at("runner=tagged"));
    assert!(at("caps-readable") < at("post-build-of-tagged"));
    // This engine refuses privileged containers: said, and the job runs with the fallback.
    assert!(
        tagged.log.contains("refuses privileged containers"),
        "{}",
        tagged.log
    );

    // No runner has `gpu`: GitLab would leave the job pending; glci fails it, saying why.
    let nowhere = report.job("nowhere").unwrap();
    assert_eq!(nowhere.status, Status::Failed);
    assert_eq!(
        nowhere.failure_reason.as_deref(),
        Some("stuck_or_timeout_failure")
    );
    let why = nowhere.not_run_because.clone().unwrap_or_default();
    assert!(why.contains("gpu") && why.contains("`tagged`"), "{why}");

    assert!(
        warnings.all().contains("`runners.0.docker.memory`"),
        "{}",
        warnings.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_runner_configuration_names_file_and_line_before_anything_runs() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        &[(".gitlab-ci.yml", "job:\n  script: [echo hi]\n")],
    );
    // In the project, where glci finds it without a flag.
    std::fs::create_dir_all(project.path().join(".glci")).unwrap();
    std::fs::write(
        project.path().join(".glci/runner.toml"),
        "[[runners]]\n  name = \"a\"\n  limit = \"two\"\n",
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let options = RunOptions {
        home: Some(home.path().to_path_buf()),
        ..RunOptions::default()
    };
    let err = match Session::start(
        &PipelineOptions::new(project.path()),
        options,
        Arc::new(Warnings::default()),
    )
    .await
    {
        Ok(_) => panic!("a broken runner configuration must not start a session"),
        Err(e) => e,
    };
    assert!(matches!(err, RunError::RunnerConfig(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains(".glci/runner.toml:3:"), "{text}");
}

/// gitlab-runner starts services unprivileged unless `privileged` or `services_privileged`
/// says otherwise, and a Docker daemon cannot start so: with such a configuration a DinD job
/// fails at once, saying which setting to change, before any service starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_runner_configuration_without_privileges_refuses_docker_in_docker_saying_why() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        &[(
            ".gitlab-ci.yml",
            r#"
build:
  image: glci-fixture/busybox:latest
  services:
    - name: glci-fixture/docker:dind
      alias: docker
  script:
    - echo script ran
"#,
        )],
    );
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[runners]]\n  executor = \"docker\"\n  [runners.docker]\n    privileged = false\n",
    )
    .unwrap();
    let (report, _) = run(project.path(), &config).await;
    let job = report.job("build").unwrap();
    assert_eq!(job.status, Status::Failed, "{}", job.log);
    assert!(job.log.contains("needs privileges"), "{}", job.log);
    assert!(
        job.log.contains("services_privileged = true"),
        "{}",
        job.log
    );
    assert!(!job.log.contains("Starting service"), "{}", job.log);
    assert!(!job.log.contains("script ran"), "{}", job.log);
}
