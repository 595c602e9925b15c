//! How a pipeline is run: the knobs of [`Session::start`](super::Session::start).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::runner::executor::ExecutorOptions;

/// How a pipeline is run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// Jobs running at once (built-in runners).
    pub concurrency: usize,
    /// Leave the containers of failed jobs for inspection.
    pub keep_failed: bool,
    /// Image for jobs without `image:`: `GLCI_DEFAULT_IMAGE`, else
    /// `glci-fixture/debian:bookworm` (built offline by `scripts/fixture-images`).
    pub default_image: String,
    /// How long services get to accept connections.
    pub services_timeout: Duration,
    /// Wait `start_in` before a delayed job starts (false: start it at once).
    pub wait_delayed: bool,
    /// Start no built-in runner: jobs wait for a runner the user registers.
    pub external_runner: bool,
    /// Address the server listens on; default this host's address on the Docker bridge (see
    /// [`Engine::host_address`]); an error when the engine has none.
    pub bind: Option<IpAddr>,
    /// glci's data directory; default `GLCI_HOME`, else `~/.glci`.
    pub home: Option<PathBuf>,
    /// gitlab-runner's `config.toml` for the built-in runners (`--runner-config`); `None`:
    /// `GLCI_RUNNER_CONFIG`, else the project's `.glci/runner.toml` if there is one (see
    /// [`crate::runner::runner_config`]).
    pub runner_config: Option<PathBuf>,
    /// Give jobs the engine's socket (`--docker-socket`; see [`crate::runner::socket`]).
    pub docker_socket: bool,
    /// The container registry jobs get (`CI_REGISTRY*`); default from the environment (see
    /// [`RegistryChoice::from_env`]), else the stand-in's own.
    pub registry: RegistryChoice,
    /// Mirror every push to glci's registry to this one too (`--push-through`; default from
    /// `GLCI_PUSH_THROUGH`, `GLCI_PUSH_THROUGH_USER`, `GLCI_PUSH_THROUGH_PASSWORD`).
    pub push_through: Option<crate::server::PushThroughConfig>,
}

/// The push-through mirror `GLCI_PUSH_THROUGH` names (`http(s)://host[:port]`), with
/// `GLCI_PUSH_THROUGH_USER` and `GLCI_PUSH_THROUGH_PASSWORD`.
pub fn push_through_from_env() -> Option<crate::server::PushThroughConfig> {
    let var = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    var("GLCI_PUSH_THROUGH").map(|url| crate::server::PushThroughConfig {
        url,
        username: var("GLCI_PUSH_THROUGH_USER").unwrap_or_default(),
        password: var("GLCI_PUSH_THROUGH_PASSWORD").unwrap_or_default(),
    })
}

/// Which container registry jobs are given.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RegistryChoice {
    /// The stand-in's own registry, reached over TLS (see `runner::registry_access`).
    #[default]
    Served,
    /// None: no `CI_REGISTRY*` variables, as on a GitLab instance without a registry.
    Disabled,
    /// A real registry: `CI_REGISTRY` names it, and jobs get this login as
    /// `CI_REGISTRY_USER` / `CI_REGISTRY_PASSWORD` (and for pulling their images from it).
    External(ExternalRegistry),
}

/// A real registry used instead of the stand-in's own.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExternalRegistry {
    /// `host[:port]`, as `CI_REGISTRY` carries it.
    pub address: String,
    pub username: String,
    pub password: String,
}

/// A registry given as something other than `[https://]host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("registry `{0}` is not `host[:port]` (with an optional `https://`): CI_REGISTRY names a host, projects' images go below it")]
pub struct BadRegistryAddress(pub String);

impl ExternalRegistry {
    /// `url` as `CI_REGISTRY` carries it: `https://registry.example:5000/` gives
    /// `registry.example:5000`.
    pub fn address_of(url: &str) -> Result<String, BadRegistryAddress> {
        let bare = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(url)
            .trim_end_matches('/');
        let valid = !bare.is_empty()
            && !bare.contains(['/', '@', '?', '#'])
            && !bare.chars().any(char::is_whitespace);
        if valid {
            Ok(bare.to_string())
        } else {
            Err(BadRegistryAddress(url.to_string()))
        }
    }
}

impl RegistryChoice {
    /// From `GLCI_NO_REGISTRY` (`1`/`true`: [`RegistryChoice::Disabled`]) or
    /// `GLCI_REGISTRY` with `GLCI_REGISTRY_USER` and `GLCI_REGISTRY_PASSWORD`
    /// ([`RegistryChoice::External`]), else [`RegistryChoice::Served`]: how
    /// `glci_test::main!()` gets what `cargo glci run --no-registry` / `--registry` say.
    pub fn from_env() -> Result<RegistryChoice, BadRegistryAddress> {
        let var = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        if matches!(var("GLCI_NO_REGISTRY").as_deref(), Some("1" | "true")) {
            return Ok(RegistryChoice::Disabled);
        }
        match var("GLCI_REGISTRY") {
            Some(url) => Ok(RegistryChoice::External(ExternalRegistry {
                address: ExternalRegistry::address_of(&url)?,
                username: var("GLCI_REGISTRY_USER").unwrap_or_default(),
                password: var("GLCI_REGISTRY_PASSWORD").unwrap_or_default(),
            })),
            None => Ok(RegistryChoice::Served),
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        let executor = ExecutorOptions::default();
        RunOptions {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keep_failed: false,
            default_image: executor.default_image,
            services_timeout: executor.services_timeout,
            wait_delayed: true,
            external_runner: false,
            bind: None,
            home: None,
            runner_config: None,
            // For `glci_test::main!()`, which has no flags.
            docker_socket: std::env::var("GLCI_DOCKER_SOCKET")
                .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes")),
            registry: RegistryChoice::from_env().unwrap_or_else(|e| {
                // Default can't fail; an unusable GLCI_REGISTRY is reported, never guessed at.
                tracing::error!("{e}; jobs get no registry");
                RegistryChoice::Disabled
            }),
            push_through: push_through_from_env(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_url_becomes_ci_registrys_host_and_port() {
        for (url, address) in [
            ("https://registry.example:5000/", "registry.example:5000"),
            ("registry.example", "registry.example"),
            ("http://10.0.0.2:5000", "10.0.0.2:5000"),
        ] {
            assert_eq!(ExternalRegistry::address_of(url).unwrap(), address);
        }
        for bad in [
            "",
            "https://",
            "registry.example/group",
            "user@registry.example",
            "a b",
        ] {
            assert!(ExternalRegistry::address_of(bad).is_err(), "{bad}");
        }
    }
}
