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

use super::payload::JobVariable;

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

impl RegistryAccess {
    /// Points a socket-mode job at the loopback listener: its `docker` client drives the
    /// engine on this host, which reaches the registry there over plain HTTP (as every engine
    /// allows for loopback) and does not trust glci's CA, so the TLS address would fail its
    /// `docker login` and `docker push`. Every value naming the job address (`CI_REGISTRY`,
    /// `CI_REGISTRY_IMAGE`, and variables built from them) names the engine address instead;
    /// both serve the same store, so later jobs find what this one pushed.
    pub fn for_host_engine(&self, variables: &mut [JobVariable]) {
        for variable in variables {
            if variable.value.contains(&self.job_address) {
                variable.value = variable
                    .value
                    .replace(&self.job_address, &self.engine_address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_job_gets_the_loopback_address_in_every_variable_naming_the_registry() {
        let access = RegistryAccess {
            job_address: "172.17.0.1:40001".into(),
            engine_address: "127.0.0.1:40002".into(),
            ca_pem: String::new(),
        };
        let var = |key: &str, value: &str| JobVariable {
            key: key.into(),
            value: value.into(),
            ..JobVariable::default()
        };
        let mut variables = vec![
            var("CI_REGISTRY", "172.17.0.1:40001"),
            var("CI_REGISTRY_IMAGE", "172.17.0.1:40001/group/app"),
            var("OTHER", "172.17.0.1:4000"),
        ];
        access.for_host_engine(&mut variables);
        let values: Vec<&str> = variables.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(
            values,
            [
                "127.0.0.1:40002",
                "127.0.0.1:40002/group/app",
                "172.17.0.1:4000"
            ]
        );
    }
}
