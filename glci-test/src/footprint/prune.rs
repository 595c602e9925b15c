//! `cargo glci system prune`: what can go, said first ([`plan`]), then removed exactly
//! ([`execute`]).
//!
//! `prune` removes the Docker objects of glci runs whose process is gone (as `cargo glci
//! clean` does), the relay images no container uses (a run builds its image again), the kept
//! pipelines of finished runs (logs, artifacts, records; `last-id` stays, so ids go on) and
//! the daemon's rotated logs. It keeps the cache, the registry, packages and fetched
//! includes. `--all` removes those too (the registry, packages and includes only when no
//! glci run is live: a run serves them), the fixture images no container uses, and glci's
//! objects that name no process (the DinD memo volume).
//!
//! Never removed: anything of a live glci run (by the owner labels, see `docker::labels`; an
//! object made on another host counts as live, its process cannot be seen from here), and
//! anything without glci's labels.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::disk::{is_daemon_log, tree_usage, Usage};
use super::engine::{
    engine_usage, ContainerUse, ImageKind, ImageUse, LabelFilter, NetworkUse, UsageError, VolumeUse,
};
use crate::docker::{self, owner_is_dead, Engine, LABEL_OWNER_PID};
use crate::pipeline::history;

/// A pipeline directory without a record younger than this may be a run starting now (it
/// claims its id a moment before it writes its record): left alone.
const STARTING_GRACE: Duration = Duration::from_secs(60);
/// Temporary cache files younger than this are uploads going on.
const CACHE_TEMP_GRACE: Duration = Duration::from_secs(3600);

/// What `prune` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Also the cache, registry, packages, includes, fixture images and ownerless objects.
    pub all: bool,
    /// Only Docker objects also carrying this label.
    pub filter: Option<LabelFilter>,
}

/// One of `GLCI_HOME`'s parts that `--all` removes whole.
#[derive(Debug, Clone, Serialize)]
pub struct StoreDir {
    /// `registry`, `packages`, `includes`.
    pub name: String,
    pub path: PathBuf,
    pub usage: Usage,
}

/// A kept pipeline directory.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineDir {
    pub id: u64,
    pub path: PathBuf,
    pub usage: Usage,
}

/// A log file.
#[derive(Debug, Clone, Serialize)]
pub struct LogFile {
    pub path: PathBuf,
    pub usage: Usage,
}

/// What a prune removes, and what it leaves because it is in use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    pub containers: Vec<ContainerUse>,
    pub networks: Vec<NetworkUse>,
    pub volumes: Vec<VolumeUse>,
    pub images: Vec<ImageUse>,
    pub pipelines: Vec<PipelineDir>,
    pub logs: Vec<LogFile>,
    /// `--all`: the cache's objects (their usage).
    pub cache: Option<Usage>,
    /// `--all`: the registry, packages, includes.
    pub stores: Vec<StoreDir>,
    /// Why nothing of Docker is in the plan (no engine answered), if so.
    pub engine_error: Option<String>,
    /// Left alone: objects and pipelines of live runs, images in use, and (with `--all`)
    /// the stores while a run is live.
    pub kept_live_objects: usize,
    pub kept_live_pipelines: usize,
    pub kept_images_in_use: usize,
    pub kept_stores_for_live_runs: bool,
}

impl PrunePlan {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.networks.is_empty()
            && self.volumes.is_empty()
            && self.images.is_empty()
            && self.pipelines.is_empty()
            && self.logs.is_empty()
            && self.cache.is_none_or(|c| c.files == 0)
            && self.stores.is_empty()
    }

    /// Bytes the engine frees: containers' writable layers, volumes, images' unique layers.
    pub fn docker_bytes(&self) -> u64 {
        self.containers.iter().map(|c| c.size).sum::<u64>()
            + self.volumes.iter().filter_map(|v| v.size).sum::<u64>()
            + self.images.iter().map(ImageUse::unique_size).sum::<u64>()
    }

    /// What the disk of `GLCI_HOME` frees.
    pub fn disk(&self) -> Usage {
        self.pipelines
            .iter()
            .map(|p| p.usage)
            .chain(self.logs.iter().map(|l| l.usage))
            .chain(self.cache)
            .chain(self.stores.iter().map(|s| s.usage))
            .fold(Usage::default(), Usage::plus)
    }
}

/// Who an object's owner labels name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// A process of this host that is gone.
    Dead,
    /// A live process, or one of another host (that cannot be judged from here).
    Live,
    /// No process at all (the DinD memo volume).
    Ownerless,
}

fn ownership(labels: &std::collections::HashMap<String, String>) -> Ownership {
    if !labels.contains_key(LABEL_OWNER_PID) {
        Ownership::Ownerless
    } else if owner_is_dead(labels) {
        Ownership::Dead
    } else {
        Ownership::Live
    }
}

/// What a prune of `home` (and of `engine`, when one answers) would remove.
pub async fn plan(
    engine: Option<&Engine>,
    engine_error: Option<String>,
    home: &Path,
    options: &PruneOptions,
) -> Result<PrunePlan, UsageError> {
    let mut plan = PrunePlan {
        engine_error,
        ..PrunePlan::default()
    };
    if let Some(engine) = engine {
        let usage = engine_usage(engine, options.filter.as_ref()).await?;
        let removable =
            |o: Ownership| o == Ownership::Dead || (options.all && o == Ownership::Ownerless);
        for c in usage.containers {
            match ownership(&c.labels) {
                o if removable(o) => plan.containers.push(c),
                Ownership::Live => plan.kept_live_objects += 1,
                _ => {}
            }
        }
        for n in usage.networks {
            match ownership(&n.labels) {
                o if removable(o) => plan.networks.push(n),
                Ownership::Live => plan.kept_live_objects += 1,
                _ => {}
            }
        }
        for v in usage.volumes {
            match ownership(&v.labels) {
                o if removable(o) => plan.volumes.push(v),
                Ownership::Live => plan.kept_live_objects += 1,
                _ => {}
            }
        }
        for i in usage.images {
            let wanted = i.kind == ImageKind::Relay || options.all;
            if !wanted {
                continue;
            }
            // A container using it counts, also one of the containers pruned now: the engine
            // refuses to remove an image in use, and the plan says only what will go.
            if i.containers > 0 {
                plan.kept_images_in_use += 1;
            } else {
                plan.images.push(i);
            }
        }
    }

    let mut any_live = false;
    for id in history::pipeline_ids(home) {
        let path = home.join("pipelines").join(id.to_string());
        if history::is_live(&path) || is_starting(&path) {
            plan.kept_live_pipelines += 1;
            any_live = true;
            continue;
        }
        plan.pipelines.push(PipelineDir {
            id,
            usage: tree_usage(&path),
            path,
        });
    }
    plan.logs = daemon_logs(home, daemon_running(home));

    if options.all {
        let cache = cache_objects(&home.join("cache"));
        plan.cache = (cache.files > 0).then_some(cache);
        if any_live {
            plan.kept_stores_for_live_runs = true;
        } else {
            for name in ["registry", "packages", "includes"] {
                let path = home.join(name);
                if path.exists() {
                    plan.stores.push(StoreDir {
                        name: name.to_string(),
                        usage: tree_usage(&path),
                        path,
                    });
                }
            }
        }
    }
    Ok(plan)
}

/// A pipeline directory with no record yet, claimed moments ago.
fn is_starting(dir: &Path) -> bool {
    history::read(dir).is_none()
        && std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age < STARTING_GRACE)
}

/// The cache's objects (`*.obj`), as [`crate::server::clear_cache`] removes them.
fn cache_objects(dir: &Path) -> Usage {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".obj"))
        .map(|e| tree_usage(&e.path()))
        .fold(Usage::default(), Usage::plus)
}

/// Whether a glci daemon answers on `GLCI_HOME/daemon.sock`.
pub fn daemon_running(home: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(home.join("daemon.sock")).is_ok()
}

/// The daemon's logs in `home/daemon/`: the rotated ones, and the current one too when no
/// daemon runs (a running daemon writes it).
pub fn daemon_logs(home: &Path, running: bool) -> Vec<LogFile> {
    let mut logs: Vec<LogFile> = std::fs::read_dir(home.join("daemon"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            is_daemon_log(&name) && !(running && name == "daemon.log")
        })
        .map(|e| LogFile {
            usage: tree_usage(&e.path()),
            path: e.path(),
        })
        .collect();
    logs.sort_by(|a, b| a.path.cmp(&b.path));
    logs
}

/// What a prune removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    pub images: usize,
    pub pipelines: usize,
    pub logs: usize,
    pub cache_objects: u64,
    pub stores: Vec<String>,
    /// What could not be removed, one line each (the rest still goes).
    pub failures: Vec<String>,
}

/// Removes what `plan` lists, and only that.
pub async fn execute(engine: Option<&Engine>, home: &Path, plan: &PrunePlan) -> PruneReport {
    let mut report = PruneReport::default();
    if let Some(engine) = engine {
        // Containers first: they hold networks, volumes and images.
        for c in &plan.containers {
            match docker::remove_container(engine, &c.id).await {
                Ok(_) => report.containers += 1,
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        for n in &plan.networks {
            match docker::remove_network(engine, &n.id).await {
                Ok(_) => report.networks += 1,
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        for v in &plan.volumes {
            match docker::remove_volume(engine, &v.name).await {
                Ok(_) => report.volumes += 1,
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        for i in &plan.images {
            // Not forced: an image a container started using meanwhile stays.
            let removed = engine
                .client()
                .remove_image(
                    &i.id,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
            match removed {
                Ok(_) => report.images += 1,
                Err(e) if docker::is_gone(&e) => report.images += 1,
                Err(e) => report
                    .failures
                    .push(format!("remove image {}: {e}", i.tags.join(", "))),
            }
        }
    }
    for p in &plan.pipelines {
        match remove_tree(&p.path) {
            Ok(()) => report.pipelines += 1,
            Err(e) => report
                .failures
                .push(format!("remove {}: {e}", p.path.display())),
        }
    }
    for l in &plan.logs {
        match remove_file(&l.path) {
            Ok(()) => report.logs += 1,
            Err(e) => report
                .failures
                .push(format!("remove {}: {e}", l.path.display())),
        }
    }
    if plan.cache.is_some() {
        match crate::server::clear_cache(&home.join("cache"), CACHE_TEMP_GRACE) {
            Ok(c) => report.cache_objects = c.objects,
            Err(e) => report.failures.push(format!("clear the cache: {e}")),
        }
    }
    for s in &plan.stores {
        match remove_tree(&s.path) {
            Ok(()) => report.stores.push(s.name.clone()),
            Err(e) => report
                .failures
                .push(format!("remove {}: {e}", s.path.display())),
        }
    }
    report
}

/// Removes a tree; gone already is fine.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The logs `cargo glci system logs` shows and cleans: the jobs' logs of kept pipelines
/// (`job.log`, the server's `traces/*.log`) and the daemon's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Logs {
    /// Logs of finished pipelines.
    pub jobs: Vec<LogFile>,
    /// Logs of pipelines whose run goes on (never cleaned).
    pub live_jobs: Vec<LogFile>,
    pub daemon: Vec<LogFile>,
    /// The daemon's current log, while a daemon writes it (never cleaned).
    pub daemon_current: Option<LogFile>,
}

impl Logs {
    fn total(files: &[LogFile]) -> Usage {
        files
            .iter()
            .map(|l| l.usage)
            .fold(Usage::default(), Usage::plus)
    }

    /// What [`clean_logs`] would remove.
    pub fn removable(&self) -> Usage {
        Logs::total(&self.jobs).plus(Logs::total(&self.daemon))
    }

    /// All logs, also those in use.
    pub fn all(&self) -> Usage {
        self.removable().plus(Logs::total(&self.live_jobs)).plus(
            self.daemon_current
                .as_ref()
                .map_or(Usage::default(), |l| l.usage),
        )
    }
}

/// The logs in `home`.
pub fn logs(home: &Path) -> Logs {
    let running = daemon_running(home);
    let mut logs = Logs {
        daemon: daemon_logs(home, running),
        daemon_current: running
            .then(|| home.join("daemon").join("daemon.log"))
            .filter(|p| p.is_file())
            .map(|path| LogFile {
                usage: tree_usage(&path),
                path,
            }),
        ..Logs::default()
    };
    for id in history::pipeline_ids(home) {
        let dir = home.join("pipelines").join(id.to_string());
        let live = history::is_live(&dir) || is_starting(&dir);
        let mut files: Vec<PathBuf> = Vec::new();
        for job in std::fs::read_dir(dir.join("jobs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let log = job.path().join("job.log");
            if log.is_file() {
                files.push(log);
            }
        }
        for trace in std::fs::read_dir(dir.join("traces"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if trace.file_name().to_string_lossy().ends_with(".log") {
                files.push(trace.path());
            }
        }
        files.sort();
        let into = if live {
            &mut logs.live_jobs
        } else {
            &mut logs.jobs
        };
        into.extend(files.into_iter().map(|path| LogFile {
            usage: tree_usage(&path),
            path,
        }));
    }
    logs
}

/// Removes the logs of finished pipelines and the daemon's logs no daemon writes; returns
/// how many files went and failures.
pub fn clean_logs(logs: &Logs) -> (usize, Vec<String>) {
    let mut removed = 0;
    let mut failures = Vec::new();
    for l in logs.jobs.iter().chain(&logs.daemon) {
        match remove_file(&l.path) {
            Ok(()) => removed += 1,
            Err(e) => failures.push(format!("remove {}: {e}", l.path.display())),
        }
    }
    (removed, failures)
}
