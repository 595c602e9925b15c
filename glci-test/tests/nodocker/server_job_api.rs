//! The job-token API (`CI_API_V4_URL` with `CI_JOB_TOKEN`) driven with curl against the
//! in-process server: every way of passing the token, 401 for wrong and finished jobs, generic
//! packages with their limits, releases, artifacts by id, and the 404 for what glci lacks.

use crate::support;

use std::time::Duration;

use glci_test::server::{JobId, RunningServer, Server, ServerConfig};
use serde_json::json;
use support::{curl, job_spec, runner_info, send_json, take_job, Reply};

const SHA: &str = "3f786850e387550fdab836ed7e6dc881de23001b";

async fn start(tmp: &tempfile::TempDir) -> RunningServer {
    let mut config = ServerConfig::new(tmp.path().join("data"));
    config.api.long_poll = Duration::from_millis(200);
    config.api.max_package_bytes = 1024;
    Server::start(config).await.expect("server starts")
}

/// Queues a job of `group/project` (id 3) and takes it as a runner: (job id, job token).
async fn running_job(server: &RunningServer, runner: &str, name: &str) -> (JobId, String) {
    let id = server
        .enqueue(job_spec(name, 7, "group/project", SHA))
        .unwrap();
    let job = take_job(server.url(), runner).await;
    assert_eq!(job["id"].as_u64(), Some(id.0));
    (id, job["token"].as_str().unwrap().to_string())
}

async fn get(args: &[&str], url: &str) -> Reply {
    let mut all = args.to_vec();
    all.push(url);
    curl(&all).await
}

#[tokio::test]
async fn the_token_is_read_from_every_place_gitlab_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp).await;
    let runner = server.create_runner(&[], true).token;
    let (_id, token) = running_job(&server, &runner, "build").await;
    let api = format!("{}/api/v4", server.url());
    let job_url = format!("{api}/job");
    for args in [
        vec!["-H".to_string(), format!("JOB-TOKEN: {token}")],
        vec!["-H".to_string(), format!("Authorization: Bearer {token}")],
        vec!["-u".to_string(), format!("gitlab-ci-token:{token}")],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = get(&args, &job_url).await;
        assert_eq!(reply.status, 200, "{args:?}: {}", reply.text());
        let job = reply.json();
        assert_eq!(job["name"], "build");
        assert_eq!(job["status"], "running");
        assert_eq!(job["pipeline"]["id"], 7);
        assert_eq!(job["commit"]["id"], SHA);
    }
    let by_param = get(&[], &format!("{job_url}?job_token={token}")).await;
    assert_eq!(by_param.status, 200, "{}", by_param.text());
    for bad in [
        vec!["-H", "JOB-TOKEN: glcbt-64_wrong"],
        vec!["-H", "Authorization: Bearer nope"],
        vec![],
    ] {
        let reply = get(&bad, &job_url).await;
        assert_eq!(reply.status, 401, "{bad:?}");
        assert_eq!(reply.json(), json!({"message": "401 Unauthorized"}));
    }
}

#[tokio::test]
async fn packages_releases_and_unknown_endpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp).await;
    let runner = server.create_runner(&[], true).token;
    let (id, token) = running_job(&server, &runner, "publish").await;
    let auth = format!("JOB-TOKEN: {token}");
    let api = format!("{}/api/v4", server.url());
    let package = format!("{api}/projects/3/packages/generic/tool/1.2.3/tool.bin");

    let file = tmp.path().join("tool.bin");
    std::fs::write(&file, b"binary").unwrap();
    let put = get(
        &["-H", &auth, "--upload-file", file.to_str().unwrap()],
        &package,
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.json(), json!({"message": "201 Created"}));
    let fetched = get(&["-H", &auth], &package).await;
    assert_eq!(
        (fetched.status, fetched.body.as_slice()),
        (200, &b"binary"[..])
    );
    // The project by its path works as well as by its id.
    let by_path = get(
        &["-H", &auth],
        &format!("{api}/projects/group%2Fproject/packages/generic/tool/1.2.3/tool.bin"),
    )
    .await;
    assert_eq!(by_path.status, 200, "{}", by_path.text());
    let other_project = get(
        &["-H", &auth],
        &format!("{api}/projects/99/packages/generic/tool/1.2.3/tool.bin"),
    )
    .await;
    assert_eq!(other_project.status, 404);

    // Too large (limit 1024 in this test), names that would climb out, no half files.
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 4096]).unwrap();
    let too_big = get(
        &["-H", &auth, "--upload-file", big.to_str().unwrap()],
        &format!("{api}/projects/3/packages/generic/tool/1.2.3/big.bin"),
    )
    .await;
    assert_eq!(too_big.status, 413, "{}", too_big.text());
    for bad in [
        "tool/1.2.3/..%2F..%2Fescape",
        "tool/..%2F../x",
        "..%2F..%2Fescape/1.0.0/x",
    ] {
        let reply = get(
            &[
                "--path-as-is",
                "-H",
                &auth,
                "--upload-file",
                file.to_str().unwrap(),
            ],
            &format!("{api}/projects/3/packages/generic/{bad}"),
        )
        .await;
        assert!(
            matches!(reply.status, 400 | 404),
            "{bad}: {} {}",
            reply.status,
            reply.text()
        );
    }
    let stored: Vec<String> = walk(&tmp.path().join("data/packages"));
    assert_eq!(stored, ["group/project/tool/1.2.3/tool.bin"]);
    let packages = server.packages(id);
    assert_eq!(packages.len(), 1);
    assert_eq!(packages[0].size, 6);

    // A release, form-encoded as `glab`'s fallback sends it; the tag only once.
    let release = get(
        &[
            "-H",
            &auth,
            "--data-urlencode",
            "tag_name=v1.2.3",
            "--data-urlencode",
            "description=first",
            "--data-urlencode",
            "milestones[]=m1",
        ],
        &format!("{api}/projects/3/releases"),
    )
    .await;
    assert_eq!(release.status, 201, "{}", release.text());
    assert_eq!(release.json()["name"], "v1.2.3");
    let again = send_json(
        "POST",
        &format!("{api}/projects/3/releases"),
        &json!({"tag_name": "v1.2.3", "description": "again", "job_token": token}),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text());
    let releases = server.releases(id);
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].milestones, ["m1"]);

    // Asset links as release-cli sends them (JSON); a link without its URL is refused.
    let linked = send_json(
        "POST",
        &format!("{api}/projects/3/releases"),
        &json!({"tag_name": "v2", "description": "d", "job_token": token,
                "assets": {"links": [{"name": "bin", "url": "https://x/bin", "link_type": "package"}]}}),
    )
    .await;
    assert_eq!(linked.status, 201, "{}", linked.text());
    assert_eq!(linked.json()["assets"]["count"], 1);
    assert_eq!(linked.json()["assets"]["links"][0]["link_type"], "package");
    let no_url = send_json(
        "POST",
        &format!("{api}/projects/3/releases"),
        &json!({"tag_name": "v3", "description": "d", "job_token": token,
                "assets": {"links": [{"name": "bin"}]}}),
    )
    .await;
    assert_eq!(no_url.status, 400, "{}", no_url.text());
    assert!(
        no_url.text().contains("assets[links][url] is missing"),
        "{}",
        no_url.text()
    );
    let releases = server.releases(id);
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[1].links[0].url, "https://x/bin");

    let unknown = get(&["-H", &auth], &format!("{api}/projects/3/environments")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json(), json!({"message": "404 Not Found"}));
    let notes = server.notes(id);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("GET /api/v4/projects/3/environments")
                && n.contains("does not implement")),
        "{notes:?}"
    );

    // Once the job is finished its token opens nothing.
    let done = send_json(
        "PUT",
        &format!("{api}/jobs/{}", id.0),
        &json!({"token": token, "state": "success", "info": runner_info(true)}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let after = get(&["-H", &auth], &package).await;
    assert_eq!(after.status, 401);
}

#[tokio::test]
async fn artifacts_of_another_job_by_id_and_by_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp).await;
    let runner = server.create_runner(&[], true).token;
    let api = format!("{}/api/v4", server.url());
    let (producer, producer_token) = running_job(&server, &runner, "build").await;
    let zip = tmp.path().join("a.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
        w.start_file("dir/out.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, b"from build").unwrap();
        w.finish().unwrap();
    }
    let upload = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Job-Token: {producer_token}"),
        "-F",
        &format!("file=@{};filename=artifacts.zip", zip.display()),
        &format!("{api}/jobs/{}/artifacts", producer.0),
    ])
    .await;
    assert_eq!(upload.status, 201, "{}", upload.text());
    let finish = send_json(
        "PUT",
        &format!("{api}/jobs/{}", producer.0),
        &json!({"token": producer_token, "state": "success", "info": runner_info(true)}),
    )
    .await;
    assert_eq!(finish.status, 200);

    let (_consumer, token) = running_job(&server, &runner, "use").await;
    let auth = format!("JOB-TOKEN: {token}");
    let by_id = get(
        &["-H", &auth],
        &format!("{api}/projects/3/jobs/{}/artifacts", producer.0),
    )
    .await;
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.body, std::fs::read(&zip).unwrap());
    let download = get(
        &["-H", &auth],
        &format!("{api}/projects/3/jobs/artifacts/main/download?job=build"),
    )
    .await;
    assert_eq!(download.body, std::fs::read(&zip).unwrap());
    let raw = get(
        &["-H", &auth],
        &format!("{api}/projects/3/jobs/artifacts/main/raw/dir/out.txt?job=build"),
    )
    .await;
    assert_eq!((raw.status, raw.text().as_str()), (200, "from build"));
    for missing in [
        "jobs/artifacts/main/raw/dir/nope.txt?job=build",
        "jobs/artifacts/other-branch/download?job=build",
        "jobs/artifacts/main/download?job=nobody",
    ] {
        let reply = get(&["-H", &auth], &format!("{api}/projects/3/{missing}")).await;
        assert_eq!(reply.status, 404, "{missing}");
    }
    let no_name = get(
        &["-H", &auth],
        &format!("{api}/projects/3/jobs/artifacts/main/download"),
    )
    .await;
    assert_eq!(no_name.status, 400, "{}", no_name.text());
}

/// Files under `dir`, relative, sorted (temp files would show up here).
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
