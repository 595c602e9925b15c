//! Plan snapshots.
//!
//! - `fixtures/plan-projects/<name>/`: realistic projects copied into real temporary git
//!   repositories (origin `https://gitlab.example.com/acme/<name>.git`) and planned through
//!   the public API (`pipeline::plan`) for a push to main, a push to a feature branch, a tag and a merge
//!   request; both the `cargo glci plan` text and the `--json` document are snapshotted in
//!   `snapshots/` next to this file, SHAs and times redacted.
//! - `fixtures/plan-configs/<name>/`: CI files alone, for the planner on synthetic contexts
//!   (no git), snapshots next to the fixtures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use glci_test::pipeline::{self as pipeline_api, PipelineOptions, Planned};

use glci_test::config::{load, LoadOptions};
use glci_test::plan::{plan, validate, Event, PipelineSource, PlanContext};

fn fixture(name: &str) -> glci_test::config::Node {
    let opts = LoadOptions {
        project_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/plan-configs")
            .join(name),
        ..LoadOptions::default()
    };
    load(&opts)
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
        .tree
}

struct Ev {
    name: &'static str,
    ctx: PlanContext,
}

fn ctx(
    source: PipelineSource,
    branch: Option<&str>,
    tag: Option<&str>,
    changed: Option<&[&str]>,
) -> PlanContext {
    let mut predefined = vec![
        ("CI_PROJECT_PATH".to_string(), "group/project".to_string()),
        ("CI_DEFAULT_BRANCH".to_string(), "main".to_string()),
        (
            "CI_PIPELINE_SOURCE".to_string(),
            source.as_str().to_string(),
        ),
    ];
    let ref_name = tag.or(branch).unwrap_or_default();
    predefined.push(("CI_COMMIT_REF_NAME".into(), ref_name.into()));
    predefined.push((
        "CI_COMMIT_REF_SLUG".into(),
        ref_name.to_lowercase().replace(['/', '.', '_'], "-"),
    ));
    if let Some(t) = tag {
        predefined.push(("CI_COMMIT_TAG".into(), t.into()));
    } else if source == PipelineSource::MergeRequestEvent {
        predefined.push(("CI_MERGE_REQUEST_TARGET_BRANCH_NAME".into(), "main".into()));
    } else if let Some(b) = branch {
        predefined.push(("CI_COMMIT_BRANCH".into(), b.into()));
    }
    PlanContext {
        event: Event {
            source,
            branch: branch.map(Into::into),
            tag: tag.map(Into::into),
            ..Event::default()
        },
        predefined,
        changed_files: changed.map(|c| c.iter().map(|s| s.to_string()).collect()),
        files: vec!["Makefile".into(), "src/main.c".into(), "web/app.js".into()],
        ..PlanContext::default()
    }
}

fn events() -> Vec<Ev> {
    vec![
        Ev {
            name: "push_main",
            ctx: ctx(
                PipelineSource::Push,
                Some("main"),
                None,
                Some(&["src/main.c"]),
            ),
        },
        Ev {
            name: "push_feature_docs",
            ctx: ctx(
                PipelineSource::Push,
                Some("feature/x"),
                None,
                Some(&["docs/guide/a.md", "web/app.js"]),
            ),
        },
        Ev {
            name: "tag",
            ctx: ctx(PipelineSource::Push, None, Some("v1.0.0"), None),
        },
        Ev {
            name: "merge_request",
            ctx: ctx(
                PipelineSource::MergeRequestEvent,
                Some("feature/x"),
                None,
                Some(&["src/main.c"]),
            ),
        },
    ]
}

fn snapshot_fixture(name: &str) {
    let tree = fixture(name);
    let config = validate(&tree).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    for ev in events() {
        let json = match plan(&config, &ev.ctx) {
            Ok(p) => serde_json::to_string_pretty(&p.to_json()).unwrap_or_default(),
            Err(e) => format!("error: {e}"),
        };
        insta::with_settings!({
            snapshot_path => "../../../fixtures/plan-configs/snapshots",
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!(format!("{name}__{}", ev.name), json);
        });
    }
}

#[test]
fn basic() {
    snapshot_fixture("basic");
}

#[test]
fn workflow() {
    snapshot_fixture("workflow");
}

// ---------------------------------------------------------------------------------------------
// fixtures/plan-projects: real repositories, the `cargo glci plan` text and JSON.

/// The CLI's own rendering (the library's), so that the text snapshot is exactly what
/// `cargo glci plan` prints.
use glci_test::pipeline::render as output;

const COMMIT_DATE: &str = "1767261600 +0100";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", COMMIT_DATE)
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_DATE", COMMIT_DATE)
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        }
    }
}

fn append(dir: &Path, rel: &str, line: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    let mut text = fs::read_to_string(&path).unwrap_or_default();
    text.push_str(line);
    text.push('\n');
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The history every fixture gets:
///
/// ```text
/// C1 "Initial import"  ── origin/main, origin/feature/login (both pushed before)
///  ├─ C2 "<main change>"       main (unpushed: a push of main changes `main_paths`),
///  │                           tag v1.2.0 (annotated)
///  └─ F1 "<feature change>"    feature/login (a push or an MR changes `feature_paths`)
/// ```
struct Repo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// Every commit SHA, for redaction.
    shas: Vec<String>,
}

fn fixture_repo(name: &str, main_paths: &[&str], feature_paths: &[&str]) -> Repo {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = tmp.path().join(name);
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/plan-projects")
        .join(name);
    copy_dir(&src, &dir);
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["config", "user.name", "Ada Lovelace"]);
    git(&dir, &["config", "user.email", "ada@example.com"]);
    git(&dir, &["config", "commit.gpgsign", "false"]);
    git(&dir, &["config", "tag.gpgsign", "false"]);
    let url = format!("https://gitlab.example.com/acme/{name}.git");
    git(&dir, &["remote", "add", "origin", &url]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "Initial import"]);
    let c1 = git(&dir, &["rev-parse", "HEAD"]);
    // What `git clone` + earlier pushes would have left: remote-tracking refs and origin/HEAD.
    git(&dir, &["update-ref", "refs/remotes/origin/main", &c1]);
    git(
        &dir,
        &["update-ref", "refs/remotes/origin/feature/login", &c1],
    );
    git(
        &dir,
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ],
    );

    git(&dir, &["checkout", "-q", "-b", "feature/login"]);
    for p in feature_paths {
        append(&dir, p, "// login form");
    }
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "Add the login form"]);
    let f1 = git(&dir, &["rev-parse", "HEAD"]);

    git(&dir, &["checkout", "-q", "main"]);
    for p in main_paths {
        append(&dir, p, "// main");
    }
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "Update on main"]);
    let c2 = git(&dir, &["rev-parse", "HEAD"]);
    git(&dir, &["tag", "-a", "v1.2.0", "-m", "Release 1.2.0"]);
    let tag_object = git(&dir, &["rev-parse", "v1.2.0"]);
    Repo {
        _tmp: tmp,
        dir,
        shas: vec![c1, c2, f1, tag_object],
    }
}

struct Case {
    name: &'static str,
    /// Branch checked out for the event.
    checkout: &'static str,
    event: Event,
}

fn cases() -> Vec<Case> {
    let push = |branch: &str| Event {
        source: PipelineSource::Push,
        branch: Some(branch.to_string()),
        ..Event::default()
    };
    vec![
        Case {
            name: "push_main",
            checkout: "main",
            event: push("main"),
        },
        Case {
            name: "push_feature",
            checkout: "feature/login",
            event: push("feature/login"),
        },
        Case {
            name: "tag",
            checkout: "main",
            event: Event {
                source: PipelineSource::Push,
                tag: Some("v1.2.0".into()),
                ..Event::default()
            },
        },
        Case {
            name: "merge_request",
            checkout: "feature/login",
            event: Event {
                source: PipelineSource::MergeRequestEvent,
                branch: Some("feature/login".into()),
                target_branch: Some("main".into()),
                ..Event::default()
            },
        },
    ]
}

/// Values that change with the clock, the machine or the git version are replaced by their
/// name; so are SHAs. `CI_COMMIT_TIMESTAMP` is fixed by the commit date and kept.
fn redact_json(mut value: serde_json::Value, repo: &Repo) -> String {
    const VOLATILE: [&str; 5] = [
        "CI_PIPELINE_CREATED_AT",
        "CI_PIPELINE_ID",
        "CI_PIPELINE_IID",
        "CI_PIPELINE_URL",
        "CI_PROJECT_DIR",
    ];
    if let Some(vars) = value.get_mut("variables").and_then(|v| v.as_object_mut()) {
        for name in VOLATILE {
            if let Some(v) = vars.get_mut(name) {
                *v = serde_json::Value::String(format!("[{name}]"));
            }
        }
    }
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    redact_text(text, repo)
}

fn redact_text(mut text: String, repo: &Repo) -> String {
    for (i, sha) in repo.shas.iter().enumerate() {
        let label = ["C1", "C2", "F1", "TAG"][i.min(3)];
        text = text.replace(sha.as_str(), &format!("[SHA {label}]"));
        text = text.replace(&sha[..8], &format!("[SHORT {label}]"));
    }
    text.replace(&*repo.dir.to_string_lossy(), "[REPO]")
}

fn plan_event(repo: &Repo, case: &Case) -> Result<Planned, String> {
    git(&repo.dir, &["checkout", "-q", case.checkout]);
    let mut opts = PipelineOptions::new(&repo.dir);
    opts.event = case.event.clone();
    pipeline_api::plan(&opts).map_err(|e| e.to_string())
}

/// Plans every event for fixture `name` and checks both snapshots of each.
fn snapshot_project(name: &str, main_paths: &[&str], feature_paths: &[&str]) {
    let repo = fixture_repo(name, main_paths, feature_paths);
    for case in cases() {
        let (text, json) = match plan_event(&repo, &case) {
            Ok(planned) => (
                output::plan_text(&planned, &case.event),
                redact_json(output::plan_json(&planned), &repo),
            ),
            Err(e) => (format!("error: {e}\n"), format!("error: {e}")),
        };
        let text = redact_text(text, &repo);
        insta::with_settings!({
            snapshot_path => "snapshots",
            prepend_module_to_snapshot => false,
            description => format!("fixtures/plan-projects/{name}, event {}", case.name),
        }, {
            insta::assert_snapshot!(format!("{name}__{}__text", case.name), text);
            insta::assert_snapshot!(format!("{name}__{}__json", case.name), json);
        });
    }
}

#[test]
fn rust_app() {
    // main touches docs, the feature branch the parser.
    snapshot_project("rust-app", &["docs/guide.md"], &["src/parser.rs"]);
}

#[test]
fn monorepo() {
    // main touches the web service, the feature branch the API and infra.
    snapshot_project(
        "monorepo",
        &["services/web/index.js"],
        &["services/api/handler.go", "infra/main.tf"],
    );
}

#[test]
fn workflow_filter() {
    snapshot_project("workflow-filter", &["src/index.js"], &["src/login.js"]);
}

#[test]
fn matrix_deploy() {
    snapshot_project("matrix-deploy", &["src/main.rs"], &["src/login.rs"]);
}
