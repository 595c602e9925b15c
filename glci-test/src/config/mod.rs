//! Loading `.gitlab-ci.yml` as GitLab reads it, composing includes, and resolving
//! `extends`, `default:` and `inherit:` into one tree whose every node keeps its source span.

mod value;

pub use value::{Key, Mapping, Node, Span, Value};
