//! Loading `.gitlab-ci.yml` as GitLab reads it, composing includes, and resolving
//! `extends`, `default:` and `inherit:` into one tree whose every node keeps its source span.

mod defaults;
mod emit;
mod error;
mod expand;
mod extends;
mod flatten;
mod include;
mod inputs;
mod jobs;
mod load;
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
pub use load::{load, resolve_tree, LoadOptions, Resolved, SourceFile, SourceLocation};
pub use merge::deep_merge;
pub use reference::resolve_references;
pub use scalar::ruby_float;
pub use value::{Key, Mapping, Node, Span, Value};
pub use yaml::{parse_documents, parse_yaml, Documents};
