//! Helpers shared by the `server_*` tests: a real HTTP client (`curl`) and job specs.

use std::path::Path;
use std::process::Stdio;

use glci_test::server::{GitSpec, JobSpec, ProjectSpec, StepSpec};

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs `curl` with `args` and returns status, headers of the final response and body.
pub async fn curl(args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().expect("temp dir");
    let headers_path = dir.path().join("headers");
    let body_path = dir.path().join("body");
    let out = tokio::process::Command::new("curl")
        // Loopback only: a proxy from the environment must not divert test traffic.
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "60",
            "-H",
            "Expect:",
            "-D",
        ])
        .arg(&headers_path)
        .arg("-o")
        .arg(&body_path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read_to_string(&headers_path).unwrap_or_default();
    let last_block = raw
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("")
        .to_string();
    let mut lines = last_block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = std::fs::read(&body_path).unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// POSTs/PUTs JSON to `url`.
pub async fn send_json(method: &str, url: &str, body: &serde_json::Value) -> Reply {
    let body = body.to_string();
    curl(&[
        "-X",
        method,
        "-H",
        "Content-Type: application/json",
        "-H",
        "Accept: application/json",
        "--data-binary",
        &body,
        url,
    ])
    .await
}

/// The `info` object the official runner sends (docs/runner-contract.md §2.2), plus fields no
/// version of GitLab knows, which must be ignored.
pub fn runner_info(cancel_gracefully: bool) -> serde_json::Value {
    serde_json::json!({
        "name": "gitlab-runner", "version": "19.4.0", "revision": "d79f3e7b",
        "platform": "linux", "architecture": "amd64", "executor": "docker", "shell": "bash",
        "features": {
            "variables": true, "image": true, "services": true, "artifacts": true,
            "cache": true, "upload_multiple_artifacts": true, "upload_raw_artifacts": true,
            "refspecs": true, "masking": true, "raw_variables": true, "trace_reset": true,
            "trace_checksum": true, "trace_size": true, "cancelable": true,
            "return_exit_code": true, "cancel_gracefully": cancel_gracefully,
            "two_phase_job_commit": true, "job_inputs": true,
            "feature_from_the_future": true
        },
        "config": { "gpus": "" },
        "unknown_info_field": [1, 2, 3]
    })
}

pub fn job_spec(name: &str, pipeline_id: u64, project: &str, sha: &str) -> JobSpec {
    JobSpec {
        name: name.to_string(),
        stage: "test".to_string(),
        pipeline_id,
        project: ProjectSpec {
            id: 3,
            path: project.to_string(),
            namespace_id: 2,
            root_namespace_id: 2,
        },
        steps: vec![StepSpec {
            name: "script".to_string(),
            script: vec!["echo hello".to_string()],
            ..StepSpec::default()
        }],
        timeout_secs: 3600,
        git: GitSpec {
            ref_name: "main".to_string(),
            sha: sha.to_string(),
            refspecs: vec![format!(
                "+refs/pipelines/{pipeline_id}:refs/pipelines/{pipeline_id}"
            )],
            depth: 20,
            ..GitSpec::default()
        },
        ..JobSpec::default()
    }
}

/// Runs `git` in `dir`, panicking with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `git` in `dir` without judging the outcome; never prompts for credentials.
pub fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .output()
        .expect("git runs")
}

/// Takes the next job as the official runner does and acknowledges it (`PUT running`);
/// returns the job payload.
pub async fn take_job(url: &str, runner_token: &str) -> serde_json::Value {
    let reply = send_json(
        "POST",
        &format!("{url}/api/v4/jobs/request"),
        &serde_json::json!({ "info": runner_info(true), "token": runner_token }),
    )
    .await;
    assert_eq!(reply.status, 201, "job request: {}", reply.text());
    let job = reply.json();
    let id = job["id"].as_u64().expect("job id");
    let token = job["token"].as_str().expect("job token");
    let ack = send_json(
        "PUT",
        &format!("{url}/api/v4/jobs/{id}"),
        &serde_json::json!({ "info": runner_info(true), "token": token, "state": "running",
                             "output": { "checksum": "", "bytesize": 0 } }),
    )
    .await;
    assert_eq!(ack.status, 200, "ack: {}", ack.text());
    job
}
