//! The built-in runner: takes jobs over the runner API and runs them with the Docker engine,
//! reproducing the official runner's Docker executor (stages, sections, script wrapper,
//! variables, masking, messages and failure reasons).

pub mod api;
pub mod archive;
pub mod build_container;
pub mod buildx;
pub mod cache;
pub mod dind;
pub mod docker_settings;
pub mod executor;
mod http_client;
pub mod image_pull;
pub mod job_variables;
pub mod payload;
pub mod privileges;
pub mod progress;
pub mod registry_access;
pub mod registry_trust;
pub mod runner_config;
pub mod s3_presign;
pub mod services;
pub mod shell;
pub mod socket;
pub mod sources;
pub mod trace;
pub mod worker;
