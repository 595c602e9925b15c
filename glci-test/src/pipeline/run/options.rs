//! How a pipeline is run: the knobs of [`Session::start`](super::Session::start).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::runner::executor::ExecutorOptions;

/// How a pipeline is run.
#[derive(Debug, Clone)]
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
        }
    }
}
