//! `cargo glci daemon status|start|stop [--force]|logs [-F] [-n N]`: the daemon that holds
//! one pipeline session per test run (see `glci_test::daemon`).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use glci_test::daemon::{self, Client, DaemonStatus, Paths};
use glci_test::pipeline::past_runs::utc;
use glci_test::printable::printable;

/// `cargo glci daemon`.
#[derive(Debug, Args, Clone)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub command: DaemonCommand,
}

#[derive(Debug, Subcommand, Clone)]
pub enum DaemonCommand {
    /// Whether a daemon runs: its pid, build, socket, and each session with its jobs.
    Status,
    /// Start a daemon of this build (one of another build is stopped first).
    Start,
    /// Stop the daemon once its running jobs are done.
    Stop {
        /// Do not wait: cancel running jobs.
        #[arg(long)]
        force: bool,
    },
    /// Print the daemon's log (GLCI_HOME/daemon/daemon.log).
    Logs {
        /// Keep printing what is appended.
        #[arg(short = 'F', long = "follow")]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long = "lines", value_name = "N")]
        lines: Option<usize>,
    },
}

pub fn run(args: &DaemonArgs) -> Result<ExitCode> {
    let paths = Paths::from_env()?;
    match &args.command {
        DaemonCommand::Status => match Client::connect(&paths)? {
            None => {
                println!(
                    "no daemon runs ({} does not answer)",
                    paths.socket.display()
                );
                Ok(ExitCode::from(1))
            }
            Some(client) => {
                print_status(&client.status()?);
                Ok(ExitCode::SUCCESS)
            }
        },
        DaemonCommand::Start => {
            let client = Client::connect_or_start(&paths)?;
            println!("daemon running: pid {}, build {}", client.pid, client.build);
            Ok(ExitCode::SUCCESS)
        }
        DaemonCommand::Stop { force } => match Client::connect(&paths)? {
            None => {
                println!("no daemon runs");
                Ok(ExitCode::SUCCESS)
            }
            Some(client) => {
                let pid = client.pid;
                if !force {
                    eprintln!("waiting for the running jobs (--force cancels them)");
                }
                client.stop(*force)?;
                println!("daemon stopped (pid {pid})");
                Ok(ExitCode::SUCCESS)
            }
        },
        DaemonCommand::Logs { follow, lines } => {
            let log = paths.log();
            let mut out = std::io::stdout().lock();
            let end = match daemon::log_file::tail(&log, *lines, &mut out) {
                Ok(end) => end,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && *follow => 0,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", log.display())),
            };
            if *follow {
                while !log.exists() {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                daemon::log_file::follow(&log, end, &mut out)
                    .with_context(|| format!("cannot follow {}", log.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(status: &DaemonStatus) {
    println!(
        "daemon running: pid {}, build {}{}",
        status.pid,
        status.build,
        if status.stopping { " (stopping)" } else { "" }
    );
    println!("socket: {}", status.socket.display());
    println!(
        "since {} UTC; exits after {}s idle",
        utc(status.started_at),
        status.idle_timeout_secs
    );
    if status.sessions.is_empty() {
        println!("no sessions");
    }
    for session in &status.sessions {
        println!(
            "session {}: pipeline {} ({}), {} client(s) waiting",
            printable(&session.run),
            session.pipeline_id,
            session.dir.display(),
            session.clients
        );
        for (job, runs) in &session.job_runs {
            let running = if session.running.contains(job) {
                " (running)"
            } else {
                ""
            };
            println!("  {}: {runs} run(s){running}", printable(job));
        }
    }
}
