//! Small building blocks over bollard: a labelled network, and a container run to completion
//! with its output. The runner composes jobs from these.

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::{DockerError, Engine, Owner};

/// Creates a bridge network named `name`, labelled for `owner`; returns its id.
pub async fn create_network(
    engine: &Engine,
    owner: &Owner,
    name: &str,
) -> Result<String, DockerError> {
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".to_string()),
        labels: Some(owner.labels()),
        ..Default::default()
    };
    let created = engine
        .client()
        .create_network(request)
        .await
        .map_err(|e| DockerError::api(format!("create network `{name}`"), e))?;
    Ok(created.id)
}

/// A container to run to completion.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub network: Option<String>,
}

/// What a finished container printed, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Creates, starts and waits for a labelled container, reads its output and removes it.
/// The container is removed on every path, also when reading its output fails.
pub async fn run_container(
    engine: &Engine,
    owner: &Owner,
    spec: &ContainerSpec,
) -> Result<ContainerOutput, DockerError> {
    engine.require_image(&spec.image).await?;
    let docker = engine.client();
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.cmd.clone()),
        env: Some(spec.env.clone()),
        labels: Some(owner.labels()),
        host_config: Some(HostConfig {
            network_mode: spec.network.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new()
        .name(&spec.name)
        .build();
    let id = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| DockerError::api(format!("create container `{}`", spec.name), e))?
        .id;
    let result = start_and_collect(engine, &id, &spec.name).await;
    let rm = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let removed = docker.remove_container(&id, Some(rm)).await;
    let output = result?;
    removed.map_err(|e| DockerError::api(format!("remove container `{}`", spec.name), e))?;
    Ok(output)
}

async fn start_and_collect(
    engine: &Engine,
    id: &str,
    name: &str,
) -> Result<ContainerOutput, DockerError> {
    let docker = engine.client();
    docker
        .start_container(id, None::<StartContainerOptions>)
        .await
        .map_err(|e| DockerError::api(format!("start container `{name}`"), e))?;
    // A non-zero exit arrives as an error from the wait stream, not as a status: map it back.
    let exit_code = match docker
        .wait_container(id, None::<WaitContainerOptions>)
        .next()
        .await
    {
        Some(Ok(r)) => r.status_code,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        Some(Err(e)) => return Err(DockerError::api(format!("wait for container `{name}`"), e)),
        None => {
            return Err(DockerError::api(
                format!("wait for container `{name}`"),
                bollard::errors::Error::DockerStreamError {
                    error: "wait stream ended without a status".to_string(),
                },
            ))
        }
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
    let mut logs = docker.logs(id, Some(opts));
    while let Some(chunk) = logs.next().await {
        match chunk
            .map_err(|e| DockerError::api(format!("read output of container `{name}`"), e))?
        {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                stdout.extend_from_slice(&message)
            }
            LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(ContainerOutput {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Everything a container printed so far (stdout and stderr interleaved), for diagnostics.
pub async fn container_logs(engine: &Engine, id: &str) -> Result<String, DockerError> {
    let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
    let mut logs = engine.client().logs(id, Some(opts));
    let mut out = Vec::new();
    while let Some(chunk) = logs.next().await {
        let chunk =
            chunk.map_err(|e| DockerError::api(format!("read logs of container {id}"), e))?;
        out.extend_from_slice(&chunk.into_bytes());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
