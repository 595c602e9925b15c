//! `cargo glci registry list | stats | clean`: reading and collecting the store's directory
//! (the layout `store.rs` describes) without a server, while servers may be using it.
//!
//! `clean` is a mark-and-sweep garbage collection that is safe while a run is going:
//! - per repository (all, or those of `--project`): manifests reachable from a tag (an
//!   index's entries and referrers of kept manifests included) are kept, other revisions are
//!   dropped; blob links no kept manifest names are dropped;
//! - then every blob no repository links is deleted;
//! - then `.tmp-*` files (writes of processes that died before their rename) are deleted;
//! - nothing younger than the grace period is touched (a push in progress uploads its blobs
//!   and links them before its manifest arrives; a cache fetch stores before it tags; a
//!   write in progress is recent), nor upload sessions, which belong to running servers;
//! - `registry/gc.lock` (an exclusive `flock`) keeps two collections from running at once.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::manifest;
use super::names::Digest;

/// How young a file must be to be left alone by [`clean`] (default of the CLI).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum RegistryAdminError {
    #[error("`{0}` is not NAME[:TAG]")]
    BadReference(String),
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error("pulling {image} from glci's registry: {source}")]
    Pull {
        image: String,
        source: bollard::errors::Error,
    },
    #[error("registry directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("another `cargo glci registry clean` holds {0}; try again when it is done")]
    Locked(PathBuf),
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> RegistryAdminError + '_ {
    move |source| RegistryAdminError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One repository of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub name: String,
    pub tags: Vec<String>,
    /// Where the pull-through cache got it from; `None` for a project's repository.
    pub mirror_of: Option<String>,
}

/// Totals of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryStats {
    pub repositories: usize,
    pub tags: usize,
    /// Distinct blobs (layers, configs and manifests) on disk.
    pub blobs: usize,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes the repositories hold, counting a blob once per repository that links it.
    pub linked_bytes: u64,
}

impl RegistryStats {
    /// `linked_bytes / bytes`: how many times each stored byte is used (1 without sharing).
    pub fn dedup_ratio(&self) -> f64 {
        if self.bytes == 0 {
            1.0
        } else {
            self.linked_bytes as f64 / self.bytes as f64
        }
    }
}

/// What [`clean`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub manifests: usize,
    pub links: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// `.tmp-*` files older than the grace period: writes of processes that died before
    /// their rename (a write in progress is younger).
    pub temp_files: usize,
}

/// Sorted entry names of `dir` (none when missing), temp files left out.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with(".tmp-"))
        .collect();
    out.sort();
    out
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    super::store::blob_path_in(&root.join("blobs/sha256"), digest)
}

fn hex_digest(hex: &str) -> Option<Digest> {
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Every repository below `root/repositories`: a directory with `_`-entries.
fn repositories(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(root.join("repositories"), String::new())];
    while let Some((dir, name)) = stack.pop() {
        let mut is_repo = false;
        for child in names(&dir) {
            if child.starts_with('_') {
                is_repo = true;
            } else if dir.join(&child).is_dir() {
                let full = if name.is_empty() {
                    child.clone()
                } else {
                    format!("{name}/{child}")
                };
                stack.push((dir.join(&child), full));
            }
        }
        if is_repo && !name.is_empty() {
            out.push(name);
        }
    }
    out.sort();
    out
}

fn in_project(name: &str, project: Option<&str>) -> bool {
    match project {
        None => true,
        Some(p) => {
            let p = p.to_lowercase();
            name == p || name.strip_prefix(&p).is_some_and(|r| r.starts_with('/'))
        }
    }
}

/// The repositories (of `project` and below, lower-cased as `CI_REGISTRY_IMAGE`) with tags.
pub fn list(root: &Path, project: Option<&str>) -> Vec<RepositoryInfo> {
    repositories(root)
        .into_iter()
        .filter(|n| in_project(n, project))
        .map(|name| {
            let repo = root.join("repositories").join(&name);
            RepositoryInfo {
                tags: names(&repo.join("_manifests/tags")),
                mirror_of: fs::read_to_string(repo.join("_mirror")).ok(),
                name,
            }
        })
        .collect()
}

/// Digests linked from `repo/<sub>` (`_layers/sha256`, `_manifests/revisions/sha256`).
fn linked(repo: &Path, sub: &str) -> Vec<Digest> {
    names(&repo.join(sub))
        .iter()
        .filter_map(|h| hex_digest(h))
        .collect()
}

pub fn stats(root: &Path) -> RegistryStats {
    let mut s = RegistryStats::default();
    for name in repositories(root) {
        let repo = root.join("repositories").join(&name);
        s.repositories += 1;
        s.tags += names(&repo.join("_manifests/tags")).len();
        for d in linked(&repo, "_layers/sha256")
            .into_iter()
            .chain(linked(&repo, "_manifests/revisions/sha256"))
        {
            s.linked_bytes += fs::metadata(blob_path(root, &d)).map_or(0, |m| m.len());
        }
    }
    for (_, size) in all_blobs(root) {
        s.blobs += 1;
        s.bytes += size;
    }
    s
}

/// Every blob on disk with its size.
fn all_blobs(root: &Path) -> Vec<(Digest, u64)> {
    let base = root.join("blobs/sha256");
    let mut out = Vec::new();
    for fan in names(&base) {
        if !base.join(&fan).is_dir() {
            continue;
        }
        for hex in names(&base.join(&fan)) {
            if let Some(d) = hex_digest(&hex) {
                let size = fs::metadata(base.join(&fan).join(&hex)).map_or(0, |m| m.len());
                out.push((d, size));
            }
        }
    }
    out
}

fn older_than(path: &Path, cutoff: SystemTime) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t < cutoff)
}

/// Holds `registry/gc.lock` while alive.
struct GcLock(#[allow(dead_code)] fs::File);

fn lock(root: &Path) -> Result<GcLock, RegistryAdminError> {
    let path = root.join("gc.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_at(&path))?;
    // An advisory lock (flock), released when the file closes, also if the process dies.
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(RegistryAdminError::Locked(path)),
        Err(fs::TryLockError::Error(e)) => return Err(io_at(&path)(e)),
    }
    Ok(GcLock(file))
}

/// Mark and sweep (see the module's documentation). `project` limits the first phase to
/// its repositories; the blob sweep always considers every repository's links.
pub fn clean(
    root: &Path,
    project: Option<&str>,
    grace: Duration,
) -> Result<CleanReport, RegistryAdminError> {
    if !root.join("blobs").is_dir() {
        return Ok(CleanReport::default());
    }
    let _lock = lock(root)?;
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = CleanReport::default();
    for name in repositories(root) {
        if in_project(&name, project) {
            sweep_repository(root, &name, cutoff, &mut report)?;
        }
    }
    // Every blob some repository links, after the repositories were swept.
    let mut referenced = HashSet::new();
    for name in repositories(root) {
        let repo = root.join("repositories").join(&name);
        referenced.extend(linked(&repo, "_layers/sha256"));
        referenced.extend(linked(&repo, "_manifests/revisions/sha256"));
    }
    for (digest, size) in all_blobs(root) {
        let path = blob_path(root, &digest);
        if !referenced.contains(&digest) && older_than(&path, cutoff) {
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.blobs += 1;
                    report.bytes += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
    }
    report.temp_files = sweep_temp_files(root, cutoff)?;
    Ok(report)
}

/// Removes the `.tmp-*` files below `dir` last changed before `cutoff`; how many.
fn sweep_temp_files(dir: &Path, cutoff: SystemTime) -> Result<usize, RegistryAdminError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            removed += sweep_temp_files(&path, cutoff)?;
        } else if entry.file_name().to_string_lossy().starts_with(".tmp-")
            && older_than(&path, cutoff)
            && remove(&path)?
        {
            removed += 1;
        }
    }
    Ok(removed)
}

fn remove(path: &Path) -> Result<bool, RegistryAdminError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(path)(e)),
    }
}

fn sweep_repository(
    root: &Path,
    name: &str,
    cutoff: SystemTime,
    report: &mut CleanReport,
) -> Result<(), RegistryAdminError> {
    let repo = root.join("repositories").join(name);
    let revisions_dir = repo.join("_manifests/revisions/sha256");
    let revisions = linked(&repo, "_manifests/revisions/sha256");
    let parse = |d: &Digest| {
        fs::read(blob_path(root, d))
            .ok()
            .and_then(|data| manifest::parse(&data, None).ok())
    };
    // Mark: tagged manifests, young ones, what an index lists, referrers of kept subjects.
    let mut kept: HashSet<Digest> = names(&repo.join("_manifests/tags"))
        .iter()
        .filter_map(|t| fs::read_to_string(repo.join("_manifests/tags").join(t)).ok())
        .filter_map(|d| Digest::parse(d.trim()).ok())
        .collect();
    kept.extend(
        revisions
            .iter()
            .filter(|d| !older_than(&revisions_dir.join(d.hex()), cutoff))
            .cloned(),
    );
    let mut blobs: HashSet<Digest> = HashSet::new();
    loop {
        let before = kept.len();
        for d in &revisions {
            let Some(m) = parse(d) else { continue };
            if kept.contains(d) {
                kept.extend(m.manifests.iter().cloned());
            } else if m.subject.as_ref().is_some_and(|s| kept.contains(s)) {
                kept.insert(d.clone());
            }
        }
        if kept.len() == before {
            break;
        }
    }
    // Sweep revisions.
    for d in &revisions {
        if kept.contains(d) {
            if let Some(m) = parse(d) {
                blobs.extend(m.blobs);
            }
        } else if remove(&revisions_dir.join(d.hex()))? {
            report.manifests += 1;
            if let Some(subject) = parse(d).and_then(|m| m.subject) {
                remove(
                    &repo
                        .join("_referrers/sha256")
                        .join(subject.hex())
                        .join(d.hex()),
                )?;
            }
        }
    }
    // Sweep blob links.
    let layers_dir = repo.join("_layers/sha256");
    for d in linked(&repo, "_layers/sha256") {
        let path = layers_dir.join(d.hex());
        if !blobs.contains(&d) && older_than(&path, cutoff) && remove(&path)? {
            report.links += 1;
        }
    }
    Ok(())
}

/// `cargo glci registry pull`: serves the store at `root` on loopback for as long as the
/// local engine pulls `reference` (`NAME[:TAG]`) from it with the host's credential (through
/// the cache, like a job's pull), then tags the image `[PREFIX/]NAME:TAG` and drops the
/// loopback name, which dies with the port. Returns the engine's name of the image.
pub async fn pull_into_engine(
    root: &Path,
    reference: &str,
    prefix: Option<&str>,
) -> Result<String, RegistryAdminError> {
    use futures_util::StreamExt as _;
    let (name, tag) = match reference.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (reference, "latest"),
    };
    if name.contains('@') || super::names::repository(name).is_err() || !super::names::is_tag(tag) {
        return Err(RegistryAdminError::BadReference(reference.to_string()));
    }
    let engine = crate::docker::Engine::connect().await?;
    let data = tempfile::tempdir().map_err(io_at(root))?;
    let mut config = crate::server::ServerConfig::new(data.path());
    config.registry.dir = Some(root.to_path_buf());
    config.registry.upstreams = super::Upstream::configured();
    let server = crate::server::Server::start(config).await?;
    let creds = server.registry_credentials();
    let remote = format!("{}/{name}:{tag}", creds.address);
    let pull_err = |source| RegistryAdminError::Pull {
        image: format!("{name}:{tag}"),
        source,
    };
    let opts = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_image(&remote)
        .build();
    let auth = bollard::auth::DockerCredentials {
        username: Some(creds.username.clone()),
        password: Some(creds.password.clone()),
        serveraddress: Some(creds.address.clone()),
        ..Default::default()
    };
    let mut pulled = Ok(());
    {
        let mut stream = engine.client().create_image(Some(opts), None, Some(auth));
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                pulled = Err(pull_err(e));
                break;
            }
        }
    }
    server.shutdown().await;
    pulled?;
    let local = match prefix {
        Some(p) => format!("{}/{name}", p.trim_end_matches('/')),
        None => name.to_string(),
    };
    let opts = bollard::query_parameters::TagImageOptionsBuilder::new()
        .repo(&local)
        .tag(tag)
        .build();
    engine
        .client()
        .tag_image(&remote, Some(opts))
        .await
        .map_err(pull_err)?;
    engine
        .client()
        .remove_image(
            &remote,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .map_err(pull_err)?;
    Ok(format!("{local}:{tag}"))
}
