//! Deployment keywords run for real: `resource_group` across two pipelines of one project
//! running at once (the jobs' own timestamps must never overlap), environments with
//! `on_stop`, and `release:` with asset links.

use std::sync::{Arc, Mutex};

use crate::support::git;
use glci_test::pipeline::{PipelineOptions, RunObserver, RunOptions, RunReport, Session};
use glci_test::plan::status::Status;

fn project(ci: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), ci).unwrap();
    git(project.path(), &["init", "-q", "-b", "main"]);
    git(
        project.path(),
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/acme/shop.git",
        ],
    );
    git(project.path(), &["add", "-A"]);
    git(project.path(), &["commit", "-q", "-m", "one"]);
    project
}

/// Keeps what the run streams as the jobs' live logs.
#[derive(Default)]
struct LiveLog(Mutex<String>);

impl RunObserver for LiveLog {
    fn job_log(&self, job: &str, chunk: &[u8]) {
        let mut log = self.0.lock().unwrap();
        log.push_str(&format!("[{job}] {}", String::from_utf8_lossy(chunk)));
    }
}

async fn run(
    project: &std::path::Path,
    home: &std::path::Path,
    observer: Arc<LiveLog>,
    only: &[&str],
) -> RunReport {
    let options = RunOptions {
        home: Some(home.to_path_buf()),
        concurrency: 4,
        ..RunOptions::default()
    };
    let session = Session::start(&PipelineOptions::new(project), options, observer)
        .await
        .expect("session");
    let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
    let report = session.run(&only).await.unwrap();
    session.shutdown().await;
    report
}

/// The `(start, end)` nanoseconds a job printed as `WINDOW <start> <end>`.
fn window(log: &str) -> (u128, u128) {
    let line = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("WINDOW "))
        .unwrap_or_else(|| panic!("no WINDOW line: {log}"));
    let mut parts = line.split_whitespace().map(|p| p.parse::<u128>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

const RESOURCE_GROUP_CI: &str = r#"
default:
  image: glci-fixture/debian:bookworm
deploy_a:
  resource_group: production-$CI_COMMIT_REF_NAME
  script:
    - start=$(date +%s%N); sleep 2; echo "WINDOW $start $(date +%s%N)"
deploy_b:
  resource_group: production-$CI_COMMIT_REF_NAME
  script:
    - start=$(date +%s%N); sleep 2; echo "WINDOW $start $(date +%s%N)"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn jobs_of_one_resource_group_never_overlap_across_pipelines() {
    let project = project(RESOURCE_GROUP_CI);
    let home = tempfile::tempdir().unwrap();
    let (first, second) = (Arc::new(LiveLog::default()), Arc::new(LiveLog::default()));
    // Two pipelines of the project at once, two jobs each, all in group `production-main`.
    let (a, b) = tokio::join!(
        run(project.path(), home.path(), first.clone(), &[]),
        run(project.path(), home.path(), second.clone(), &[]),
    );
    let mut windows = Vec::new();
    for report in [&a, &b] {
        for name in ["deploy_a", "deploy_b"] {
            let job = report.job(name).unwrap();
            assert_eq!(job.status, Status::Success, "{}", job.log);
            windows.push((format!("{}/{name}", report.pipeline_id), window(&job.log)));
        }
    }
    windows.sort_by_key(|(_, (start, _))| *start);
    for pair in windows.windows(2) {
        let ((one, (_, end)), (two, (start, _))) = (&pair[0], &pair[1]);
        assert!(end <= start, "{one} ended after {two} started: {windows:?}");
    }
    // Three of the four jobs waited, and their live logs said so as GitLab does.
    let live = format!("{}{}", first.0.lock().unwrap(), second.0.lock().unwrap());
    assert!(
        live.matches("Waiting for resource: production-main")
            .count()
            >= 3,
        "{live}"
    );
    let noted = [&a, &b]
        .iter()
        .flat_map(|r| r.jobs.iter())
        .filter(|j| {
            j.log
                .contains("glci: resource_group \"production-main\" (unordered) assigned after")
        })
        .count();
    assert_eq!(noted, 4);
}

const ENVIRONMENT_CI: &str = r#"
default:
  image: glci-fixture/debian:bookworm
stages: [deploy, release]
review:
  stage: deploy
  environment:
    name: review/$CI_COMMIT_REF_NAME
    url: https://$CI_ENVIRONMENT_SLUG.example.com
    on_stop: stop_review
    auto_stop_in: 1 week
  script:
    - echo "ENV $CI_ENVIRONMENT_NAME $CI_ENVIRONMENT_SLUG $CI_ENVIRONMENT_ACTION $CI_ENVIRONMENT_TIER $CI_ENVIRONMENT_URL"
stop_review:
  stage: deploy
  environment:
    name: review/$CI_COMMIT_REF_NAME
    action: stop
  when: manual
  script:
    - echo "STOP $CI_ENVIRONMENT_NAME $CI_ENVIRONMENT_ACTION"
publish:
  stage: release
  script: [echo publishing]
  release:
    tag_name: v1.$CI_PIPELINE_ID
    description: notes
    assets:
      links:
        - name: binary
          url: https://example.com/bin
          link_type: package
          direct_asset_path: /bin/app
        - name: docs for $CI_COMMIT_REF_NAME
          url: https://example.com/docs
publish_small:
  stage: release
  image: glci-fixture/busybox:latest
  script: [echo publishing]
  release:
    tag_name: small-$CI_PIPELINE_ID
    description: 'a "quoted" & spaced \ note for $CI_COMMIT_REF_NAME, 100%'
    milestones: [m1]
    assets:
      links:
        - name: tarball
          url: https://example.com/t.tgz?a=1&b=2
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_is_deployed_then_stopped_by_its_on_stop_job_and_a_release_keeps_its_links()
{
    use glci_test::pipeline::environments;
    let project = project(ENVIRONMENT_CI);
    let home = tempfile::tempdir().unwrap();
    let report = run(project.path(), home.path(), Arc::default(), &[]).await;

    let review = report.job("review").unwrap();
    assert_eq!(review.status, Status::Success, "{}", review.log);
    assert!(
        review.log.contains("ENV review/main review-main-")
            && review
                .log
                .contains(" start development https://review-main-"),
        "{}",
        review.log
    );
    // The stop job is manual: it did not run, the environment is up.
    assert_eq!(report.job("stop_review").unwrap().status, Status::Manual);
    assert_eq!(report.deployments.len(), 1, "{:?}", report.deployments);
    assert_eq!(report.deployments[0].job, "review");
    let envs = environments::load(home.path(), "acme/shop").unwrap();
    assert_eq!(envs.len(), 1, "{envs:?}");
    let env = &envs[0];
    assert_eq!(
        (env.name.as_str(), env.state.as_str()),
        ("review/main", "available")
    );
    assert_eq!(env.tier, "development");
    assert_eq!(env.on_stop.as_deref(), Some("stop_review"));
    assert!(env
        .url
        .as_deref()
        .unwrap()
        .starts_with("https://review-main-"));
    assert!(env.auto_stop_at.is_some());
    let last = env.last_deployment.as_ref().unwrap();
    assert_eq!(
        (last.job.as_str(), last.status.as_str(), last.pipeline_id),
        ("review", "success", report.pipeline_id)
    );

    // The release and its asset links, through the job-token API.
    let publish = report.job("publish").unwrap();
    assert_eq!(publish.status, Status::Success, "{}", publish.log);
    let release = &publish.releases[0];
    assert_eq!(release.tag_name, format!("v1.{}", report.pipeline_id));
    let links: Vec<(&str, &str, &str, Option<&str>)> = release
        .links
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.url.as_str(),
                l.link_type.as_str(),
                l.direct_asset_path.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        links,
        [
            (
                "binary",
                "https://example.com/bin",
                "package",
                Some("/bin/app")
            ),
            ("docs for main", "https://example.com/docs", "other", None),
        ]
    );

    // An image with neither release-cli nor curl (busybox): the same request with wget.
    let small = report.job("publish_small").unwrap();
    assert_eq!(small.status, Status::Success, "{}", small.log);
    let release = &small.releases[0];
    assert_eq!(release.tag_name, format!("small-{}", report.pipeline_id));
    assert_eq!(
        release.description,
        r#"a "quoted" & spaced \ note for main, 100%"#
    );
    assert_eq!(release.milestones, ["m1"]);
    assert_eq!(release.links[0].url, "https://example.com/t.tgz?a=1&b=2");

    // Playing the stop job (a later run, as the user does by naming it) stops the environment.
    let stopped = run(
        project.path(),
        home.path(),
        Arc::default(),
        &["stop_review"],
    )
    .await;
    let stop = stopped.job("stop_review").unwrap();
    assert_eq!(stop.status, Status::Success, "{}", stop.log);
    assert!(stop.log.contains("STOP review/main stop"), "{}", stop.log);
    let env = &environments::load(home.path(), "acme/shop").unwrap()[0];
    assert_eq!(env.state, "stopped");
    assert_eq!(
        env.last_deployment.as_ref().unwrap().pipeline_id,
        report.pipeline_id
    );
}

const ONE_DEPLOY_CI: &str = r#"
deploy:
  image: glci-fixture/debian:bookworm
  resource_group: production
  script:
    - start=$(date +%s%N); sleep 3; echo "WINDOW $start $(date +%s%N)"
"#;

/// The resource goes to waiting jobs in the group's process mode: with `newest_first`, the
/// latest pipeline's job runs before an older one's that waited as long.
#[tokio::test(flavor = "multi_thread")]
async fn newest_first_gives_the_resource_to_the_latest_pipeline() {
    use glci_test::pipeline::resource_group::{self, ProcessMode};
    let project = project(ONE_DEPLOY_CI);
    let home = tempfile::tempdir().unwrap();
    resource_group::set_process_mode(
        &resource_group::project_dir(home.path(), "acme/shop"),
        "production",
        ProcessMode::NewestFirst,
    )
    .unwrap();
    let options = || RunOptions {
        home: Some(home.path().to_path_buf()),
        ..RunOptions::default()
    };
    // Created in order: pipeline ids grow.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let session = Session::start(
            &PipelineOptions::new(project.path()),
            options(),
            Arc::new(LiveLog::default()),
        )
        .await
        .expect("session");
        sessions.push(session);
    }
    // The oldest takes the resource; the other two wait for it together.
    let later = |i: usize| {
        let session = &sessions[i];
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            session.run(&[]).await.unwrap()
        }
    };
    let (first, second, third) = tokio::join!(sessions[0].run(&[]), later(1), later(2));
    let first = first.unwrap();
    let [one, two, three] = [&first, &second, &third].map(|r| {
        let job = r.job("deploy").unwrap();
        assert_eq!(job.status, Status::Success, "{}", job.log);
        window(&job.log)
    });
    assert!(
        one.1 <= three.0,
        "first, then the newest: {one:?} {three:?}"
    );
    assert!(
        three.1 <= two.0,
        "the newest before the older: {three:?} {two:?}"
    );
    for session in sessions {
        session.shutdown().await;
    }
}
