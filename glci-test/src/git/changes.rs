//! The file sets `rules:changes` and `rules:exists` look at, computed against the working
//! tree (glci runs the working tree, so uncommitted and untracked files count).

use std::path::Path;

use super::command::{git, split_nul};
use super::worktree::{capture_tree, with_objects};
use super::{GitError, Repo};

impl Repo {
    /// Every file of the working tree as the snapshot will hold it, for `rules:exists`:
    /// tracked and untracked non-ignored files (`git ls-files --cached --others
    /// --exclude-standard`), minus tracked files deleted from disk. Sorted, `/`-separated,
    /// relative to the top level.
    pub fn files(&self) -> Result<Vec<String>, GitError> {
        files_in(self.top_level())
    }

    /// Paths that differ between commit `base` and the working tree: added, modified and
    /// deleted, committed or not, untracked non-ignored files included. Renames count as a
    /// deletion plus an addition, so both paths are listed (as in GitLab's diff stats).
    pub fn changed_since(&self, base: &str) -> Result<Vec<String>, GitError> {
        let base = self
            .resolve_commit(base)?
            .ok_or_else(|| GitError::UnknownRef {
                name: base.to_string(),
                repo: self.top_level().to_path_buf(),
            })?;
        let scratch = scratch_objects()?;
        let tree = capture_tree(self, scratch.path())?;
        let out = with_objects(git(self.top_level()), self, scratch.path())
            .args([
                "diff-tree",
                "-r",
                "-z",
                "--no-renames",
                "--name-only",
                &base,
                &tree,
            ])
            .run()?;
        let mut paths = split_nul(&out);
        paths.sort();
        Ok(paths)
    }

    /// Whether git ignores `path` (relative to the top level), so that a snapshot of the
    /// working tree leaves it out (`git check-ignore`).
    pub fn is_ignored(&self, path: &str) -> Result<bool, GitError> {
        Ok(git(self.top_level())
            .args(["check-ignore", "-q", "--", path])
            .run_opt()?
            .is_some())
    }

    /// Whether the working tree, as a snapshot would capture it (untracked non-ignored files
    /// included), is exactly the tree `tree`: a clean checkout of a commit with that tree.
    pub fn working_tree_is(&self, tree: &str) -> Result<bool, GitError> {
        let scratch = scratch_objects()?;
        Ok(capture_tree(self, scratch.path())? == tree)
    }

    /// A branch as GitLab knows it: the remote-tracking ref `<remote>/<name>` when there is
    /// one (GitLab has what was pushed, not the local branch), else whatever `name` resolves
    /// to locally (branch, tag or SHA).
    pub fn resolve_server_ref(&self, name: &str, remote: Option<&str>) -> Result<String, GitError> {
        if let Some(remote) = remote {
            if let Some(sha) = self.resolve_commit(&format!("refs/remotes/{remote}/{name}"))? {
                return Ok(sha);
            }
        }
        self.resolve_commit(name)?
            .ok_or_else(|| GitError::UnknownRef {
                name: name.to_string(),
                repo: self.top_level().to_path_buf(),
            })
    }

    /// `rules:changes:compare_to`: paths changed between `merge_base(compare_to, HEAD)` and
    /// the working tree. An unknown ref is [`GitError::UnknownRef`] (GitLab fails the rule).
    pub fn changed_since_merge_base(
        &self,
        other: &str,
        remote: Option<&str>,
    ) -> Result<Vec<String>, GitError> {
        match self.merge_base(other, remote)? {
            Some(base) => self.changed_since(&base),
            // Nothing committed yet, or unrelated histories: every file is new.
            None => self.files(),
        }
    }

    /// `merge_base(other, HEAD)` with `other` resolved by [`Repo::resolve_server_ref`]
    /// (`CI_MERGE_REQUEST_DIFF_BASE_SHA` for target branch `other`). `None` before the first
    /// commit or for unrelated histories.
    pub fn merge_base(
        &self,
        other: &str,
        remote: Option<&str>,
    ) -> Result<Option<String>, GitError> {
        let other_sha = self.resolve_server_ref(other, remote)?;
        let Some(head) = self.head_sha()? else {
            return Ok(None);
        };
        git(self.top_level())
            .args(["merge-base", &other_sha, &head])
            .text_opt()
    }
}

/// Every file git would hold for the directory `dir` of a work tree: tracked and untracked
/// non-ignored files (`git ls-files --cached --others --exclude-standard`), minus tracked
/// files deleted from disk. Sorted, `/`-separated, relative to `dir`. Fails when `dir` is not
/// inside a git work tree.
pub fn files_in(dir: &Path) -> Result<Vec<String>, GitError> {
    // One git process (`-t` tags each entry) instead of one per list: planning time is
    // mostly git start-up. A tracked file deleted from disk is listed twice, as `H`
    // (cached) and `R` (removed); untracked files are `?`.
    let out = git(dir)
        .args([
            "ls-files",
            "-z",
            "-t",
            "--cached",
            "--deleted",
            "--others",
            "--exclude-standard",
        ])
        .run()?;
    let entries = split_nul(&out);
    let tagged = || entries.iter().filter_map(|e| e.split_once(' '));
    let deleted: std::collections::BTreeSet<&str> = tagged()
        .filter(|(tag, _)| *tag == "R")
        .map(|(_, path)| path)
        .collect();
    let mut files: Vec<String> = tagged()
        .filter(|(tag, path)| *tag != "R" && !deleted.contains(path))
        .map(|(_, path)| path.to_string())
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// A scratch object store for a capture of the working tree: new objects go there and
/// disappear with it, so the user's repository is never written.
fn scratch_objects() -> Result<tempfile::TempDir, GitError> {
    tempfile::Builder::new()
        .prefix("glci-objects-")
        .tempdir()
        .map_err(|e| {
            GitError::io(
                "cannot create a scratch directory in",
                std::env::temp_dir(),
                e,
            )
        })
}
