//! How a command fails before it gets going: bad flags (exit 2) or a configuration GitLab
//! would refuse (exit 1, GitLab's messages). Shared by every subcommand.

use std::process::ExitCode;

use glci_test::pipeline::{PipelineError, PipelineOptions};
use glci_test::printable::printable;
use serde_json::json;

use crate::args::EventArgs;

/// Exit 1 with GitLab's message(s) on stderr (and in `errors` with --json).
pub fn config_failure(e: &PipelineError, json: bool) -> ExitCode {
    for line in e.messages() {
        eprintln!("{}", printable(&line));
    }
    if json {
        println!("{}", json!({"created": false, "errors": e.messages()}));
    }
    ExitCode::from(1)
}

/// The pipeline options of the flags, or exit 2 with why they are wrong.
pub fn options(event: &EventArgs) -> Result<PipelineOptions, ExitCode> {
    event.to_options().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}
