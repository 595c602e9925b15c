//! Why a pipeline could not run: the one error of the run engine, shared by the session and
//! its set-up steps.

use crate::docker::DockerError;
use crate::git::GitError;
use crate::pipeline::PipelineError;
use crate::relay::RelayError;
use crate::server::ServerError;

/// Why a pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Docker(#[from] DockerError),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("{0}")]
    Git(#[from] GitError),
    #[error("{0}")]
    Relay(#[from] RelayError),
    #[error("glci data directory: {0}")]
    Home(std::io::Error),
    #[error("no job `{name}` in this pipeline{}", hint(.planned))]
    UnknownJob { name: String, planned: Vec<String> },
    #[error("the pipeline was not created: {0}")]
    NotCreated(String),
    #[error("{0}")]
    RunnerConfig(#[from] crate::runner::runner_config::RunnerConfigError),
    #[error("glci settings: {0}")]
    Settings(#[from] crate::settings::SettingsError),
}

fn hint(planned: &[String]) -> String {
    if planned.is_empty() {
        String::new()
    } else {
        format!(" (jobs: {})", planned.join(", "))
    }
}
