//! The job's environment as the official runner builds it (docs/runner-contract.md §4.2): the
//! variables GitLab sent, framed by the ones the runner adds, last definition winning, then
//! expanded once (`raw` values kept literal).

use super::payload::{JobPayload, JobVariable};
use crate::vars::runner as runner_expansion;
use crate::vars::VariableLookup;

/// Identity of this runner, as it appears in variables and the log header.
#[derive(Debug, Clone)]
pub struct RunnerIdentity {
    pub name: String,
    pub version: String,
    pub revision: String,
    /// The runner token's first 9 characters after its prefix (`CI_RUNNER_SHORT_TOKEN`).
    pub short_token: String,
}

impl Default for RunnerIdentity {
    fn default() -> Self {
        RunnerIdentity {
            name: "glci".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: "glci".to_string(),
            short_token: "glci00000".to_string(),
        }
    }
}

fn var(key: &str, value: impl Into<String>) -> JobVariable {
    JobVariable {
        key: key.to_string(),
        value: value.into(),
        public: true,
        ..Default::default()
    }
}

/// All variables of the job, in the runner's order, deduplicated (last wins, position of the
/// last), expanded once. `image` is the image the build container runs.
pub fn job_variables(
    payload: &JobPayload,
    identity: &RunnerIdentity,
    image: &str,
    network: Option<&str>,
) -> Vec<JobVariable> {
    let project_dir = payload.project_dir();
    let mut all = vec![
        var("CI_JOB_IMAGE", image),
        var("CI_RUNNER_SHORT_TOKEN", identity.short_token.clone()),
        var("CI_BUILDS_DIR", payload.builds_root()),
        var("CI_PROJECT_DIR", project_dir.clone()),
        var("CI_CONCURRENT_ID", "0"),
        var("CI_CONCURRENT_PROJECT_ID", "0"),
        var("CI_SERVER", "yes"),
        var("CI_JOB_STATUS", "running"),
        var("CI_JOB_TIMEOUT", payload.timeout_secs().to_string()),
    ];
    // Job variables named FF_* are the runner's feature flags, not the job's.
    all.extend(
        payload
            .variables
            .iter()
            .filter(|v| !v.key.starts_with("FF_"))
            .cloned(),
    );
    all.extend([
        var("CI_DISPOSABLE_ENVIRONMENT", "true"),
        var("CI_RUNNER_VERSION", identity.version.clone()),
        var("CI_RUNNER_REVISION", identity.revision.clone()),
        var("CI_RUNNER_EXECUTABLE_ARCH", format!("linux/{}", go_arch())),
        var("RUNNER_TEMP_PROJECT_DIR", format!("{project_dir}.tmp")),
    ]);
    if let Some(net) = network {
        all.push(var("CI_BUILD_NETWORK_NAME", net));
    }
    let deduped = last_wins(all);
    expand_all(&deduped)
}

/// Keeps the last definition of each key.
fn last_wins(vars: Vec<JobVariable>) -> Vec<JobVariable> {
    let mut out: Vec<JobVariable> = Vec::with_capacity(vars.len());
    for v in vars {
        out.retain(|o| o.key != v.key);
        out.push(v);
    }
    out
}

/// Expands `$KEY` / `${KEY}` in every non-raw value once, against the collection itself
/// (the runner's `os.Expand` pass: unknown variables become empty).
fn expand_all(vars: &[JobVariable]) -> Vec<JobVariable> {
    vars.iter()
        .map(|v| {
            if v.raw || !v.value.contains('$') {
                return v.clone();
            }
            JobVariable {
                value: expand(&v.value, vars),
                ..v.clone()
            }
        })
        .collect()
}

/// The job's variables as the runner looks a name up: the last definition wins.
pub struct LastDefinition<'a>(pub &'a [JobVariable]);

impl VariableLookup for LastDefinition<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|v| v.key == name)
            .map(|v| v.value.as_str())
    }
}

/// `value` expanded once against `vars` with the runner's expansion (`vars::runner`, Go's
/// `os.Expand` with `$$` kept as `$`), as the official runner expands image names, cache
/// keys and paths, and service variables.
pub fn expand(value: &str, vars: &[JobVariable]) -> String {
    runner_expansion::expand_value(value, &LastDefinition(vars))
}

/// Variables a service container gets: the public ones, then the service's own (expanded
/// against all job variables). Secrets (`public: false`) such as `CI_JOB_TOKEN` never reach it.
pub fn service_variables(
    job_vars: &[JobVariable],
    service_vars: &[JobVariable],
) -> Vec<JobVariable> {
    let mut out: Vec<JobVariable> = job_vars
        .iter()
        .filter(|v| v.public && !v.file)
        .cloned()
        .collect();
    out.extend(service_vars.iter().map(|v| JobVariable {
        value: expand(&v.value, job_vars),
        ..v.clone()
    }));
    last_wins(out)
}

/// Go's GOARCH name for this machine.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_is_the_runners_with_the_last_definition_winning() {
        let vars = [
            var("A", "0"),
            var("A", "1"),
            var("B_2", "two"),
            var("U", "ünï"),
        ];
        assert_eq!(expand("$A-${B_2}-$$A-$NOPE-$", &vars), "1-two-$A--$");
        assert_eq!(expand("$U $A", &vars), "ünï 1");
        // Go's os.Expand eats a `${` that is never closed.
        assert_eq!(expand("${unclosed", &vars), "unclosed");
    }

    #[test]
    fn runner_variables_frame_job_variables_and_raw_stays_literal() {
        let payload: JobPayload = serde_json::from_str(
            r#"{"id": 1, "token": "t", "git_info": {"repo_url": "http://h/acme/demo.git"},
                "variables": [
                  {"key": "CI_PROJECT_DIR", "value": "/wrong", "public": true},
                  {"key": "GREETING", "value": "hi from $CI_PROJECT_DIR", "public": true},
                  {"key": "RAW", "value": "$CI_PROJECT_DIR", "public": true, "raw": true},
                  {"key": "CI_RUNNER_VERSION", "value": "0", "public": true},
                  {"key": "FF_NETWORK_PER_BUILD", "value": "true", "public": true}]}"#,
        )
        .unwrap();
        let vars = job_variables(&payload, &RunnerIdentity::default(), "img", Some("net"));
        let get = |k: &str| vars.iter().find(|v| v.key == k).map(|v| v.value.clone());
        // A job variable overrides what the runner sets before it, not what it sets after.
        assert_eq!(get("CI_PROJECT_DIR").as_deref(), Some("/wrong"));
        assert_eq!(get("GREETING").as_deref(), Some("hi from /wrong"));
        assert_eq!(get("RAW").as_deref(), Some("$CI_PROJECT_DIR"));
        assert_eq!(
            get("CI_RUNNER_VERSION").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(get("FF_NETWORK_PER_BUILD"), None);
        assert_eq!(get("CI_BUILD_NETWORK_NAME").as_deref(), Some("net"));
    }

    #[test]
    fn services_get_no_secrets() {
        let job = vec![
            JobVariable {
                key: "CI_JOB_TOKEN".into(),
                value: "secret".into(),
                public: false,
                masked: true,
                ..Default::default()
            },
            JobVariable {
                key: "DB".into(),
                value: "app".into(),
                public: true,
                ..Default::default()
            },
        ];
        let svc = vec![JobVariable {
            key: "POSTGRES_DB".into(),
            value: "$DB".into(),
            ..Default::default()
        }];
        let out = service_variables(&job, &svc);
        assert!(out.iter().all(|v| v.key != "CI_JOB_TOKEN"));
        assert!(out
            .iter()
            .any(|v| v.key == "POSTGRES_DB" && v.value == "app"));
    }
}
