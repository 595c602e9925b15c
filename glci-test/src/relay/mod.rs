//! Jobs on engines that cannot connect to this host reach the server through a relay.
//!
//! A remote engine (`tcp://`, `ssh://`) or one in a VM (Docker Desktop) generally cannot open
//! connections back to the machine glci runs on, so a job's `git fetch`, `curl
//! $CI_API_V4_URL/...` would fail. Instead, as GitLab's own local tooling runs its mock on the
//! engine and talks to it through an exec stream, glci starts a small relay container on the
//! engine and carries every connection over the engine's own API:
//!
//! ```text
//!  job ──tcp──▶ relay container (agent)  ══ attach stream (stdin/stdout) ══▶  glci ──tcp──▶ server
//!               glci-server:<port>           frames: open, data, eof, ack, reset           (loopback)
//! ```
//!
//! - Jobs are told the server is `http://glci-server:<port>` ([`SERVER_HOST`], or the name
//!   `[network] container_host` gives): on the engine's default network through an
//!   `extra_hosts` entry, on a job's own network (jobs with services) through a network alias
//!   of the relay, joined while the job runs.
//! - The agent ([`agent`]) is glci's own binary, run with a hidden argument; its image is
//!   made on the engine from that binary and its shared libraries (`image.rs`), once per
//!   binary, so nothing is pulled.
//! - [`mux`] carries the connections with a window per connection: a large clone or cache
//!   transfer streams without unbounded buffering and never holds up other connections.
//! - No port of this machine needs to be reachable from the engine's host; the server stays
//!   on loopback. The relay container carries the run's labels and goes with the run.
//!
//! Engines on this host keep direct connections (the server on the bridge address): see
//! [`needed`].

mod agent;
mod frame;
mod host;
mod image;
mod mux;

use std::path::PathBuf;

use crate::docker::{Engine, HostAddress};

pub use agent::{serve_if_asked, AGENT_ARG};
pub use frame::FrameError;
pub use host::Relay;
pub use image::{agent_binary, LABEL_RELAY_AGENT};

/// The host name jobs reach the server at when it is relayed.
pub const SERVER_HOST: &str = "glci-server";

/// Why the relay could not be set up or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "jobs on this engine reach glci's server through a relay container whose agent is \
         glci's own binary, and no usable one was found ({tried}): install it \
         (`cargo install --path cargo-glci`) or set GLCI_RELAY_AGENT to a cargo-glci binary"
    )]
    NoAgent { tried: String },
    #[error("relay: {0}")]
    Unsupported(String),
    #[error("relay image: {0}")]
    Image(String),
    #[error("relay: failed to {action}: {source}")]
    Docker {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the relay container did not start: {0}")]
    NotReady(String),
    #[error("relay stream: {0}")]
    Stream(std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl RelayError {
    pub(crate) fn docker(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        RelayError::Docker {
            action: action.into(),
            source,
        }
    }
}

/// Whether jobs need the relay: no address of this host is reachable from the engine's
/// containers (`docker::HostAddress`): the engine is remote (`tcp://`, `ssh://`, ...) or in a
/// VM, or its bridge is not this host's.
pub fn needed(host_address: &HostAddress) -> bool {
    !host_address.is_local()
}

/// The agent binary when jobs on `engine` need the relay (see [`needed`]), `None` when they
/// connect directly. A remote engine without a usable agent is an error; for an engine on a
/// local socket the caller then reports why no address of this host works.
pub fn agent_for(
    engine: &Engine,
    host_address: &HostAddress,
) -> Result<Option<PathBuf>, RelayError> {
    if !needed(host_address) {
        return Ok(None);
    }
    match agent_binary() {
        Ok(agent) => Ok(Some(agent)),
        Err(e) if engine.endpoint().starts_with("unix://") => {
            tracing::warn!("{e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
