//! `git::snapshot` against real temporary repositories: the working tree ends up in a commit
//! of a bare repository that a runner can fetch, and the user's repository is untouched.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use glci_test::git::{snapshot, CommitTree, GitError, Repo, SnapshotRequest};
use sha2::{Digest, Sha256};

/// Runs git for the test's own setup, with fixed identity and dates so SHAs are stable.
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

/// A repository on `main` with two commits, a `.gitignore`, and an `origin` remote.
fn repo_with_history() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("proj");
    fs::create_dir(&dir).expect("mkdir");
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["config", "user.name", "Ada Lovelace"]);
    git(&dir, &["config", "user.email", "ada@example.com"]);
    git(&dir, &["config", "commit.gpgsign", "false"]);
    git(
        &dir,
        &[
            "remote",
            "add",
            "origin",
            "git@gitlab.example.com:group/proj.git",
        ],
    );
    write(&dir, ".gitignore", "target/\n*.log\n");
    write(&dir, "README.md", "hello\n");
    write(&dir, "src/lib.rs", "fn a() {}\n");
    write(&dir, "gone.txt", "to be deleted\n");
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "First commit"]);
    write(&dir, "README.md", "hello again\n");
    git(
        &dir,
        &["commit", "-q", "-am", "Second commit\n\nWith a body."],
    );
    (tmp, dir)
}

/// Every file under `.git` with the SHA-256 of its content (directories as markers), so
/// that any added, removed or rewritten file shows up as a difference.
fn tree_hashes(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &p, out);
            } else {
                let bytes = fs::read(&p).expect("read");
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn dirty_snapshot_captures_the_working_tree_and_leaves_the_repo_untouched() {
    let (tmp, dir) = repo_with_history();
    // Uncommitted edit, staged new file, untracked file, deleted file, ignored files.
    write(&dir, "src/lib.rs", "fn a() { /* edited */ }\n");
    write(&dir, "staged.txt", "staged\n");
    git(&dir, &["add", "staged.txt"]);
    write(&dir, "untracked/new.txt", "brand new\n");
    fs::remove_file(dir.join("gone.txt")).expect("rm");
    write(&dir, "target/debug/out", "ignored\n");
    write(&dir, "build.log", "ignored\n");

    let head = git(&dir, &["rev-parse", "HEAD"]);
    let git_dir = dir.join(".git");
    let before = tree_hashes(&git_dir);
    let status_before = git(&dir, &["status", "--porcelain", "--untracked-files=all"]);
    let index_before = fs::read(git_dir.join("index")).expect("index");

    let repo = Repo::discover(&dir).expect("discover");
    let data = tmp.path().join("data");
    let req = SnapshotRequest {
        pipeline_id: 7,
        branch: Some("main".into()),
        ..Default::default()
    };
    let snap = snapshot(&repo, &data, &req).expect("snapshot");

    // The user's repository is byte-identical: no new objects, index, refs or logs.
    assert_eq!(tree_hashes(&git_dir), before, ".git changed");
    assert_eq!(
        fs::read(git_dir.join("index")).expect("index"),
        index_before
    );
    assert_eq!(
        git(&dir, &["status", "--porcelain", "--untracked-files=all"]),
        status_before
    );
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&dir, &["stash", "list"]), "");
    let in_user_repo = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["cat-file", "-e", &snap.sha])
        .status()
        .expect("git runs")
        .success();
    assert!(
        !in_user_repo,
        "the snapshot commit must not be in the user's object store"
    );

    assert!(!snap.clean);
    assert_ne!(snap.sha, head);
    assert!(snap.bare_repo.starts_with(&data));
    let bare = &snap.bare_repo;
    assert_eq!(git(bare, &["rev-parse", "refs/pipelines/7"]), snap.sha);
    assert_eq!(git(bare, &["rev-parse", "refs/heads/main"]), snap.sha);
    assert_eq!(git(bare, &["rev-parse", &format!("{}^", snap.sha)]), head);
    // HEAD's message and author are carried over.
    assert_eq!(
        git(
            bare,
            &[
                "log",
                "-1",
                "--format=%B%n%an <%ae> %ad",
                "--date=raw",
                &snap.sha
            ]
        ),
        "Second commit\n\nWith a body.\n\nAda Lovelace <ada@example.com> 1785519531 +0200"
    );

    // A clone over the smart protocol (file:// runs upload-pack, as the HTTP server will)
    // sees exactly the working tree.
    let clone = tmp.path().join("clone");
    let url = format!("file://{}", bare.display());
    git(
        tmp.path(),
        &["clone", "-q", &url, clone.to_str().expect("utf-8 path")],
    );
    let read = |rel: &str| fs::read_to_string(clone.join(rel)).ok();
    assert_eq!(
        read("src/lib.rs").as_deref(),
        Some("fn a() { /* edited */ }\n")
    );
    assert_eq!(read("staged.txt").as_deref(), Some("staged\n"));
    assert_eq!(read("untracked/new.txt").as_deref(), Some("brand new\n"));
    assert_eq!(read("README.md").as_deref(), Some("hello again\n"));
    assert_eq!(read("gone.txt"), None);
    assert_eq!(read("build.log"), None);
    assert!(!clone.join("target").exists());

    // The runner's fetch: a shallow fetch of the pipeline ref into an empty repository.
    let runner = tmp.path().join("runner");
    git(
        tmp.path(),
        &["init", "-q", runner.to_str().expect("utf-8 path")],
    );
    git(
        &runner,
        &[
            "fetch",
            "-q",
            "--depth",
            "20",
            &url,
            "+refs/pipelines/7:refs/pipelines/7",
        ],
    );
    git(&runner, &["checkout", "-q", "-f", &snap.sha]);
    assert_eq!(
        fs::read_to_string(runner.join("untracked/new.txt")).expect("fetched file"),
        "brand new\n"
    );

    // Same working tree, same snapshot: the commit is deterministic.
    let again = snapshot(
        &repo,
        &data,
        &SnapshotRequest {
            pipeline_id: 8,
            branch: Some("main".into()),
            ..Default::default()
        },
    )
    .expect("second snapshot");
    assert_eq!(again.sha, snap.sha);
    assert_eq!(again.bare_repo, snap.bare_repo);
    assert_eq!(git(bare, &["rev-parse", "refs/pipelines/8"]), snap.sha);
    assert_eq!(
        tree_hashes(&git_dir),
        before,
        ".git changed by the second run"
    );
}

#[test]
fn clean_tree_snapshot_is_head_and_tags_keep_their_object() {
    let (tmp, dir) = repo_with_history();
    git(&dir, &["tag", "-a", "v1.2.3", "-m", "Release 1.2.3"]);
    let head = git(&dir, &["rev-parse", "HEAD"]);
    let tag_object = git(&dir, &["rev-parse", "refs/tags/v1.2.3"]);
    let repo = Repo::discover(&dir).expect("discover");
    let snap = snapshot(
        &repo,
        &tmp.path().join("data"),
        &SnapshotRequest {
            pipeline_id: 1,
            tag: Some("v1.2.3".into()),
            ..Default::default()
        },
    )
    .expect("snapshot");
    assert!(snap.clean);
    assert_eq!(snap.sha, head);
    let bare = &snap.bare_repo;
    assert_eq!(git(bare, &["rev-parse", "refs/pipelines/1"]), head);
    assert_eq!(git(bare, &["rev-parse", "refs/tags/v1.2.3"]), tag_object);
    assert_eq!(git(bare, &["rev-parse", "refs/tags/v1.2.3^{commit}"]), head);
    // Nothing of the user's history was copied: the bare store holds no objects.
    let loose = git(bare, &["count-objects", "-v"]);
    assert!(loose.contains("count: 0"), "{loose}");
}

#[test]
fn merge_request_refs_and_unborn_head() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("fresh");
    fs::create_dir(&dir).expect("mkdir");
    git(&dir, &["init", "-q", "-b", "feature"]);
    write(&dir, "a.txt", "a\n");
    let repo = Repo::discover(&dir).expect("discover");
    let snap = snapshot(
        &repo,
        &tmp.path().join("data"),
        &SnapshotRequest {
            pipeline_id: 3,
            branch: Some("feature".into()),
            merge_request_iid: Some(12),
            ..Default::default()
        },
    )
    .expect("snapshot of a repository without commits");
    assert!(!snap.clean);
    let bare = &snap.bare_repo;
    assert_eq!(
        git(bare, &["rev-parse", "refs/merge-requests/12/head"]),
        snap.sha
    );
    // A root commit: no parent.
    assert_eq!(git(bare, &["rev-list", "--count", &snap.sha]), "1");
    assert_eq!(git(bare, &["show", &format!("{}:a.txt", snap.sha)]), "a");
    // The user's repository still has no commit at all.
    assert!(Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["rev-parse", "--verify", "-q", "HEAD"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(false));
}

#[test]
fn invalid_ref_names_are_refused_before_anything_is_written() {
    let (tmp, dir) = repo_with_history();
    let repo = Repo::discover(&dir).expect("discover");
    let data = tmp.path().join("data");
    let err = snapshot(
        &repo,
        &data,
        &SnapshotRequest {
            pipeline_id: 1,
            branch: Some("bad..name".into()),
            ..Default::default()
        },
    )
    .expect_err("invalid branch");
    assert!(matches!(
        err,
        GitError::InvalidRefName { kind: "branch", .. }
    ));
    assert!(err.to_string().contains("bad..name"), "{err}");
    assert!(!data.exists());
}

#[test]
fn linked_work_tree_uses_its_own_index_and_the_shared_objects() {
    let (tmp, dir) = repo_with_history();
    let wt = tmp.path().join("linked");
    git(
        &dir,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            wt.to_str().expect("utf-8 path"),
        ],
    );
    write(&wt, "side.txt", "only in the linked work tree\n");
    write(
        &dir,
        "main-dirty.txt",
        "must not leak into the linked snapshot\n",
    );
    let before = tree_hashes(&dir.join(".git"));

    let repo = Repo::discover(&wt).expect("discover linked work tree");
    assert_eq!(
        repo.objects_dir(),
        dir.join(".git/objects").canonicalize().expect("canonical")
    );
    let snap = snapshot(
        &repo,
        &tmp.path().join("data"),
        &SnapshotRequest {
            pipeline_id: 2,
            branch: Some("side".into()),
            ..Default::default()
        },
    )
    .expect("snapshot");
    assert_eq!(tree_hashes(&dir.join(".git")), before, ".git changed");
    let files = git(
        &snap.bare_repo,
        &["ls-tree", "-r", "--name-only", &snap.sha],
    );
    assert!(files.lines().any(|f| f == "side.txt"), "{files}");
    assert!(!files.lines().any(|f| f == "main-dirty.txt"), "{files}");
}

/// What `cache:key:files` asks of the pipeline commit, answered from the snapshot's bare
/// repository: a file's content (uncommitted edits included), the commit's file list, and
/// the last commit that touched a path (the snapshot itself for an edited file).
#[test]
fn commit_tree_reads_files_listing_and_last_commits_of_the_snapshot() {
    let (tmp, dir) = repo_with_history();
    write(&dir, "src/lib.rs", "fn a() { /* edited */ }\n");
    let first = git(&dir, &["rev-parse", "HEAD~1"]);
    let repo = Repo::discover(&dir).expect("discover");
    let snap = snapshot(
        &repo,
        &tmp.path().join("data"),
        &SnapshotRequest {
            pipeline_id: 3,
            branch: Some("main".into()),
            ..Default::default()
        },
    )
    .expect("snapshot");

    let tree = CommitTree::new(snap.bare_repo.clone(), snap.sha.clone());
    assert_eq!(tree.sha(), snap.sha);
    assert_eq!(
        tree.file("src/lib.rs").as_deref(),
        Some(&b"fn a() { /* edited */ }\n"[..])
    );
    assert_eq!(tree.file("missing.txt"), None);
    assert_eq!(tree.file("src"), None, "a directory is not a file");
    assert_eq!(
        tree.files(),
        [".gitignore", "README.md", "gone.txt", "src/lib.rs"]
    );
    assert_eq!(
        tree.last_commit(&["gone.txt".to_string()]).as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        tree.last_commit(&["src/lib.rs".to_string()]).as_deref(),
        Some(snap.sha.as_str())
    );
    assert_eq!(tree.last_commit(&["missing.txt".to_string()]), None);
}

/// Two runs starting at once on a fresh data directory both find no bare repository: both
/// snapshots succeed (the second `git init` in place failed on `config.lock`).
#[test]
fn concurrent_first_snapshots_share_one_bare_repository() {
    for round in 0..6 {
        let (tmp, dir) = repo_with_history();
        let data = tmp.path().join("data");
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let (dir, data) = (dir.clone(), data.clone());
                std::thread::spawn(move || {
                    let repo = Repo::discover(&dir).expect("discover");
                    let req = SnapshotRequest {
                        pipeline_id: i + 1,
                        branch: Some("main".into()),
                        ..Default::default()
                    };
                    snapshot(&repo, &data, &req).map(|s| s.sha)
                })
            })
            .collect();
        for t in threads {
            let result = t.join().expect("thread");
            assert!(result.is_ok(), "round {round}: {result:?}");
        }
    }
}
