//! `cargo glci test`: the repository's pipeline as Rust tests, with no code written by the
//! user — the same harness `glci_test::main!()` builds, driven by the event flags, with the
//! arguments after `--` handed to libtest (`--list`, filters, `--exact`, `--ignored`...).

use std::process::ExitCode;
use std::time::Duration;

use glci_test::harness::Arguments;
use glci_test::harness::Harness;
use glci_test::pipeline::RunOptions;

use crate::args::TestArgs;
use crate::exit;

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
    match args.registry.push_through() {
        Ok(Some(mirror)) => run.push_through = Some(mirror),
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
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
    let opts = match exit::options(&args.event) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let mut harness = Harness::from_options(opts)
        .run_options(run)
        .snapshots(&args.snapshots)
        .report_tests(args.report_tests);
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
