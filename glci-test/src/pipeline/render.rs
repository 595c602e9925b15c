//! How plans are shown: a table for people, a stable JSON shape for programs. One renderer
//! for `cargo glci plan` and for the harness's plan text (`assert_plan_snapshot!`), so a
//! planned job reads the same everywhere.

use std::fmt::Write;

use super::Planned;
use crate::plan::{AllowFailure, Event, PipelineSource, Plan, PlannedJob};
use serde_json::{Map, Value};

/// `cargo glci plan --json`: the plan's JSON with `variables` = predefined variables, then
/// the pipeline's YAML variables (later ones win, as on GitLab).
pub fn plan_json(planned: &Planned) -> Value {
    let mut value = planned.plan.to_json();
    let mut vars = Map::new();
    for (k, v) in &planned.predefined {
        vars.insert(k.clone(), Value::String(v.clone()));
    }
    if let Some(Value::Object(yaml_vars)) = value.get("variables") {
        for (k, v) in yaml_vars {
            vars.insert(k.clone(), v.clone());
        }
    }
    value["variables"] = Value::Object(vars);
    value
}

fn describe_event(event: &Event, planned: &Planned) -> String {
    let branch = event
        .branch
        .clone()
        .or_else(|| planned.loaded.facts.branch.clone())
        .unwrap_or_else(|| "(detached HEAD)".to_string());
    match (event.source, &event.tag) {
        (PipelineSource::MergeRequestEvent, _) => format!(
            "merge request {branch} → {}",
            event
                .target_branch
                .as_deref()
                .unwrap_or(&planned.loaded.facts.default_branch)
        ),
        (source, Some(tag)) => format!("{source} of tag {tag}"),
        (source, None) => format!("{source} to branch {branch}"),
    }
}

/// The human view: stages in order, each job with when, allow_failure and needs.
pub fn plan_text(planned: &Planned, event: &Event) -> String {
    let plan = &planned.plan;
    let mut out = String::new();
    let _ = writeln!(out, "Pipeline for {}", describe_event(event, planned));
    if !plan.created {
        let _ = writeln!(
            out,
            "No pipeline is created: {}",
            plan.reason
                .as_deref()
                .unwrap_or("filtered out by workflow:rules")
        );
        return out;
    }
    if let Some(name) = &plan.name {
        let _ = writeln!(out, "Name: {name}");
    }
    write_stages(&mut out, plan, "", true);
    out
}

/// Each stage of `plan` in order with its jobs aligned under it, each with its
/// [`job_attributes`]: `indent` before every line, and with `separate` a blank line before
/// each stage. The top-level plan and its downstream pipelines share it.
pub(crate) fn write_stages(out: &mut String, plan: &Plan, indent: &str, separate: bool) {
    let width = plan
        .jobs
        .iter()
        .map(|j| j.name.chars().count())
        .max()
        .unwrap_or(0);
    let gap = if separate { "\n" } else { "" };
    for stage in &plan.stages {
        let _ = writeln!(out, "{gap}{indent}stage {stage}");
        for job in plan.jobs.iter().filter(|j| &j.stage == stage) {
            let _ = writeln!(
                out,
                "{indent}  {:<width$}  {}",
                job.name,
                job_attributes(job)
            );
        }
    }
}

/// What a plan says of one job after its name: `when`, then `allow_failure` (with its exit
/// codes) and `needs: [...]` when set.
pub fn job_attributes(job: &PlannedJob) -> String {
    let mut line = job.when.as_str().to_string();
    match &job.allow_failure {
        AllowFailure::Bool(true) => line.push_str("  allow_failure"),
        AllowFailure::ExitCodes(codes) => {
            let _ = write!(line, "  allow_failure(exit codes {codes:?})");
        }
        AllowFailure::Bool(false) => {}
    }
    if let Some(needs) = &job.needs {
        let names: Vec<&str> = needs.iter().map(|n| n.name.as_str()).collect();
        let _ = write!(line, "  needs: [{}]", names.join(", "));
    }
    line
}
