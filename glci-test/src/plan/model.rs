//! The typed pipeline model: the resolved YAML tree read into Rust types, with GitLab's entry
//! validation messages (`Gitlab::Ci::Config::Entry::*`). Logical checks that need the whole
//! pipeline (stages, needs, dependencies) live in `validate.rs`.

use std::sync::Arc;

use indexmap::IndexMap;

use super::lint::LintError;
use crate::config::keywords::{DEFAULT_KEYS, DEPRECATED_GLOBALS, RESERVED};
use crate::config::{Mapping, Node, Span, Value};
use crate::expr::Expression;

mod fields;
mod job;
mod parse;

pub use job::parse_job;

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
    pub globs: super::changes::GlobCache,
    pub regexes: super::only_except::RegexCache,
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
}

impl JobConfig {
    pub fn is_trigger(&self) -> bool {
        self.trigger.is_some()
    }
}

/// Reads and validates a resolved configuration tree. Entry errors are all collected (as
/// GitLab reports several at once); logical errors (stages, needs, dependencies, cycles) stop
/// at the first one, after entry errors.
pub fn validate(tree: &Node) -> Result<PipelineConfig, Vec<LintError>> {
    let mut errors = Vec::new();
    let config = read_root(tree, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(config) = config else {
        return Err(errors);
    };
    if let Err(e) = super::validate::logical(&config) {
        return Err(vec![e]);
    }
    Ok(config)
}

fn read_root(tree: &Node, errors: &mut Vec<LintError>) -> Option<PipelineConfig> {
    let Some(root) = tree.as_map() else {
        errors.push(LintError::new(
            Some(&tree.span),
            "Invalid configuration format",
        ));
        return None;
    };
    // Empty content is reported by `config` on the text; an empty mapping here means
    // every job was hidden (and dropped after `extends`/`!reference` used them).
    if root.is_empty() {
        errors.push(LintError::new(
            Some(&tree.span),
            "jobs config should contain at least one visible job",
        ));
        return None;
    }

    let stages = read_stages(root.get("stages"), errors);
    let variables = match root.get("variables") {
        Some(node) => parse::variables(node, "variables", true, errors),
        None => StrMap::default(),
    };
    let mut workflow = None;

    let defaults = collect_defaults(root, errors);

    let mut jobs = StrMap::default();
    let mut tasks: Vec<(usize, &str, &Node, &Mapping)> = Vec::new();
    let mut visible = 0usize;
    for (key, node) in root {
        let name = key.name.as_str();
        if RESERVED.contains(&name) {
            continue;
        }
        let looks_like_job = node.as_map().is_some_and(|m| {
            ["script", "run", "trigger", "needs"]
                .iter()
                .any(|k| m.contains_key(*k))
        });
        if (name == "default" || name == "workflow") && !looks_like_job {
            if name == "workflow" {
                workflow = Some(parse::workflow(node, errors));
            }
            continue;
        }
        if name.starts_with('.') {
            if is_blank(node) {
                errors.push(LintError::entry(
                    &key.span,
                    &format!("jobs:{name}"),
                    "config can't be blank",
                ));
            }
            continue;
        }
        let Some(map) = node.as_map().filter(|_| looks_like_job) else {
            errors.push(LintError::entry(
                &key.span,
                &format!("jobs {}", name.replace(' ', "_")),
                "config should implement the script:, run:, or trigger: keyword",
            ));
            continue;
        };
        visible += 1;
        // Read below, in parallel; `errors.len()` is where this job's errors go.
        tasks.push((errors.len(), name, node, map));
    }
    // Each job reads on its own (its defaults, its keys), so big pipelines read them on two
    // threads; the errors are put back where the sequential loop would have pushed them.
    let read = crate::threads::map_in_order(&tasks, |&(_, name, node, map)| {
        let mut job_errors = Vec::new();
        let job_defaults = defaults_for(map, &defaults);
        let job = parse_job(name, node, &job_defaults, &mut job_errors);
        (job, job_errors)
    });
    let mut merged = Vec::with_capacity(errors.len());
    let mut earlier = std::mem::take(errors).into_iter();
    let mut taken = 0;
    for (&(at, name, _, _), (job, job_errors)) in tasks.iter().zip(read) {
        merged.extend(earlier.by_ref().take(at - taken));
        taken = at;
        merged.extend(job_errors);
        if let Some(job) = job {
            jobs.insert(name.to_string(), job);
        }
    }
    merged.extend(earlier);
    *errors = merged;
    if visible == 0 && errors.is_empty() {
        errors.push(LintError::new(
            Some(&tree.span),
            "jobs config should contain at least one visible job",
        ));
    }
    Some(PipelineConfig {
        stages,
        variables,
        workflow,
        jobs,
        matchers: Arc::default(),
    })
}

fn is_blank(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Map(m) => m.is_empty(),
        Value::Seq(s) => s.is_empty(),
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// `default:` merged with the deprecated top-level globals; both defining one key is an error.
fn collect_defaults(root: &Mapping, errors: &mut Vec<LintError>) -> Mapping {
    let mut defaults = Mapping::default();
    let default_node = root.get("default").filter(|n| {
        !n.as_map().is_some_and(|m| {
            ["script", "run", "trigger", "needs"]
                .iter()
                .any(|k| m.contains_key(*k))
        })
    });
    if let Some(node) = default_node {
        match node.as_map() {
            Some(map) => {
                errors.extend(LintError::unknown_keys(
                    &node.span,
                    "default",
                    map.keys().map(|k| k.name.as_str()),
                    &DEFAULT_KEYS,
                ));
                for (k, v) in map {
                    defaults.insert(k.clone(), v.clone());
                }
            }
            None if matches!(node.value, Value::Null) => {}
            None => errors.push(LintError::entry(
                &node.span,
                "default",
                "config should be a hash",
            )),
        }
    }
    for key in DEPRECATED_GLOBALS {
        if let Some((k, v)) = root.get_key_value(key) {
            if defaults.contains_key(key) {
                errors.push(LintError::new(
                    Some(&k.span),
                    format!("{key} is defined in top-level and `default:` entry"),
                ));
            } else {
                defaults.insert(k.clone(), v.clone());
            }
        }
    }
    defaults
}

/// The defaults a job receives: `inherit:default` filters them, and trigger jobs only take
/// `interruptible`.
fn defaults_for(job: &Mapping, defaults: &Mapping) -> Mapping {
    let inherit = job
        .get("inherit")
        .and_then(|i| i.get("default"))
        .map(|d| match &d.value {
            Value::Bool(false) => InheritList::None,
            Value::Seq(items) => {
                InheritList::Only(items.iter().filter_map(Node::scalar_string).collect())
            }
            _ => InheritList::All,
        })
        .unwrap_or(InheritList::All);
    let is_trigger = job.contains_key("trigger");
    defaults
        .iter()
        .filter(|(k, _)| inherit.allows(&k.name))
        .filter(|(k, _)| !is_trigger || k.name == "interruptible")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `stages:` flattened (nested arrays up to 10 levels), `.pre`/`.post` moved to the edges.
fn read_stages(node: Option<&Node>, errors: &mut Vec<LintError>) -> Vec<String> {
    let Some(node) = node else {
        return DEFAULT_STAGES.iter().map(|s| s.to_string()).collect();
    };
    let mut flat = Vec::new();
    if !parse::flatten_strings(node, 0, &mut flat) {
        errors.push(LintError::entry(
            &node.span,
            "stages",
            "config should be an array of strings",
        ));
    }
    let mut stages = vec![".pre".to_string()];
    stages.extend(flat.into_iter().filter(|s| s != ".pre" && s != ".post"));
    stages.push(".post".to_string());
    stages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keywords::DEFAULT_KEYS;
    use crate::config::{parse_yaml, resolve_tree};

    /// The loader (which copies `default:` into jobs) and this validator (which refuses
    /// unknown `default:` keys) read one table, so every key the loader copies is one the
    /// validator accepts — `identity` included, which they once disagreed on.
    #[test]
    fn default_keys_the_loader_copies_are_keys_the_validator_accepts() {
        assert!(DEFAULT_KEYS.contains(&"identity"));
        let yaml = "default:\n  identity: google_cloud\n  tags: [docker]\n\
                    job:\n  script: [echo]\n";
        let tree = parse_yaml(yaml, ".gitlab-ci.yml")
            .and_then(resolve_tree)
            .expect("config loads");
        let job = tree.get("job").expect("job is kept");
        assert!(job.get("identity").is_some(), "the loader copied identity");
        let config = validate(&tree).map_err(|e| crate::plan::lint::join(&e));
        assert!(config.is_ok(), "{config:?}");

        let unknown = "default:\n  no_such_key: 1\njob:\n  script: [echo]\n";
        let tree = parse_yaml(unknown, ".gitlab-ci.yml")
            .and_then(resolve_tree)
            .expect("config loads");
        let errors = validate(&tree).map_err(|e| crate::plan::lint::join(&e));
        assert!(
            errors
                .as_ref()
                .is_err_and(|e| e.contains("config contains unknown keys: no_such_key")),
            "{errors:?}"
        );
    }
}
