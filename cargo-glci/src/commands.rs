//! One function per subcommand: call the library, print, choose the exit code.

use std::process::ExitCode;

use anyhow::Result;
use glci_test::docker::{self, Engine};
use glci_test::pipeline::{self, render};
use glci_test::printable::{printable, printable_lines};

use crate::args::{Cli, Command, EventArgs};
use crate::exit::{config_failure, options};

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Plan { event, json } => Ok(plan(&event, json)),
        Command::Run(args) => block_on(crate::run_cmd::run(args)),
        Command::Runner(args) => block_on(crate::run_cmd::runner(args)),
        Command::Test(args) => Ok(crate::test_cmd::run(args)),
        Command::Lint { event } => Ok(lint(&event)),
        Command::Config { event } => Ok(config(&event)),
        Command::Doctor => block_on(doctor()),
        Command::Clean { all } => block_on(clean(all)),
    }
}

pub fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(f: F) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(f)
}

fn plan(event: &EventArgs, as_json: bool) -> ExitCode {
    let opts = match options(event) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let planned = match pipeline::plan(&opts) {
        Ok(p) => p,
        Err(e) => return config_failure(&e, as_json),
    };
    if as_json {
        println!("{}", render::plan_json(&planned));
    } else {
        print!(
            "{}",
            printable_lines(&render::plan_text(&planned, &event.to_event()))
        );
    }
    ExitCode::SUCCESS
}

fn lint(event: &EventArgs) -> ExitCode {
    let opts = match options(event) {
        Ok(o) => o,
        Err(code) => return code,
    };
    match pipeline::load(&opts) {
        Ok(loaded) => {
            println!(
                "{}: valid",
                loaded
                    .files
                    .first()
                    .map(String::as_str)
                    .unwrap_or(".gitlab-ci.yml")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in e.messages() {
                println!("{}", printable(&line));
            }
            ExitCode::from(1)
        }
    }
}

fn config(event: &EventArgs) -> ExitCode {
    let opts = match options(event) {
        Ok(o) => o,
        Err(code) => return code,
    };
    match pipeline::load(&opts) {
        Ok(loaded) => {
            print!("{}", glci_test::config::to_yaml(&loaded.tree));
            ExitCode::SUCCESS
        }
        Err(e) => config_failure(&e, false),
    }
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
    // The checkouts and builds directories of runs that died (a job may have left a
    // setuid program there); those of runs still going stay.
    let staging = pipeline::staging::remove_dead(&pipeline::home::glci_home()?)?;
    println!(
        "removed {} container(s), {} network(s), {} volume(s), {staging} staging director{}",
        report.containers,
        report.networks,
        report.volumes,
        if staging == 1 { "y" } else { "ies" }
    );
    Ok(ExitCode::SUCCESS)
}
