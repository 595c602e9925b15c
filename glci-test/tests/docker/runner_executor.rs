//! The Docker executor against the real engine, for jobs that need no server (GIT_STRATEGY
//! none, no artifacts): script composition, exit codes, after_script, timeouts, masking,
//! services, a missing image, and cleanup. The server-backed parts are tested end to end with
//! the mock GitLab.

use glci_test::docker::{count_labelled, Engine, Owner, LABEL_OWNER};
use glci_test::runner::api::ApiError;
use glci_test::runner::executor::{execute, ExecutorOptions, JobIo, JobOutcome};
use glci_test::runner::payload::{Artifact, Dependency, JobPayload};
use glci_test::runner::trace::{Masker, Trace};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// These jobs have no dependencies and no artifacts: any call here is a bug.
struct NoIo;

impl JobIo for NoIo {
    async fn download_artifacts(&self, d: &Dependency) -> Result<Vec<u8>, ApiError> {
        panic!("unexpected artifact download for {}", d.name)
    }
    async fn upload_artifacts(&self, a: &Artifact, _zip: Vec<u8>) -> Result<(), ApiError> {
        panic!("unexpected artifact upload of {}", a.name)
    }
}

fn payload(overrides: serde_json::Value) -> JobPayload {
    let mut base = json!({
        "id": 7, "token": "glcbt-jobtoken123",
        "job_info": {"name": "test", "stage": "test", "project_full_path": "acme/demo"},
        "git_info": {"repo_url": "http://gitlab-ci-token:x@127.0.0.1:1/acme/demo.git", "ref": "main",
                     "sha": "0123456789abcdef0123456789abcdef01234567", "refspecs": [], "depth": 20},
        "runner_info": {"timeout": 60},
        "image": {"name": "glci-fixture/busybox:latest"},
        "variables": [
            {"key": "GIT_STRATEGY", "value": "none", "public": true, "masked": false},
            {"key": "CI_JOB_TOKEN", "value": "glcbt-jobtoken123", "public": false, "masked": true}
        ],
        "steps": [{"name": "script", "script": ["echo hello"], "when": "on_success"}],
        "features": {"trace_sections": true}
    });
    let obj = base.as_object_mut().unwrap();
    for (k, v) in overrides.as_object().unwrap() {
        if k == "variables" {
            obj["variables"]
                .as_array_mut()
                .unwrap()
                .extend(v.as_array().unwrap().iter().cloned());
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).unwrap()
}

async fn run(p: &JobPayload) -> (JobOutcome, String) {
    let engine = Engine::connect()
        .await
        .expect("a Docker engine (scripts/docker-engine)");
    let owner = Owner::for_this_process("executor-test");
    let masked = p
        .variables
        .iter()
        .filter(|v| v.masked)
        .map(|v| v.value.clone());
    let trace = Trace::new(Masker::new(masked), true);
    let outcome = execute(
        &engine,
        &owner,
        p,
        &NoIo,
        &trace,
        &ExecutorOptions::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_no_leftovers(&engine, &owner).await;
    (outcome, String::from_utf8(trace.bytes()).unwrap())
}

async fn assert_no_leftovers(engine: &Engine, owner: &Owner) {
    let label = format!("{LABEL_OWNER}={}", owner.id);
    let left = count_labelled(engine, &label).await.unwrap();
    assert!(
        left.containers == 0 && left.networks == 0,
        "left behind: {left:?}"
    );
}

#[tokio::test]
async fn a_passing_job_logs_like_gitlab() {
    let (outcome, log) = run(&payload(json!({
        "steps": [{"name": "script", "script": ["echo hello", "echo \"dir=$CI_PROJECT_DIR\" && pwd"]}]
    })))
    .await;
    assert!(outcome.success, "{log}");
    for expected in [
        "Using Docker executor with image glci-fixture/busybox:latest ...",
        "section_start:",
        ":step_script\r",
        "\u{1b}[32;1m$ echo hello\u{1b}[0;m\nhello\n",
        "dir=/builds/acme/demo\n/builds/acme/demo\n",
        "\u{1b}[32;1mJob succeeded\u{1b}[0;m\n",
    ] {
        assert!(log.contains(expected), "missing {expected:?} in:\n{log}");
    }
}

#[tokio::test]
async fn a_failing_job_stops_at_the_first_failure_and_after_script_sees_the_status() {
    let (outcome, log) = run(&payload(json!({
        "steps": [
            {"name": "script", "script": ["echo before", "exit 3", "echo never"]},
            {"name": "after_script", "script": ["echo \"status=$CI_JOB_STATUS\""], "when": "always"}
        ]
    })))
    .await;
    assert_eq!(outcome.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(outcome.exit_code, Some(3));
    assert!(log.contains("before\n"));
    assert!(!log.contains("never\n"), "{log}");
    assert!(log.contains("status=failed\n"), "{log}");
    assert!(log.contains("ERROR: Job failed: exit code 3"), "{log}");
}

#[tokio::test]
async fn masked_values_never_reach_the_log() {
    let (outcome, log) = run(&payload(json!({
        "variables": [{"key": "SECRET", "value": "hunter2-very-secret", "public": false, "masked": true}],
        "steps": [{"name": "script", "script": ["echo \"the secret: $SECRET\"", "echo token=$CI_JOB_TOKEN"]}]
    })))
    .await;
    assert!(outcome.success, "{log}");
    assert!(!log.contains("hunter2-very-secret"), "{log}");
    assert!(!log.contains("glcbt-jobtoken123"), "{log}");
    assert!(log.contains("the secret: [MASKED]"), "{log}");
}

#[tokio::test]
async fn a_job_over_its_timeout_is_stopped() {
    let (outcome, log) = run(&payload(json!({
        "runner_info": {"timeout": 2},
        "steps": [{"name": "script", "script": ["sleep 30"]}]
    })))
    .await;
    assert_eq!(
        outcome.failure_reason.as_deref(),
        Some("job_execution_timeout"),
        "{log}"
    );
    assert!(
        log.contains("execution took longer than 2s seconds"),
        "{log}"
    );
}

#[tokio::test]
async fn services_are_reachable_by_every_alias() {
    let (outcome, log) = run(&payload(json!({
        "services": [{"name": "glci-fixture/tcp-service:latest", "alias": "greeter,other",
                      "variables": [{"key": "SERVICE_GREETING", "value": "hi $CI_JOB_NAME"}]}],
        "variables": [{"key": "CI_JOB_NAME", "value": "test", "public": true}],
        "steps": [{"name": "script", "script": [
            "for h in glci-fixture__tcp-service glci-fixture-tcp-service greeter other; do echo \"$h: $(nc $h 7777 </dev/null)\"; done"
        ]}]
    })))
    .await;
    assert!(outcome.success, "{log}");
    for alias in [
        "glci-fixture__tcp-service",
        "glci-fixture-tcp-service",
        "greeter",
        "other",
    ] {
        assert!(
            log.contains(&format!("{alias}: hi test\n")),
            "{alias} unreachable:\n{log}"
        );
    }
    assert!(!log.contains("probably didn't start properly"), "{log}");
}

#[tokio::test]
async fn a_missing_image_is_one_clear_failure() {
    let (outcome, log) = run(&payload(json!({
        "image": {"name": "glci-fixture/not-there:1", "pull_policy": ["never"]}
    })))
    .await;
    assert_eq!(
        outcome.failure_reason.as_deref(),
        Some("runner_system_failure")
    );
    assert!(
        log.contains("failed to pull image \"glci-fixture/not-there:1\""),
        "{log}"
    );
}
