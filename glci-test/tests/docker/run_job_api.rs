//! The API a job calls with `CI_JOB_TOKEN` at `CI_API_V4_URL`, driven by `curl` from inside
//! real jobs: the current job, generic packages, artifacts of another job (this run's and an
//! earlier run's), releases from the `release:` keyword, and the 401/404 answers.

use std::sync::Arc;

use crate::support::git;
use glci_test::pipeline::{PipelineOptions, Quiet, RunOptions, Session};
use glci_test::plan::status::Status;

const API: &str = r#"curl -sS --fail-with-body -H "JOB-TOKEN:$CI_JOB_TOKEN""#;

fn pipeline() -> String {
    format!(
        r#"
default:
  image: glci-fixture/debian:bookworm
stages: [build, use, publish]
build:
  stage: build
  script:
    - echo hello-artifact > out.txt
    - echo hello-package > pkg.txt
    - echo "$CI_JOB_TOKEN" > token.txt
    - {API} --upload-file pkg.txt "$CI_API_V4_URL/projects/$CI_PROJECT_ID/packages/generic/tool/1.0.0/pkg.txt"; echo
    - {API} "$CI_API_V4_URL/job" | grep -o '"name":"build"' && echo job-endpoint-works
    - test "$(curl -s -o /dev/null -w '%{{http_code}}' -H 'JOB-TOKEN:wrong' "$CI_API_V4_URL/job")" = 401 && echo bad-token-401
    - curl -s -H "JOB-TOKEN:$CI_JOB_TOKEN" "$CI_API_V4_URL/projects/$CI_PROJECT_ID/feature_flags"; echo
  artifacts:
    paths: [out.txt, token.txt]
use:
  stage: use
  script:
    - {API} "$CI_API_V4_URL/projects/$CI_PROJECT_ID/packages/generic/tool/1.0.0/pkg.txt" | grep -q hello-package && echo package-downloaded
    - curl -sS --fail-with-body -H "Authorization:Bearer $CI_JOB_TOKEN" -o a.zip "$CI_API_V4_URL/projects/$CI_PROJECT_ID/jobs/artifacts/$CI_COMMIT_REF_NAME/download?job=build"
    - head -c 2 a.zip | grep -q PK && echo archive-downloaded
    - curl -sS --fail-with-body "$CI_API_V4_URL/projects/$CI_PROJECT_ID/jobs/artifacts/$CI_COMMIT_REF_NAME/raw/out.txt?job=build&job_token=$CI_JOB_TOKEN" | grep -q hello-artifact && echo raw-file-read
    - test "$(curl -s -o /dev/null -w '%{{http_code}}' -H "JOB-TOKEN:$(cat token.txt)" "$CI_API_V4_URL/job")" = 401 && echo finished-token-401
publish:
  stage: publish
  dependencies: []
  script:
    - echo publishing
  release:
    tag_name: v1.$CI_PIPELINE_ID
    name: Release $CI_COMMIT_SHORT_SHA
    description: A "quoted" description
"#
    )
}

/// A later pipeline of the same project: only a job that reads the earlier run's results.
fn later_pipeline() -> String {
    format!(
        r#"
later:
  image: glci-fixture/debian:bookworm
  script:
    - {API} "$CI_API_V4_URL/projects/$CI_PROJECT_ID/jobs/artifacts/$CI_COMMIT_REF_NAME/raw/out.txt?job=build" | grep -q hello-artifact && echo earlier-artifact-read
    - {API} "$CI_API_V4_URL/projects/$CI_PROJECT_ID/packages/generic/tool/1.0.0/pkg.txt" | grep -q hello-package && echo earlier-package-read
"#
    )
}

async fn run(project: &std::path::Path, home: &std::path::Path) -> glci_test::pipeline::RunReport {
    let options = RunOptions {
        home: Some(home.to_path_buf()),
        ..RunOptions::default()
    };
    let session = Session::start(&PipelineOptions::new(project), options, Arc::new(Quiet))
        .await
        .expect("session");
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_use_packages_artifacts_and_releases_through_the_api() {
    let project = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), pipeline()).unwrap();
    git(project.path(), &["init", "-q", "-b", "main"]);
    git(project.path(), &["add", "-A"]);
    git(project.path(), &["commit", "-q", "-m", "one"]);
    let report = run(project.path(), home.path()).await;

    let build = report.job("build").unwrap();
    assert_eq!(build.status, Status::Success, "{}", build.log);
    for needle in ["201 Created", "job-endpoint-works", "bad-token-401"] {
        assert!(build.log.contains(needle), "{needle}: {}", build.log);
    }
    assert!(
        build.log.contains("{\"message\":\"404 Not Found\"}")
            && build.log.contains("glci: this job called GET /api/v4/projects/")
            // The project id is derived from the project's path.
            && build.log.contains(
                "/feature_flags, which glci's stand-in for GitLab does not implement"
            ),
        "{}",
        build.log
    );
    assert_eq!(build.packages.len(), 1, "{:?}", build.packages);
    let package = &build.packages[0];
    assert_eq!(
        (
            package.package.as_str(),
            package.version.as_str(),
            package.file_name.as_str()
        ),
        ("tool", "1.0.0", "pkg.txt")
    );
    assert!(package.path.starts_with(home.path()), "{:?}", package.path);
    assert_eq!(
        std::fs::read_to_string(&package.path).unwrap(),
        "hello-package\n"
    );

    let used = report.job("use").unwrap();
    assert_eq!(used.status, Status::Success, "{}", used.log);
    for needle in [
        "package-downloaded",
        "archive-downloaded",
        "raw-file-read",
        "finished-token-401",
    ] {
        assert!(used.log.contains(needle), "{needle}: {}", used.log);
    }

    let publish = report.job("publish").unwrap();
    assert_eq!(publish.status, Status::Success, "{}", publish.log);
    assert_eq!(publish.releases.len(), 1, "{}", publish.log);
    let release = &publish.releases[0];
    assert_eq!(release.tag_name, format!("v1.{}", report.pipeline_id));
    assert!(
        release.name.starts_with("Release ") && release.name.len() == "Release ".len() + 8,
        "{release:?}"
    );
    assert_eq!(release.description, "A \"quoted\" description");
    assert!(
        publish.log.contains("glci: release \"Release "),
        "{}",
        publish.log
    );

    // A later run of the same project finds the earlier run's artifacts and packages.
    std::fs::write(project.path().join(".gitlab-ci.yml"), later_pipeline()).unwrap();
    git(project.path(), &["commit", "-q", "-am", "two"]);
    let later = run(project.path(), home.path()).await;
    let job = later.job("later").unwrap();
    assert_eq!(job.status, Status::Success, "{}", job.log);
    for needle in ["earlier-artifact-read", "earlier-package-read"] {
        assert!(job.log.contains(needle), "{needle}: {}", job.log);
    }
}
