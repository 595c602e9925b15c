//! Quick questions `cargo glci doctor` asks the engine: does it run privileged containers
//! (some engines refuse them, e.g. rootless or policy-restricted ones), which of glci's
//! fixture images are present.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::{DockerError, Engine, Owner};

/// The image the privileged probe runs (`true` in it).
pub const PROBE_IMAGE: &str = "glci-fixture/busybox:latest";

/// What the engine said to a privileged container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privileged {
    Works,
    /// The engine refused to create or start it: the reason it gave.
    Refused(String),
}

/// Runs `true` in a privileged, labelled container of [`PROBE_IMAGE`] and removes it.
/// `Err` only when the probe itself cannot run (the image is missing, the engine fails).
pub async fn privileged(engine: &Engine, owner: &Owner) -> Result<Privileged, DockerError> {
    engine.require_image(PROBE_IMAGE).await?;
    let docker = engine.client();
    let name = format!("{}-privileged-probe", owner.name_prefix());
    let body = ContainerCreateBody {
        image: Some(PROBE_IMAGE.to_string()),
        cmd: Some(vec!["true".to_string()]),
        labels: Some(owner.labels()),
        host_config: Some(HostConfig {
            privileged: Some(true),
            network_mode: Some("none".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = match docker.create_container(Some(opts), body).await {
        Ok(created) => created.id,
        Err(e) => return Ok(Privileged::Refused(e.to_string())),
    };
    let outcome = match docker
        .start_container(&id, None::<StartContainerOptions>)
        .await
    {
        Err(e) => Privileged::Refused(e.to_string()),
        Ok(()) => {
            // Only that it started matters; its exit status is `true`'s.
            let _ = docker
                .wait_container(&id, None::<WaitContainerOptions>)
                .next()
                .await;
            Privileged::Works
        }
    };
    let rm = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    docker
        .remove_container(&id, Some(rm))
        .await
        .map_err(|e| DockerError::api(format!("remove container `{name}`"), e))?;
    Ok(outcome)
}

/// The tags of glci's fixture images (`glci-fixture/*`) the engine has, sorted.
pub async fn fixture_images(engine: &Engine) -> Result<Vec<String>, DockerError> {
    let filters = HashMap::from([("reference", vec!["glci-fixture/*"])]);
    let options = ListImagesOptionsBuilder::new().filters(&filters).build();
    let images = engine
        .client()
        .list_images(Some(options))
        .await
        .map_err(|e| DockerError::api("list images", e))?;
    let mut tags: Vec<String> = images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .filter(|t| t.starts_with("glci-fixture/"))
        .collect();
    tags.sort();
    tags.dedup();
    Ok(tags)
}
