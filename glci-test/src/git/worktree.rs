//! The working tree as one git tree object, computed without touching the user's index or
//! object store: a copy of the index in a scratch directory (`GIT_INDEX_FILE`), new objects
//! into a directory glci owns (`GIT_OBJECT_DIRECTORY`), the user's objects read through
//! `GIT_ALTERNATE_OBJECT_DIRECTORIES`. The user's own config, `.gitignore`, `info/exclude` and
//! attributes all apply, because git still runs in the user's repository.

use std::fs;
use std::path::Path;

use super::command::{git, GitCmd};
use super::{GitError, Repo};

/// Settings that would otherwise let `git add` write into the user's `.git` (a shared split
/// index, an fsmonitor daemon socket) or spend time on caches nobody will reuse.
const ISOLATION: [&str; 8] = [
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.splitIndex=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "gc.auto=0",
];

/// `cmd` reading the user's objects and writing new ones into `object_dir`.
pub(crate) fn with_objects(cmd: GitCmd, repo: &Repo, object_dir: &Path) -> GitCmd {
    cmd.env("GIT_OBJECT_DIRECTORY", object_dir).env(
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        quote_alternate(&repo.objects_dir().to_string_lossy()),
    )
}

/// `GIT_ALTERNATE_OBJECT_DIRECTORIES` is colon-separated; a path with a colon (or starting
/// with a quote) must be given as a C-style quoted string.
fn quote_alternate(path: &str) -> String {
    if !path.contains(':') && !path.starts_with('"') {
        return path.to_string();
    }
    let escaped = path.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// SHA of the tree `git add -A && git write-tree` would produce for the working tree right
/// now (uncommitted changes and untracked, non-ignored files included; deleted files absent).
/// New blobs and trees go to `object_dir`, which must exist.
pub fn capture_tree(repo: &Repo, object_dir: &Path) -> Result<String, GitError> {
    let scratch = tempfile::Builder::new()
        .prefix("glci-index-")
        .tempdir()
        .map_err(|e| {
            GitError::io(
                "cannot create a scratch directory in",
                std::env::temp_dir(),
                e,
            )
        })?;
    let index = scratch.path().join("index");
    // Starting from a copy of the user's index keeps its stat cache, so `add -A` re-hashes
    // only files that changed, and keeps sparse-checkout (skip-worktree) entries as they are.
    if repo.index_file().exists() {
        fs::copy(repo.index_file(), &index)
            .map_err(|e| GitError::io("cannot copy the index", repo.index_file(), e))?;
    }
    let cmd = |args: &[&str]| {
        with_objects(git(repo.top_level()), repo, object_dir)
            .env("GIT_INDEX_FILE", &index)
            .args(ISOLATION)
            .args(args)
    };
    cmd(&["add", "--all", "--", ":/"]).run()?;
    let tree = cmd(&["write-tree"]).text()?;
    if tree.len() < 40 || !tree.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(cmd(&["write-tree"]).parse_error(format!("expected a tree SHA, got `{tree}`")));
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_alternates_with_colons() {
        assert_eq!(quote_alternate("/a/b"), "/a/b");
        assert_eq!(quote_alternate("/a:b/\"c"), "\"/a:b/\\\"c\"");
    }
}
