//! The Docker plumbing against the real engine: a labelled network, a container from the
//! offline busybox fixture, its output and exit code, and cleanup that leaves nothing behind.
//! These tests fail (never skip) when no engine answers: `scripts/test` starts one.

use bollard::query_parameters::CreateContainerOptionsBuilder;
use glci_test::docker::{
    count_labelled, create_network, remove_orphans, remove_owned, run_container, ContainerSpec,
    DockerError, Engine, Owner, LABEL_OWNER, LABEL_OWNER_PID,
};

const BUSYBOX: &str = "glci-fixture/busybox:latest";

async fn engine() -> Engine {
    Engine::connect().await.unwrap_or_else(|e| {
        panic!("these tests need a Docker engine (run scripts/docker-engine): {e}")
    })
}

/// Containers and networks carrying `label` (key or key=value).
async fn labelled(engine: &Engine, label: &str) -> (usize, usize) {
    let found = count_labelled(engine, label).await.unwrap();
    (found.containers, found.networks)
}

#[tokio::test]
async fn negotiates_an_api_version_the_engine_speaks() {
    let engine = engine().await;
    let server = engine.client().version().await.unwrap();
    // The negotiated version is never newer than what the engine offers.
    let ours: Vec<u32> = engine
        .api_version()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    let theirs: Vec<u32> = server
        .api_version
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        ours <= theirs,
        "negotiated {ours:?} but the engine speaks {theirs:?}"
    );
}

#[tokio::test]
async fn runs_a_container_on_a_labelled_network_and_cleans_up() {
    let engine = engine().await;
    let owner = Owner::for_this_process("plumbing-test");
    let network_name = format!("{}-net", owner.name_prefix());
    create_network(&engine, &owner, &network_name)
        .await
        .unwrap();

    let spec = ContainerSpec {
        name: format!("{}-hello", owner.name_prefix()),
        image: BUSYBOX.to_string(),
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "echo \"hello $WHO\"; echo oops >&2; exit 3".into(),
        ],
        env: vec!["WHO=glci".into()],
        network: Some(network_name.clone()),
    };
    let out = run_container(&engine, &owner, &spec).await.unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout, "hello glci\n");
    assert_eq!(out.stderr, "oops\n");

    // A container that is still running is removed by the owner cleanup too.
    let body = bollard::models::ContainerCreateBody {
        image: Some(BUSYBOX.to_string()),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        labels: Some(owner.labels()),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new()
        .name(&format!("{}-left", owner.name_prefix()))
        .build();
    let id = engine
        .client()
        .create_container(Some(opts), body)
        .await
        .unwrap()
        .id;
    engine.client().start_container(&id, None).await.unwrap();

    let mine = format!("{LABEL_OWNER}={}", owner.id);
    assert_eq!(labelled(&engine, &mine).await, (1, 1));
    let report = remove_owned(&engine, &owner.id).await.unwrap();
    assert_eq!((report.containers, report.networks), (1, 1));
    assert_eq!(labelled(&engine, &mine).await, (0, 0));
}

/// On an engine's first start its default bridge carries no IPAM gateway (CI puts the engine in
/// that state before the tests: `scripts/docker-engine --first-start`); on a restarted one it
/// does. Either way glci must find an address of this host on the bridge, and a container on a
/// labelled network must reach a server bound there.
#[tokio::test]
async fn a_container_reaches_a_server_on_the_host_address_with_or_without_an_ipam_gateway() {
    use glci_test::docker::HostAddress;
    use std::io::{Read, Write};

    let engine = engine().await;
    let bridge = engine
        .client()
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    let gateway = bridge
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| c.gateway);
    eprintln!("bridge IPAM gateway: {gateway:?} (None: the engine is in its first-start state)");

    let ip = match engine.host_address().await {
        HostAddress::Bridge(ip) => ip,
        HostAddress::NotHere { tried } => panic!("no host address on a local engine: {tried:?}"),
    };
    let interface = bridge
        .options
        .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
        .expect("the default bridge names its interface");
    let owned: Vec<std::net::IpAddr> = if_addrs_of(&interface);
    assert!(
        owned.contains(&ip),
        "{ip} is not an address of {interface}: {owned:?}"
    );

    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 512];
        let _ = conn.read(&mut request).unwrap();
        conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 11\r\n\r\nhello glci\n")
            .unwrap();
    });

    let owner = Owner::for_this_process("plumbing-test");
    let network_name = format!("{}-reach", owner.name_prefix());
    create_network(&engine, &owner, &network_name)
        .await
        .unwrap();
    let spec = ContainerSpec {
        name: format!("{}-reach", owner.name_prefix()),
        image: BUSYBOX.to_string(),
        // busybox's static wget crashes here (its resolver); nc speaks the request itself.
        cmd: vec![
            "sh".into(),
            "-c".into(),
            format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {ip} {port} | tail -n 1"),
        ],
        env: vec![],
        network: Some(network_name),
    };
    let out = run_container(&engine, &owner, &spec).await.unwrap();
    remove_owned(&engine, &owner.id).await.unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str()),
        (0, "hello glci\n"),
        "{}",
        out.stderr
    );
    server.join().unwrap();
}

/// The IPv4 addresses this host has on `interface`, as `ip -4 addr show` lists them.
fn if_addrs_of(interface: &str) -> Vec<std::net::IpAddr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", interface])
        .output()
        .expect("run `ip`");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_missing_image_is_one_clear_error() {
    let engine = engine().await;
    let owner = Owner::for_this_process("plumbing-test");
    let spec = ContainerSpec {
        name: format!("{}-missing", owner.name_prefix()),
        image: "glci-fixture/does-not-exist:1".to_string(),
        cmd: vec!["true".into()],
        ..Default::default()
    };
    let err = run_container(&engine, &owner, &spec).await.unwrap_err();
    assert!(matches!(err, DockerError::MissingImage { .. }), "{err}");
    assert!(
        err.to_string().contains("glci-fixture/does-not-exist:1"),
        "{err}"
    );
}

#[tokio::test]
async fn orphans_of_a_dead_process_are_removed_and_live_ones_kept() {
    let engine = engine().await;
    let live = Owner::for_this_process("orphan-test");

    // An owner whose process has exited: what a SIGKILLed glci run leaves behind.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let mut dead = Owner::for_this_process("orphan-test");
    dead.pid = dead_pid;
    let mut dead_labels = dead.labels();
    dead_labels.insert(LABEL_OWNER_PID.to_string(), dead_pid.to_string());

    for (owner, labels) in [(&live, live.labels()), (&dead, dead_labels)] {
        let body = bollard::models::ContainerCreateBody {
            image: Some(BUSYBOX.to_string()),
            cmd: Some(vec!["true".into()]),
            labels: Some(labels),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&format!("{}-orphan", owner.name_prefix()))
            .build();
        engine
            .client()
            .create_container(Some(opts), body)
            .await
            .unwrap();
    }

    let report = remove_orphans(&engine).await.unwrap();
    assert!(report.containers >= 1, "{report:?}");
    let dead_label = format!("{LABEL_OWNER}={}", dead.id);
    let live_label = format!("{LABEL_OWNER}={}", live.id);
    assert_eq!(labelled(&engine, &dead_label).await, (0, 0));
    assert_eq!(labelled(&engine, &live_label).await, (1, 0));
    remove_owned(&engine, &live.id).await.unwrap();
    assert_eq!(labelled(&engine, &live_label).await, (0, 0));
}
