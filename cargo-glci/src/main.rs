//! `cargo glci`: the command line of glci. Only argument parsing and printing live here; the
//! engine is the `glci-test` library.

mod args;
mod artifacts_cmd;
mod commands;
mod daemon_cmd;
mod deploy_cmd;
mod exit;
mod json_events;
mod progress;
mod registry_cmd;
mod run_cmd;
mod runtime;
mod settings_cmd;
mod system_cmd;
mod test_cmd;
mod variables_cmd;

use std::process::ExitCode;

use clap::Parser;

use args::Cli;

fn main() -> ExitCode {
    // Started as the watchdog of a run (see `docker::Reaper`): that is all this process does.
    glci_test::docker::serve_if_asked();
    // Started as the relay agent in a container on a remote engine: serve and exit there.
    glci_test::relay::serve_if_asked();
    // Started as the glci daemon (`cargo glci daemon start`, or by a test run).
    glci_test::daemon::serve_if_asked();
    // Cargo runs a subcommand as `cargo-glci glci ARGS`; run directly it is `cargo-glci ARGS`.
    // Drop the repeated name so both behave the same.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "glci") {
        argv.remove(1);
    }
    let cli = Cli::parse_from(argv);
    // glci's settings files, read once at start: a bad one is one error before anything runs.
    match glci_test::pipeline::checked_settings() {
        Ok(settings) => {
            for warning in &settings.warnings {
                eprintln!("warning: {warning}");
            }
        }
        Err(e) => {
            eprintln!("error: glci settings: {e}");
            return ExitCode::from(2);
        }
    }
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("error: {}", glci_test::printable::printable_lines(&message));
            ExitCode::from(2)
        }
    }
}
