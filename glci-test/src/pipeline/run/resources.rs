//! The scheduler's side of `resource_group` (see [`crate::pipeline::resource_group`]): a
//! job GitLab would release waits, as GitLab's `waiting_for_resource` status, until its
//! group's resource is free and its turn has come; it holds the resource until it finishes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use crate::pipeline::resource_group::{self, Held, QueueOrder, Ticket};
use crate::plan::PlannedJob;
use crate::server::JobId;

use super::Shared;

/// Jobs waiting for a resource and the resources held, by job name.
#[derive(Default)]
pub(super) struct Resources {
    waiting: HashMap<String, (Ticket, Instant)>,
    held: HashMap<String, Held>,
    /// Set when a job got its resource, until its dispatch adds the note to its log.
    waited: HashMap<String, String>,
    /// Jobs whose log already says they wait.
    announced: HashSet<String>,
}

impl Resources {
    /// Whether `job` may be dispatched now: it has no `resource_group`, or it just got the
    /// resource. The first time it has to wait, "Waiting for resource: <group>" goes to the
    /// job's live log, as GitLab shows it on the waiting job's page.
    pub(super) fn ready(&mut self, shared: &Shared, job: &PlannedJob) -> bool {
        let Some(group) = job.resource_group.as_deref().filter(|g| !g.is_empty()) else {
            return true;
        };
        if self.held.contains_key(&job.name) {
            return true;
        }
        if !self.waiting.contains_key(&job.name) {
            let dir = groups_dir(shared);
            let order = QueueOrder {
                pipeline_id: shared.facts.pipeline_id,
                position: shared
                    .planned
                    .plan
                    .jobs
                    .iter()
                    .position(|j| j.name == job.name)
                    .unwrap_or_default() as u64,
            };
            match Ticket::join(&dir, group, order) {
                Ok(ticket) => {
                    self.waiting
                        .insert(job.name.clone(), (ticket, Instant::now()));
                }
                Err(e) => {
                    // Without the files the group cannot be shared with other runs: run
                    // anyway (as without `resource_group`) and say so.
                    shared.observer.warning(&format!(
                        "job `{}`: {e}; it runs without waiting for its resource group",
                        job.name
                    ));
                    return true;
                }
            }
        }
        let Some((ticket, since)) = self.waiting.get(&job.name) else {
            return true;
        };
        match ticket.try_acquire() {
            Ok(Some(held)) => {
                let waited = since.elapsed();
                let mode = resource_group::process_mode(&groups_dir(shared), group);
                self.waited.insert(
                    job.name.clone(),
                    format!(
                        "glci: resource_group {group:?} ({}) assigned after {:.1}s",
                        mode.as_str(),
                        waited.as_secs_f64()
                    ),
                );
                self.waiting.remove(&job.name);
                self.held.insert(job.name.clone(), held);
                true
            }
            Ok(None) => {
                if self.announced.insert(job.name.clone()) {
                    shared.observer.job_log(
                        &job.name,
                        format!("Waiting for resource: {group}\n").as_bytes(),
                    );
                }
                false
            }
            Err(e) => {
                shared.observer.warning(&format!(
                    "job `{}`: {e}; it runs without waiting for its resource group",
                    job.name
                ));
                self.waiting.remove(&job.name);
                true
            }
        }
    }

    /// After `job` was queued as `id`: the note of how long it waited, in its log.
    pub(super) fn dispatched(&mut self, shared: &Shared, job: &str, id: Option<JobId>) {
        self.announced.remove(job);
        if let (Some(line), Some(id)) = (self.waited.remove(job), id) {
            shared.server.add_note(id, line);
        }
    }

    /// `job` finished (or will never run): its resource goes to the next waiting job.
    pub(super) fn release(&mut self, job: &str) {
        self.held.remove(job);
        self.waiting.remove(job);
    }

    /// Whether any job waits for a resource (the scheduler keeps polling).
    pub(super) fn any_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

/// `resource-groups/<project>/` of the data directory holding the pipeline's directory
/// (`<home>/pipelines/<id>`).
fn groups_dir(shared: &Shared) -> std::path::PathBuf {
    let home = shared
        .dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(&shared.dir);
    resource_group::project_dir(home, &shared.facts.project.path)
}
