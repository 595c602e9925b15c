//! `cargo glci plan`, `lint` and `config` on real temporary repositories.

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

#[test]
fn plan_lists_stages_and_jobs_of_the_demo_project() {
    let project = temp_project(Some("demo"), &[]);
    let out = run(glci_bin!(), project.path(), &["plan"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("Pipeline for push to branch main\n"),
        "{text}"
    );
    assert!(text.contains("stage build\n  build "), "{text}");
    assert!(
        text.contains("unit-tests  on_success  needs: [build]"),
        "{text}"
    );
}

#[test]
fn plan_json_has_the_documented_shape() {
    let project = temp_project(Some("demo"), &[]);
    let out = run(glci_bin!(), project.path(), &["plan", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["created"], true);
    assert_eq!(v["variables"]["CI_PROJECT_PATH"], "glci/demo");
    assert_eq!(v["variables"]["GREETING"], "hello from glci");
    let build = &v["jobs"][0];
    assert_eq!(build["name"], "build");
    assert_eq!(build["stage"], "build");
    assert_eq!(build["image"], "glci-fixture/busybox:latest");
    assert_eq!(build["needs"], serde_json::Value::Null);
    let unit = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "unit-tests")
        .unwrap();
    assert_eq!(unit["needs"], serde_json::json!(["build"]));
}

#[test]
fn lint_reports_file_line_col_and_exits_1() {
    let project = temp_project(
        None,
        &[(".gitlab-ci.yml", "job:\n  script: [x]\n  bogus: 1\n")],
    );
    let out = run(glci_bin!(), project.path(), &["lint"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        ".gitlab-ci.yml:3:3: jobs:job config contains unknown keys: bogus\n"
    );

    let ok = temp_project(None, &[(".gitlab-ci.yml", "job:\n  script: [x]\n")]);
    let out = run(glci_bin!(), ok.path(), &["lint"], &[]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), ".gitlab-ci.yml: valid\n");
}

#[test]
fn plan_of_a_broken_file_exits_1_with_the_error_on_stderr_and_in_json() {
    let project = temp_project(None, &[(".gitlab-ci.yml", "job: [unclosed\n")]);
    let out = run(glci_bin!(), project.path(), &["plan", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with(".gitlab-ci.yml:"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["errors"][0].as_str().unwrap(),
        err.lines().next().unwrap()
    );
}

#[test]
fn config_prints_the_merged_configuration() {
    let project = temp_project(
        None,
        &[(".gitlab-ci.yml", ".base:\n  image: alpine\n  script: [echo base]\njob:\n  extends: .base\n  stage: test\n")],
    );
    let out = run(glci_bin!(), project.path(), &["config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = stdout(&out);
    assert!(yaml.contains("job:\n"), "{yaml}");
    assert!(yaml.contains("image: alpine"), "{yaml}");
    // Like GitLab's merged YAML: the hidden job is gone, `extends` stays as written.
    assert!(!yaml.contains(".base:"), "{yaml}");
}

#[test]
fn outside_a_repository_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".gitlab-ci.yml"), "job:\n  script: x\n").unwrap();
    let out = run(glci_bin!(), dir.path(), &["plan"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.to_lowercase().contains("git"), "{err}");
}

/// Serves one file at `path` on 127.0.0.1, counting requests; returns the base URL.
fn serve_one(
    path: &'static str,
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let found = request.split_whitespace().nth(1) == Some(path);
            let (status, body) = if found {
                ("200 OK", body)
            } else {
                ("404 Not Found", "")
            };
            let _ = write!(
                &stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, hits)
}

#[test]
fn plan_fetches_a_template_at_the_chosen_release_then_plans_offline() {
    let (base, hits) = serve_one(
        "/v1/templates/Lint.gitlab-ci.yml",
        "lint:\n  script: [lint]\n",
    );
    let project = temp_project(
        None,
        &[(
            ".gitlab-ci.yml",
            "include:\n  - template: Lint.gitlab-ci.yml\nbuild: {script: [make]}\n",
        )],
    );
    let home = tempfile::tempdir().unwrap();
    let home_env = [("GLCI_HOME", home.path().to_str().unwrap())];
    let url = format!("{base}/{{ref}}/templates");
    let args = |extra: &[&'static str]| {
        let mut args = vec!["plan", "--template-url", &url, "--template-ref", "v1"];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let plan = |extra: &[&'static str]| {
        let args = args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(glci_bin!(), project.path(), &args, &home_env)
    };
    // Loopback is refused unless allowed, as for `include:remote`.
    let refused = plan(&[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("--allow-private-includes"),
        "{}",
        stderr(&refused)
    );
    let out = plan(&["--allow-private-includes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("lint"), "{}", stdout(&out));
    let offline = plan(&["--offline"]);
    assert!(offline.status.success(), "{}", stderr(&offline));
    assert_eq!(stdout(&offline), stdout(&out));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
