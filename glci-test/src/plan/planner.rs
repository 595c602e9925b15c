//! Pipeline creation (`Gitlab::Ci::Pipeline::Chain`): workflow rules, then per job
//! `rules` or `only`/`except`, rule attributes, seed checks on `needs`, stage pruning.

use foldhash::HashSet;

use crate::plan::StrMap;

use super::condition;
use super::environment;
use super::lint::LintError;
use super::model::{AllowFailure, JobConfig, PipelineConfig, Policy, Variable, When};
use super::only_except::{self, PolicyEnv};
use super::parallel::{self, Instance};
use super::rules::{self, RuleEnv};
use super::scope::{last_wins, Scope};
use super::validate::{self, resolve_need};
use super::var_cycles;
use super::{Excluded, Plan, PlanContext, PlanError, PlannedEnvironment, PlannedJob, PlannedNeed};

const FILTERED: &str = "Pipeline filtered out by workflow rules.";
const NO_JOBS: &str = "Pipeline will not run for the selected trigger. The rules configuration prevented any jobs from being added to the pipeline.";
/// `ci_needs_size_limit`.
const MAX_NEEDS: usize = 50;

fn values(vars: &StrMap<Variable>) -> StrMap<String> {
    vars.iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect()
}

/// `workflow:name`. GitLab expands it against the pipeline's variables *after*
/// `sort_and_expand_all` (`Chain::PopulateMetadata`), so a name taken from a variable that
/// itself references others is fully expanded: GitLab's own example sets a workflow rule
/// variable to `"MR pipeline: $CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"` and names the pipeline
/// `$PROJECT1_PIPELINE_NAME`. On a reference cycle the values stay unexpanded, as in GitLab.
fn pipeline_name(
    source: &str,
    predefined: &StrMap<String>,
    top: &StrMap<Variable>,
    pipeline_vars: &StrMap<String>,
) -> Option<String> {
    let plain = |(k, v): (&String, &String)| crate::vars::Variable::new(k.clone(), v.clone());
    let mut all: Vec<crate::vars::Variable> = predefined.iter().map(plain).collect();
    all.extend(top.iter().map(|(k, v)| {
        let var = crate::vars::Variable::new(k.clone(), v.value.clone());
        if v.expand {
            var
        } else {
            var.raw()
        }
    }));
    all.extend(pipeline_vars.iter().map(plain));
    let all = crate::vars::sort_and_expand_all(&all, crate::vars::ExpandOptions::default())
        .unwrap_or(all);
    let pairs: Vec<(String, String)> = all.into_iter().map(|v| (v.key, v.value)).collect();
    let values = last_wins(&pairs);
    let mut scope = Scope::new();
    scope.push(&values);
    let expanded = condition::expand(source, &scope).trim().to_string();
    (!expanded.is_empty()).then_some(expanded)
}

/// What planning made of one job instance.
enum Outcome {
    /// Its stage does not exist (validation reports that; planning leaves it out).
    Skipped,
    Excluded(Excluded),
    Planned(Box<PlannedJob>),
}

/// Plans the pipeline for `ctx.event`. `Ok` with `created: false` when workflow rules filter
/// the pipeline or no job remains; `Err` where GitLab fails pipeline creation with an error.
pub fn plan(config: &PipelineConfig, ctx: &PlanContext) -> Result<Plan, PlanError> {
    let predefined = last_wins(&ctx.predefined);
    let late = last_wins(&ctx.late_variables);
    let pipeline_vars = last_wins(&ctx.event.variables);
    let globs = &config.matchers.globs;
    let regexes = &config.matchers.regexes;
    let project_path = predefined
        .get("CI_PROJECT_PATH")
        .map(String::as_str)
        .unwrap_or("");

    // Workflow: top-level variables are visible, job ones are not.
    let mut top = config.variables.clone();
    let mut name_source = None;
    let mut workflow_rule = None;
    if let Some(workflow) = &config.workflow {
        name_source = workflow.name.as_deref();
        if let Some(wf_rules) = &workflow.rules {
            let top_values = values(&top);
            let mut scope = Scope::new();
            scope
                .push(&predefined)
                .push(&top_values)
                .push(&late)
                .push(&pipeline_vars);
            let env = RuleEnv {
                scope: &scope,
                changed_files: ctx.changed_files.as_deref(),
                compare_to: &ctx.compare_to,
                files: &ctx.files,
                globs,
            };
            let matched = rules::first_match(wf_rules, &env).map_err(|e| {
                PlanError(LintError::new(
                    None,
                    format!("Failed to parse rule for workflow: {e}"),
                ))
            })?;
            match matched {
                Some(rule) if rule.when != Some(When::Never) => {
                    workflow_rule = wf_rules.iter().position(|r| std::ptr::eq(r, rule));
                    for (k, v) in &rule.variables {
                        top.insert(k.clone(), Variable::plain(v.clone()));
                    }
                }
                _ => {
                    return Ok(Plan {
                        created: false,
                        reason: Some(FILTERED.to_string()),
                        ..Plan::default()
                    })
                }
            }
        }
    }
    let name = name_source.and_then(|n| pipeline_name(n, &predefined, &top, &pipeline_vars));

    let default_only = Policy {
        refs: Some(vec!["branches".to_string(), "tags".to_string()]),
        ..Policy::default()
    };
    let has_workflow_rules = config.has_workflow_rules();
    let expanded = validate::expand(config);
    // Every job is planned on its own against the pipeline-wide scope, so big pipelines
    // plan them on two threads; the outcomes are taken in file order, so the first error
    // and the order of jobs and exclusions are the sequential loop's.
    let plan_job = |(inst, job): &(Instance, &JobConfig)| -> Result<Outcome, PlanError> {
        let Some(stage_index) = config.stage_index(&job.stage) else {
            return Ok(Outcome::Skipped);
        };
        let mut yaml: StrMap<Variable> = top
            .iter()
            .filter(|(k, _)| job.inherit.variables.allows(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in &job.variables {
            yaml.insert(k.clone(), v.clone());
        }
        for (k, v) in &inst.matrix {
            yaml.insert(k.clone(), Variable::plain(v.clone()));
        }
        let yaml_values = values(&yaml);
        let mut job_vars = job_predefined(inst, job);
        let env_planned = job.environment.as_ref().map(|e| {
            let mut scope = Scope::new();
            scope
                .push(&predefined)
                .push(&job_vars)
                .push(&yaml_values)
                .push(&pipeline_vars);
            let name = condition::expand(&e.name, &scope);
            let slug = environment::slug(&name);
            // The URL may use the environment's own variables (GitLab's example:
            // `https://$CI_ENVIRONMENT_SLUG.example.com`, `Ci::Build#expanded_environment_url`).
            let mut named = StrMap::default();
            named.insert("CI_ENVIRONMENT_NAME".into(), name.clone());
            named.insert("CI_ENVIRONMENT_SLUG".into(), slug.clone());
            scope.push(&named);
            let url = e.url.as_ref().map(|u| condition::expand(u, &scope));
            let tier = e
                .deployment_tier
                .clone()
                .unwrap_or_else(|| environment::guess_tier(&name).to_string());
            PlannedEnvironment {
                slug,
                name,
                url,
                action: e.action.clone().unwrap_or_else(|| "start".to_string()),
                tier,
                on_stop: e.on_stop.clone(),
                auto_stop_in: e
                    .auto_stop_in
                    .as_ref()
                    .map(|a| condition::expand(a, &scope)),
            }
        });
        if let Some(env) = &env_planned {
            job_vars.insert("CI_ENVIRONMENT_NAME".into(), env.name.clone());
            job_vars.insert("CI_ENVIRONMENT_SLUG".into(), env.slug.clone());
            job_vars.insert("CI_ENVIRONMENT_ACTION".into(), env.action.clone());
            job_vars.insert("CI_ENVIRONMENT_TIER".into(), env.tier.clone());
            if let Some(url) = &env.url {
                job_vars.insert("CI_ENVIRONMENT_URL".into(), url.clone());
            }
        }
        let mut scope = Scope::new();
        scope
            .push(&predefined)
            .push(&job_vars)
            .push(&yaml_values)
            .push(&late)
            .push(&pipeline_vars);

        let mut when = job.when.unwrap_or_default();
        let mut allow_failure = job
            .allow_failure
            .clone()
            .unwrap_or(AllowFailure::Bool(job.when == Some(When::Manual)));
        let mut start_in = job.start_in.clone();
        let mut interruptible = job.interruptible;
        let mut needs = job.needs.clone();
        let mut matched_rule = None;
        if let Some(job_rules) = &job.rules {
            let env = RuleEnv {
                scope: &scope,
                changed_files: ctx.changed_files.as_deref(),
                compare_to: &ctx.compare_to,
                files: &ctx.files,
                globs,
            };
            let matched = rules::first_match(job_rules, &env).map_err(|e| {
                PlanError(LintError::new(
                    Some(&job.span),
                    format!("Failed to parse rule for {}: {e}", inst.name),
                ))
            })?;
            let Some(rule) = matched else {
                return Ok(Outcome::Excluded(Excluded::new(
                    &inst.name,
                    "no rule in `rules` matched",
                )));
            };
            if rule.when == Some(When::Never) {
                return Ok(Outcome::Excluded(Excluded::new(
                    &inst.name,
                    format!("the rule at {} has `when: never`", rule.span),
                )));
            }
            matched_rule = job_rules.iter().position(|r| std::ptr::eq(r, rule));
            if let Some(w) = rule.when {
                when = w;
            }
            if let Some(af) = rule.allow_failure {
                allow_failure = AllowFailure::Bool(af);
            }
            if rule.start_in.is_some() {
                start_in = rule.start_in.clone();
            }
            if rule.interruptible.is_some() {
                interruptible = rule.interruptible;
            }
            // Only a non-empty rule `needs` replaces the job's (docs/ci-yaml-semantics.md,
            // Appendix A.7).
            if let Some(rn) = rule.needs.as_ref().filter(|n| !n.is_empty()) {
                needs = Some(rn.clone());
            }
            for (k, v) in &rule.variables {
                yaml.insert(k.clone(), Variable::plain(v.clone()));
            }
        } else {
            let penv = PolicyEnv {
                event: &ctx.event,
                project_path,
                scope: &scope,
                changed_files: ctx.changed_files.as_deref(),
                globs,
                regexes,
            };
            // The implicit `only: {refs: [branches, tags]}` is deep-merged under the user's
            // `only`, unless `workflow:rules` exists or the job has a `rules: null` key.
            let no_implicit_only = has_workflow_rules || job.rules_key_without_rules;
            let only = match (&job.only, no_implicit_only) {
                (None, false) => Some(default_only.clone()),
                (Some(o), false) if o.refs.is_none() => Some(Policy {
                    refs: default_only.refs.clone(),
                    ..o.clone()
                }),
                (o, _) => o.clone(),
            };
            if only
                .as_ref()
                .is_some_and(|o| !only_except::all_satisfied(o, &penv))
            {
                let why = if job.only.is_none() {
                    "the implicit `only: [branches, tags]` does not match this pipeline"
                } else {
                    "`only` does not match this pipeline"
                };
                return Ok(Outcome::Excluded(Excluded::new(&inst.name, why)));
            }
            if job
                .except
                .as_ref()
                .is_some_and(|e| only_except::any_satisfied(e, &penv))
            {
                return Ok(Outcome::Excluded(Excluded::new(
                    &inst.name,
                    "`except` matches this pipeline",
                )));
            }
        }
        // The job's variables as GitLab sorts them for the runner: pipeline variables over
        // YAML ones.
        // Copied only when there are pipeline variables to lay over the YAML ones.
        let with_pipeline_vars;
        let sortable = if pipeline_vars.is_empty() {
            &yaml
        } else {
            let mut all = yaml.clone();
            for (k, v) in &pipeline_vars {
                all.insert(k.clone(), Variable::plain(v.clone()));
            }
            with_pipeline_vars = all;
            &with_pipeline_vars
        };
        if let Some(e) = var_cycles::cycle_error(sortable) {
            return Err(PlanError(LintError::new(
                Some(&job.span),
                format!("{}: {e}", inst.name),
            )));
        }
        if when == When::Delayed && start_in.is_none() {
            start_in = Some(String::new());
        }

        let pipeline_needs: Vec<String> = needs
            .iter()
            .flatten()
            .filter(|n| n.pipeline && n.artifacts && !n.job.is_empty())
            .map(|n| n.job.clone())
            .collect();
        let planned_needs = match needs {
            None => None,
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for need in list.iter().filter(|n| !n.external) {
                    let need = resolve_need(need, inst, &inst.name).map_err(PlanError)?;
                    for n in parallel::need_names(&need, &expanded.parallel_names) {
                        out.push(PlannedNeed {
                            name: n,
                            artifacts: need.artifacts,
                            optional: need.optional,
                        });
                    }
                }
                Some(out)
            }
        };

        let tags = job
            .tags
            .iter()
            .map(|t| condition::expand_existing(t, &scope))
            .collect();
        // `Seed::Build#resource_group`: the key with the job's variables expanded.
        let resource_group = job
            .resource_group
            .as_ref()
            .map(|g| condition::expand(g, &scope));
        Ok(Outcome::Planned(Box::new(PlannedJob {
            name: inst.name.clone(),
            group: job.name.clone(),
            stage: job.stage.clone(),
            stage_index,
            when,
            start_in,
            allow_failure,
            needs: planned_needs,
            image: job.image.clone(),
            services: job.services.clone(),
            variables: yaml,
            job_variables: job_vars,
            matched_rule,
            matrix: inst.matrix.clone(),
            before_script: job.before_script.clone(),
            script: job.script.clone(),
            after_script: job.after_script.clone(),
            artifacts: job.artifacts.clone(),
            cache: job.cache.clone().unwrap_or_default(),
            dependencies: Vec::new(),
            pipeline_needs,
            retry: job.retry.clone(),
            timeout: job.timeout.clone(),
            environment: env_planned,
            parallel: inst.node,
            trigger: job.trigger.clone(),
            tags,
            interruptible,
            coverage: job.coverage.clone(),
            resource_group,
            release: job.release.clone(),
        })))
    };
    let mut jobs = Vec::with_capacity(expanded.jobs.len());
    let mut excluded = Vec::new();
    for outcome in crate::threads::map_in_order(&expanded.jobs, plan_job) {
        match outcome? {
            Outcome::Skipped => {}
            Outcome::Excluded(e) => excluded.push(e),
            Outcome::Planned(job) => jobs.push(*job),
        }
    }

    seed_needs(&mut jobs)?;

    if jobs.iter().all(|j| j.stage == ".pre" || j.stage == ".post") {
        return Ok(Plan {
            created: false,
            reason: Some(NO_JOBS.to_string()),
            name,
            variables: top,
            workflow_rule,
            excluded,
            ..Plan::default()
        });
    }
    let mut jobs = sorted_by_stage(jobs);
    let present: HashSet<usize> = jobs.iter().map(|j| j.stage_index).collect();
    let stages = config
        .stages
        .iter()
        .enumerate()
        .filter(|(i, _)| present.contains(i))
        .map(|(_, s)| s.clone())
        .collect();
    fill_dependencies(&mut jobs, config, &expanded.parallel_names);
    Ok(Plan {
        created: true,
        reason: None,
        name,
        variables: top,
        workflow_rule,
        stages,
        jobs,
        excluded,
    })
}

/// `jobs` stably sorted by stage. The sort orders indices and then moves each job once:
/// sorting the jobs themselves moved these large structs at every step of the merge sort.
fn sorted_by_stage(jobs: Vec<PlannedJob>) -> Vec<PlannedJob> {
    let mut order: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.stage_index, i))
        .collect();
    order.sort_unstable();
    let mut slots: Vec<Option<PlannedJob>> = jobs.into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&(_, i)| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// Per-job predefined variables rules can see.
fn job_predefined(inst: &Instance, job: &JobConfig) -> StrMap<String> {
    let mut vars = StrMap::with_capacity_and_hasher(6, Default::default());
    vars.insert("CI_JOB_NAME".to_string(), inst.name.clone());
    vars.insert("CI_JOB_STAGE".to_string(), job.stage.clone());
    let (index, total) = inst.node.unwrap_or((0, 1));
    if inst.node.is_some() {
        vars.insert("CI_NODE_INDEX".to_string(), index.to_string());
    }
    vars.insert("CI_NODE_TOTAL".to_string(), total.to_string());
    vars
}

/// Seed checks after rules: too many needs, needs on jobs that are not in the pipeline
/// (optional ones are dropped).
fn seed_needs(jobs: &mut [PlannedJob]) -> Result<(), PlanError> {
    let names: HashSet<String> = jobs.iter().map(|j| j.name.clone()).collect();
    for job in jobs.iter_mut() {
        let Some(needs) = &mut job.needs else {
            continue;
        };
        if needs.len() > MAX_NEEDS {
            return Err(PlanError(LintError::new(
                None,
                format!(
                    "{}: one job can only need {MAX_NEEDS} others, but you have listed {}. See needs keyword documentation for more details",
                    job.name,
                    needs.len()
                ),
            )));
        }
        if let Some(missing) = needs
            .iter()
            .find(|n| !n.optional && !names.contains(&n.name))
        {
            return Err(PlanError(LintError::new(
                None,
                format!(
                    "'{job}' job needs '{n}' job, but '{n}' does not exist in the pipeline. This might be because of the only, except, or rules keywords. To need a job that sometimes does not exist in the pipeline, use needs:optional.",
                    job = job.name,
                    n = missing.name
                ),
            )));
        }
        needs.retain(|n| names.contains(&n.name));
    }
    Ok(())
}

/// The artifact download set (docs/ci-yaml-semantics.md §8.2): earlier-stage jobs or `needs`
/// with artifacts, intersected with `dependencies` when given.
fn fill_dependencies(
    jobs: &mut [PlannedJob],
    config: &PipelineConfig,
    parallel_names: &StrMap<Vec<String>>,
) {
    // `jobs` is sorted by stage here, so the jobs of earlier stages are a prefix of `order`:
    // taking that prefix instead of testing every job's stage keeps a pipeline of many
    // `needs`-less jobs linear in lookups (it was a hash lookup per pair of jobs).
    debug_assert!(jobs
        .windows(2)
        .all(|w| w[0].stage_index <= w[1].stage_index));
    let order: Vec<(usize, String)> = jobs
        .iter()
        .map(|j| (j.stage_index, j.name.clone()))
        .collect();
    for job in jobs.iter_mut() {
        let mut set: Vec<String> = match &job.needs {
            Some(needs) => needs
                .iter()
                .filter(|n| n.artifacts)
                .map(|n| n.name.clone())
                .collect(),
            None => {
                let earlier = order.partition_point(|(s, _)| *s < job.stage_index);
                order[..earlier].iter().map(|(_, n)| n.clone()).collect()
            }
        };
        let listed = config
            .jobs
            .get(&job.group)
            .and_then(|j| j.dependencies.as_ref());
        if let Some(deps) = listed {
            let allowed: HashSet<&str> = deps
                .iter()
                .flat_map(|d| match parallel_names.get(d) {
                    Some(names) => names.iter().map(String::as_str).collect::<Vec<_>>(),
                    None => vec![d.as_str()],
                })
                .collect();
            set.retain(|n| allowed.contains(n.as_str()));
        }
        job.dependencies = set;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, resolve_tree};
    use crate::plan::{validate, Event, PipelineSource};

    fn name_for(yaml: &str, predefined: &[(&str, &str)]) -> Option<String> {
        let tree = parse_yaml(yaml, ".gitlab-ci.yml")
            .and_then(resolve_tree)
            .ok()?;
        let config = validate(&tree).ok()?;
        let ctx = PlanContext {
            event: Event {
                source: PipelineSource::MergeRequestEvent,
                ..Event::default()
            },
            predefined: predefined
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PlanContext::default()
        };
        plan(&config, &ctx).ok().and_then(|p| p.name)
    }

    #[test]
    fn workflow_name_expands_variables_nested_in_rule_variables() {
        // GitLab's workflow:name documentation example.
        let yaml = r#"
variables:
  PROJECT1_PIPELINE_NAME: 'Default pipeline name'
workflow:
  name: '$PROJECT1_PIPELINE_NAME'
  rules:
    - if: '$CI_PIPELINE_SOURCE == "merge_request_event"'
      variables:
        PROJECT1_PIPELINE_NAME: 'MR pipeline: $CI_MERGE_REQUEST_SOURCE_BRANCH_NAME'
    - when: always
job:
  script: x
"#;
        let mr = [
            ("CI_PIPELINE_SOURCE", "merge_request_event"),
            ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "feature"),
        ];
        assert_eq!(name_for(yaml, &mr).as_deref(), Some("MR pipeline: feature"));
        let push = [("CI_PIPELINE_SOURCE", "push")];
        assert_eq!(
            name_for(yaml, &push).as_deref(),
            Some("Default pipeline name")
        );
        // A raw variable is not expanded inside; a cycle leaves values as written.
        let raw = "variables:\n  N: {value: 'x $Y', expand: false}\n  Y: y\nworkflow:\n  name: $N\njob:\n  script: x\n";
        assert_eq!(name_for(raw, &[]).as_deref(), Some("x $Y"));
        let cycle =
            "variables:\n  A: 'a $B'\n  B: 'b $A'\nworkflow:\n  name: $A\njob:\n  script: x\n";
        assert_eq!(name_for(cycle, &[]).as_deref(), Some("a $B"));
    }

    /// A pipeline big enough to be read, checked and planned on two threads: `extra(i)` is
    /// added to job `i`; odd jobs run only on tags.
    fn big(extra: impl Fn(usize) -> &'static str) -> String {
        let mut y = String::new();
        for i in 0..300 {
            let rules = if i % 2 == 1 {
                "  rules: [{if: $CI_COMMIT_TAG}]\n"
            } else {
                ""
            };
            y.push_str(&format!(
                "job-{i}:\n  script: [echo {i}]\n{rules}{}",
                extra(i)
            ));
        }
        y
    }

    fn plan_of(yaml: &str) -> Result<Plan, String> {
        let tree = parse_yaml(yaml, ".gitlab-ci.yml")
            .and_then(resolve_tree)
            .map_err(|e| e.to_string())?;
        let config = validate(&tree).map_err(|e| format!("{e:?}"))?;
        let ctx = PlanContext {
            event: Event {
                source: PipelineSource::Push,
                branch: Some("main".into()),
                ..Event::default()
            },
            ..PlanContext::default()
        };
        plan(&config, &ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn big_pipelines_keep_file_order_and_the_first_error() {
        let p = plan_of(&big(|_| "")).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = p.jobs.iter().map(|j| j.name.clone()).collect();
        let want: Vec<String> = (0..300).step_by(2).map(|i| format!("job-{i}")).collect();
        assert_eq!(names, want);
        let excluded: Vec<&str> = p.excluded.iter().map(|e| e.name.as_str()).collect();
        let want: Vec<String> = (1..300).step_by(2).map(|i| format!("job-{i}")).collect();
        assert_eq!(excluded, want);

        // Entry errors come back in file order, all of them.
        let e = plan_of(&big(|i| {
            if i == 10 || i == 250 {
                "  bogus: 1\n"
            } else {
                ""
            }
        }))
        .err()
        .unwrap_or_default();
        let (first, second) = (e.find("jobs:job-10"), e.find("jobs:job-250"));
        assert!(first.is_some() && second.is_some() && first < second, "{e}");
        // Logical and planning errors: the first job's.
        let e = plan_of(&big(|i| {
            if i == 30 || i == 280 {
                "  needs: [nope]\n"
            } else {
                ""
            }
        }))
        .err()
        .unwrap_or_default();
        assert!(e.contains("job-30 job: undefined need: nope"), "{e}");
        let cycle = |i| {
            if i == 20 || i == 250 {
                "  variables: {A: $B, B: $A}\n"
            } else {
                ""
            }
        };
        let e = plan_of(&big(cycle)).err().unwrap_or_default();
        assert!(e.contains("job-20") && !e.contains("job-250"), "{e}");
    }
}
