//! `cargo glci registry list | stats | pull | clean` through the real binary, on a fresh
//! GLCI_HOME: the engine on this host is the only upstream (`GLCI_REGISTRY_UPSTREAMS=`), so
//! `pull` brings a fixture image through the registry's cache and back into the engine.

use std::path::Path;
use std::process::Command;

use glci_e2e::{glci_bin, run, stderr, stdout};

const FIXTURE: &str = "glci-fixture/busybox:latest";
const PULLED: &str = "glci-e2e-registry/glci-fixture/busybox:latest";

fn image_id(name: &str) -> String {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", name])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Untag(&'static str);
impl Drop for Untag {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", self.0]).output();
    }
}

/// Every file below `dir`, dated two hours back (older than the default grace period).
fn age(dir: &Path) {
    let out = Command::new("find")
        .arg(dir)
        .args(["-exec", "touch", "-h", "-d", "2 hours ago", "{}", "+"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn list_stats_pull_and_clean() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let env = [
        ("GLCI_HOME", home.path().to_str().unwrap()),
        ("GLCI_REGISTRY_UPSTREAMS", ""),
    ];
    let glci = |args: &[&str]| run(glci_bin!(), cwd.path(), args, &env);
    let _untag = Untag(PULLED);

    let out = glci(&["registry", "pull", FIXTURE, "glci-e2e-registry"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), PULLED);
    assert_eq!(
        image_id(PULLED),
        image_id(FIXTURE),
        "the engine's image came back"
    );

    let out = glci(&["registry", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(
        listed.starts_with("glci-fixture/busybox  tags: latest  (cached from docker engine"),
        "{listed}"
    );
    let out = glci(&["registry", "list", "--project", "other/project"]);
    assert_eq!(stdout(&out), "");

    let out = glci(&["registry", "stats"]);
    let stats = stdout(&out);
    assert!(stats.contains("repositories: 1\ntags: 1\n"), "{stats}");
    let blobs: usize = stats
        .lines()
        .find_map(|l| l.strip_prefix("blobs: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(blobs >= 3, "config, a layer and the manifest: {stats}");
    assert!(stats.contains("dedup ratio: 1.00"), "{stats}");

    let registry = home.path().join("registry");
    // Untagged, but young: the grace period keeps it (a push may be under way).
    std::fs::remove_file(registry.join("repositories/glci-fixture/busybox/_manifests/tags/latest"))
        .unwrap();
    let out = glci(&["registry", "clean"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "removed 0 manifest(s), 0 blob link(s), 0 blob(s) (0 bytes)"
    );
    // Another collection holds the lock: refused.
    let lock = std::fs::File::create(registry.join("gc.lock")).unwrap();
    lock.lock().unwrap();
    let out = glci(&["registry", "clean"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another `cargo glci registry clean`"),
        "{}",
        stderr(&out)
    );
    drop(lock);
    // Old enough: the manifest, its links and every blob go, and so does a temporary file
    // of a process that died while writing a blob (any clean sweeps those).
    let crashed = registry.join("blobs/sha256/.tmp-crashed-write");
    std::fs::write(&crashed, b"half a blob").unwrap();
    age(&registry);
    let out = glci(&["registry", "clean", "--project", "other/project"]);
    assert!(
        stdout(&out).contains("removed 0 manifest(s)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("removed 1 unfinished temporary file(s)"),
        "{}",
        stdout(&out)
    );
    assert!(!crashed.exists());
    let out = glci(&["registry", "clean"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.starts_with(&format!(
            "removed 1 manifest(s), {} blob link(s), {blobs} blob(s)",
            blobs - 1
        )),
        "{report}"
    );
    let out = glci(&["registry", "stats"]);
    assert!(
        stdout(&out).contains("blobs: 0\nbytes: 0\n"),
        "{}",
        stdout(&out)
    );

    let out = glci(&["registry", "pull", "Not/Valid"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`Not/Valid` is not NAME[:TAG]"),
        "{}",
        stderr(&out)
    );
}

/// The cache's upstream asks for credentials (Bearer token flow, glci's own registry as the
/// upstream): `pull` answers with the `auths` entry `docker login` wrote to the user's Docker
/// configuration.
#[test]
fn the_cache_logs_in_to_an_upstream_with_the_docker_configuration() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream_dir = tempfile::tempdir().unwrap();
    let mut config = glci_test::server::ServerConfig::new(upstream_dir.path());
    config.registry.engine_upstream = false;
    let upstream = rt
        .block_on(glci_test::server::Server::start(config))
        .unwrap();
    let creds = upstream.registry_credentials();
    let user = format!("{}:{}", creds.username, creds.password);
    let copied = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &user])
        .arg(format!("docker-daemon:{FIXTURE}"))
        .arg(format!("docker://{}/library/busybox:e2e", creds.address))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", stderr(&copied));

    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    let upstreams = format!("up=http://{}", creds.address);
    let env = [
        ("GLCI_HOME", home.path().to_str().unwrap()),
        ("GLCI_REGISTRY_UPSTREAMS", upstreams.as_str()),
        ("DOCKER_CONFIG", docker_config.path().to_str().unwrap()),
    ];
    let glci = |args: &[&str]| run(glci_bin!(), cwd.path(), args, &env);
    const LOCAL: &str = "glci-e2e-auth/up/library/busybox:e2e";
    let _untag = Untag(LOCAL);

    // Anonymous: the upstream refuses, and the error says what was tried.
    let out = glci(&[
        "registry",
        "pull",
        "up/library/busybox:e2e",
        "glci-e2e-auth",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "up (http://{}/v2/library/busybox/manifests/e2e): 401",
            creds.address
        )),
        "{}",
        stderr(&out)
    );
    let login = Command::new("docker")
        .env("DOCKER_CONFIG", docker_config.path())
        .args([
            "login",
            &creds.address,
            "-u",
            &creds.username,
            "-p",
            &creds.password,
        ])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    let out = glci(&[
        "registry",
        "pull",
        "up/library/busybox:e2e",
        "glci-e2e-auth",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), LOCAL);
    assert_eq!(image_id(LOCAL), image_id(FIXTURE));
    rt.block_on(upstream.shutdown());
}
