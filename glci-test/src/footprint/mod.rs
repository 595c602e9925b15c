//! What glci holds on this machine, and removing it (`cargo glci system df|prune|cache
//! clean|logs`): in the Docker engine, in the engine's own numbers (`engine`), and in
//! `GLCI_HOME`, as `du` counts it (`disk`); `prune` says what can go, then removes exactly
//! that.

pub mod disk;
pub mod engine;
pub mod prune;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use disk::{home_usage, HomeUsage, Usage};
pub use engine::{engine_usage, DfError, EngineUsage, LabelFilter, UsageError};
pub use prune::{PruneOptions, PrunePlan, PruneReport};

use crate::docker::{DockerError, Engine};

/// `cargo glci system df`: the engine's part (when an engine answers) and the disk's.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    pub home: PathBuf,
    pub engine: Option<EngineUsage>,
    /// Why the engine's part is missing.
    pub engine_error: Option<String>,
    pub disk: HomeUsage,
}

/// Measures glci's footprint in `engine` (objects also carrying `filter`'s label, when
/// given; when no engine could be reached, why not) and in `home`.
pub async fn measure(
    engine: Result<&Engine, &DockerError>,
    home: &Path,
    filter: Option<&LabelFilter>,
) -> Result<Footprint, UsageError> {
    let (engine, engine_error) = match engine {
        Ok(engine) => (Some(engine_usage(engine, filter).await?), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let home_dir = home.to_path_buf();
    let disk = tokio::task::spawn_blocking(move || home_usage(&home_dir))
        .await
        .unwrap_or_default();
    Ok(Footprint {
        home: home.to_path_buf(),
        engine,
        engine_error,
        disk,
    })
}
