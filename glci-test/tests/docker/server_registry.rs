//! The container registry against real clients: `curl` for the protocol's corners and bad
//! input, the `docker` CLI (through the engine on this host) and `skopeo` for
//! interoperability. Each test starts its own server on loopback.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use glci_test::server::{RegistryCredentials, RunningServer, Server, ServerConfig};
use sha2::{Digest as _, Sha256};
use support::{curl, job_spec, send_json, take_job, Reply};

const SHA: &str = "3f786850e387550fdab836ed7e6dc881de23001b";
const FIXTURE: &str = "glci-fixture/busybox:latest";

struct Registry {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: RunningServer,
    creds: RegistryCredentials,
}

impl Registry {
    async fn start() -> Registry {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("registry");
        let mut config = ServerConfig::new(tmp.path().join("data"));
        config.registry.dir = Some(dir.clone());
        config.registry.max_manifest_bytes = 64 * 1024;
        let server = Server::start(config).await.expect("server starts");
        let creds = server.registry_credentials();
        Registry {
            _tmp: tmp,
            dir,
            server,
            creds,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.creds.address)
    }

    fn user(&self) -> String {
        format!("{}:{}", self.creds.username, self.creds.password)
    }

    /// curl as the host's credential.
    async fn curl(&self, args: &[&str]) -> Reply {
        let user = self.user();
        let mut all = vec!["-u", &user];
        all.extend_from_slice(args);
        curl(&all).await
    }

    /// Files under `blobs/` (data that became visible) and `uploads/`.
    fn files(&self, sub: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push(e.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.join(sub), &mut out);
        out
    }
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn error_code(reply: &Reply) -> String {
    reply.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write");
    format!("@{}", path.display())
}

/// A blob pushed in one request; returns its digest.
async fn push_blob(r: &Registry, repo: &str, data: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let d = digest(data);
    let reply = r
        .curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &write(tmp.path(), "blob", data),
            &r.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")),
        ])
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.header("docker-content-digest"), Some(d.as_str()));
    d
}

fn image_manifest(config: &str, config_len: usize, layer: &str, layer_len: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_len}],
    }))
    .unwrap()
}

async fn put_manifest(r: &Registry, repo: &str, reference: &str, data: &[u8], ct: &str) -> Reply {
    let tmp = tempfile::tempdir().unwrap();
    r.curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {ct}"),
        "--data-binary",
        &write(tmp.path(), "manifest", data),
        &r.url(&format!("/v2/{repo}/manifests/{reference}")),
    ])
    .await
}

async fn patch(
    r: &Registry,
    location: &str,
    dir: &Path,
    range: &str,
    part: &[u8],
    name: &str,
) -> Reply {
    let file = write(dir, name, part);
    r.curl(&[
        "-X",
        "PATCH",
        "-H",
        &format!("Content-Range: {range}"),
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &file,
        &r.url(location),
    ])
    .await
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test]
async fn the_protocol_with_curl() {
    let r = Registry::start().await;

    // Anonymous: 401 with GitLab's challenge.
    let reply = curl(&[&r.url("/v2/")]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(error_code(&reply), "UNAUTHORIZED");
    let challenge = reply.header("www-authenticate").unwrap().to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"http://{}/jwt/auth\",service=\"container_registry\"",
            r.creds.address
        )
    );
    assert_eq!(
        reply.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    // The token flow: Basic at the realm, Bearer at the registry.
    let token = r
        .curl(&[&r.url("/jwt/auth?service=container_registry&scope=repository:g/p:pull")])
        .await;
    assert_eq!(token.status, 200, "{}", token.text());
    let bearer = token.json()["token"].as_str().unwrap().to_string();
    let reply = curl(&[
        "-H",
        &format!("Authorization: Bearer {bearer}"),
        &r.url("/v2/"),
    ])
    .await;
    assert_eq!(reply.status, 200);
    let forged = format!("{}x", &bearer[..bearer.len() - 1]);
    let reply = curl(&[
        "-H",
        &format!("Authorization: Bearer {forged}"),
        &r.url("/v2/"),
    ])
    .await;
    assert_eq!(reply.status, 401);

    // Monolithic blob, then a manifest by tag; GET by tag and by digest agree.
    let layer = b"layer bytes 0123456789".to_vec();
    let config = b"{}".to_vec();
    let layer_d = push_blob(&r, "g/p", &layer).await;
    let config_d = push_blob(&r, "g/p", &config).await;
    let reply = r
        .curl(&[
            "-H",
            "Range: bytes=6-10",
            &r.url(&format!("/v2/g/p/blobs/{layer_d}")),
        ])
        .await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, b"bytes");
    assert_eq!(reply.header("content-range"), Some("bytes 6-10/22"));
    let reply = r
        .curl(&["-I", &r.url(&format!("/v2/g/p/blobs/{layer_d}"))])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("22"));

    let manifest = image_manifest(&config_d, config.len(), &layer_d, layer.len());
    let manifest_d = digest(&manifest);
    let reply = put_manifest(&r, "g/p", "v1", &manifest, OCI_MANIFEST).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(manifest_d.as_str())
    );
    for reference in ["v1", manifest_d.as_str()] {
        let reply = r
            .curl(&[
                "-H",
                &format!("Accept: {OCI_MANIFEST}"),
                &r.url(&format!("/v2/g/p/manifests/{reference}")),
            ])
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, manifest);
        assert_eq!(reply.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            reply.header("docker-content-digest"),
            Some(manifest_d.as_str())
        );
    }
    // A client that only reads Docker schema 2 does not get an OCI manifest.
    let reply = r
        .curl(&[
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            &r.url("/v2/g/p/manifests/v1"),
        ])
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(error_code(&reply), "MANIFEST_UNKNOWN");

    // Chunked upload: POST, PATCH, PATCH, PUT, with Location and Range.
    let data = b"hello chunked world".to_vec();
    let d = digest(&data);
    let reply = r
        .curl(&["-X", "POST", &r.url("/v2/g/p/blobs/uploads/")])
        .await;
    assert_eq!(reply.status, 202);
    let location = reply.header("location").unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let reply = patch(&r, &location, tmp.path(), "0-4", &data[..5], "a").await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.header("range"), Some("0-4"));
    // Out of order: the upload stays at 5 bytes.
    let reply = patch(&r, &location, tmp.path(), "10-14", &data[10..15], "b").await;
    assert_eq!(reply.status, 416);
    assert_eq!(error_code(&reply), "BLOB_UPLOAD_INVALID");
    // Truncated: announces 10 bytes, sends 4; the 4 are not kept.
    let reply = patch(&r, &location, tmp.path(), "5-14", &data[5..9], "c").await;
    assert_eq!(reply.status, 416);
    // Not a range at all.
    let reply = patch(&r, &location, tmp.path(), "five-to-nine", &data[5..], "d").await;
    assert_eq!(reply.status, 416);
    let reply = r.curl(&[&r.url(&location)]).await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("range"),
        Some("0-4"),
        "failed chunks left no trace"
    );
    let reply = patch(&r, &location, tmp.path(), "5-18", &data[5..], "e").await;
    assert_eq!(reply.status, 202);
    let reply = r
        .curl(&["-X", "PUT", &r.url(&format!("{location}?digest={d}"))])
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = r.curl(&[&r.url(&format!("/v2/g/p/blobs/{d}"))]).await;
    assert_eq!(reply.body, data);

    // Cross-repository mount, then tags/list paging and the catalog.
    let reply = r
        .curl(&[
            "-X",
            "POST",
            &r.url(&format!(
                "/v2/g/p/other/blobs/uploads/?mount={layer_d}&from=g/p"
            )),
        ])
        .await;
    assert_eq!(reply.status, 201);
    for tag in ["v2", "v3", "a"] {
        let reply = put_manifest(&r, "g/p", tag, &manifest, OCI_MANIFEST).await;
        assert_eq!(reply.status, 201);
    }
    let reply = r.curl(&[&r.url("/v2/g/p/tags/list?n=2")]).await;
    assert_eq!(reply.json()["tags"], serde_json::json!(["a", "v1"]));
    assert_eq!(
        reply.header("link"),
        Some("</v2/g/p/tags/list?n=2&last=v1>; rel=\"next\"")
    );
    let reply = r.curl(&[&r.url("/v2/g/p/tags/list?n=2&last=v1")]).await;
    assert_eq!(reply.json()["tags"], serde_json::json!(["v2", "v3"]));
    assert_eq!(reply.header("link"), None);
    let reply = r.curl(&[&r.url("/v2/_catalog")]).await;
    assert_eq!(
        reply.json()["repositories"],
        serde_json::json!(["g/p", "g/p/other"])
    );

    // Referrers: an artifact manifest whose subject is the image.
    let empty = push_blob(&r, "g/p", b"{}").await;
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": layer_d, "size": layer.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": manifest_d, "size": manifest.len()},
    }))
    .unwrap();
    let artifact_d = digest(&artifact);
    let reply = put_manifest(&r, "g/p", &artifact_d, &artifact, OCI_MANIFEST).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.header("oci-subject"), Some(manifest_d.as_str()));
    let reply = r
        .curl(&[&r.url(&format!("/v2/g/p/referrers/{manifest_d}"))])
        .await;
    assert_eq!(reply.json()["manifests"][0]["digest"], artifact_d.as_str());
    assert_eq!(
        reply.json()["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    let reply = r
        .curl(&[&r.url(&format!("/v2/g/p/referrers/{manifest_d}?artifactType=x/y"))])
        .await;
    assert_eq!(reply.json()["manifests"], serde_json::json!([]));
    assert_eq!(reply.header("oci-filters-applied"), Some("artifactType"));

    // Deletes: a tag, then the manifest (with its remaining tags), then a blob.
    let reply = r
        .curl(&["-X", "DELETE", &r.url("/v2/g/p/manifests/a")])
        .await;
    assert_eq!(reply.status, 202);
    let reply = r
        .curl(&[
            "-X",
            "DELETE",
            &r.url(&format!("/v2/g/p/manifests/{manifest_d}")),
        ])
        .await;
    assert_eq!(reply.status, 202);
    let reply = r.curl(&[&r.url("/v2/g/p/tags/list")]).await;
    assert_eq!(reply.json()["tags"], serde_json::json!([]));
    let reply = r
        .curl(&["-X", "DELETE", &r.url(&format!("/v2/g/p/blobs/{d}"))])
        .await;
    assert_eq!(reply.status, 202);
    let reply = r.curl(&["-I", &r.url(&format!("/v2/g/p/blobs/{d}"))]).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn bad_input_gets_the_specs_errors_and_stores_nothing() {
    let r = Registry::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let body = write(tmp.path(), "blob", b"some content");
    let wrong = digest(b"other content");

    // Digest mismatch, monolithic and chunked.
    let reply = r
        .curl(&[
            "-X",
            "POST",
            "--data-binary",
            &body,
            &r.url(&format!("/v2/g/p/blobs/uploads/?digest={wrong}")),
        ])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(error_code(&reply), "DIGEST_INVALID");
    let reply = r
        .curl(&["-X", "POST", &r.url("/v2/g/p/blobs/uploads/")])
        .await;
    let location = r.url(reply.header("location").unwrap());
    let reply = r
        .curl(&[
            "-X",
            "PUT",
            "--data-binary",
            &body,
            &format!("{location}?digest={wrong}"),
        ])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(error_code(&reply), "DIGEST_INVALID");
    assert_eq!(r.files("blobs"), Vec::<PathBuf>::new(), "nothing stored");
    assert_eq!(
        r.files("uploads"),
        Vec::<PathBuf>::new(),
        "nothing left over"
    );
    let reply = r.curl(&[&location]).await;
    assert_eq!(error_code(&reply), "BLOB_UPLOAD_UNKNOWN");
    let reply = r
        .curl(&["-I", &r.url(&format!("/v2/g/p/blobs/{wrong}"))])
        .await;
    assert_eq!(reply.status, 404);

    // A manifest whose body is not the digest it is pushed under.
    let config = push_blob(&r, "g/p", b"{}").await;
    let manifest = image_manifest(&config, 2, &config, 2);
    let reply = put_manifest(&r, "g/p", &wrong, &manifest, OCI_MANIFEST).await;
    assert_eq!(error_code(&reply), "DIGEST_INVALID");
    // One that names a blob the repository does not have.
    let missing = image_manifest(&config, 2, &wrong, 13);
    let reply = put_manifest(&r, "g/p", "latest", &missing, OCI_MANIFEST).await;
    assert_eq!(error_code(&reply), "MANIFEST_BLOB_UNKNOWN");
    // One over the size limit (64 KiB in this test).
    let mut big = serde_json::from_slice::<serde_json::Value>(&manifest).unwrap();
    big["annotations"] = serde_json::json!({ "padding": "x".repeat(70 * 1024) });
    let reply = put_manifest(
        &r,
        "g/p",
        "latest",
        &serde_json::to_vec(&big).unwrap(),
        OCI_MANIFEST,
    )
    .await;
    assert_eq!(reply.status, 413);
    assert_eq!(error_code(&reply), "SIZE_INVALID");
    let reply = put_manifest(&r, "g/p", "latest", b"{\"schemaVersion\": 1}", OCI_MANIFEST).await;
    assert_eq!(error_code(&reply), "MANIFEST_INVALID");
    let reply = r.curl(&[&r.url("/v2/g/p/tags/list")]).await;
    assert_eq!(
        reply.json()["tags"],
        serde_json::json!([]),
        "no tag was written"
    );
    assert_eq!(r.files("blobs").len(), 1, "only the config blob is stored");

    // Path traversal and other invalid names.
    for path in [
        "/v2/g/../../../etc/manifests/latest",
        "/v2/g/%2e%2e/x/blobs/uploads/",
        "/v2/G/P/tags/list",
        "/v2/g//p/tags/list",
    ] {
        let reply = r.curl(&["--path-as-is", "-X", "POST", &r.url(path)]).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert_eq!(error_code(&reply), "NAME_INVALID", "{path}");
    }
    let entries: Vec<_> = std::fs::read_dir(r.dir.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        entries.iter().all(|n| n == "registry" || n == "data"),
        "nothing written next to the registry: {entries:?}"
    );
}

#[tokio::test]
async fn job_tokens_reach_their_own_project_while_the_job_runs() {
    let r = Registry::start().await;
    let url = r.server.url().to_string();
    let runner = r.server.create_runner(&[], true);
    let mut spec = job_spec("build", 1, "Group/Project", SHA);
    spec.registry = Some(r.creds.address.clone());
    r.server.enqueue(spec).unwrap();
    let job = take_job(&url, &runner.token).await;
    let id = job["id"].as_u64().unwrap();
    let token = job["token"].as_str().unwrap().to_string();
    let var = |key: &str| {
        job["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["key"] == key)
            .map(|v| v["value"].as_str().unwrap().to_string())
    };
    assert_eq!(var("CI_REGISTRY_USER").as_deref(), Some("gitlab-ci-token"));
    assert_eq!(var("CI_REGISTRY_PASSWORD"), Some(token.clone()));
    let as_job = |path: &str| {
        let user = format!("gitlab-ci-token:{token}");
        let url = r.url(path);
        async move { curl(&["-u", &user, &url]).await }
    };
    let reply = as_job("/jwt/auth?service=container_registry").await;
    assert_eq!(reply.status, 200);
    // Its own project, lower-cased as CI_REGISTRY_IMAGE, and images below it.
    let reply = as_job("/v2/group/project/tags/list").await;
    assert_eq!(error_code(&reply), "NAME_UNKNOWN", "allowed, just empty");
    let reply = as_job("/v2/group/project/sub/tags/list").await;
    assert_eq!(error_code(&reply), "NAME_UNKNOWN");
    // Not another project, nor the catalog.
    for path in [
        "/v2/group/other/tags/list",
        "/v2/group/project2/tags/list",
        "/v2/_catalog",
    ] {
        let reply = as_job(path).await;
        assert_eq!(reply.status, 403, "{path}");
        assert_eq!(error_code(&reply), "DENIED");
    }
    let bearer = as_job("/jwt/auth?service=container_registry").await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // The job ends: its token and the bearer token made from it stop working.
    let reply = send_json(
        "PUT",
        &format!("{url}/api/v4/jobs/{id}"),
        &serde_json::json!({"token": token, "state": "success"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        as_job("/jwt/auth?service=container_registry").await.status,
        401
    );
    let reply = curl(&[
        "-H",
        &format!("Authorization: Bearer {bearer}"),
        &r.url("/v2/group/project/tags/list"),
    ])
    .await;
    assert_eq!(reply.status, 401);
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the tags a test gave local images (never the fixture itself).
struct Untag(Vec<String>);
impl Drop for Untag {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_login_push_pull_and_manifest_inspect() {
    let r = Registry::start().await;
    let config = tempfile::tempdir().unwrap();
    let docker = || {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", config.path());
        c
    };
    let addr = r.creds.address.clone();
    let image = format!("{addr}/group/project/busybox:t1");
    let _untag = Untag(vec![image.clone()]);

    // Without credentials the engine is refused.
    run(docker().args(["tag", FIXTURE, &image]));
    let out = docker().args(["push", &image]).output().unwrap();
    assert!(!out.status.success(), "anonymous push must fail");

    let creds = r.creds.clone();
    let config_dir = config.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let docker = || {
            let mut c = Command::new("docker");
            c.env("DOCKER_CONFIG", &config_dir);
            c
        };
        // As a job does it: `docker login "$CI_REGISTRY" -u "$CI_REGISTRY_USER" -p ...`.
        run(docker().args([
            "login",
            &creds.address,
            "-u",
            &creds.username,
            "-p",
            &creds.password,
        ]));
        let pushed = run(docker().args(["push", &image]));
        assert!(pushed.contains("digest: sha256:"), "{pushed}");
        let inspect = run(docker().args(["manifest", "inspect", "--insecure", &image]));
        let manifest: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        run(docker().args(["rmi", &image]));
        let pulled = run(docker().args(["pull", &image]));
        assert!(pulled.contains("Downloaded newer image"), "{pulled}");
        let id = |name: &str| run(docker().args(["image", "inspect", "-f", "{{.Id}}", name]));
        assert_eq!(id(&image), id(FIXTURE), "the same image came back");

        // A multi-arch index, as `docker manifest` builds one: the pushed image under two
        // platforms, then inspected as a manifest list with both entries.
        let list = format!("{addr}/group/project/busybox:multi");
        run(docker().args(["manifest", "create", "--insecure", &list, &image, &image]));
        run(docker().args([
            "manifest", "annotate", "--arch", "arm64", "--os", "linux", &list, &image,
        ]));
        let pushed = run(docker().args(["manifest", "push", "--purge", "--insecure", &list]));
        assert!(pushed.starts_with("sha256:"), "{pushed}");
        let inspect = run(docker().args(["manifest", "inspect", "--insecure", &list]));
        let index: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(
            index["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json",
            "{inspect}"
        );
        let arches: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["platform"]["architecture"].as_str())
            .collect();
        assert!(arches.contains(&"arm64"), "{inspect}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copies_in_and_out() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        panic!("skopeo is needed (apt-get install skopeo)");
    }
    let r = Registry::start().await;
    let creds = format!("{}:{}", r.creds.username, r.creds.password);
    let addr = r.creds.address.clone();
    let out_dir = tempfile::tempdir().unwrap();
    tokio::task::spawn_blocking(move || {
        let skopeo = || {
            let mut c = Command::new("skopeo");
            c.env("NO_PROXY", "*");
            c
        };
        let dest = format!("docker://{addr}/group/project/copied:s1");
        run(skopeo().args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("docker-daemon:{FIXTURE}"),
            &dest,
        ]));
        let inspect =
            run(skopeo().args(["inspect", "--tls-verify=false", "--creds", &creds, &dest]));
        let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(v["Architecture"], "amd64");
        // Out to an OCI layout and back under another name: OCI manifests this time.
        let layout = format!("oci:{}:s1", out_dir.path().join("layout").display());
        run(skopeo().args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &dest,
            &layout,
        ]));
        let back = format!("docker://{addr}/group/project/oci:s2");
        run(skopeo().args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &layout,
            &back,
        ]));
        let raw = run(skopeo().args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &back,
        ]));
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        let tags = run(skopeo().args([
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{addr}/group/project/oci"),
        ]));
        assert!(tags.contains("\"s2\""), "{tags}");
    })
    .await
    .unwrap();
}

struct NoIo;

impl glci_test::runner::executor::JobIo for NoIo {
    async fn download_artifacts(
        &self,
        d: &glci_test::runner::payload::Dependency,
    ) -> Result<Vec<u8>, glci_test::runner::api::ApiError> {
        panic!("unexpected artifact download for {}", d.name)
    }
    async fn upload_artifacts(
        &self,
        a: &glci_test::runner::payload::Artifact,
        _zip: Vec<u8>,
    ) -> Result<(), glci_test::runner::api::ApiError> {
        panic!("unexpected artifact upload of {}", a.name)
    }
}

/// `image: $CI_REGISTRY_IMAGE/...`: the built-in runner pulls it through the engine with the
/// `credentials` GitLab's job payload carries (the job token), and fails without them.
#[tokio::test(flavor = "multi_thread")]
async fn the_runner_pulls_job_images_with_the_jobs_credentials() {
    use glci_test::docker::{Engine, Owner};
    use glci_test::runner::executor::{execute, ExecutorOptions};
    use glci_test::runner::trace::{Masker, Trace};

    let r = Registry::start().await;
    let image = format!("{}/group/project/runner:t1", r.creds.address);
    let _untag = Untag(vec![image.clone()]);
    let config = tempfile::tempdir().unwrap();
    let (creds, pushed, cfg) = (r.creds.clone(), image.clone(), config.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let docker = || {
            let mut c = Command::new("docker");
            c.env("DOCKER_CONFIG", &cfg);
            c
        };
        run(docker().args([
            "login",
            &creds.address,
            "-u",
            &creds.username,
            "-p",
            &creds.password,
        ]));
        run(docker().args(["tag", FIXTURE, &pushed]));
        run(docker().args(["push", &pushed]));
        run(docker().args(["rmi", &pushed]));
    })
    .await
    .unwrap();

    let runner = r.server.create_runner(&[], true);
    let mut spec = job_spec("use", 1, "group/project", SHA);
    spec.registry = Some(r.creds.address.clone());
    r.server.enqueue(spec).unwrap();
    let taken = take_job(r.server.url(), &runner.token).await;
    let payload_with = |credentials: serde_json::Value| -> glci_test::runner::payload::JobPayload {
        serde_json::from_value(serde_json::json!({
            "id": taken["id"], "token": taken["token"],
            "job_info": {"name": "use", "stage": "test", "project_full_path": "group/project"},
            "git_info": {"repo_url": "http://127.0.0.1:1/group/project.git", "ref": "main",
                         "sha": SHA, "refspecs": [], "depth": 20},
            "runner_info": {"timeout": 60},
            "image": {"name": image},
            "variables": [{"key": "GIT_STRATEGY", "value": "none", "public": true, "masked": false}],
            "steps": [{"name": "script", "script": ["echo inside"], "when": "on_success"}],
            "credentials": credentials,
        }))
        .unwrap()
    };
    let engine = Engine::connect().await.expect("a Docker engine");
    let owner = Owner::for_this_process("registry-test");
    let run_job = |payload: glci_test::runner::payload::JobPayload| {
        let (engine, owner) = (&engine, &owner);
        async move {
            let trace = Trace::new(Masker::new(std::iter::empty::<String>()), true);
            let outcome = execute(
                engine,
                owner,
                &payload,
                &NoIo,
                &trace,
                &ExecutorOptions::default(),
                &tokio_util::sync::CancellationToken::new(),
            )
            .await;
            (
                outcome.success,
                String::from_utf8_lossy(&trace.bytes()).into_owned(),
            )
        }
    };
    let (ok, log) = run_job(payload_with(serde_json::json!([]))).await;
    assert!(!ok, "pulled without credentials:\n{log}");
    let (ok, log) = run_job(payload_with(taken["credentials"].clone())).await;
    assert!(ok, "{log}");
    assert!(
        log.contains(&format!("Pulling docker image {image}")),
        "{log}"
    );
    assert!(log.contains("inside\n"), "{log}");
}

/// A client killed in the middle of a chunk: the upload keeps its whole chunks only, stays
/// usable, and the blob that finally arrives is the right one.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_whose_client_is_killed_keeps_only_its_whole_chunks() {
    let r = Registry::start().await;
    let data: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let d = digest(&data);
    let reply = r
        .curl(&["-X", "POST", &r.url("/v2/g/killed/blobs/uploads/")])
        .await;
    assert_eq!(reply.status, 202);
    let location = reply.header("location").unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let reply = patch(&r, &location, tmp.path(), "0-4", &data[..5], "a").await;
    assert_eq!(reply.status, 202, "{}", reply.text());

    // The rest, sent slowly by a curl that is killed half-way.
    let rest = write(tmp.path(), "rest", &data[5..]);
    let mut slow = Command::new("curl")
        .args([
            "-sS",
            "-u",
            &r.user(),
            "-X",
            "PATCH",
            "--limit-rate",
            "200K",
        ])
        .args(["-H", &format!("Content-Range: 5-{}", data.len() - 1)])
        .args(["-H", "Content-Type: application/octet-stream"])
        .args(["--data-binary", &rest, &r.url(&location)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    slow.kill().unwrap();
    slow.wait().unwrap();
    // The server notices the connection end; the half chunk is dropped.
    let mut range = None;
    for _ in 0..50 {
        let reply = r.curl(&[&r.url(&location)]).await;
        if reply.status == 204 && reply.header("range") == Some("0-4") {
            range = Some("0-4");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(range, Some("0-4"), "only the whole first chunk is kept");
    let reply = patch(
        &r,
        &location,
        tmp.path(),
        &format!("5-{}", data.len() - 1),
        &data[5..],
        "b",
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let reply = r
        .curl(&["-X", "PUT", &r.url(&format!("{location}?digest={d}"))])
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = r.curl(&[&r.url(&format!("/v2/g/killed/blobs/{d}"))]).await;
    assert!(
        reply.body == data,
        "the blob is the data, not the killed chunk"
    );
}
