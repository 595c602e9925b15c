//! One pipeline of a repository, from the outside: the file, the event and the variables go
//! in; the plan (no Docker) or the run (see `run`) comes out. This is the API the `cargo glci`
//! commands and users' own tests call; every step is delegated to its module (`config`,
//! `plan`, `git`, `server`, `runner`).

pub mod child;
pub mod duration;
pub mod env_file;
pub mod environments;
pub mod history;
pub mod home;
pub mod interrupt;
pub mod job_spec;
pub mod kept_artifacts;
pub mod past_runs;
pub mod render;
pub mod resource_group;
pub mod results;
pub mod run;
pub mod staging;
pub mod test_reports;
pub mod variable_trace;

pub use run::{
    checked_settings, push_through_from_settings, BadRegistryAddress, ExternalRegistry, JobReport,
    Quiet, RegistryChoice, RunError, RunObserver, RunOptions, RunReport, Session,
};

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::config::{self, ConfigError, LoadOptions};
use crate::git::{GitError, Repo, RepoFacts};
use crate::plan::predefined::{self, PipelineContext};
use crate::plan::StrMap;
use crate::plan::{
    self, Event, LintError, PipelineConfig, PipelineSource, Plan, PlanContext, PlanError,
};
use crate::threads::join;

/// What a pipeline is made from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PipelineOptions {
    /// Any directory inside the repository.
    pub project_dir: PathBuf,
    /// The CI configuration, relative to the repository root.
    pub file: String,
    pub event: Event,
    /// `group/project` → local checkout, for `include:project` / `include:component`.
    pub project_map: BTreeMap<String, PathBuf>,
    /// A directory holding GitLab's CI templates, for `include:template`.
    pub template_dir: Option<PathBuf>,
    /// Where `include:template` and unmapped `include:component` are fetched from.
    pub include_sources: config::FetchSources,
    /// Let `include:remote` fetch from loopback, private and link-local addresses.
    pub allow_private_includes: bool,
    /// Read `include:remote` files only from the cache in `GLCI_HOME/includes`.
    pub offline: bool,
    /// Pipeline inputs for `spec:inputs`.
    pub inputs: Vec<(String, String)>,
    /// The server URL jobs see (`CI_SERVER_URL`); planning alone uses a placeholder.
    pub server_url: String,
    /// The registry's `host:port` (`CI_REGISTRY`, `CI_REGISTRY_IMAGE`) when one is served;
    /// planning alone has none.
    pub registry: Option<String>,
    /// `CI_PIPELINE_ID` / `CI_PIPELINE_IID`.
    pub pipeline_id: u64,
    /// The pipeline's commit when it is not HEAD (the working-tree snapshot of a run).
    pub commit_sha: Option<String>,
    /// Variables as a project's CI/CD settings define them (masked, file type): visible to
    /// rules, winning over YAML variables, below `--var` pipeline variables.
    pub settings_variables: Vec<SettingsVariable>,
}

/// Event and variable setters shared by every builder over these options (the harness's
/// `Harness` and `Pipeline`), so the rules between fields live in one place.
impl PipelineOptions {
    /// A push to `branch` (replaces a tag).
    pub fn set_branch(&mut self, branch: &str) {
        self.event.branch = Some(branch.to_string());
        self.event.tag = None;
    }

    /// A push of `tag` (replaces a branch).
    pub fn set_tag(&mut self, tag: &str) {
        self.event.tag = Some(tag.to_string());
        self.event.branch = None;
    }

    /// A changed path for `rules:changes` (once one is given, git is not asked).
    pub fn add_changed(&mut self, path: &str) {
        self.event
            .changed_files
            .get_or_insert_with(Vec::new)
            .push(path.to_string());
    }

    /// A pipeline variable (highest precedence).
    pub fn add_var(&mut self, key: &str, value: &str) {
        self.event
            .variables
            .push((key.to_string(), value.to_string()));
    }

    /// A masked CI/CD settings variable.
    pub fn add_masked_var(&mut self, key: &str, value: &str) {
        self.settings_variables.push(SettingsVariable {
            key: key.to_string(),
            value: value.to_string(),
            masked: true,
            file: false,
        });
    }
}

/// A variable from the project's CI/CD settings, the only place GitLab has masked and
/// file-type variables.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettingsVariable {
    pub key: String,
    pub value: String,
    /// Replaced by `[MASKED]` wherever the job log goes.
    pub masked: bool,
    /// The job sees a path to a file holding the value.
    pub file: bool,
}

impl PipelineOptions {
    /// A push to the current branch of the repository at `project_dir`.
    pub fn new(project_dir: impl Into<PathBuf>) -> PipelineOptions {
        PipelineOptions {
            project_dir: project_dir.into(),
            file: ".gitlab-ci.yml".to_string(),
            event: Event::default(),
            project_map: BTreeMap::new(),
            template_dir: None,
            include_sources: config::FetchSources::default(),
            allow_private_includes: false,
            offline: false,
            inputs: Vec::new(),
            server_url: "http://gitlab.glci.invalid".to_string(),
            registry: None,
            pipeline_id: 1,
            commit_sha: None,
            settings_variables: Vec::new(),
        }
    }
}

/// Why a pipeline could not be planned. Each variant prints as one or more lines the user
/// can act on, naming the file and position where there is one.
#[derive(Debug)]
pub enum PipelineError {
    Git(GitError),
    Config(ConfigError),
    /// Validation errors, as GitLab's CI Lint lists them.
    Lint(Vec<LintError>),
    Plan(PlanError),
    /// A masked settings variable GitLab would refuse to mask.
    Masked(crate::vars::MaskRefusal),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Git(e) => write!(f, "{e}"),
            PipelineError::Config(e) => write!(f, "{e}"),
            PipelineError::Lint(errors) => write!(f, "{}", plan::lint::join(errors)),
            PipelineError::Plan(e) => write!(f, "{e}"),
            PipelineError::Masked(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PipelineError {}

impl PipelineError {
    /// One message per line, for `cargo glci lint` and `--json` output.
    pub fn messages(&self) -> Vec<String> {
        match self {
            PipelineError::Lint(errors) => errors.iter().map(|e| e.to_string()).collect(),
            other => other.to_string().lines().map(str::to_string).collect(),
        }
    }
}

/// A configuration read and validated, with the repository facts it was read against.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub repo: Repo,
    pub facts: RepoFacts,
    pub tree: config::Node,
    pub config: PipelineConfig,
    /// The files the configuration was read from, main file first.
    pub files: Vec<String>,
}

/// Reads, resolves and validates the configuration (no planning).
pub fn load(opts: &PipelineOptions) -> Result<Loaded, PipelineError> {
    let repo = Repo::discover(&opts.project_dir).map_err(PipelineError::Git)?;
    // The main file is read and parsed while git answers (neither needs the other).
    let (facts, main) = std::thread::scope(|s| {
        let main = s.spawn(|| config::read_main(repo.top_level(), &opts.file));
        (repo.facts(), join(main))
    });
    let facts = facts.map_err(PipelineError::Git)?;
    load_config(opts, repo, facts, main)
}

/// [`load`] once the repository facts are known.
fn load_config(
    opts: &PipelineOptions,
    repo: Repo,
    facts: RepoFacts,
    main: config::MainFile,
) -> Result<Loaded, PipelineError> {
    // GitLab refuses to save a masked variable it cannot mask.
    for v in opts.settings_variables.iter().filter(|v| v.masked) {
        crate::vars::check_maskable(&v.key, &v.value).map_err(PipelineError::Masked)?;
    }
    let ctx = pipeline_context(opts);
    // Include paths and include:rules see predefined and pipeline variables, never YAML ones.
    let event = event_with_settings(opts);
    let mut variables = predefined::rules_variables(&facts, &event, &ctx);
    variables.extend(event.variables.iter().cloned());
    let load_options = LoadOptions {
        project_dir: facts.top_level.clone(),
        file: opts.file.clone(),
        project_map: opts.project_map.clone(),
        template_dir: opts.template_dir.clone(),
        sources: opts.include_sources.clone(),
        allow_private_remote: opts.allow_private_includes,
        include_cache: home::glci_home_path().ok().map(|h| h.join("includes")),
        offline: opts.offline,
        variables,
        inputs: opts.inputs.clone(),
        ..LoadOptions::default()
    };
    let resolved = config::load_main(&load_options, main).map_err(PipelineError::Config)?;
    let config = plan::validate(&resolved.tree).map_err(PipelineError::Lint)?;
    Ok(Loaded {
        repo,
        facts,
        tree: resolved.tree,
        config,
        files: resolved.files.into_iter().map(|f| f.name).collect(),
    })
}

fn pipeline_context(opts: &PipelineOptions) -> PipelineContext {
    let mut ctx = PipelineContext::new(opts.server_url.clone());
    ctx.config_path = opts.file.clone();
    ctx.registry = opts.registry.clone();
    ctx.pipeline_id = opts.pipeline_id;
    ctx.pipeline_iid = opts.pipeline_id;
    ctx.commit_sha = opts.commit_sha.clone();
    ctx
}

/// A planned pipeline with what it was planned from.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: Plan,
    pub loaded: Loaded,
    /// The predefined variables of the pipeline, in GitLab's order.
    pub predefined: Vec<(String, String)>,
    /// Git's answers the plan was made with (reused by [`replan`]).
    pub git: GitSets,
}

/// Plans the pipeline GitLab would create for the event: which jobs, in which stages, with
/// which `when`, `needs` and variables. Needs git and the files; never Docker.
pub fn plan(opts: &PipelineOptions) -> Result<Planned, PipelineError> {
    let repo = Repo::discover(&opts.project_dir).map_err(PipelineError::Git)?;
    let event = event_with_settings(opts);
    // Planning time is mostly git start-up and YAML parsing, which need nothing from each
    // other: the main file is parsed while git gives the facts, and the git questions that
    // do not depend on the configuration (the file list; the changed files and MR diff base,
    // once the facts are known) are asked while this thread resolves the configuration.
    let (loaded, files, (changed_files, diff_base_sha)) = std::thread::scope(|s| {
        let files = s.spawn(|| repo.files());
        let main = s.spawn(|| config::read_main(repo.top_level(), &opts.file));
        let facts = match repo.facts() {
            Ok(facts) => facts,
            Err(e) => return Err(PipelineError::Git(e)),
        };
        let changes = {
            let (repo, facts, event) = (&repo, facts.clone(), &event);
            s.spawn(move || {
                (
                    plan::changed_files(repo, &facts, event),
                    merge_request_diff_base(repo, &facts, event),
                )
            })
        };
        let loaded = load_config(opts, repo.clone(), facts, join(main));
        Ok((loaded, join(files), join(changes)))
    })?;
    let loaded = loaded?;
    let git_sets = GitSets {
        changed_files: changed_files.map_err(PipelineError::Git)?,
        files: files.map_err(PipelineError::Git)?,
        compare_to: compare_to_sets(&loaded),
        diff_base_sha,
    };
    plan_with(opts, loaded, git_sets)
}

/// `CI_MERGE_REQUEST_DIFF_BASE_SHA`: the merge base of the target and the source, the same
/// commit the MR's changed files are computed from. `None` outside merge requests.
fn merge_request_diff_base(repo: &Repo, facts: &RepoFacts, event: &Event) -> Option<String> {
    if event.source != PipelineSource::MergeRequestEvent {
        return None;
    }
    let target = predefined::merge_request_target(facts, event);
    repo.merge_base(&target, facts.remote.as_deref())
        .ok()
        .flatten()
}

/// Plans again for other pipeline facts (server URL, pipeline id, commit) with the
/// configuration and git answers of `previous`, so a run does not ask git twice. The
/// configuration and the changed files do not depend on those facts.
pub fn replan(opts: &PipelineOptions, previous: &Planned) -> Result<Planned, PipelineError> {
    plan_with(opts, previous.loaded.clone(), previous.git.clone())
}

fn plan_with(
    opts: &PipelineOptions,
    loaded: Loaded,
    git_sets: GitSets,
) -> Result<Planned, PipelineError> {
    let (plan_ctx, ctx) = plan_context(opts, &loaded, &git_sets);
    plan_in(plan_ctx, ctx, loaded, git_sets)
}

/// The context `loaded` is planned in for `opts`, and the pipeline facts of its predefined
/// variables.
fn plan_context(
    opts: &PipelineOptions,
    loaded: &Loaded,
    git_sets: &GitSets,
) -> (PlanContext, PipelineContext) {
    let mut ctx = pipeline_context(opts);
    // One resolved event for everything below: refs from the flags, else from git.
    let event = &predefined::resolve_event(&loaded.facts, &event_with_settings(opts));
    ctx.merge_request.diff_base_sha = git_sets.diff_base_sha.clone();
    let plan_ctx = PlanContext {
        event: event.clone(),
        predefined: predefined::rules_variables(&loaded.facts, event, &ctx),
        late_variables: predefined::user_variables(&loaded.facts, &ctx),
        changed_files: git_sets.changed_files.clone(),
        compare_to: git_sets.compare_to.clone(),
        files: git_sets.files.clone(),
    };
    (plan_ctx, ctx)
}

/// Plans `loaded` in `plan_ctx` (a pipeline's own context, or a child's).
fn plan_in(
    plan_ctx: PlanContext,
    mut ctx: PipelineContext,
    loaded: Loaded,
    git_sets: GitSets,
) -> Result<Planned, PipelineError> {
    let plan = plan::plan(&loaded.config, &plan_ctx).map_err(PipelineError::Plan)?;
    // `CI_PIPELINE_NAME` is the evaluated `workflow:name`, known only once workflow rules ran.
    ctx.pipeline_name = plan.name.clone();
    let predefined = predefined::predefined_variables(&loaded.facts, &plan_ctx.event, &ctx);
    Ok(Planned {
        plan,
        loaded,
        predefined,
        git: git_sets,
    })
}

/// What planning asked git besides the repository facts.
#[derive(Debug, Clone)]
pub struct GitSets {
    changed_files: Option<Vec<String>>,
    files: Vec<String>,
    compare_to: StrMap<Vec<String>>,
    diff_base_sha: Option<String>,
}

/// The event with the settings variables in front of the pipeline variables: rules see
/// both, and `--var` wins (last wins).
fn event_with_settings(opts: &PipelineOptions) -> Event {
    let mut event = opts.event.clone();
    let mut variables: Vec<(String, String)> = opts
        .settings_variables
        .iter()
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect();
    variables.append(&mut event.variables);
    event.variables = variables;
    event
}

/// Changed files for every `rules:changes:compare_to` ref the configuration names. A ref
/// git does not know is left out; the planner reports it as GitLab does.
pub(crate) fn compare_to_sets(loaded: &Loaded) -> StrMap<Vec<String>> {
    let mut sets = StrMap::default();
    let workflow_rules = loaded
        .config
        .workflow
        .iter()
        .flat_map(|w| w.rules.iter().flatten());
    let job_rules = loaded
        .config
        .jobs
        .values()
        .flat_map(|j| j.rules.iter().flatten());
    for r in workflow_rules.chain(job_rules) {
        let Some(compare_to) = r.changes.as_ref().and_then(|c| c.compare_to.clone()) else {
            continue;
        };
        if sets.contains_key(&compare_to) {
            continue;
        }
        if let Ok(files) = loaded
            .repo
            .changed_since_merge_base(&compare_to, loaded.facts.remote.as_deref())
        {
            sets.insert(compare_to, files);
        }
    }
    sets
}
