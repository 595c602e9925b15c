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

/// A job name is the user's text: escape sequences in it must not reach the terminal (or a
/// file the output is redirected to) raw, in the plan, in lint errors or anywhere else.
#[test]
fn escape_sequences_in_job_names_are_printed_escaped() {
    let valid = "\"evil\\e]0;pwned\\a\": {script: x}\n";
    let invalid = "\"worse\\e[2J\": {script: x, bogus: 1}\n";
    for (ci, args, expected) in [
        (valid, "plan", "evil\\u{1b}]0;pwned\\u{7}"),
        (
            invalid,
            "lint",
            "jobs:worse\\u{1b}[2j config contains unknown keys",
        ),
        (
            invalid,
            "plan",
            "jobs:worse\\u{1b}[2j config contains unknown keys",
        ),
    ] {
        let project = glci_e2e::temp_project(None, &[(".gitlab-ci.yml", ci)]);
        let out = glci_e2e::run(glci_bin!(), project.path(), &["glci", args], &[]);
        let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(
            !all.iter().any(|b| *b == 0x1b || *b == 0x07),
            "{args} printed raw control characters: {text:?}"
        );
        assert!(text.contains(expected), "{args}: {text}");
    }
}

/// Masked values stay out of `ps`: from a file or from `GLCI_MASKED_VAR_<KEY>`; values GitLab
/// would not mask are refused with the variable's name and never its value.
#[test]
fn masked_variables_come_from_files_and_the_environment_and_must_be_maskable() {
    let ci = "j:\n  script: x\n  rules:\n    - if: $TOKEN == \"s3cret-t0ken-value\"\n";
    let project = glci_e2e::temp_project(None, &[(".gitlab-ci.yml", ci)]);
    let dir = project.path();
    let file = dir.join("secrets.env");
    std::fs::write(&file, "# deploy secrets\n\nTOKEN=s3cret-t0ken-value\n").unwrap();
    let file = file.to_string_lossy().into_owned();

    let plan = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["glci", "plan"];
        all.extend_from_slice(args);
        glci_e2e::run(glci_bin!(), dir, &all, env)
    };
    let from_file = plan(&["--masked-var-file", &file], &[]);
    assert!(
        from_file.status.success(),
        "{}",
        glci_e2e::stderr(&from_file)
    );
    assert!(
        stdout(&from_file).contains("  j  "),
        "{}",
        stdout(&from_file)
    );
    let from_env = plan(&[], &[("GLCI_MASKED_VAR_TOKEN", "s3cret-t0ken-value")]);
    assert!(stdout(&from_env).contains("  j  "), "{}", stdout(&from_env));
    let without = plan(&[], &[]);
    assert!(!stdout(&without).contains("  j  "), "{}", stdout(&without));

    let short = plan(&["--masked-var", "SHORT=e"], &[]);
    assert_eq!(short.status.code(), Some(1));
    assert_eq!(
        glci_e2e::stderr(&short),
        "masked variable `SHORT`: GitLab masks only values of at least 8 characters (this one has 1)\n"
    );
    let spaced = plan(&[], &[("GLCI_MASKED_VAR_PW", "hello world 42")]);
    assert_eq!(spaced.status.code(), Some(1));
    assert!(!glci_e2e::stderr(&spaced).contains("hello world"));

    std::fs::write(dir.join("bad.env"), "NOT A LINE\n").unwrap();
    let bad = plan(&["--masked-var-file", "bad.env"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(glci_e2e::stderr(&bad).contains("bad.env:1: expected KEY=VALUE"));
}
