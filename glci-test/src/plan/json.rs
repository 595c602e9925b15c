//! `Plan::to_json`: the stable JSON shape of a plan (snapshots, `cargo glci plan --json`).

use crate::plan::StrMap;
use serde_json::{json, Map, Value};

use super::model::Variable;
use super::{Plan, PlannedJob};

fn variables(vars: &StrMap<Variable>) -> Value {
    Value::Object(
        vars.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.value.clone())))
            .collect::<Map<String, Value>>(),
    )
}

fn job_json(job: &PlannedJob) -> Value {
    json!({
        "name": job.name,
        "stage": job.stage,
        "when": job.when.as_str(),
        "allow_failure": job.allows_failure(),
        "needs": job.needs.as_ref().map(|n| n.iter().map(|n| n.name.as_str()).collect::<Vec<_>>()),
        "image": job.image.as_ref().map(|i| i.name.as_str()),
        "services": job.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "variables": variables(&job.variables),
        "before_script": job.before_script,
        "script": job.script,
        "after_script": job.after_script,
    })
}

pub fn plan_json(plan: &Plan) -> Value {
    json!({
        "created": plan.created,
        "reason": plan.reason,
        "name": plan.name,
        "variables": variables(&plan.variables),
        "stages": plan.stages,
        "jobs": plan.jobs.iter().map(job_json).collect::<Vec<_>>(),
    })
}
