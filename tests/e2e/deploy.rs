//! `cargo glci environments` and `cargo glci resource-group` over real runs: a deployment in
//! the run's summary, the environment listed, its manual `on_stop` job played to stop it
//! (needs the Docker engine and the fixture images).

use std::path::Path;

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

const PIPELINE: &str = r#"default:
  image: glci-fixture/busybox:latest
deploy:
  resource_group: production
  environment:
    name: production
    url: https://shop.example.com
    on_stop: teardown
  script: [echo "deploying to $CI_ENVIRONMENT_NAME ($CI_ENVIRONMENT_TIER)"]
teardown:
  environment:
    name: production
    action: stop
  when: manual
  script: [echo down]
"#;

fn glci(dir: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    run(
        glci_bin!(),
        dir,
        args,
        &[("GLCI_HOME", home.to_str().unwrap())],
    )
}

fn all(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

#[test]
fn a_deployment_is_summarized_listed_and_stopped_by_its_manual_job() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let dir = project.path();

    let out = glci(dir, home.path(), &["environments"]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        stdout(&out).starts_with("no environment of "),
        "{}",
        all(&out)
    );

    let out = glci(dir, home.path(), &["resource-group", "production"]);
    assert_eq!(stdout(&out), "production: process mode unordered\n");
    let out = glci(
        dir,
        home.path(),
        &[
            "resource-group",
            "production",
            "--process-mode",
            "oldest_first",
        ],
    );
    assert_eq!(stdout(&out), "production: process mode oldest_first\n");
    let out = glci(
        dir,
        home.path(),
        &["resource-group", "production", "--process-mode", "first"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown process mode \"first\""),
        "{}",
        all(&out)
    );

    let out = glci(dir, home.path(), &["run"]);
    assert!(out.status.success(), "{}", all(&out));
    let text = all(&out);
    assert!(
        text.contains("deploying to production (production)"),
        "{text}"
    );
    assert!(
        text.contains(
            "deploy: deployed to production at https://shop.example.com; stop it with `cargo glci run teardown`"
        ),
        "{text}"
    );

    let out = glci(dir, home.path(), &["environments"]);
    let text = stdout(&out);
    assert!(
        text.contains("production   production   available  deploy of pipeline #1 (job #"),
        "{text}"
    );
    assert!(text.contains("url: https://shop.example.com"), "{text}");
    assert!(
        text.contains("stop with: cargo glci run teardown"),
        "{text}"
    );

    let out = glci(dir, home.path(), &["run", "teardown"]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        all(&out).contains("teardown: stopped production"),
        "{}",
        all(&out)
    );
    let out = glci(dir, home.path(), &["environments"]);
    let text = stdout(&out);
    assert!(
        text.contains("production   production   stopped    deploy of pipeline #1"),
        "{text}"
    );
    assert!(!text.contains("stop with"), "{text}");
}
