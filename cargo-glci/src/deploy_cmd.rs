//! `cargo glci environments` (this project's environments and their last deployment, as the
//! runs left them in `GLCI_HOME/environments/`) and `cargo glci resource-group` (a group's
//! process mode, GitLab's resource group setting). No Docker.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::Args;
use glci_test::pipeline::environments::{self, Environment};
use glci_test::pipeline::past_runs;
use glci_test::pipeline::resource_group::{self, ProcessMode};
use glci_test::printable::printable_lines;

/// `cargo glci resource-group`.
#[derive(Debug, Args, Clone)]
pub struct ResourceGroupArgs {
    /// The group's key, as `resource_group:` names it (variables expanded).
    #[arg(value_name = "GROUP")]
    pub group: String,
    /// Set how waiting jobs get the resource: `unordered` (GitLab's default),
    /// `oldest_first` or `newest_first`; without it, print the current mode.
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub process_mode: Option<ProcessMode>,
}

fn parse_mode(s: &str) -> Result<ProcessMode, String> {
    ProcessMode::parse(s).ok_or_else(|| {
        format!("unknown process mode {s:?}: use unordered, oldest_first or newest_first")
    })
}

/// `group/project` of the repository around the current directory, as jobs see it in
/// `CI_PROJECT_PATH`.
fn project_path() -> Result<String> {
    let repo = glci_test::git::Repo::discover(Path::new(".")).map_err(|e| anyhow!("{e}"))?;
    Ok(repo.facts().map_err(|e| anyhow!("{e}"))?.project.path())
}

pub fn environments() -> Result<ExitCode> {
    let home = glci_test::pipeline::home::glci_home_path()?;
    let project = project_path()?;
    let envs = environments::load(&home, &project)?;
    if envs.is_empty() {
        println!("no environment of {project} in {}", home.display());
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", printable_lines(&table(&envs, past_runs::now_secs())));
    Ok(ExitCode::SUCCESS)
}

fn table(envs: &[Environment], now: u64) -> String {
    let name_w = envs
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(11);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_w$}  {:<11}  {:<9}  LAST DEPLOYMENT",
        "ENVIRONMENT", "TIER", "STATE"
    );
    for env in envs {
        let last = match &env.last_deployment {
            Some(d) => format!(
                "{} of pipeline #{} (job #{}, {} on {} {}), {}",
                d.job,
                d.pipeline_id,
                d.job_id,
                d.status,
                d.ref_name,
                d.sha.get(..8).unwrap_or(&d.sha),
                past_runs::utc(d.finished_at)
            ),
            None => "none".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<11}  {:<9}  {last}",
            env.name, env.tier, env.state
        );
        if let Some(url) = &env.url {
            let _ = writeln!(out, "{:<name_w$}  url: {url}", "");
        }
        if env.state == "available" {
            if let Some(stop) = &env.on_stop {
                let _ = writeln!(out, "{:<name_w$}  stop with: cargo glci run {stop}", "");
            }
            if let Some(at) = env.auto_stop_at {
                let when = if at <= now { "was due" } else { "due" };
                let _ = writeln!(
                    out,
                    "{:<name_w$}  auto stop {when} at {}",
                    "",
                    past_runs::utc(at)
                );
            }
        }
    }
    out
}

pub fn resource_group(args: &ResourceGroupArgs) -> Result<ExitCode> {
    let home = glci_test::pipeline::home::glci_home_path()?;
    let dir = resource_group::project_dir(&home, &project_path()?);
    if let Some(mode) = args.process_mode {
        resource_group::set_process_mode(&dir, &args.group, mode)?;
    }
    println!(
        "{}: process mode {}",
        args.group,
        resource_group::process_mode(&dir, &args.group).as_str()
    );
    Ok(ExitCode::SUCCESS)
}
