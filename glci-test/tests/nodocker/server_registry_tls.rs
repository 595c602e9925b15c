//! The registry's listeners without an engine: the TLS listener on loopback verified by `curl`
//! with glci's CA (and refused without it), answering registry paths only, with an `https`
//! token realm; and a server told not to serve a registry answering none.

use crate::support::curl;

use glci_test::server::{RegistryTlsConfig, Server, ServerConfig};

#[tokio::test]
async fn the_tls_listener_serves_the_registry_with_glcis_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(tmp.path().join("data"));
    config.registry.tls = Some(RegistryTlsConfig {
        ca_dir: tmp.path().join("registry-ca"),
        port: 0,
        extra_names: vec!["registry.test".to_string()],
        leaf_validity: None,
    });
    let server = Server::start(config).await.unwrap();
    let tls = server.registry_tls().unwrap().clone();
    let ca = tmp.path().join("registry-ca/ca.crt");
    let ca = ca.to_str().unwrap();
    let base = format!("https://{}", tls.address);
    let r = curl(&["--cacert", ca, &format!("{base}/v2/")]).await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(&format!("realm=\"{base}/jwt/auth\"")),
        "{challenge}"
    );
    // An extra name from the settings is in the certificate.
    let port = tls.address.rsplit(':').next().unwrap();
    let r = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &format!("registry.test:{port}:127.0.0.1"),
        &format!("https://registry.test:{port}/v2/"),
    ])
    .await;
    assert_eq!(r.status, 401);
    // The runner API is not on this listener.
    let r = curl(&["--cacert", ca, &format!("{base}/api/v4/jobs/request")]).await;
    assert_eq!(r.status, 404);
    // Without the CA the certificate is refused: curl's exit 60, "SSL certificate problem".
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
            &format!("{base}/v2/"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(60), "{out:?}");
}

#[tokio::test]
async fn a_server_without_a_registry_serves_none() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(tmp.path().join("data"));
    config.registry.served = false;
    let server = Server::start(config).await.unwrap();
    let r = curl(&[&format!("{}/v2/", server.url())]).await;
    assert_eq!(r.status, 404);
}
