//! `resource_group`: jobs of one group run one at a time, across every pipeline of the
//! project that runs on this machine (GitLab's `Ci::ResourceGroup`, assigned by
//! `Ci::ResourceGroups::AssignResourceFromResourceGroupService`).
//!
//! The resource is an OS file lock (`flock`) on
//! `GLCI_HOME/resource-groups/<project>/<group>.lock`, held by the process whose job runs,
//! so a killed process gives it back with its file descriptors: there is no pid file to go
//! stale. A job that waits leaves a ticket in `<group>.queue/`, named by its order
//! (pipeline id, then the job's position) and itself locked while its process lives; the
//! process modes read the live tickets:
//!
//! - `unordered` (GitLab's default): whichever waiting job finds the resource free;
//! - `oldest_first`: only the waiting job with the lowest pipeline id (then position);
//! - `newest_first`: only the one with the highest.
//!
//! On GitLab the mode is a setting of the group (`PUT /projects/:id/resource_groups/:key`),
//! not of the YAML; glci keeps it next to the lock, in `<group>.mode`
//! ([`set_process_mode`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// How the resource goes to waiting jobs (GitLab's `process_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProcessMode {
    #[default]
    Unordered,
    OldestFirst,
    NewestFirst,
}

impl ProcessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unordered => "unordered",
            Self::OldestFirst => "oldest_first",
            Self::NewestFirst => "newest_first",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "unordered" => Some(Self::Unordered),
            "oldest_first" => Some(Self::OldestFirst),
            "newest_first" => Some(Self::NewestFirst),
            _ => None,
        }
    }
}

/// A resource group's files could not be used.
#[derive(Debug, thiserror::Error)]
#[error("resource group {group:?}: {path}: {source}")]
pub struct ResourceGroupError {
    pub group: String,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Where one project's resource groups live: `resource-groups/<project>/` of the data
/// directory, `project` being the GitLab path (`group/project`), so two checkouts of one
/// project share their groups as one GitLab project does.
pub fn project_dir(home: &Path, project_path: &str) -> PathBuf {
    let key = super::home::project_key(project_path);
    home.join("resource-groups").join(key)
}

/// A group name as a file name: GitLab allows `[\w\-\.\/ ]`-ish keys; `/` and anything
/// unusual are escaped so every group is one file.
fn file_key(group: &str) -> String {
    let mut out = String::new();
    for c in group.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
            out.push(c);
        } else {
            out.push_str(&format!("%{:02X}", u32::from(c)));
        }
    }
    if out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// Sets the process mode of `group` (GitLab's resource group API), kept for later runs.
pub fn set_process_mode(
    dir: &Path,
    group: &str,
    mode: ProcessMode,
) -> Result<(), ResourceGroupError> {
    let path = dir.join(format!("{}.mode", file_key(group)));
    let err = |source| ResourceGroupError {
        group: group.to_string(),
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    io::Write::write_all(
        temp.as_file_mut(),
        format!("{}\n", mode.as_str()).as_bytes(),
    )
    .map_err(err)?;
    temp.as_file().sync_all().map_err(err)?;
    temp.persist(&path).map_err(|e| err(e.error))?;
    Ok(())
}

/// The process mode of `group`: what [`set_process_mode`] left, else `unordered`.
pub fn process_mode(dir: &Path, group: &str) -> ProcessMode {
    std::fs::read_to_string(dir.join(format!("{}.mode", file_key(group))))
        .ok()
        .and_then(|s| ProcessMode::parse(&s))
        .unwrap_or_default()
}

/// Where a waiting job stands in the queue: GitLab orders by job id, which grows with the
/// pipeline and, inside one, with the job's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueOrder {
    pub pipeline_id: u64,
    pub position: u64,
}

/// A job waiting for its group's resource. Dropping it leaves the queue.
#[derive(Debug)]
pub struct Ticket {
    dir: PathBuf,
    group: String,
    order: QueueOrder,
    path: PathBuf,
    /// Locked while this process lives: how others tell a live ticket from a dead one.
    _alive: File,
}

/// The resource of a group, held until dropped (or until the process dies).
#[derive(Debug)]
pub struct Held {
    pub group: String,
    _lock: File,
}

impl Ticket {
    /// Joins the queue of `group`.
    pub fn join(dir: &Path, group: &str, order: QueueOrder) -> Result<Ticket, ResourceGroupError> {
        let queue = dir.join(format!("{}.queue", file_key(group)));
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ResourceGroupError {
                group: group.to_string(),
                path,
                source,
            }
        };
        std::fs::create_dir_all(&queue).map_err(err(&queue))?;
        // Locked under a hidden name first, renamed into place after: a ticket is never
        // visible unlocked, so nobody takes it for a dead one.
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&queue)
            .map_err(err(&queue))?;
        temp.as_file()
            .try_lock()
            .map_err(|e| err(&queue)(lock_error(e)))?;
        let path = queue.join(format!(
            "{:020}-{:010}-{}",
            order.pipeline_id,
            order.position,
            std::process::id()
        ));
        let file = temp.persist(&path).map_err(|e| err(&path)(e.error))?;
        Ok(Ticket {
            dir: dir.to_path_buf(),
            group: group.to_string(),
            order,
            path,
            _alive: file,
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Takes the resource if this job's turn has come under the group's process mode and
    /// nobody holds it; `None`: keep waiting.
    pub fn try_acquire(&self) -> Result<Option<Held>, ResourceGroupError> {
        let mode = process_mode(&self.dir, &self.group);
        if mode != ProcessMode::Unordered {
            let others = self.live_orders();
            let first = match mode {
                ProcessMode::OldestFirst => others.iter().all(|o| *o > self.order),
                _ => others.iter().all(|o| *o < self.order),
            };
            if !first {
                return Ok(None);
            }
        }
        let path = self.dir.join(format!("{}.lock", file_key(&self.group)));
        let err = |source| ResourceGroupError {
            group: self.group.clone(),
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Held {
                group: self.group.clone(),
                _lock: file,
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(err(e)),
        }
    }

    /// The orders of the other live tickets of the queue; tickets whose process died (their
    /// lock is free) are removed on the way.
    fn live_orders(&self) -> Vec<QueueOrder> {
        let Some(queue) = self.path.parent() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(queue) else {
            return Vec::new();
        };
        let mut orders = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path == self.path {
                continue;
            }
            let Some(order) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_ticket)
            else {
                continue;
            };
            let Ok(file) = File::open(&path) else {
                continue;
            };
            match file.try_lock_shared() {
                // Its process is gone (the OS dropped its lock): not waiting any more.
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => orders.push(order),
            }
        }
        orders
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn parse_ticket(name: &str) -> Option<QueueOrder> {
    let mut parts = name.split('-');
    let pipeline_id = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    Some(QueueOrder {
        pipeline_id,
        position,
    })
}

fn lock_error(e: TryLockError) -> io::Error {
    match e {
        TryLockError::Error(e) => e,
        TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(pipeline_id: u64, position: u64) -> QueueOrder {
        QueueOrder {
            pipeline_id,
            position,
        }
    }

    #[test]
    fn one_holder_at_a_time_and_dropping_releases() {
        let home = tempfile::tempdir().unwrap();
        let dir = project_dir(home.path(), "group/app");
        let a = Ticket::join(&dir, "production", order(1, 0)).unwrap();
        let b = Ticket::join(&dir, "production", order(2, 0)).unwrap();
        let held = a.try_acquire().unwrap().expect("free resource");
        assert!(b.try_acquire().unwrap().is_none(), "held by a");
        // Another group is independent.
        let c = Ticket::join(&dir, "staging/eu", order(3, 0)).unwrap();
        assert!(c.try_acquire().unwrap().is_some());
        drop(held);
        assert!(b.try_acquire().unwrap().is_some(), "released by a");
    }

    #[test]
    fn process_modes_pick_the_oldest_or_newest_live_ticket() {
        let home = tempfile::tempdir().unwrap();
        let dir = project_dir(home.path(), "group/app");
        assert_eq!(process_mode(&dir, "deploy"), ProcessMode::Unordered);
        set_process_mode(&dir, "deploy", ProcessMode::OldestFirst).unwrap();
        let newer = Ticket::join(&dir, "deploy", order(5, 1)).unwrap();
        let older = Ticket::join(&dir, "deploy", order(5, 0)).unwrap();
        assert!(newer.try_acquire().unwrap().is_none(), "older one waits");
        let held = older.try_acquire().unwrap().expect("oldest first");
        drop(held);
        drop(older);
        set_process_mode(&dir, "deploy", ProcessMode::NewestFirst).unwrap();
        let oldest = Ticket::join(&dir, "deploy", order(4, 0)).unwrap();
        assert!(oldest.try_acquire().unwrap().is_none(), "newest first");
        assert!(newer.try_acquire().unwrap().is_some());
    }

    #[test]
    fn a_dead_ticket_does_not_block_the_queue() {
        let home = tempfile::tempdir().unwrap();
        let dir = project_dir(home.path(), "group/app");
        set_process_mode(&dir, "deploy", ProcessMode::OldestFirst).unwrap();
        // An older ticket left by a process that died: the file is there, unlocked.
        let queue = dir.join("deploy.queue");
        std::fs::create_dir_all(&queue).unwrap();
        let stale = queue.join(format!("{:020}-{:010}-1", 1, 0));
        std::fs::write(&stale, b"").unwrap();
        let ticket = Ticket::join(&dir, "deploy", order(9, 0)).unwrap();
        assert!(ticket.try_acquire().unwrap().is_some());
        assert!(!stale.exists(), "dead ticket removed");
    }

    /// The resource held by another process (through util-linux `flock(1)`, the same
    /// `flock(2)` lock) is free again the moment that process is killed: nothing stale is
    /// left.
    #[test]
    fn a_killed_holder_gives_the_resource_back() {
        let home = tempfile::tempdir().unwrap();
        let dir = project_dir(home.path(), "group/app");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = dir.join("deploy.lock");
        // The shell opens the lock file as fd 9, `flock 9` locks that open file, and the
        // shell becomes `sleep`, which keeps fd 9 (and so the lock) until it is killed.
        let mut holder = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9>"$1"; flock 9; exec sleep 60"#)
            .arg("sh")
            .arg(&lock)
            .spawn()
            .expect("sh with util-linux flock");
        let ticket = Ticket::join(&dir, "deploy", order(1, 0)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Wait until the other process has the lock.
        while ticket.try_acquire().unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "flock never took the lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(ticket.try_acquire().unwrap().is_some(), "freed by the kill");
    }

    #[test]
    fn group_names_become_one_file_each() {
        assert_eq!(file_key("production"), "production");
        assert_eq!(file_key("review/feature"), "review%2Ffeature");
        assert_eq!(file_key("..x"), "_..x");
    }
}
