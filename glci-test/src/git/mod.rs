//! Repository facts (branch, SHA, remote → project path), changed files, and the snapshot
//! commit of the working tree that jobs check out.
//!
//! Everything runs the real `git` binary (`LC_ALL=C`, `GIT_TERMINAL_PROMPT=0`,
//! `GIT_OPTIONAL_LOCKS=0`, location variables such as `GIT_DIR` removed), never a library, so
//! the user's own config, ignore rules, attributes and filters apply exactly as in their
//! shell. Nothing in this module writes to the user's repository.
//!
//! Typical use:
//! ```no_run
//! # fn main() -> Result<(), glci_test::git::GitError> {
//! use glci_test::git::{snapshot, Repo, SnapshotRequest};
//! let repo = Repo::discover(std::path::Path::new("."))?;
//! let facts = repo.facts()?;
//! let snap = snapshot(&repo, std::path::Path::new("/tmp/glci-data"), &SnapshotRequest {
//!     pipeline_id: 1,
//!     branch: facts.branch.clone(),
//!     ..Default::default()
//! })?;
//! println!("{} in {}", snap.sha, snap.bare_repo.display());
//! # Ok(()) }
//! ```

mod changes;
mod command;
mod commit;
mod commit_tree;
mod error;
mod remote;
mod repo;
mod snapshot;
mod worktree;

pub use changes::files_in;
pub use commit::{CommitInfo, GitDate, Signature, NO_COMMIT_MESSAGE};
pub use commit_tree::CommitTree;
pub use error::GitError;
pub use remote::{instance_url, ProjectPath, FALLBACK_NAMESPACE};
pub use repo::{GitUser, Repo, RepoFacts, BLANK_SHA};
pub use snapshot::{add_pipeline_ref, bare_repo_path, snapshot, Snapshot, SnapshotRequest};
pub use worktree::capture_tree;
