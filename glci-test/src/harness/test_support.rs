//! Throw-away git repositories for the harness's unit tests (planning needs a repository).

use std::path::Path;
use std::process::Command;

use crate::pipeline::{self, PipelineOptions};
use crate::plan::Plan;

/// A repository on `main` holding `.gitlab-ci.yml` = `yaml`, committed.
pub fn temp_repo(yaml: &str) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    std::fs::write(dir.path().join(".gitlab-ci.yml"), yaml).map_err(|e| e.to_string())?;
    git(dir.path(), &["init", "-q", "-b", "main"])?;
    git(dir.path(), &["add", "-A"])?;
    git(dir.path(), &["commit", "-q", "-m", "ci"])?;
    git(
        dir.path(),
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/glci/demo.git",
        ],
    )?;
    Ok(dir)
}

fn git(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The plan of `yaml` for a push to `main`.
pub fn plan_yaml(yaml: &str) -> Result<Plan, String> {
    let dir = temp_repo(yaml)?;
    let planned = pipeline::plan(&PipelineOptions::new(dir.path())).map_err(|e| e.to_string())?;
    Ok(planned.plan)
}
