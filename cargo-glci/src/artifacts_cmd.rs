//! `cargo glci artifacts list|inspect|extract`: the artifacts of this project's earlier runs,
//! as glci keeps them in `GLCI_HOME/pipelines/<id>/` (the newest 20 pipelines). No Docker.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use glci_test::pipeline::home;
use glci_test::pipeline::kept_artifacts;
use glci_test::pipeline::past_runs::{self, ArtifactRecord, Expiry, JobRecord, PastPipeline};
use glci_test::printable::{printable, printable_lines};
use glci_test::runner::archive::EntryKind;

/// `cargo glci artifacts`.
#[derive(Debug, Args, Clone)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    pub command: ArtifactsCommand,
}

#[derive(Debug, Subcommand, Clone)]
pub enum ArtifactsCommand {
    /// The kept pipelines of this project (newest first), each job with its artifacts.
    List {
        /// Only this pipeline.
        #[arg(long, value_name = "N")]
        pipeline: Option<u64>,
    },
    /// A job's artifacts: the archive's files with sizes, its expiry as GitLab computes it
    /// from `expire_in`, and the reports.
    Inspect {
        #[arg(value_name = "JOB")]
        job: String,
        /// The job of this pipeline (default: the newest pipeline that ran it).
        #[arg(long, value_name = "N")]
        pipeline: Option<u64>,
    },
    /// Extract a job's artifacts archive (checked as on upload: no `../`, absolute paths or
    /// links out; existing files are never overwritten).
    Extract {
        #[arg(value_name = "JOB")]
        job: String,
        /// Where to (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        to: PathBuf,
        /// The job of this pipeline (default: the newest pipeline that ran it).
        #[arg(long, value_name = "N")]
        pipeline: Option<u64>,
    },
}

pub fn run(args: &ArtifactsArgs) -> Result<ExitCode> {
    let home = home::glci_home_path()?;
    let project = glci_test::git::Repo::discover(std::path::Path::new("."))
        .map_err(|e| anyhow!("{e}"))?
        .top_level()
        .to_path_buf();
    match &args.command {
        ArtifactsCommand::List { pipeline } => {
            let pipelines: Vec<PastPipeline> = match pipeline {
                Some(id) => vec![one_pipeline(&home, &project, *id)?],
                None => past_runs::pipelines_of(&home, &project),
            };
            if pipelines.is_empty() {
                println!(
                    "no finished run of this project is kept in {}",
                    home.display()
                );
            }
            print!("{}", printable_lines(&list(&pipelines)));
        }
        ArtifactsCommand::Inspect { job, pipeline } => {
            let (p, record) = find_job(&home, &project, job, *pipeline)?;
            print!("{}", printable_lines(&inspect(&p, &record)?));
        }
        ArtifactsCommand::Extract { job, to, pipeline } => {
            let (p, record) = find_job(&home, &project, job, *pipeline)?;
            let archive = archive_of(&record).ok_or_else(|| {
                anyhow!(
                    "job `{}` of pipeline #{} has no artifacts archive",
                    printable(job),
                    p.id
                )
            })?;
            let names = kept_artifacts::extract(&p, archive, to)?;
            println!(
                "extracted {} of pipeline #{} into {}: {}",
                printable(job),
                p.id,
                to.display(),
                printable(&names.join(", "))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn one_pipeline(
    home: &std::path::Path,
    project: &std::path::Path,
    id: u64,
) -> Result<PastPipeline> {
    past_runs::pipeline(home, id)
        .filter(|p| p.project() == Some(project))
        .ok_or_else(|| {
            anyhow!(
                "pipeline #{id} of this project is not kept in {}",
                home.display()
            )
        })
}

fn find_job(
    home: &std::path::Path,
    project: &std::path::Path,
    job: &str,
    pipeline: Option<u64>,
) -> Result<(PastPipeline, JobRecord)> {
    match pipeline {
        Some(id) => {
            let p = one_pipeline(home, project, id)?;
            let record = p.job(job).cloned().ok_or_else(|| {
                anyhow!("job `{}` did not finish in pipeline #{id}", printable(job))
            })?;
            Ok((p, record))
        }
        None => past_runs::last_job(home, project, job).ok_or_else(|| {
            anyhow!(
                "no finished run of job `{}` of this project is kept in {}",
                printable(job),
                home.display()
            )
        }),
    }
}

fn archive_of(record: &JobRecord) -> Option<&ArtifactRecord> {
    record
        .artifacts
        .iter()
        .find(|a| a.artifact_type == "archive")
}

/// `1.5 KiB`, `312 B`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `expires 2027-01-02T10:00:00Z (expire_in: 30 days, the default)`.
fn expiry(artifact: &ArtifactRecord, finished_at: u64) -> String {
    let why = match &artifact.expire_in {
        Some(e) => format!("expire_in: {e}"),
        None => format!(
            "expire_in: {}, GitLab's default",
            past_runs::DEFAULT_EXPIRE_IN
        ),
    };
    match artifact.expiry(finished_at) {
        Expiry::Never => format!("never expires ({why})"),
        Expiry::At(at) if at <= past_runs::now_secs() => {
            format!("expired {} ({why})", past_runs::utc(at))
        }
        Expiry::At(at) => format!("expires {} ({why})", past_runs::utc(at)),
    }
}

fn list(pipelines: &[PastPipeline]) -> String {
    let mut out = String::new();
    for p in pipelines {
        let _ = writeln!(
            out,
            "pipeline #{} (finished {})",
            p.id,
            past_runs::utc(p.finished_at())
        );
        let width = p
            .jobs
            .iter()
            .map(|j| j.name.chars().count())
            .max()
            .unwrap_or(0);
        for j in &p.jobs {
            let artifacts: Vec<String> = j
                .artifacts
                .iter()
                .map(|a| format!("{} {}", a.artifact_type, size(a.size)))
                .collect();
            let artifacts = if artifacts.is_empty() {
                "no artifacts".to_string()
            } else {
                artifacts.join(", ")
            };
            let _ = writeln!(
                out,
                "  {:<width$}  {:<8}  {artifacts}",
                printable(&j.name),
                j.status
            );
        }
    }
    out
}

fn inspect(p: &PastPipeline, job: &JobRecord) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "job {} of pipeline #{}: {}, finished {}",
        job.name,
        p.id,
        job.status,
        past_runs::utc(job.finished_at)
    );
    match archive_of(job) {
        None => {
            let _ = writeln!(out, "no artifacts archive");
        }
        Some(archive) => {
            let _ = writeln!(
                out,
                "archive {} ({}), {}",
                archive.filename,
                size(archive.size),
                expiry(archive, job.finished_at)
            );
            let entries = kept_artifacts::entries(p, archive)?;
            let width = entries
                .iter()
                .map(|e| e.rel.chars().count())
                .max()
                .unwrap_or(0);
            for e in &entries {
                let what = match &e.kind {
                    EntryKind::Dir => "directory".to_string(),
                    EntryKind::File { size: s } => size(*s),
                    EntryKind::Symlink { target } => format!("→ {target}"),
                };
                let _ = writeln!(out, "  {:<width$}  {what}", e.rel);
            }
            let extracted = p
                .dir
                .join("jobs")
                .join(file_name(&job.name))
                .join("artifacts");
            if extracted.is_dir() {
                let _ = writeln!(out, "extracted at {}", extracted.display());
            }
        }
    }
    let reports: Vec<&ArtifactRecord> = job
        .artifacts
        .iter()
        .filter(|a| a.artifact_type != "archive")
        .collect();
    if !reports.is_empty() {
        let _ = writeln!(out, "reports:");
        for r in reports {
            let _ = writeln!(
                out,
                "  {}  {} ({}, {}), {}",
                r.artifact_type,
                r.filename,
                r.format,
                size(r.size),
                expiry(r, job.finished_at)
            );
        }
    }
    if !job.dotenv.is_empty() {
        let _ = writeln!(out, "dotenv variables:");
        for (k, v) in &job.dotenv {
            let _ = writeln!(out, "  {k}={}", printable(v));
        }
    }
    Ok(out)
}

fn file_name(job: &str) -> String {
    glci_test::pipeline::results::file_name(job)
}
