//! Every variable a planned job gets, each definition with where it came from, in the order
//! GitLab's variables builder (`Gitlab::Ci::Variables::Builder#scoped_variables`) stacks them
//! — later wins: predefined, YAML (global, `workflow:rules:variables`, job, `parallel:matrix`,
//! the matched rule's `rules:variables`), the pipeline's user, dotenv reports of the jobs it
//! depends on, the project's CI/CD settings, pipeline variables. `cargo glci variables`
//! prints it.
//!
//! The values are the planner's own: the job's predefined and YAML variables as planned, the
//! settings and pipeline variables of the options, the dotenv of the last run of each job this
//! one depends on (see [`super::past_runs`]). The planner records which rule matched and the
//! instance's matrix values; the layers below it are read from the validated configuration.

use std::fmt;
use std::path::Path;

use crate::plan::model::{Rule, Variable as YamlVariable};
use crate::plan::predefined;
use crate::plan::{PlannedJob, StrMap};
use crate::vars::{self, ExpandOptions, Variable};

use super::{past_runs, pipeline_context, PipelineOptions, Planned};

/// Where one definition of a variable comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Predefined for the job (`CI_JOB_NAME`, `CI_NODE_INDEX`, `CI_ENVIRONMENT_*`...).
    JobPredefined,
    /// Predefined for the pipeline (`CI_COMMIT_*`, `CI_PROJECT_*`, `CI_PIPELINE_*`...).
    Predefined,
    /// The top-level `variables:`.
    Global,
    /// `variables:` of the `workflow:rules` entry that let the pipeline be created.
    WorkflowRule {
        index: usize,
        condition: Option<String>,
    },
    /// The job's own `variables:`.
    Job,
    /// This instance's `parallel:matrix` values.
    Matrix,
    /// `variables:` of the job's rule that matched.
    Rule {
        index: usize,
        condition: Option<String>,
    },
    /// YAML variables whose layer could not be told apart (should not happen).
    Yaml,
    /// `GITLAB_USER_*`: who the pipeline runs for.
    User,
    /// The `artifacts:reports:dotenv` of a job this one depends on, from its last run.
    Dotenv { job: String, pipeline_id: u64 },
    /// The project's CI/CD settings (`--masked-var`, `--file-var`, env files).
    Settings,
    /// A pipeline variable (`--var`): as a trigger, schedule or manual run passes it.
    Pipeline,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = |f: &mut fmt::Formatter<'_>, what: &str, index, condition: &Option<String>| {
            match condition {
                Some(c) => write!(f, "{what}[{index}] (if: {c})"),
                None => write!(f, "{what}[{index}]"),
            }
        };
        match self {
            Origin::JobPredefined => write!(f, "predefined (job)"),
            Origin::Predefined => write!(f, "predefined"),
            Origin::Global => write!(f, "global variables"),
            Origin::WorkflowRule { index, condition } => {
                rule(f, "workflow:rules", index, condition)
            }
            Origin::Job => write!(f, "job variables"),
            Origin::Matrix => write!(f, "parallel:matrix"),
            Origin::Rule { index, condition } => rule(f, "rules", index, condition),
            Origin::Yaml => write!(f, "YAML variables"),
            Origin::User => write!(f, "pipeline user"),
            Origin::Dotenv { job, pipeline_id } => {
                write!(f, "dotenv of `{job}` (pipeline #{pipeline_id})")
            }
            Origin::Settings => write!(f, "project settings"),
            Origin::Pipeline => write!(f, "pipeline variables"),
        }
    }
}

/// One definition of a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub variable: Variable,
    pub origin: Origin,
}

/// The variables of one job, every definition in precedence order (later wins).
#[derive(Debug, Clone)]
pub struct JobVariables {
    pub job: String,
    pub definitions: Vec<Definition>,
    /// Jobs this one takes dotenv variables from that glci has no finished run of.
    pub dotenv_unknown: Vec<String>,
}

/// Why a job's variables cannot be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("no pipeline is created: {0}")]
    NotCreated(String),
    #[error("no job `{job}` in this pipeline (jobs: {})", jobs.join(", "))]
    NoSuchJob { job: String, jobs: Vec<String> },
    /// The job exists but this event leaves it out.
    #[error("job `{job}` is not in this pipeline: {reason}")]
    Excluded { job: String, reason: String },
}

/// The variables job `name` of `planned` gets. `home` is glci's data directory, where the
/// dotenv reports of earlier runs are found (`None`: not looked up).
pub fn trace(
    opts: &PipelineOptions,
    planned: &Planned,
    name: &str,
    home: Option<&Path>,
) -> Result<JobVariables, TraceError> {
    let plan = &planned.plan;
    if !plan.created {
        return Err(TraceError::NotCreated(
            plan.reason.clone().unwrap_or_default(),
        ));
    }
    let job =
        plan.job(name)
            .ok_or_else(|| match plan.excluded.iter().find(|e| e.name == name) {
                Some(e) => TraceError::Excluded {
                    job: name.to_string(),
                    reason: e.reason.clone(),
                },
                None => TraceError::NoSuchJob {
                    job: name.to_string(),
                    jobs: plan.jobs.iter().map(|j| j.name.clone()).collect(),
                },
            })?;
    let mut defs: Vec<Definition> = Vec::new();
    let mut push = |variable: Variable, origin: &Origin| {
        defs.push(Definition {
            variable,
            origin: origin.clone(),
        })
    };
    // `job_spec`'s order: job predefined, pipeline predefined, YAML, user.
    for (k, v) in &job.job_variables {
        push(Variable::new(k, v), &Origin::JobPredefined);
    }
    for (k, v) in &planned.predefined {
        push(Variable::new(k, v), &Origin::Predefined);
    }
    for (variable, origin) in yaml_layers(planned, job) {
        push(variable, &origin);
    }
    let ctx = pipeline_context(opts);
    for (k, v) in predefined::user_variables(&planned.loaded.facts, &ctx) {
        push(Variable::new(k, v), &Origin::User);
    }
    // Dependencies' dotenv variables: between YAML and settings, non-public.
    let mut dotenv_unknown = Vec::new();
    for dep in &job.dependencies {
        let last = home.and_then(|h| past_runs::last_job(h, &planned.loaded.facts.top_level, dep));
        match last {
            Some((pipeline, record)) => {
                let origin = Origin::Dotenv {
                    job: dep.clone(),
                    pipeline_id: pipeline.id,
                };
                for (k, v) in &record.dotenv {
                    push(Variable::new(k, v).private(), &origin);
                }
            }
            None => dotenv_unknown.push(dep.clone()),
        }
    }
    for s in &opts.settings_variables {
        let mut v = Variable::new(&s.key, &s.value).private();
        v.masked = s.masked;
        v.file = s.file;
        push(v, &Origin::Settings);
    }
    for (k, v) in &opts.event.variables {
        push(Variable::new(k, v).private(), &Origin::Pipeline);
    }
    Ok(JobVariables {
        job: job.name.clone(),
        definitions: defs,
        dotenv_unknown,
    })
}

/// The job's YAML variables layer by layer, as the planner assembled them: inherited global
/// variables (with the workflow rule's over them), the job's, the matrix values, the matched
/// rule's. Anything the layers do not account for is added as [`Origin::Yaml`], so the
/// winning values are always the planned ones.
fn yaml_layers(planned: &Planned, job: &PlannedJob) -> Vec<(Variable, Origin)> {
    let config = &planned.loaded.config;
    let mut out: Vec<(Variable, Origin)> = Vec::new();
    let yaml = |k: &str, v: &YamlVariable| {
        let var = Variable::new(k, &v.value);
        if v.expand {
            var
        } else {
            var.raw()
        }
    };
    let condition = |r: &Rule| r.if_.as_ref().map(|e| e.source().to_string());
    let Some(configured) = config.jobs.get(&job.group) else {
        return job
            .variables
            .iter()
            .map(|(k, v)| (yaml(k, v), Origin::Yaml))
            .collect();
    };
    let inherits = |k: &str| configured.inherit.variables.allows(k);
    for (k, v) in config.variables.iter().filter(|(k, _)| inherits(k)) {
        out.push((yaml(k, v), Origin::Global));
    }
    let workflow_rule = planned.plan.workflow_rule.and_then(|i| {
        let rules = config.workflow.as_ref()?.rules.as_ref()?;
        Some((i, rules.get(i)?))
    });
    if let Some((index, rule)) = workflow_rule {
        let origin = Origin::WorkflowRule {
            index,
            condition: condition(rule),
        };
        for (k, v) in rule.variables.iter().filter(|(k, _)| inherits(k)) {
            out.push((Variable::new(k, v), origin.clone()));
        }
    }
    for (k, v) in &configured.variables {
        out.push((yaml(k, v), Origin::Job));
    }
    for (k, v) in &job.matrix {
        out.push((Variable::new(k, v), Origin::Matrix));
    }
    let matched = job.matched_rule.and_then(|i| {
        let rules = configured.rules.as_ref()?;
        Some((i, rules.get(i)?))
    });
    if let Some((index, rule)) = matched {
        let origin = Origin::Rule {
            index,
            condition: condition(rule),
        };
        for (k, v) in &rule.variables {
            out.push((Variable::new(k, v), origin.clone()));
        }
    }
    // The planned values are the truth: whatever the layers got wrong is said plainly.
    let layered: StrMap<&Variable> = out.iter().map(|(v, _)| (v.key.clone(), v)).collect();
    let mut missing = Vec::new();
    for (k, v) in &job.variables {
        let agrees = layered
            .get(k)
            .is_some_and(|l| l.value == v.value && l.raw != v.expand);
        if !agrees {
            missing.push((yaml(k, v), Origin::Yaml));
        }
    }
    out.retain(|(v, _)| job.variables.contains_key(&v.key));
    out.extend(missing);
    out
}

impl JobVariables {
    /// Index of the winning definition of each key.
    fn winners(&self) -> StrMap<usize> {
        let mut last = StrMap::default();
        for (i, d) in self.definitions.iter().enumerate() {
            last.insert(d.variable.key.clone(), i);
        }
        last
    }

    /// Each definition with the one that overrides it (`None` for the winners), in
    /// precedence order.
    pub fn with_overrides(&self) -> Vec<(&Definition, Option<&Definition>)> {
        let winners = self.winners();
        self.definitions
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let w = winners[&d.variable.key];
                (d, (w != i).then(|| &self.definitions[w]))
            })
            .collect()
    }

    /// The definitions the job ends up with, in precedence order.
    pub fn effective(&self) -> Vec<&Definition> {
        self.with_overrides()
            .into_iter()
            .filter(|(_, by)| by.is_none())
            .map(|(d, _)| d)
            .collect()
    }

    /// The values as the job's shell sees them, by key: GitLab's expansion for the runner
    /// (`sort_and_expand_all`), references the runner resolves left as written.
    pub fn expanded(&self) -> StrMap<String> {
        let vars: Vec<Variable> = self
            .definitions
            .iter()
            .map(|d| d.variable.clone())
            .collect();
        let expanded = vars::sort_and_expand_all(&vars, ExpandOptions::FOR_RUNNER).unwrap_or(vars);
        expanded.into_iter().map(|v| (v.key, v.value)).collect()
    }

    /// How `value` may be shown: masked variables' values replaced by `[MASKED]`, as in the
    /// job log.
    pub fn masked(&self, value: &str) -> String {
        let mut out = value.to_string();
        for d in self.definitions.iter().filter(|d| d.variable.masked) {
            if !d.variable.value.is_empty() {
                out = out.replace(&d.variable.value, "[MASKED]");
            }
        }
        out
    }
}
