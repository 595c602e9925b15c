//! Child pipelines planned before the run (`pipeline::child::static_children`): `local:`
//! children with their own `workflow:rules` and the trigger's forwarded variables, nesting up
//! to GitLab's depth, and a child generated at run time (`include: artifact:`), which cannot
//! be planned yet.

use glci_test::pipeline::child::{static_children, ChildError};
use glci_test::pipeline::{self, PipelineOptions};

use crate::support::git;

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "one"]);
    dir
}

#[test]
fn local_children_are_planned_with_the_parent_pipeline_source_and_forwarded_variables() {
    let dir = project(&[
        (
            ".gitlab-ci.yml",
            "variables: {TOP: t}\n\
             build: {script: [x]}\n\
             child:\n  variables: {TARGET: arm}\n  trigger:\n    include: ci/child.yml\n\
             dynamic:\n  trigger:\n    include:\n      - artifact: gen.yml\n        job: build\n",
        ),
        (
            "ci/child.yml",
            "workflow:\n  rules:\n    - if: $CI_PIPELINE_SOURCE == \"parent_pipeline\"\n\
             arm: {script: [x], rules: [{if: $TARGET == \"arm\"}]}\n\
             x86: {script: [x], rules: [{if: $TARGET == \"x86\"}]}\n\
             top: {script: [x], rules: [{if: $TOP == \"t\"}]}\n\
             nested:\n  trigger:\n    include: ci/nested.yml\n",
        ),
        (
            "ci/nested.yml",
            "deep: {script: [x]}\ndeeper:\n  trigger:\n    include: ci/nested.yml\n",
        ),
    ]);
    let options = PipelineOptions::new(dir.path());
    let planned = pipeline::plan(&options).unwrap();
    let children = static_children(&options, &planned);
    let summary: Vec<(&str, Option<&ChildError>)> = children
        .iter()
        .flat_map(|c| c.flatten())
        .map(|c| (c.trigger.as_str(), c.planned.as_ref().err()))
        .collect();
    assert_eq!(
        summary,
        [
            ("child", None),
            ("child/nested", None),
            ("child/nested/deeper", Some(&ChildError::TooDeep)),
            (
                "dynamic",
                Some(&ChildError::GeneratedAtRunTime {
                    job: "build".into()
                })
            ),
        ]
    );
    let jobs: Vec<(String, String)> = children[0]
        .jobs()
        .into_iter()
        .map(|(name, job)| (name, job.stage.clone()))
        .collect();
    assert_eq!(
        jobs,
        [
            ("child/arm".to_string(), "test".to_string()),
            ("child/top".into(), "test".into()),
            ("child/nested".into(), "test".into()),
            ("child/nested/deep".into(), "test".into()),
            ("child/nested/deeper".into(), "test".into()),
        ]
    );
}

#[test]
fn a_child_whose_workflow_rules_refuse_it_is_not_created() {
    let dir = project(&[
        (
            ".gitlab-ci.yml",
            "child:\n  trigger:\n    include: child.yml\n",
        ),
        (
            "child.yml",
            "workflow: {rules: [{if: $CI_PIPELINE_SOURCE == \"push\"}]}\nj: {script: [x]}\n",
        ),
    ]);
    let options = PipelineOptions::new(dir.path());
    let planned = pipeline::plan(&options).unwrap();
    let children = static_children(&options, &planned);
    match &children[0].planned {
        Err(ChildError::NotCreated(why)) => assert!(!why.is_empty()),
        other => panic!("{other:?}"),
    }
}

/// `include: artifact:` reads from the parent's jobs' artifacts, with GitLab's messages when
/// the job or the file is not there.
#[test]
fn artifact_includes_read_the_parent_jobs_artifacts() {
    use glci_test::config::{load_child, parse_yaml, LoadOptions, Span};
    let project = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    std::fs::write(
        artifacts.path().join("child.yml"),
        "generated: {script: [x]}\n",
    )
    .unwrap();
    let mut options = LoadOptions::new(project.path());
    options.parent_artifacts = Some(
        [("gen".to_string(), artifacts.path().to_path_buf())]
            .into_iter()
            .collect(),
    );
    let load = |entry: &str| {
        let include = parse_yaml(entry, "trigger").unwrap();
        load_child(&options, &[include], &Span::default())
            .map(|r| r.tree.get("generated").is_some())
            .map_err(|e| e.to_string())
    };
    assert_eq!(load("{artifact: child.yml, job: gen}"), Ok(true));
    let missing_job = load("{artifact: child.yml, job: other}").unwrap_err();
    assert!(
        missing_job
            .ends_with("Job `other` not found in parent pipeline or does not have artifacts!"),
        "{missing_job}"
    );
    let missing_file = load("{artifact: nope.yml, job: gen}").unwrap_err();
    assert!(
        missing_file
            .ends_with("Path `nope.yml` does not exist inside the `gen` artifacts archive!"),
        "{missing_file}"
    );
}

#[test]
fn multi_project_triggers_are_planned_from_the_mapped_checkout_only() {
    let other = project(&[(
        ".gitlab-ci.yml",
        "job: {script: [x], rules: [{if: $CI_PIPELINE_SOURCE == \"pipeline\"}]}\n",
    )]);
    let dir = project(&[(
        ".gitlab-ci.yml",
        "deploy:\n  trigger:\n    project: group/other\n",
    )]);
    let mut options = PipelineOptions::new(dir.path());
    let planned = pipeline::plan(&options).unwrap();
    let unmapped = static_children(&options, &planned);
    assert_eq!(
        unmapped[0].planned.as_ref().err(),
        Some(&ChildError::NotMapped {
            project: "group/other".into()
        })
    );
    options
        .project_map
        .insert("group/other".into(), other.path().to_path_buf());
    let mapped = static_children(&options, &planned);
    let jobs: Vec<String> = mapped[0].jobs().into_iter().map(|(n, _)| n).collect();
    assert_eq!(jobs, ["deploy/job"]);
}

#[test]
fn a_multi_project_trigger_without_branch_runs_the_projects_default_branch() {
    // The checkout is on a feature branch; GitLab would run `main`, the default branch.
    let other = project(&[(
        ".gitlab-ci.yml",
        "on_default: {script: [x], rules: [{if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH}]}\n\
         on_feature: {script: [x], rules: [{if: $CI_COMMIT_BRANCH == \"feature\"}]}\n",
    )]);
    git(other.path(), &["checkout", "-q", "-b", "feature"]);
    let jobs_for = |trigger: &str| {
        let dir = project(&[(".gitlab-ci.yml", trigger)]);
        let mut options = PipelineOptions::new(dir.path());
        options
            .project_map
            .insert("group/other".into(), other.path().to_path_buf());
        let planned = pipeline::plan(&options).unwrap();
        let children = static_children(&options, &planned);
        children[0]
            .jobs()
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<String>>()
    };
    assert_eq!(
        jobs_for("deploy:\n  trigger:\n    project: group/other\n"),
        ["deploy/on_default"]
    );
    assert_eq!(
        jobs_for("deploy:\n  trigger:\n    project: group/other\n    branch: feature\n"),
        ["deploy/on_feature"]
    );
}
