//! glci-test: run a project's GitLab CI pipeline on this machine, for real, and report every
//! CI job as a Rust test.
//!
//! The crate follows the data flow of one pipeline (see `docs/ARCHITECTURE.md`):
//!
//! - [`config`] loads `.gitlab-ci.yml` (anchors, `!reference`, `include`, `extends`,
//!   `default`/`inherit`) into one resolved tree with source spans;
//! - [`expr`] is the `rules:if` expression language, [`vars`] GitLab's variable expansion;
//! - [`plan`] turns the resolved configuration and an [`plan::Event`] into the jobs that run;
//! - [`git`] reads repository facts and snapshots the working tree;
//! - [`server`] is the local stand-in for GitLab, [`runner`] the built-in runner,
//!   [`docker`] the engine connection and cleanup, [`relay`] how jobs on a remote engine reach
//!   the server, [`harness`] jobs as libtest trials, [`settings`] glci's own settings
//!   (`GLCI_HOME/config.toml`, `.glci.toml`, environment); `sigv4` is the AWS signature both the
//!   runner (presigning) and the server (verifying) use for the S3 cache.

mod calendar;
pub mod config;
pub mod daemon;
pub mod docker;
pub mod expr;
pub mod footprint;
pub mod git;
pub mod harness;
pub mod pipeline;
pub mod plan;
pub mod printable;
pub mod relay;
pub mod runner;
pub mod server;
pub mod settings;
mod sigv4;
mod threads;
pub mod vars;

/// insta, for the snapshot macros that expand in the user's crate (which need not depend on
/// insta itself).
#[doc(hidden)]
pub use insta as __insta;
