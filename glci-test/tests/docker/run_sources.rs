//! Jobs of one session share a checkout (the second job copies the first one's instead of
//! fetching again); the copy must behave exactly like a fresh fetch: same log lines, the job's
//! own credentials in `origin`, a clean work tree, fetch working from inside the job.

use std::sync::Arc;

use crate::support::git;
use glci_test::pipeline::{PipelineOptions, Quiet, RunOptions, Session};
use glci_test::plan::status::Status;

const PIPELINE: &str = r#"
default:
  image: glci-fixture/debian:bookworm
stages: [one, two]
first:
  stage: one
  script:
    - git status --porcelain
second:
  stage: two
  script:
    - test -z "$(git status --porcelain)" && echo clean-tree
    - git remote get-url origin | grep -q "$CI_JOB_TOKEN" && echo own-token
    - git fetch -q origin "$CI_COMMIT_SHA" && echo fetch-works
"#;

/// Commits everything in `dir` as the first commit of a new repository.
fn commit_all(dir: &std::path::Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "one"]);
}

/// A session on `project` with its data in `home`.
async fn start_session(project: &std::path::Path, home: &std::path::Path) -> Session {
    let options = RunOptions {
        home: Some(home.to_path_buf()),
        ..RunOptions::default()
    };
    Session::start(&PipelineOptions::new(project), options, Arc::new(Quiet))
        .await
        .expect("session")
}

/// Runs `pipeline` as the one commit of a new project, start to end.
async fn run_committed(pipeline: &str) -> glci_test::pipeline::RunReport {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), pipeline).unwrap();
    commit_all(project.path());
    let home = tempfile::tempdir().unwrap();
    let session = start_session(project.path(), home.path()).await;
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_checkout_is_indistinguishable_from_a_fresh_fetch() {
    let report = run_committed(PIPELINE).await;
    let first = report.job("first").unwrap();
    let second = report.job("second").unwrap();
    assert_eq!(first.status, Status::Success, "{}", first.log);
    assert_eq!(second.status, Status::Success, "{}", second.log);
    for needle in ["clean-tree", "own-token", "fetch-works"] {
        assert!(second.log.contains(needle), "{needle}: {}", second.log);
    }
    let lines = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| {
                l.contains("Fetching changes")
                    || l.contains("Initialized empty Git")
                    || l.contains("Checking out")
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(lines(&first.log), lines(&second.log));
    assert_eq!(lines(&second.log).len(), 3, "{}", second.log);
}

/// On an engine on this host the build container mounts a host directory as `/builds` and the
/// checkout is copied there: the job must see what the official helper leaves (executable
/// bits, symbolic links, uncommitted edits, root as owner, modes made under `umask 0000` so
/// that another user can write), in a busybox image as in a Debian one.
#[tokio::test(flavor = "multi_thread")]
async fn sources_in_the_mounted_builds_directory_look_as_the_helper_leaves_them() {
    const STAGED: &str = r#"
.check:
  script:
    - grep -q " /builds " /proc/mounts && echo builds-mounted
    - ./tool.sh
    - test -L link && test "$(readlink link)" = tool.sh && echo link-kept
    - cat sub/edited.txt
    - test "$(stat -c %u tool.sh)" = 0 && echo root-owned
    - echo "modes $(stat -c %a tool.sh sub/edited.txt sub . .git/config "$CI_PROJECT_DIR.tmp" | tr '\n' ' ')"
    - test ! -e /.glci && echo nothing-else-mounted
busybox:
  extends: .check
  image: glci-fixture/busybox:latest
debian:
  extends: .check
  image: glci-fixture/debian:bookworm
  after_script:
    - runuser -u nobody -- sh -c 'echo more >> sub/edited.txt && mkdir sub/new' && echo others-can-write
kept-modes:
  extends: .check
  image: glci-fixture/busybox:latest
  variables:
    FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR: "true"
"#;
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), STAGED).unwrap();
    let tool = project.path().join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\necho tool-runs\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("tool.sh", project.path().join("link")).unwrap();
    std::fs::create_dir(project.path().join("sub")).unwrap();
    std::fs::write(project.path().join("sub/edited.txt"), "committed\n").unwrap();
    commit_all(project.path());
    // Not committed: the pipeline's snapshot still carries it.
    std::fs::write(
        project.path().join("sub/edited.txt"),
        "edited-not-committed\n",
    )
    .unwrap();

    let home = tempfile::tempdir().unwrap();
    let session = start_session(project.path(), home.path()).await;
    let report = session.run(&[]).await.unwrap();
    let staging = report.dir.join("staging");
    assert!(staging.is_dir(), "staged under the pipeline's directory");
    session.shutdown().await;
    assert!(!staging.exists(), "staged files outlive the session");
    for name in ["busybox", "debian", "kept-modes"] {
        let job = report.job(name).unwrap();
        assert_eq!(job.status, Status::Success, "{name}: {}", job.log);
        for needle in [
            "builds-mounted",
            "tool-runs",
            "link-kept",
            "edited-not-committed",
            "root-owned",
            "nothing-else-mounted",
        ] {
            assert!(job.log.contains(needle), "{name}, {needle}: {}", job.log);
        }
    }
    // tool.sh, sub/edited.txt, sub, the project directory, .git/config, its .tmp directory.
    for name in ["busybox", "debian"] {
        let log = &report.job(name).unwrap().log;
        assert!(
            log.contains("modes 777 666 777 777 666 777 "),
            "{name}: {log}"
        );
    }
    let kept = &report.job("kept-modes").unwrap().log;
    assert!(kept.contains("modes 755 644 755 755 644 "), "{kept}");
    let debian = &report.job("debian").unwrap().log;
    assert!(debian.contains("others-can-write"), "{debian}");
}

/// Jobs before and after one that restores a cache (through the engine, into its mounted
/// builds directory) each get their own token in `.git/config`, and fetching works.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_after_a_tar_delivered_one_still_get_their_own_token() {
    const MIXED: &str = r#"
default:
  image: glci-fixture/debian:bookworm
stages: [one, two, three]
.token:
  script:
    - git remote get-url origin | grep -q "$CI_JOB_TOKEN" && echo own-token
    - git fetch -q origin "$CI_COMMIT_SHA" && echo fetch-works
first:
  stage: one
  extends: .token
with-cache:
  stage: two
  extends: .token
  cache: {key: k, paths: [vendor/]}
last:
  stage: three
  extends: .token
"#;
    let report = run_committed(MIXED).await;
    for name in ["first", "with-cache", "last"] {
        let job = report.job(name).unwrap();
        assert_eq!(job.status, Status::Success, "{name}: {}", job.log);
        for needle in ["own-token", "fetch-works"] {
            assert!(job.log.contains(needle), "{name}, {needle}: {}", job.log);
        }
    }
}
