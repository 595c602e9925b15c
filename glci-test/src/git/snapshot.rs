//! The commit jobs check out: the working tree exactly (uncommitted edits and untracked,
//! non-ignored files included, deleted files gone), written into a bare repository glci owns
//! and the mock GitLab serves over smart HTTP.
//!
//! The user's repository is only read: the index is copied to a scratch file, new objects go
//! to the bare repository's object store, and the bare repository borrows every existing
//! object through `objects/info/alternates`, so nothing is copied. Caveats: a Git LFS clean
//! filter run on a modified file caches its content under the user's `.git/lfs`; and a
//! pipeline ref of an old snapshot can dangle once the user rewrites history and runs
//! `git gc` (the current pipeline's commit is always HEAD or a child of HEAD).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::command::git;
use super::worktree::{capture_tree, with_objects};
use super::{GitError, Repo};

/// Identity and message of a snapshot made before the first commit (there is no HEAD to
/// borrow them from).
const UNBORN_NAME: &str = "glci";
const UNBORN_EMAIL: &str = "glci@localhost";
const UNBORN_MESSAGE: &str = "glci: snapshot of the working tree\n";

/// Which refs the bare repository gets for one pipeline.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRequest {
    /// `refs/pipelines/<id>`: the ref every job fetches (GitLab's persistent pipeline ref).
    pub pipeline_id: u64,
    /// `refs/heads/<branch>` (branch and merge-request pipelines); also the bare HEAD.
    pub branch: Option<String>,
    /// `refs/tags/<tag>` (tag pipelines).
    pub tag: Option<String>,
    /// `refs/merge-requests/<iid>/head` (merge-request pipelines).
    pub merge_request_iid: Option<u64>,
}

/// The result of [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The pipeline's `CI_COMMIT_SHA`.
    pub sha: String,
    /// True when the working tree equals HEAD, so the snapshot is HEAD itself.
    pub clean: bool,
    /// The bare repository holding the refs (serve this directory).
    pub bare_repo: PathBuf,
}

/// Where the bare repository of `repo` lives under `data_dir`: one per user repository
/// (keyed by its object store), stable across runs so pipelines can be compared.
pub fn bare_repo_path(data_dir: &Path, repo: &Repo) -> PathBuf {
    let key = repo
        .objects_dir()
        .canonicalize()
        .unwrap_or_else(|_| repo.objects_dir().to_path_buf());
    let digest = Sha256::digest(key.to_string_lossy().as_bytes());
    let name: String = repo
        .top_level()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    data_dir
        .join("repos")
        .join(format!("{name}-{}.git", &hex::encode(digest)[..16]))
}

/// Captures the working tree of `repo` as a commit in the bare repository under `data_dir`
/// and points the refs of `req` at it. When the tree equals HEAD's, the snapshot is HEAD.
/// Otherwise it is a child of HEAD carrying HEAD's message, author and dates (so the same
/// working tree always gives the same SHA, and `CI_COMMIT_MESSAGE` is what the user sees in
/// `git log`).
pub fn snapshot(repo: &Repo, data_dir: &Path, req: &SnapshotRequest) -> Result<Snapshot, GitError> {
    for name in req.branch.iter() {
        check_ref_name(repo, &format!("refs/heads/{name}"), name, "branch")?;
    }
    for name in req.tag.iter() {
        check_ref_name(repo, &format!("refs/tags/{name}"), name, "tag")?;
    }
    let bare = bare_repo_path(data_dir, repo);
    ensure_bare_repo(repo, &bare)?;
    let objects = bare.join("objects");

    let tree = capture_tree(repo, &objects)?;
    let head = repo.head_commit()?;
    let (sha, clean) = match &head {
        Some(h) if h.tree == tree => (h.sha.clone(), true),
        _ => (commit_tree(repo, &objects, &tree, head.as_ref())?, false),
    };

    let mut refs = vec![(format!("refs/pipelines/{}", req.pipeline_id), sha.clone())];
    if let Some(branch) = &req.branch {
        refs.push((format!("refs/heads/{branch}"), sha.clone()));
    }
    if let Some(tag) = &req.tag {
        refs.push((
            format!("refs/tags/{tag}"),
            tag_target(repo, tag, &sha, clean)?,
        ));
    }
    if let Some(iid) = req.merge_request_iid {
        refs.push((format!("refs/merge-requests/{iid}/head"), sha.clone()));
    }
    // All refs in one git process (`update-ref --stdin`, one transaction).
    let updates: String = refs
        .iter()
        .map(|(name, target)| format!("update {name} {target}\n"))
        .collect();
    git(&bare)
        .args(["update-ref", "--no-deref", "--stdin"])
        .input(updates)
        .run()?;
    if let Some(branch) = &req.branch {
        git(&bare)
            .args(["symbolic-ref", "HEAD"])
            .arg(format!("refs/heads/{branch}"))
            .run()?;
    }
    Ok(Snapshot {
        sha,
        clean,
        bare_repo: bare,
    })
}

/// `refs/pipelines/<id>` at `sha` in the bare repository `bare`: the persistent ref of a
/// pipeline created after the snapshot (a child pipeline runs the parent's commit under
/// its own id, as on GitLab).
pub fn add_pipeline_ref(bare: &Path, pipeline_id: u64, sha: &str) -> Result<(), GitError> {
    git(bare)
        .args(["update-ref", "--no-deref"])
        .arg(format!("refs/pipelines/{pipeline_id}"))
        .arg(sha)
        .run()?;
    Ok(())
}

fn check_ref_name(repo: &Repo, full: &str, name: &str, kind: &'static str) -> Result<(), GitError> {
    let ok = git(repo.top_level())
        .args(["check-ref-format", full])
        .run_opt()?
        .is_some();
    if ok && !name.starts_with('-') {
        Ok(())
    } else {
        Err(GitError::InvalidRefName {
            name: name.to_string(),
            kind,
        })
    }
}

/// Creates the bare repository once and (re)writes its alternates file so it borrows the
/// user's objects; written through a temp file + rename so a concurrent reader never sees
/// half a path.
fn ensure_bare_repo(repo: &Repo, bare: &Path) -> Result<(), GitError> {
    if !bare.join("HEAD").exists() {
        let parent = bare.parent().unwrap_or(bare);
        fs::create_dir_all(parent)
            .map_err(|e| GitError::io("cannot create the data directory", parent, e))?;
        // Made under a temporary name and renamed into place: two runs starting at once on
        // a fresh data directory both get here, and `git init` of one path at once fails on
        // `config.lock`. The first rename wins; the loser's copy goes with its temp dir.
        let staging = tempfile::Builder::new()
            .prefix(".init-")
            .tempdir_in(parent)
            .map_err(|e| GitError::io("cannot create a temp directory in", parent, e))?;
        let staged = staging.path().join("repo.git");
        git(parent)
            .args(["init", "--bare", "--quiet", "--"])
            .arg(&staged)
            .run()?;
        match fs::rename(&staged, bare) {
            Ok(()) => {}
            Err(_) if bare.join("HEAD").exists() => {}
            Err(e) => return Err(GitError::io("cannot create", bare, e)),
        }
    }
    let info = bare.join("objects").join("info");
    fs::create_dir_all(&info).map_err(|e| GitError::io("cannot create", &info, e))?;
    let alternates = info.join("alternates");
    let wanted = format!("{}\n", repo.objects_dir().display());
    if fs::read_to_string(&alternates).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    let mut tmp = tempfile::NamedTempFile::new_in(&info)
        .map_err(|e| GitError::io("cannot create a temp file in", &info, e))?;
    tmp.write_all(wanted.as_bytes())
        .map_err(|e| GitError::io("cannot write", tmp.path().to_path_buf(), e))?;
    tmp.persist(&alternates)
        .map_err(|e| GitError::io("cannot write", &alternates, e.error))?;
    Ok(())
}

/// `git commit-tree` into the bare repository's object store, HEAD as parent.
fn commit_tree(
    repo: &Repo,
    objects: &Path,
    tree: &str,
    head: Option<&super::CommitInfo>,
) -> Result<String, GitError> {
    let scratch = tempfile::Builder::new()
        .prefix("glci-msg-")
        .tempdir()
        .map_err(|e| {
            GitError::io(
                "cannot create a scratch directory in",
                std::env::temp_dir(),
                e,
            )
        })?;
    let msg_file = scratch.path().join("message");
    let message = head.map_or(UNBORN_MESSAGE, |h| h.message.as_str());
    fs::write(&msg_file, message).map_err(|e| GitError::io("cannot write", &msg_file, e))?;

    let mut cmd = with_objects(git(repo.top_level()), repo, objects)
        .args(["commit-tree", "--no-gpg-sign", tree, "-F"])
        .arg(&msg_file);
    match head {
        Some(h) => {
            cmd = cmd
                .args(["-p", &h.sha])
                .env("GIT_AUTHOR_NAME", &h.author.name)
                .env("GIT_AUTHOR_EMAIL", &h.author.email)
                .env("GIT_AUTHOR_DATE", h.author.date.to_git())
                .env("GIT_COMMITTER_NAME", &h.committer.name)
                .env("GIT_COMMITTER_EMAIL", &h.committer.email)
                .env("GIT_COMMITTER_DATE", h.committer.date.to_git());
        }
        None => {
            cmd = cmd
                .env("GIT_AUTHOR_NAME", UNBORN_NAME)
                .env("GIT_AUTHOR_EMAIL", UNBORN_EMAIL)
                .env("GIT_COMMITTER_NAME", UNBORN_NAME)
                .env("GIT_COMMITTER_EMAIL", UNBORN_EMAIL);
        }
    }
    // `-F` keeps the message byte-exact except that git's cleanup would strip comments:
    // commit-tree does no cleanup, so the HEAD message is reproduced as is.
    let sha = cmd.text()?;
    if sha.len() < 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(cmd.parse_error(format!("expected a commit SHA, got `{sha}`")));
    }
    Ok(sha)
}

/// What `refs/tags/<tag>` points at: the user's own tag (annotated object included) when it
/// tags exactly the snapshot commit, else the snapshot commit (a lightweight tag).
fn tag_target(repo: &Repo, tag: &str, sha: &str, clean: bool) -> Result<String, GitError> {
    if clean {
        let full = format!("refs/tags/{tag}");
        if repo.resolve_commit(&full)?.as_deref() == Some(sha) {
            if let Some(obj) = git(repo.top_level())
                .args([
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &full,
                ])
                .text_opt()?
            {
                return Ok(obj);
            }
        }
    }
    Ok(sha.to_string())
}
