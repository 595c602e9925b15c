//! `cargo glci test`: the repository's pipeline as Rust tests, with no code written by the
//! user — the same harness `glci_test::main!()` builds, driven by the event flags, with the
//! arguments after `--` handed to libtest (`--list`, filters, `--exact`, `--ignored`...).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use glci_test::harness::Arguments;
use glci_test::harness::Harness;
use glci_test::pipeline::RunOptions;

use crate::args::EventArgs;

/// `cargo glci test`.
#[derive(Debug, Args, Clone)]
pub struct TestArgs {
    #[command(flatten)]
    pub event: EventArgs,
    /// Snapshot this job's normalized log with insta (repeatable; `*` for every job).
    #[arg(long = "snapshot", value_name = "JOB")]
    pub snapshots: Vec<String>,
    /// Where snapshots live, relative to the current directory (default tests/snapshots).
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<String>,
    /// A snapshot redaction: matches of REGEX become REPLACEMENT (repeatable).
    #[arg(long = "redact", value_name = "REGEX=REPLACEMENT")]
    pub redactions: Vec<String>,
    /// Jobs running at once (default: the number of CPUs).
    #[arg(long = "jobs", short = 'j', value_name = "N")]
    pub concurrency: Option<usize>,
    /// Keep the containers of failed jobs.
    #[arg(long)]
    pub keep: bool,
    /// Image for jobs without `image:`.
    #[arg(long, value_name = "IMAGE")]
    pub default_image: Option<String>,
    /// Seconds services get to accept connections.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub services_timeout: u64,
    /// gitlab-runner's `config.toml` for glci's runners (default: GLCI_RUNNER_CONFIG, else
    /// `.glci/runner.toml` in the project if it exists).
    #[arg(long, value_name = "PATH")]
    pub runner_config: Option<std::path::PathBuf>,
    /// Give jobs the Docker engine's socket (socket passthrough; see the README's warning).
    #[arg(long)]
    pub docker_socket: bool,
    #[command(flatten)]
    pub registry: crate::args::RegistryArgs,
    /// libtest arguments (after `--`): filters, `--exact`, `--skip`, `--list`, `--ignored`,
    /// `--include-ignored`, `--test-threads`, `--format`, `--nocapture`.
    #[arg(last = true, value_name = "LIBTEST_ARGS")]
    pub libtest: Vec<String>,
}

pub fn run(args: TestArgs) -> ExitCode {
    let mut run = RunOptions {
        keep_failed: args.keep,
        services_timeout: Duration::from_secs(args.services_timeout),
        runner_config: args.runner_config.clone(),
        ..RunOptions::default()
    };
    run.docker_socket |= args.docker_socket;
    if let Some(n) = args.concurrency {
        run.concurrency = n.max(1);
    }
    match args.registry.choice() {
        Ok(Some(registry)) => run.registry = registry,
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(image) = &args.default_image {
        run.default_image = image.clone();
    }
    let opts = match crate::commands::options(&args.event) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let mut harness = Harness::from_options(opts)
        .run_options(run)
        .snapshots(&args.snapshots);
    if let Some(dir) = &args.snapshot_dir {
        harness = harness.snapshot_dir(dir);
    }
    for r in &args.redactions {
        // The replacement may hold `=`, the pattern rarely does: split at the last one.
        let Some((pattern, replacement)) = r.rsplit_once('=') else {
            eprintln!("error: --redact `{r}` is not REGEX=REPLACEMENT");
            return ExitCode::from(2);
        };
        harness = harness.redact(pattern, replacement);
    }
    let libtest =
        Arguments::from_iter(std::iter::once("cargo glci test".to_string()).chain(args.libtest));
    harness.run_with(&libtest)
}
