//! `GET /job`: the job the token belongs to, in the shape of GitLab's `Entities::Ci::Job`.

use std::time::SystemTime;

use http::StatusCode;
use serde_json::{json, Value};

use super::not_found;
use crate::calendar::rfc3339;
use crate::server::http::{self as h, Response};
use crate::server::runner_api::spec::JobId;
use crate::server::runner_api::spec::RefType;
use crate::server::runner_api::state::{Job, JobState};
use crate::server::Shared;

pub(super) fn current(shared: &Shared, id: JobId) -> Response {
    let inner = shared.api.lock();
    match inner.jobs.get(&id.0) {
        Some(job) => h::json(StatusCode::OK, &entity(job, &shared.url)),
        None => not_found(),
    }
}

fn time(t: Option<SystemTime>) -> Value {
    t.map(|t| Value::String(rfc3339(t))).unwrap_or(Value::Null)
}

fn seconds_between(from: Option<SystemTime>, to: Option<SystemTime>) -> Value {
    match (from, to) {
        (Some(a), Some(b)) => b
            .duration_since(a)
            .map(|d| json!(d.as_secs_f64()))
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// `Entities::Ci::Job` (`JobBasic` plus artifacts, runner and tags), with what glci knows:
/// no user (no accounts), the pipeline's commit by SHA only.
fn entity(job: &Job, url: &str) -> Value {
    let spec = &job.spec;
    let status = job.state.gitlab_status();
    let project_url = format!("{url}/{}", spec.project.path);
    let running_until = if job.state.is_finished() {
        job.finished_at
    } else {
        Some(SystemTime::now())
    };
    let artifacts: Vec<Value> = job
        .artifacts
        .iter()
        .map(|a| {
            json!({
                "file_type": a.artifact_type,
                "size": a.size,
                "filename": a.filename,
                "file_format": a.format,
            })
        })
        .collect();
    let mut entity = json!({
        "id": job.id.0,
        "status": status,
        "stage": spec.stage,
        "name": spec.name,
        "ref": spec.git.ref_name,
        "tag": spec.git.ref_type == RefType::Tag,
        "coverage": null,
        "allow_failure": false,
        "created_at": rfc3339(job.created_at),
        "started_at": time(job.started_at),
        "finished_at": time(job.finished_at),
        "erased_at": null,
        "duration": seconds_between(job.started_at, running_until),
        "queued_duration": seconds_between(Some(job.created_at), job.started_at),
        "user": null,
        "commit": {
            "id": spec.git.sha,
            "short_id": spec.git.sha.get(..8).unwrap_or(&spec.git.sha),
        },
        "pipeline": {
            "id": spec.pipeline_id,
            "iid": spec.pipeline_id,
            "project_id": spec.project.id,
            "sha": spec.git.sha,
            "ref": spec.git.ref_name,
            "status": "running",
            "source": "push",
            "web_url": format!("{project_url}/-/pipelines/{}", spec.pipeline_id),
        },
        "web_url": format!("{project_url}/-/jobs/{}", job.id.0),
        "project": { "ci_job_token_scope_enabled": false },
        "artifacts": artifacts,
        "runner": job.runner_id.map(|id| json!({
            "id": id, "description": "glci", "active": true, "paused": false,
            "is_shared": false, "runner_type": "project_type", "online": true,
            "status": "online",
        })),
        "artifacts_expire_at": null,
        "archived": false,
        "tag_list": spec.tags,
    });
    if let JobState::Failed { reason, .. } = &job.state {
        entity["failure_reason"] = json!(reason);
    }
    if let Some(archive) = job.artifacts.iter().find(|a| a.artifact_type == "archive") {
        entity["artifacts_file"] = json!({ "filename": archive.filename, "size": archive.size });
    }
    entity
}
