//! `cargo glci --version -v` and what `cargo glci doctor` reports beyond the engine (needs the
//! Docker engine and the fixture images).

use std::process::Output;

use glci_e2e::{glci_bin, repo_root, stderr, stdout};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    glci_e2e::run(glci_bin!(), repo_root(), args, env)
}

#[test]
fn version_verbose_names_the_engine_and_its_api() {
    let out = run(&["--version", "-v"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("cargo-glci {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let engine = lines.next().unwrap_or_default();
    assert!(engine.starts_with("docker engine: "), "{text}");
    assert!(engine.contains(", API 1."), "{text}");
    assert!(engine.contains("negotiated, engine's API 1."), "{text}");

    // Without an engine the version still prints, and says why there is no engine.
    let out = run(
        &["-V", "-v"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("docker engine: none (no Docker engine answers"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn doctor_reports_bridge_privileged_disk_and_fixture_images_and_leaves_nothing() {
    let home = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(glci_bin!())
        .arg("doctor")
        .env("GLCI_HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line: {text}"))
            .to_string()
    };
    let bridge = line("bridge address jobs use: ");
    let ip = bridge.trim_start_matches("bridge address jobs use: ");
    assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{text}");
    // This machine's engine refuses privileged containers (see the README's Docker notes).
    let privileged = line("privileged containers: ");
    assert!(
        privileged == "privileged containers: work"
            || privileged.starts_with(
                "privileged containers: refused by this engine, the capability fallback will be used ("
            ),
        "{text}"
    );
    assert!(
        line("GLCI_HOME: ").starts_with(&format!("GLCI_HOME: {} (", home.path().display())),
        "{text}"
    );
    assert!(line("GLCI_HOME: ").ends_with(" GiB free)"), "{text}");
    assert!(
        line("fixture images: ").contains("glci-fixture/busybox:latest"),
        "{text}"
    );
    // The probe container is gone.
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=io.glci.owner-pid={pid}"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "probe left behind"
    );
}

#[test]
fn no_engine_message_names_no_script_of_glcis_repository() {
    let out = run(
        &["doctor"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(!err.contains("scripts/"), "{err}");
    assert!(err.contains("is dockerd running?"), "{err}");
}
