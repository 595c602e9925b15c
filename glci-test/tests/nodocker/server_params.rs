//! The runner API reads parameters in every format GitLab's Grape accepts (JSON, form-encoded,
//! multipart, query string; body over query; `key[]` and comma lists; `1`/`0` booleans), and
//! uses two-phase job commit only with runners that announce it. Driven with curl.

use crate::support;

use std::time::Duration;

use glci_test::server::{JobState, RunningServer, Server, ServerConfig};
use serde_json::json;
use support::{curl, job_spec, runner_info, send_json, Reply};

const SHA: &str = "3f786850e387550fdab836ed7e6dc881de23001b";

async fn start() -> (tempfile::TempDir, RunningServer) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(tmp.path().join("data"));
    config.api.long_poll = Duration::from_millis(200);
    let server = Server::start(config).await.expect("server starts");
    (tmp, server)
}

/// `curl` with `args` then the URL.
async fn call(method: &str, args: &[&str], url: &str) -> Reply {
    let mut all = vec!["-X", method];
    all.extend_from_slice(args);
    all.push(url);
    curl(&all).await
}

/// Queues one job tagged `tags` and asks for it with `runner_token`: whether it was handed out.
async fn runner_takes_tagged(server: &RunningServer, runner_token: &str, tags: &[&str]) -> bool {
    let mut spec = job_spec("tagged", 1, "group/project", SHA);
    spec.tags = tags.iter().map(|t| t.to_string()).collect();
    let id = server.enqueue(spec).expect("queued");
    let url = format!("{}/api/v4/jobs/request", server.url());
    let reply = call(
        "POST",
        &["--data-urlencode", &format!("token={runner_token}")],
        &url,
    )
    .await;
    server.cancel(id);
    reply.status == 201
}

#[tokio::test]
async fn registration_accepts_every_parameter_format() {
    let (_tmp, server) = start().await;
    let url = format!("{}/api/v4/runners", server.url());
    let reg = server.registration_token().to_string();

    // Form-encoded, tags as a comma list (what the client sent).
    let form = call(
        "POST",
        &[
            "--data-urlencode",
            &format!("token={reg}"),
            "--data-urlencode",
            "description=third party",
            "--data-urlencode",
            "tag_list=docker,linux",
            "--data-urlencode",
            "run_untagged=0",
        ],
        &url,
    )
    .await;
    assert_eq!(form.status, 201, "form: {}", form.text());
    let form_token = form.json()["token"].as_str().expect("token").to_string();
    assert!(runner_takes_tagged(&server, &form_token, &["docker", "linux"]).await);
    assert!(
        !runner_takes_tagged(&server, &form_token, &[]).await,
        "run_untagged=0 must be false"
    );

    // Form-encoded arrays as `tag_list[]=`.
    let brackets = call(
        "POST",
        &[
            "-d",
            &format!("token={reg}&tag_list[]=gpu&tag_list[]=big&run_untagged=false"),
        ],
        &url,
    )
    .await;
    assert_eq!(brackets.status, 201, "{}", brackets.text());
    let token = brackets.json()["token"].as_str().unwrap().to_string();
    assert!(runner_takes_tagged(&server, &token, &["gpu", "big"]).await);
    assert!(!runner_takes_tagged(&server, &token, &["docker"]).await);

    // Multipart.
    let multipart = call(
        "POST",
        &[
            "-F",
            &format!("token={reg}"),
            "-F",
            "tag_list[]=arm",
            "-F",
            "run_untagged=1",
        ],
        &url,
    )
    .await;
    assert_eq!(multipart.status, 201, "{}", multipart.text());
    let token = multipart.json()["token"].as_str().unwrap().to_string();
    assert!(runner_takes_tagged(&server, &token, &["arm"]).await);
    assert!(runner_takes_tagged(&server, &token, &[]).await);

    // Query string only.
    let query = call(
        "POST",
        &[],
        &format!("{url}?token={reg}&tag_list=q1,q2&run_untagged=false"),
    )
    .await;
    assert_eq!(query.status, 201, "{}", query.text());
    let token = query.json()["token"].as_str().unwrap().to_string();
    assert!(runner_takes_tagged(&server, &token, &["q2", "q1"]).await);

    // JSON, as the official runner sends it.
    let json_reply = send_json(
        "POST",
        &url,
        &json!({"token": reg, "tag_list": "j", "run_untagged": false, "info": runner_info(false)}),
    )
    .await;
    assert_eq!(json_reply.status, 201, "{}", json_reply.text());

    // Grape's precedence: the body wins over the query string.
    let body_wins = call(
        "POST",
        &["--data-urlencode", &format!("token={reg}")],
        &format!("{url}?token=wrong"),
    )
    .await;
    assert_eq!(body_wins.status, 201, "{}", body_wins.text());
    let query_loses = call(
        "POST",
        &["--data-urlencode", "token=wrong"],
        &format!("{url}?token={reg}"),
    )
    .await;
    assert_eq!(query_loses.status, 403, "{}", query_loses.text());

    // A body the API cannot read gets one clear answer, never a panic.
    let bad = call(
        "POST",
        &["-H", "Content-Type: text/plain", "--data-binary", "token"],
        &url,
    )
    .await;
    assert_eq!(bad.status, 415, "{}", bad.text());
    let broken = call(
        "POST",
        &[
            "-H",
            "Content-Type: multipart/form-data; boundary=XY",
            "--data-binary",
            "--XY\r\nbroken",
        ],
        &url,
    )
    .await;
    assert_eq!(broken.status, 400, "{}", broken.text());
}

#[tokio::test]
async fn other_endpoints_read_forms_too() {
    let (_tmp, server) = start().await;
    let creds = server.create_runner(&[], true);
    let base = format!("{}/api/v4", server.url());
    let verify = call(
        "POST",
        &["-d", &format!("token={}", creds.token)],
        &format!("{base}/runners/verify"),
    )
    .await;
    assert_eq!(verify.status, 200, "{}", verify.text());
    let manager = call(
        "DELETE",
        &[],
        &format!(
            "{base}/runners/managers?token={}&system_id=s_1",
            creds.token
        ),
    )
    .await;
    assert_eq!(manager.status, 204, "{}", manager.text());
    let reset = call(
        "POST",
        &["-F", &format!("token={}", creds.token)],
        &format!("{base}/runners/reset_authentication_token"),
    )
    .await;
    assert_eq!(reset.status, 201, "{}", reset.text());
    let fresh = reset.json()["token"].as_str().unwrap().to_string();
    let gone = call(
        "DELETE",
        &["-d", &format!("token={fresh}")],
        &format!("{base}/runners"),
    )
    .await;
    assert_eq!(gone.status, 204, "{}", gone.text());
}

/// A runner that does not announce `two_phase_job_commit` (here: a form-encoded client) gets
/// its job `running` at once, and may report `success` without a `running` update first.
#[tokio::test]
async fn without_two_phase_commit_a_handed_out_job_runs_and_may_finish_directly() {
    let (_tmp, server) = start().await;
    let creds = server.create_runner(&[], true);
    let base = format!("{}/api/v4", server.url());
    let id = server
        .enqueue(job_spec("direct", 1, "group/project", SHA))
        .unwrap();
    let reply = call(
        "POST",
        &[
            "-d",
            &format!(
                "token={}&info[features][two_phase_job_commit]=0&info[name]=other-runner",
                creds.token
            ),
        ],
        &format!("{base}/jobs/request"),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let job = reply.json();
    assert_eq!(server.job_state(id), Some(JobState::Running));
    let token = job["token"].as_str().unwrap();
    let done = call(
        "PUT",
        &[
            "--data-urlencode",
            &format!("token={token}"),
            "--data-urlencode",
            "state=failed",
            "--data-urlencode",
            "failure_reason=script_failure",
            "--data-urlencode",
            "exit_code=3",
        ],
        &format!("{base}/jobs/{}", job["id"]),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(
        server.job_state(id),
        Some(JobState::Failed {
            reason: "script_failure".to_string(),
            exit_code: Some(3)
        })
    );
}

/// A runner that announces it (`info[features][two_phase_job_commit]=true` or JSON `true`)
/// keeps today's path: the job waits for `running`, a final state before it is refused.
#[tokio::test]
async fn with_two_phase_commit_the_job_waits_for_the_acknowledgement() {
    let (_tmp, server) = start().await;
    let creds = server.create_runner(&[], true);
    let base = format!("{}/api/v4", server.url());
    for form in [true, false] {
        let id = server
            .enqueue(job_spec("acked", 1, "group/project", SHA))
            .unwrap();
        let reply = if form {
            call(
                "POST",
                &[
                    "-d",
                    &format!(
                        "token={}&info[features][two_phase_job_commit]=true",
                        creds.token
                    ),
                ],
                &format!("{base}/jobs/request"),
            )
            .await
        } else {
            send_json(
                "POST",
                &format!("{base}/jobs/request"),
                &json!({ "token": creds.token, "info": runner_info(true) }),
            )
            .await
        };
        assert_eq!(reply.status, 201, "{}", reply.text());
        assert_eq!(server.job_state(id), Some(JobState::Assigned));
        let job = reply.json();
        let token = job["token"].as_str().unwrap().to_string();
        let url = format!("{base}/jobs/{}", job["id"]);
        let early = call(
            "PUT",
            &["-d", &format!("token={token}&state=success")],
            &url,
        )
        .await;
        assert_eq!(early.status, 400, "{}", early.text());
        let ack = call(
            "PUT",
            &["-d", &format!("token={token}&state=running")],
            &url,
        )
        .await;
        assert_eq!(ack.status, 200, "{}", ack.text());
        assert_eq!(server.job_state(id), Some(JobState::Running));
        let done = call(
            "PUT",
            &["-d", &format!("token={token}&state=success")],
            &url,
        )
        .await;
        assert_eq!(done.status, 200, "{}", done.text());
        assert_eq!(server.job_state(id), Some(JobState::Success));
    }
}
