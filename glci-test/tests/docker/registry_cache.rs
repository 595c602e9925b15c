//! The registry's pull-through cache against real parts: Debian's `docker-registry` (2.8.2,
//! distribution's registry:2) on loopback as the upstream, filled with `skopeo`; the `docker`
//! CLI pulling through glci anonymously, as a daemon with `registry-mirrors` does; and the
//! engine on this host as the last upstream.

use crate::support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use glci_test::server::{PushThroughConfig, RunningServer, Server, ServerConfig, Upstream};
use support::curl;

const FIXTURE: &str = "glci-fixture/busybox:latest";

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Debian's `docker-registry` on loopback, logging every request to `log`.
struct Reference {
    child: Child,
    addr: String,
}

impl Reference {
    fn start(dir: &Path) -> Reference {
        let port = free_port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs (apt-get install docker-registry)");
        // Owned (and killed on drop) before anything can panic.
        let reference = Reference {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&reference.addr).is_ok() {
                return reference;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not start listening");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        self.stop();
    }
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

async fn start(dir: &Path, upstreams: Vec<Upstream>, engine: bool) -> RunningServer {
    let mut config = ServerConfig::new(dir.join("data"));
    config.registry.dir = Some(dir.join("registry"));
    config.registry.upstreams = upstreams;
    config.registry.engine_upstream = engine;
    Server::start(config).await.expect("server starts")
}

/// Requests the upstream logged (`GET /v2/...`), by its access log.
fn upstream_requests(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") || l.contains("\"HEAD /v2/"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_go_through_the_cache_and_a_second_pull_asks_no_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let ref_dir = tmp.path().join("reference");
    std::fs::create_dir_all(&ref_dir).unwrap();
    let mut reference = Reference::start(&ref_dir);
    // The upstream gets the fixture as Docker Hub's `library/busybox`.
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-daemon:{FIXTURE}"),
        &format!("docker://{}/library/busybox:latest", reference.addr),
    ]));
    let upstreams = vec![
        // Nothing listens there: the cache falls through to the next upstream.
        Upstream {
            name: "dead".into(),
            url: format!("http://127.0.0.1:{}", free_port()),
        },
        Upstream {
            name: glci_test::server::DOCKER_HUB.into(),
            url: format!("http://{}", reference.addr),
        },
    ];
    let server = start(tmp.path(), upstreams, false).await;
    let addr = server.registry_credentials().address;
    let image = format!("{addr}/busybox:latest");
    let _untag = Untag(vec![image.clone()]);
    let config = tempfile::tempdir().unwrap();
    let docker = {
        let config = config.path().to_path_buf();
        move || {
            let mut c = Command::new("docker");
            c.env("DOCKER_CONFIG", &config);
            c
        }
    };

    // Anonymous, as a daemon asks its mirror: `busybox` is Docker Hub's `library/busybox`.
    let pull = || {
        let (docker, image) = (docker.clone(), image.clone());
        tokio::task::spawn_blocking(move || run(docker().args(["pull", &image])))
    };
    let out = pull().await.unwrap();
    assert!(out.contains("Downloaded newer image"), "{out}");
    let id = |name: &str| run(docker().args(["image", "inspect", "-f", "{{.Id}}", name]));
    assert_eq!(id(&image), id(FIXTURE), "the upstream's image came through");
    assert!(upstream_requests(&ref_dir) > 0, "the upstream was asked");
    // The store holds it like a pushed image, marked as a mirror.
    let origin =
        std::fs::read_to_string(tmp.path().join("registry/repositories/busybox/_mirror")).unwrap();
    assert_eq!(origin, format!("http://{}", reference.addr));

    // The upstream goes away: the second pull is served from the store alone.
    reference.stop();
    run(docker().args(["rmi", &image]));
    let out = pull().await.unwrap();
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(id(&image), id(FIXTURE));

    // What no upstream has: the spec's error, naming what was tried.
    let reply = curl(&[&format!("http://{addr}/v2/nothere/manifests/latest")]).await;
    assert_eq!(reply.status, 401, "no token yet");
    let token = curl(&[&format!(
        "http://{addr}/jwt/auth?service=container_registry&scope=repository:nothere:pull"
    )])
    .await;
    assert_eq!(token.status, 200, "{}", token.text());
    let bearer = token.json()["token"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {bearer}");
    let reply = curl(&[
        "-H",
        &auth,
        &format!("http://{addr}/v2/nothere/manifests/latest"),
    ])
    .await;
    assert_eq!(reply.status, 404);
    let message = reply.json()["errors"][0].clone();
    assert_eq!(message["code"], "MANIFEST_UNKNOWN");
    let text = message["message"].as_str().unwrap();
    assert!(text.contains("dead (http://127.0.0.1:"), "{text}");
    assert!(
        text.contains(&format!("docker.io (http://{}", reference.addr)),
        "{text}"
    );
    // The anonymous token reaches the cache only: no push, no catalog.
    let reply = curl(&["-H", &auth, &format!("http://{addr}/v2/_catalog")]).await;
    assert_eq!(reply.status, 401);
    let reply = curl(&[
        "-H",
        &auth,
        "-X",
        "POST",
        &format!("http://{addr}/v2/busybox/blobs/uploads/"),
    ])
    .await;
    assert_eq!(reply.status, 401);
    // A token request with a push scope and no credentials is refused.
    let reply = curl(&[&format!(
        "http://{addr}/jwt/auth?service=container_registry&scope=repository:nothere:pull,push"
    )])
    .await;
    assert_eq!(reply.status, 401);
    // A push makes the repository a project's: the anonymous token no longer reaches it.
    let creds = server.registry_credentials();
    let user = format!("{}:{}", creds.username, creds.password);
    let reply = curl(&[
        "-u",
        &user,
        "-X",
        "POST",
        &format!("http://{addr}/v2/busybox/blobs/uploads/"),
    ])
    .await;
    assert_eq!(reply.status, 202);
    assert!(!tmp
        .path()
        .join("registry/repositories/busybox/_mirror")
        .exists());
    let reply = curl(&[
        "-H",
        &auth,
        &format!("http://{addr}/v2/busybox/manifests/latest"),
    ])
    .await;
    assert_eq!(reply.status, 401);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_engine_is_the_last_upstream_and_its_images_have_stable_digests() {
    let mut digests = Vec::new();
    for round in 0..2 {
        let tmp = tempfile::tempdir().unwrap();
        let server = start(tmp.path(), Vec::new(), true).await;
        let creds = server.registry_credentials();
        let src = format!("docker://{}/{FIXTURE}", creds.address);
        let user = format!("{}:{}", creds.username, creds.password);
        let layout = tmp.path().join("layout");
        let layout_ref = format!("oci:{}:x", layout.display());
        // skopeo verifies every blob against its digest on the way out.
        let out = tokio::task::spawn_blocking({
            let (src, user) = (src.clone(), user.clone());
            move || {
                run(Command::new("skopeo").args([
                    "copy",
                    "--src-tls-verify=false",
                    "--src-creds",
                    &user,
                    &src,
                    &layout_ref,
                ]));
                run(Command::new("skopeo").args([
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    "--creds",
                    &user,
                    &src,
                ]))
            }
        })
        .await
        .unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        // The config is the engine's own: its digest is the image's ID.
        let fixture_id =
            run(Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", FIXTURE]));
        assert_eq!(
            manifest["config"]["digest"].as_str().unwrap(),
            fixture_id.trim()
        );
        let reply = curl(&[
            "-u",
            &user,
            "-I",
            &format!(
                "http://{}/v2/{}/manifests/latest",
                creds.address, "glci-fixture/busybox"
            ),
        ])
        .await;
        digests.push(reply.header("docker-content-digest").unwrap().to_string());
        let _ = round;
        server.shutdown().await;
    }
    assert_eq!(digests[0], digests[1], "the same image, the same digest");
}

/// Forwards connections from `listener` to `to` (the registry listens on loopback only; a
/// nested engine reaches this host on the bridge address).
async fn forward(listener: tokio::net::TcpListener, to: String) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let to = to.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// The DinD container; removed (with its volumes) when dropped.
struct Dind(String);
impl Drop for Dind {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.0])
            .output();
    }
}

/// A second engine (Docker 20.10 in Docker) whose `registry-mirrors` is glci's registry pulls
/// a fixture image that only this host's engine has: the engine-as-upstream image is valid
/// for a real daemon, and gets the same image ID.
#[tokio::test(flavor = "multi_thread")]
async fn a_dind_daemon_pulls_an_engine_image_through_its_registry_mirror() {
    let engine = glci_test::docker::Engine::connect().await.unwrap();
    let glci_test::docker::HostAddress::Bridge(bridge) = engine.host_address().await else {
        panic!("the engine's bridge is not an address of this host");
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), Vec::new(), true).await;
    let listener = tokio::net::TcpListener::bind((bridge, 0)).await.unwrap();
    let mirror = listener.local_addr().unwrap();
    let forwarder = tokio::spawn(forward(listener, server.registry_credentials().address));

    let labels = glci_test::docker::Owner::for_this_process("registry-cache-test").labels();
    // glci's own capability set for DinD, as `--privileged` is refused on some hosts.
    let mut args: Vec<String> = ["run", "-d", "-p", "127.0.0.1::2375"]
        .map(str::to_string)
        .to_vec();
    args.extend(glci_test::runner::dind::capability_set_flags());
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([
        "glci-fixture/docker:dind".to_string(),
        "dockerd".to_string(),
        "--host=tcp://0.0.0.0:2375".to_string(),
        "--tls=false".to_string(),
        format!("--registry-mirror=http://{mirror}"),
        format!("--insecure-registry={mirror}"),
    ]);
    let id = run(Command::new("docker").args(&args)).trim().to_string();
    let _dind = Dind(id.clone());
    let port = run(Command::new("docker").args(["port", &id, "2375/tcp"]));
    let host = format!(
        "tcp://{}",
        port.lines()
            .find(|l| l.starts_with("127.0.0.1:"))
            .expect("published on loopback")
    );
    let nested = move |args: &[&str]| {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &host).args(args);
        c
    };
    let fixture_id =
        run(Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", FIXTURE]));
    let pulled = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !nested(&["version"]).output().unwrap().status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "the nested engine did not answer"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        run(&mut nested(&["pull", FIXTURE]));
        run(&mut nested(&["image", "inspect", "-f", "{{.Id}}", FIXTURE]))
    })
    .await
    .unwrap();
    assert_eq!(pulled.trim(), fixture_id.trim());
    forwarder.abort();
    server.shutdown().await;
}

/// `--push-through`: a push to glci is pushed on to the upstream (distribution's registry on
/// loopback), blobs first; a second push of the same image sends no blob again; an upstream
/// that cannot take it fails the push with a 5xx that names it, and the image stays here.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_go_through_to_the_mirror_and_a_dead_one_fails_the_push() {
    let tmp = tempfile::tempdir().unwrap();
    let ref_dir = tmp.path().join("reference");
    std::fs::create_dir_all(&ref_dir).unwrap();
    let reference = Reference::start(&ref_dir);
    let start_mirrored = |dir: std::path::PathBuf, url: String| async move {
        let mut config = ServerConfig::new(dir.join("data"));
        config.registry.dir = Some(dir.join("registry"));
        config.registry.upstreams = Vec::new();
        config.registry.engine_upstream = false;
        config.registry.push_through = Some(PushThroughConfig {
            url,
            username: String::new(),
            password: String::new(),
        });
        Server::start(config).await.expect("server starts")
    };
    let server = start_mirrored(tmp.path().join("one"), format!("http://{}", reference.addr)).await;
    let creds = server.registry_credentials();
    let out = skopeo_push(&creds).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The upstream has it, under the same name and tag.
    let inspect = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/group/app/image:1", reference.addr),
    ]));
    assert!(inspect.contains("layers"), "{inspect}");
    let uploads = || {
        std::fs::read_to_string(ref_dir.join("log"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"POST /v2/group/app/image/blobs/uploads/"))
            .count()
    };
    let first = uploads();
    assert!(first >= 2, "config and layer uploaded: {first}");
    // Idempotent: pushed again, the upstream's HEAD answers spare every blob.
    let out = skopeo_push(&creds).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(uploads(), first);

    // Nothing listens where the mirror should be: the push fails, naming it.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let server = start_mirrored(tmp.path().join("two"), dead.clone()).await;
    let creds = server.registry_credentials();
    let out = skopeo_push(&creds).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // skopeo shows the status, not the body (which names the upstream).
    assert!(stderr.contains("502 Bad Gateway"), "{stderr}");
    // Stored here all the same: a retry mirrors what is missing.
    let here = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        "--creds",
        &format!("{}:{}", creds.username, creds.password),
        &format!("docker://{}/group/app/image:1", creds.address),
    ]));
    assert!(here.contains("layers"), "{here}");
}

/// `skopeo copy` of the fixture to `group/app/image:1` on glci's loopback listener, as the
/// host (no retries: a refusal is the answer).
async fn skopeo_push(creds: &glci_test::server::RegistryCredentials) -> std::process::Output {
    let (addr, login) = (
        creds.address.clone(),
        format!("{}:{}", creds.username, creds.password),
    );
    tokio::task::spawn_blocking(move || {
        Command::new("skopeo")
            .args(["copy", "--retry-times=0", "--dest-tls-verify=false"])
            .args(["--dest-creds", &login])
            .arg(format!("docker-daemon:{FIXTURE}"))
            .arg(format!("docker://{addr}/group/app/image:1"))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}
