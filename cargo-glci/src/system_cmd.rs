//! `cargo glci system df|prune|cache clean|logs info|clean`, `cargo glci history` and
//! `cargo glci logs JOB`: what glci holds (in Docker and in GLCI_HOME), freeing it, and the
//! pipelines it ran. The work is `glci_test::footprint` and `glci_test::pipeline::history`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use glci_test::docker::Engine;
use glci_test::footprint::engine::ImageKind;
use glci_test::footprint::prune::{self, PruneOptions};
use glci_test::footprint::{self, Footprint, LabelFilter, Usage};
use glci_test::pipeline::history;
use glci_test::pipeline::home::glci_home_path;
use glci_test::pipeline::past_runs::utc;
use glci_test::printable::printable;

use crate::runtime::block_on;

/// `cargo glci system`.
#[derive(Debug, Args, Clone)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Debug, Subcommand, Clone)]
pub enum SystemCommand {
    /// Bytes held by glci's containers, networks, volumes and the images it built (the
    /// engine's numbers), and by the cache, registry, pipelines and logs in GLCI_HOME.
    Df {
        /// Only Docker objects also carrying this label (`KEY` or `KEY=VALUE`).
        #[arg(long, value_name = "KEY[=VALUE]")]
        label: Option<String>,
        /// Print the numbers as JSON (bytes).
        #[arg(long)]
        json: bool,
    },
    /// Remove what dead glci runs left (Docker objects, unused relay images), the kept
    /// pipelines of finished runs and old logs; keeps the cache and the registry.
    Prune {
        /// Also the cache, the registry, packages, fetched includes, the fixture images and
        /// glci's objects that belong to no run.
        #[arg(long)]
        all: bool,
        /// Don't ask for confirmation.
        #[arg(long, short = 'f')]
        force: bool,
        /// Only Docker objects also carrying this label (`KEY` or `KEY=VALUE`).
        #[arg(long, value_name = "KEY[=VALUE]")]
        label: Option<String>,
    },
    /// The S3 cache in GLCI_HOME/cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Job logs of kept pipelines and the daemon's logs.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
}

#[derive(Debug, Subcommand, Clone)]
pub enum CacheCommand {
    /// Remove every cache entry (`cache:` of every project).
    Clean,
}

#[derive(Debug, Subcommand, Clone)]
pub enum LogsCommand {
    /// How many logs there are and their size.
    Info,
    /// Remove the logs of finished pipelines and the daemon's old logs.
    Clean,
}

/// `cargo glci history`.
#[derive(Debug, Args, Clone)]
pub struct HistoryArgs {
    /// At most this many pipelines (newest first).
    #[arg(long, short = 'n', value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Print them as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `cargo glci logs`.
#[derive(Debug, Args, Clone)]
pub struct LogsArgs {
    /// The job's name.
    #[arg(value_name = "JOB")]
    pub job: String,
    /// The job of this pipeline (default: the newest pipeline of this repository that ran it).
    #[arg(long, value_name = "N")]
    pub pipeline: Option<u64>,
}

pub fn system(args: &SystemArgs) -> Result<ExitCode> {
    let home = glci_home_path()?;
    match &args.command {
        SystemCommand::Df { label, json } => block_on(df(home, label.clone(), *json)),
        SystemCommand::Prune { all, force, label } => block_on(prune_cmd(
            home,
            PruneOptions {
                all: *all,
                filter: label.as_deref().map(LabelFilter::parse),
            },
            *force,
        )),
        SystemCommand::Cache {
            command: CacheCommand::Clean,
        } => {
            let cleared = glci_test::server::clear_cache(
                &home.join("cache"),
                std::time::Duration::from_secs(3600),
            )?;
            println!(
                "removed {} cache entr{} ({})",
                cleared.objects,
                if cleared.objects == 1 { "y" } else { "ies" },
                human(cleared.bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::Logs {
            command: LogsCommand::Info,
        } => {
            let logs = prune::logs(&home);
            let sum = |files: &[prune::LogFile]| {
                let u = files
                    .iter()
                    .map(|l| l.usage)
                    .fold(Usage::default(), Usage::plus);
                format!("{} file(s), {}", files.len(), sizes(u))
            };
            println!("job logs of finished pipelines: {}", sum(&logs.jobs));
            println!("job logs of running pipelines: {}", sum(&logs.live_jobs));
            println!("daemon logs: {}", sum(&logs.daemon));
            if let Some(current) = &logs.daemon_current {
                println!(
                    "daemon log in use: {} ({})",
                    current.path.display(),
                    sizes(current.usage)
                );
            }
            println!(
                "removable with `cargo glci system logs clean`: {}",
                sizes(logs.removable())
            );
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::Logs {
            command: LogsCommand::Clean,
        } => {
            let logs = prune::logs(&home);
            let (removed, failures) = prune::clean_logs(&logs);
            println!(
                "removed {removed} log file(s) ({}); the logs of running pipelines and the daemon's current log stay",
                sizes(logs.removable())
            );
            report_failures(&failures)
        }
    }
}

/// `1234567` → `1.2 MB` (decimal units, as `docker system df` prints them).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `on disk X, apparent Y`.
fn sizes(u: Usage) -> String {
    format!(
        "{} on disk, {} apparent",
        human(u.allocated),
        human(u.apparent)
    )
}

async fn df(home: PathBuf, label: Option<String>, json: bool) -> Result<ExitCode> {
    let filter = label.as_deref().map(LabelFilter::parse);
    let engine = Engine::connect().await;
    let footprint = footprint::measure(engine.as_ref(), &home, filter.as_ref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&footprint)?);
    } else {
        print!("{}", df_text(&footprint));
    }
    Ok(ExitCode::SUCCESS)
}

fn df_text(f: &Footprint) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let row = |out: &mut String, what: &str, count: String, size: String, note: String| {
        let _ = writeln!(out, "{what:<12} {count:>7}  {size:>10}  {note}");
    };
    let _ = writeln!(
        out,
        "Docker (the engine's numbers, as `docker system df -v`):"
    );
    row(
        &mut out,
        "TYPE",
        "COUNT".into(),
        "SIZE".into(),
        String::new(),
    );
    match (&f.engine, &f.engine_error) {
        (Some(e), _) => {
            let running = e.containers.iter().filter(|c| c.state == "running").count();
            row(
                &mut out,
                "containers",
                e.containers.len().to_string(),
                human(e.container_bytes()),
                format!("{running} running; writable layers"),
            );
            row(
                &mut out,
                "networks",
                e.networks.len().to_string(),
                "-".to_string(),
                String::new(),
            );
            let unknown = e.volumes.iter().filter(|v| v.size.is_none()).count();
            row(
                &mut out,
                "volumes",
                e.volumes.len().to_string(),
                human(e.volume_bytes()),
                if unknown > 0 {
                    format!("{unknown} of unknown size (not a local volume)")
                } else {
                    String::new()
                },
            );
            row(
                &mut out,
                "images",
                e.images.len().to_string(),
                human(e.image_unique_bytes()),
                format!(
                    "{} relay, {} fixture (images you pulled are not counted); SIZE: layers only they hold; {} counting shared layers once per image",
                    e.images_of(ImageKind::Relay),
                    e.images_of(ImageKind::Fixture),
                    human(e.image_bytes())
                ),
            );
        }
        (None, error) => {
            let _ = writeln!(
                out,
                "  not measured: {}",
                error.as_deref().unwrap_or("no engine")
            );
        }
    }
    let _ = writeln!(
        out,
        "\nGLCI_HOME {} (bytes on disk as `du`; apparent sizes as `du --apparent-size`):",
        printable(&f.home.display().to_string())
    );
    let d = &f.disk;
    row(
        &mut out,
        "PART",
        "FILES".into(),
        "ON DISK".into(),
        String::new(),
    );
    for (what, u, note) in [
        ("cache", d.cache, "cache: of every project"),
        ("registry", d.registry, "the container registry's images"),
        ("packages", d.packages, "generic packages"),
        ("includes", d.includes, "fetched include files"),
        (
            "snapshots",
            d.snapshots,
            "working-tree snapshot repositories",
        ),
        (
            "pipelines",
            d.pipelines,
            "kept pipelines: records, artifacts",
        ),
        ("logs", d.logs, "job logs and the daemon's"),
        ("other", d.other, ""),
        ("total", d.total(), ""),
    ] {
        row(
            &mut out,
            what,
            u.files.to_string(),
            human(u.allocated),
            format!(
                "{} apparent{}{note}",
                human(u.apparent),
                if note.is_empty() { "" } else { "; " }
            ),
        );
    }
    if !d.unreadable.is_empty() {
        let _ = writeln!(
            out,
            "not readable (not counted): {}",
            d.unreadable
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

async fn prune_cmd(home: PathBuf, options: PruneOptions, force: bool) -> Result<ExitCode> {
    if !force && !std::io::stdin().is_terminal() {
        bail!("`cargo glci system prune` asks for confirmation, and stdin is not a terminal: pass --force to prune without asking");
    }
    let (engine, engine_error) = match Engine::connect().await {
        Ok(e) => (Some(e), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let plan = prune::plan(engine.as_ref(), engine_error, &home, &options).await?;
    print!("{}", plan_text(&plan, &options));
    if plan.is_empty() {
        println!("nothing to remove");
        return Ok(ExitCode::SUCCESS);
    }
    if !force {
        print!("remove all of this? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing removed");
            return Ok(ExitCode::from(1));
        }
    }
    let report = prune::execute(engine.as_ref(), &home, &plan).await;
    println!(
        "removed {} container(s), {} network(s), {} volume(s), {} image(s), {} pipeline(s), {} log file(s){}{}",
        report.containers,
        report.networks,
        report.volumes,
        report.images,
        report.pipelines,
        report.logs,
        if plan.cache.is_some() {
            format!(", {} cache entries", report.cache_objects)
        } else {
            String::new()
        },
        if report.stores.is_empty() {
            String::new()
        } else {
            format!(", {}", report.stores.join(", "))
        }
    );
    report_failures(&report.failures)
}

fn report_failures(failures: &[String]) -> Result<ExitCode> {
    for f in failures {
        eprintln!("not removed: {}", printable(f));
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn plan_text(plan: &prune::PrunePlan, options: &PruneOptions) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("will remove:\n");
    let mut line = |text: String| {
        let _ = writeln!(out, "  {text}");
    };
    if let Some(e) = &plan.engine_error {
        line(format!("(no Docker objects: {e})"));
    }
    for c in &plan.containers {
        line(format!(
            "container {} ({}, {})",
            c.name,
            c.state,
            human(c.size)
        ));
    }
    for n in &plan.networks {
        line(format!("network {}", n.name));
    }
    for v in &plan.volumes {
        line(format!(
            "volume {} ({})",
            v.name,
            v.size.map_or("size unknown".to_string(), human)
        ));
    }
    for i in &plan.images {
        line(format!(
            "image {} ({:?}, {} unique)",
            i.tags.join(", "),
            i.kind,
            human(i.unique_size())
        ));
    }
    for p in &plan.pipelines {
        line(format!(
            "pipeline #{} ({}: logs, artifacts, record)",
            p.id,
            human(p.usage.allocated)
        ));
    }
    for l in &plan.logs {
        line(format!(
            "log {} ({})",
            l.path.display(),
            human(l.usage.allocated)
        ));
    }
    if let Some(c) = plan.cache {
        line(format!(
            "the cache: {} entries ({})",
            c.files,
            human(c.allocated)
        ));
    }
    for s in &plan.stores {
        line(format!(
            "{} ({})",
            s.path.display(),
            human(s.usage.allocated)
        ));
    }
    let _ = writeln!(
        out,
        "frees: {} in Docker, {} on disk",
        human(plan.docker_bytes()),
        human(plan.disk().allocated)
    );
    let mut kept = Vec::new();
    if plan.kept_live_objects > 0 {
        kept.push(format!(
            "{} Docker object(s) of live runs",
            plan.kept_live_objects
        ));
    }
    if plan.kept_live_pipelines > 0 {
        kept.push(format!("{} running pipeline(s)", plan.kept_live_pipelines));
    }
    if plan.kept_images_in_use > 0 {
        kept.push(format!("{} image(s) in use", plan.kept_images_in_use));
    }
    if plan.kept_stores_for_live_runs {
        kept.push("the registry, packages and includes (a run is live)".to_string());
    }
    if !options.all {
        kept.push(
            "the cache, the registry, packages, includes and fixture images (--all removes them)"
                .to_string(),
        );
    }
    if !kept.is_empty() {
        let _ = writeln!(out, "keeps: {}", kept.join("; "));
    }
    out
}

pub fn history_cmd(args: &HistoryArgs) -> Result<ExitCode> {
    let home = glci_home_path()?;
    let mut entries = history::list(&home);
    entries.truncate(args.limit);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no pipeline is kept in {}", home.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>5}  {:<9} {:<20} {:<20} {:<20} {:>8} {:>4}  PROJECT",
        "ID", "STATUS", "EVENT", "REF", "STARTED", "DURATION", "JOBS"
    );
    for e in &entries {
        let status = if e.died {
            format!("{} (its process died)", e.status)
        } else {
            e.status.clone()
        };
        println!(
            "{:>5}  {:<9} {:<20} {:<20} {:<20} {:>8} {:>4}  {}",
            e.id,
            status,
            e.source.as_deref().unwrap_or("-"),
            printable(e.ref_name.as_deref().unwrap_or("-")),
            e.started_at.map_or("-".to_string(), utc),
            e.duration_secs
                .map_or("-".to_string(), |s| format!("{}m{:02}s", s / 60, s % 60)),
            e.jobs,
            printable(
                &e.project
                    .as_deref()
                    .map_or("-".to_string(), |p| p.display().to_string())
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn logs_cmd(args: &LogsArgs) -> Result<ExitCode> {
    let home = glci_home_path()?;
    // Inside a repository: its pipelines; elsewhere: any.
    let project = glci_test::git::Repo::discover(Path::new("."))
        .ok()
        .map(|r| r.top_level().to_path_buf());
    let (id, path) = history::job_log(&home, &args.job, args.pipeline, project.as_deref())?;
    eprintln!(
        "job `{}` of pipeline #{id}: {}",
        printable(&args.job),
        path.display()
    );
    // The bytes as the job wrote them (masked), streamed.
    let mut file = std::fs::File::open(&path)?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut file, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
