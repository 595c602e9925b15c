//! The runner API driven with a real HTTP client (curl) in the official runner's request
//! sequences and bodies (docs/runner-contract.md §2): registration, long-polled requests, trace
//! offsets, artifacts with dotenv, final updates, cancellation, tags, concurrency.

use crate::support;

use std::io::Write;
use std::time::{Duration, Instant};

use glci_test::server::{
    DependencySpec, JobEvent, JobState, JobVariable, RunningServer, Server, ServerConfig,
};
use serde_json::json;
use support::{curl, job_spec, runner_info, send_json, take_job, Reply};

const SHA: &str = "3f786850e387550fdab836ed7e6dc881de23001b";

async fn start(long_poll: Duration) -> (tempfile::TempDir, RunningServer) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(tmp.path().join("data"));
    config.api.long_poll = long_poll;
    let server = Server::start(config).await.expect("server starts");
    (tmp, server)
}

async fn request(url: &str, token: &str) -> Reply {
    send_json(
        "POST",
        &format!("{url}/api/v4/jobs/request"),
        &json!({ "info": runner_info(true), "token": token, "system_id": "s_0a1b2c3d4e5f" }),
    )
    .await
}

async fn patch(url: &str, id: u64, token: &str, range: &str, data: &str) -> Reply {
    curl(&[
        "-X",
        "PATCH",
        "-H",
        &format!("Job-Token: {token}"),
        "-H",
        &format!("Content-Range: {range}"),
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        data,
        &format!("{url}/api/v4/jobs/{id}/trace?debug_trace=false"),
    ])
    .await
}

async fn put_state(url: &str, id: u64, token: &str, body: serde_json::Value) -> Reply {
    let mut body = body;
    body["token"] = json!(token);
    body["info"] = runner_info(true);
    send_json("PUT", &format!("{url}/api/v4/jobs/{id}"), &body).await
}

async fn upload(
    url: &str,
    id: u64,
    token: &str,
    file: &std::path::Path,
    filename: &str,
    query: &str,
) -> Reply {
    curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Job-Token: {token}"),
        // The helper streams uploads chunked, without Content-Length.
        "-H",
        "Transfer-Encoding: chunked",
        "-F",
        &format!("file=@{};filename={filename}", file.display()),
        &format!("{url}/api/v4/jobs/{id}/artifacts?{query}"),
    ])
    .await
}

fn zip_bytes() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("out/report.txt", zip::write::SimpleFileOptions::default())
        .expect("zip entry");
    w.write_all(b"built\n").expect("zip write");
    w.finish().expect("zip finish").into_inner()
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

fn var<'a>(job: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    job["variables"]
        .as_array()
        .expect("variables array")
        .iter()
        .rev()
        .find(|v| v["key"] == key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_verify_and_unregister() {
    let (_tmp, server) = start(Duration::from_millis(200)).await;
    let url = server.url();

    let bad = send_json(
        "POST",
        &format!("{url}/api/v4/runners"),
        &json!({ "token": "GR1348941wrong", "description": "x", "info": runner_info(false) }),
    )
    .await;
    assert_eq!(bad.status, 403);

    let reg = send_json(
        "POST",
        &format!("{url}/api/v4/runners"),
        &json!({ "token": server.registration_token(), "description": "ci", "tag_list": "docker, linux",
                 "run_untagged": false, "locked": true, "access_level": "not_protected",
                 "maximum_timeout": 0, "paused": false, "info": runner_info(false),
                 "maintenance_note": "", "some_new_field": {"x": 1} }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text());
    assert!(reg
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let body = reg.json();
    let token = body["token"].as_str().expect("token").to_string();
    assert!(body["id"].as_u64().is_some_and(|id| id > 0));
    assert!(body["token_expires_at"].is_null());

    let verified = send_json(
        "POST",
        &format!("{url}/api/v4/runners/verify"),
        &json!({ "token": token, "system_id": "s_0a1b2c3d4e5f", "info": runner_info(false) }),
    )
    .await;
    assert_eq!(verified.status, 200);
    assert_eq!(verified.json()["id"], body["id"]);
    let unknown = send_json(
        "POST",
        &format!("{url}/api/v4/runners/verify"),
        &json!({ "token": "glrt-unknown" }),
    )
    .await;
    assert_eq!(unknown.status, 403);

    // A UI-created `glrt-` runner verifies too.
    let created = server.create_runner(&[], true);
    assert!(created.token.starts_with("glrt-"));
    let ok = send_json(
        "POST",
        &format!("{url}/api/v4/runners/verify"),
        &json!({ "token": created.token }),
    )
    .await;
    assert_eq!(ok.status, 200);

    let reset = send_json(
        "POST",
        &format!("{url}/api/v4/runners/reset_authentication_token"),
        &json!({ "token": token }),
    )
    .await;
    assert_eq!(reset.status, 201);
    let fresh = reset.json()["token"].as_str().expect("token").to_string();
    assert_ne!(fresh, token);
    assert_eq!(request(url, &token).await.status, 403, "old token revoked");

    let mgr = send_json(
        "DELETE",
        &format!("{url}/api/v4/runners/managers"),
        &json!({ "token": fresh, "system_id": "s_0a1b2c3d4e5f" }),
    )
    .await;
    assert_eq!(mgr.status, 204);
    let gone = send_json(
        "DELETE",
        &format!("{url}/api/v4/runners"),
        &json!({ "token": fresh }),
    )
    .await;
    assert_eq!(gone.status, 204);
    assert_eq!(request(url, &fresh).await.status, 403);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_long_polls_and_payload_matches_the_contract() {
    let (_tmp, server) = start(Duration::from_secs(5)).await;
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);

    assert_eq!(request(&url, "glrt-nope").await.status, 403);

    // Nothing queued: held until the long poll ends, then 204 with a queue version.
    let short = {
        let (_t, s) = start(Duration::from_millis(300)).await;
        let r = s.create_runner(&[], true);
        let began = Instant::now();
        let reply = request(s.url(), &r.token).await;
        assert!(began.elapsed() >= Duration::from_millis(250), "not held");
        s.shutdown().await;
        reply
    };
    assert_eq!(short.status, 204);
    assert!(short
        .header("x-gitlab-last-update")
        .is_some_and(|v| !v.is_empty()));

    // A held request picks up a job queued while it waits.
    let poll = {
        let url = url.clone();
        let token = runner.token.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            (request(&url, &token).await, began.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut spec = job_spec("test", 7, "acme/demo", SHA);
    spec.variables = vec![
        JobVariable::public("RUST_LOG", "debug"),
        // Server-owned names from the planner are replaced by the server's values.
        JobVariable::public("CI_JOB_TOKEN", "planner-guess"),
        JobVariable {
            key: "SECRET_FILE".into(),
            value: "s3cr3t".into(),
            masked: true,
            file: true,
            ..JobVariable::default()
        },
    ];
    let id = server.enqueue(spec).expect("queued");
    let (reply, waited) = poll.await.expect("poll task");
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert!(waited < Duration::from_secs(3), "pick-up took {waited:?}");
    assert!(reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    assert!(reply.header("x-gitlab-last-update").is_some());
    assert_eq!(server.job_state(id), Some(JobState::Assigned));

    let job = reply.json();
    assert_eq!(job["id"].as_u64(), Some(id.0));
    let token = job["token"].as_str().expect("token");
    assert!(token.starts_with("glcbt-"));
    assert!(job.get("run").is_none(), "`run` must be omitted");
    assert_eq!(job["job_info"]["name"], "test");
    assert_eq!(job["job_info"]["project_full_path"], "acme/demo");
    assert_eq!(job["job_info"]["project_name"], "demo");
    assert!(job["job_info"]["time_in_queue_seconds"].is_f64());
    assert_eq!(job["runner_info"]["timeout"], 3600);
    assert_eq!(job["git_info"]["sha"], SHA);
    assert_eq!(job["git_info"]["depth"], 20);
    assert_eq!(job["git_info"]["ref_type"], "branch");
    assert_eq!(
        job["git_info"]["refspecs"],
        json!(["+refs/pipelines/7:refs/pipelines/7"])
    );
    assert!(job["git_info"]["repo_url"]
        .as_str()
        .is_some_and(|u| u.ends_with("/acme/demo.git") && u.contains(token)));
    assert_eq!(job["steps"][0]["name"], "script");
    assert_eq!(job["steps"][0]["timeout"], 3600);
    assert_eq!(job["steps"][0]["when"], "on_success");
    assert_eq!(job["features"]["trace_sections"], true);
    assert!(job["features"]["failure_reasons"]
        .as_array()
        .is_some_and(|r| r.contains(&json!("runner_configuration_error"))
            && !r.contains(&json!("image_pull_failure"))));
    assert!(job["image"].is_null());
    assert_eq!(job["dependencies"], json!([]));
    let ci_token = var(&job, "CI_JOB_TOKEN").expect("CI_JOB_TOKEN");
    assert_eq!(ci_token["value"], token);
    assert_eq!(ci_token["masked"], true);
    assert_eq!(ci_token["public"], false);
    assert_eq!(
        var(&job, "CI_JOB_ID").expect("CI_JOB_ID")["value"],
        id.0.to_string()
    );
    assert_eq!(
        var(&job, "CI_SERVER_URL").expect("CI_SERVER_URL")["value"],
        url
    );
    let rust_log = var(&job, "RUST_LOG").expect("RUST_LOG");
    assert!(rust_log.get("file").is_none(), "`file` only when true");
    let file = var(&job, "SECRET_FILE").expect("SECRET_FILE");
    assert_eq!(file["file"], true);
    assert_eq!(file["masked"], true);

    // The two-phase commit: running only after the runner's acknowledgement; before it,
    // `pending` is a keep-alive and a final state is refused, as GitLab does.
    let early = put_state(&url, id.0, token, json!({ "state": "success" })).await;
    assert_eq!(early.status, 400);
    let keep_alive = put_state(&url, id.0, token, json!({ "state": "pending" })).await;
    assert_eq!(keep_alive.status, 200);
    assert_eq!(server.job_state(id), Some(JobState::Assigned));
    let ack = put_state(&url, id.0, token, json!({ "state": "running" })).await;
    assert_eq!(ack.status, 200);
    assert_eq!(ack.header("job-status"), Some("running"));
    assert!(ack.header("x-gitlab-trace-update-interval").is_some());
    assert_eq!(server.job_state(id), Some(JobState::Running));

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_end_to_end_with_traces_artifacts_and_dependencies() {
    let (tmp, server) = start(Duration::from_millis(300)).await;
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);
    let mut events = server.subscribe();

    let build = server
        .enqueue(job_spec("build", 9, "acme/demo", SHA))
        .expect("queued");
    let job = take_job(&url, &runner.token).await;
    let id = job["id"].as_u64().expect("id");
    assert_eq!(id, build.0);
    let token = job["token"].as_str().expect("token").to_string();

    // Nothing else is queued: the same job is never handed out twice.
    assert_eq!(request(&url, &runner.token).await.status, 204);

    // Trace: append at the stored length only.
    let r = patch(&url, id, &token, "0-4", "hello").await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-5"));
    assert_eq!(r.header("job-status"), Some("running"));
    let r = patch(&url, id, &token, "3-5", "xyz").await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("range"), Some("0-5"));
    let r = patch(&url, id, &token, "9-10", "zz").await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("range"),
        Some("0-5"),
        "never claims more than stored"
    );
    let r = patch(&url, id, &token, "5-10", " world").await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range"), Some("0-11"));
    let r = curl(&[
        "-X",
        "PATCH",
        "-H",
        &format!("Job-Token: {token}"),
        "--data-binary",
        "x",
        &format!("{url}/api/v4/jobs/{id}/trace"),
    ])
    .await;
    assert_eq!(r.status, 400, "missing Content-Range");
    assert_eq!(patch(&url, id, "wrong", "11-11", "!").await.status, 403);
    assert_eq!(patch(&url, 999, &token, "0-0", "!").await.status, 403);
    assert_eq!(server.trace(build).as_deref(), Some(&b"hello world"[..]));

    // Artifacts: the archive, a junit report, a dotenv report — separate uploads.
    let zip = tmp.path().join("artifacts.zip");
    std::fs::write(&zip, zip_bytes()).expect("write");
    let r = upload(
        &url,
        id,
        &token,
        &zip,
        "artifacts.zip",
        "artifact_format=zip&artifact_type=archive&expire_in=1+week",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let junit = tmp.path().join("junit.xml.gz");
    std::fs::write(&junit, gzip_bytes(b"<testsuites/>")).expect("write");
    let r = upload(
        &url,
        id,
        &token,
        &junit,
        "junit.xml.gz",
        "artifact_format=gzip&artifact_type=junit",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let bad_env = tmp.path().join("bad.env.gz");
    std::fs::write(&bad_env, gzip_bytes(b"OK=1\n\nNOPE\n")).expect("write");
    let r = upload(
        &url,
        id,
        &token,
        &bad_env,
        "gl-dotenv.env.gz",
        "artifact_format=gzip&artifact_type=dotenv",
    )
    .await;
    assert_eq!(r.status, 400, "blank lines are invalid dotenv");
    let env = tmp.path().join("env.gz");
    std::fs::write(&env, gzip_bytes(b"VERSION=1.2.3\nBUILD_ID = 42 \n")).expect("write");
    let r = upload(
        &url,
        id,
        &token,
        &env,
        "gl-dotenv.env.gz",
        "artifact_format=gzip&artifact_type=dotenv",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = upload(
        &url,
        id,
        &token,
        &env,
        "x.zip",
        "artifact_format=zip&artifact_type=archive",
    )
    .await;
    assert_eq!(r.status, 400, "gzip bytes declared as zip");
    assert_eq!(
        upload(&url, id, "wrong", &zip, "a.zip", "artifact_format=zip")
            .await
            .status,
        403
    );
    assert_eq!(
        server.dotenv(build),
        vec![
            ("VERSION".to_string(), "1.2.3".to_string()),
            ("BUILD_ID".to_string(), "42".to_string())
        ]
    );
    let stored = server.artifacts(build);
    assert_eq!(stored.len(), 3);
    let archive = stored
        .iter()
        .find(|a| a.artifact_type == "archive")
        .expect("archive");
    assert_eq!(std::fs::read(&archive.path).expect("stored"), zip_bytes());
    assert_eq!(archive.expire_in.as_deref(), Some("1 week"));

    // Final update, then a retried final update: both 200.
    let fin = put_state(
        &url,
        id,
        &token,
        json!({ "state": "success", "checksum": "crc32:0d4a1185",
                "output": { "checksum": "crc32:0d4a1185", "bytesize": 11 }, "exit_code": 0 }),
    )
    .await;
    assert_eq!(fin.status, 200);
    assert_eq!(fin.header("job-status"), Some("success"));
    let again = put_state(&url, id, &token, json!({ "state": "success" })).await;
    assert_eq!(again.status, 200);
    assert_eq!(server.wait_job(build).await, Some(JobState::Success));
    // The finished trace is kept under the data directory.
    let saved = tmp.path().join("data/traces").join(format!("{id}.log"));
    for _ in 0..50 {
        if saved.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read(&saved).expect("trace saved"), b"hello world");
    assert_eq!(
        patch(&url, id, &token, "11-11", "!").await.status,
        403,
        "finished jobs take no trace"
    );

    // The consumer gets the archive as a dependency, the dotenv variables, and downloads
    // with its own token.
    let mut spec = job_spec("test", 9, "acme/demo", SHA);
    spec.dependencies = vec![DependencySpec {
        job: build,
        name: "build".into(),
    }];
    spec.override_variables = vec![JobVariable::public("VERSION", "from-settings")];
    let consumer = server.enqueue(spec).expect("queued");
    let job2 = take_job(&url, &runner.token).await;
    let token2 = job2["token"].as_str().expect("token").to_string();
    let dep = &job2["dependencies"][0];
    assert_eq!(dep["id"].as_u64(), Some(build.0));
    assert_eq!(dep["name"], "build");
    assert_eq!(dep["token"], token2.as_str());
    assert_eq!(dep["artifacts_file"]["filename"], "artifacts.zip");
    assert_eq!(
        dep["artifacts_file"]["size"].as_u64(),
        Some(zip_bytes().len() as u64)
    );
    assert_eq!(var(&job2, "BUILD_ID").expect("dotenv")["value"], "42");
    // Settings variables come after dotenv ones and win.
    assert_eq!(
        var(&job2, "VERSION").expect("VERSION")["value"],
        "from-settings"
    );

    let dl = curl(&[
        "-H",
        &format!("Job-Token: {token2}"),
        &format!("{url}/api/v4/jobs/{id}/artifacts?direct_download=true"),
    ])
    .await;
    assert_eq!(dl.status, 200);
    assert_eq!(dl.body, zip_bytes());
    let dl_query = curl(&[&format!("{url}/api/v4/jobs/{id}/artifacts?token={token2}")]).await;
    assert_eq!(dl_query.status, 200);
    let stale = curl(&[
        "-H",
        &format!("Job-Token: {token}"),
        &format!("{url}/api/v4/jobs/{id}/artifacts"),
    ])
    .await;
    assert_eq!(stale.status, 403, "a finished job's token");
    let bogus = curl(&[
        "-H",
        "Job-Token: bogus",
        &format!("{url}/api/v4/jobs/{id}/artifacts"),
    ])
    .await;
    assert_eq!(bogus.status, 401);
    let none = curl(&[
        "-H",
        &format!("Job-Token: {token2}"),
        &format!("{url}/api/v4/jobs/{}/artifacts", consumer.0),
    ])
    .await;
    assert_eq!(none.status, 404, "no archive uploaded");

    let failed = put_state(
        &url,
        consumer.0,
        &token2,
        json!({ "state": "failed", "failure_reason": "script_failure", "exit_code": 3 }),
    )
    .await;
    assert_eq!(failed.status, 200);
    assert_eq!(
        server.wait_job(consumer).await,
        Some(JobState::Failed {
            reason: "script_failure".into(),
            exit_code: Some(3)
        })
    );
    let bad_state = put_state(&url, consumer.0, &token2, json!({ "state": "weird" })).await;
    assert_eq!(bad_state.status, 400);
    assert_eq!(
        put_state(&url, 999, &token2, json!({ "state": "success" }))
            .await
            .status,
        403
    );

    // The observer saw every state of the first job and its trace bytes.
    let mut seen = Vec::new();
    let mut traced = Vec::new();
    while let Ok(ev) = events.try_recv() {
        match ev {
            JobEvent::State { job, state } if job == build => seen.push(state),
            JobEvent::Trace { job, data, .. } if job == build => traced.extend_from_slice(&data),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        vec![
            JobState::Pending,
            JobState::Assigned,
            JobState::Running,
            JobState::Success
        ]
    );
    assert_eq!(traced, b"hello world");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_gracefully_abort_and_cancel_while_pending() {
    let (_tmp, server) = start(Duration::from_millis(200)).await;
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);

    // Graceful: the runner advertised cancel_gracefully → canceling, then canceled.
    let a = server
        .enqueue(job_spec("a", 1, "g/p", SHA))
        .expect("queued");
    let job = take_job(&url, &runner.token).await;
    let token = job["token"].as_str().expect("token").to_string();
    assert!(server.cancel(a));
    assert_eq!(server.job_state(a), Some(JobState::Canceling));
    let r = patch(&url, a.0, &token, "0-2", "abc").await;
    assert_eq!(r.status, 202, "after_script output still accepted");
    assert_eq!(r.header("job-status"), Some("canceling"));
    let r = put_state(&url, a.0, &token, json!({ "state": "running" })).await;
    assert_eq!(r.header("job-status"), Some("canceling"));
    let r = put_state(
        &url,
        a.0,
        &token,
        json!({ "state": "failed", "failure_reason": "job_canceled" }),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("job-status"), Some("canceled"));
    assert_eq!(server.wait_job(a).await, Some(JobState::Canceled));

    // Abort: Job-Status canceled, trace refused with 403.
    let b = server
        .enqueue(job_spec("b", 1, "g/p", SHA))
        .expect("queued");
    let job = take_job(&url, &runner.token).await;
    let token = job["token"].as_str().expect("token").to_string();
    assert!(server.abort(b));
    let r = patch(&url, b.0, &token, "0-2", "abc").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("job-status"), Some("canceled"));
    let r = put_state(&url, b.0, &token, json!({ "state": "failed" })).await;
    assert_eq!(r.status, 200, "final update of a canceled job still 200");
    assert_eq!(server.job_state(b), Some(JobState::Canceled));

    // Pending: never handed out.
    let c = server
        .enqueue(job_spec("c", 1, "g/p", SHA))
        .expect("queued");
    assert!(server.cancel(c));
    assert_eq!(request(&url, &runner.token).await.status, 204);
    assert_eq!(server.wait_job(c).await, Some(JobState::Canceled));
    assert!(!server.cancel(c), "already finished");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_run_untagged_decide_who_gets_a_job() {
    let (_tmp, server) = start(Duration::from_millis(200)).await;
    let url = server.url().to_string();
    let docker_only = server.create_runner(&["docker".to_string()], false);
    let untagged = server.create_runner(&[], true);

    let mut both = job_spec("both", 1, "g/p", SHA);
    both.tags = vec!["docker".into(), "linux".into()];
    let both = server.enqueue(both).expect("queued");
    let plain = server
        .enqueue(job_spec("plain", 1, "g/p", SHA))
        .expect("queued");
    let mut docker = job_spec("docker", 1, "g/p", SHA);
    docker.tags = vec!["docker".into()];
    let docker = server.enqueue(docker).expect("queued");

    let r = request(&url, &docker_only.token).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["id"].as_u64(), Some(docker.0));
    assert_eq!(request(&url, &docker_only.token).await.status, 204);
    let r = request(&url, &untagged.token).await;
    assert_eq!(r.json()["id"].as_u64(), Some(plain.0));
    assert_eq!(request(&url, &untagged.token).await.status, 204);
    assert_eq!(server.job_state(both), Some(JobState::Pending));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_get_distinct_ids_and_separate_traces() {
    let (_tmp, server) = start(Duration::from_secs(2)).await;
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);
    let ids: Vec<_> = (0..4)
        .map(|i| {
            server
                .enqueue(job_spec(&format!("job{i}"), 1, "g/p", SHA))
                .expect("queued")
        })
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        let token = runner.token.clone();
        tasks.push(tokio::spawn(async move {
            let job = take_job(&url, &token).await;
            let id = job["id"].as_u64().expect("id");
            let jt = job["token"].as_str().expect("token").to_string();
            let text = format!("log of {id}");
            let r = patch(&url, id, &jt, &format!("0-{}", text.len() - 1), &text).await;
            assert_eq!(r.status, 202);
            let r = put_state(&url, id, &jt, json!({ "state": "success" })).await;
            assert_eq!(r.status, 200);
            id
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    got.sort_unstable();
    assert_eq!(got, ids.iter().map(|i| i.0).collect::<Vec<_>>());
    for id in ids {
        assert_eq!(server.wait_job(id).await, Some(JobState::Success));
        assert_eq!(
            server.trace(id),
            Some(format!("log of {}", id.0).into_bytes())
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_and_bad_bodies_are_refused_without_panicking() {
    let (_tmp, server) = start(Duration::from_millis(100)).await;
    let url = server.url().to_string();
    assert!(
        server.enqueue(job_spec("x", 1, "g/p", "abc")).is_err(),
        "short sha"
    );
    assert!(server.enqueue(job_spec("x", 1, "noslash", SHA)).is_err());
    let mut dangling = job_spec("x", 1, "g/p", SHA);
    dangling.dependencies = vec![DependencySpec {
        job: glci_test::server::JobId(4242),
        name: "ghost".into(),
    }];
    assert!(server.enqueue(dangling).is_err());

    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "{not json",
        &format!("{url}/api/v4/jobs/request"),
    ])
    .await;
    assert_eq!(r.status, 400);
    let r = curl(&[&format!("{url}/api/v4/nothing/here")]).await;
    assert_eq!(r.status, 404);
    let r = curl(&[&format!("{url}/elsewhere")]).await;
    assert_eq!(r.status, 404);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_held_polls_and_closes_the_port() {
    let (_tmp, server) = start(Duration::from_secs(30)).await;
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);
    let addr = server.local_addr();
    assert!(
        addr.ip().is_loopback(),
        "default bind is loopback, not {addr}"
    );
    let held = {
        let url = url.clone();
        let token = runner.token.clone();
        tokio::spawn(async move { request(&url, &token).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    server.shutdown().await;
    let reply = held.await.expect("poll task");
    assert_eq!(reply.status, 204);
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "shutdown waited for the long poll"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_and_ssh_variables_point_at_the_server() {
    let (_tmp, server) = start(Duration::from_millis(100)).await;
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);
    server
        .enqueue(job_spec("x", 1, "g/p", SHA))
        .expect("queued");
    let reply = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Request-Id: 0123456789abcdef0123456789abcdef",
        "--data-binary",
        &json!({ "token": runner.token, "info": runner_info(false) }).to_string(),
        &format!("{url}/api/v4/jobs/request"),
    ])
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.header("x-request-id"),
        Some("0123456789abcdef0123456789abcdef")
    );
    let job = reply.json();
    assert_eq!(
        var(&job, "CI_SERVER_SHELL_SSH_HOST").expect("ssh host")["value"],
        "127.0.0.1"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_artifacts_get_413_and_dotenv_limits_apply() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(tmp.path().join("data"));
    config.api.long_poll = Duration::from_millis(100);
    config.api.max_artifact_bytes = 4096;
    config.api.dotenv_max_variables = 2;
    config.api.max_trace_bytes = 16;
    let server = Server::start(config).await.expect("server starts");
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);
    let id = server
        .enqueue(job_spec("x", 1, "g/p", SHA))
        .expect("queued");
    let job = take_job(&url, &runner.token).await;
    let token = job["token"].as_str().expect("token").to_string();

    let mut big = b"PK\x03\x04".to_vec();
    big.resize(10_000, 0);
    let path = tmp.path().join("big.zip");
    std::fs::write(&path, &big).expect("write");
    let r = upload(&url, id.0, &token, &path, "big.zip", "artifact_format=zip").await;
    assert_eq!(r.status, 413);

    let env = tmp.path().join("env.gz");
    std::fs::write(&env, gzip_bytes(b"A=1\nB=2\nC=3\n")).expect("write");
    let r = upload(
        &url,
        id.0,
        &token,
        &env,
        "gl-dotenv.env.gz",
        "artifact_format=gzip&artifact_type=dotenv",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("cannot have more than 2 variables"),
        "{}",
        r.text()
    );
    assert!(server.artifacts(id).is_empty(), "nothing stored on refusal");

    // The body length, not the Content-Range end, decides what is appended (as GitLab).
    let r = patch(&url, id.0, &token, "0-0", "abcdef").await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range"), Some("0-6"));
    // Past the trace limit the job is dropped as `trace_size_exceeded`.
    let r = patch(&url, id.0, &token, "6-20", "0123456789abcde").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("job-status"), Some("failed"));
    assert_eq!(
        server.wait_job(id).await,
        Some(JobState::Failed {
            reason: "trace_size_exceeded".into(),
            exit_code: None
        })
    );
    assert_eq!(server.trace(id).as_deref(), Some(&b"abcdef"[..]));
    server.shutdown().await;
}

/// GitLab's `accept_build_state!`: a final state whose `output.bytesize` the stored log does
/// not reach yet is answered 202 and not taken; once the rest arrived, it is (the end of a
/// fast log was lost when the stand-in finished the job at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_state_waits_for_the_whole_log_it_announces() {
    let (_tmp, server) = start(Duration::from_secs(2)).await;
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);
    let id = server
        .enqueue(job_spec("j", 1, "g/p", SHA))
        .expect("queued");
    let job = take_job(&url, &runner.token).await;
    let token = job["token"].as_str().expect("token").to_string();
    let whole = "first half|second half\n";
    let checksum = format!("crc32:{:08x}", crc32fast::hash(whole.as_bytes()));
    let done = json!({ "state": "success", "checksum": checksum,
                       "output": { "checksum": checksum, "bytesize": whole.len() } });

    let r = patch(&url, id.0, &token, "0-10", "first half|").await;
    assert_eq!(r.status, 202);
    let r = put_state(&url, id.0, &token, done.clone()).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(server.job_state(id), Some(JobState::Running));

    let r = patch(&url, id.0, &token, "11-23", "second half\n").await;
    assert_eq!(r.status, 202);
    let r = put_state(&url, id.0, &token, done).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.wait_job(id).await, Some(JobState::Success));
    assert_eq!(server.trace(id), Some(whole.as_bytes().to_vec()));
    server.shutdown().await;
}
