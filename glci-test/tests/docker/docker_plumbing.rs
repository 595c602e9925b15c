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
