//! The set-up scripts the README's commands call, in the cases that must not install anything.

use std::process::Command;

use glci_e2e::repo_root;

#[test]
fn docker_engine_is_a_no_op_when_an_engine_answers() {
    let out = Command::new(repo_root().join("scripts/docker-engine"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing to do, nothing said.
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn docker_engine_names_the_unreachable_docker_host_and_fails() {
    let out = Command::new(repo_root().join("scripts/docker-engine"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DOCKER_HOST=unix:///nonexistent/docker.sock is set but no engine answers"),
        "{err}"
    );
}

#[test]
fn fixture_images_are_skipped_when_present() {
    let out = Command::new(repo_root().join("scripts/fixture-images"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("building"));
}

#[test]
fn fixture_images_reject_an_unknown_recipe() {
    let out = Command::new(repo_root().join("scripts/fixture-images"))
        .arg("no-such-image")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no image recipe at fixtures/images/no-such-image"));
}
