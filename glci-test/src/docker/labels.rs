//! The labels that mark an object as glci's, and who owns it.

use std::collections::HashMap;

use rand::Rng;

/// The pipeline an object belongs to (every glci object has it; cleanup keys on it).
pub const LABEL_PIPELINE: &str = "io.glci.pipeline";
/// A random id of the glci process (run) that created the object.
pub const LABEL_OWNER: &str = "io.glci.owner";
/// The owning process's pid, its start time and host: a dead owner's objects are orphans.
pub const LABEL_OWNER_PID: &str = "io.glci.owner-pid";
pub const LABEL_OWNER_START: &str = "io.glci.owner-start";
pub const LABEL_OWNER_HOST: &str = "io.glci.owner-host";

/// The owner of the Docker objects of one run: this process, for one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Random per run, so two runs in one process never clean up each other's objects.
    pub id: String,
    pub pipeline: String,
    pub pid: u32,
    /// The process start time (clock ticks since boot, from /proc); pid plus start time names
    /// one process even after its pid is reused.
    pub start: Option<u64>,
    pub host: String,
}

impl Owner {
    /// A fresh owner for this process and the given pipeline id.
    pub fn for_this_process(pipeline: impl Into<String>) -> Owner {
        let pid = std::process::id();
        let id: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(12)
            .map(|b| char::from(b).to_ascii_lowercase())
            .collect();
        Owner {
            id,
            pipeline: pipeline.into(),
            pid,
            start: process_start_time(pid),
            host: host_name(),
        }
    }

    /// The labels every object of this owner carries.
    pub fn labels(&self) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_PIPELINE.to_string(), self.pipeline.clone()),
            (LABEL_OWNER.to_string(), self.id.clone()),
            (LABEL_OWNER_PID.to_string(), self.pid.to_string()),
            (LABEL_OWNER_HOST.to_string(), self.host.clone()),
        ]);
        if let Some(start) = self.start {
            labels.insert(LABEL_OWNER_START.to_string(), start.to_string());
        }
        labels
    }

    /// A short name prefix for objects of this owner (`glci-<id>`), so `docker ps` says whose.
    pub fn name_prefix(&self) -> String {
        format!("glci-{}", self.id)
    }
}

/// Whether the process named by an object's owner labels is certainly gone. Objects made on
/// another host are never judged dead from here: we cannot see that host's processes.
pub(crate) fn owner_is_dead(labels: &HashMap<String, String>) -> bool {
    if labels.get(LABEL_OWNER_HOST).map(String::as_str) != Some(host_name().as_str()) {
        return false;
    }
    let Some(pid) = labels
        .get(LABEL_OWNER_PID)
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    match process_start_time(pid) {
        None => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        Some(now) => labels
            .get(LABEL_OWNER_START)
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|then| then != now),
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        let me = Owner::for_this_process("1");
        assert!(!owner_is_dead(&me.labels()));
        assert_eq!(me.id.len(), 12);

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut dead = me.labels();
        dead.insert(LABEL_OWNER_PID.to_string(), pid.to_string());
        assert!(owner_is_dead(&dead));
    }

    #[test]
    fn reused_pid_with_another_start_time_is_dead() {
        let mut labels = Owner::for_this_process("1").labels();
        labels.insert(LABEL_OWNER_START.to_string(), "1".to_string());
        assert!(owner_is_dead(&labels));
    }

    #[test]
    fn other_hosts_objects_are_never_judged() {
        let mut labels = Owner::for_this_process("1").labels();
        labels.insert(LABEL_OWNER_HOST.to_string(), "elsewhere".to_string());
        labels.insert(LABEL_OWNER_PID.to_string(), "999999999".to_string());
        assert!(!owner_is_dead(&labels));
    }
}
