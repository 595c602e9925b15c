//! `cargo glci variables` and environment files (`--env-file`, `.glci.env`) through the real
//! binary, without Docker.

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

const PIPELINE: &str = r#"variables:
  GREETING: hello
  DEPLOY_ENV: dev
  URL: "https://$DEPLOY_ENV.example.com"
workflow:
  rules:
    - if: $CI_COMMIT_BRANCH == "main"
      variables:
        DEPLOY_ENV: from-workflow
    - when: always
build:
  stage: build
  script: [echo]
  artifacts:
    reports:
      dotenv: build.env
deploy:
  stage: deploy
  variables:
    GREETING: hi
  needs: [build]
  rules:
    - if: $CI_COMMIT_TAG
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
      variables:
        DEPLOY_ENV: staging
  script: [echo]
"#;

/// The lines of `text` under the group header `header` (up to the next blank line).
fn group<'t>(text: &'t str, header: &str) -> Vec<&'t str> {
    text.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn variables_name_the_matched_rule_and_what_was_overridden() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(
        None,
        &[
            (".gitlab-ci.yml", PIPELINE),
            (".gitignore", ".glci.env\n"),
            (
                ".glci.env",
                "TOKEN=abcdefgh12345 # masked\nPLAIN=from-file\n",
            ),
        ],
    );
    let env = [("GLCI_HOME", home.path().to_str().unwrap())];
    let out = run(
        glci_bin!(),
        project.path(),
        &["variables", "deploy", "--var", "PLAIN=from-var"],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let text = stdout(&out);
    let rule = group(
        &text,
        "rules[1] (if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH)",
    );
    assert_eq!(rule, ["  DEPLOY_ENV=staging"], "{text}");
    assert_eq!(group(&text, "job variables"), ["  GREETING=hi"], "{text}");
    // Overridden definitions only with --all; expansion uses the winning value.
    assert_eq!(
        group(&text, "global variables"),
        ["  URL=https://$DEPLOY_ENV.example.com  → https://staging.example.com"],
        "{text}"
    );
    assert_eq!(
        group(&text, "project settings"),
        ["  TOKEN=[MASKED]  (from .glci.env:1)"],
        "{text}"
    );
    assert_eq!(
        group(&text, "pipeline variables"),
        ["  PLAIN=from-var"],
        "{text}"
    );
    assert!(!text.contains("abcdefgh12345"), "{text}");
    assert!(
        text.contains("dotenv of `build`: not known"),
        "no run yet: {text}"
    );
    assert!(group(&text, "predefined (job)").contains(&"  CI_JOB_NAME=deploy"));
    assert!(group(&text, "predefined").contains(&"  CI_COMMIT_BRANCH=main"));

    let out = run(
        glci_bin!(),
        project.path(),
        &["variables", "deploy", "--all", "--var", "PLAIN=from-var"],
        &env,
    );
    let text = stdout(&out);
    let global = group(&text, "global variables");
    assert_eq!(
        global[..2],
        [
            "  GREETING=hello  (overridden by job variables)",
            "  DEPLOY_ENV=dev  (overridden by rules[1] (if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH))",
        ],
        "{text}"
    );
    assert_eq!(
        group(&text, "workflow:rules[0] (if: $CI_COMMIT_BRANCH == \"main\")"),
        ["  DEPLOY_ENV=from-workflow  (overridden by rules[1] (if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH))"],
        "{text}"
    );
    assert!(
        text.contains("  PLAIN=from-file  (overridden by pipeline variables)  (from .glci.env:2)"),
        "{text}"
    );

    // On a tag the first rule matches: no rule variables, the workflow's value wins... and
    // the workflow rule for `main` does not match either.
    let out = run(
        glci_bin!(),
        project.path(),
        &["variables", "deploy", "--tag", "v1", "--json"],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deploy_env = v["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "DEPLOY_ENV")
        .unwrap();
    assert_eq!(deploy_env["value"], "dev");
    assert_eq!(deploy_env["origin"], "global variables");
    let token = v["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "TOKEN")
        .unwrap();
    assert_eq!(token["value"], "[MASKED]");
    assert_eq!(token["source"], ".glci.env:1");
}

#[test]
fn variables_of_an_unknown_job_exit_1_naming_the_jobs() {
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let out = run(glci_bin!(), project.path(), &["variables", "nope"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: no job `nope` in this pipeline (jobs: build, deploy)\n"
    );
    // A job the event leaves out says why.
    let out = run(
        glci_bin!(),
        project.path(),
        &["variables", "deploy", "--branch", "feature"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: job `deploy` is not in this pipeline: no rule in `rules` matched\n"
    );
}

#[test]
fn env_files_follow_gitlab_masking_rules_and_errors_name_file_and_line() {
    let project = temp_project(
        None,
        &[
            (".gitlab-ci.yml", PIPELINE),
            ("dev.env", "# dev settings\nAPI_KEY=short # masked\n"),
            ("ok.env", "export API_KEY=long-enough-key # masked\n"),
            (".glci.env", "API_KEY=from-project\n"),
        ],
    );
    // A value GitLab would refuse to mask is refused, naming the file and line.
    let out = run(
        glci_bin!(),
        project.path(),
        &["plan", "--env-file", "dev.env"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "error: dev.env:2: masked variable `API_KEY`: GitLab masks only values of at least 8 characters (this one has 5)"
        ),
        "{}",
        stderr(&out)
    );
    // `.glci.env` is not ignored by git here: said once, on stderr.
    assert!(
        stderr(&out).contains("warning: .glci.env is not ignored by git"),
        "{}",
        stderr(&out)
    );
    // --env-file sits over .glci.env; the value is visible to rules like a settings variable.
    let out = run(
        glci_bin!(),
        project.path(),
        &[
            "variables",
            "build",
            "--env-file",
            "ok.env",
            "--json",
            "--all",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "API_KEY")
        .unwrap();
    assert_eq!(key["value"], "[MASKED]");
    assert_eq!(key["masked"], true);
    assert_eq!(key["source"], "ok.env:1");
    // Without the project file, nothing of it is read.
    let out = run(
        glci_bin!(),
        project.path(),
        &["variables", "build", "--no-project-env-file", "--json"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !v["variables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["key"] == "API_KEY"),
        "{v}"
    );
}
