//! Buildx in jobs that have a Docker daemon (a Docker-in-Docker service, or the engine's
//! socket): builders that `docker buildx create` makes trust the pipeline's registry, and
//! builder state baked into the job image is not used.
//!
//! Buildx keeps its state (builder instances, the current builder) in its configuration
//! directory, `$BUILDX_CONFIG`, else `$DOCKER_CONFIG/buildx` (`~/.docker/buildx`). When
//! `docker buildx create` is given no `--config`, buildx (0.9 and later) reads
//! `buildkitd.default.toml` from that directory, resolves the CA files it names, and stores
//! both in the builder's state (`instances/<name>`), from where the driver copies them into the
//! BuildKit daemon it starts (`/etc/buildkit/buildkitd.toml`, `/etc/buildkit/certs/<host>/`).
//!
//! So glci gives such a job `BUILDX_CONFIG` = [`CONFIG_DIR`], a fresh directory of the job's
//! own container holding a `buildkitd.default.toml` that trusts `CI_REGISTRY` with glci's CA
//! (see [`super::registry_trust`]) and uses the registry as the mirror of Docker Hub, as the
//! Docker-in-Docker daemon does. Builder state baked into the image (under `~/.docker/buildx`,
//! naming daemons of other jobs or machines) is not read. A job that sets `BUILDX_CONFIG` or
//! `DOCKER_CONFIG` itself keeps its own directory.
//!
//! The builder's network: with Docker-in-Docker, a `docker-container` builder runs on the
//! inner daemon's default bridge, whose traffic leaves through the service's network to the
//! registry's address on the Docker bridge, so the default network reaches `CI_REGISTRY`. With
//! the engine's socket, `CI_REGISTRY` is a loopback address (see
//! [`RegistryAccess::for_host_engine`]), which a builder container reaches only on the host's
//! network (`--driver-opt network=host`); buildx has no default for driver options, so that
//! stays the job's to say. The configuration lets BuildKit speak plain HTTP to it, as the
//! engine does.

use super::payload::JobVariable;
use super::registry_access::RegistryAccess;
use super::registry_trust::{FileEntry, CA_PATH};

/// The buildx configuration directory jobs with a Docker daemon get (`BUILDX_CONFIG`).
pub const CONFIG_DIR: &str = "/etc/glci/buildx";
/// The file buildx reads from its configuration directory when `create` has no `--config`.
const DEFAULT_CONFIG: &str = "buildkitd.default.toml";

/// Which daemon the job's `docker` client talks to, which decides how a builder reaches the
/// registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobDaemon {
    /// A Docker-in-Docker service: `CI_REGISTRY` is the TLS listener on the Docker bridge.
    Dind,
    /// This machine's engine through its socket: `CI_REGISTRY` is the loopback listener.
    HostEngine,
}

/// `BUILDX_CONFIG` for the job, unless it chose a configuration directory itself
/// (`BUILDX_CONFIG`, or `DOCKER_CONFIG`, under which buildx keeps its own).
pub fn job_variable(variables: &[JobVariable]) -> Option<JobVariable> {
    let chosen = variables
        .iter()
        .any(|v| v.key == "BUILDX_CONFIG" || v.key == "DOCKER_CONFIG");
    (!chosen).then(|| JobVariable {
        key: "BUILDX_CONFIG".into(),
        value: CONFIG_DIR.into(),
        public: true,
        ..Default::default()
    })
}

/// The files that make [`CONFIG_DIR`] in the job's container: the directory, writable by any
/// user (the job may not run as root, and buildx writes its state there), and, with a
/// registry, the default BuildKit configuration trusting it.
pub(crate) fn files(registry: Option<&RegistryAccess>, daemon: JobDaemon) -> Vec<FileEntry> {
    let mut files = vec![FileEntry::directory(CONFIG_DIR.into(), 0o1777)];
    if let Some(registry) = registry {
        files.push(FileEntry::root_readable(
            format!("{CONFIG_DIR}/{DEFAULT_CONFIG}"),
            &default_config(registry, daemon),
        ));
    }
    files
}

/// `buildkitd.default.toml`: BuildKit's registry settings (`[registry."host:port"]`).
fn default_config(registry: &RegistryAccess, daemon: JobDaemon) -> String {
    let job = &registry.job_address;
    let mut toml = format!(
        "# glci: builders made by `docker buildx create` without --config trust the pipeline's\n\
         # registry (glci's CA) and pull Docker Hub images through it, as the job's daemon does.\n\
         [registry.\"{job}\"]\n  ca = [\"{CA_PATH}\"]\n\n\
         [registry.\"docker.io\"]\n  mirrors = [\"{job}\"]\n"
    );
    if daemon == JobDaemon::HostEngine {
        let engine = &registry.engine_address;
        toml.push_str(&format!(
            "\n# CI_REGISTRY of a job with the engine's socket: the loopback listener, plain HTTP\n\
             # (reached by a builder on the host's network: --driver-opt network=host).\n\
             [registry.\"{engine}\"]\n  http = true\n"
        ));
    }
    toml
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> RegistryAccess {
        RegistryAccess {
            job_address: "172.17.0.1:40001".into(),
            engine_address: "127.0.0.1:40002".into(),
            ca_pem: String::new(),
        }
    }

    fn parsed(daemon: JobDaemon) -> toml::Table {
        let text = default_config(&access(), daemon);
        text.parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    #[test]
    fn the_default_config_trusts_the_registry_and_mirrors_docker_hub_through_it() {
        let config = parsed(JobDaemon::Dind);
        let registry = config["registry"].as_table().unwrap();
        assert_eq!(
            registry["172.17.0.1:40001"]["ca"].as_array().unwrap()[0].as_str(),
            Some(CA_PATH)
        );
        assert_eq!(
            registry["docker.io"]["mirrors"].as_array().unwrap()[0].as_str(),
            Some("172.17.0.1:40001")
        );
        assert!(!registry.contains_key("127.0.0.1:40002"));

        let socket = parsed(JobDaemon::HostEngine);
        assert_eq!(
            socket["registry"]["127.0.0.1:40002"]["http"].as_bool(),
            Some(true)
        );
    }

    #[test]
    fn a_job_choosing_its_own_configuration_directory_keeps_it() {
        let set = |key: &str| JobVariable {
            key: key.into(),
            value: "/mine".into(),
            ..Default::default()
        };
        assert_eq!(job_variable(&[]).unwrap().value, CONFIG_DIR);
        assert!(job_variable(&[set("BUILDX_CONFIG")]).is_none());
        assert!(job_variable(&[set("DOCKER_CONFIG")]).is_none());
    }

    #[test]
    fn without_a_registry_the_directory_is_still_fresh() {
        let files = files(None, JobDaemon::Dind);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, CONFIG_DIR);
    }
}
