//! End-to-end tests of the `cargo glci` binary, one module per area. One test binary (a target
//! of the `cargo-glci` package, so cargo builds the binary first and hands it over as
//! `CARGO_BIN_EXE_cargo-glci`): `cargo nextest run -p cargo-glci --test e2e`.

mod artifacts;
mod cli;
mod daemon;
mod deploy;
mod doctor;
mod external;
mod harness;
mod logs;
mod plan;
mod registry;
mod registry_flags;
mod remote;
mod run;
mod run_json;
mod run_progress;
mod runner_config;
mod scripts;
mod settings;
mod system;
mod test_reports;
mod variables;
