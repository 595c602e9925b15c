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

/// Removes from `cmd` what cargo set for this test process about the package under test
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...), for a `cargo` (or a program running cargo) the
/// test starts in a user's crate. Build scripts watch some of them (ring's watches
/// `CARGO_MANIFEST_DIR`): inherited, they made every such build rebuild ring and everything
/// above it up to glci-test in the shared target directory, and the next build of the
/// workspace rebuild it all again (45 s each way on two cores).
pub fn clear_package_env(cmd: &mut Command) -> &mut Command {
    const PREFIXES: [&str; 5] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
    ];
    const NAMES: [&str; 3] = ["CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR", "OUT_DIR"];
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The ID of the engine `docker` (the CLI, with this process's environment) talks to: what a
/// job's own `docker info` prints when it reached the same engine.
pub fn docker_engine_id() -> String {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ID}}"])
        .output()
        .expect("docker info");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!id.is_empty(), "docker info printed no engine ID");
    id
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A throw-away git repository holding a copy of `fixtures/<fixture>` (or just `files`),
/// committed on `main`, with an `origin` remote naming `glci/<name>`.
pub fn temp_project(fixture: Option<&str>, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(fixture) = fixture {
        copy_dir(&self::fixture(fixture), dir.path());
    }
    for (path, content) in files {
        let path = dir.path().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(path, content).expect("write file");
    }
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "--allow-empty", "-m", "project"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example.com/glci/demo.git",
    ]);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("create dir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}
