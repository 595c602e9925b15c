//! From a resolved configuration and an event to the pipeline GitLab would create: which
//! jobs, in which stages, with which `when`, `needs` and variables.

mod event;
pub mod predefined;

pub use event::{Event, PipelineSource};
