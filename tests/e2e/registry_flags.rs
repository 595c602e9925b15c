//! `cargo glci run` with the registry flags: `--no-registry` leaves jobs without any
//! `CI_REGISTRY*` variable (as GitLab without a registry), `--registry` points them at a real
//! registry with the given login, and by default they get glci's own, on the bridge (TLS).

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

const PRINT: &str = r#"print:
  image: glci-fixture/busybox:latest
  variables:
    GIT_STRATEGY: none
  script:
    - env | grep '^CI_REGISTRY' | sort || true
    - echo "password=$CI_REGISTRY_PASSWORD"
    - echo done-printing
"#;

fn run_with(flags: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", PRINT)]);
    let mut args = vec!["run"];
    args.extend(flags);
    let out = run(
        glci_bin!(),
        project.path(),
        &args,
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.contains("done-printing"), "{text}");
    text
}

#[test]
fn no_registry_leaves_no_ci_registry_variable() {
    let text = run_with(&["--no-registry"]);
    assert!(!text.contains("CI_REGISTRY="), "{text}");
    assert!(text.contains("password=\n"), "{text}");

    // Without the flag there is one, on the bridge, not loopback.
    let text = run_with(&[]);
    let registry = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once("CI_REGISTRY=")
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_else(|| panic!("no CI_REGISTRY:\n{text}"));
    assert!(!registry.starts_with("127.0.0.1"), "{registry}");
    assert!(text.contains("CI_REGISTRY_USER=gitlab-ci-token"), "{text}");
}

#[test]
fn registry_points_jobs_at_a_real_registry_with_its_login() {
    let text = run_with(&[
        "--registry",
        "https://registry.example:5000/",
        "--registry-user",
        "robot",
        "--registry-password",
        "s3cret-registry-pass",
    ]);
    assert!(text.contains("CI_REGISTRY=registry.example:5000"), "{text}");
    assert!(
        text.contains("CI_REGISTRY_IMAGE=registry.example:5000/glci/"),
        "{text}"
    );
    assert!(text.contains("CI_REGISTRY_USER=robot"), "{text}");
    // A masked variable, as GitLab's CI_REGISTRY_PASSWORD.
    assert!(!text.contains("s3cret-registry-pass"), "{text}");
    assert!(text.contains("password=[MASKED]"), "{text}");
}

#[test]
fn a_registry_with_a_path_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", PRINT)]);
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "--registry", "https://registry.example/group"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("registry `https://registry.example/group` is not `host[:port]`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_push_through_mirror_that_is_not_an_http_url_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", PRINT)]);
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "--push-through", "registry.example:5000"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("--push-through `registry.example:5000` is not an http:// or https:// URL"),
        "{}",
        stderr(&out)
    );
}
