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
    warn_if_env_file_is_tracked(event);
    event.to_options().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// The project's `.glci.env` holds secrets, and a run's snapshot takes every file git does
/// not ignore: say so when git does not ignore it (glci leaves `.gitignore` to the user).
fn warn_if_env_file_is_tracked(event: &EventArgs) {
    use glci_test::pipeline::env_file;
    if event.no_project_env_file {
        return;
    }
    let Some(file) = env_file::project_env_file(std::path::Path::new(".")) else {
        return;
    };
    let dir = file.parent().unwrap_or(std::path::Path::new("."));
    let ignored = glci_test::git::Repo::discover(dir)
        .and_then(|repo| repo.is_ignored(env_file::PROJECT_ENV_FILE))
        .unwrap_or(false);
    if !ignored {
        eprintln!(
            "warning: {} is not ignored by git: jobs of `cargo glci run` check it out too (add it to .gitignore)",
            env_file::PROJECT_ENV_FILE
        );
    }
}
