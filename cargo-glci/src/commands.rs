//! One function per subcommand: call the library, print, choose the exit code.

use std::process::ExitCode;

use anyhow::Result;
use glci_test::docker::{self, Engine};
use glci_test::pipeline::{self, render};
use glci_test::printable::{printable, printable_lines};

use crate::args::{Cli, Command, EventArgs};
use crate::exit::{config_failure, options};
use crate::runtime::block_on;

pub fn run(cli: Cli) -> Result<ExitCode> {
    if cli.version {
        return block_on(version(cli.verbose));
    }
    let Some(command) = cli.command else {
        return Ok(ExitCode::from(2));
    };
    match command {
        Command::Plan { event, json } => Ok(plan(&event, json)),
        Command::Run(args) => block_on(crate::run_cmd::run(args)),
        Command::Runner(args) => block_on(crate::run_cmd::runner(args)),
        Command::Test(args) => Ok(crate::test_cmd::run(args)),
        Command::Lint { event } => Ok(lint(&event)),
        Command::Config { show: true, .. } => Ok(crate::settings_cmd::show()),
        Command::Config { event, .. } => Ok(config(&event)),
        Command::Variables(args) => Ok(crate::variables_cmd::run(&args)),
        Command::Artifacts(args) => crate::artifacts_cmd::run(&args),
        Command::Environments => crate::deploy_cmd::environments(),
        Command::ResourceGroup(args) => crate::deploy_cmd::resource_group(&args),
        Command::Doctor => block_on(doctor()),
        Command::Registry { command } => crate::registry_cmd::run(command),
        Command::Clean { all } => block_on(clean(all)),
        Command::System(args) => crate::system_cmd::system(&args),
        Command::History(args) => crate::system_cmd::history_cmd(&args),
        Command::Logs(args) => crate::system_cmd::logs_cmd(&args),
        Command::Daemon(args) => crate::daemon_cmd::run(&args),
    }
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
        let children = pipeline::child::static_children(&opts, &planned);
        print!(
            "{}",
            printable_lines(&pipeline::child::children_text(&children))
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

/// `--version`; with `-v` also the engine's version and API version (or why there is none).
async fn version(verbose: bool) -> Result<ExitCode> {
    println!("cargo-glci {}", env!("CARGO_PKG_VERSION"));
    if verbose {
        match Engine::connect().await {
            Ok(engine) => println!("docker engine: {}", engine_version(&engine).await?),
            Err(e) => println!("docker engine: none ({e})"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ENDPOINT (version X, API Y negotiated, engine's API Z)`.
async fn engine_version(engine: &Engine) -> Result<String> {
    let version = engine.client().version().await?;
    Ok(format!(
        "{} (version {}, API {} negotiated, engine's API {})",
        engine.endpoint(),
        version.version.unwrap_or_default(),
        engine.api_version(),
        version.api_version.unwrap_or_default()
    ))
}

/// What a run will meet: the engine, the address jobs reach glci's server at, whether
/// privileged containers work, the free space in GLCI_HOME, the fixture images.
async fn doctor() -> Result<ExitCode> {
    use glci_test::docker::probe::{self, Privileged};
    use glci_test::docker::{HostAddress, Owner};

    let engine = Engine::connect().await?;
    println!("docker engine: {}", engine_version(&engine).await?);
    match engine.host_address().await {
        HostAddress::Bridge(ip) => println!("bridge address jobs use: {ip}"),
        HostAddress::NotHere { tried } => println!(
            "bridge address jobs use: none on this host; jobs reach glci through a relay container (tried: {})",
            tried.join("; ")
        ),
    }
    let owner = Owner::for_this_process("doctor");
    match probe::privileged(&engine, &owner).await {
        Ok(Privileged::Works) => println!("privileged containers: work"),
        Ok(Privileged::Refused(why)) => println!(
            "privileged containers: refused by this engine, the capability fallback will be used ({})",
            printable(&why)
        ),
        Err(e) => println!("privileged containers: not probed ({e})"),
    }
    let home = pipeline::home::glci_home_path()?;
    match pipeline::home::free_space(&home) {
        Ok(free) => println!(
            "GLCI_HOME: {} ({:.1} GiB free)",
            home.display(),
            free as f64 / (1024.0 * 1024.0 * 1024.0)
        ),
        Err(e) => println!("GLCI_HOME: {} (free space unknown: {e})", home.display()),
    }
    let present = probe::fixture_images(&engine).await?;
    let missing: Vec<&str> = [probe::PROBE_IMAGE, "glci-fixture/debian:bookworm"]
        .into_iter()
        .filter(|i| !present.iter().any(|p| p == i))
        .collect();
    println!(
        "fixture images: {}",
        if present.is_empty() {
            "none".to_string()
        } else {
            present.join(", ")
        }
    );
    if !missing.is_empty() {
        println!(
            "missing fixture images: {} (glci's repository builds them with scripts/fixture-images; \
             jobs naming other images need them pulled)",
            missing.join(", ")
        );
    }
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
