//! `cargo glci registry list | stats | pull | clean`, on the registry's store in
//! `GLCI_HOME/registry` (the one every run's stand-in serves).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use glci_test::pipeline::home::glci_home;
use glci_test::server::registry_admin as admin;

use crate::args::RegistryCommand;
use crate::runtime::block_on;

fn registry_dir() -> Result<PathBuf> {
    Ok(glci_home()?.join("registry"))
}

pub fn run(command: RegistryCommand) -> Result<ExitCode> {
    match command {
        RegistryCommand::List { project } => {
            for repo in admin::list(&registry_dir()?, project.as_deref()) {
                let from = repo
                    .mirror_of
                    .map(|o| format!("  (cached from {o})"))
                    .unwrap_or_default();
                println!("{}  tags: {}{from}", repo.name, repo.tags.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Stats => {
            let s = admin::stats(&registry_dir()?);
            println!("repositories: {}", s.repositories);
            println!("tags: {}", s.tags);
            println!("blobs: {}", s.blobs);
            println!("bytes: {}", s.bytes);
            println!("dedup ratio: {:.2}", s.dedup_ratio());
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Clean { project, grace } => {
            let r = admin::clean(
                &registry_dir()?,
                project.as_deref(),
                Duration::from_secs(grace),
            )?;
            println!(
                "removed {} manifest(s), {} blob link(s), {} blob(s) ({} bytes)",
                r.manifests, r.links, r.blobs, r.bytes
            );
            if r.temp_files > 0 {
                println!(
                    "removed {} unfinished temporary file(s) of writes that never ended",
                    r.temp_files
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Pull { reference, prefix } => block_on(pull(reference, prefix)),
    }
}

async fn pull(reference: String, prefix: Option<String>) -> Result<ExitCode> {
    let local = admin::pull_into_engine(&registry_dir()?, &reference, prefix.as_deref()).await?;
    println!("{local}");
    Ok(ExitCode::SUCCESS)
}
