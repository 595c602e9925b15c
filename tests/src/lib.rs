//! Support for the end-to-end tests: the freshly built `cargo-glci` binary and the fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The `cargo-glci` binary under test. Expands in the test crate, where cargo provides the
/// path of the freshly built binary.
#[macro_export]
macro_rules! glci_bin {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_cargo-glci"))
    };
}

/// Runs the binary `bin` (see [`glci_bin!`]) with `args` in `dir`, with extra environment.
pub fn run(bin: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
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
