//! Repository facts, changed files and predefined variables, read from real temporary
//! repositories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use glci_test::git::{GitError, Repo, BLANK_SHA};
use glci_test::plan::predefined::{
    predefined_variables, rules_variables, user_variables, PipelineContext,
};
use glci_test::plan::{changed_files, Event, PipelineSource};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", "1785519531 +0200")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_DATE", "1785519531 +0200")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(dir: &Path, rel: &str, content: &str) {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(p, content).expect("write");
}

/// `main` with one commit (`README.md`, `src/lib.rs`, `docs/a.md`, `.gitignore`).
fn new_repo(remote: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("my-proj");
    fs::create_dir(&dir).expect("mkdir");
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["config", "user.name", "Ada Lovelace"]);
    git(&dir, &["config", "user.email", "ada.l@example.com"]);
    git(&dir, &["config", "commit.gpgsign", "false"]);
    if let Some(url) = remote {
        git(&dir, &["remote", "add", "origin", url]);
    }
    write(&dir, ".gitignore", "*.log\n");
    write(&dir, "README.md", "hello\n");
    write(&dir, "src/lib.rs", "fn a() {}\n");
    write(&dir, "docs/a.md", "doc\n");
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "Initial import"]);
    (tmp, dir)
}

/// Pretends `origin` has `branch` at `sha` (as after a fetch).
fn set_remote_tip(dir: &Path, branch: &str, sha: &str) {
    git(
        dir,
        &["update-ref", &format!("refs/remotes/origin/{branch}"), sha],
    );
}

fn get<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
    vars.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn keys(vars: &[(String, String)]) -> Vec<&str> {
    vars.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn facts_from_a_repository_with_an_ssh_remote() {
    let (_tmp, dir) = new_repo(Some("git@gitlab.example.com:group/sub/proj.git"));
    write(&dir, "nested/deeper/x.txt", "x\n");
    let repo = Repo::discover(&dir.join("nested/deeper")).expect("discover from a subdir");
    assert_eq!(
        repo.top_level(),
        dir.canonicalize().expect("canonical").as_path()
    );
    let facts = repo.facts().expect("facts");
    assert_eq!(facts.branch.as_deref(), Some("main"));
    assert_eq!(
        facts.head_sha(),
        Some(git(&dir, &["rev-parse", "HEAD"]).as_str())
    );
    assert_eq!(facts.project.path(), "group/sub/proj");
    assert_eq!(facts.project.namespace, "group/sub");
    assert_eq!(facts.project.root_namespace(), "group");
    assert_eq!(facts.project.host.as_deref(), Some("gitlab.example.com"));
    assert_eq!(facts.remote.as_deref(), Some("origin"));
    // No origin/HEAD, but `main` exists.
    assert_eq!(facts.default_branch, "main");
    assert!(facts.tags_at_head.is_empty());
    let head = facts.head.as_ref().expect("head");
    assert_eq!(head.message, "Initial import\n");
    assert_eq!(head.timestamp(), "2026-07-31T19:38:51+02:00");
    assert_eq!(facts.user.email, "ada.l@example.com");
}

#[test]
fn remote_url_is_the_one_git_remote_get_url_gives() {
    // `insteadOf` rewrites (the longest prefix wins) and a second URL that does not count.
    let (_tmp, dir) = new_repo(Some("gl:acme/tools/app.git"));
    git(
        &dir,
        &["config", "url.git@gitlab.example.com:.insteadOf", "gl:"],
    );
    git(
        &dir,
        &[
            "config",
            "url.https://mirror.example.com/.insteadOf",
            "gl:acme/",
        ],
    );
    git(
        &dir,
        &[
            "config",
            "--add",
            "remote.origin.url",
            "https://other.example.com/x/y.git",
        ],
    );
    let facts = Repo::discover(&dir)
        .expect("discover")
        .facts()
        .expect("facts");
    let expected = git(&dir, &["remote", "get-url", "origin"]);
    assert_eq!(expected, "https://mirror.example.com/tools/app.git");
    assert_eq!(facts.remote_url.as_deref(), Some(expected.as_str()));
    assert_eq!(facts.project.path(), "tools/app");
    // An empty repository: no HEAD commit, no tags, the default branch falls back.
    let empty = tempfile::tempdir().expect("tempdir");
    git(empty.path(), &["init", "-q", "-b", "trunk"]);
    let facts = Repo::discover(empty.path())
        .expect("discover")
        .facts()
        .expect("facts");
    assert!(facts.head.is_none());
    assert_eq!(facts.branch.as_deref(), Some("trunk"));
    assert_eq!(facts.default_branch, "trunk");
    assert!(facts.tags_at_head.is_empty());
}

#[test]
fn detached_head_origin_head_and_tags() {
    let (_tmp, dir) = new_repo(Some("https://gitlab.example.com/g/p"));
    let head = git(&dir, &["rev-parse", "HEAD"]);
    set_remote_tip(&dir, "develop", &head);
    git(
        &dir,
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/develop",
        ],
    );
    git(&dir, &["tag", "light"]);
    git(
        &dir,
        &["tag", "-a", "v1.2.3", "-m", "Release notes\n\nline 2"],
    );
    git(&dir, &["checkout", "-q", "--detach"]);

    let facts = Repo::discover(&dir)
        .expect("discover")
        .facts()
        .expect("facts");
    assert_eq!(facts.branch, None);
    assert_eq!(facts.default_branch, "develop");
    assert_eq!(facts.project.path(), "g/p");
    assert_eq!(facts.tags_at_head, vec!["light", "v1.2.3"]);
    assert_eq!(
        facts.tag_messages.get("v1.2.3").map(String::as_str),
        Some("Release notes\n\nline 2\n")
    );
    assert_eq!(facts.tag_messages.get("light"), None);
    assert!(!facts.remote_tips.contains_key("HEAD"));
    assert_eq!(facts.remote_tips.get("develop"), Some(&head));
}

#[test]
fn no_remote_falls_back_to_the_directory_name_and_not_a_repo_is_an_error() {
    let (tmp, dir) = new_repo(None);
    let facts = Repo::discover(&dir)
        .expect("discover")
        .facts()
        .expect("facts");
    assert_eq!(facts.project.path(), "local/my-proj");
    assert_eq!(facts.remote, None);

    let outside = tmp.path().join("not-a-repo");
    fs::create_dir(&outside).expect("mkdir");
    // A temp dir may itself sit inside some repository on odd machines; only assert when not.
    match Repo::discover(&outside) {
        Err(e @ GitError::NotARepo { .. }) => {
            assert!(e.to_string().contains("not-a-repo"), "{e}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(r) => assert_ne!(r.top_level(), outside.as_path()),
    }
    let missing = tmp.path().join("missing");
    assert!(matches!(
        Repo::discover(&missing),
        Err(GitError::NotARepo { .. })
    ));
}

#[test]
fn file_list_for_rules_exists_is_the_working_tree() {
    let (_tmp, dir) = new_repo(None);
    write(&dir, "new/untracked.txt", "u\n");
    write(&dir, "debug.log", "ignored\n");
    fs::remove_file(dir.join("docs/a.md")).expect("rm");
    let files = Repo::discover(&dir)
        .expect("discover")
        .files()
        .expect("files");
    assert_eq!(
        files,
        vec![".gitignore", "README.md", "new/untracked.txt", "src/lib.rs"]
    );
}

#[test]
fn changed_files_follow_gitlab_per_event() {
    let (_tmp, dir) = new_repo(Some("git@gitlab.example.com:g/p.git"));
    let base = git(&dir, &["rev-parse", "HEAD"]);
    set_remote_tip(&dir, "main", &base);
    // main moves on after the feature branch starts.
    git(&dir, &["checkout", "-q", "-b", "feature"]);
    write(&dir, "src/lib.rs", "fn a() { 1 }\n");
    git(&dir, &["commit", "-q", "-am", "Feature work"]);
    let pushed = git(&dir, &["rev-parse", "HEAD"]);
    set_remote_tip(&dir, "feature", &pushed);
    git(&dir, &["checkout", "-q", "main"]);
    write(&dir, "main-only.txt", "m\n");
    git(&dir, &["add", "main-only.txt"]);
    git(&dir, &["commit", "-q", "-m", "Main work"]);
    let main_tip = git(&dir, &["rev-parse", "HEAD"]);
    set_remote_tip(&dir, "main", &main_tip);
    git(&dir, &["checkout", "-q", "feature"]);
    // Local work on top of what was pushed: committed, uncommitted, untracked, deleted.
    write(&dir, "README.md", "changed\n");
    git(&dir, &["commit", "-q", "-am", "Local commit"]);
    write(&dir, "docs/b.md", "new doc\n");
    fs::remove_file(dir.join("docs/a.md")).expect("rm");
    write(&dir, "trace.log", "ignored\n");

    let repo = Repo::discover(&dir).expect("discover");
    let facts = repo.facts().expect("facts");
    let index_before = fs::read(dir.join(".git/index")).expect("index");

    let push = Event::default();
    assert_eq!(
        changed_files(&repo, &facts, &push).expect("push"),
        Some(vec![
            "README.md".to_string(),
            "docs/a.md".to_string(),
            "docs/b.md".to_string(),
        ]),
        "push: diff against the remote tip of the branch, working tree included"
    );

    let mr = Event {
        source: PipelineSource::MergeRequestEvent,
        target_branch: Some("main".into()),
        ..Event::default()
    };
    assert_eq!(
        changed_files(&repo, &facts, &mr).expect("mr"),
        Some(vec![
            "README.md".to_string(),
            "docs/a.md".to_string(),
            "docs/b.md".to_string(),
            "src/lib.rs".to_string(),
        ]),
        "MR: diff from the merge base, so main-only.txt is not a change"
    );

    let new_branch = Event {
        branch: Some("brand-new".into()),
        ..Event::default()
    };
    assert_eq!(
        changed_files(&repo, &facts, &new_branch).expect("new"),
        None
    );
    let tag = Event {
        tag: Some("v1".into()),
        ..Event::default()
    };
    assert_eq!(changed_files(&repo, &facts, &tag).expect("tag"), None);
    let web = Event {
        source: PipelineSource::Web,
        ..Event::default()
    };
    assert_eq!(changed_files(&repo, &facts, &web).expect("web"), None);
    let given = Event {
        changed_files: Some(vec!["x".into()]),
        ..Event::default()
    };
    assert_eq!(
        changed_files(&repo, &facts, &given).expect("given"),
        Some(vec!["x".to_string()])
    );

    // compare_to: merge base with the named ref.
    assert_eq!(
        repo.changed_since_merge_base("main", Some("origin"))
            .expect("compare_to"),
        vec!["README.md", "docs/a.md", "docs/b.md", "src/lib.rs"]
    );
    let err = repo
        .changed_since_merge_base("no-such-branch", Some("origin"))
        .expect_err("unknown ref");
    assert!(matches!(err, GitError::UnknownRef { .. }));
    assert!(err.to_string().contains("no-such-branch"), "{err}");

    // None of this wrote to the user's index.
    assert_eq!(
        fs::read(dir.join(".git/index")).expect("index"),
        index_before
    );
}

#[test]
fn clean_tree_in_sync_with_the_remote_diffs_the_last_commit() {
    let (_tmp, dir) = new_repo(Some("git@h:g/p.git"));
    write(&dir, "src/lib.rs", "fn b() {}\n");
    git(&dir, &["commit", "-q", "-am", "Second"]);
    let head = git(&dir, &["rev-parse", "HEAD"]);
    set_remote_tip(&dir, "main", &head);
    let repo = Repo::discover(&dir).expect("discover");
    let facts = repo.facts().expect("facts");
    assert_eq!(
        changed_files(&repo, &facts, &Event::default()).expect("push"),
        Some(vec!["src/lib.rs".to_string()])
    );
    let vars = predefined_variables(&facts, &Event::default(), &PipelineContext::new("http://x"));
    assert_eq!(
        get(&vars, "CI_COMMIT_BEFORE_SHA"),
        Some(git(&dir, &["rev-parse", "HEAD~1"]).as_str())
    );
}

#[test]
fn predefined_variables_for_a_branch_push() {
    let (_tmp, dir) = new_repo(Some("git@gitlab.example.com:Group/Sub/My.Proj.git"));
    let first = git(&dir, &["rev-parse", "HEAD"]);
    git(&dir, &["checkout", "-q", "-b", "Feature/ABC_1"]);
    set_remote_tip(&dir, "Feature/ABC_1", &first);
    write(&dir, "README.md", "more\n");
    git(
        &dir,
        &[
            "commit",
            "-q",
            "-am",
            "Add feature\n\nBody line one.\nBody line two.",
        ],
    );
    let head = git(&dir, &["rev-parse", "HEAD"]);
    let facts = Repo::discover(&dir)
        .expect("discover")
        .facts()
        .expect("facts");
    let mut ctx = PipelineContext::new("http://172.17.0.1:8080/");
    ctx.pipeline_id = 42;
    ctx.pipeline_iid = 7;
    ctx.project_id = Some(5);
    ctx.registry = Some("172.17.0.1:8080".into());
    ctx.created_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_785_519_532);
    let vars = predefined_variables(&facts, &Event::default(), &ctx);

    let expect = [
        ("CI_PIPELINE_ID", "42"),
        (
            "CI_PIPELINE_URL",
            "http://172.17.0.1:8080/Group/Sub/My.Proj/-/pipelines/42",
        ),
        ("CI", "true"),
        ("GITLAB_CI", "true"),
        // The instance is origin's; what jobs reach (API, registry) is the stand-in.
        ("CI_SERVER_FQDN", "gitlab.example.com"),
        ("CI_SERVER_URL", "https://gitlab.example.com"),
        ("CI_SERVER_HOST", "gitlab.example.com"),
        ("CI_SERVER_PORT", "443"),
        ("CI_SERVER_PROTOCOL", "https"),
        ("CI_SERVER_VERSION_MAJOR", "18"),
        ("CI_SERVER_VERSION_MINOR", "11"),
        ("CI_PROJECT_ID", "5"),
        ("CI_PROJECT_NAME", "My.Proj"),
        ("CI_PROJECT_PATH", "Group/Sub/My.Proj"),
        ("CI_PROJECT_PATH_SLUG", "group-sub-my-proj"),
        ("CI_PROJECT_NAMESPACE", "Group/Sub"),
        ("CI_PROJECT_NAMESPACE_SLUG", "group-sub"),
        ("CI_PROJECT_ROOT_NAMESPACE", "Group"),
        ("CI_PROJECT_URL", "http://172.17.0.1:8080/Group/Sub/My.Proj"),
        ("CI_DEFAULT_BRANCH", "main"),
        ("CI_DEFAULT_BRANCH_SLUG", "main"),
        ("CI_CONFIG_PATH", ".gitlab-ci.yml"),
        ("CI_REGISTRY", "172.17.0.1:8080"),
        ("CI_REGISTRY_IMAGE", "172.17.0.1:8080/group/sub/my.proj"),
        ("CI_API_V4_URL", "http://172.17.0.1:8080/api/v4"),
        ("CI_PIPELINE_IID", "7"),
        ("CI_PIPELINE_SOURCE", "push"),
        ("CI_PIPELINE_CREATED_AT", "2026-07-31T17:38:52Z"),
        ("CI_PIPELINE_NAME", ""),
        ("CI_COMMIT_SHA", head.as_str()),
        ("CI_COMMIT_SHORT_SHA", &head[..8]),
        ("CI_COMMIT_BEFORE_SHA", first.as_str()),
        ("CI_COMMIT_REF_NAME", "Feature/ABC_1"),
        ("CI_COMMIT_REF_SLUG", "feature-abc-1"),
        ("CI_COMMIT_BRANCH", "Feature/ABC_1"),
        (
            "CI_COMMIT_MESSAGE",
            "Add feature\n\nBody line one.\nBody line two.\n",
        ),
        ("CI_COMMIT_MESSAGE_IS_TRUNCATED", "false"),
        ("CI_COMMIT_TITLE", "Add feature"),
        ("CI_COMMIT_DESCRIPTION", "\nBody line one.\nBody line two."),
        ("CI_COMMIT_REF_PROTECTED", "false"),
        ("CI_COMMIT_TIMESTAMP", "2026-07-31T19:38:51+02:00"),
        ("CI_COMMIT_AUTHOR", "Ada Lovelace <ada@example.com>"),
    ];
    // Values, and GitLab's order: each expected key appears after the previous one.
    let names = keys(&vars);
    let mut last = 0;
    for (k, v) in expect {
        assert_eq!(get(&vars, k), Some(v), "{k}");
        let at = names.iter().position(|n| *n == k).expect("present");
        assert!(at >= last, "{k} out of order in {names:?}");
        last = at;
    }
    for absent in [
        "CI_COMMIT_TAG",
        "CI_MERGE_REQUEST_IID",
        "CI_OPEN_MERGE_REQUESTS",
    ] {
        assert_eq!(get(&vars, absent), None, "{absent}");
    }
    // Each name once.
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());

    let rules = rules_variables(&facts, &Event::default(), &ctx);
    assert_eq!(get(&rules, "CI_PIPELINE_ID"), None);
    assert_eq!(get(&rules, "CI_PIPELINE_NAME"), None);
    assert_eq!(get(&rules, "CI_COMMIT_BRANCH"), Some("Feature/ABC_1"));

    let users = user_variables(&facts, &ctx);
    assert_eq!(get(&users, "GITLAB_USER_EMAIL"), Some("ada.l@example.com"));
    assert_eq!(get(&users, "GITLAB_USER_LOGIN"), Some("ada.l"));
    assert_eq!(get(&users, "GITLAB_USER_NAME"), Some("Ada Lovelace"));
}

#[test]
fn predefined_variables_for_new_branch_default_branch_and_snapshot_sha() {
    let (_tmp, dir) = new_repo(Some("git@h:g/p.git"));
    let facts = Repo::discover(&dir)
        .expect("discover")
        .facts()
        .expect("facts");
    let mut ctx = PipelineContext::new("http://h");
    ctx.commit_sha = Some("ab".repeat(20));
    // `main` is not on the remote yet: a new branch, before-SHA is 40 zeros.
    let vars = predefined_variables(&facts, &Event::default(), &ctx);
    assert_eq!(get(&vars, "CI_COMMIT_BEFORE_SHA"), Some(BLANK_SHA));
    assert_eq!(get(&vars, "CI_COMMIT_SHA"), Some("ab".repeat(20).as_str()));
    assert_eq!(get(&vars, "CI_COMMIT_TITLE"), Some("Initial import"));
    assert_eq!(get(&vars, "CI_COMMIT_REF_PROTECTED"), Some("true"));
    // `git@h:` is served over HTTPS by the same host.
    assert_eq!(get(&vars, "CI_SERVER_PORT"), Some("443"));

    let sched = Event {
        source: PipelineSource::Schedule,
        ..Event::default()
    };
    let vars = predefined_variables(&facts, &sched, &ctx);
    assert_eq!(get(&vars, "CI_PIPELINE_SOURCE"), Some("schedule"));
    assert_eq!(get(&vars, "CI_COMMIT_BRANCH"), Some("main"));
    assert_eq!(get(&vars, "CI_PIPELINE_SCHEDULE_DESCRIPTION"), Some(""));
}

#[test]
fn predefined_variables_for_a_tag() {
    let (_tmp, dir) = new_repo(Some("git@h:g/p.git"));
    git(&dir, &["tag", "-a", "v1.2.3", "-m", "Release v1.2.3"]);
    let facts = Repo::discover(&dir)
        .expect("discover")
        .facts()
        .expect("facts");
    let event = Event {
        tag: Some("v1.2.3".into()),
        ..Event::default()
    };
    let vars = predefined_variables(&facts, &event, &PipelineContext::new("https://h"));
    assert_eq!(get(&vars, "CI_COMMIT_TAG"), Some("v1.2.3"));
    assert_eq!(
        get(&vars, "CI_COMMIT_TAG_MESSAGE"),
        Some("Release v1.2.3\n")
    );
    assert_eq!(get(&vars, "CI_COMMIT_REF_NAME"), Some("v1.2.3"));
    assert_eq!(get(&vars, "CI_COMMIT_REF_SLUG"), Some("v1-2-3"));
    assert_eq!(get(&vars, "CI_COMMIT_BRANCH"), None);
    assert_eq!(get(&vars, "CI_COMMIT_BEFORE_SHA"), Some(BLANK_SHA));
    assert_eq!(get(&vars, "CI_COMMIT_REF_PROTECTED"), Some("false"));
    assert_eq!(get(&vars, "CI_SERVER_PORT"), Some("443"));
    assert_eq!(get(&vars, "CI_SERVER_FQDN"), Some("h"));
    let names = keys(&vars);
    let pos = |k: &str| names.iter().position(|n| *n == k).expect(k);
    assert!(pos("CI_COMMIT_AUTHOR") < pos("CI_COMMIT_TAG"));
    assert!(pos("CI_COMMIT_TAG") < pos("CI_COMMIT_TAG_MESSAGE"));
}

#[test]
fn predefined_variables_for_a_merge_request() {
    let (_tmp, dir) = new_repo(Some("git@h:g/p.git"));
    git(&dir, &["checkout", "-q", "-b", "Feature/ABC_1"]);
    write(&dir, "x.txt", "x\n");
    git(&dir, &["add", "x.txt"]);
    git(&dir, &["commit", "-q", "-m", "Add x"]);
    let repo = Repo::discover(&dir).expect("discover");
    let facts = repo.facts().expect("facts");
    let mut ctx = PipelineContext::new("http://h:3000");
    ctx.merge_request.iid = 12;
    ctx.merge_request.id = 1012;
    ctx.merge_request.labels = vec!["bug".into(), "ui".into()];
    ctx.merge_request.diff_base_sha = repo.merge_base("main", Some("origin")).expect("base");
    let event = Event {
        source: PipelineSource::MergeRequestEvent,
        ..Event::default()
    };
    let vars = predefined_variables(&facts, &event, &ctx);
    let base = git(&dir, &["rev-parse", "main"]);
    let expect = [
        ("CI_PIPELINE_SOURCE", "merge_request_event"),
        ("CI_COMMIT_BEFORE_SHA", BLANK_SHA),
        ("CI_COMMIT_REF_NAME", "Feature/ABC_1"),
        ("CI_COMMIT_REF_SLUG", "feature-abc-1"),
        ("CI_COMMIT_REF_PROTECTED", "false"),
        ("CI_MERGE_REQUEST_EVENT_TYPE", "detached"),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA", ""),
        ("CI_MERGE_REQUEST_TARGET_BRANCH_SHA", ""),
        ("CI_MERGE_REQUEST_DIFF_BASE_SHA", base.as_str()),
        ("CI_MERGE_REQUEST_ID", "1012"),
        ("CI_MERGE_REQUEST_IID", "12"),
        ("CI_MERGE_REQUEST_REF_PATH", "refs/merge-requests/12/head"),
        ("CI_MERGE_REQUEST_PROJECT_PATH", "g/p"),
        ("CI_MERGE_REQUEST_PROJECT_URL", "http://h:3000/g/p"),
        ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main"),
        ("CI_MERGE_REQUEST_TARGET_BRANCH_PROTECTED", "true"),
        ("CI_MERGE_REQUEST_TITLE", "Add x"),
        ("CI_MERGE_REQUEST_DRAFT", "false"),
        ("CI_MERGE_REQUEST_LABELS", "bug,ui"),
        ("CI_MERGE_REQUEST_SQUASH_ON_MERGE", "false"),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "Feature/ABC_1"),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_PROTECTED", "false"),
        ("CI_OPEN_MERGE_REQUESTS", "g/p!12"),
    ];
    let names = keys(&vars);
    let mut last = 0;
    for (k, v) in expect {
        assert_eq!(get(&vars, k), Some(v), "{k}");
        let at = names.iter().position(|n| *n == k).expect("present");
        assert!(at >= last, "{k} out of order in {names:?}");
        last = at;
    }
    assert_eq!(get(&vars, "CI_COMMIT_BRANCH"), None);
    assert_eq!(get(&vars, "CI_COMMIT_TAG"), None);
}
