//! Git smart HTTP against real `git` clients: clone, the runner's shallow refspec fetch,
//! protocol v0 and v2, gzip'd request bodies, and refused credentials and pushes.

use crate::support;

use std::io::Write;
use std::path::Path;

use glci_test::server::{Server, ServerConfig};
use support::{curl, git, git_output, job_spec, take_job};

/// A bare repository with two commits, `main` and `refs/pipelines/1` on the second.
fn make_repo(root: &Path) -> (std::path::PathBuf, String) {
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("a.txt"), "first\n").expect("write");
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "one"]);
    std::fs::write(work.join("a.txt"), "second\n").expect("write");
    git(&work, &["commit", "-qam", "two"]);
    let bare = root.join("project.git");
    git(root, &["clone", "-q", "--bare", "work", "project.git"]);
    let sha = git(&bare, &["rev-parse", "HEAD"]);
    git(&bare, &["update-ref", "refs/pipelines/1", &sha]);
    (bare, sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_git_clients_clone_and_fetch_with_the_job_token() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (bare, sha) = make_repo(tmp.path());
    let server = Server::start(ServerConfig::new(tmp.path().join("data")))
        .await
        .expect("server starts");
    server
        .add_repository("group/project", &bare)
        .expect("repository registered");
    let url = server.url().to_string();
    let runner = server.create_runner(&[], true);
    server
        .enqueue(job_spec("build", 1, "group/project", &sha))
        .expect("queued");
    let job = take_job(&url, &runner.token).await;
    let token = job["token"].as_str().expect("token").to_string();
    let port = server.local_addr().port();

    // The payload's repo_url is directly usable.
    let repo_url = job["git_info"]["repo_url"].as_str().expect("repo_url");
    assert_eq!(
        repo_url,
        format!("http://gitlab-ci-token:{token}@127.0.0.1:{port}/group/project.git")
    );

    // Full clone, protocol v2 (git's default).
    let clone = git_output(tmp.path(), &["clone", "-q", repo_url, "cloned"]);
    assert!(
        clone.status.success(),
        "clone failed: {}",
        String::from_utf8_lossy(&clone.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("cloned/a.txt")).expect("checked out"),
        "second\n"
    );
    assert_eq!(
        git(&tmp.path().join("cloned"), &["rev-list", "--count", "HEAD"]),
        "2"
    );

    // Protocol v2 is really negotiated (the `Git-Protocol` header reaches upload-pack) and
    // the pipeline ref is advertised.
    let traced = std::process::Command::new("git")
        .args(["-c", "protocol.version=2", "ls-remote", repo_url])
        .env("GIT_TRACE_PACKET", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_PROXY", "*")
        .output()
        .expect("git runs");
    assert!(traced.status.success());
    let packets = String::from_utf8_lossy(&traced.stderr);
    assert!(
        packets.contains("< version 2"),
        "v2 not negotiated: {packets}"
    );
    let refs = String::from_utf8_lossy(&traced.stdout);
    assert!(refs.contains(&format!("{sha}\trefs/pipelines/1")), "{refs}");

    // Protocol v0 too.
    git(
        tmp.path(),
        &[
            "-c",
            "protocol.version=0",
            "clone",
            "-q",
            repo_url,
            "cloned-v0",
        ],
    );
    assert_eq!(
        git(&tmp.path().join("cloned-v0"), &["rev-parse", "HEAD"]),
        sha
    );

    // The runner's fetch: init, remote, shallow refspec fetch of the pipeline ref, checkout.
    let fetch_dir = tmp.path().join("fetched");
    std::fs::create_dir_all(&fetch_dir).expect("mkdir");
    git(&fetch_dir, &["init", "-q"]);
    git(&fetch_dir, &["remote", "add", "origin", repo_url]);
    git(
        &fetch_dir,
        &[
            "fetch",
            "origin",
            "--no-recurse-submodules",
            "--depth",
            "1",
            "+refs/pipelines/1:refs/remotes/origin/x",
            "--prune",
            "--quiet",
        ],
    );
    assert_eq!(
        git(&fetch_dir, &["rev-parse", "refs/remotes/origin/x"]),
        sha
    );
    assert!(
        fetch_dir.join(".git/shallow").exists(),
        "fetch was not shallow"
    );
    assert_eq!(
        git(
            &fetch_dir,
            &["rev-list", "--count", "refs/remotes/origin/x"]
        ),
        "1"
    );
    git(&fetch_dir, &["checkout", "-f", "-q", &sha]);

    // A wrong token, a wrong user and no credentials: 401 with a Basic challenge, no data.
    let wrong = format!("http://gitlab-ci-token:nope@127.0.0.1:{port}/group/project.git");
    let refused = git_output(tmp.path(), &["clone", "-q", &wrong, "refused"]);
    assert!(
        !refused.status.success(),
        "clone with a wrong token succeeded"
    );
    for creds in ["gitlab-ci-token:nope", &format!("someone:{token}")] {
        let r = curl(&[
            "-u",
            creds,
            &format!("{url}/group/project.git/info/refs?service=git-upload-pack"),
        ])
        .await;
        assert_eq!(r.status, 401, "credentials {creds}");
        assert!(r
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")));
        assert!(!r.text().contains(&sha), "refs leaked");
    }
    let anon = curl(&[&format!(
        "{url}/group/project.git/info/refs?service=git-upload-pack"
    )])
    .await;
    assert_eq!(anon.status, 401);

    // The token opens only its own project.
    let other = curl(&[
        "-u",
        &format!("gitlab-ci-token:{token}"),
        &format!("{url}/group/other.git/info/refs?service=git-upload-pack"),
    ])
    .await;
    assert_eq!(other.status, 401);

    // Push is refused, whatever the credentials.
    let push_refs = curl(&[
        "-u",
        &format!("gitlab-ci-token:{token}"),
        &format!("{url}/group/project.git/info/refs?service=git-receive-pack"),
    ])
    .await;
    assert_eq!(push_refs.status, 403);
    let cloned = tmp.path().join("cloned");
    std::fs::write(cloned.join("b.txt"), "x").expect("write");
    git(&cloned, &["add", "."]);
    git(&cloned, &["commit", "-qm", "three"]);
    let push = git_output(&cloned, &["push", "origin", "HEAD:refs/heads/evil"]);
    assert!(!push.status.success(), "push succeeded");
    assert!(
        git_output(&bare, &["rev-parse", "--verify", "refs/heads/evil"])
            .status
            .code()
            != Some(0)
    );

    // A gzip'd v0 upload-pack request (git compresses large negotiations).
    let request = format!("0032want {sha}\n00000009done\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(request.as_bytes()).expect("gzip");
    let gz_path = tmp.path().join("req.gz");
    std::fs::write(&gz_path, gz.finish().expect("gzip")).expect("write");
    let packed = curl(&[
        "-u",
        &format!("gitlab-ci-token:{token}"),
        "-H",
        "Content-Type: application/x-git-upload-pack-request",
        "-H",
        "Content-Encoding: gzip",
        "--data-binary",
        &format!("@{}", gz_path.display()),
        &format!("{url}/group/project.git/git-upload-pack"),
    ])
    .await;
    assert_eq!(packed.status, 200);
    assert_eq!(
        packed.header("content-type"),
        Some("application/x-git-upload-pack-result")
    );
    assert!(
        packed.body.windows(4).any(|w| w == b"PACK"),
        "no pack in the response"
    );

    // The same request chunked, without Content-Length (git streams big negotiations).
    let chunked = curl(&[
        "-u",
        &format!("gitlab-ci-token:{token}"),
        "-H",
        "Content-Type: application/x-git-upload-pack-request",
        "-H",
        "Content-Encoding: gzip",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", gz_path.display()),
        &format!("{url}/group/project.git/git-upload-pack"),
    ])
    .await;
    assert_eq!(chunked.status, 200);
    assert!(chunked.body.windows(4).any(|w| w == b"PACK"));

    // Once the job is finished its token opens nothing.
    let id = job["id"].as_u64().expect("id");
    let done = support::send_json(
        "PUT",
        &format!("{url}/api/v4/jobs/{id}"),
        &serde_json::json!({ "token": token, "state": "success" }),
    )
    .await;
    assert_eq!(done.status, 200);
    let after = git_output(tmp.path(), &["clone", "-q", repo_url, "after"]);
    assert!(!after.status.success(), "finished job's token still works");

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_repository_is_404_and_dumb_http_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(ServerConfig::new(tmp.path().join("data")))
        .await
        .expect("server starts");
    let runner = server.create_runner(&[], true);
    server
        .enqueue(job_spec("build", 1, "group/missing", &"a".repeat(40)))
        .expect("queued");
    let job = take_job(server.url(), &runner.token).await;
    let auth = format!("gitlab-ci-token:{}", job["token"].as_str().expect("token"));
    let url = server.url();
    let missing = curl(&[
        "-u",
        &auth,
        &format!("{url}/group/missing.git/info/refs?service=git-upload-pack"),
    ])
    .await;
    assert_eq!(missing.status, 404);
    let dumb = curl(&["-u", &auth, &format!("{url}/group/missing.git/HEAD")]).await;
    assert_eq!(dumb.status, 403);
    assert!(server.add_repository("no-slash", tmp.path()).is_err());
    // The bucket's namespace belongs to S3.
    assert!(server.add_repository("glci-cache/x", tmp.path()).is_err());
    assert!(server
        .add_repository("group/project", &tmp.path().join("nope"))
        .is_err());
    server.shutdown().await;
}
