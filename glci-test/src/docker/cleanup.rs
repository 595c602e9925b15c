//! Removing glci's objects: those of one owner when its run ends, and those of dead owners
//! when the next run starts. Only objects carrying glci's labels are ever listed.

use std::collections::HashMap;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};

use super::labels::{owner_is_dead, LABEL_OWNER, LABEL_PIPELINE};
use super::{DockerError, Engine};

/// Numbers of glci's objects: those a cleanup removed, or those [`count_labelled`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
}

impl CleanupReport {
    pub fn is_empty(&self) -> bool {
        self.containers + self.networks + self.volumes == 0
    }
}

/// Removes every container, network and volume of the owner `owner_id`.
pub async fn remove_owned(engine: &Engine, owner_id: &str) -> Result<CleanupReport, DockerError> {
    let label = format!("{LABEL_OWNER}={owner_id}");
    remove_matching(engine, &label, |_| true).await
}

/// Like [`remove_owned`], but leaves the containers named in `keep` (kept for inspection;
/// the next run's [`remove_orphans`] or `cargo glci clean` removes them).
pub async fn remove_owned_except(
    engine: &Engine,
    owner_id: &str,
    keep: &[String],
) -> Result<CleanupReport, DockerError> {
    let label = format!("{LABEL_OWNER}={owner_id}");
    let keep: Vec<String> = keep
        .iter()
        .map(|k| k.trim_start_matches('/').to_string())
        .collect();
    remove_matching_except(engine, &label, |_| true, &keep).await
}

/// Removes every glci object, whoever owns it (`cargo glci clean --all`).
pub async fn remove_all(engine: &Engine) -> Result<CleanupReport, DockerError> {
    remove_matching(engine, LABEL_PIPELINE, |_| true).await
}

/// Removes every glci object whose owning process is gone (killed, crashed) on this host.
pub async fn remove_orphans(engine: &Engine) -> Result<CleanupReport, DockerError> {
    remove_matching(engine, LABEL_PIPELINE, owner_is_dead).await
}

/// How many containers, networks and volumes carry `label` (`key` or `key=value`), removing
/// nothing: what a finished run must not have left behind.
pub async fn count_labelled(engine: &Engine, label: &str) -> Result<CleanupReport, DockerError> {
    let found = list_labelled(engine, label).await?;
    Ok(CleanupReport {
        containers: found.containers.len(),
        networks: found.networks.len(),
        volumes: found.volumes.len(),
    })
}

/// The containers, networks and volumes carrying one label.
struct Labelled {
    containers: Vec<bollard::models::ContainerSummary>,
    networks: Vec<bollard::models::Network>,
    volumes: Vec<bollard::models::Volume>,
}

/// Lists the objects having `label` (`key` or `key=value`); the three lists are asked for at
/// once (every run does this when it starts and when it ends).
async fn list_labelled(engine: &Engine, label: &str) -> Result<Labelled, DockerError> {
    let docker = engine.client();
    let filters = HashMap::from([("label", vec![label])]);
    let containers = async {
        docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("list glci containers", e))
    };
    let networks = async {
        docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| DockerError::api("list glci networks", e))
    };
    let volumes = async {
        docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| DockerError::api("list glci volumes", e))
    };
    let (containers, networks, volumes) = tokio::try_join!(containers, networks, volumes)?;
    Ok(Labelled {
        containers,
        networks,
        volumes: volumes.volumes.unwrap_or_default(),
    })
}

/// Lists objects having `label` (`key` or `key=value`), keeps those `select` accepts, and
/// removes them: containers first (they hold networks and volumes), then networks, volumes.
async fn remove_matching(
    engine: &Engine,
    label: &str,
    select: impl Fn(&HashMap<String, String>) -> bool,
) -> Result<CleanupReport, DockerError> {
    remove_matching_except(engine, label, select, &[]).await
}

async fn remove_matching_except(
    engine: &Engine,
    label: &str,
    select: impl Fn(&HashMap<String, String>) -> bool,
    keep: &[String],
) -> Result<CleanupReport, DockerError> {
    let found = list_labelled(engine, label).await?;
    let mut report = CleanupReport::default();

    for c in found.containers {
        let (Some(id), Some(labels)) = (c.id, c.labels) else {
            continue;
        };
        if !select(&labels) {
            continue;
        }
        let kept = c
            .names
            .iter()
            .flatten()
            .any(|n| keep.iter().any(|k| k == n.trim_start_matches('/')));
        if kept {
            continue;
        }
        if remove_container(engine, &id).await? {
            report.containers += 1;
        }
    }

    for n in found.networks {
        let (Some(id), Some(labels)) = (n.id, n.labels) else {
            continue;
        };
        if !select(&labels) {
            continue;
        }
        if remove_network(engine, &id).await? {
            report.networks += 1;
        }
    }

    for v in found.volumes {
        if !select(&v.labels) {
            continue;
        }
        if remove_volume(engine, &v.name).await? {
            report.volumes += 1;
        }
    }
    Ok(report)
}

/// Removes one container, running or not, with its anonymous volumes; `false` when it was
/// gone already.
pub(crate) async fn remove_container(engine: &Engine, id: &str) -> Result<bool, DockerError> {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match engine.client().remove_container(id, Some(opts)).await {
        Ok(()) => Ok(true),
        Err(e) if is_gone(&e) => Ok(false),
        Err(e) => Err(DockerError::api(format!("remove container {id}"), e)),
    }
}

/// Removes one network; `false` when it was gone already.
pub(crate) async fn remove_network(engine: &Engine, id: &str) -> Result<bool, DockerError> {
    match engine.client().remove_network(id).await {
        Ok(()) => Ok(true),
        Err(e) if is_gone(&e) => Ok(false),
        Err(e) => Err(DockerError::api(format!("remove network {id}"), e)),
    }
}

/// Removes one volume; `false` when it was gone already.
pub(crate) async fn remove_volume(engine: &Engine, name: &str) -> Result<bool, DockerError> {
    let opts = RemoveVolumeOptionsBuilder::new().force(true).build();
    match engine.client().remove_volume(name, Some(opts)).await {
        Ok(()) => Ok(true),
        Err(e) if is_gone(&e) => Ok(false),
        Err(e) => Err(DockerError::api(format!("remove volume {name}"), e)),
    }
}

/// 404: removed meanwhile (by a concurrent cleanup, or `--rm`); that is what we wanted.
pub(crate) fn is_gone(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
