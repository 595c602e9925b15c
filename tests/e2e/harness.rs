//! Jobs as tests, end to end: temporary real projects (git repository + `.gitlab-ci.yml` on
//! the offline fixture images) run with `cargo glci test`, with `cargo test` on a
//! `glci_test::main!()` target and with `cargo nextest run` on it. Counts are read from the
//! real output; snapshots are caught, accepted and matched; masked values never reach them;
//! no Docker object of a run survives it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use glci_e2e::{clear_package_env, glci_bin, repo_root, stderr, stdout, temp_project};

const SECRET: &str = "hunter2-e2e-secret";

/// build → unit (needs build); flaky fails but is allowed; deploy is manual; release only on
/// tags. `build` prints the masked secret.
const CI: &str = r#"
default:
  image: glci-fixture/busybox:latest
stages: [build, test, deploy]
build:
  stage: build
  script:
    - echo "version 1"
    - echo "secret is $SECRET"
unit:
  stage: test
  needs: [build]
  script: [echo unit ok]
flaky:
  stage: test
  allow_failure: true
  script: [echo flaky, "exit 4"]
deploy:
  stage: deploy
  when: manual
  script: [echo deploying]
release:
  stage: deploy
  rules: [{if: $CI_COMMIT_TAG}]
  script: [echo releasing]
"#;

/// Runs the binary in `dir`; returns its output and pid (the owner of its Docker objects).
fn glci(dir: &Path, args: &[&str]) -> (Output, u32) {
    let child = Command::new(glci_bin!())
        .args(args)
        .current_dir(dir)
        .env_remove("CI")
        .env_remove("INSTA_UPDATE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo-glci");
    let pid = child.id();
    (child.wait_with_output().expect("wait cargo-glci"), pid)
}

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn docker_ids(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// No container or network of the owner `label=value` is left.
fn assert_nothing_left(label: &str) {
    let filter = format!("label={label}");
    assert_eq!(
        docker_ids(&["ps", "-aq", "--filter", &filter]),
        "",
        "containers left ({label})"
    );
    assert_eq!(
        docker_ids(&["network", "ls", "-q", "--filter", &filter]),
        "",
        "networks left ({label})"
    );
}

/// The owner ids (`glci-<owner>-job-N`) that appear in a log.
fn owners(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("Running on glci-") {
        let rest = &text[i + "Running on glci-".len()..];
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if !id.is_empty() && !found.contains(&id) {
            found.push(id);
        }
    }
    found
}

/// Accepts every pending snapshot of `dir`, as `cargo insta accept` does (a rename).
fn accept(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("snapshot dir").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "new") {
            std::fs::rename(&path, path.with_extension("")).expect("accept snapshot");
            n += 1;
        }
    }
    n
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn cargo_glci_test_runs_jobs_as_tests_with_snapshots() {
    let project = temp_project(None, &[(".gitlab-ci.yml", CI)]);
    let dir = project.path();
    let snaps = dir.join("tests/snapshots");
    let flags = ["test", "--snapshot", "build", "--masked-var"];
    let secret = format!("SECRET={SECRET}");

    // --list: nextest's format, no Docker, manual jobs listed; `--ignored` lists only them.
    let (list, _) = glci(dir, &["test", "--", "--list"]);
    assert_eq!(
        stdout(&list),
        "build: test\nunit: test\nflaky: test\ndeploy: test\n",
        "{}",
        stderr(&list)
    );
    let (ignored, _) = glci(dir, &["test", "--", "--list", "--ignored"]);
    assert_eq!(stdout(&ignored), "deploy: test\n");

    // First run: no snapshot yet, so `build` fails; flaky passes (allowed), deploy ignored.
    let (first, pid) = glci(
        dir,
        &[&flags[..], &[secret.as_str(), "--", "--nocapture"]].concat(),
    );
    let text = both(&first);
    assert_eq!(first.status.code(), Some(101), "{text}");
    assert!(
        text.contains("test result: FAILED. 2 passed; 1 failed; 1 ignored"),
        "{text}"
    );
    assert!(
        text.contains("job `flaky` failed: exit code 4 (script_failure) (allowed to fail)"),
        "{text}"
    );
    assert!(text.contains("does not match its snapshot"), "{text}");
    assert!(!text.contains(SECRET), "the masked value leaked: {text}");
    assert_nothing_left(&format!("io.glci.owner-pid={pid}"));

    let pending = read(&snaps.join("glci-build.snap.new"));
    assert!(pending.contains("version 1"), "{pending}");
    assert!(pending.contains("secret is [MASKED]"), "{pending}");
    assert!(!pending.contains(SECRET), "{pending}");
    assert_eq!(accept(&snaps), 1);

    // Accepted: the same run passes, even though ids, times and names differ.
    let (second, pid) = glci(dir, &[&flags[..], &[secret.as_str()]].concat());
    let text = both(&second);
    assert!(second.status.success(), "{text}");
    assert!(
        text.contains("test result: ok. 3 passed; 0 failed; 1 ignored"),
        "{text}"
    );
    assert_nothing_left(&format!("io.glci.owner-pid={pid}"));

    // A changed job output (uncommitted: the working tree is what runs) is a mismatch.
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        CI.replace("version 1", "version 2"),
    )
    .unwrap();
    let (changed, _) = glci(
        dir,
        &[&flags[..], &[secret.as_str(), "--", "build", "--exact"]].concat(),
    );
    let text = both(&changed);
    assert!(
        text.contains(
            "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 3 filtered out"
        ),
        "{text}"
    );
    assert!(
        text.contains("+version 2") || text.contains("version 2"),
        "{text}"
    );
    assert!(read(&snaps.join("glci-build.snap.new")).contains("version 2"));

    // Manual jobs run when asked.
    let (manual, _) = glci(dir, &["test", "--", "--ignored"]);
    let text = both(&manual);
    assert!(
        text.contains("test result: ok. 1 passed; 0 failed; 0 ignored"),
        "{text}"
    );
}

#[test]
fn failing_jobs_show_their_log_tail_and_block_what_needs_them() {
    let ci = r#"
default:
  image: glci-fixture/busybox:latest
stages: [build, test]
build:
  stage: build
  script:
    - echo compiling
    - 'echo "error: it broke"'
    - exit 3
unit:
  stage: test
  needs: [build]
  script: [echo never]
cleanup:
  stage: test
  when: on_failure
  script: [echo cleaning]
"#;
    let project = temp_project(None, &[(".gitlab-ci.yml", ci)]);
    // One test thread: the upstream job must still run (on the harness's runtime).
    let (out, pid) = glci(project.path(), &["test", "--", "--test-threads", "1"]);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(101), "{text}");
    assert!(
        text.contains("test result: FAILED. 1 passed; 2 failed; 0 ignored"),
        "{text}"
    );
    assert!(
        text.contains("job `build` failed: exit code 3 (script_failure)"),
        "{text}"
    );
    assert!(text.contains("error: it broke"), "{text}");
    assert!(text.contains("full log: "), "{text}");
    assert!(
        text.contains("not run: needs `build`, which failed"),
        "{text}"
    );
    assert_nothing_left(&format!("io.glci.owner-pid={pid}"));
}

/// Hand-written tests on the Rust API: the plan of a tag in one line.
const PLAN_TEST: &str = r#"use glci_test::harness::Pipeline;

#[test]
fn tag_pipeline() {
    glci_test::assert_plan_snapshot!(Pipeline::new(env!("CARGO_MANIFEST_DIR")).tag("v1.0.0"));
}

#[test]
fn plan_api() {
    let plan = Pipeline::new(env!("CARGO_MANIFEST_DIR")).plan().unwrap();
    assert_eq!(plan.jobs(), ["build", "unit", "flaky", "deploy"]);
}
"#;

/// The manifest of a user's crate named `name`: a `main!` test target `ci`, depending on this
/// checkout's glci-test and sharing its target directory (so nothing is rebuilt but the tiny
/// crate).
///
/// Every test needs a name of its own. Cargo names a path package's test binary after the
/// package and its path relative to its workspace root, which is the same for every temporary
/// crate, so two tests building one name at once overwrite each other's binary, and one test
/// then runs a binary with the other's (deleted) project directory compiled in.
///
/// Cargo unifies features per build: in the glci workspace, cargo-glci's `tracing-subscriber`
/// turns on features of crates glci-test depends on too (`regex-automata`, `log`,
/// `tracing-core`). A crate depending on glci-test alone would build those, and everything
/// above them up to glci-test, a second time (minutes on two cores), so this one names the
/// workspace's `tracing-subscriber` line as an (unused) dev-dependency.
pub(crate) fn user_crate_manifest(name: &str) -> String {
    let glci_test = repo_root().join("glci-test");
    let workspace = read(&repo_root().join("Cargo.toml"));
    let tracing_subscriber = workspace
        .lines()
        .find(|l| l.starts_with("tracing-subscriber ="))
        .expect("the workspace Cargo.toml names tracing-subscriber");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[workspace]

[dev-dependencies]
glci-test = {{ path = "{}" }}
{tracing_subscriber}

[[test]]
name = "ci"
harness = false

# The same profile as the glci workspace, so its built dependencies are reused.
[profile.dev]
debug = "line-tables-only"
[profile.dev.package."*"]
opt-level = 1
debug = "line-tables-only"
[profile.dev.package.glci-test]
opt-level = 0
"#,
        glci_test.display()
    )
}

fn user_crate() -> tempfile::TempDir {
    let manifest = user_crate_manifest("demo-ci");
    let test = format!(
        "glci_test::main! {{\n    snapshots = [\"build\"],\n    masked_vars = [(\"SECRET\", \"{SECRET}\")],\n}}\n"
    );
    let lock = read(&repo_root().join("Cargo.lock"));
    temp_project(
        None,
        &[
            (".gitlab-ci.yml", CI),
            ("Cargo.toml", &manifest),
            ("Cargo.lock", &lock),
            ("src/lib.rs", ""),
            ("tests/ci.rs", &test),
            ("tests/plan.rs", PLAN_TEST),
        ],
    )
}

pub(crate) fn target_dir() -> PathBuf {
    // …/target/debug/cargo-glci → …/target
    glci_bin!()
        .parent()
        .and_then(Path::parent)
        .expect("binary under <target>/debug")
        .to_path_buf()
}

fn cargo(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    clear_package_env(&mut cmd)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("CI")
        .env_remove("INSTA_UPDATE")
        .env_remove("INSTA_WORKSPACE_ROOT")
        .env_remove("NEXTEST")
        .env_remove("RUST_BACKTRACE")
        // Under nextest the tests share a session through the glci daemon: let it go soon.
        .env("GLCI_DAEMON_IDLE_TIMEOUT", "10");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run cargo")
}

#[test]
fn main_macro_target_runs_under_cargo_test_and_nextest() {
    let project = user_crate();
    let dir = project.path();
    let snaps = dir.join("tests/snapshots");

    // Listing follows nextest's rules exactly: `<name>: test` lines and nothing else.
    let list = cargo(
        dir,
        &[
            "test",
            "--offline",
            "-q",
            "--test",
            "ci",
            "--",
            "--list",
            "--format",
            "terse",
        ],
        &[],
    );
    assert_eq!(
        stdout(&list),
        "build: test\nunit: test\nflaky: test\ndeploy: test\n",
        "{}",
        stderr(&list)
    );
    // The event from the environment: a tag pipeline has `release`.
    let tag = cargo(
        dir,
        &["test", "--offline", "-q", "--test", "ci", "--", "--list"],
        &[("GLCI_TAG", "v1.0.0")],
    );
    assert!(stdout(&tag).contains("release: test\n"), "{}", both(&tag));

    // cargo test: the new snapshot fails and is pending, then accepted, then passes.
    let first = cargo(
        dir,
        &["test", "--offline", "--test", "ci", "--", "--nocapture"],
        &[],
    );
    let text = both(&first);
    assert!(
        text.contains("test result: FAILED. 2 passed; 1 failed; 1 ignored"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
    let pending = read(&snaps.join("glci-build.snap.new"));
    assert!(
        pending.contains("secret is [MASKED]") && !pending.contains(SECRET),
        "{pending}"
    );
    for owner in owners(&text) {
        assert_nothing_left(&format!("io.glci.owner={owner}"));
    }
    assert_eq!(accept(&snaps), 1);
    let second = cargo(dir, &["test", "--offline", "--test", "ci"], &[]);
    let text = both(&second);
    assert!(
        text.contains("test result: ok. 3 passed; 0 failed; 1 ignored"),
        "{text}"
    );

    // In CI a mismatch fails and nothing is written.
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        CI.replace("version 1", "version 2"),
    )
    .unwrap();
    let ci = cargo(
        dir,
        &["test", "--offline", "--test", "ci", "--", "build"],
        &[("CI", "true")],
    );
    let text = both(&ci);
    assert!(
        text.contains("test result: FAILED. 0 passed; 1 failed"),
        "{text}"
    );
    assert!(!snaps.join("glci-build.snap.new").exists(), "{text}");
    std::fs::write(dir.join(".gitlab-ci.yml"), CI).unwrap();

    // The plan snapshot of a hand-written test lands in the user's tests/snapshots.
    let plan = cargo(dir, &["test", "--offline", "--test", "plan"], &[]);
    let text = both(&plan);
    assert!(
        text.contains("test result: FAILED. 1 passed; 1 failed"),
        "{text}"
    );
    let plan_snap = read(&snaps.join("plan__tag_pipeline.snap.new"));
    assert!(
        plan_snap.contains("deploy / release  on_success"),
        "{plan_snap}"
    );
    assert_eq!(accept(&snaps), 1);
    let plan = cargo(dir, &["test", "--offline", "--test", "plan"], &[]);
    assert!(plan.status.success(), "{}", both(&plan));

    // nextest: one process per test, one session for the run (in the glci daemon).
    let nextest = cargo(
        dir,
        &[
            "nextest",
            "run",
            "--offline",
            "--no-fail-fast",
            "--test",
            "ci",
        ],
        &[],
    );
    let text = both(&nextest);
    assert!(nextest.status.success(), "{text}");
    assert!(text.contains("3 tests run: 3 passed"), "{text}");
    assert!(text.contains("1 skipped"), "{text}");
    let manual = cargo(
        dir,
        &[
            "nextest",
            "run",
            "--offline",
            "--test",
            "ci",
            "--run-ignored",
            "only",
        ],
        &[],
    );
    let text = both(&manual);
    assert!(text.contains("1 test run: 1 passed"), "{text}");
}

/// A parent-child pipeline: `--list` (no Docker) shows the child's jobs as
/// `<trigger>/<job>` after their trigger job; a child generated at run time is listed as its
/// trigger alone, with a note why.
#[test]
fn list_shows_the_jobs_of_child_pipelines() {
    let project = temp_project(
        None,
        &[
            (
                ".gitlab-ci.yml",
                "build: {script: [x]}\n\
                 child:\n  trigger:\n    include: ci/child.yml\n\
                 dynamic:\n  trigger:\n    include: [{artifact: gen.yml, job: build}]\n",
            ),
            (
                "ci/child.yml",
                "unit: {script: [x]}\nship: {script: [x], when: manual}\n",
            ),
        ],
    );
    let (list, _) = glci(project.path(), &["test", "--", "--list"]);
    assert_eq!(
        stdout(&list),
        "build: test\nchild: test\nchild/unit: test\nchild/ship: test\ndynamic: test\n",
        "{}",
        stderr(&list)
    );
    assert!(
        stderr(&list)
            .contains("trigger job `dynamic`: its child pipeline is generated at run time"),
        "{}",
        stderr(&list)
    );
}

/// `cargo glci test` runs a child pipeline's jobs as trials: a failing child job fails its
/// trial, a child job after it fails as "not run: needs …" (judged against the child's own
/// plan), and the depending trigger fails.
#[test]
fn child_jobs_run_as_trials() {
    let project = temp_project(
        None,
        &[
            (
                ".gitlab-ci.yml",
                "child:\n  trigger:\n    include: ci/child.yml\n    strategy: depend\n",
            ),
            (
                "ci/child.yml",
                "default: {image: glci-fixture/busybox:latest}\n\
                 stages: [build, test]\n\
                 broken: {stage: build, script: [echo breaking, exit 3]}\n\
                 after: {stage: test, script: [echo after]}\n",
            ),
        ],
    );
    let (out, _) = glci(project.path(), &["test", "--", "--test-threads", "1"]);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(101), "{text}");
    assert!(
        text.contains("test result: FAILED. 0 passed; 3 failed"),
        "{text}"
    );
    assert!(text.contains("job `broken` failed: exit code 3"), "{text}");
    assert!(
        text.contains("not run: needs `broken`, which failed"),
        "{text}"
    );
}
