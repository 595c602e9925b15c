//! The job payload of a 201 `POST /jobs/request`, shaped exactly as docs/runner-contract.md §3:
//! numbers as numbers, optional fields omitted rather than `null` where the runner decodes
//! them strictly (`run` is never sent: glci has no `run:` jobs).

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::spec::{ImageSpec, JobSpec, JobVariable, RefType, ServiceSpec};
use super::state::{Inner, Job};

/// GitLab's failure reasons the runner may report as such (`commit_status.rb`).
pub(crate) const FAILURE_REASONS: &[&str] = &[
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
    "forward_deployment_failure",
    "user_blocked",
    "project_deleted",
    "ci_quota_exceeded",
    "pipeline_loop_detected",
    "no_matching_runner",
    "trace_size_exceeded",
    "builds_disabled",
    "environment_creation_failure",
    "deployment_rejected",
    "failed_outdated_deployment_job",
    "protected_environment_failure",
    "insufficient_bridge_permissions",
    "downstream_bridge_project_not_found",
    "invalid_bridge_trigger",
    "upstream_bridge_project_not_found",
    "insufficient_upstream_permissions",
    "bridge_pipeline_is_child_pipeline",
    "downstream_pipeline_creation_failed",
    "secrets_provider_not_found",
    "reached_max_descendant_pipelines_depth",
    "ip_restriction_failure",
    "reached_max_pipeline_hierarchy_size",
    "reached_downstream_pipeline_trigger_rate_limit",
    "runner_configuration_error",
    "runner_external_dependency_failure",
    "runner_interrupted",
];

/// Variables only the server can fill; any same-named entry in the spec is dropped.
const SERVER_OWNED: &[&str] = &[
    "CI_JOB_ID",
    "CI_JOB_URL",
    "CI_JOB_TOKEN",
    "CI_JOB_STARTED_AT",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
    "CI_REPOSITORY_URL",
    "CI_API_V4_URL",
    "CI_API_GRAPHQL_URL",
    "CI_PROJECT_URL",
    "CI_PIPELINE_URL",
];

/// How the server is reached from inside job containers.
pub(crate) struct ServerUrls<'a> {
    /// `http://host:port`
    pub(crate) url: &'a str,
    /// `host:port`
    pub(crate) host_port: &'a str,
}

/// The registry login a job gets: the spec's for a real registry, else GitLab's
/// `gitlab-ci-token` with the job token.
fn registry_login<'a>(spec: &'a JobSpec, token: &'a str) -> (&'a str, &'a str) {
    match &spec.registry_login {
        Some(login) => (&login.username, &login.password),
        None => ("gitlab-ci-token", token),
    }
}

fn var(key: &str, value: &str, public: bool, masked: bool) -> Value {
    json!({ "key": key, "value": value, "public": public, "masked": masked })
}

fn job_variable(v: &JobVariable) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), v.key.clone().into());
    m.insert("value".into(), v.value.clone().into());
    m.insert("public".into(), v.public.into());
    m.insert("masked".into(), v.masked.into());
    // GitLab sends `file`/`raw` only when true.
    if v.file {
        m.insert("file".into(), true.into());
    }
    if v.raw {
        m.insert("raw".into(), true.into());
    }
    Value::Object(m)
}

fn image(img: &ImageSpec) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), img.name.clone().into());
    m.insert(
        "entrypoint".into(),
        img.entrypoint
            .clone()
            .map(Value::from)
            .unwrap_or(Value::Null),
    );
    let ports: Vec<Value> = img
        .ports
        .iter()
        .map(|p| {
            json!({
                "number": p.number,
                "protocol": p.protocol.clone().unwrap_or_else(|| "http".to_string()),
                "name": p.name.clone().unwrap_or_default(),
            })
        })
        .collect();
    m.insert("ports".into(), ports.into());
    let mut docker = Map::new();
    if let Some(p) = &img.docker_platform {
        docker.insert("platform".into(), p.clone().into());
    }
    if let Some(u) = &img.docker_user {
        docker.insert("user".into(), u.clone().into());
    }
    let opts = if docker.is_empty() {
        json!({})
    } else {
        json!({ "docker": docker })
    };
    m.insert("executor_opts".into(), opts);
    m.insert(
        "pull_policy".into(),
        if img.pull_policy.is_empty() {
            Value::Null
        } else {
            img.pull_policy.clone().into()
        },
    );
    m
}

fn service(svc: &ServiceSpec) -> Value {
    let mut m = image(&svc.image);
    m.insert("alias".into(), svc.alias.clone().unwrap_or_default().into());
    m.insert(
        "command".into(),
        svc.command.clone().map(Value::from).unwrap_or(Value::Null),
    );
    let vars: Vec<Value> = svc
        .variables
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    m.insert("variables".into(), vars.into());
    Value::Object(m)
}

/// The 201 body for `job`, assigned now.
pub(crate) fn build(inner: &Inner, job: &Job, urls: &ServerUrls<'_>) -> Value {
    let spec = &job.spec;
    let id = job.id.0;
    let project_url = format!("{}/{}", urls.url, spec.project.path);
    let repo_url = format!(
        "http://gitlab-ci-token:{}@{}/{}.git",
        job.token, urls.host_port, spec.project.path
    );
    let (host, port) = match urls.host_port.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (urls.host_port, "80"),
    };

    let mut variables = vec![
        var("CI_JOB_ID", &id.to_string(), true, false),
        var(
            "CI_JOB_URL",
            &format!("{project_url}/-/jobs/{id}"),
            true,
            false,
        ),
        var("CI_JOB_TOKEN", &job.token, false, true),
        var(
            "CI_JOB_STARTED_AT",
            &crate::calendar::rfc3339(SystemTime::now()),
            true,
            false,
        ),
    ];
    if spec.registry.is_some() {
        let (user, password) = registry_login(spec, &job.token);
        variables.push(var("CI_REGISTRY_USER", user, true, false));
        variables.push(var("CI_REGISTRY_PASSWORD", password, false, true));
    }
    variables.push(var("CI_REPOSITORY_URL", &repo_url, false, false));
    // The instance a job is told about (`CI_SERVER_URL`, `_HOST`, ...) is the project's own
    // (its `origin`) when the spec names one; only what must be reached — the API, the clone
    // URL, the registry — always points here.
    let named_by_spec = |key: &str| spec.variables.iter().any(|v| v.key == key);
    for (k, v) in [
        ("CI_SERVER_URL", urls.url.to_string()),
        ("CI_SERVER_HOST", host.to_string()),
        ("CI_SERVER_PORT", port.to_string()),
        ("CI_SERVER_PROTOCOL", "http".to_string()),
        ("CI_SERVER_FQDN", urls.host_port.to_string()),
        // The runner rewrites submodule SSH URLs of this host to the clone URL's host.
        ("CI_SERVER_SHELL_SSH_HOST", host.to_string()),
        ("CI_SERVER_SHELL_SSH_PORT", "22".to_string()),
    ] {
        if !named_by_spec(k) {
            variables.push(var(k, &v, true, false));
        }
    }
    for (k, v) in [
        ("CI_API_V4_URL", format!("{}/api/v4", urls.url)),
        ("CI_API_GRAPHQL_URL", format!("{}/api/graphql", urls.url)),
        ("CI_PROJECT_URL", project_url.clone()),
        (
            "CI_PIPELINE_URL",
            format!("{project_url}/-/pipelines/{}", spec.pipeline_id),
        ),
    ] {
        variables.push(var(k, &v, true, false));
    }
    let not_owned = |v: &&JobVariable| !SERVER_OWNED.contains(&v.key.as_str());
    variables.extend(spec.variables.iter().filter(not_owned).map(job_variable));
    // Dependencies' dotenv variables sit between YAML and settings variables, as in GitLab's
    // variables builder; GitLab stores them as non-public job variables.
    for dep in &spec.dependencies {
        if let Some(producer) = inner.jobs.get(&dep.job.0) {
            for (k, v) in &producer.dotenv {
                variables.push(var(k, v, false, false));
            }
        }
    }
    variables.extend(
        spec.override_variables
            .iter()
            .filter(not_owned)
            .map(job_variable),
    );

    let steps: Vec<Value> = spec
        .steps
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "script": s.script,
                "timeout": spec.timeout_secs,
                "when": s.when.as_str(),
                "allow_failure": s.allow_failure,
            })
        })
        .collect();
    let hooks: Vec<Value> = spec
        .hooks
        .iter()
        .map(|h| json!({ "name": h.name, "script": h.script }))
        .collect();
    let artifacts: Vec<Value> = spec
        .artifacts
        .iter()
        .map(|a| {
            let mut m = Map::new();
            m.insert(
                "name".into(),
                a.name
                    .clone()
                    .unwrap_or_else(|| "artifacts".to_string())
                    .into(),
            );
            m.insert("untracked".into(), a.untracked.into());
            m.insert("paths".into(), a.paths.clone().into());
            // GitLab drops an empty `exclude`.
            if !a.exclude.is_empty() {
                m.insert("exclude".into(), a.exclude.clone().into());
            }
            m.insert("when".into(), a.when.clone().into());
            // A string on the runner's side: omitted rather than `null` when unset.
            if let Some(e) = &a.expire_in {
                m.insert("expire_in".into(), e.clone().into());
            }
            m.insert("artifact_type".into(), a.artifact_type.clone().into());
            m.insert("artifact_format".into(), a.artifact_format.clone().into());
            Value::Object(m)
        })
        .collect();
    let cache: Vec<Value> = spec
        .cache
        .iter()
        .map(|c| {
            json!({
                "key": c.key,
                "untracked": c.untracked,
                "paths": c.paths,
                "policy": c.policy,
                "when": c.when,
                "fallback_keys": c.fallback_keys,
            })
        })
        .collect();
    let credentials: Vec<Value> = spec
        .registry
        .iter()
        .map(|url| {
            let (username, password) = registry_login(spec, &job.token);
            json!({
                "type": "registry", "url": url,
                "username": username, "password": password,
            })
        })
        .collect();
    let dependencies: Vec<Value> = spec
        .dependencies
        .iter()
        .map(|d| {
            let mut m = Map::new();
            m.insert("id".into(), d.job.0.into());
            m.insert("name".into(), d.name.clone().into());
            // Current GitLab hands the consuming job's token to download with.
            m.insert("token".into(), job.token.clone().into());
            // Without an archive `artifacts_file` is omitted: a 404 download fails the job.
            let archive = inner
                .jobs
                .get(&d.job.0)
                .and_then(|p| p.artifacts.iter().find(|a| a.artifact_type == "archive"));
            if let Some(a) = archive {
                m.insert(
                    "artifacts_file".into(),
                    json!({ "filename": a.filename, "size": a.size }),
                );
            }
            Value::Object(m)
        })
        .collect();

    let git = &spec.git;
    let mut git_info = Map::new();
    git_info.insert("repo_url".into(), repo_url.into());
    git_info.insert(
        "repo_object_format".into(),
        if git.object_format.is_empty() {
            "sha1".to_string()
        } else {
            git.object_format.clone()
        }
        .into(),
    );
    git_info.insert("ref".into(), git.ref_name.clone().into());
    git_info.insert("sha".into(), git.sha.clone().into());
    git_info.insert(
        "before_sha".into(),
        if git.before_sha.is_empty() {
            "0000000000000000000000000000000000000000".to_string()
        } else {
            git.before_sha.clone()
        }
        .into(),
    );
    git_info.insert(
        "ref_type".into(),
        match git.ref_type {
            RefType::Branch => "branch",
            RefType::Tag => "tag",
        }
        .into(),
    );
    git_info.insert("refspecs".into(), git.refspecs.clone().into());
    git_info.insert("depth".into(), git.depth.into());
    git_info.insert(
        "protected".into(),
        git.protected.map(Value::from).unwrap_or(Value::Null),
    );

    json!({
        "id": id,
        "token": job.token,
        "allow_git_fetch": spec.allow_git_fetch,
        "job_info": {
            "id": id,
            "name": spec.name,
            "stage": spec.stage,
            "pipeline_id": spec.pipeline_id,
            "project_id": spec.project.id,
            "project_name": spec.project.name(),
            "project_full_path": spec.project.path,
            "namespace_id": spec.project.namespace_id,
            "root_namespace_id": spec.project.root_namespace_id,
            "organization_id": 1,
            "instance_id": "",
            "instance_uuid": "",
            "user_id": 1,
            "time_in_queue_seconds": job.queued_at.elapsed().as_secs_f64(),
            "project_jobs_running_on_instance_runners_count": "+Inf",
            "queue_size": 0,
            "queue_depth": 0,
        },
        "git_info": git_info,
        "runner_info": { "uuid": "", "timeout": spec.timeout_secs },
        "variables": variables,
        "steps": steps,
        "hooks": hooks,
        "image": spec.image.as_ref().map(|i| Value::Object(image(i))).unwrap_or(Value::Null),
        "services": spec.services.iter().map(service).collect::<Vec<_>>(),
        "artifacts": artifacts,
        "cache": cache,
        "credentials": credentials,
        "dependencies": dependencies,
        "features": {
            "trace_sections": true,
            "failure_reasons": FAILURE_REASONS,
        },
    })
}
