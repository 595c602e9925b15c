//! The library's integration tests that run jobs in a real Docker engine (they fail, never
//! skip, when none answers: `scripts/test` starts one and builds the fixture images). One test
//! binary, one module per area, so the library is linked once for all of them (`cargo nextest
//! run -p glci-test --test docker`).

/// The stand-in's HTTP helpers, shared with the nodocker binary (which uses the git ones).
#[path = "../nodocker/support.rs"]
#[allow(dead_code)]
mod support;

mod docker_plumbing;
mod footprint;
mod registry_cache;
mod run_buildx;
mod run_cache;
mod run_catalog;
mod run_child;
mod run_deploy;
mod run_dind;
mod run_job_api;
mod run_lifecycle;
mod run_progress;
mod run_registry;
mod run_registry_tls;
mod run_sources;
mod run_test_reports;
mod runner_cache;
mod runner_e2e;
mod runner_executor;
mod runner_socket;
mod server_registry;
