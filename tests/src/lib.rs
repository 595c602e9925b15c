//! Support for the end-to-end tests: the freshly built `cargo-glci` binary and the fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root (where `fixtures/` lives).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
}

/// Path of a fixture under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("fixtures").join(rel)
}

/// The `cargo-glci` binary, built once per test process from the current sources.
///
/// Integration tests of this package do not get `CARGO_BIN_EXE_cargo-glci` (the binary lives in
/// another package), so we ask cargo to build it, which is a no-op when it is up to date, and
/// read the executable's path from cargo's JSON messages.
pub fn glci_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "cargo-glci",
                "--bin",
                "cargo-glci",
                "--message-format=json",
            ])
            .current_dir(repo_root())
            .output()
            .expect("run cargo build for cargo-glci");
        assert!(
            out.status.success(),
            "building cargo-glci failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "cargo-glci")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no cargo-glci executable")
    })
}

/// Runs `cargo-glci ARGS` in `dir` with extra environment.
pub fn glci(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(glci_bin());
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run cargo-glci")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
