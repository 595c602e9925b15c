//! Variables and GitLab's expansion engines (see `docs/ci-yaml-semantics.md` §5.3):
//!
//! - [`gitlab`]: the pipeline-side `ExpandVariables` (`$X`, `${X}`, `%X%`; no `$$` escape; no
//!   nesting) for keys GitLab expands itself, e.g. `include`, `environment`, `rules:changes`;
//! - [`collection`]: `sort_and_expand_all`, the nested expansion of a variable list that
//!   references itself, with raw/file handling and cycle detection;
//! - [`runner`]: the runner's single-pass `$X`/`${X}` expansion with `$$` → `$`, for the job's
//!   variables and runner-side keys such as `image` and `cache:key`.

pub mod collection;
pub mod gitlab;
mod lookup;
pub mod runner;
mod variable;

pub use collection::{
    expand_for_runner, sort_and_expand_all, tsort, CircularReference, ExpandOptions,
};
pub use lookup::{NoVariables, VariableLookup};
pub use variable::{check_maskable, find, MaskRefusal, Variable};
