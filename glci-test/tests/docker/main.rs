//! The library's integration tests that run jobs in a real Docker engine (they fail, never
//! skip, when none answers: `scripts/test` starts one and builds the fixture images). One test
//! binary, one module per area, so the library is linked once for all of them (`cargo nextest
//! run -p glci-test --test docker`).

mod docker_plumbing;
mod run_cache;
mod run_catalog;
mod run_job_api;
mod run_lifecycle;
mod run_sources;
mod runner_cache;
mod runner_e2e;
mod runner_executor;
