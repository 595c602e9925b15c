//! Predefined variables (`CI_*`, `GITLAB_*`) for an event, from the real repository, in the
//! order GitLab sends them to a runner (`docs/runner-contract.md` §4.1; GitLab's
//! `Project#predefined_variables`, `Gitlab::Ci::Variables::Builder::Pipeline`,
//! `MergeRequest#predefined_variables`). Order matters: a runner reads the last occurrence of
//! a name, and nested expansion sees earlier values.
//!
//! Values GitLab takes from its database (ids, visibility, MR title...) come from
//! [`PipelineContext`], whose defaults are documented plausible values. Job-level variables
//! (`CI_JOB_*`, `CI_NODE_*`, `CI_ENVIRONMENT_*`) belong to each job and are not here.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Event, PipelineSource};
use crate::calendar::xmlschema_utc;
use crate::git::{instance_url, RepoFacts, BLANK_SHA};

/// Longest slug GitLab produces (a DNS label).
pub const SLUG_MAX_LEN: usize = 63;

/// GitLab truncates `CI_COMMIT_MESSAGE`/`TITLE`/`DESCRIPTION` to this many bytes
/// (`MAX_COMMIT_MESSAGE_SIZE_IN_BYTES`, default of `GITLAB_CI_MAX_COMMIT_MESSAGE_SIZE_IN_BYTES`).
pub const MAX_COMMIT_MESSAGE_BYTES: usize = 100_000;

/// GitLab version glci's semantics follow (the reference baseline, 18.11), reported as
/// `CI_SERVER_VERSION` unless overridden.
pub const DEFAULT_SERVER_VERSION: &str = "18.11.0";

/// Variables only a running job has; GitLab does not offer them to `rules`/`workflow`.
pub const JOB_ONLY: [&str; 3] = [
    "CI_PIPELINE_ID",
    "CI_PIPELINE_URL",
    "CI_PIPELINE_CREATED_AT",
];

/// `Gitlab::Utils.slugify`: lower-case (Unicode-aware), every character outside `[a-z0-9]`
/// becomes `-` (runs are not collapsed), cut to 63 characters, then leading and trailing `-`
/// stripped (cutting first, so the result can be shorter than 63).
pub fn slugify(s: &str) -> String {
    let replaced: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(SLUG_MAX_LEN)
        .collect();
    replaced.trim_matches('-').to_string()
}

/// The ref a pipeline runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineRef {
    Branch(String),
    Tag(String),
}

impl PipelineRef {
    /// Branch or tag name (`CI_COMMIT_REF_NAME`).
    pub fn name(&self) -> &str {
        match self {
            PipelineRef::Branch(n) | PipelineRef::Tag(n) => n,
        }
    }
}

/// Default branch for `event`: its override, else the repository's.
pub fn default_branch(facts: &RepoFacts, event: &Event) -> String {
    event
        .default_branch
        .clone()
        .unwrap_or_else(|| facts.default_branch.clone())
}

/// The target branch of a merge-request pipeline: the event's, else the default branch.
pub fn merge_request_target(facts: &RepoFacts, event: &Event) -> String {
    event
        .target_branch
        .clone()
        .unwrap_or_else(|| default_branch(facts, event))
}

/// The ref of the pipeline for `event`, filling what the event leaves open from the
/// repository: an explicit tag (not for merge requests), else an explicit branch, else the
/// checked-out branch, else (detached HEAD) the default branch. For a merge request this is
/// the source branch.
pub fn pipeline_ref(facts: &RepoFacts, event: &Event) -> PipelineRef {
    if event.source != PipelineSource::MergeRequestEvent {
        if let Some(tag) = &event.tag {
            return PipelineRef::Tag(tag.clone());
        }
    }
    PipelineRef::Branch(
        event
            .branch
            .clone()
            .or_else(|| facts.branch.clone())
            .unwrap_or_else(|| default_branch(facts, event)),
    )
}

/// `event` with every ref GitLab knows for a pipeline filled in from the repository where
/// the flags left it open: the pipeline ref (see [`pipeline_ref`]), the default branch and,
/// for a merge request, the target branch. Planning reads refs only from this one event, so
/// `only: [master]` sees the branch git gave exactly as `CI_COMMIT_BRANCH` does.
pub fn resolve_event(facts: &RepoFacts, event: &Event) -> Event {
    let mut resolved = event.clone();
    match pipeline_ref(facts, event) {
        PipelineRef::Tag(tag) => {
            resolved.tag = Some(tag);
            resolved.branch = None;
        }
        PipelineRef::Branch(branch) => {
            resolved.branch = Some(branch);
            resolved.tag = None;
        }
    }
    if event.source == PipelineSource::MergeRequestEvent {
        resolved.target_branch = Some(merge_request_target(facts, event));
    }
    resolved.default_branch = Some(default_branch(facts, event));
    resolved
}

/// The merge request a `merge_request_event` pipeline belongs to. GitLab keeps these in its
/// database; locally they are chosen (defaults: id 1, iid 1, detached pipeline).
#[derive(Debug, Clone)]
pub struct MergeRequestInfo {
    pub id: u64,
    pub iid: u64,
    /// `None`: the title of the source branch's HEAD commit (GitLab's default title for a
    /// one-commit branch).
    pub title: Option<String>,
    pub description: String,
    pub labels: Vec<String>,
    pub draft: bool,
    /// `detached` (default), `merged_result` or `merge_train`.
    pub event_type: String,
    /// `merge_base(target, source)`: `CI_MERGE_REQUEST_DIFF_BASE_SHA` (empty when unknown).
    pub diff_base_sha: Option<String>,
}

impl Default for MergeRequestInfo {
    fn default() -> Self {
        MergeRequestInfo {
            id: 1,
            iid: 1,
            title: None,
            description: String::new(),
            labels: Vec::new(),
            draft: false,
            event_type: "detached".to_string(),
            diff_base_sha: None,
        }
    }
}

/// Server-side facts of one pipeline: what GitLab would know and the repository cannot say.
#[derive(Debug, Clone)]
pub struct PipelineContext {
    /// Base URL of the (mock) GitLab as jobs reach it, e.g. `http://172.17.0.1:8080`.
    pub server_url: String,
    pub server_version: String,
    /// `CI_SERVER_REVISION`; default `glci`.
    pub server_revision: String,
    /// `CI_PROJECT_ID`; `None` (the default): derived from the project path
    /// ([`crate::git::ProjectPath::stable_id`]), so each project has its own.
    pub project_id: Option<u64>,
    pub namespace_id: u64,
    pub pipeline_id: u64,
    pub pipeline_iid: u64,
    pub created_at: SystemTime,
    /// The pipeline's commit when it is not HEAD (the working-tree snapshot); its message
    /// and author are HEAD's, as [`crate::git::snapshot`] makes them.
    pub commit_sha: Option<String>,
    /// `CI_CONFIG_PATH`; default `.gitlab-ci.yml`.
    pub config_path: String,
    /// `workflow:name`, once evaluated.
    pub pipeline_name: Option<String>,
    /// `host:port` of the registry, when one is served (`CI_REGISTRY`, `CI_REGISTRY_IMAGE`).
    pub registry: Option<String>,
    /// `CI_PROJECT_VISIBILITY`; default `private`.
    pub visibility: String,
    /// `CI_SERVER_SHELL_SSH_PORT`; default 22.
    pub ssh_port: u16,
    /// `CI_PIPELINE_SCHEDULE_DESCRIPTION` of a schedule pipeline.
    pub schedule_description: String,
    /// `GITLAB_USER_ID` of the user who "pushed"; default 1.
    pub user_id: u64,
    pub merge_request: MergeRequestInfo,
}

impl PipelineContext {
    /// Defaults for a pipeline on `server_url`: the project's own id in namespace 1, pipeline
    /// 1 (iid 1), created now.
    pub fn new(server_url: impl Into<String>) -> Self {
        PipelineContext {
            server_url: server_url.into().trim_end_matches('/').to_string(),
            server_version: DEFAULT_SERVER_VERSION.to_string(),
            server_revision: "glci".to_string(),
            project_id: None,
            namespace_id: 1,
            pipeline_id: 1,
            pipeline_iid: 1,
            created_at: SystemTime::now(),
            commit_sha: None,
            config_path: ".gitlab-ci.yml".to_string(),
            pipeline_name: None,
            registry: None,
            visibility: "private".to_string(),
            ssh_port: 22,
            schedule_description: String::new(),
            user_id: 1,
            merge_request: MergeRequestInfo::default(),
        }
    }
}

/// `scheme://host[:port]/...` → (protocol, host, port) with the scheme's default port.
fn split_server_url(url: &str) -> (String, String, u16) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').unwrap_or((v6, ""));
        (
            h.to_string(),
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        )
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()),
            None => (authority.to_string(), None),
        }
    };
    (scheme.to_lowercase(), host, port.unwrap_or(default_port))
}

/// Cuts `s` to at most `max` bytes on a character boundary (GitLab's `byteslice`, without
/// producing broken UTF-8).
fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Every predefined variable a job of this pipeline receives from GitLab, in GitLab's order,
/// minus job-level ones: pipeline persisted (`CI_PIPELINE_ID`, `CI_PIPELINE_URL`), then
/// instance and project (`CI`, `CI_SERVER_*`, `CI_PROJECT_*`, `CI_DEFAULT_BRANCH`, ...), then
/// pipeline (`CI_PIPELINE_*`, `CI_COMMIT_*`, `CI_MERGE_REQUEST_*`, ...). A runner payload
/// inserts the job's own variables after the persisted pair and appends YAML variables and
/// then [`user_variables`] after these.
pub fn predefined_variables(
    facts: &RepoFacts,
    event: &Event,
    ctx: &PipelineContext,
) -> Vec<(String, String)> {
    let mut vars = persisted_variables(facts, ctx);
    vars.extend(project_variables(facts, event, ctx));
    vars.extend(pipeline_variables(facts, event, ctx, true));
    vars
}

/// The predefined variables `workflow:rules`, `rules` and `include:rules` can see: those of
/// [`predefined_variables`] without the job-only ones ([`JOB_ONLY`]), and without
/// `CI_PIPELINE_NAME` unless a name is known.
pub fn rules_variables(
    facts: &RepoFacts,
    event: &Event,
    ctx: &PipelineContext,
) -> Vec<(String, String)> {
    let mut vars = project_variables(facts, event, ctx);
    vars.extend(pipeline_variables(facts, event, ctx, false));
    vars.retain(|(k, _)| !JOB_ONLY.contains(&k.as_str()));
    vars
}

/// `GITLAB_USER_ID`, `_EMAIL`, `_LOGIN`, `_NAME` from git's `user.*` (login: the e-mail's
/// local part). GitLab appends these after the YAML variables, so YAML cannot override them.
pub fn user_variables(facts: &RepoFacts, ctx: &PipelineContext) -> Vec<(String, String)> {
    let email = &facts.user.email;
    let local = email.split('@').next().unwrap_or(email);
    let login: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    vec![
        kv("GITLAB_USER_ID", ctx.user_id.to_string()),
        kv("GITLAB_USER_EMAIL", email),
        kv(
            "GITLAB_USER_LOGIN",
            if login.is_empty() {
                "glci".to_string()
            } else {
                login
            },
        ),
        kv("GITLAB_USER_NAME", &facts.user.name),
    ]
}

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// `CI_PROJECT_ID`: the one set, else the project's own ([`crate::git::ProjectPath::stable_id`]).
fn project_id(facts: &RepoFacts, ctx: &PipelineContext) -> u64 {
    ctx.project_id.unwrap_or_else(|| facts.project.stable_id())
}

fn project_url(facts: &RepoFacts, ctx: &PipelineContext) -> String {
    format!("{}/{}", ctx.server_url, facts.project.path())
}

fn persisted_variables(facts: &RepoFacts, ctx: &PipelineContext) -> Vec<(String, String)> {
    vec![
        kv("CI_PIPELINE_ID", ctx.pipeline_id.to_string()),
        kv(
            "CI_PIPELINE_URL",
            format!(
                "{}/-/pipelines/{}",
                project_url(facts, ctx),
                ctx.pipeline_id
            ),
        ),
    ]
}

/// `Project#predefined_variables`: instance, project, registry, API.
fn project_variables(
    facts: &RepoFacts,
    event: &Event,
    ctx: &PipelineContext,
) -> Vec<(String, String)> {
    // The instance is the one `origin` names, as the project path is: configurations test
    // `$CI_SERVER_HOST == "gitlab.com"`. What a job must reach (`CI_API_V4_URL`, the clone
    // URL, the registry) stays on the stand-in `ctx.server_url`.
    let instance = facts
        .remote_url
        .as_deref()
        .and_then(instance_url)
        .unwrap_or_else(|| ctx.server_url.clone());
    let (protocol, host, port) = split_server_url(&instance);
    let mut version = ctx.server_version.split(['.', '-']);
    let mut part = || version.next().unwrap_or("0").to_string();
    let (major, minor, patch) = (part(), part(), part());
    let project = &facts.project;
    let path = project.path();
    let default_branch = default_branch(facts, event);
    // GitLab documents the FQDN with the port when it is not the protocol's default
    // (`gitlab.example.com:8080`).
    let default_port = if protocol == "https" { 443 } else { 80 };
    let fqdn = if port == default_port {
        host.clone()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut vars = vec![
        kv("CI", "true"),
        kv("GITLAB_CI", "true"),
        kv("CI_SERVER_FQDN", fqdn),
        kv("CI_SERVER_URL", &instance),
        kv("CI_SERVER_HOST", &host),
        kv("CI_SERVER_PORT", port.to_string()),
        kv("CI_SERVER_PROTOCOL", protocol),
        kv("CI_SERVER_SHELL_SSH_HOST", &host),
        kv("CI_SERVER_SHELL_SSH_PORT", ctx.ssh_port.to_string()),
        kv("CI_SERVER_NAME", "GitLab"),
        kv("CI_SERVER_VERSION", &ctx.server_version),
        kv("CI_SERVER_VERSION_MAJOR", major),
        kv("CI_SERVER_VERSION_MINOR", minor),
        kv("CI_SERVER_VERSION_PATCH", patch),
        kv("CI_SERVER_REVISION", &ctx.server_revision),
        kv("GITLAB_FEATURES", ""),
        kv("CI_PROJECT_ID", project_id(facts, ctx).to_string()),
        kv("CI_PROJECT_NAME", &project.name),
        kv("CI_PROJECT_TITLE", &project.name),
        kv("CI_PROJECT_DESCRIPTION", ""),
        kv("CI_PROJECT_PATH", &path),
        kv("CI_PROJECT_PATH_SLUG", slugify(&path)),
        kv("CI_PROJECT_NAMESPACE", &project.namespace),
        kv("CI_PROJECT_NAMESPACE_SLUG", slugify(&project.namespace)),
        kv("CI_PROJECT_NAMESPACE_ID", ctx.namespace_id.to_string()),
        kv("CI_PROJECT_ROOT_NAMESPACE", project.root_namespace()),
        kv("CI_PROJECT_URL", project_url(facts, ctx)),
        kv("CI_PROJECT_VISIBILITY", &ctx.visibility),
        kv("CI_PROJECT_REPOSITORY_LANGUAGES", ""),
        kv("CI_PROJECT_CLASSIFICATION_LABEL", ""),
        kv("CI_DEFAULT_BRANCH", &default_branch),
        kv("CI_DEFAULT_BRANCH_SLUG", slugify(&default_branch)),
        kv("CI_CONFIG_PATH", &ctx.config_path),
    ];
    if let Some(registry) = &ctx.registry {
        vars.push(kv("CI_REGISTRY", registry));
        vars.push(kv(
            "CI_REGISTRY_IMAGE",
            format!("{registry}/{}", path.to_lowercase()),
        ));
    }
    vars.push(kv("CI_API_V4_URL", format!("{}/api/v4", ctx.server_url)));
    vars.push(kv(
        "CI_API_GRAPHQL_URL",
        format!("{}/api/graphql", ctx.server_url),
    ));
    vars.push(kv("CI_TEMPLATE_REGISTRY_HOST", "registry.gitlab.com"));
    vars
}

/// `Gitlab::Ci::Variables::Builder::Pipeline#predefined_variables`.
fn pipeline_variables(
    facts: &RepoFacts,
    event: &Event,
    ctx: &PipelineContext,
    for_job: bool,
) -> Vec<(String, String)> {
    let is_mr = event.source == PipelineSource::MergeRequestEvent;
    let pref = pipeline_ref(facts, event);
    let default_branch = default_branch(facts, event);
    let created = ctx
        .created_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));

    let mut vars = vec![
        kv("CI_PIPELINE_IID", ctx.pipeline_iid.to_string()),
        kv("CI_PIPELINE_SOURCE", event.source.as_str()),
        kv("CI_PIPELINE_CREATED_AT", xmlschema_utc(created)),
    ];
    // GitLab appends the name even when nil (the runner sees ""); in rules a nil name is
    // undefined, not empty.
    match (&ctx.pipeline_name, for_job) {
        (Some(name), _) => vars.push(kv("CI_PIPELINE_NAME", name)),
        (None, true) => vars.push(kv("CI_PIPELINE_NAME", "")),
        (None, false) => {}
    }
    if event.source == PipelineSource::Schedule {
        vars.push(kv(
            "CI_PIPELINE_SCHEDULE_DESCRIPTION",
            &ctx.schedule_description,
        ));
    }

    let sha = ctx
        .commit_sha
        .clone()
        .or_else(|| facts.head_sha().map(str::to_string));
    if let Some(sha) = &sha {
        let head = facts.head.as_ref();
        let message = head.map(|h| h.message.clone()).unwrap_or_default();
        let truncated = message.len() > MAX_COMMIT_MESSAGE_BYTES;
        let cut = |s: String| {
            if truncated {
                truncate_bytes(&s, MAX_COMMIT_MESSAGE_BYTES)
            } else {
                s
            }
        };
        let before = match (&pref, event.source) {
            (PipelineRef::Branch(b), PipelineSource::Push) => facts.before_sha(b, sha),
            _ => None,
        };
        let protected = match &pref {
            PipelineRef::Branch(b) => !is_mr && *b == default_branch,
            PipelineRef::Tag(_) => false,
        };
        vars.push(kv("CI_COMMIT_SHA", sha));
        vars.push(kv("CI_COMMIT_SHORT_SHA", sha.get(..8).unwrap_or(sha)));
        vars.push(kv(
            "CI_COMMIT_BEFORE_SHA",
            before.unwrap_or_else(|| BLANK_SHA.to_string()),
        ));
        vars.push(kv("CI_COMMIT_REF_NAME", pref.name()));
        vars.push(kv("CI_COMMIT_REF_SLUG", slugify(pref.name())));
        if let (PipelineRef::Branch(b), false) = (&pref, is_mr) {
            vars.push(kv("CI_COMMIT_BRANCH", b));
        }
        vars.push(kv("CI_COMMIT_MESSAGE", cut(message.clone())));
        vars.push(kv("CI_COMMIT_MESSAGE_IS_TRUNCATED", truncated.to_string()));
        vars.push(kv(
            "CI_COMMIT_TITLE",
            cut(head.map(|h| h.full_title()).unwrap_or_default()),
        ));
        vars.push(kv(
            "CI_COMMIT_DESCRIPTION",
            cut(head.map(|h| h.description()).unwrap_or_default()),
        ));
        vars.push(kv("CI_COMMIT_REF_PROTECTED", protected.to_string()));
        vars.push(kv(
            "CI_COMMIT_TIMESTAMP",
            head.map(|h| h.timestamp()).unwrap_or_default(),
        ));
        vars.push(kv(
            "CI_COMMIT_AUTHOR",
            head.map(|h| h.author_full_text()).unwrap_or_default(),
        ));
        // GitLab fills the login only when the author's profile and e-mail are public.
        vars.push(kv("CI_COMMIT_USER_LOGIN", ""));
    }

    if let PipelineRef::Tag(tag) = &pref {
        vars.push(kv("CI_COMMIT_TAG", tag));
        vars.push(kv(
            "CI_COMMIT_TAG_MESSAGE",
            facts.tag_messages.get(tag).cloned().unwrap_or_default(),
        ));
    }

    if is_mr {
        vars.extend(merge_request_variables(facts, event, ctx, pref.name()));
        let mr = &ctx.merge_request;
        vars.push(kv(
            "CI_OPEN_MERGE_REQUESTS",
            format!("{}!{}", facts.project.path(), mr.iid),
        ));
    }
    vars
}

/// The `CI_MERGE_REQUEST_*` block of a merge-request pipeline.
fn merge_request_variables(
    facts: &RepoFacts,
    event: &Event,
    ctx: &PipelineContext,
    source_branch: &str,
) -> Vec<(String, String)> {
    let mr = &ctx.merge_request;
    let default_branch = default_branch(facts, event);
    let target = merge_request_target(facts, event);
    let path = facts.project.path();
    let url = project_url(facts, ctx);
    let title = mr.title.clone().unwrap_or_else(|| {
        facts
            .head
            .as_ref()
            .map(|h| h.full_title())
            .unwrap_or_else(|| source_branch.to_string())
    });
    let merged = mr.event_type != "detached";
    let (source_sha, target_sha) = if merged {
        (
            ctx.commit_sha
                .clone()
                .or_else(|| facts.head_sha().map(str::to_string))
                .unwrap_or_default(),
            facts.remote_tips.get(&target).cloned().unwrap_or_default(),
        )
    } else {
        (String::new(), String::new())
    };
    let mut vars = vec![
        kv("CI_MERGE_REQUEST_EVENT_TYPE", &mr.event_type),
        kv("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA", source_sha),
        kv("CI_MERGE_REQUEST_TARGET_BRANCH_SHA", target_sha),
        kv("CI_MERGE_REQUEST_DIFF_ID", mr.id.to_string()),
        kv(
            "CI_MERGE_REQUEST_DIFF_BASE_SHA",
            mr.diff_base_sha.clone().unwrap_or_default(),
        ),
        kv("CI_MERGE_REQUEST_ID", mr.id.to_string()),
        kv("CI_MERGE_REQUEST_IID", mr.iid.to_string()),
        kv(
            "CI_MERGE_REQUEST_REF_PATH",
            format!("refs/merge-requests/{}/head", mr.iid),
        ),
        kv(
            "CI_MERGE_REQUEST_PROJECT_ID",
            project_id(facts, ctx).to_string(),
        ),
        kv("CI_MERGE_REQUEST_PROJECT_PATH", &path),
        kv("CI_MERGE_REQUEST_PROJECT_URL", &url),
        kv("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", &target),
        kv(
            "CI_MERGE_REQUEST_TARGET_BRANCH_PROTECTED",
            (target == default_branch).to_string(),
        ),
        kv("CI_MERGE_REQUEST_TITLE", title),
        kv("CI_MERGE_REQUEST_DRAFT", mr.draft.to_string()),
        kv("CI_MERGE_REQUEST_DESCRIPTION", &mr.description),
        kv("CI_MERGE_REQUEST_DESCRIPTION_IS_TRUNCATED", "false"),
    ];
    if !mr.labels.is_empty() {
        vars.push(kv("CI_MERGE_REQUEST_LABELS", mr.labels.join(",")));
    }
    vars.extend([
        kv("CI_MERGE_REQUEST_SQUASH_ON_MERGE", "false"),
        kv(
            "CI_MERGE_REQUEST_SOURCE_PROJECT_ID",
            project_id(facts, ctx).to_string(),
        ),
        kv("CI_MERGE_REQUEST_SOURCE_PROJECT_PATH", &path),
        kv("CI_MERGE_REQUEST_SOURCE_PROJECT_URL", &url),
        kv("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", source_branch),
        kv(
            "CI_MERGE_REQUEST_SOURCE_BRANCH_PROTECTED",
            (source_branch == default_branch).to_string(),
        ),
    ]);
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_matches_gitlab_spec_cases() {
        // gems/gitlab-utils/spec/gitlab/utils_spec.rb `.slugify`.
        assert_eq!(slugify("TEST"), "test");
        assert_eq!(
            slugify("project_with_underscores"),
            "project-with-underscores"
        );
        assert_eq!(slugify("namespace/project"), "namespace-project");
        assert_eq!(slugify(&"a".repeat(70)), "a".repeat(63));
        assert_eq!(slugify("test_trailing_"), "test-trailing");
        assert_eq!(slugify("17.9"), "17-9");
    }

    #[test]
    fn slugify_cuts_before_stripping_and_keeps_runs() {
        // 62 a's + "/b" is 64 chars; cut to 63 ends in '-', which is then stripped.
        assert_eq!(slugify(&format!("{}/b", "a".repeat(62))), "a".repeat(62));
        assert_eq!(slugify("Feature/ABC_1"), "feature-abc-1");
        assert_eq!(slugify("v1.2.3"), "v1-2-3");
        assert_eq!(slugify("a--b__c"), "a--b--c");
        assert_eq!(slugify("--x--"), "x");
        assert_eq!(slugify(""), "");
        // Unicode-aware downcase: KELVIN SIGN lower-cases to ASCII 'k'; other letters → '-'.
        assert_eq!(slugify("\u{212A}é1"), "k-1");
    }

    #[test]
    fn server_url_parts() {
        assert_eq!(
            split_server_url("http://172.17.0.1:8080"),
            ("http".into(), "172.17.0.1".into(), 8080)
        );
        assert_eq!(
            split_server_url("https://gitlab.example.com"),
            ("https".into(), "gitlab.example.com".into(), 443)
        );
        assert_eq!(
            split_server_url("http://[::1]:9000/x"),
            ("http".into(), "::1".into(), 9000)
        );
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate_bytes("héllo", 2), "h");
        assert_eq!(truncate_bytes("héllo", 3), "hé");
        assert_eq!(truncate_bytes("abc", 10), "abc");
    }
}
