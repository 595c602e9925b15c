//! What a session leaves behind: the container `keep_failed` promises (every time, not when
//! the scheduler happens to look after the worker), and nothing a job could use against the
//! host (a setuid-root program in the bind-mounted builds directory).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use glci_test::pipeline::{PipelineOptions, Quiet, RunOptions, Session};
use glci_test::plan::status::Status;

fn commit(dir: &Path, pipeline: &str) {
    std::fs::write(dir.join(".gitlab-ci.yml"), pipeline).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "one"],
    ] {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_failed_keeps_the_failed_jobs_container_every_time() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        "broken:\n  image: glci-fixture/busybox:latest\n  script: [exit 3]\n",
    );
    let home = tempfile::tempdir().unwrap();
    let mut missed = Vec::new();
    for round in 0..20 {
        let options = RunOptions {
            home: Some(home.path().to_path_buf()),
            keep_failed: true,
            concurrency: 1,
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
        let job = report.job("broken").unwrap();
        assert_eq!(job.status, Status::Failed, "{}", job.log);
        match &job.kept_container {
            Some(name) => {
                // Still there after the session's cleanup; then ours to remove.
                let found = docker(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")]);
                if found.is_empty() {
                    missed.push(format!("round {round}: {name} reported but removed"));
                }
                docker(&["rm", "-f", "-v", name]);
            }
            None => missed.push(format!("round {round}: no container kept")),
        }
    }
    assert!(missed.is_empty(), "{missed:#?}");
}

/// Files under `dir` with the setuid bit.
fn setuid_files(dir: &Path) -> Vec<PathBuf> {
    let out = Command::new("find")
        .arg(dir)
        .args(["-perm", "-4000", "-type", "f"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// Whether user `nobody` can see `path` at all.
fn nobody_reaches(path: &Path) -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "test",
            "-e",
        ])
        .arg(path)
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setuid_program_a_job_leaves_is_out_of_reach_and_removed() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        "suid:\n  image: glci-fixture/busybox:latest\n  script:\n    - cp /bin/busybox /builds/suid && chmod 4755 /builds/suid\n    - ls -l /builds/suid\n    - sleep 4\n",
    );
    let home = tempfile::tempdir().unwrap();
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
    let session = Arc::new(session);
    let job = tokio::spawn({
        let running = Arc::clone(&session);
        async move { running.job("suid").await.unwrap() }
    });
    // While the job runs: the planted program exists on the host, but `nobody` cannot get
    // to it, nor into the staging directory at all.
    let staging = session.dir().join("staging");
    let mut planted = Vec::new();
    let mut private = false;
    let mut builds_on_host = false;
    for _ in 0..150 {
        use std::os::unix::fs::PermissionsExt;
        builds_on_host |= std::fs::read_dir(&staging).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("glci-job-"))
        });
        private |=
            std::fs::metadata(&staging).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o700);
        planted = setuid_files(home.path());
        if !planted.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let report = job.await.unwrap();
    assert_eq!(report.status, Status::Success, "{}", report.log);
    assert!(
        report.log.contains("-rwsr-xr-x"),
        "the job could not plant it: {}",
        report.log
    );
    assert!(
        private,
        "the staging directory is not 0700 while the job runs"
    );
    // Without a host bind mount (an engine that cannot share this host's files) the program
    // only ever lived in the container.
    if builds_on_host {
        assert!(!planted.is_empty(), "not found on the host");
    } else {
        eprintln!(
            "the builds directory was not a host bind mount: setuid check on the host skipped"
        );
    }
    for file in &planted {
        assert!(!nobody_reaches(file), "nobody reaches {}", file.display());
    }
    let Ok(session) = Arc::try_unwrap(session) else {
        panic!("session still shared");
    };
    session.shutdown().await;
    assert_eq!(setuid_files(home.path()), Vec::<PathBuf>::new());
}
