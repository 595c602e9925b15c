//! Planning: which jobs a pipeline gets for an event (docs/ci-yaml-semantics.md §6–§8, §12)
//! and how statuses propagate through it (§8.3).

use std::collections::HashMap;

use glci_test::config::{parse_yaml, resolve_tree, Node};

/// The tree as `config::load` would hand it over (extends, !reference, default applied).
fn resolved(yaml: &str, file: &str) -> Node {
    let parsed = parse_yaml(yaml, file).expect("test YAML parses");
    resolve_tree(parsed).unwrap_or_else(|e| panic!("config resolution failed: {e}"))
}
use glci_test::plan::status::{propagate, Outcome, Status};
use glci_test::plan::{
    plan, validate, Event, PipelineConfig, PipelineSource, Plan, PlanContext, When,
};

fn config(yaml: &str) -> PipelineConfig {
    let tree = resolved(yaml, ".gitlab-ci.yml");
    match validate(&tree) {
        Ok(c) => c,
        Err(e) => panic!("unexpected lint errors: {e:?}"),
    }
}

fn base(source: PipelineSource) -> Vec<(String, String)> {
    vec![
        ("CI_PROJECT_PATH".into(), "group/project".into()),
        ("CI_DEFAULT_BRANCH".into(), "main".into()),
        ("CI_PIPELINE_SOURCE".into(), source.as_str().into()),
    ]
}

fn push(branch: &str) -> PlanContext {
    let mut predefined = base(PipelineSource::Push);
    predefined.push(("CI_COMMIT_BRANCH".into(), branch.into()));
    predefined.push(("CI_COMMIT_REF_NAME".into(), branch.into()));
    PlanContext {
        event: Event {
            source: PipelineSource::Push,
            branch: Some(branch.into()),
            ..Event::default()
        },
        predefined,
        ..PlanContext::default()
    }
}

fn tag(name: &str) -> PlanContext {
    let mut predefined = base(PipelineSource::Push);
    predefined.push(("CI_COMMIT_TAG".into(), name.into()));
    predefined.push(("CI_COMMIT_REF_NAME".into(), name.into()));
    PlanContext {
        event: Event {
            source: PipelineSource::Push,
            tag: Some(name.into()),
            ..Event::default()
        },
        predefined,
        ..PlanContext::default()
    }
}

fn mr(source: &str, target: &str) -> PlanContext {
    let mut predefined = base(PipelineSource::MergeRequestEvent);
    predefined.push(("CI_COMMIT_REF_NAME".into(), source.into()));
    predefined.push(("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME".into(), source.into()));
    predefined.push(("CI_MERGE_REQUEST_TARGET_BRANCH_NAME".into(), target.into()));
    PlanContext {
        event: Event {
            source: PipelineSource::MergeRequestEvent,
            branch: Some(source.into()),
            target_branch: Some(target.into()),
            ..Event::default()
        },
        predefined,
        ..PlanContext::default()
    }
}

fn with_source(mut ctx: PlanContext, source: PipelineSource) -> PlanContext {
    ctx.event.source = source;
    ctx.predefined
        .push(("CI_PIPELINE_SOURCE".into(), source.as_str().into()));
    ctx
}

fn run(yaml: &str, ctx: &PlanContext) -> Plan {
    match plan(&config(yaml), ctx) {
        Ok(p) => p,
        Err(e) => panic!("planning failed: {e}"),
    }
}

fn names(p: &Plan) -> Vec<&str> {
    p.jobs.iter().map(|j| j.name.as_str()).collect()
}

// ---- only / except (§6.5, §12 #31–#35)

#[test]
fn only_pushes_and_triggers() {
    let yaml = "a:\n  script: x\n  only: [pushes]\nb:\n  script: x\n  only: [triggers]\n";
    assert_eq!(names(&run(yaml, &push("main"))), ["a"]);
}

#[test]
fn only_merge_requests_matches_mr_pipelines_not_merge_request_events() {
    let yaml = "a:\n  script: x\n  only: [merge_requests]\nb:\n  script: x\n  only: [merge_request_events]\n";
    assert_eq!(names(&run(yaml, &mr("feat", "main"))), ["a"]);
}

#[test]
fn only_regex_is_case_insensitive_with_i() {
    let yaml = "a:\n  script: x\n  only: ['/DOCS-.*/i']\nb:\n  script: x\n  only: ['/^main$/']\n";
    assert_eq!(names(&run(yaml, &push("docs-something"))), ["a"]);
}

#[test]
fn only_with_other_project_path_is_excluded() {
    let yaml = "a:\n  script: x\n  only: ['master@some/fork/repository']\nb:\n  script: x\n  only: ['master@group/project']\n";
    assert_eq!(names(&run(yaml, &push("master"))), ["b"]);
}

#[test]
fn implicit_only_branches_and_tags() {
    let yaml = "a:\n  script: x\n";
    assert_eq!(names(&run(yaml, &push("feat"))), ["a"]);
    assert_eq!(names(&run(yaml, &tag("v1"))), ["a"]);
    // Derived: job without rules, MR pipeline, no workflow:rules → excluded.
    let p = run(yaml, &mr("feat", "main"));
    assert!(!p.created);
    assert!(p
        .reason
        .unwrap()
        .starts_with("Pipeline will not run for the selected trigger."));
}

#[test]
fn except_tags_keeps_default_only() {
    let yaml = "a:\n  script: x\n  except: [tags]\nb:\n  script: x\n";
    assert_eq!(names(&run(yaml, &tag("v1"))), ["b"]);
    assert_eq!(names(&run(yaml, &push("main"))), ["a", "b"]);
    assert_eq!(names(&run(yaml, &mr("f", "main"))).len(), 0);
}

#[test]
fn only_changes_without_diff_is_true_and_with_diff_filters() {
    let yaml = "a:\n  script: x\n  only:\n    changes: ['docs/**/*']\nb:\n  script: x\n  except:\n    changes: ['docs/**/*']\n";
    assert_eq!(names(&run(yaml, &tag("v1"))), ["a"]);
    let mut ctx = push("main");
    ctx.changed_files = Some(vec!["src/main.rs".into()]);
    assert_eq!(names(&run(yaml, &ctx)), ["b"]);
}

#[test]
fn web_and_schedule_sources() {
    let yaml = "a:\n  script: x\n  only: [schedules]\nb:\n  script: x\n  only: [web]\nc:\n  script: x\n  except: [schedules]\n";
    assert_eq!(
        names(&run(
            yaml,
            &with_source(push("main"), PipelineSource::Schedule)
        )),
        ["a"]
    );
    assert_eq!(
        names(&run(yaml, &with_source(push("main"), PipelineSource::Web))),
        ["b", "c"]
    );
}

// ---- rules without expressions (§6.1)

#[test]
fn rules_when_and_allow_failure() {
    let yaml = r#"
a:
  script: x
  rules:
    - when: manual
b:
  script: x
  when: manual
c:
  script: x
  rules:
    - when: never
d:
  script: x
  rules:
    - changes: [nothing/**/*]
      when: always
    - when: delayed
      start_in: 5 minutes
      allow_failure: true
"#;
    let mut ctx = push("main");
    ctx.changed_files = Some(vec!["src/lib.rs".into()]);
    let p = run(yaml, &ctx);
    assert_eq!(names(&p), ["a", "b", "d"]);
    let a = p.job("a").unwrap();
    assert_eq!(a.when, When::Manual);
    assert!(!a.allows_failure(), "manual from a rule is blocking");
    let b = p.job("b").unwrap();
    assert!(
        b.allows_failure(),
        "job-level manual allows failure (§12 #58)"
    );
    let d = p.job("d").unwrap();
    assert_eq!(
        (d.when, d.start_in.as_deref()),
        (When::Delayed, Some("5 minutes"))
    );
    assert!(d.allows_failure());
}

#[test]
fn rules_without_match_exclude_and_rules_drop_implicit_only() {
    let yaml = "a:\n  script: x\n  rules:\n    - exists: [Cargo.toml]\nb:\n  script: x\n  rules:\n    - when: on_success\n";
    let mut ctx = mr("f", "main");
    ctx.files = vec!["README.md".into()];
    assert_eq!(names(&run(yaml, &ctx)), ["b"]);
    ctx.files.push("Cargo.toml".into());
    assert_eq!(names(&run(yaml, &ctx)), ["a", "b"]);
}

#[test]
fn rules_changes_tag_pipeline_is_true_and_compare_to() {
    let yaml = "a:\n  script: x\n  rules:\n    - changes: ['docs/**']\nb:\n  script: x\n  rules:\n    - changes:\n        paths: ['src/*']\n        compare_to: refs/heads/main\n";
    // Tags have no diff: `changes` holds; `compare_to` needs a known ref.
    let mut ctx = tag("v1");
    ctx.compare_to
        .insert("refs/heads/main".into(), vec!["src/a.rs".into()]);
    assert_eq!(names(&run(yaml, &ctx)), ["a", "b"]);
    // Derived: `docs/**` does not match `docs/a/b.md`.
    let mut ctx = push("f");
    ctx.changed_files = Some(vec!["docs/a/b.md".into()]);
    ctx.compare_to
        .insert("refs/heads/main".into(), vec!["lib/x".into()]);
    let p = plan(&config(yaml), &ctx).unwrap();
    assert!(!p.created);
    let err = plan(&config(yaml), &push("f")).unwrap_err();
    assert!(
        err.0.message.starts_with("Failed to parse rule for b:"),
        "{err}"
    );
}

#[test]
fn rules_variables_override_job_variables_and_rule_needs_replace() {
    let yaml = r#"
variables: {G: top, J: top}
build:
  stage: build
  script: x
other:
  stage: build
  script: x
test:
  script: x
  variables: {J: job, K: job}
  needs: [build]
  rules:
    - variables: {K: rule}
      needs: [other]
"#;
    let p = run(yaml, &push("main"));
    let t = p.job("test").unwrap();
    let vars: Vec<(&str, &str)> = t
        .variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(vars, [("G", "top"), ("J", "job"), ("K", "rule")]);
    assert_eq!(t.needs.as_ref().unwrap()[0].name, "other");
}

#[test]
fn inherit_variables_filters_top_level() {
    let yaml = "variables: {A: a, B: b}\nj:\n  script: x\n  inherit:\n    variables: [B]\nk:\n  script: x\n  inherit:\n    variables: false\n";
    let p = run(yaml, &push("main"));
    assert_eq!(
        p.job("j").unwrap().variables.keys().collect::<Vec<_>>(),
        ["B"]
    );
    assert!(p.job("k").unwrap().variables.is_empty());
    assert_eq!(p.variables.len(), 2);
}

// ---- stages (§1)

#[test]
fn empty_stages_are_dropped_and_edges_wrap() {
    let yaml = "stages: [build, .post, test, deploy]\nz:\n  stage: .post\n  script: x\na:\n  stage: deploy\n  script: x\np:\n  stage: .pre\n  script: x\n";
    let p = run(yaml, &push("main"));
    assert_eq!(p.stages, [".pre", "deploy", ".post"]);
    assert_eq!(names(&p), ["p", "a", "z"]);
}

#[test]
fn only_edge_stage_jobs_do_not_make_a_pipeline() {
    let yaml = "p:\n  stage: .pre\n  script: x\nb:\n  script: x\n  only: [tags]\n";
    let p = run(yaml, &push("main"));
    assert!(!p.created);
}

// ---- parallel (§8.5, §12 #38–#43)

#[test]
fn parallel_count_names() {
    let yaml = "rspec:\n  script: x\n  parallel: 5\n\"rspec 35/2\":\n  script: x\n  parallel: 2\n";
    let p = run(yaml, &push("main"));
    assert_eq!(
        names(&p),
        [
            "rspec 1/5",
            "rspec 2/5",
            "rspec 3/5",
            "rspec 4/5",
            "rspec 5/5",
            "rspec 35/2 1/2",
            "rspec 35/2 2/2"
        ]
    );
    let j = p.job("rspec 3/5").unwrap();
    assert_eq!(j.parallel, Some((3, 5)));
    assert_eq!(j.job_variables["CI_NODE_INDEX"], "3");
    assert_eq!(j.job_variables["CI_NODE_TOTAL"], "5");
}

#[test]
fn simple_matrix_merges_values_over_job_variables() {
    let yaml = "rspec:\n  script: x\n  variables: {USER_VARIABLE: u, VAR_1: job}\n  parallel:\n    matrix:\n      - VAR_1: [A]\n        VAR_2: [B, C]\n";
    let p = run(yaml, &push("main"));
    assert_eq!(names(&p), ["rspec: [A, B]", "rspec: [A, C]"]);
    let j = p.job("rspec: [A, C]").unwrap();
    let vars: Vec<(&str, &str)> = j
        .variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(
        vars,
        [("USER_VARIABLE", "u"), ("VAR_1", "A"), ("VAR_2", "C")]
    );
    assert_eq!(j.parallel, Some((2, 2)));
}

#[test]
fn complex_matrix_order() {
    let yaml = r#"
rspec:
  script: x
  parallel:
    matrix:
      - PLATFORM: [centos]
        STACK: [ruby, python, java]
        DB: [postgresql, mysql]
      - PLATFORM: ubuntu
        PROVIDER: [aws, gcp]
"#;
    let p = run(yaml, &push("main"));
    assert_eq!(
        names(&p),
        [
            "rspec: [centos, ruby, postgresql]",
            "rspec: [centos, ruby, mysql]",
            "rspec: [centos, python, postgresql]",
            "rspec: [centos, python, mysql]",
            "rspec: [centos, java, postgresql]",
            "rspec: [centos, java, mysql]",
            "rspec: [ubuntu, aws]",
            "rspec: [ubuntu, gcp]",
        ]
    );
}

#[test]
fn dependencies_and_needs_expand_parallel_names() {
    let yaml = r#"
rspec:
  stage: build
  script: x
  parallel: 2
report:
  script: x
  dependencies: [rspec]
dag:
  script: x
  needs: [rspec]
"#;
    let p = run(yaml, &push("main"));
    assert_eq!(
        p.job("report").unwrap().dependencies,
        ["rspec 1/2", "rspec 2/2"]
    );
    let needs: Vec<&str> = p
        .job("dag")
        .unwrap()
        .needs
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(needs, ["rspec 1/2", "rspec 2/2"]);
}

#[test]
fn matrix_expressions_in_needs() {
    let yaml = r#"
build:
  stage: build
  script: x
  parallel:
    matrix:
      - OS: [linux, mac]
        ARCH: [amd64]
test:
  script: x
  parallel:
    matrix:
      - OS: [linux, mac]
        ARCH: [amd64]
  needs:
    - job: build
      parallel:
        matrix:
          - OS: ['$[[ matrix.OS ]]']
            ARCH: ['$[[ matrix.ARCH ]]']
"#;
    let p = run(yaml, &push("main"));
    let t = p.job("test: [linux, amd64]").unwrap();
    let needs: Vec<&str> = t
        .needs
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(needs, ["build: [linux, amd64]"]);
}

// ---- needs after rules (§8.1)

#[test]
fn need_removed_by_rules_fails_unless_optional() {
    let yaml = "build:\n  stage: build\n  script: x\n  only: [tags]\ntest:\n  script: x\n  needs: [build]\n";
    let err = plan(&config(yaml), &push("main")).unwrap_err();
    assert_eq!(
        err.0.message,
        "'test' job needs 'build' job, but 'build' does not exist in the pipeline. This might be because of the only, except, or rules keywords. To need a job that sometimes does not exist in the pipeline, use needs:optional."
    );
    let yaml = "build:\n  stage: build\n  script: x\n  only: [tags]\ntest:\n  script: x\n  needs: [{job: build, optional: true}]\n";
    let p = run(yaml, &push("main"));
    assert_eq!(p.job("test").unwrap().needs.as_deref(), Some(&[][..]));
}

#[test]
fn artifact_download_set() {
    let yaml = r#"
a:
  stage: build
  script: x
b:
  stage: build
  script: x
c:
  script: x
d:
  script: x
  needs: [{job: a, artifacts: false}, b]
e:
  stage: deploy
  script: x
  dependencies: []
"#;
    let p = run(yaml, &push("main"));
    assert_eq!(p.job("c").unwrap().dependencies, ["a", "b"]);
    assert_eq!(p.job("d").unwrap().dependencies, ["b"]);
    assert!(p.job("e").unwrap().dependencies.is_empty());
}

// ---- environment

#[test]
fn environment_variables() {
    let yaml = "deploy:\n  script: x\n  environment:\n    name: review/$CI_COMMIT_REF_NAME\n    url: https://$CI_COMMIT_REF_NAME.example.com\n";
    let p = run(yaml, &push("feat"));
    let j = p.job("deploy").unwrap();
    let env = j.environment.as_ref().unwrap();
    assert_eq!(env.name, "review/feat");
    assert_eq!(env.tier, "development");
    assert_eq!(env.action, "start");
    assert_eq!(
        j.job_variables["CI_ENVIRONMENT_URL"],
        "https://feat.example.com"
    );
    assert_eq!(j.job_variables["CI_ENVIRONMENT_SLUG"], env.slug);
}

// ---- trigger jobs

#[test]
fn trigger_child_pipeline_is_planned_as_a_job() {
    let yaml =
        "child:\n  trigger:\n    include: child.yml\n    strategy: depend\nb:\n  script: x\n";
    let p = run(yaml, &push("main"));
    let c = p.job("child").unwrap();
    assert!(c.trigger.is_some());
    assert!(c.script.is_empty());
}

// ---- status propagation (§8.3)

fn outcomes(pairs: &[(&str, Status)]) -> HashMap<String, Outcome> {
    pairs
        .iter()
        .map(|(n, s)| (n.to_string(), Outcome::new(*s)))
        .collect()
}

#[test]
fn stage_order_and_failure_skips_later_jobs() {
    let yaml = "a:\n  stage: build\n  script: x\nb:\n  script: x\nc:\n  stage: deploy\n  script: x\n  when: on_failure\nd:\n  stage: deploy\n  script: x\n  when: always\n";
    let p = run(yaml, &push("main"));
    let start = propagate(&p, &HashMap::new());
    assert_eq!(start.ready, ["a"]);
    assert_eq!(start.pipeline, Status::Pending);
    let after = propagate(&p, &outcomes(&[("a", Status::Failed)]));
    assert_eq!(after.skipped, ["b"]);
    assert_eq!(after.ready, ["c", "d"]);
    let done = propagate(
        &p,
        &outcomes(&[
            ("a", Status::Failed),
            ("c", Status::Success),
            ("d", Status::Success),
        ]),
    );
    assert_eq!(done.pipeline, Status::Failed);
}

#[test]
fn allowed_failure_counts_as_success() {
    let yaml = "a:\n  stage: build\n  script: x\n  allow_failure: true\nb:\n  script: x\n";
    let p = run(yaml, &push("main"));
    let after = propagate(&p, &outcomes(&[("a", Status::Failed)]));
    assert_eq!(after.ready, ["b"]);
    let done = propagate(
        &p,
        &outcomes(&[("a", Status::Failed), ("b", Status::Success)]),
    );
    assert_eq!(done.pipeline, Status::SuccessWithWarnings);
}

#[test]
fn exit_codes_decide_allowed_failure() {
    let yaml =
        "a:\n  stage: build\n  script: x\n  allow_failure:\n    exit_codes: [3]\nb:\n  script: x\n";
    let p = run(yaml, &push("main"));
    let mut fin = HashMap::new();
    fin.insert(
        "a".to_string(),
        Outcome {
            status: Status::Failed,
            exit_code: Some(3),
        },
    );
    assert_eq!(propagate(&p, &fin).ready, ["b"]);
    fin.insert(
        "a".to_string(),
        Outcome {
            status: Status::Failed,
            exit_code: Some(1),
        },
    );
    assert_eq!(propagate(&p, &fin).skipped, ["b"]);
}

#[test]
fn unplayed_optional_manual_job_skips_dag_dependents_but_not_stage_successors() {
    // Derived from GitLab's code, not one spec (docs/ci-yaml-semantics.md §8.3).
    let yaml = "m:\n  stage: build\n  script: x\n  when: manual\ndag:\n  script: x\n  needs: [m]\nstaged:\n  script: x\n";
    let p = run(yaml, &push("main"));
    let start = propagate(&p, &HashMap::new());
    assert_eq!(start.statuses["m"], Status::Manual);
    assert_eq!(start.statuses["dag"], Status::Skipped);
    assert_eq!(start.statuses["staged"], Status::Pending);
}

#[test]
fn blocking_manual_job_holds_later_stages() {
    let yaml = "m:\n  stage: build\n  script: x\n  when: manual\n  allow_failure: false\nlater:\n  script: x\n";
    let p = run(yaml, &push("main"));
    let start = propagate(&p, &HashMap::new());
    assert_eq!(start.statuses["later"], Status::Created);
    assert_eq!(start.pipeline, Status::Manual);
}

#[test]
fn dag_job_starts_before_its_stage() {
    let yaml = "a:\n  stage: build\n  script: x\nslow:\n  stage: build\n  script: x\nd:\n  stage: deploy\n  script: x\n  needs: [a]\n";
    let p = run(yaml, &push("main"));
    let after = propagate(
        &p,
        &outcomes(&[("a", Status::Success), ("slow", Status::Running)]),
    );
    assert_eq!(after.ready, ["d"]);
}

#[test]
fn child_pipeline_context_forwards_yaml_variables() {
    let yaml = "variables: {TOP: t}\nchild:\n  variables: {OWN: o}\n  trigger:\n    include: child.yml\nb:\n  script: x\n";
    let mut ctx = push("main");
    ctx.event.variables = vec![("PIPE".into(), "p".into())];
    let p = run(yaml, &ctx);
    let child = glci_test::plan::child_context(&ctx, p.job("child").unwrap()).unwrap();
    assert_eq!(child.event.source, PipelineSource::ParentPipeline);
    assert_eq!(
        child.event.variables,
        [
            ("TOP".to_string(), "t".to_string()),
            ("OWN".to_string(), "o".to_string())
        ]
    );
    assert!(glci_test::plan::child_context(&ctx, p.job("b").unwrap()).is_none());
    let child_plan = run("c:\n  script: x\n  only: [parent_pipelines]\n", &child);
    assert_eq!(names(&child_plan), ["c"]);
}

// ---- rules:if and workflow (§6.1, §7)

#[test]
fn rules_if_on_branch_tag_and_mr() {
    let yaml = r#"
build:
  script: x
  rules:
    - if: $CI_COMMIT_TAG
      when: never
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
      when: manual
"#;
    assert!(!run(yaml, &tag("v1")).created);
    assert_eq!(run(yaml, &mr("f", "main")).jobs[0].when, When::OnSuccess);
    assert_eq!(run(yaml, &push("main")).jobs[0].when, When::Manual);
    assert!(!run(yaml, &push("feature")).created);
}

#[test]
fn invalid_if_is_a_lint_error() {
    let tree = resolved("a:\n  script: x\n  rules:\n    - if: $VAR == 1\n", "ci.yml");
    let errs = validate(&tree).unwrap_err();
    assert_eq!(
        errs[0].message,
        "jobs:a:rules:rule if invalid expression syntax"
    );
    let tree2 = resolved("a:\n  script: x\n  rules:\n    - if: ${VAR}\n", "ci.yml");
    assert!(validate(&tree2).is_err());
}

#[test]
fn empty_string_or_trap_does_not_match() {
    // Derived: `$a || $b == '1'` with a="" evaluates to "" → no match.
    let yaml = "variables: {a: '', b: '1'}\nx:\n  script: x\n  rules:\n    - if: $a || $b == '1'\ny:\n  script: x\n  rules:\n    - if: $b == '1' || $a\n";
    assert_eq!(names(&run(yaml, &push("main"))), ["y"]);
}

#[test]
fn yaml_variables_shadow_predefined_in_rules() {
    let yaml = "variables: {CI_COMMIT_BRANCH: foo}\na:\n  script: x\n  rules:\n    - if: $CI_COMMIT_BRANCH == \"foo\"\n";
    assert_eq!(names(&run(yaml, &push("main"))), ["a"]);
}

#[test]
fn pipeline_variables_win_and_values_are_raw() {
    let yaml = "variables: {MODE: fast, REF: $MODE}\na:\n  script: x\n  rules:\n    - if: $MODE == \"slow\"\nb:\n  script: x\n  rules:\n    - if: $REF == '$MODE'\n";
    let mut ctx = push("main");
    ctx.event.variables = vec![("MODE".into(), "slow".into())];
    assert_eq!(names(&run(yaml, &ctx)), ["a", "b"]);
}

#[test]
fn job_name_and_matrix_values_are_visible_to_rules() {
    let yaml = "t:\n  script: x\n  parallel:\n    matrix:\n      - OS: [linux, mac]\n  rules:\n    - if: $OS == \"mac\" && $CI_JOB_NAME =~ /mac/\n";
    assert_eq!(names(&run(yaml, &push("main"))), ["t: [mac]"]);
}

#[test]
fn only_variables_keeps_implicit_refs() {
    // Derived: `only: {variables: [$X]}` with X set, MR pipeline → excluded.
    let yaml = "variables: {X: '1'}\na:\n  script: x\n  only:\n    variables: [$X]\nb:\n  script: x\n  only:\n    variables: [$X]\n    refs: [merge_requests]\n";
    assert_eq!(names(&run(yaml, &mr("f", "main"))), ["b"]);
    assert_eq!(names(&run(yaml, &push("main"))), ["a"]);
}

const WORKFLOW: &str = r#"
workflow:
  name: 'Pipeline for $CI_COMMIT_REF_NAME ($DEPLOY)'
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      variables: {DEPLOY: "no"}
    - if: $CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS
      when: never
    - if: $CI_COMMIT_BRANCH
variables:
  DEPLOY: "yes"
test:
  script: x
deploy:
  stage: deploy
  script: x
  rules:
    - if: $DEPLOY == "yes"
"#;

#[test]
fn workflow_rules_filter_and_set_variables() {
    let p = run(WORKFLOW, &push("main"));
    assert_eq!(p.name.as_deref(), Some("Pipeline for main (yes)"));
    assert_eq!(names(&p), ["test", "deploy"]);
    // With workflow:rules, jobs without rules run in MR pipelines too.
    let p = run(WORKFLOW, &mr("f", "main"));
    assert_eq!(names(&p), ["test"]);
    assert_eq!(p.variables["DEPLOY"].value, "no");
    assert_eq!(p.job("test").unwrap().variables["DEPLOY"].value, "no");
    let mut ctx = push("f");
    ctx.predefined
        .push(("CI_OPEN_MERGE_REQUESTS".into(), "group/project!1".into()));
    let p = run(WORKFLOW, &ctx);
    assert!(!p.created);
    assert_eq!(
        p.reason.as_deref(),
        Some("Pipeline filtered out by workflow rules.")
    );
    assert!(!run(WORKFLOW, &tag("v1")).created);
}

#[test]
fn blank_workflow_name_is_no_name() {
    let p = run(
        "workflow:\n  name: '  $NOPE '\na:\n  script: x\n",
        &push("main"),
    );
    assert_eq!(p.name, None);
}

#[test]
fn pipeline_status_composites() {
    let yaml = "m:\n  stage: build\n  script: x\n  when: manual\na:\n  script: x\nb:\n  stage: deploy\n  script: x\n";
    let p = run(yaml, &push("main"));
    // Only an unplayed optional manual job and successes: success.
    let done = propagate(
        &p,
        &outcomes(&[("a", Status::Success), ("b", Status::Success)]),
    );
    assert_eq!(done.pipeline, Status::Success);
    let canceled = propagate(&p, &outcomes(&[("a", Status::Canceled)]));
    assert_eq!(canceled.statuses["b"], Status::Skipped);
    assert_eq!(canceled.pipeline, Status::Canceled);
    let running = propagate(&p, &outcomes(&[("a", Status::Running)]));
    assert_eq!(running.pipeline, Status::Running);
    assert_eq!(running.statuses["b"], Status::Created);
}

#[test]
fn circular_variables_fail_pipeline_creation() {
    let yaml = "variables: {A: $B}\nj:\n  script: x\n  variables: {B: $A}\n";
    let err = plan(&config(yaml), &push("main")).unwrap_err();
    assert_eq!(
        err.0.message,
        "j: circular variable reference detected: [\"A\", \"B\"]"
    );
}

#[test]
fn extends_merges_only_policies() {
    // §12 #45: test `only: {refs: [master], variables: [$SOMETHING]}`, `script: ls`.
    let yaml = "something:\n  script: deploy\n  only:\n    variables: [$SOMETHING]\ntest:\n  extends: something\n  script: ls\n  only:\n    refs: [master]\n";
    let mut ctx = push("master");
    assert!(!run(yaml, &ctx).created);
    ctx.event.variables = vec![("SOMETHING".into(), "1".into())];
    let p = run(yaml, &ctx);
    assert_eq!(names(&p), ["something", "test"]);
    assert_eq!(p.job("test").unwrap().script, ["ls"]);
}

#[test]
fn excluded_jobs_say_why() {
    let yaml = "a:\n  script: x\n  rules:\n    - if: $NOPE\nb:\n  script: x\n  rules:\n    - when: never\nc:\n  script: x\n  except: [main]\nd:\n  script: x\n  only: [tags]\ne:\n  script: x\n";
    let p = run(yaml, &push("main"));
    let why: Vec<(&str, &str)> = p
        .excluded
        .iter()
        .map(|e| (e.name.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(why[0], ("a", "no rule in `rules` matched"));
    assert_eq!(why[1].0, "b");
    assert!(
        why[1].1.starts_with("the rule at .gitlab-ci.yml:8:"),
        "{}",
        why[1].1
    );
    assert_eq!(why[2], ("c", "`except` matches this pipeline"));
    assert_eq!(why[3], ("d", "`only` does not match this pipeline"));
    let mr = run(yaml, &mr("f", "main"));
    assert!(mr
        .excluded
        .iter()
        .any(|e| e.name == "e" && e.reason.contains("implicit")));
}
