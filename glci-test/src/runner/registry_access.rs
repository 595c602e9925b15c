//! How the jobs of one pipeline reach the stand-in's container registry, handed from the
//! pipeline session to the runner.
//!
//! Two clients reach the registry from two places, so it has two addresses:
//! - **inside jobs** (a `docker` CLI talking to Docker-in-Docker, `skopeo`, `curl`): jobs see
//!   the host on the Docker bridge, not on loopback, and a Docker daemon speaks plain HTTP only
//!   to loopback or to registries it is told are insecure. So jobs get a TLS listener on the
//!   bridge address whose certificate chains to glci's own CA, and the CA is put into every job
//!   container (and every Docker-in-Docker daemon's `certs.d`). `CI_REGISTRY` names it.
//! - **the engine that runs the jobs** pulls `image:` and `services:`: it is the user's engine,
//!   whose configuration glci never edits, so it pulls over plain HTTP from the loopback
//!   listener, which every engine allows. An image named by the job address is pulled by the
//!   loopback address instead: both serve the same store.
//!
//! See `docs/protocols.md` (container registry).

/// The registry's addresses and trust for the jobs of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAccess {
    /// `host:port` that jobs use (`CI_REGISTRY`): the TLS listener on the Docker bridge.
    pub job_address: String,
    /// `host:port` the job engine pulls from: the plain HTTP listener on loopback.
    pub engine_address: String,
    /// glci's registry CA certificate (PEM) that `job_address`'s certificate chains to.
    pub ca_pem: String,
}
