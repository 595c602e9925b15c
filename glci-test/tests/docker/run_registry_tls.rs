//! The registry's TLS listener and glci's CA, with real clients: `skopeo` on the host copies
//! an image in and out over TLS trusting the CA from `GLCI_HOME/registry-ca` (and fails
//! without it); then a pipeline on the same `GLCI_HOME` runs a job in that image
//! (`image: $CI_REGISTRY_IMAGE/...`, which the engine pulls from the loopback listener), jobs
//! whose `curl` verifies the registry with the injected CA (and fails with another CA), an
//! image without a system bundle that gets `SSL_CERT_FILE`, and `pull_policy: never` with a
//! missing image failing with the runner's message.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use glci_test::docker::{Engine, HostAddress};
use glci_test::pipeline::{self, PipelineOptions, Quiet, RunOptions, Session};
use glci_test::plan::status::Status;
use glci_test::server::tls::RegistryCa;
use glci_test::server::{RegistryTlsConfig, Server, ServerConfig};

fn output(cmd: &mut Command) -> std::process::Output {
    cmd.env("NO_PROXY", "*").output().expect("runs")
}

fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the engine's tags of the test's repositories when the test ends.
struct Untag(String);
impl Drop for Untag {
    fn drop(&mut self) {
        let listed = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output();
        let Ok(listed) = listed else { return };
        for tag in String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|l| l.contains(&self.0))
        {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
    }
}

fn pipeline_yaml(wrong_ca: &str) -> String {
    let wrong_ca: String = wrong_ca.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        r#"
variables:
  GIT_STRATEGY: none
  WRONG_CA: |
{wrong_ca}
trust:
  image: glci-fixture/debian:bookworm
  script:
    - echo "registry=$CI_REGISTRY"
    - echo "anonymous=$(curl -sS -o /dev/null -w '%{{http_code}}' https://$CI_REGISTRY/v2/)"
    - echo "realm=$(curl -sS -o /dev/null -D - https://$CI_REGISTRY/v2/ | grep -i '^www-authenticate' | tr -d '\r')"
    - echo "token=$(curl -sS -o /dev/null -w '%{{http_code}}' -u "$CI_REGISTRY_USER:$CI_REGISTRY_PASSWORD" "https://$CI_REGISTRY/jwt/auth?service=container_registry&scope=repository:$CI_PROJECT_PATH:pull")"
    - echo "fixed=$(curl -sS -o /dev/null -w '%{{http_code}}' --cacert /etc/glci/registry-ca.crt https://$CI_REGISTRY/v2/)"
    - printf '%s\n' "$WRONG_CA" > /tmp/wrong.pem
    - curl -sS -o /dev/null --cacert /tmp/wrong.pem https://$CI_REGISTRY/v2/ || echo "wrong-ca-exit=$?"
    - cmp /etc/glci/registry-ca.crt "/etc/docker/certs.d/$CI_REGISTRY/ca.crt" && echo certs.d=same
    - echo "ssl-cert-file=${{SSL_CERT_FILE:-unset}}"

bare:
  image: glci-fixture/busybox:latest
  script:
    - echo "ssl-cert-file=$SSL_CERT_FILE"
    - head -n 1 "$SSL_CERT_FILE"

pulled:
  image: $CI_REGISTRY_IMAGE/copied:tls
  script:
    - echo "ran in the pushed image"

never:
  image:
    name: $CI_REGISTRY_IMAGE/missing:1
    pull_policy: never
  script:
    - echo unreachable
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_and_skopeo_reach_the_registry_over_tls_with_glcis_ca() {
    assert!(
        Command::new("skopeo").arg("--version").output().is_ok(),
        "skopeo is needed (apt-get install skopeo)"
    );
    let engine = Engine::connect().await.expect("engine");
    let HostAddress::Bridge(bridge) = engine.host_address().await else {
        panic!("this test needs an engine on this host");
    };
    let home = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = RegistryCa::load_or_create(&other.path().join("ca"))
        .unwrap()
        .cert_pem()
        .to_string();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join(".gitlab-ci.yml"),
        pipeline_yaml(&wrong_ca),
    )
    .unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(project.path())
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args))
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one"]);
    let planned = pipeline::plan(&PipelineOptions::new(project.path())).unwrap();
    let path = planned
        .predefined
        .iter()
        .find(|(k, _)| k == "CI_PROJECT_PATH")
        .map(|(_, v)| v.to_lowercase())
        .unwrap();
    let _untag = Untag(format!("/{path}/"));

    // An earlier server on the same GLCI_HOME, on the bridge with its TLS listener: skopeo
    // copies in and out over TLS, trusting the CA it made there.
    let scratch = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(scratch.path().join("data"));
    config.bind = bridge;
    config.registry.dir = Some(home.path().join("registry"));
    config.registry.tls = Some(RegistryTlsConfig {
        ca_dir: home.path().join("registry-ca"),
        port: 0,
        extra_names: Vec::new(),
        leaf_validity: None,
    });
    let server = Server::start(config).await.unwrap();
    let tls = server.registry_tls().expect("a TLS listener").clone();
    assert!(tls.address.starts_with(&format!("{bridge}:")), "{tls:?}");
    let key = home.path().join("registry-ca/ca.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    let ca_pem = std::fs::read_to_string(home.path().join("registry-ca/ca.crt")).unwrap();
    assert_eq!(ca_pem, tls.ca_pem);
    let creds = server.registry_credentials();
    let creds = format!("{}:{}", creds.username, creds.password);
    let cert_dir = scratch.path().join("certs");
    std::fs::create_dir(&cert_dir).unwrap();
    std::fs::write(cert_dir.join("ca.crt"), &ca_pem).unwrap();
    let pushed = format!("docker://{}/{path}/copied:tls", tls.address);
    {
        let (cert_dir, pushed, scratch) = (
            cert_dir.clone(),
            pushed.clone(),
            scratch.path().to_path_buf(),
        );
        tokio::task::spawn_blocking(move || {
            let cert_dir = cert_dir.to_str().unwrap();
            // Without the CA the certificate is refused: TLS is really verified.
            let refused =
                output(Command::new("skopeo").args(["inspect", "--creds", &creds, &pushed]));
            assert!(!refused.status.success());
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert!(
                stderr.contains("certificate") || stderr.contains("x509"),
                "{stderr}"
            );
            run(Command::new("skopeo").args([
                "copy",
                "--dest-cert-dir",
                cert_dir,
                "--dest-creds",
                &creds,
                "docker-daemon:glci-fixture/busybox:latest",
                &pushed,
            ]));
            let layout = format!("oci:{}:out", scratch.join("layout").display());
            run(Command::new("skopeo").args([
                "copy",
                "--src-cert-dir",
                cert_dir,
                "--src-creds",
                &creds,
                &pushed,
                &layout,
            ]));
            let inspected = run(Command::new("skopeo").args(["inspect", &layout]));
            assert!(
                inspected.contains("\"Architecture\": \"amd64\""),
                "{inspected}"
            );
        })
        .await
        .unwrap();
    }
    server.shutdown().await;

    // The pipeline: the same CA (made once, reused), a new listener.
    let options = RunOptions {
        home: Some(home.path().to_path_buf()),
        ..RunOptions::default()
    };
    let session = Session::start(
        &PipelineOptions::new(project.path()),
        options,
        Arc::new(Quiet),
    )
    .await
    .expect("session");
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    // The name the engine pulled it by (the run's loopback port) went with the run.
    let listed =
        run(Command::new("docker").args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(!listed.contains(&format!("/{path}/copied:tls")), "{listed}");
    assert_eq!(
        std::fs::read_to_string(home.path().join("registry-ca/ca.crt")).unwrap(),
        ca_pem,
        "the CA is reused across runs"
    );

    let trust = report.job("trust").unwrap();
    let log = &trust.log;
    assert_eq!(trust.status, Status::Success, "{log}");
    let registry = log
        .lines()
        .find_map(|l| l.strip_prefix("registry="))
        .expect("CI_REGISTRY printed");
    assert!(registry.starts_with(&format!("{bridge}:")), "{registry}");
    // Verified by the system bundle (curl's default), which now holds glci's CA.
    assert!(log.contains("anonymous=401"), "{log}");
    assert!(
        log.contains(&format!("Bearer realm=\"https://{registry}/jwt/auth\"")),
        "{log}"
    );
    assert!(log.contains("token=200"), "{log}");
    assert!(log.contains("fixed=401"), "{log}");
    // curl's "SSL certificate problem: unable to get local issuer certificate".
    assert!(log.contains("wrong-ca-exit=60"), "{log}");
    assert!(log.contains("certs.d=same"), "{log}");
    assert!(log.contains("ssl-cert-file=unset"), "{log}");

    let bare = report.job("bare").unwrap();
    assert_eq!(bare.status, Status::Success, "{}", bare.log);
    assert!(
        bare.log.contains("ssl-cert-file=/etc/glci/registry-ca.crt"),
        "{}",
        bare.log
    );
    assert!(
        bare.log.contains("-----BEGIN CERTIFICATE-----"),
        "{}",
        bare.log
    );

    let pulled = report.job("pulled").unwrap();
    assert_eq!(pulled.status, Status::Success, "{}", pulled.log);
    assert!(
        pulled.log.contains(&format!(
            "Pulling docker image {registry}/{path}/copied:tls"
        )),
        "{}",
        pulled.log
    );
    assert!(
        pulled.log.contains("ran in the pushed image"),
        "{}",
        pulled.log
    );

    let never = report.job("never").unwrap();
    assert_eq!(never.status, Status::Failed, "{}", never.log);
    let image = format!("{registry}/{path}/missing:1");
    assert!(
        never.log.contains(&format!(
            "failed to pull image \"{image}\" with specified policies [never]: Error response \
             from daemon: No such image: {image}"
        )),
        "{}",
        never.log
    );
    assert!(!never.log.contains("unreachable\n"), "{}", never.log);
}
