//! Reading one commit of a repository glci owns (the pipeline's snapshot): a file's content,
//! the list of its files, the last commit that touched some paths. What GitLab's
//! `cache:key:files` asks of the repository (`Gitlab::Ci::Build::Cache`).

use std::path::PathBuf;
use std::sync::OnceLock;

use super::command::{git, split_nul};

/// One commit of a bare repository. Questions whose answer git cannot give (a missing path,
/// a broken repository) answer `None` or nothing: a cache key then falls back the way
/// GitLab's does for a file that is not there.
#[derive(Debug, Clone)]
pub struct CommitTree {
    repo: PathBuf,
    sha: String,
    /// Every file of the commit, listed at the first question that needs them.
    files: OnceLock<Vec<String>>,
}

impl CommitTree {
    pub fn new(repo: PathBuf, sha: String) -> CommitTree {
        CommitTree {
            repo,
            sha,
            files: OnceLock::new(),
        }
    }

    /// The repository holding the commit.
    pub fn repo(&self) -> &std::path::Path {
        &self.repo
    }

    /// The commit's id.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// The content of `path` at the commit; `None` when it is not a file there.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        git(&self.repo)
            .args(["cat-file", "blob", &format!("{}:{path}", self.sha)])
            .run()
            .ok()
    }

    /// Every file path of the commit (listed once per `CommitTree`).
    pub fn files(&self) -> &[String] {
        self.files.get_or_init(|| {
            git(&self.repo)
                .args(["ls-tree", "-r", "--name-only", "-z", &self.sha])
                .run()
                .map(|out| split_nul(&out))
                .unwrap_or_default()
        })
    }

    /// The last commit, up to this one, that touched any of `paths`.
    pub fn last_commit(&self, paths: &[String]) -> Option<String> {
        git(&self.repo)
            .args(["log", "-1", "--format=%H", &self.sha, "--"])
            .args(paths)
            .text()
            .ok()
            .filter(|sha| !sha.is_empty())
    }
}
