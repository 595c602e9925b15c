//! Getting a job's `image:` and each of its `services:` onto the engine, as the official
//! runner's pull manager does: the job's `pull_policy` list is tried in order (`always`,
//! `if-not-present`, `never`), a failed policy is reported and the next one tried, and the
//! last failure ends the job with the runner's message
//! (`failed to pull image "…" with specified policies [never]: …`).
//!
//! Two glci-specific points:
//! - With no `pull_policy`, glci uses `if-not-present` (the runner's default is `always`):
//!   glci runs offline against the user's own engine, where images are usually local.
//! - An image of the stand-in's registry named by the address jobs use (`CI_REGISTRY`, the
//!   TLS listener the engine does not trust) is pulled from the loopback listener instead,
//!   with the job's credentials: same store, same repository path (see
//!   [`RegistryAccess`]).

use futures_util::StreamExt;

use crate::docker::Engine;

use super::payload::Credential;
use super::registry_access::RegistryAccess;
use super::trace::Trace;

/// glci's default when a job names no `pull_policy`.
const DEFAULT_POLICY: &str = "if-not-present";

/// Why an image could not be made present.
#[derive(Debug, thiserror::Error)]
#[error("failed to pull image \"{image}\" with specified policies [{}]: {last}", policies.join(" "))]
pub struct PullError {
    pub image: String,
    pub policies: Vec<String>,
    /// The last policy's failure.
    pub last: String,
    /// The last failure was a pull (the registry refused or failed), not a missing local
    /// image: the runner reports that as the job's failure, not a system failure.
    pub pulled: bool,
}

/// The reference the engine pulls and runs for `image`: an image of the stand-in's registry
/// named by the jobs' address is named by the engine's (loopback) address; every other
/// image is unchanged.
pub fn engine_reference(registry: Option<&RegistryAccess>, image: &str) -> String {
    registry
        .and_then(|r| {
            image
                .strip_prefix(r.job_address.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|rest| format!("{}/{rest}", r.engine_address))
        })
        .unwrap_or_else(|| image.to_string())
}

/// Makes `image` present per `policies` and returns the reference to create containers
/// from (see [`engine_reference`]).
pub async fn ensure_image(
    engine: &Engine,
    image: &str,
    policies: &[String],
    credential: Option<&Credential>,
    registry: Option<&RegistryAccess>,
    trace: &Trace,
) -> Result<String, PullError> {
    let reference = engine_reference(registry, image);
    let policies: Vec<String> = if policies.is_empty() {
        vec![DEFAULT_POLICY.to_string()]
    } else {
        policies.to_vec()
    };
    trace.line(&format!(
        "Using effective pull policy of [{}] for container {image}",
        policies.join(" ")
    ));
    // The job's credential for the registry's job address logs in at the engine's.
    let credential = credential.map(|c| match registry {
        Some(r) if reference != image => Credential {
            url: r.engine_address.clone(),
            ..c.clone()
        },
        _ => c.clone(),
    });
    let mut last = (String::new(), false);
    for (index, policy) in policies.iter().enumerate() {
        if index > 0 {
            trace.info(&format!(
                "Attempt #{}: Trying \"{policy}\" pull policy",
                index + 1
            ));
        }
        match with_policy(
            engine,
            image,
            &reference,
            policy,
            credential.as_ref(),
            trace,
        )
        .await
        {
            Ok(()) => return Ok(reference),
            Err(failure) => {
                trace.warning(&format!(
                    "Failed to pull image with policy \"{policy}\": {}",
                    failure.0
                ));
                last = failure;
            }
        }
    }
    Err(PullError {
        image: image.to_string(),
        policies,
        last: last.0,
        pulled: last.1,
    })
}

/// One policy: `Err((message, pulled))`.
async fn with_policy(
    engine: &Engine,
    image: &str,
    reference: &str,
    policy: &str,
    credential: Option<&Credential>,
    trace: &Trace,
) -> Result<(), (String, bool)> {
    let present = match engine.client().inspect_image(reference).await {
        Ok(_) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => return Err((e.to_string(), false)),
    };
    match policy {
        "never" if present => return Ok(()),
        // The engine's answer, under the name the job gave.
        "never" => {
            return Err((
                format!("Error response from daemon: No such image: {image}"),
                false,
            ))
        }
        "if-not-present" if present => {
            trace.line(&format!(
                "Using locally found image version due to \"{policy}\" pull policy"
            ));
            return Ok(());
        }
        _ => {}
    }
    if credential.is_some() {
        trace.line("Authenticating with credentials from job payload (GitLab Registry)");
    }
    trace.line(&format!("Pulling docker image {image} ..."));
    pull(engine, reference, credential)
        .await
        .map_err(|e| (e, true))
}

/// Removes the engine's names for images pulled from `engine_address` (the loopback listener
/// of a run that is ending): the next run's listener has another port, so they would only
/// pile up in `docker images`. Only the names go; layers other names use stay, and an image
/// a kept container uses stays whole (the engine refuses without `force`).
pub async fn forget_pulled_names(engine: &Engine, engine_address: &str) {
    let prefix = format!("{engine_address}/");
    let Ok(images) = engine
        .client()
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
    else {
        return;
    };
    for tag in images
        .iter()
        .flat_map(|i| i.repo_tags.iter())
        .filter(|t| t.starts_with(&prefix))
    {
        let _ = engine
            .client()
            .remove_image(
                tag,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
}

async fn pull(
    engine: &Engine,
    reference: &str,
    credential: Option<&Credential>,
) -> Result<(), String> {
    // As the runner: a reference without tag or digest pulls `latest`, not every tag.
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let reference = if last.contains(':') || last.contains('@') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    };
    let opts = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_image(&reference)
        .build();
    let auth = credential.map(|c| bollard::auth::DockerCredentials {
        username: Some(c.username.clone()),
        password: Some(c.password.clone()),
        serveraddress: Some(c.url.clone()),
        ..Default::default()
    });
    let mut stream = engine.client().create_image(Some(opts), None, auth);
    while let Some(item) = stream.next().await {
        item.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_named_by_the_job_address_are_pulled_from_the_engine_address() {
        let access = RegistryAccess {
            job_address: "172.17.0.1:41000".into(),
            engine_address: "127.0.0.1:42000".into(),
            ca_pem: String::new(),
        };
        let r = Some(&access);
        assert_eq!(
            engine_reference(r, "172.17.0.1:41000/group/p/x:1"),
            "127.0.0.1:42000/group/p/x:1"
        );
        // Another port of the same host, a look-alike prefix, other registries: unchanged.
        for other in [
            "172.17.0.1:4100/group/p:1",
            "172.17.0.1:410001/group/p:1",
            "alpine:3",
            "registry.example/x",
        ] {
            assert_eq!(engine_reference(r, other), other);
        }
        assert_eq!(
            engine_reference(None, "172.17.0.1:41000/a"),
            "172.17.0.1:41000/a"
        );
    }

    #[test]
    fn the_error_reads_like_the_runners() {
        let e = PullError {
            image: "alpine".into(),
            policies: vec!["never".into()],
            last: "Error response from daemon: No such image: alpine".into(),
            pulled: false,
        };
        assert_eq!(
            e.to_string(),
            "failed to pull image \"alpine\" with specified policies [never]: Error response \
             from daemon: No such image: alpine"
        );
    }
}
