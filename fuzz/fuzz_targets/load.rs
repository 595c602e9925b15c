//! Loads arbitrary bytes as a `.gitlab-ci.yml` (YAML, anchors, `!reference`, extends, default,
//! hidden jobs; no includes, which would need files) then validates and plans it for a few
//! events: nothing may panic, and every rejection must name a position or a job.
#![no_main]

use glci_test::config::{parse_yaml, resolve_tree};
use glci_test::plan::{plan, validate, Event, PipelineSource, PlanContext};
use libfuzzer_sys::fuzz_target;

/// Push to the default branch, tag, and MR: the three event shapes rules branch on.
fn contexts() -> Vec<PlanContext> {
    let base = |source: PipelineSource, branch: Option<&str>, tag: Option<&str>| {
        let mut predefined = vec![
            ("CI_DEFAULT_BRANCH".to_string(), "main".to_string()),
            (
                "CI_PIPELINE_SOURCE".to_string(),
                source.as_str().to_string(),
            ),
            ("CI_PROJECT_PATH".to_string(), "acme/app".to_string()),
        ];
        if let Some(t) = tag {
            predefined.push(("CI_COMMIT_TAG".into(), t.into()));
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
            changed_files: Some(vec!["src/main.rs".into(), "docs/a.md".into()]),
            files: vec!["Cargo.toml".into(), "src/main.rs".into()],
            ..PlanContext::default()
        }
    };
    let mut mr = base(PipelineSource::MergeRequestEvent, Some("feature"), None);
    mr.event.target_branch = Some("main".into());
    vec![
        base(PipelineSource::Push, Some("main"), None),
        base(PipelineSource::Push, None, Some("v1.0.0")),
        mr,
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tree = match parse_yaml(text, ".gitlab-ci.yml").and_then(resolve_tree) {
        Ok(tree) => tree,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let config = match validate(&tree) {
        Ok(config) => config,
        Err(errors) => {
            assert!(!errors.is_empty());
            return;
        }
    };
    for ctx in contexts() {
        if let Ok(p) = plan(&config, &ctx) {
            let _ = p.to_json();
        }
    }
});
