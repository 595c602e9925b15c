//! `cache:` across two pipelines of one repository: the second run restores what the first
//! saved, through the S3 endpoint of a server that did not exist when it was saved.

use std::sync::Arc;

use crate::support::git;
use glci_test::pipeline::{PipelineOptions, Quiet, RunOptions, Session};
use glci_test::plan::status::Status;

const PIPELINE: &str = r#"
default:
  image: glci-fixture/busybox:latest
build:
  cache:
    key:
      files: [lock.txt]
    paths: [.deps/]
  script:
    - if test -f .deps/fetched; then echo "restored $(cat .deps/fetched)"; else mkdir -p .deps && echo "run-$CI_PIPELINE_ID" > .deps/fetched && echo fresh; fi
"#;

async fn run_once(project: &std::path::Path, home: &std::path::Path) -> String {
    let options = RunOptions {
        home: Some(home.to_path_buf()),
        ..RunOptions::default()
    };
    let session = Session::start(&PipelineOptions::new(project), options, Arc::new(Quiet))
        .await
        .expect("session");
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    let job = report.job("build").unwrap();
    assert_eq!(job.status, Status::Success, "{}", job.log);
    job.log.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_run_restores_the_first_runs_cache_until_the_key_file_changes() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), PIPELINE).unwrap();
    std::fs::write(project.path().join("lock.txt"), "v1\n").unwrap();
    git(project.path(), &["init", "-q", "-b", "main"]);
    git(project.path(), &["add", "-A"]);
    git(project.path(), &["commit", "-q", "-m", "one"]);
    let home = tempfile::tempdir().unwrap();

    let first = run_once(project.path(), home.path()).await;
    assert!(first.contains("fresh"), "{first}");
    assert!(first.contains("Created cache"), "{first}");

    let second = run_once(project.path(), home.path()).await;
    assert!(second.contains("restored run-1"), "{second}");
    assert!(second.contains("Successfully extracted cache"), "{second}");

    // key:files: another lock file content is another cache.
    std::fs::write(project.path().join("lock.txt"), "v2\n").unwrap();
    let third = run_once(project.path(), home.path()).await;
    assert!(third.contains("fresh"), "{third}");
}

/// GitLab scopes caches by project id: `acme/b` must not restore the cache `acme/a` saved
/// under the same key (both projects once had `CI_PROJECT_ID` 1 and shared every cache).
#[tokio::test(flavor = "multi_thread")]
async fn projects_with_the_same_cache_key_do_not_share_a_cache() {
    const SAME_KEY: &str = r#"
default:
  image: glci-fixture/busybox:latest
build:
  cache:
    key: shared-key
    paths: [.deps/]
  script:
    - echo "project id $CI_PROJECT_ID"
    - if test -f .deps/owner; then echo "restored from $(cat .deps/owner)"; else mkdir -p .deps && echo "$CI_PROJECT_PATH" > .deps/owner && echo fresh; fi
"#;
    let home = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    let mut logs = Vec::new();
    for name in ["a", "b"] {
        let project = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join(".gitlab-ci.yml"), SAME_KEY).unwrap();
        git(project.path(), &["init", "-q", "-b", "main"]);
        let origin = format!("https://gitlab.example.com/acme/{name}.git");
        git(project.path(), &["remote", "add", "origin", &origin]);
        git(project.path(), &["add", "-A"]);
        git(project.path(), &["commit", "-q", "-m", "one"]);
        let log = run_once(project.path(), home.path()).await;
        let id = log
            .lines()
            .find_map(|l| l.strip_prefix("project id "))
            .map(|id| id.trim().to_string())
            .unwrap_or_else(|| panic!("no project id in:\n{log}"));
        ids.push(id);
        logs.push(log);
    }
    assert_ne!(ids[0], ids[1], "two projects, one CI_PROJECT_ID");
    assert!(logs[0].contains("fresh"), "{}", logs[0]);
    assert!(
        logs[1].contains("fresh"),
        "acme/b restored acme/a's cache:\n{}",
        logs[1]
    );
    assert!(!logs[1].contains("restored from acme/a"), "{}", logs[1]);
}
