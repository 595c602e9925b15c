//! The built-in runner end to end with real parts: a real repository with uncommitted work,
//! its snapshot served by the mock GitLab over git smart HTTP, jobs taken over the runner API,
//! run in Docker, their logs and artifacts stored by the server and passed to a later job.

use std::path::Path;
use std::process::Command;

use crate::support::git;
use glci_test::docker::{Engine, Owner};
use glci_test::git::{snapshot, Repo, SnapshotRequest};
use glci_test::runner::api::RunnerApi;
use glci_test::runner::executor::ExecutorOptions;
use glci_test::runner::worker::run_job;
use glci_test::server::{
    ArtifactSpec, DependencySpec, GitSpec, ImageSpec, JobSpec, JobState, JobVariable, ProjectSpec,
    RunningServer, Server, ServerConfig, StepSpec,
};
use tokio_util::sync::CancellationToken;

/// A repository with one commit, an uncommitted edit and an untracked file.
fn user_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.email", "dev@example.com"]);
    git(dir, &["config", "user.name", "Dev"]);
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/acme/demo.git",
        ],
    );
    std::fs::write(dir.join("a.txt"), "committed\n").unwrap();
    git(dir, &["add", "a.txt"]);
    git(dir, &["commit", "-q", "-m", "first"]);
    std::fs::write(dir.join("a.txt"), "edited, not committed\n").unwrap();
    std::fs::write(dir.join("new.txt"), "untracked\n").unwrap();
}

fn spec(name: &str, sha: &str, script: &[&str]) -> JobSpec {
    JobSpec {
        name: name.to_string(),
        stage: "test".to_string(),
        pipeline_id: 1,
        project: ProjectSpec {
            id: 3,
            path: "acme/demo".to_string(),
            namespace_id: 2,
            root_namespace_id: 2,
        },
        image: Some(ImageSpec {
            name: "glci-fixture/busybox:latest".to_string(),
            ..Default::default()
        }),
        variables: vec![
            JobVariable::public("CI_JOB_NAME", name),
            JobVariable {
                key: "API_KEY".into(),
                value: "s3cr3t-api-key".into(),
                masked: true,
                ..Default::default()
            },
        ],
        steps: vec![StepSpec {
            name: "script".to_string(),
            script: script.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }],
        timeout_secs: 600,
        git: GitSpec {
            ref_name: "main".to_string(),
            sha: sha.to_string(),
            refspecs: vec![
                "+refs/pipelines/1:refs/pipelines/1".to_string(),
                "+refs/heads/main:refs/remotes/origin/main".to_string(),
            ],
            depth: 20,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn take_and_run(
    server: &RunningServer,
    api: &RunnerApi,
    token: &str,
    engine: &Engine,
    owner: &Owner,
) {
    let (job, _) = api.request_job(token, None).await.expect("request job");
    let job = job.expect("a job is queued");
    run_job(
        api,
        engine,
        owner,
        job,
        &ExecutorOptions::default(),
        &CancellationToken::new(),
        None,
    )
    .await;
    let _ = server;
}

#[tokio::test]
async fn jobs_see_the_working_tree_and_pass_artifacts_through_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    user_repo(&repo_dir);
    let data = tmp.path().join("data");
    let repo = Repo::discover(&repo_dir).unwrap();
    let snap = snapshot(
        &repo,
        &data,
        &SnapshotRequest {
            pipeline_id: 1,
            branch: Some("main".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!snap.clean);

    let server = Server::start(ServerConfig::new(data.join("server")))
        .await
        .unwrap();
    server.add_repository("acme/demo", &snap.bare_repo).unwrap();
    let creds = server.create_runner(&[], true);
    let api = RunnerApi::new(server.url());
    let engine = Engine::connect()
        .await
        .expect("a Docker engine (scripts/docker-engine)");
    let owner = Owner::for_this_process("runner-e2e");

    let mut build = spec(
        "build",
        &snap.sha,
        &[
            "cat a.txt new.txt",
            "git --version >/dev/null 2>&1 || echo 'no git in this image, and that is fine'",
            "test -d .git && echo has-git-dir",
            "echo \"key is $API_KEY\"",
            "mkdir -p out && echo built-by-build > out/result.txt && echo junk > out/skip.log",
        ],
    );
    build.artifacts = vec![ArtifactSpec {
        name: Some("build-output".into()),
        paths: vec!["out/".into()],
        exclude: vec!["out/*.log".into()],
        when: "on_success".into(),
        artifact_type: "archive".into(),
        artifact_format: "zip".into(),
        ..Default::default()
    }];
    let build_id = server.enqueue(build).unwrap();
    take_and_run(&server, &api, &creds.token, &engine, &owner).await;
    let state = server.job_state(build_id).unwrap();
    let log = String::from_utf8_lossy(&server.trace(build_id).unwrap()).into_owned();
    assert_eq!(state, JobState::Success, "{log}");
    for expected in [
        "edited, not committed\nuntracked\n",
        "no git in this image, and that is fine",
        "has-git-dir",
        "key is [MASKED]",
        "Checking out ",
        "Job succeeded",
    ] {
        assert!(
            log.contains(expected),
            "missing {expected:?} in the server's log:\n{log}"
        );
    }
    assert!(!log.contains("s3cr3t-api-key"));
    assert_eq!(
        server.artifacts(build_id).len(),
        1,
        "artifacts stored: {:?}",
        server.artifacts(build_id)
    );

    let mut test = spec(
        "test",
        &snap.sha,
        &["cat out/result.txt", "test ! -e out/skip.log"],
    );
    test.dependencies = vec![DependencySpec {
        job: build_id,
        name: "build".into(),
    }];
    let test_id = server.enqueue(test).unwrap();
    take_and_run(&server, &api, &creds.token, &engine, &owner).await;
    let log = String::from_utf8_lossy(&server.trace(test_id).unwrap()).into_owned();
    assert_eq!(
        server.job_state(test_id).unwrap(),
        JobState::Success,
        "{log}"
    );
    assert!(log.contains("Downloading artifacts for build"), "{log}");
    assert!(log.contains("built-by-build"), "{log}");

    // The user's repository is untouched: the edit is still uncommitted, nothing staged.
    let status = Command::new("git")
        .arg("-C")
        .arg(&repo_dir)
        .args(["status", "--porcelain"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        " M a.txt\n?? new.txt\n"
    );
    server.shutdown().await;
}
