//! `config::load` on the sample projects under `fixtures/config/`, snapshotting the merged
//! configuration as `cargo glci config` would print it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use glci_test::config::{load, to_yaml, LoadOptions, SourceLocation};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/config")
}

fn opts(case: &str) -> LoadOptions {
    LoadOptions::new(fixtures().join(case))
}

fn snapshot(name: &str, text: &str) {
    // What `cargo glci config` prints must read back as the same configuration.
    let back = glci_test::config::parse_yaml(text, "emitted.yml")
        .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e}\n{text}"));
    assert_eq!(to_yaml(&back), text, "emitted YAML does not round-trip");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(fixtures().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn basic_anchors_extends_references_defaults() {
    let resolved = load(&opts("basic")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = resolved.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec![".gitlab-ci.yml"]);
    snapshot("basic", &to_yaml(&resolved.tree));
}

#[test]
fn includes_of_every_kind() {
    let mut o = opts("includes");
    o.variables = vec![
        ("TARGET".into(), "prod".into()),
        ("CI_COMMIT_BRANCH".into(), "main".into()),
        ("CI_SERVER_FQDN".into(), "gitlab.example.com".into()),
    ];
    o.project_map = BTreeMap::from([("other/project".into(), fixtures().join("other-project"))]);
    let resolved = load(&o).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = resolved.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            ".gitlab-ci.yml",
            "ci/base.yml",
            "ci/deep/nested.yml",
            "ci/jobs/a.yml",
            "ci/jobs/b.yml",
            "ci/prod.yml",
            "ci/by-exists.yml",
            "other/project:ci/shared.yml",
            "other/project:ci/helper.yml",
            "other/project:templates/lint/template.yml",
        ]
    );
    assert!(
        matches!(&resolved.files[1].location, SourceLocation::Path(p) if p.ends_with("ci/base.yml"))
    );
    let tree = &resolved.tree;
    assert!(
        tree.get("skipped").is_none(),
        "include:rules must exclude ci/skipped.yml"
    );
    assert!(
        tree.get("ignored").is_none(),
        "ci/jobs/*.yml must not reach deeper folders"
    );
    // Spans name the file each node came from.
    let span = tree.get("job-b").map(|j| j.span.to_string());
    assert_eq!(span.as_deref(), Some("ci/jobs/b.yml:2:3"));
    snapshot("includes", &to_yaml(tree));
}

#[test]
fn pipeline_inputs_and_templates() {
    let mut o = opts("inputs");
    o.template_dir = Some(fixtures().join("templates"));
    o.inputs = vec![
        ("environment".into(), "production".into()),
        ("replicas".into(), "3".into()),
        ("targets".into(), r#"["x", "y"]"#.into()),
    ];
    let resolved = load(&o).unwrap_or_else(|e| panic!("{e}"));
    snapshot("inputs", &to_yaml(&resolved.tree));

    o.inputs = vec![("environment".into(), "qa".into())];
    let err = load(&o).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(".gitlab-ci.yml:1:1: `environment` input: `qa` cannot be used because it is not in the list of allowed options")
    );
}

#[test]
fn template_without_directory_names_what_to_configure() {
    // Offline, with nothing cached (tests never reach gitlab.com): the error names the URL
    // glci would fetch and the flag that reads templates locally instead.
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut o = opts("inputs");
    o.offline = true;
    o.include_cache = Some(cache.path().to_path_buf());
    let err = load(&o).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.starts_with(
            ".gitlab-ci.yml:14:5: Template file `Bash.gitlab-ci.yml` could not be read from `https://gitlab.com/gitlab-org/gitlab/-/raw/"
        ) && err.contains("`--offline` is set")
            && err.contains("pass `--template-dir DIR`"),
        "{err}"
    );
}

#[test]
fn unmapped_project_names_what_to_map() {
    let mut o = opts("includes");
    o.variables = vec![("TARGET".into(), "prod".into())];
    let err = load(&o).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        err,
        ".gitlab-ci.yml:11:5: project `other/project` is not available locally: map it to a checkout with `--project other/project=PATH`"
    );
}

#[test]
fn references_after_includes_and_extends() {
    let resolved = load(&opts("references")).unwrap_or_else(|e| panic!("{e}"));
    snapshot("references", &to_yaml(&resolved.tree));
}
