//! Deployment keywords run for real: `resource_group` across two pipelines of one project
//! running at once (the jobs' own timestamps must never overlap), environments with
//! `on_stop`, and `release:` with asset links.

use std::process::Command;
use std::sync::{Arc, Mutex};

use glci_test::pipeline::{PipelineOptions, RunObserver, RunOptions, RunReport, Session};
use glci_test::plan::status::Status;

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
