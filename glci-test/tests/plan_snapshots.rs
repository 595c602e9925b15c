//! Fixture pipelines under `fixtures/plan/` planned for several events; the plan JSON is
//! kept as an insta snapshot next to the fixtures.

use std::path::PathBuf;

use glci_test::config::{load, LoadOptions};
use glci_test::plan::{plan, validate, Event, PipelineSource, PlanContext};

fn fixture(name: &str) -> glci_test::config::Node {
    let opts = LoadOptions {
        project_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/plan")
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
            snapshot_path => "../../fixtures/plan/snapshots",
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
