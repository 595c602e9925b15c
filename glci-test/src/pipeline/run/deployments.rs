//! A finished job with `environment:` updates the project's environments in `GLCI_HOME`
//! (see [`crate::pipeline::environments`]) and tells the run's summary what it did.

use crate::pipeline::environments::{self, EnvironmentChange};
use crate::pipeline::past_runs;
use crate::plan::status::Status;
use crate::plan::PlannedJob;
use crate::server::JobId;

use super::{Shared, State};

/// Records what `job` (server id `id`, finished with `status`) did to its environment.
pub(super) fn record(
    shared: &Shared,
    state: &mut State,
    job: &PlannedJob,
    id: JobId,
    status: Status,
) {
    let Some(env) = &job.environment else {
        return;
    };
    let change = EnvironmentChange {
        job: job.name.clone(),
        job_id: id.0,
        pipeline_id: shared.facts.pipeline_id,
        environment: env.name.clone(),
        slug: env.slug.clone(),
        tier: env.tier.clone(),
        action: env.action.clone(),
        url: env.url.clone(),
        on_stop: env.on_stop.clone(),
        auto_stop_in: env.auto_stop_in.clone(),
        status: status.as_str().to_string(),
        ref_name: shared.facts.ref_name.clone(),
        sha: shared.facts.commit.sha().to_string(),
    };
    let home = shared
        .dir
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap_or(&shared.dir);
    if let Err(e) = environments::record(
        home,
        &shared.facts.project.path,
        &change,
        past_runs::now_secs(),
    ) {
        shared.observer.warning(&format!(
            "job `{}`: environment {:?} not recorded: {e}",
            job.name, env.name
        ));
    }
    state.deployments.push(change);
}
