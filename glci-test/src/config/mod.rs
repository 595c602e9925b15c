//! Loading `.gitlab-ci.yml` as GitLab reads it, composing includes, and resolving
//! `extends`, `default:` and `inherit:` into one tree whose every node keeps its source span.
//!
//! [`load`] runs GitLab's steps in GitLab's order (`docs/ci-yaml-semantics.md` §0):
//!
//! 1. [`parse_yaml`] / [`parse_documents`]: Psych-compatible YAML 1.1 (`yaml.rs`, `scalar.rs`);
//! 2. per file, `spec:inputs` checked and `$[[ … ]]` interpolated (`inputs.rs`), then its
//!    `include:` entries resolved and deep-merged beneath it (`include/`, `merge.rs`);
//! 3. [`apply_extends`], then [`resolve_references`];
//! 4. [`apply_defaults`] (deprecated globals folded into `default:`), [`drop_hidden`],
//!    [`flatten_lists`] (nested `script`/`rules` arrays).
//!
//! [`resolve_tree`] runs steps 3–4 on a tree already in memory (tests, `parse_yaml` output).
//! The result is what GitLab's entry validation sees: top-level keywords plus one mapping per
//! job, with `extends`, `inherit` and everything else still in it; `.pre`/`.post` and job
//! defaults such as `stage: test` are left to the planner.

mod defaults;
mod emit;
mod error;
mod expand;
mod extends;
mod flatten;
mod include;
mod inputs;
mod jobs;
pub mod keywords;
mod load;
mod load_options;
mod merge;
mod reference;
mod scalar;
mod value;
mod yaml;

pub use defaults::apply_defaults;
pub use emit::to_yaml;
pub use error::ConfigError;
pub use expand::{expand, expand_existing};
pub use extends::apply_extends;
pub use flatten::flatten_lists;
pub use inputs::{interpolate, ComponentInfo, Context as InputContext};
pub use jobs::{drop_hidden, entry_kind, EntryKind};
pub use load::{load, load_child, load_main, read_main, resolve_tree, MainFile, Resolved};
pub use load_options::{
    FetchSources, LoadOptions, SourceFile, SourceLocation, DEFAULT_TEMPLATE_REF,
    DEFAULT_TEMPLATE_URL,
};
pub use merge::deep_merge;
pub use reference::resolve_references;
pub use value::ruby_float;
pub use value::{Key, Mapping, Node, Span, Value};
pub use yaml::{parse_documents, parse_yaml, Documents};
