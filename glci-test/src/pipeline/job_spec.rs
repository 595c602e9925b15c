//! A planned job as GitLab hands it to a runner: what `Ci::BuildRunnerPresenter` derives
//! from the job before the server adds ids, tokens and URLs (docs/runner-contract.md §3).

use crate::git::CommitTree;
use crate::plan::cache_key::{cache_keys_at, KeySource};
use crate::plan::model::{Artifacts, Cache, CacheKey, Image, ReleaseConfig, Service, When};
use crate::plan::{Event, PlannedJob};
use crate::server::{
    ArtifactSpec, CacheSpec, DependencySpec, GitSpec, ImageSpec, JobId, JobSpec, JobVariable,
    ProjectSpec, RefType, RegistryLogin, ServiceSpec, StepSpec, StepWhen,
};

use super::duration::parse_duration;
use super::SettingsVariable;

/// GitLab's default job timeout (a project's "Timeout" setting, 60 minutes).
pub const DEFAULT_TIMEOUT_SECS: u64 = 3600;

/// GitLab's default `GIT_DEPTH` for new projects ("Git shallow clone" setting).
pub const DEFAULT_GIT_DEPTH: u32 = 20;

/// What every job of one pipeline shares: built once when the run starts, read by every
/// [`job_spec`].
#[derive(Clone)]
pub struct PipelineFacts {
    pub pipeline_id: u64,
    pub project: ProjectSpec,
    pub event: Event,
    /// The ref the pipeline runs for: branch (also the MR source branch) or tag.
    pub ref_name: String,
    pub ref_type: RefType,
    pub before_sha: String,
    /// Protected ref (the default branch; tags count as protected like GitLab's `v*` rules
    /// commonly make them, so deploy jobs see what they see on GitLab).
    pub protected: bool,
    /// Predefined pipeline variables, GitLab's order.
    pub predefined: Vec<(String, String)>,
    /// `GITLAB_USER_*`, appended after YAML variables.
    pub user_variables: Vec<(String, String)>,
    pub settings_variables: Vec<SettingsVariable>,
    /// The pipeline commit (`CI_COMMIT_SHA`), whose files `cache:key:files` digests.
    pub commit: CommitTree,
    /// The login for `CI_REGISTRY` when it is a real registry (`None`: the job token).
    pub registry_login: Option<RegistryLogin>,
}

/// The runner payload for one planned job. `dependencies` maps the jobs whose artifacts it
/// downloads to their server ids (latest attempt).
pub fn job_spec(
    job: &PlannedJob,
    facts: &PipelineFacts,
    dependencies: Vec<DependencySpec>,
) -> JobSpec {
    let mut variables: Vec<JobVariable> = Vec::new();
    // GitLab's order: job predefined, pipeline predefined, YAML, user; later wins.
    for (k, v) in &job.job_variables {
        variables.push(JobVariable::public(k, v));
    }
    for (k, v) in &facts.predefined {
        variables.push(JobVariable::public(k, v));
    }
    for (k, v) in &job.variables {
        variables.push(JobVariable {
            raw: !v.expand,
            ..JobVariable::public(k, &v.value)
        });
    }
    for (k, v) in &facts.user_variables {
        variables.push(JobVariable::public(k, v));
    }
    // Settings and pipeline variables win over dependencies' dotenv variables.
    let mut override_variables: Vec<JobVariable> = facts
        .settings_variables
        .iter()
        .map(|s| JobVariable {
            key: s.key.clone(),
            value: s.value.clone(),
            public: false,
            masked: s.masked,
            file: s.file,
            raw: false,
        })
        .collect();
    for (k, v) in &facts.event.variables {
        override_variables.push(JobVariable {
            public: false,
            ..JobVariable::public(k, v)
        });
    }

    let depth = lookup(&variables, &override_variables, "GIT_DEPTH")
        .and_then(|d| d.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_GIT_DEPTH);

    JobSpec {
        name: job.name.clone(),
        stage: job.stage.clone(),
        pipeline_id: facts.pipeline_id,
        project: facts.project.clone(),
        tags: job.tags.clone(),
        image: job.image.as_ref().map(image_spec),
        services: job.services.iter().map(service_spec).collect(),
        variables,
        override_variables,
        steps: steps(job),
        hooks: Vec::new(),
        artifacts: job
            .artifacts
            .as_ref()
            .map(artifact_specs)
            .unwrap_or_default(),
        cache: job
            .cache
            .iter()
            .enumerate()
            .map(|(i, c)| cache_spec(i, c, facts))
            .collect(),
        dependencies,
        timeout_secs: job
            .timeout
            .as_deref()
            .and_then(parse_duration)
            .map(|d| d.as_secs().max(1))
            .unwrap_or(DEFAULT_TIMEOUT_SECS),
        git: GitSpec {
            ref_name: facts.ref_name.clone(),
            ref_type: facts.ref_type,
            sha: facts.commit.sha().to_string(),
            before_sha: facts.before_sha.clone(),
            refspecs: refspecs(facts, depth),
            depth,
            protected: Some(facts.protected),
            object_format: String::new(),
        },
        allow_git_fetch: true,
        // The job's registry credentials go with `CI_REGISTRY`, as GitLab sends them.
        registry: facts
            .predefined
            .iter()
            .rev()
            .find(|(k, _)| k == "CI_REGISTRY")
            .map(|(_, v)| v.clone()),
        registry_login: facts.registry_login.clone(),
    }
}

/// The value a job sees for `key` (the last definition wins).
fn lookup<'a>(vars: &'a [JobVariable], overrides: &'a [JobVariable], key: &str) -> Option<&'a str> {
    vars.iter()
        .chain(overrides)
        .rev()
        .find(|v| v.key == key)
        .map(|v| v.value.as_str())
}

/// `Ci::BuildRunnerPresenter#refspecs`: the persistent pipeline ref, and with a shallow
/// clone only the pipeline's own branch or tag; with a full clone every branch and tag.
fn refspecs(facts: &PipelineFacts, depth: u32) -> Vec<String> {
    let id = facts.pipeline_id;
    let mut specs = vec![format!("+refs/pipelines/{id}:refs/pipelines/{id}")];
    let branch = |name: &str| format!("+refs/heads/{name}:refs/remotes/origin/{name}");
    let tag = |name: &str| format!("+refs/tags/{name}:refs/tags/{name}");
    if depth > 0 {
        specs.push(match facts.ref_type {
            RefType::Branch => branch(&facts.ref_name),
            RefType::Tag => tag(&facts.ref_name),
        });
    } else {
        specs.push(branch("*"));
        specs.push(tag("*"));
    }
    specs
}

fn image_spec(image: &Image) -> ImageSpec {
    ImageSpec {
        name: image.name.clone(),
        entrypoint: image.entrypoint.clone(),
        ports: Vec::new(),
        docker_platform: image.platform.clone(),
        docker_user: image.user.clone(),
        pull_policy: image.pull_policy.clone(),
    }
}

fn service_spec(service: &Service) -> ServiceSpec {
    ServiceSpec {
        image: ImageSpec {
            name: service.name.clone(),
            entrypoint: service.entrypoint.clone(),
            pull_policy: service.pull_policy.clone(),
            ..ImageSpec::default()
        },
        alias: service.alias.clone(),
        command: service.command.clone(),
        variables: service
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// `before_script` + `script` run as one step, `after_script` as another that always runs.
fn steps(job: &PlannedJob) -> Vec<StepSpec> {
    let mut script = job.before_script.clone();
    script.extend(job.script.iter().cloned());
    let mut steps = vec![StepSpec {
        name: "script".to_string(),
        script,
        when: StepWhen::OnSuccess,
        allow_failure: false,
    }];
    // `Ci::Build#steps`: script, then release, then after_script.
    if let Some(release) = &job.release {
        steps.push(StepSpec {
            name: "release".to_string(),
            script: vec![release_script(release)],
            when: StepWhen::OnSuccess,
            allow_failure: false,
        });
    }
    if !job.after_script.is_empty() {
        steps.push(StepSpec {
            name: "after_script".to_string(),
            script: job.after_script.clone(),
            when: StepWhen::Always,
            allow_failure: true,
        });
    }
    steps
}

/// `value` inside double quotes for the job's shell: `$VARIABLES` still expand, as in the
/// command GitLab's `Gitlab::Ci::Build::Releaser` generates.
fn shell_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `value` as a JSON string (variables in it still expand in the shell).
fn json_string(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}

/// The `release` step's command. GitLab generates a `release-cli create` (or `glab release
/// create`) command, which needs that tool in the job's image; glci's step runs it when the
/// image has it and otherwise sends the same `POST /projects/:id/releases` with `curl`.
fn release_script(release: &ReleaseConfig) -> String {
    // (release-cli flag, API parameter, value); only keys the YAML sets are sent.
    let mut fields: Vec<(&str, &str, &str)> = Vec::new();
    if let Some(name) = &release.name {
        fields.push(("name", "name", name));
    }
    fields.push(("description", "description", &release.description));
    fields.push(("tag-name", "tag_name", &release.tag_name));
    for (flag, key, value) in [
        ("tag-message", "tag_message", &release.tag_message),
        ("ref", "ref", &release.ref_name),
        ("released-at", "released_at", &release.released_at),
    ] {
        if let Some(v) = value {
            fields.push((flag, key, v));
        }
    }
    // (API parameter, value) in the order curl sends them, for the wget fallback.
    let mut form: Vec<(String, String)> = Vec::new();
    let mut cli = String::from("release-cli create");
    let mut curl = String::from(
        "curl --fail-with-body --silent --show-error --header \"JOB-TOKEN: $CI_JOB_TOKEN\"",
    );
    for (flag, key, value) in &fields {
        cli.push_str(&format!(" --{flag} {}", shell_quoted(value)));
        curl.push_str(&format!(
            " --data-urlencode {}",
            shell_quoted(&format!("{key}={value}"))
        ));
        form.push((key.to_string(), value.to_string()));
    }
    for milestone in &release.milestones {
        cli.push_str(&format!(" --milestone {}", shell_quoted(milestone)));
        curl.push_str(&format!(
            " --data-urlencode {}",
            shell_quoted(&format!("milestones[]={milestone}"))
        ));
        form.push(("milestones[]".to_string(), milestone.clone()));
    }
    for link in &release.links {
        // release-cli takes each link as JSON; the API as `assets[links][][key]` pairs, a
        // repeated `name` starting the next link (Rack's arrays of hashes).
        let mut json = format!(
            "{{\"name\":{},\"url\":{}",
            json_string(&link.name),
            json_string(&link.url)
        );
        let mut pairs = vec![("name", link.name.as_str()), ("url", link.url.as_str())];
        for (key, value) in [
            ("direct_asset_path", &link.direct_asset_path),
            ("link_type", &link.link_type),
        ] {
            if let Some(v) = value {
                json.push_str(&format!(",\"{key}\":{}", json_string(v)));
                pairs.push((key, v));
            }
        }
        json.push('}');
        cli.push_str(&format!(" --assets-link {}", shell_quoted(&json)));
        for (key, value) in pairs {
            curl.push_str(&format!(
                " --data-urlencode {}",
                shell_quoted(&format!("assets[links][][{key}]={value}"))
            ));
            form.push((format!("assets[links][][{key}]"), value.to_string()));
        }
    }
    curl.push_str(" \"$CI_API_V4_URL/projects/$CI_PROJECT_ID/releases\"");
    // Minimal images (busybox, alpine) have neither but have `wget`: the same form, every
    // value's bytes percent-encoded with `od`.
    let data: Vec<String> = form
        .iter()
        .map(|(key, value)| format!("{key}=$(glci_urlencode {})", shell_quoted(value)))
        .collect();
    let wget = format!(
        "glci_urlencode() {{ printf %s \"$1\" | od -An -tx1 -v | tr -d ' \\n' | sed 's/../%&/g'; }}\n  \
         wget -q -O - --header \"JOB-TOKEN: $CI_JOB_TOKEN\" --post-data \"{}\" \
         \"$CI_API_V4_URL/projects/$CI_PROJECT_ID/releases\" && echo",
        data.join("&")
    );
    format!(
        "if command -v release-cli >/dev/null 2>&1; then\n  {cli}\n\
         elif command -v curl >/dev/null 2>&1; then\n  {curl} && echo\n\
         elif command -v wget >/dev/null 2>&1; then\n  {wget}\n\
         else\n  echo 'release: the job image needs release-cli, curl or wget' >&2; exit 1\nfi"
    )
}

fn when_str(when: Option<When>) -> String {
    match when {
        Some(When::OnFailure) => "on_failure",
        Some(When::Always) => "always",
        _ => "on_success",
    }
    .to_string()
}

/// The archive plus one upload per report, as `Ci::Build#artifacts_options` lists them;
/// reports are uploaded whatever the job's result, as GitLab does.
fn artifact_specs(artifacts: &Artifacts) -> Vec<ArtifactSpec> {
    let mut specs = Vec::new();
    if !artifacts.paths.is_empty() || artifacts.untracked {
        specs.push(ArtifactSpec {
            name: artifacts.name.clone(),
            untracked: artifacts.untracked,
            paths: artifacts.paths.clone(),
            exclude: artifacts.exclude.clone(),
            when: when_str(artifacts.when),
            expire_in: artifacts.expire_in.clone(),
            artifact_type: "archive".to_string(),
            artifact_format: "zip".to_string(),
        });
    }
    for (report, paths) in &artifacts.reports {
        let artifact_type = if report == "coverage_report" {
            "cobertura"
        } else {
            report.as_str()
        };
        specs.push(ArtifactSpec {
            name: Some(artifact_type.to_string()),
            untracked: false,
            paths: paths.clone(),
            exclude: Vec::new(),
            when: "always".to_string(),
            expire_in: artifacts.expire_in.clone(),
            artifact_type: artifact_type.to_string(),
            artifact_format: report_format(artifact_type).to_string(),
        });
    }
    specs
}

/// `Ci::JobArtifact::TYPE_AND_FORMAT_PAIRS`.
fn report_format(artifact_type: &str) -> &'static str {
    match artifact_type {
        "junit" | "dotenv" | "cobertura" | "metrics" | "cyclonedx" | "annotations"
        | "metrics_referee" | "network_referee" => "gzip",
        "lsif" => "zip",
        _ => "raw",
    }
}

/// The cache entry with the key and fallback keys GitLab computes (see
/// [`crate::plan::cache_key`]).
fn cache_spec(index: usize, cache: &Cache, facts: &PipelineFacts) -> CacheSpec {
    let commit = &facts.commit;
    // The commit's file list (for `key:files` wildcards) is listed at the first entry that
    // needs it, once per pipeline.
    let all_files = match cache.key {
        CacheKey::Literal(_) => &[][..],
        _ => commit.files(),
    };
    let source = KeySource {
        file: &|path| commit.file(path),
        all_files,
        last_commit: &|paths| commit.last_commit(paths),
    };
    let (key, fallback_keys) = cache_keys_at(index, cache, &source, facts.protected);
    CacheSpec {
        key,
        untracked: cache.untracked,
        paths: cache.paths.clone(),
        policy: cache.policy.clone(),
        when: when_str(Some(cache.when)),
        fallback_keys,
    }
}

/// The id a dependency is known by, for [`job_spec`].
pub fn dependency(name: &str, id: JobId) -> DependencySpec {
    DependencySpec {
        job: id,
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_step_quotes_values_but_lets_variables_expand() {
        assert_eq!(
            shell_quoted(r#"a "b" `c` \d $E"#),
            r#""a \"b\" \`c\` \\d $E""#
        );
        let script = release_script(&ReleaseConfig {
            tag_name: "v$CI_PIPELINE_ID".to_string(),
            description: "notes".to_string(),
            milestones: vec!["m1".to_string()],
            ..ReleaseConfig::default()
        });
        assert!(script.starts_with("if command -v release-cli"), "{script}");
        assert!(
            script.contains(r#"release-cli create --description "notes" --tag-name "v$CI_PIPELINE_ID" --milestone "m1""#),
            "{script}"
        );
        assert!(
            script.contains(r#"--data-urlencode "tag_name=v$CI_PIPELINE_ID" --data-urlencode "milestones[]=m1" "$CI_API_V4_URL/projects/$CI_PROJECT_ID/releases""#),
            "{script}"
        );
        assert!(
            !script.contains("--name"),
            "unset keys are not sent: {script}"
        );
    }

    #[test]
    fn release_links_go_as_json_to_release_cli_and_as_pairs_to_the_api() {
        let script = release_script(&ReleaseConfig {
            tag_name: "v1".to_string(),
            description: "notes".to_string(),
            links: vec![crate::plan::model::ReleaseLink {
                name: "bin $CI_COMMIT_SHORT_SHA".to_string(),
                url: "https://x/bin".to_string(),
                direct_asset_path: Some("/bin".to_string()),
                link_type: None,
            }],
            ..ReleaseConfig::default()
        });
        assert!(
            script.contains(r#"--assets-link "{\"name\":\"bin $CI_COMMIT_SHORT_SHA\",\"url\":\"https://x/bin\",\"direct_asset_path\":\"/bin\"}""#),
            "{script}"
        );
        assert!(
            script.contains(r#"--data-urlencode "assets[links][][name]=bin $CI_COMMIT_SHORT_SHA" --data-urlencode "assets[links][][url]=https://x/bin" --data-urlencode "assets[links][][direct_asset_path]=/bin""#),
            "{script}"
        );
    }
}
