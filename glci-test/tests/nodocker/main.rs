//! The library's integration tests that need no Docker engine: configuration loading and
//! errors, expressions and variables, git, planning, and the stand-in GitLab's protocols
//! driven by real clients (`git`, `curl`, botocore). One test binary, one module per area, so
//! the library is linked once for all of them (`cargo nextest run -p glci-test --test
//! nodocker`, `-E 'test(/^server_s3::/)'` for one module).

mod support;

mod config_errors;
mod config_fetched;
mod config_load;
mod config_remote;
mod config_yaml_libyaml;
mod expr_statement;
mod expr_vars;
mod git_repo;
mod git_snapshot;
mod plan_child;
mod plan_pipeline;
mod plan_real_configs;
mod plan_snapshots;
mod plan_validate;
mod server_git;
mod server_job_api;
mod server_params;
mod server_registry_tls;
mod server_runner_api;
mod server_s3;
