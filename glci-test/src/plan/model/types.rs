//! The types of the pipeline model, as GitLab's entries define them
//! (`Gitlab::Ci::Config::Entry::*`): what `plan/model` reads the tree into and every other
//! part of `plan` works on. A leaf: it imports no reading or planning code.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::config::{Node, Span};
use crate::expr::Expression;

/// Stages GitLab uses when `stages:` is absent.
pub const DEFAULT_STAGES: [&str; 5] = [".pre", "build", "test", "deploy", ".post"];

/// The whole pipeline configuration after entry validation.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    /// With `.pre` first and `.post` last.
    pub stages: Vec<String>,
    pub variables: StrMap<Variable>,
    pub workflow: Option<Workflow>,
    /// Visible jobs in file order, before `parallel` expansion.
    pub jobs: StrMap<JobConfig>,
    /// Globs and regexps compiled while planning, shared by every plan of this config.
    pub(crate) matchers: Arc<Matchers>,
}

/// Compiled matchers, filled lazily by planning.
#[derive(Debug, Default)]
pub(crate) struct Matchers {
    pub globs: crate::plan::changes::GlobCache,
    pub regexes: crate::plan::regexp::RegexCache,
}

impl PipelineConfig {
    /// Whether `workflow:rules` exists (which drops the implicit `only: [branches, tags]`).
    pub fn has_workflow_rules(&self) -> bool {
        self.workflow.as_ref().is_some_and(|w| w.rules.is_some())
    }

    /// Position of a stage (first occurrence, as `stages.index`).
    pub fn stage_index(&self, stage: &str) -> Option<usize> {
        self.stages.iter().position(|s| s == stage)
    }
}

/// A YAML variable: its value and whether GitLab expands references in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub value: String,
    /// `expand: false` marks the variable raw.
    pub expand: bool,
}

impl Variable {
    pub fn plain(value: impl Into<String>) -> Self {
        Variable {
            value: value.into(),
            expand: true,
        }
    }
}

/// `workflow:`.
#[derive(Debug, Clone, Default)]
pub struct Workflow {
    pub name: Option<String>,
    pub rules: Option<Vec<Rule>>,
}

/// `when:` values (`never` only inside rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum When {
    #[default]
    OnSuccess,
    OnFailure,
    Always,
    Manual,
    Delayed,
    Never,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::OnSuccess => "on_success",
            When::OnFailure => "on_failure",
            When::Always => "always",
            When::Manual => "manual",
            When::Delayed => "delayed",
            When::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Option<When> {
        Some(match s {
            "on_success" => When::OnSuccess,
            "on_failure" => When::OnFailure,
            "always" => When::Always,
            "manual" => When::Manual,
            "delayed" => When::Delayed,
            "never" => When::Never,
            _ => return None,
        })
    }
}

/// `allow_failure: true|false` or `allow_failure: {exit_codes: [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowFailure {
    Bool(bool),
    ExitCodes(Vec<i64>),
}

/// `rules:changes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    pub paths: Vec<String>,
    pub compare_to: Option<String>,
}

/// One entry of `rules:` (job, workflow).
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// `if:`, parsed once at validation.
    pub if_: Option<Expression>,
    pub changes: Option<Changes>,
    pub exists: Option<Vec<String>>,
    pub when: Option<When>,
    pub start_in: Option<String>,
    pub allow_failure: Option<bool>,
    pub variables: StrMap<String>,
    pub needs: Option<Vec<Need>>,
    pub interruptible: Option<bool>,
    pub span: Span,
}

/// One `parallel:matrix` entry: variable → values, in the order written.
/// The planner's name → value maps (variables, jobs, matrix rows), in insertion order as
/// GitLab keeps them. Hashed with foldhash rather than std's SipHash: the names are short and
/// looked up constantly (every rule's variables, through every layer of every job's scope),
/// and SipHash was about 6% of planning a 1,000-job pipeline. Seeded per map, like std's.
pub type StrMap<V> = IndexMap<String, V, foldhash::fast::RandomState>;

pub type MatrixEntry = StrMap<Vec<String>>;

/// One `needs:` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub job: String,
    pub artifacts: bool,
    pub optional: bool,
    /// `needs:parallel:matrix`: selects instances of a matrix job.
    pub matrix: Option<Vec<MatrixEntry>>,
    /// Cross-project or parent-pipeline needs (`project:`/`pipeline:`): not planned locally.
    pub external: bool,
    /// `needs:pipeline:job`: the job is one of another pipeline of this project (in a child
    /// pipeline, the parent's).
    pub pipeline: bool,
    pub span: Span,
}

/// `parallel:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parallel {
    Count(u32),
    Matrix(Vec<MatrixEntry>),
}

/// `only:` / `except:` after normalization to the hash form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub refs: Option<Vec<String>>,
    /// Expressions, parsed once at validation.
    pub variables: Option<Vec<Expression>>,
    pub changes: Option<Vec<String>>,
    pub kubernetes: Option<String>,
}

/// `image:` (or a service's image part).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    pub name: String,
    pub entrypoint: Option<Vec<String>>,
    pub pull_policy: Vec<String>,
    pub platform: Option<String>,
    pub user: Option<String>,
}

/// One `services:` item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    pub name: String,
    pub alias: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub variables: StrMap<String>,
    pub pull_policy: Vec<String>,
}

/// `cache:key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKey {
    Literal(String),
    Files {
        files: Vec<String>,
        prefix: Option<String>,
    },
    FilesCommits {
        files: Vec<String>,
        prefix: Option<String>,
    },
}

/// One cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    pub key: CacheKey,
    pub paths: Vec<String>,
    pub untracked: bool,
    pub when: When,
    pub policy: String,
    pub unprotect: bool,
    pub fallback_keys: Vec<String>,
}

/// `artifacts:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Artifacts {
    pub paths: Vec<String>,
    pub exclude: Vec<String>,
    pub untracked: bool,
    pub when: Option<When>,
    pub expire_in: Option<String>,
    pub name: Option<String>,
    pub expose_as: Option<String>,
    pub public: Option<bool>,
    pub access: Option<String>,
    /// Report type → paths (`coverage_report` keeps its `path`).
    pub reports: StrMap<Vec<String>>,
}

/// `environment:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Environment {
    pub name: String,
    pub url: Option<String>,
    pub action: Option<String>,
    pub deployment_tier: Option<String>,
    pub on_stop: Option<String>,
    pub auto_stop_in: Option<String>,
}

/// `retry:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retry {
    pub max: u8,
    pub when: Vec<String>,
    pub exit_codes: Vec<i64>,
}

/// `trigger:` of a bridge job.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Multi-project pipeline.
    Project {
        project: String,
        branch: Option<String>,
        strategy: Option<String>,
        /// `forward:yaml_variables` (default true).
        forward_yaml_variables: bool,
        /// `forward:pipeline_variables` (default false).
        forward_pipeline_variables: bool,
    },
    /// Child pipeline: the include locations (local paths or include hashes, as written).
    Child {
        include: Vec<Node>,
        strategy: Option<String>,
        /// `forward:yaml_variables` (default true).
        forward_yaml_variables: bool,
        /// `forward:pipeline_variables` (default false).
        forward_pipeline_variables: bool,
    },
}

/// `inherit:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InheritList {
    All,
    None,
    Only(Vec<String>),
}

impl InheritList {
    pub fn allows(&self, name: &str) -> bool {
        match self {
            InheritList::All => true,
            InheritList::None => false,
            InheritList::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// `inherit:default` and `inherit:variables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherit {
    pub default: InheritList,
    pub variables: InheritList,
}

impl Default for Inherit {
    fn default() -> Self {
        Inherit {
            default: InheritList::All,
            variables: InheritList::All,
        }
    }
}

/// One visible job (script job or trigger job).
#[derive(Debug, Clone, Default)]
pub struct JobConfig {
    pub name: String,
    pub stage: String,
    pub image: Option<Image>,
    pub services: Vec<Service>,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    pub variables: StrMap<Variable>,
    pub rules: Option<Vec<Rule>>,
    /// `rules: null` written: GitLab drops the implicit `only: [branches, tags]` whenever
    /// the job has a `rules` key (`Processable#compose!`), though it has no rules to apply,
    /// so such a job runs in every pipeline.
    pub rules_key_without_rules: bool,
    pub only: Option<Policy>,
    pub except: Option<Policy>,
    /// `None` when not written (defaults to `on_success`).
    pub when: Option<When>,
    pub start_in: Option<String>,
    pub allow_failure: Option<AllowFailure>,
    pub needs: Option<Vec<Need>>,
    pub dependencies: Option<Vec<String>>,
    pub parallel: Option<Parallel>,
    pub artifacts: Option<Artifacts>,
    /// `cache: []` gives `Some(vec![])`: caching disabled.
    pub cache: Option<Vec<Cache>>,
    pub environment: Option<Environment>,
    pub retry: Option<Retry>,
    pub timeout: Option<String>,
    pub tags: Vec<String>,
    pub trigger: Option<Trigger>,
    pub inherit: Inherit,
    pub interruptible: Option<bool>,
    pub coverage: Option<String>,
    pub resource_group: Option<String>,
    pub release: Option<ReleaseConfig>,
    pub span: Span,
}

/// `release:`: what the job's release step creates (GitLab's `Entry::Release`). Values are
/// kept as written; variables in them expand in the job's shell, as with `release-cli`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseConfig {
    pub tag_name: String,
    pub description: String,
    pub name: Option<String>,
    pub tag_message: Option<String>,
    pub ref_name: Option<String>,
    pub released_at: Option<String>,
    pub milestones: Vec<String>,
    /// `assets:links`.
    pub links: Vec<ReleaseLink>,
}

/// One `release:assets:links` entry (GitLab's `Entry::Release::Assets::Link`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseLink {
    pub name: String,
    pub url: String,
    /// `direct_asset_path` (or its deprecated name `filepath`).
    pub direct_asset_path: Option<String>,
    /// `other` (the default), `runbook`, `image` or `package`.
    pub link_type: Option<String>,
}

impl JobConfig {
    pub fn is_trigger(&self) -> bool {
        self.trigger.is_some()
    }
}
