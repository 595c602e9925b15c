//! How a pipeline is run: the knobs of [`Session::start`](super::Session::start).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::runner::executor::ExecutorOptions;
use crate::server::PushThroughConfig;
use crate::settings::{Settings, SettingsError};

/// How a pipeline is run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// Jobs running at once (built-in runners).
    pub concurrency: usize,
    /// Leave the containers of failed jobs for inspection.
    pub keep_failed: bool,
    /// Image for jobs without `image:`: `[images] default` of the settings
    /// (`GLCI_DEFAULT_IMAGE`), else `glci-fixture/debian:bookworm` (built offline by
    /// `scripts/fixture-images`).
    pub default_image: String,
    /// How long services get to accept connections.
    pub services_timeout: Duration,
    /// Wait `start_in` before a delayed job starts (false: start it at once).
    pub wait_delayed: bool,
    /// Start no built-in runner: jobs wait for a runner the user registers.
    pub external_runner: bool,
    /// Address the server listens on: `[network] bind` of the settings, else this host's
    /// address on the Docker bridge (see [`Engine::host_address`]); an error when the engine
    /// has none.
    pub bind: Option<IpAddr>,
    /// glci's data directory; default `GLCI_HOME`, else `~/.glci`.
    pub home: Option<PathBuf>,
    /// gitlab-runner's `config.toml` for the built-in runners (`--runner-config`); `None`:
    /// `GLCI_RUNNER_CONFIG`, else the project's `.glci/runner.toml` if there is one (see
    /// [`crate::runner::runner_config`]).
    pub runner_config: Option<PathBuf>,
    /// Give jobs the engine's socket (`--docker-socket`; see [`crate::runner::socket`]).
    pub docker_socket: bool,
    /// The container registry jobs get (`CI_REGISTRY*`); default from the settings'
    /// `[registry]` (see [`crate::settings::Settings::registry_choice`]), else the
    /// stand-in's own.
    pub registry: RegistryChoice,
    /// Mirror every push to glci's registry to this one too (`--push-through`; default the
    /// settings' `[registry] push_through`, `GLCI_PUSH_THROUGH`).
    pub push_through: Option<crate::server::PushThroughConfig>,
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

impl Default for RunOptions {
    /// glci's settings (files and environment, see [`crate::settings`]) where they say
    /// something; they were checked when read, so what fails here is reported there.
    fn default() -> Self {
        let executor = ExecutorOptions::default();
        let settings = crate::settings::current();
        RunOptions {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keep_failed: false,
            default_image: executor.default_image,
            services_timeout: executor.services_timeout,
            wait_delayed: true,
            external_runner: false,
            bind: settings.bind(),
            home: None,
            runner_config: None,
            docker_socket: settings.socket_passthrough(),
            registry: RegistryChoice::from_settings(settings).unwrap_or_else(|e| {
                // Checked at start; an unusable registry is never guessed at.
                tracing::error!("{e}; jobs get no registry");
                RegistryChoice::Disabled
            }),
            push_through: push_through_from_settings(settings).unwrap_or_default(),
        }
    }
}

impl RegistryChoice {
    /// The registry jobs get: `[registry] enabled` (`GLCI_NO_REGISTRY`), else `external`
    /// with `user` and `password` (`GLCI_REGISTRY*`), else glci's own.
    pub fn from_settings(settings: &Settings) -> Result<RegistryChoice, SettingsError> {
        if settings.flag(crate::settings::schema::REGISTRY_ENABLED) == Some(false) {
            return Ok(RegistryChoice::Disabled);
        }
        let Some(url) = settings.text(crate::settings::schema::REGISTRY_EXTERNAL) else {
            return Ok(RegistryChoice::Served);
        };
        let address = ExternalRegistry::address_of(url).map_err(|e| {
            settings.invalid(crate::settings::schema::REGISTRY_EXTERNAL, e.to_string())
        })?;
        Ok(RegistryChoice::External(ExternalRegistry {
            address,
            username: settings
                .text(crate::settings::schema::REGISTRY_USER)
                .unwrap_or_default()
                .to_string(),
            password: settings
                .text(crate::settings::schema::REGISTRY_PASSWORD)
                .unwrap_or_default()
                .to_string(),
        }))
    }
}

/// `[registry] push_through` with its user and password (`GLCI_PUSH_THROUGH*`).
pub fn push_through_from_settings(
    settings: &Settings,
) -> Result<Option<PushThroughConfig>, SettingsError> {
    let Some(url) = settings.text(crate::settings::schema::REGISTRY_PUSH_THROUGH) else {
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(settings.invalid(
            crate::settings::schema::REGISTRY_PUSH_THROUGH,
            format!("`{url}` is not an http:// or https:// URL"),
        ));
    }
    Ok(Some(PushThroughConfig {
        url: url.to_string(),
        username: settings
            .text(crate::settings::schema::REGISTRY_PUSH_THROUGH_USER)
            .unwrap_or_default()
            .to_string(),
        password: settings
            .text(crate::settings::schema::REGISTRY_PUSH_THROUGH_PASSWORD)
            .unwrap_or_default()
            .to_string(),
    }))
}

/// glci's settings, checked as a whole at an entry point: what the settings module checks, and
/// the registry settings read into the types the run uses, so a bad value is one error before
/// anything runs.
pub fn checked_settings() -> Result<&'static Settings, SettingsError> {
    let settings = crate::settings::check()?;
    RegistryChoice::from_settings(settings)?;
    push_through_from_settings(settings)?;
    crate::server::Upstream::from_settings(settings)?;
    Ok(settings)
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
