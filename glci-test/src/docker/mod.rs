//! The Docker engine connection, labels on everything glci creates, and cleanup.
//!
//! Every object glci creates (container, network, volume) carries the labels of an [`Owner`]:
//! the pipeline it belongs to and the process that made it. [`remove_owned`] removes all objects
//! of one owner; [`remove_orphans`] removes those whose owning process is gone (a crash, a
//! SIGKILL), so the next run cleans up after a dead one. Objects without glci's labels are never
//! touched.

mod cleanup;
mod container;
mod engine;
mod labels;
pub mod probe;
mod reaper;

pub use cleanup::{
    count_labelled, remove_all, remove_orphans, remove_owned, remove_owned_except, CleanupReport,
};
pub(crate) use cleanup::{is_gone, remove_container, remove_network, remove_volume};
pub use container::{
    container_logs, create_network, run_container, ContainerOutput, ContainerSpec,
};
pub use engine::{DockerError, Engine, HostAddress};
pub(crate) use labels::owner_is_dead;
pub use labels::{
    Owner, LABEL_OWNER, LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_OWNER_START, LABEL_PIPELINE,
};
pub use reaper::{serve_if_asked, Reaper};
