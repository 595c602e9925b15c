//! The `cargo glci` binary as users call it: through cargo, and directly.

use std::process::{Command, Output};

use glci_e2e::{glci_bin, repo_root, stdout};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    glci_e2e::run(glci_bin!(), repo_root(), args, env)
}

#[test]
fn version_and_help_work_directly_and_as_cargo_subcommand() {
    let direct = run(&["--version"], &[]);
    let as_subcommand = run(&["glci", "--version"], &[]);
    assert!(direct.status.success());
    assert_eq!(
        stdout(&direct),
        format!("cargo-glci {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(stdout(&direct), stdout(&as_subcommand));

    let help = run(&["glci", "--help"], &[]);
    assert!(help.status.success());
    let text = stdout(&help);
    assert!(text.contains("Usage: cargo glci"), "{text}");
    assert!(text.contains("doctor"), "{text}");
}

#[test]
fn cargo_finds_the_subcommand_on_path() {
    // `cargo glci` resolves `cargo-glci` from PATH, as after `cargo install --path cargo-glci`.
    let dir = glci_bin!().parent().unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args(["glci", "--version"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        format!("cargo-glci {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = run(&["glci", "frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'frobnicate'"));
}

#[test]
fn doctor_reports_the_engine() {
    let out = run(&["doctor"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("API 1."), "{}", stdout(&out));
}

#[test]
fn doctor_without_an_engine_says_so_in_one_line() {
    let out = run(
        &["doctor"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: no Docker engine answers at unix:///nonexistent/docker.sock"),
        "{err}"
    );
}
