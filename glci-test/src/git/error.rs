//! The one error type of the `git` module: every variant names the repository, command or
//! ref at fault so a user can act on the message alone.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` binary could not be started at all.
    #[error("could not run `git` (is it installed and on PATH?): {source}")]
    Spawn {
        #[source]
        source: std::io::Error,
    },

    /// A git command ran and exited non-zero.
    #[error("`git {args}` in {dir} failed ({status}): {stderr}")]
    Command {
        dir: PathBuf,
        args: String,
        status: String,
        stderr: String,
    },

    /// The path given to [`crate::git::Repo::discover`] is not inside a work tree.
    #[error(
        "{path} is not inside a git work tree (glci needs a git repository to run the pipeline of)"
    )]
    NotARepo { path: PathBuf },

    /// Git printed something this module does not understand.
    #[error("unexpected output from `git {args}` in {dir}: {detail}")]
    Parse {
        dir: PathBuf,
        args: String,
        detail: String,
    },

    /// A ref (branch, tag, `compare_to`, MR target) that does not resolve to a commit.
    #[error("unknown git ref `{name}` in {repo}: no branch, tag or commit of that name")]
    UnknownRef { name: String, repo: PathBuf },

    /// A branch or tag name git itself would refuse (`git check-ref-format`).
    #[error("`{name}` is not a valid {kind} name")]
    InvalidRefName { name: String, kind: &'static str },

    /// A filesystem operation on glci's own files (temp index, bare repository) failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GitError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
