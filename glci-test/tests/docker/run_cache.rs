//! `cache:` across two pipelines of one repository: the second run restores what the first
//! saved, through the S3 endpoint of a server that did not exist when it was saved.

use std::process::Command;
use std::sync::Arc;

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

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
}

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
