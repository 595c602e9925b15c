//! Entry and logical validation of `.gitlab-ci.yml` against GitLab's messages
//! (docs/ci-yaml-semantics.md §11, §12).

use glci_test::config::{parse_yaml, Node};

/// The raw tree: the validator must hold on its own, whatever `config` already checked.
fn resolved(yaml: &str, file: &str) -> Node {
    parse_yaml(yaml, file).expect("test YAML parses")
}
use glci_test::plan::model::{InheritList, Parallel};
use glci_test::plan::{validate, AllowFailure, PipelineConfig, When};

fn config(yaml: &str) -> PipelineConfig {
    let tree = resolved(yaml, ".gitlab-ci.yml");
    match validate(&tree) {
        Ok(c) => c,
        Err(e) => panic!("unexpected lint errors: {e:?}"),
    }
}

fn errors(yaml: &str) -> Vec<String> {
    let tree = resolved(yaml, ".gitlab-ci.yml");
    match validate(&tree) {
        Ok(_) => panic!("expected lint errors for:\n{yaml}"),
        Err(e) => e.into_iter().map(|e| e.message).collect(),
    }
}

fn first_error(yaml: &str) -> String {
    errors(yaml).remove(0)
}

#[test]
fn unknown_job_keys_are_listed() {
    assert_eq!(
        first_error("build:\n  script: make\n  scrpt: x\n  foo: 1\n"),
        "jobs:build config contains unknown keys: scrpt, foo"
    );
}

#[test]
fn errors_carry_file_line_col() {
    let tree = resolved("a:\n  script: x\nb:\n  script: y\n  bogus: 1\n", "ci.yml");
    let err = validate(&tree).unwrap_err().remove(0);
    let span = err.span.clone().expect("span");
    assert_eq!((&*span.file, span.line, span.col), ("ci.yml", 5, 3));
    assert_eq!(
        err.to_string(),
        "ci.yml:5:3: jobs:b config contains unknown keys: bogus"
    );
}

#[test]
fn job_without_script_or_trigger() {
    assert_eq!(
        first_error("My Job:\n  stage: test\n"),
        "jobs my_job config should implement the script:, run:, or trigger: keyword"
    );
}

#[test]
fn blank_script_and_hash_in_script() {
    assert_eq!(
        first_error("a:\n  script: []\n"),
        "jobs:a script can't be blank"
    );
    assert_eq!(
        first_error("a:\n  script:\n    - echo a: b\n"),
        "jobs:a:script config should be a string or a nested array of strings up to 10 levels deep"
    );
}

#[test]
fn only_hidden_jobs() {
    assert_eq!(
        first_error(".a:\n  script: x\n"),
        "jobs config should contain at least one visible job"
    );
    assert_eq!(
        first_error(".a: {}\nb:\n  script: x\n"),
        "jobs:.a config can't be blank"
    );
}

#[test]
fn undefined_stage_lists_available_stages() {
    assert_eq!(
        first_error("a:\n  stage: lint\n  script: x\n"),
        "a job: chosen stage lint does not exist; available stages are .pre, build, test, deploy, .post"
    );
    // A job without stage gets `test`, which must exist.
    assert_eq!(
        first_error("stages: [build]\na:\n  script: x\n"),
        "a job: chosen stage test does not exist; available stages are .pre, build, .post"
    );
}

#[test]
fn bad_when() {
    assert_eq!(
        first_error("a:\n  script: x\n  when: sometimes\n"),
        "jobs:a when should be one of: on_success, on_failure, always, manual, delayed"
    );
}

#[test]
fn rules_exclusive_with_only_and_bad_rule_when() {
    assert_eq!(
        first_error("a:\n  script: x\n  only: [main]\n  rules:\n    - when: always\n"),
        "jobs:a config key may not be used with `rules`: only"
    );
    assert_eq!(
        first_error("a:\n  script: x\n  rules:\n    - when: later\n"),
        "jobs:a:rules:rule when unknown value: later"
    );
    assert_eq!(
        first_error("a:\n  script: x\n  start_in: 1 minute\n"),
        "jobs:a start_in must be blank"
    );
}

/// GitLab's `DurationValidator` on a delayed `start_in`: a duration, at most one week.
#[test]
fn delayed_start_in_is_a_duration_of_at_most_a_week() {
    let yaml =
        |start_in: &str| format!("a:\n  script: x\n  when: delayed\n  start_in: {start_in}\n");
    let job = |start_in: &str| errors(&yaml(start_in));
    for fine in ["1 week", "604800", "6 days 23 hours"] {
        assert!(
            validate(&resolved(&yaml(fine), ".gitlab-ci.yml")).is_ok(),
            "{fine}"
        );
    }
    assert_eq!(
        job("1 week 1 second"),
        ["jobs:a start_in should not exceed the limit"]
    );
    assert_eq!(
        job("8 days"),
        ["jobs:a start_in should not exceed the limit"]
    );
    assert_eq!(job("soon"), ["jobs:a start_in should be a duration"]);
    assert_eq!(
        errors("a:\n  script: x\n  rules:\n    - when: delayed\n      start_in: 2 weeks\n"),
        ["jobs:a:rules:rule start_in should not exceed the limit"]
    );
}

#[test]
fn only_must_be_array_or_hash() {
    // §12 #36, #37
    assert_eq!(
        first_error("rspec:\n  script: x\n  only: 1\n"),
        "jobs:rspec:only has to be either an array of conditions or a hash"
    );
    assert_eq!(
        first_error("rspec:\n  script: x\n  only: [\"/*invalid/\"]\n"),
        "jobs:rspec:only config should be an array of strings or regular expressions using re2 syntax"
    );
}

#[test]
fn undefined_need_and_dependency() {
    assert_eq!(
        first_error("a:\n  script: x\n  needs: [nope]\n"),
        "a job: undefined need: nope"
    );
    assert_eq!(
        first_error("a:\n  script: x\n  dependencies: [nope]\n"),
        "a job: undefined dependency: nope"
    );
    // Optional needs may be absent.
    config("a:\n  script: x\n  needs: [{job: nope, optional: true}]\n");
}

#[test]
fn need_in_later_stage() {
    // §12 #57
    assert_eq!(
        first_error("build:\n  stage: build\n  script: x\n  needs: [test]\ntest:\n  stage: test\n  script: y\n"),
        "build job: need test is not defined in current or prior stages"
    );
    assert_eq!(
        first_error(
            "build:\n  stage: build\n  script: x\n  dependencies: [test]\ntest:\n  script: y\n"
        ),
        "build job: dependency test is not defined in current or prior stages"
    );
}

#[test]
fn duplicate_needs() {
    assert_eq!(
        first_error("a:\n  script: x\nb:\n  script: y\n  needs: [a, a]\n"),
        "b has the following needs duplicated: a."
    );
}

#[test]
fn dependencies_must_be_needs() {
    assert_eq!(
        first_error("a:\n  stage: build\n  script: x\nc:\n  stage: build\n  script: x\nb:\n  script: y\n  needs: [a]\n  dependencies: [c]\n"),
        "b job: dependencies the c should be part of needs"
    );
}

#[test]
fn cyclic_needs() {
    assert_eq!(
        first_error("a:\n  script: x\n  needs: [b]\nb:\n  script: y\n  needs: [a]\n"),
        "The pipeline has circular dependencies: topological sort failed: [\"a\", \"b\"]"
    );
    assert_eq!(
        first_error("a:\n  script: x\n  needs: [a]\n"),
        "The pipeline has circular dependencies: self-dependency: a"
    );
}

#[test]
fn matrix_need_with_unknown_variable() {
    // §12 #44
    let yaml = "build:\n  stage: build\n  script: x\n  parallel:\n    matrix:\n      - OS: [linux]\ntest:\n  script: y\n  parallel:\n    matrix:\n      - OS: [linux]\n  needs:\n    - job: build\n      parallel:\n        matrix:\n          - OS: ['$[[ matrix.NONEXISTENT ]]']\n";
    assert_eq!(
        first_error(yaml),
        "test: [linux] job: 'NONEXISTENT' does not exist in matrix configuration"
    );
}

#[test]
fn global_and_default_duplicate() {
    assert_eq!(
        first_error("image: a\ndefault:\n  image: b\nj:\n  script: x\n"),
        "image is defined in top-level and `default:` entry"
    );
}

#[test]
fn job_variables_reject_description() {
    assert_eq!(
        first_error(
            "j:\n  script: x\n  variables:\n    A:\n      value: x\n      description: d\n"
        ),
        "jobs:j:variables config uses invalid data keys: description"
    );
}

#[test]
fn several_entry_errors_at_once() {
    let errs = errors("a:\n  script: x\n  bad: 1\nb:\n  script: y\n  when: nope\n");
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn manual_jobs_allow_failure_by_default() {
    // §12 #58 (configuration side; the planner applies the default)
    let c = config("rspec:\n  script: rspec\n  when: manual\nb:\n  script: x\n  when: manual\n  allow_failure: false\n");
    assert_eq!(c.jobs["rspec"].when, Some(When::Manual));
    assert_eq!(c.jobs["rspec"].allow_failure, None);
    assert_eq!(c.jobs["b"].allow_failure, Some(AllowFailure::Bool(false)));
}

#[test]
fn typed_fields() {
    let c = config(
        r#"
stages: [build, [test, deploy]]
variables:
  GLOBAL: "1"
  RAW: {value: "$X", expand: false}
default:
  image: ruby:3
  before_script: [setup]
  retry: 2
j:
  stage: deploy
  script: [a, [b, c]]
  services: [postgres:16, {name: redis:7, alias: cache}]
  allow_failure: {exit_codes: [137, 255]}
  parallel: 3
  environment: {name: review/$CI_COMMIT_REF_SLUG, url: "https://x"}
  cache: {key: k, paths: [vendor]}
  artifacts: {paths: [out], reports: {junit: report.xml}}
  timeout: 1h
  tags: [docker]
  inherit: {variables: [GLOBAL], default: [image]}
t:
  trigger: {include: child.yml, strategy: depend}
"#,
    );
    assert_eq!(c.stages, [".pre", "build", "test", "deploy", ".post"]);
    assert!(!c.variables["RAW"].expand);
    let j = &c.jobs["j"];
    assert_eq!(j.script, ["a", "b", "c"]);
    assert_eq!(j.image.as_ref().map(|i| i.name.as_str()), Some("ruby:3"));
    // inherit:default: [image] keeps only the default image.
    assert!(j.before_script.is_empty());
    assert!(j.retry.is_none());
    assert_eq!(j.services[1].alias.as_deref(), Some("cache"));
    assert_eq!(
        j.allow_failure,
        Some(AllowFailure::ExitCodes(vec![137, 255]))
    );
    assert_eq!(j.parallel, Some(Parallel::Count(3)));
    assert_eq!(
        j.inherit.variables,
        InheritList::Only(vec!["GLOBAL".into()])
    );
    assert_eq!(
        j.artifacts.as_ref().unwrap().reports["junit"],
        ["report.xml"]
    );
    assert_eq!(j.cache.as_ref().unwrap()[0].paths, ["vendor"]);
    assert!(c.jobs["t"].is_trigger());
    assert!(
        c.jobs["t"].image.is_none(),
        "trigger jobs take no default image"
    );
}

#[test]
fn default_keys_apply_only_when_job_lacks_them() {
    let c =
        config("default:\n  image: a\n  tags: [x]\nj:\n  script: s\n  image: b\nk:\n  script: s\n");
    assert_eq!(c.jobs["j"].image.as_ref().unwrap().name, "b");
    assert_eq!(c.jobs["j"].tags, ["x"]);
    assert_eq!(c.jobs["k"].image.as_ref().unwrap().name, "a");
}

#[test]
fn script_and_trigger_are_exclusive() {
    let errs = errors("a:\n  script: x\n  trigger: other/project\n");
    assert!(
        errs.iter()
            .any(|e| e == "jobs:a these keys cannot be used together: script, trigger"),
        "{errs:?}"
    );
}

#[test]
fn needs_only_job_is_a_bridge_without_trigger() {
    assert_eq!(
        first_error("a:\n  script: x\nb:\n  needs: [a]\n"),
        "jobs:b config should contain either a trigger or a needs:pipeline"
    );
}

#[test]
fn catch_all_rule_without_workflow_rules_warns() {
    let c = config("a:\n  script: x\n  rules:\n    - if: $X\n    - when: always\nb:\n  script: x\n  rules:\n    - when: never\n");
    let w = glci_test::plan::warnings(&c);
    assert_eq!(w.len(), 1);
    assert!(w[0].message.starts_with("jobs:a may allow multiple pipelines to run for a single action due to `rules:when` clause with no `workflow:rules`"));
    let c = config(
        "workflow:\n  rules:\n    - when: always\na:\n  script: x\n  rules:\n    - when: always\n",
    );
    assert!(glci_test::plan::warnings(&c).is_empty());
}

#[test]
fn environment_on_stop_must_stop_the_same_environment() {
    let base = "deploy:\n  script: x\n  environment:\n    name: review\n    on_stop: stop\n";
    assert_eq!(
        first_error(base),
        "deploy job: on_stop job stop is not defined"
    );
    assert_eq!(
        first_error(&format!("{base}stop:\n  script: x\n")),
        "deploy job: on_stop job stop does not have environment defined"
    );
    assert_eq!(
        first_error(&format!(
            "{base}stop:\n  script: x\n  environment: {{name: other, action: stop}}\n"
        )),
        "deploy job: on_stop job stop have different environment name"
    );
    assert_eq!(
        first_error(&format!(
            "{base}stop:\n  script: x\n  environment: review\n"
        )),
        "deploy job: on_stop job stop needs to have action stop defined"
    );
    config(&format!(
        "{base}stop:\n  script: x\n  when: manual\n  environment: {{name: review, action: stop}}\n"
    ));
}

#[test]
fn lookahead_regex_in_only_is_rejected() {
    // §12 #35: RE2 has no lookahead.
    assert_eq!(
        first_error("a:\n  script: x\n  only: ['/^(?!master).+/']\n"),
        "jobs:a:only config should be an array of strings or regular expressions using re2 syntax"
    );
}

#[test]
fn release_needs_a_tag_name_and_a_description() {
    let c = config(
        "rel:\n  script: x\n  release:\n    tag_name: v$CI_PIPELINE_IID\n    description: notes\n    milestones: m1\n",
    );
    let release = c.jobs["rel"].release.clone().expect("release read");
    assert_eq!(release.tag_name, "v$CI_PIPELINE_IID");
    assert_eq!(release.milestones, ["m1"]);
    assert_eq!(
        errors("rel:\n  script: x\n  release:\n    name: n\n    colour: red\n"),
        [
            "jobs:rel:release config contains unknown keys: colour",
            "jobs:rel:release tag name can't be blank",
            "jobs:rel:release description can't be blank",
        ]
    );
}

#[test]
fn release_asset_links_need_a_name_and_a_url() {
    let c = config(
        "rel:\n  script: x\n  release:\n    tag_name: v1\n    description: d\n    assets:\n      links:\n        - name: bin\n          url: https://x/bin\n          filepath: /bin\n",
    );
    let links = c.jobs["rel"].release.clone().expect("release read").links;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].direct_asset_path.as_deref(), Some("/bin"));
    assert_eq!(
        errors("rel:\n  script: x\n  release:\n    tag_name: v1\n    description: d\n    assets:\n      links:\n        - name: bin\n"),
        ["jobs:rel:release:assets:links:link url can't be blank"]
    );
}

#[test]
fn deployment_tiers_are_gitlabs_five() {
    let c =
        config("d:\n  script: x\n  environment:\n    name: prod\n    deployment_tier: staging\n");
    assert_eq!(
        c.jobs["d"]
            .environment
            .clone()
            .unwrap()
            .deployment_tier
            .as_deref(),
        Some("staging")
    );
    assert_eq!(
        errors("d:\n  script: x\n  environment:\n    name: prod\n    deployment_tier: live\n"),
        ["jobs:d:environment deployment tier must be one of production, staging, testing, development, other"]
    );
}
