//! What real configurations need from planning (issue 15): explicit `null` on job keywords,
//! list anchors inside composable lists, `only`/`except` against the ref git gave, and the
//! instance variables from `origin`. Each case plans a real temporary git repository through
//! the public API (`pipeline::plan`), as `cargo glci plan` does.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use glci_test::pipeline::{self as pipeline_api, PipelineOptions, Planned};
use glci_test::plan::{Event, PipelineSource};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A repository on `branch` with `.gitlab-ci.yml` committed and `origin` at `remote`.
fn repo(branch: &str, remote: &str, config: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = tmp.path().join("project");
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
    git(&dir, &["init", "-q", "-b", branch]);
    git(&dir, &["config", "commit.gpgsign", "false"]);
    git(&dir, &["remote", "add", "origin", remote]);
    write(&dir, ".gitlab-ci.yml", config);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "Initial import"]);
    (tmp, dir)
}

fn plan(dir: &Path, event: Event) -> Planned {
    let mut opts = PipelineOptions::new(dir);
    opts.event = event;
    pipeline_api::plan(&opts).unwrap_or_else(|e| panic!("planning failed: {e}"))
}

fn plan_err(dir: &Path) -> String {
    match pipeline_api::plan(&PipelineOptions::new(dir)) {
        Ok(p) => panic!("expected an error, planned {:?}", names(&p)),
        Err(e) => e.to_string(),
    }
}

fn names(p: &Planned) -> Vec<&str> {
    p.plan.jobs.iter().map(|j| j.name.as_str()).collect()
}

fn var<'a>(p: &'a Planned, key: &str) -> Option<&'a str> {
    p.predefined
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const ORIGIN: &str = "https://gitlab.example.com/acme/project.git";

// ---- explicit null: "not specified", also over a value inherited through `extends`

#[test]
fn null_job_keywords_are_not_specified() {
    let (_tmp, dir) = repo(
        "main",
        ORIGIN,
        concat!(
            "stages: [build, test]\n",
            "build: {stage: build, script: [make]}\n",
            ".unit: {parallel: 4, needs: [build], when: manual, allow_failure: true, dependencies: [build]}\n",
            "compile-only:\n",
            "  extends: .unit\n",
            "  script: [make]\n",
            "  parallel: null\n  needs: null\n  dependencies: null\n  when: null\n  allow_failure: null\n",
            "  stage: null\n  timeout: null\n  retry: null\n  tags: null\n  variables: null\n",
        ),
    );
    let planned = plan(&dir, Event::default());
    assert_eq!(names(&planned), ["build", "compile-only"]);
    let job = planned.plan.job("compile-only").expect("planned");
    assert_eq!(job.stage, "test", "`stage: null` is the default stage");
    assert!(job.parallel.is_none(), "parallel cleared");
    assert!(job.needs.is_none(), "needs cleared: stage-ordered");
    assert_eq!(job.when, glci_test::plan::When::OnSuccess);
    assert!(!job.allows_failure());
}

#[test]
fn null_rules_drop_the_implicit_only_and_null_extends_extends_nothing() {
    let (_tmp, dir) = repo(
        "main",
        ORIGIN,
        "a: {script: [x], rules: null}\nb: {script: [x]}\nc: {script: [x], extends: null, only: null, except: null}\n",
    );
    // A merge request pipeline: the implicit `only: [branches, tags]` excludes `b`; `a` has a
    // `rules` key, so GitLab dropped that implicit `only` and the job runs everywhere.
    let mr = Event {
        source: PipelineSource::MergeRequestEvent,
        ..Event::default()
    };
    assert_eq!(names(&plan(&dir, mr)), ["a"]);
    assert_eq!(names(&plan(&dir, Event::default())), ["a", "b", "c"]);
}

#[test]
fn null_default_keywords_and_null_job_keywords_inherit_default() {
    let (_tmp, dir) = repo(
        "main",
        ORIGIN,
        "default: {image: ruby, tags: null, retry: null}\njob: {script: [x], image: null, interruptible: null}\n",
    );
    let planned = plan(&dir, Event::default());
    let job = planned.plan.job("job").expect("planned");
    assert_eq!(job.image.as_ref().map(|i| i.name.as_str()), Some("ruby"));
    assert!(job.tags.is_empty());
}

#[test]
fn null_script_is_still_blank() {
    let (_tmp, dir) = repo("main", ORIGIN, "job: {script: null}\n");
    let err = plan_err(&dir);
    assert!(err.contains("script can't be blank"), "{err}");
}

// ---- nested arrays from anchors, flattened as GitLab's composable entries do

#[test]
fn list_anchors_in_needs_cache_and_services_are_flattened() {
    let (_tmp, dir) = repo(
        "main",
        ORIGIN,
        concat!(
            "stages: [build, test]\n",
            ".common-needs: &common-needs [build-a, {job: build-b, artifacts: false}]\n",
            ".go-cache: &go-cache [{key: go, paths: [.go/]}]\n",
            ".dbs: &dbs [postgres, {name: redis, alias: cache}]\n",
            "build-a: {stage: build, script: [x]}\n",
            "build-b: {stage: build, script: [x]}\n",
            "build-c: {stage: build, script: [x]}\n",
            "test:\n",
            "  script: [x]\n",
            "  needs: [*common-needs, build-c]\n",
            "  cache: [*go-cache, {key: other, paths: [o/]}]\n",
            "  services: [*dbs, mysql]\n",
            "ruled:\n",
            "  script: [x]\n",
            "  rules: [{needs: [*common-needs]}]\n",
        ),
    );
    let planned = plan(&dir, Event::default());
    let job = planned.plan.job("test").expect("planned");
    let needs: Vec<&str> = job
        .needs
        .as_ref()
        .map(|n| n.iter().map(|n| n.name.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(needs, ["build-a", "build-b", "build-c"]);
    assert_eq!(job.cache.len(), 2);
    let services: Vec<&str> = job.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(services, ["postgres", "redis", "mysql"]);
    let ruled = planned.plan.job("ruled").expect("planned");
    assert_eq!(ruled.needs.as_ref().map(Vec::len), Some(2));
}

// ---- only/except read the ref of the one resolved event

const REFS: &str = concat!(
    "only-master: {script: [x], only: [master]}\n",
    "except-master: {script: [x], except: [master]}\n",
    "only-mr: {script: [x], only: [merge_requests]}\n",
    "only-tags: {script: [x], only: [tags]}\n",
    "only-web: {script: [x], only: [web]}\n",
    "only-schedules-master: {script: [x], only: {refs: [schedules], variables: [$CI_COMMIT_BRANCH == \"master\"]}}\n",
);

#[test]
fn only_except_see_the_branch_git_gave_for_every_event_kind() {
    let (_tmp, dir) = repo("master", ORIGIN, REFS);
    // No `--branch`: the checked-out `master`, as `CI_COMMIT_BRANCH` says.
    let push = plan(&dir, Event::default());
    assert_eq!(var(&push, "CI_COMMIT_BRANCH"), Some("master"));
    assert_eq!(names(&push), ["only-master"]);
    for (source, want) in [
        (PipelineSource::Web, vec!["only-master", "only-web"]),
        (
            PipelineSource::Schedule,
            vec!["only-master", "only-schedules-master"],
        ),
        (PipelineSource::Api, vec!["only-master"]),
        (PipelineSource::Trigger, vec!["only-master"]),
        (PipelineSource::Pipeline, vec!["only-master"]),
    ] {
        let planned = plan(
            &dir,
            Event {
                source,
                ..Event::default()
            },
        );
        assert_eq!(names(&planned), want, "{source}");
    }
    // A merge request from the checked-out branch: only `merge_requests` refs match.
    git(&dir, &["checkout", "-q", "-b", "feature"]);
    let mr = plan(
        &dir,
        Event {
            source: PipelineSource::MergeRequestEvent,
            ..Event::default()
        },
    );
    assert_eq!(
        var(&mr, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
        Some("feature")
    );
    assert_eq!(names(&mr), ["only-mr"]);
    // A push of the checked-out feature branch: `except: [master]` no longer excludes.
    assert_eq!(names(&plan(&dir, Event::default())), ["except-master"]);
    // Detached HEAD: the default branch (origin has none, so `master` from the repository).
    git(&dir, &["checkout", "-q", "--detach", "master"]);
    let detached = plan(&dir, Event::default());
    assert_eq!(var(&detached, "CI_COMMIT_BRANCH"), Some("master"));
    assert_eq!(names(&detached), ["only-master"]);
    // A tag given by flag: the ref is the tag, whatever is checked out.
    let tag = plan(
        &dir,
        Event {
            tag: Some("v1".into()),
            ..Event::default()
        },
    );
    assert_eq!(names(&tag), ["except-master", "only-tags"]);
}

// ---- the instance variables come from `origin`

#[test]
fn server_variables_come_from_origin_and_the_api_from_the_stand_in() {
    let (_tmp, dir) = repo(
        "main",
        "git@gitlab.com:acme/project.git",
        "on-gitlab-com: {script: [x], rules: [{if: '$CI_SERVER_HOST == \"gitlab.com\"'}]}\n",
    );
    let planned = plan(&dir, Event::default());
    assert_eq!(names(&planned), ["on-gitlab-com"]);
    for (key, want) in [
        ("CI_SERVER_HOST", "gitlab.com"),
        ("CI_SERVER_URL", "https://gitlab.com"),
        ("CI_SERVER_FQDN", "gitlab.com"),
        ("CI_SERVER_PROTOCOL", "https"),
        ("CI_SERVER_PORT", "443"),
        ("CI_PROJECT_PATH", "acme/project"),
        ("CI_API_V4_URL", "http://gitlab.glci.invalid/api/v4"),
    ] {
        assert_eq!(var(&planned, key), Some(want), "{key}");
    }

    let (_tmp, dir) = repo(
        "main",
        "http://gitlab.internal:8080/acme/project.git",
        "a: {script: [x]}\n",
    );
    let planned = plan(&dir, Event::default());
    assert_eq!(
        var(&planned, "CI_SERVER_URL"),
        Some("http://gitlab.internal:8080")
    );
    assert_eq!(
        var(&planned, "CI_SERVER_FQDN"),
        Some("gitlab.internal:8080")
    );
    assert_eq!(var(&planned, "CI_SERVER_PORT"), Some("8080"));
}

// ---- include:local and exists see the committed tree plus the working tree

#[test]
fn nested_local_include_globs_and_exists_see_committed_and_working_tree() {
    let (_tmp, dir) = repo(
        "main",
        ORIGIN,
        concat!(
            "include:\n",
            "  - local: .gitlab/ci/*.yml\n",
            "  - local: /optional/extra.yml\n",
            "    rules: [{exists: ['src/**/*.{c,h}']}]\n",
            "root: {script: [x]}\n",
        ),
    );
    // Committed: one CI file; in the working tree only: a second one that includes more
    // with `**`, and the sources `exists` looks for.
    write(
        &dir,
        ".gitlab/ci/build.yml",
        "build: {script: [x], rules: [{exists: ['**/*.{c,h}']}]}\n",
    );
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "CI"]);
    write(
        &dir,
        ".gitlab/ci/test.yml",
        "include: [{local: '.gitlab/ci/jobs/**.yml'}]\ntest: {script: [x]}\n",
    );
    write(
        &dir,
        ".gitlab/ci/jobs/deep/unit.yml",
        "unit: {script: [x]}\n",
    );
    write(
        &dir,
        ".gitlab/ci/nested/not-a-child.yml",
        "nope: {script: [x]}\n",
    );
    write(&dir, "optional/extra.yml", "extra: {script: [x]}\n");
    let before = plan(&dir, Event::default());
    assert_eq!(names(&before), ["unit", "test", "root"]);
    // An ignored file is not in the repository GitLab would see.
    write(&dir, ".gitignore", "build/\n");
    write(&dir, "build/gen.c", "int x;\n");
    assert_eq!(
        names(&plan(&dir, Event::default())),
        ["unit", "test", "root"]
    );
    write(&dir, "src/lib/x.h", "int x;\n");
    let after = plan(&dir, Event::default());
    assert_eq!(names(&after), ["build", "unit", "test", "extra", "root"]);
}
