//! One function per subcommand: call the library, print, choose the exit code.

use std::process::ExitCode;

use anyhow::Result;
use glci_test::docker::{self, Engine};

use crate::args::{Cli, Command};

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Doctor => block_on(doctor()),
        Command::Clean { all } => block_on(clean(all)),
    }
}

fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(f: F) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(f)
}

async fn doctor() -> Result<ExitCode> {
    let engine = Engine::connect().await?;
    let version = engine.client().version().await?;
    println!(
        "docker engine: {} (version {}, API {} negotiated)",
        engine.endpoint(),
        version.version.unwrap_or_default(),
        engine.api_version()
    );
    Ok(ExitCode::SUCCESS)
}

async fn clean(all: bool) -> Result<ExitCode> {
    let engine = Engine::connect().await?;
    let report = if all {
        docker::remove_all(&engine).await?
    } else {
        docker::remove_orphans(&engine).await?
    };
    println!(
        "removed {} container(s), {} network(s), {} volume(s)",
        report.containers, report.networks, report.volumes
    );
    Ok(ExitCode::SUCCESS)
}
