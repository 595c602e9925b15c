//! Environments and deployments, as GitLab keeps them per project (`Environment`,
//! `Deployment`), for `cargo glci environments` and the run's summary.
//!
//! Each project has one file, `GLCI_HOME/environments/<project>.json`, rewritten atomically
//! (temp file, fsync, rename) under an OS file lock (`<project>.lock`), so concurrent runs of
//! the project do not lose each other's deployments. What a finished job does to its
//! environment follows GitLab (`environment:action`):
//!
//! - `start` (the default) creates a deployment with the job's status; a successful one makes
//!   the environment `available`, sets its URL and, with `auto_stop_in`, when it stops;
//! - `prepare`, `verify` and `access` create the environment but no deployment;
//! - `stop` (the `on_stop` job, usually `when: manual`) stops it when the job succeeds.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::duration::parse_duration;

/// The environments of a project could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not an environments file glci wrote: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What one finished job did to its environment (shown in the run's summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentChange {
    pub job: String,
    pub job_id: u64,
    pub pipeline_id: u64,
    pub environment: String,
    pub slug: String,
    pub tier: String,
    /// `start`, `prepare`, `stop`, `verify` or `access`.
    pub action: String,
    pub url: Option<String>,
    pub on_stop: Option<String>,
    pub auto_stop_in: Option<String>,
    /// The job's status (`success`, `failed`, `canceled`): the deployment's.
    pub status: String,
    pub ref_name: String,
    pub sha: String,
}

impl EnvironmentChange {
    /// One line for the summary: `deployed to production (success) https://…`.
    pub fn describe(&self) -> String {
        let ok = self.status == "success";
        let mut line = match (self.action.as_str(), ok) {
            ("start", true) => format!("deployed to {}", self.environment),
            ("start", false) => format!("deployment to {} {}", self.environment, self.status),
            ("stop", true) => format!("stopped {}", self.environment),
            ("stop", false) => format!("did not stop {} ({})", self.environment, self.status),
            (action, _) => format!("{action} {} (no deployment)", self.environment),
        };
        if ok && self.action == "start" {
            if let Some(url) = &self.url {
                line.push_str(&format!(" at {url}"));
            }
            if let Some(stop) = &self.on_stop {
                line.push_str(&format!("; stop it with `cargo glci run {stop}`"));
            }
        }
        line
    }
}

/// A deployment: one `start` job of an environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployment {
    pub pipeline_id: u64,
    pub job: String,
    pub job_id: u64,
    pub status: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
    /// Seconds since the Unix epoch.
    pub finished_at: u64,
}

/// One environment of the project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub slug: String,
    pub tier: String,
    /// `available` or `stopped`.
    pub state: String,
    pub url: Option<String>,
    /// The job that stops it, from its last successful deployment.
    pub on_stop: Option<String>,
    /// When `auto_stop_in` stops it (seconds since the epoch).
    pub auto_stop_at: Option<u64>,
    pub last_deployment: Option<Deployment>,
    #[serde(default)]
    pub deployments: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    environments: Vec<Environment>,
}

/// `environments/<project>.json` of the data directory for the project `group/project`.
pub fn store_path(home: &Path, project_path: &str) -> PathBuf {
    let key = super::home::project_key(project_path);
    home.join("environments").join(format!("{key}.json"))
}

/// The project's environments, by name (none when nothing was deployed yet).
pub fn load(home: &Path, project_path: &str) -> Result<Vec<Environment>, EnvironmentError> {
    read(&store_path(home, project_path)).map(|s| s.environments)
}

fn read(path: &Path) -> Result<StoreFile, EnvironmentError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| EnvironmentError::Json {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StoreFile::default()),
        Err(source) => Err(EnvironmentError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Applies what `change` did to the project's environments (`now`: seconds since the epoch).
pub fn record(
    home: &Path,
    project_path: &str,
    change: &EnvironmentChange,
    now: u64,
) -> Result<(), EnvironmentError> {
    let path = store_path(home, project_path);
    let dir = path.parent().unwrap_or(home).to_path_buf();
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EnvironmentError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let lock_path = path.with_extension("lock");
    let lock: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    // Held until `lock` is dropped (or the process dies).
    lock.lock().map_err(io_err(&lock_path))?;
    let mut store = read(&path)?;
    apply(&mut store.environments, change, now);
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&dir)
        .map_err(io_err(&dir))?;
    serde_json::to_writer_pretty(temp.as_file_mut(), &store).map_err(|source| {
        EnvironmentError::Json {
            path: path.clone(),
            source,
        }
    })?;
    temp.as_file().sync_all().map_err(io_err(&path))?;
    temp.persist(&path).map_err(|e| io_err(&path)(e.error))?;
    drop(lock);
    Ok(())
}

fn apply(environments: &mut Vec<Environment>, change: &EnvironmentChange, now: u64) {
    let index = match environments
        .iter()
        .position(|e| e.name == change.environment)
    {
        Some(i) => i,
        None => {
            environments.push(Environment {
                name: change.environment.clone(),
                slug: change.slug.clone(),
                tier: change.tier.clone(),
                state: "available".to_string(),
                url: None,
                on_stop: None,
                auto_stop_at: None,
                last_deployment: None,
                deployments: 0,
            });
            environments.len() - 1
        }
    };
    let env = &mut environments[index];
    let ok = change.status == "success";
    env.tier = change.tier.clone();
    match change.action.as_str() {
        "start" => {
            env.deployments += 1;
            env.last_deployment = Some(Deployment {
                pipeline_id: change.pipeline_id,
                job: change.job.clone(),
                job_id: change.job_id,
                status: change.status.clone(),
                ref_name: change.ref_name.clone(),
                sha: change.sha.clone(),
                finished_at: now,
            });
            if ok {
                env.state = "available".to_string();
                if change.url.is_some() {
                    env.url = change.url.clone();
                }
                env.on_stop = change.on_stop.clone();
                // `auto_stop_in: never` (or none) keeps it; a duration restarts the clock.
                env.auto_stop_at = change
                    .auto_stop_in
                    .as_deref()
                    .filter(|a| a.trim() != "never")
                    .and_then(parse_duration)
                    .map(|d| now + d.as_secs());
            }
        }
        "stop" if ok => {
            env.state = "stopped".to_string();
            env.auto_stop_at = None;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(job: &str, action: &str, status: &str) -> EnvironmentChange {
        EnvironmentChange {
            job: job.to_string(),
            job_id: 7,
            pipeline_id: 3,
            environment: "review/feature".to_string(),
            slug: "review-feature-abc123".to_string(),
            tier: "development".to_string(),
            action: action.to_string(),
            url: Some("https://feature.example.com".to_string()),
            on_stop: Some("stop_review".to_string()),
            auto_stop_in: Some("1 day".to_string()),
            status: status.to_string(),
            ref_name: "feature".to_string(),
            sha: "abc".to_string(),
        }
    }

    #[test]
    fn deploy_then_stop() {
        let home = tempfile::tempdir().unwrap();
        let project = "acme/shop";
        assert!(load(home.path(), project).unwrap().is_empty());
        record(
            home.path(),
            project,
            &change("review", "prepare", "success"),
            5,
        )
        .unwrap();
        let envs = load(home.path(), project).unwrap();
        assert_eq!(envs[0].deployments, 0, "prepare deploys nothing");
        record(
            home.path(),
            project,
            &change("review", "start", "success"),
            10,
        )
        .unwrap();
        let env = &load(home.path(), project).unwrap()[0];
        assert_eq!(env.state, "available");
        assert_eq!(env.url.as_deref(), Some("https://feature.example.com"));
        assert_eq!(env.on_stop.as_deref(), Some("stop_review"));
        assert_eq!(env.auto_stop_at, Some(10 + 86_400));
        assert_eq!(env.last_deployment.as_ref().unwrap().job, "review");
        // A failed stop job leaves it running; a successful one stops it.
        record(
            home.path(),
            project,
            &change("stop_review", "stop", "failed"),
            20,
        )
        .unwrap();
        assert_eq!(load(home.path(), project).unwrap()[0].state, "available");
        record(
            home.path(),
            project,
            &change("stop_review", "stop", "success"),
            30,
        )
        .unwrap();
        let env = &load(home.path(), project).unwrap()[0];
        assert_eq!(env.state, "stopped");
        assert_eq!(env.deployments, 1);
        assert_eq!(env.last_deployment.as_ref().unwrap().finished_at, 10);
    }

    #[test]
    fn a_failed_deployment_is_recorded_but_keeps_the_url() {
        let home = tempfile::tempdir().unwrap();
        record(home.path(), "a/b", &change("review", "start", "success"), 1).unwrap();
        let mut failed = change("review", "start", "failed");
        failed.url = Some("https://other".to_string());
        record(home.path(), "a/b", &failed, 2).unwrap();
        let env = &load(home.path(), "a/b").unwrap()[0];
        assert_eq!(env.deployments, 2);
        assert_eq!(env.last_deployment.as_ref().unwrap().status, "failed");
        assert_eq!(env.url.as_deref(), Some("https://feature.example.com"));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let home = tempfile::tempdir().unwrap();
        let path = store_path(home.path(), "a/b");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{").unwrap();
        let err = load(home.path(), "a/b").unwrap_err().to_string();
        assert!(err.contains("a+b.json"), "{err}");
    }

    #[test]
    fn summary_lines() {
        let c = change("review", "start", "success");
        assert_eq!(
            c.describe(),
            "deployed to review/feature at https://feature.example.com; stop it with `cargo glci run stop_review`"
        );
        assert_eq!(
            change("stop_review", "stop", "success").describe(),
            "stopped review/feature"
        );
    }
}
