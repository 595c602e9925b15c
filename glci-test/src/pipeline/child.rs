//! Child pipelines (`trigger:include`), planned. GitLab creates a child pipeline from a YAML
//! holding only `include:` with the trigger's entries (`Ci::Bridge#downstream_pipeline_params`),
//! for the parent's project, ref and commit, with source `parent_pipeline` and the variables
//! the trigger forwards ([`plan::child_context`]). The same happens here: the entries are
//! loaded with [`config::load_child`] (an `artifact:` entry reads a file from an earlier job's
//! artifacts of the parent pipeline: dynamic child pipelines), validated and planned, so the
//! child's own `workflow:rules` apply.
//!
//! A child that cannot be created is GitLab's `downstream_pipeline_creation_failed` with the
//! creation's errors; a trigger job in a pipeline already [`MAX_DEPTH`] deep fails with
//! `reached_max_descendant_pipelines_depth`. The run (`pipeline::run::child`) uses
//! [`plan_child`]; listing and `cargo glci plan` use [`static_children`], which plans every
//! child whose configuration exists before the run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{self, LoadOptions, Node, Value};
use crate::plan::model::Trigger;
use crate::plan::{self, PlannedJob};
use crate::vars::gitlab::expand;

use super::{compare_to_sets, home, plan_context, plan_in, Loaded, PipelineOptions, Planned};

/// GitLab's `MAX_NESTED_CHILDREN` (`Ci::CreateDownstreamPipelineService#has_max_nested_children?`):
/// a trigger job creates a child only while its own pipeline has at most this many pipelines
/// in its ancestry, itself included, so a parent, its children and their children
/// (`A -> B -> C`), no deeper.
pub const MAX_DEPTH: usize = 2;

/// GitLab's failure reason for a child that could not be created, and for one nested too
/// deep (`Enums::Ci::CommitStatus`); the text is `Gitlab::Ci::Status::Build::Failed`'s.
pub const CREATION_FAILED: &str = "downstream_pipeline_creation_failed";
pub const TOO_DEEP: &str = "reached_max_descendant_pipelines_depth";
/// GitLab's failure reason for a multi-project trigger that would loop
/// (`Ci::CreateDownstreamPipelineService#has_cyclic_dependency?`).
pub const LOOP_DETECTED: &str = "pipeline_loop_detected";

/// Why no downstream pipeline was planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChildError {
    /// The child's YAML is an artifact of a job of the parent pipeline: it exists only once
    /// that job ran.
    #[error("its child pipeline is generated at run time (`include: artifact:` of job `{job}`), so its jobs are known only once `{job}` has run")]
    GeneratedAtRunTime { job: String },
    /// `reached_max_descendant_pipelines_depth`.
    #[error("reached maximum depth of child pipelines (GitLab allows {MAX_DEPTH} levels)")]
    TooDeep,
    /// `pipeline_loop_detected`: the trigger's pipeline and the pipelines upstream of it
    /// (child pipelines left out) already run one project and ref twice.
    #[error("job would create infinitely looping pipelines (`{project}` on `{git_ref}` runs twice upstream of it)")]
    LoopDetected { project: String, git_ref: String },
    /// `downstream_pipeline_creation_failed`, with the errors of the pipeline's creation.
    #[error("downstream pipeline can not be created: {}", .0.join("; "))]
    NotCreated(Vec<String>),
    /// A multi-project trigger whose project has no local checkout: the trigger job is
    /// skipped.
    #[error("multi-project pipeline of `{project}`: map the project to a local checkout with `--project {project}=PATH` to run it")]
    NotMapped { project: String },
}

impl ChildError {
    /// GitLab's failure reason of the trigger job.
    pub fn failure_reason(&self) -> &'static str {
        match self {
            ChildError::TooDeep => TOO_DEEP,
            ChildError::LoopDetected { .. } => LOOP_DETECTED,
            _ => CREATION_FAILED,
        }
    }
}

/// What a child pipeline is planned from.
pub struct ChildSource<'a> {
    /// The options the parent (the root pipeline) was planned with: project mappings,
    /// templates, settings variables.
    pub opts: &'a PipelineOptions,
    pub parent: &'a Planned,
    /// Pipelines above the trigger's own: 0 when the trigger is a job of the root pipeline.
    pub parent_depth: usize,
    /// The trigger job of `parent`.
    pub bridge: &'a PlannedJob,
    /// The parent pipeline's finished jobs and their extracted artifacts (`include:artifact`);
    /// `None` when planning before the run.
    pub artifacts: Option<&'a BTreeMap<String, PathBuf>>,
    /// The child's `CI_PIPELINE_ID`.
    pub pipeline_id: u64,
}

/// A child pipeline as planned, with the event it was planned for (source
/// `parent_pipeline`, the forwarded variables as its pipeline variables).
#[derive(Debug, Clone)]
pub struct PlannedChild {
    pub planned: Planned,
    pub event: crate::plan::Event,
}

/// Plans the child pipeline `src.bridge` creates, as GitLab creates it.
pub fn plan_child(src: &ChildSource) -> Result<PlannedChild, ChildError> {
    let Some(Trigger::Child { include, .. }) = &src.bridge.trigger else {
        return Err(ChildError::NotCreated(vec![format!(
            "`{}` does not trigger a child pipeline",
            src.bridge.name
        )]));
    };
    if src.parent_depth + 1 > MAX_DEPTH {
        return Err(ChildError::TooDeep);
    }
    if src.artifacts.is_none() {
        if let Some(job) = include.iter().find_map(artifact_job) {
            return Err(ChildError::GeneratedAtRunTime { job });
        }
    }
    let parent = src.parent;
    let (parent_ctx, _) = plan_context(src.opts, &parent.loaded, &parent.git);
    let Some(mut plan_ctx) = plan::child_context(&parent_ctx, src.bridge) else {
        return Err(ChildError::NotCreated(Vec::new()));
    };
    expand_forwarded(
        src,
        &parent_ctx.event.variables,
        &mut plan_ctx.event.variables,
    );
    // CI/CD settings variables belong to the project: the child has them as the parent does.
    let mut variables: Vec<(String, String)> = src
        .opts
        .settings_variables
        .iter()
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect();
    variables.append(&mut plan_ctx.event.variables);
    plan_ctx.event.variables = variables;

    let mut child_opts = src.opts.clone();
    child_opts.pipeline_id = src.pipeline_id;
    let mut ctx = super::pipeline_context(&child_opts);
    ctx.merge_request.diff_base_sha = parent.git.diff_base_sha.clone();
    let facts = &parent.loaded.facts;
    plan_ctx.predefined = plan::predefined::rules_variables(facts, &plan_ctx.event, &ctx);

    let mut include_vars = plan_ctx.predefined.clone();
    include_vars.extend(plan_ctx.event.variables.iter().cloned());
    let load_options = LoadOptions {
        project_dir: facts.top_level.clone(),
        file: src.opts.file.clone(),
        project_map: src.opts.project_map.clone(),
        template_dir: src.opts.template_dir.clone(),
        sources: src.opts.include_sources.clone(),
        allow_private_remote: src.opts.allow_private_includes,
        include_cache: home::glci_home_path().ok().map(|h| h.join("includes")),
        offline: src.opts.offline,
        variables: include_vars,
        changed_files: plan_ctx.changed_files.clone(),
        parent_artifacts: Some(src.artifacts.cloned().unwrap_or_default()),
        ..LoadOptions::default()
    };
    let at = include.first().map(|n| n.span.clone()).unwrap_or_default();
    let resolved = config::load_child(&load_options, include, &at)
        .map_err(|e| ChildError::NotCreated(vec![e.to_string()]))?;
    let config = plan::validate(&resolved.tree)
        .map_err(|errors| ChildError::NotCreated(errors.iter().map(|e| e.to_string()).collect()))?;
    let loaded = Loaded {
        repo: parent.loaded.repo.clone(),
        facts: facts.clone(),
        tree: resolved.tree,
        config,
        files: resolved.files.into_iter().map(|f| f.name).collect(),
    };
    let mut git = parent.git.clone();
    git.compare_to = compare_to_sets(&loaded);
    let event = plan_ctx.event.clone();
    let planned =
        plan_in(plan_ctx, ctx, loaded, git).map_err(|e| ChildError::NotCreated(e.messages()))?;
    created(&planned)?;
    Ok(PlannedChild { planned, event })
}

/// A downstream pipeline that its `workflow:rules` (or having no job) keep from being created
/// fails its trigger with GitLab's reason.
fn created(planned: &Planned) -> Result<(), ChildError> {
    if planned.plan.created {
        return Ok(());
    }
    let why = planned
        .plan
        .reason
        .clone()
        .unwrap_or_else(|| "Pipeline filtered out by workflow rules.".to_string());
    Err(ChildError::NotCreated(vec![why]))
}

/// GitLab expands what a trigger forwards against the trigger job's own variables
/// (`Gitlab::Ci::Variables::Downstream::ExpandableVariableGenerator`), so
/// `PARENT_PIPELINE_ID: $CI_PIPELINE_ID` reaches the child as the parent's id; raw ones
/// (`expand: false`) go as written.
fn expand_forwarded(
    src: &ChildSource,
    pipeline_variables: &[(String, String)],
    forwarded: &mut [(String, String)],
) {
    let mut lookup: Vec<(String, String)> = src.parent.predefined.clone();
    lookup.extend(
        src.bridge
            .job_variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    lookup.extend(
        src.bridge
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone())),
    );
    lookup.extend(pipeline_variables.iter().cloned());
    for (key, value) in forwarded {
        let raw = src.bridge.variables.get(key).is_some_and(|v| !v.expand);
        if !raw {
            *value = expand(value, &lookup);
        }
    }
}

/// A multi-project trigger's downstream pipeline, planned from the checkout `--project`
/// maps the project to, with the options it was planned with (its children use them).
#[derive(Debug, Clone)]
pub struct PlannedProject {
    pub opts: PipelineOptions,
    pub planned: Planned,
}

/// Plans the pipeline a multi-project trigger (`trigger: project:`) creates, as GitLab's
/// `Ci::Bridge#cross_project_params` asks for it: the project's own configuration, source
/// `pipeline`, the trigger's `branch` (else the project's default branch, as the checkout
/// knows it: `origin/HEAD`, else `main` or `master`), the variables `trigger:forward` passes
/// (expanded as for a child). The configuration and files are the checkout's as they are.
pub fn plan_project(src: &ChildSource) -> Result<PlannedProject, ChildError> {
    let Some(Trigger::Project {
        project,
        branch,
        forward_yaml_variables,
        forward_pipeline_variables,
        ..
    }) = &src.bridge.trigger
    else {
        return Err(ChildError::NotCreated(vec![format!(
            "`{}` does not trigger a multi-project pipeline",
            src.bridge.name
        )]));
    };
    let Some(path) = src.opts.project_map.get(project) else {
        return Err(ChildError::NotMapped {
            project: project.clone(),
        });
    };
    let parent = src.parent;
    let (parent_ctx, _) = plan_context(src.opts, &parent.loaded, &parent.git);
    // `forward:` as for a child (`Gitlab::Ci::Variables::Downstream::Generator`).
    let mut variables: Vec<(String, String)> = Vec::new();
    if *forward_yaml_variables {
        variables.extend(
            src.bridge
                .variables
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone())),
        );
    }
    if *forward_pipeline_variables {
        variables.extend(src.opts.event.variables.iter().cloned());
    }
    expand_forwarded(src, &parent_ctx.event.variables, &mut variables);
    let mut opts = src.opts.clone();
    opts.project_dir = path.clone();
    opts.file = ".gitlab-ci.yml".to_string();
    // Without `branch:`, GitLab runs the project's default branch, not whatever the local
    // checkout is on (a failed look is left to the planning below to report).
    let branch = branch.clone().or_else(|| {
        crate::git::Repo::discover(path)
            .and_then(|repo| repo.facts())
            .ok()
            .map(|facts| facts.default_branch)
    });
    opts.event = crate::plan::Event {
        source: crate::plan::PipelineSource::Pipeline,
        branch,
        variables,
        ..crate::plan::Event::default()
    };
    // CI/CD settings variables and inputs are the triggering project's.
    opts.settings_variables = Vec::new();
    opts.inputs = Vec::new();
    opts.pipeline_id = src.pipeline_id;
    opts.commit_sha = None;
    let planned = super::plan(&opts).map_err(|e| ChildError::NotCreated(e.messages()))?;
    created(&planned)?;
    Ok(PlannedProject { opts, planned })
}

/// The job of an `include: {artifact: ..., job: ...}` entry.
fn artifact_job(entry: &Node) -> Option<String> {
    let Value::Map(map) = &entry.value else {
        return None;
    };
    map.get("artifact")?;
    Some(
        map.get("job")
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

/// A child pipeline as planned before the run, with its own children.
#[derive(Debug, Clone)]
pub struct StaticChild {
    /// The trigger job's full name (`parent-trigger/trigger` when nested).
    pub trigger: String,
    pub planned: Result<Box<Planned>, ChildError>,
    pub children: Vec<StaticChild>,
}

impl StaticChild {
    /// Every job of this child and of its children with its full name, in plan order, each
    /// child's jobs right after its trigger job.
    pub fn jobs(&self) -> Vec<(String, &PlannedJob)> {
        let mut out = Vec::new();
        let Ok(planned) = &self.planned else {
            return out;
        };
        for job in &planned.plan.jobs {
            let name = format!("{}/{}", self.trigger, job.name);
            out.push((name.clone(), job));
            if let Some(child) = self.children.iter().find(|c| c.trigger == name) {
                out.extend(child.jobs());
            }
        }
        out
    }

    /// This child and its descendants, depth first.
    pub fn flatten(&self) -> Vec<&StaticChild> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.flatten());
        }
        out
    }
}

/// The child pipelines of `planned` that can be planned before the run (`local:`,
/// `project:` with `--project`, `template:`), and the pipelines of multi-project triggers
/// whose project `--project` maps, recursively; a child generated at run time
/// (`artifact:`) or failing to plan carries its reason.
pub fn static_children(opts: &PipelineOptions, planned: &Planned) -> Vec<StaticChild> {
    children_of(opts, planned, "", 0)
}

fn children_of(
    opts: &PipelineOptions,
    planned: &Planned,
    prefix: &str,
    depth: usize,
) -> Vec<StaticChild> {
    planned
        .plan
        .jobs
        .iter()
        .filter(|j| j.trigger.is_some())
        .map(|bridge| {
            let trigger = format!("{prefix}{}", bridge.name);
            let src = ChildSource {
                opts,
                parent: planned,
                parent_depth: depth,
                bridge,
                artifacts: None,
                pipeline_id: opts.pipeline_id,
            };
            let nested = format!("{trigger}/");
            let (result, children) = match &bridge.trigger {
                Some(Trigger::Project { .. }) => match plan_project(&src) {
                    // A project's pipeline starts a hierarchy of its own.
                    Ok(p) => {
                        let children = children_of(&p.opts, &p.planned, &nested, 0);
                        (Ok(Box::new(p.planned)), children)
                    }
                    Err(e) => (Err(e), Vec::new()),
                },
                _ => match plan_child(&src) {
                    Ok(c) => {
                        let children = children_of(opts, &c.planned, &nested, depth + 1);
                        (Ok(Box::new(c.planned)), children)
                    }
                    Err(e) => (Err(e), Vec::new()),
                },
            };
            StaticChild {
                trigger,
                planned: result,
                children,
            }
        })
        .collect()
}

/// The `cargo glci plan` view of child pipelines planned before the run: each child's stages
/// and jobs under its trigger job, and why a child could not be planned.
pub fn children_text(children: &[StaticChild]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for child in children.iter().flat_map(StaticChild::flatten) {
        let _ = write!(out, "\ndownstream pipeline of `{}`", child.trigger);
        let planned = match &child.planned {
            Ok(planned) => planned,
            Err(e) => {
                let _ = writeln!(out, ": not planned: {e}");
                continue;
            }
        };
        let _ = writeln!(out);
        super::render::write_stages(&mut out, &planned.plan, "  ", false);
    }
    out
}

/// GitLab's loop check for a multi-project trigger: the (project, ref) of the trigger's
/// pipeline and of each pipeline upstream of it, child pipelines left out, root first. A pair
/// that is there twice means the chain has come round: the trigger fails with
/// [`LOOP_DETECTED`]. As on GitLab the check looks at the chain as it is, so the loop is
/// stopped the first time a pipeline would be created from a repeated pair's pipeline.
pub fn check_loop(chain: &[(String, String)]) -> Result<(), ChildError> {
    for (i, (project, git_ref)) in chain.iter().enumerate() {
        if chain[..i].iter().any(|(p, r)| p == project && r == git_ref) {
            return Err(ChildError::LoopDetected {
                project: project.clone(),
                git_ref: git_ref.clone(),
            });
        }
    }
    Ok(())
}
