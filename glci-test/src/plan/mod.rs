//! From a resolved configuration and an event to the pipeline GitLab would create: which
//! jobs, in which stages, with which `when`, `needs` and variables.
//!
//! [`validate()`] reads the resolved tree into a [`PipelineConfig`] (entry and logical
//! validation, GitLab's messages); [`plan`] evaluates `workflow`, `rules`/`only`/`except`,
//! expands `parallel`, and checks needs against the jobs that remain; [`status`] propagates
//! job statuses through the planned DAG.

pub mod cache_key;
mod changes;
mod child;
mod condition;
mod environment;
mod event;
mod json;
pub mod lint;
pub mod model;
mod only_except;
pub mod parallel;
mod planner;
pub mod predefined;
mod regexp;
mod rules;
mod scope;
pub mod status;
mod validate;
mod var_cycles;
mod warnings;

pub use changes::changed_files;
pub use child::child_context;
pub use environment::{guess_tier, slug as environment_slug};
pub use event::{Event, PipelineSource};
pub use lint::LintError;
pub use model::{
    AllowFailure, Artifacts, Cache, Environment, Image, JobConfig, PipelineConfig, Retry, Service,
    StrMap, Trigger, Variable, When,
};
pub use planner::plan;
pub use validate::validate;
pub use warnings::warnings;

/// Everything planning needs besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct PlanContext {
    pub event: Event,
    /// Predefined variables usable in rules (`predefined::rules_variables`), in GitLab's
    /// order; YAML variables override them.
    pub predefined: Vec<(String, String)>,
    /// Variables GitLab appends after the YAML ones (`GITLAB_USER_*`), which YAML can not
    /// override.
    pub late_variables: Vec<(String, String)>,
    /// Files changed by the push or MR; `None` when there is no diff (tags, new branches,
    /// schedules...), which makes every `changes` clause true.
    pub changed_files: Option<Vec<String>>,
    /// `rules:changes:compare_to` ref → files changed between its merge base and the commit.
    pub compare_to: StrMap<Vec<String>>,
    /// Every file of the commit, for `rules:exists`.
    pub files: Vec<String>,
}

/// Why planning failed where GitLab would refuse to create the pipeline with an error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub LintError);

/// One `needs` entry of a planned job, with parallel names expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedNeed {
    pub name: String,
    pub artifacts: bool,
    pub optional: bool,
}

/// The environment of a planned job with variables expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEnvironment {
    pub name: String,
    pub slug: String,
    pub url: Option<String>,
    pub action: String,
    pub tier: String,
    /// The job that stops this environment (`on_stop`).
    pub on_stop: Option<String>,
    /// `auto_stop_in`, expanded (a ChronicDuration, or `never`).
    pub auto_stop_in: Option<String>,
}

/// A job of the created pipeline.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub name: String,
    /// The configured job this one comes from (differs for parallel jobs).
    pub group: String,
    pub stage: String,
    pub stage_index: usize,
    pub when: When,
    pub start_in: Option<String>,
    pub allow_failure: AllowFailure,
    /// `None`: ordered by stage; `Some` (even empty): DAG-scheduled.
    pub needs: Option<Vec<PlannedNeed>>,
    pub image: Option<Image>,
    pub services: Vec<Service>,
    /// YAML variables for this job: inherited top-level (after `workflow:rules:variables`),
    /// then job variables, matrix values and the matched rule's variables.
    pub variables: StrMap<Variable>,
    /// Job-level predefined variables (`CI_JOB_NAME`, `CI_NODE_*`, `CI_ENVIRONMENT_*`...).
    pub job_variables: StrMap<String>,
    /// Where `variables` came from, beyond the configuration itself: the index in `rules` of
    /// the rule that matched (`None` without `rules`) and this instance's `parallel:matrix`
    /// values (`cargo glci variables` names them).
    pub matched_rule: Option<usize>,
    pub matrix: StrMap<String>,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    pub artifacts: Option<Artifacts>,
    pub cache: Vec<Cache>,
    /// Jobs whose artifacts (and dotenv variables) this job downloads
    /// (docs/ci-yaml-semantics.md §8.2).
    pub dependencies: Vec<String>,
    /// `needs:pipeline:job` with artifacts: jobs of the parent pipeline whose artifacts a
    /// child pipeline's job downloads.
    pub pipeline_needs: Vec<String>,
    pub retry: Option<Retry>,
    pub timeout: Option<String>,
    pub environment: Option<PlannedEnvironment>,
    /// `(CI_NODE_INDEX, CI_NODE_TOTAL)` for parallel jobs.
    pub parallel: Option<(u32, u32)>,
    pub trigger: Option<Trigger>,
    pub tags: Vec<String>,
    pub interruptible: Option<bool>,
    pub coverage: Option<String>,
    pub resource_group: Option<String>,
    /// `release:`, run as the job's `release` step.
    pub release: Option<model::ReleaseConfig>,
}

impl PlannedJob {
    /// Whether a failure of this job leaves the pipeline passing (exit codes are decided at
    /// run time by [`status`]).
    pub fn allows_failure(&self) -> bool {
        matches!(self.allow_failure, AllowFailure::Bool(true))
    }
}

/// The pipeline GitLab would create for an event.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub created: bool,
    /// Why no pipeline is created (GitLab's message).
    pub reason: Option<String>,
    /// `workflow:name`, expanded (`CI_PIPELINE_NAME`).
    pub name: Option<String>,
    /// Top-level YAML variables after `workflow:rules:variables`.
    pub variables: StrMap<Variable>,
    /// Index in `workflow:rules` of the rule that let the pipeline be created.
    pub workflow_rule: Option<usize>,
    /// Stages that have jobs, in order.
    pub stages: Vec<String>,
    /// Jobs in stage order, then file order.
    pub jobs: Vec<PlannedJob>,
    /// Jobs left out of this pipeline and why, in file order (not part of the JSON).
    pub excluded: Vec<Excluded>,
}

/// A job that is not in the pipeline, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub name: String,
    pub reason: String,
}

impl Excluded {
    pub fn new(name: &str, reason: impl Into<String>) -> Self {
        Excluded {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

impl Plan {
    pub fn job(&self, name: &str) -> Option<&PlannedJob> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The jobs `job` waits for: its `needs`, or every job of an earlier stage.
    pub fn upstream<'a>(&'a self, job: &'a PlannedJob) -> Vec<&'a PlannedJob> {
        match &job.needs {
            Some(needs) => needs.iter().filter_map(|n| self.job(&n.name)).collect(),
            None => self
                .jobs
                .iter()
                .filter(|j| j.stage_index < job.stage_index)
                .collect(),
        }
    }

    /// The JSON shape `cargo glci plan --json` prints (see `json.rs`).
    pub fn to_json(&self) -> serde_json::Value {
        json::plan_json(self)
    }
}
