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
//!
//! The engine's pull stream (each layer's download and extraction, in bytes) goes to the
//! job's [`JobProgress`], not to its log: GitLab's log shows only `Pulling docker image …`.

use futures_util::StreamExt;

use crate::docker::Engine;

use super::payload::Credential;
use super::progress::{Amount, JobProgress, LayerStep, Task};
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

/// Why one pull policy did not make the image present; the job's log says it after
/// `Failed to pull image with policy "…": `, and the last one ends [`PullError`].
#[derive(Debug, thiserror::Error)]
enum PolicyFailure {
    /// The engine could not say whether the image is here.
    #[error("{0}")]
    Inspect(bollard::errors::Error),
    /// `never`, and the image is not here: the engine's answer, under the name the job gave.
    #[error("Error response from daemon: No such image: {image}")]
    NotPresent { image: String },
    /// The pull itself failed (the registry refused or failed).
    #[error("{0}")]
    Pull(bollard::errors::Error),
}

impl PolicyFailure {
    /// See [`PullError::pulled`].
    fn pulled(&self) -> bool {
        matches!(self, PolicyFailure::Pull(_))
    }
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
    progress: &JobProgress,
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
    let mut last: Option<PolicyFailure> = None;
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
            progress,
        )
        .await
        {
            Ok(()) => return Ok(reference),
            Err(failure) => {
                trace.warning(&format!(
                    "Failed to pull image with policy \"{policy}\": {failure}"
                ));
                last = Some(failure);
            }
        }
    }
    Err(PullError {
        image: image.to_string(),
        policies,
        last: last.as_ref().map(ToString::to_string).unwrap_or_default(),
        pulled: last.as_ref().is_some_and(PolicyFailure::pulled),
    })
}

/// One policy.
async fn with_policy(
    engine: &Engine,
    image: &str,
    reference: &str,
    policy: &str,
    credential: Option<&Credential>,
    trace: &Trace,
    progress: &JobProgress,
) -> Result<(), PolicyFailure> {
    let present = match engine.client().inspect_image(reference).await {
        Ok(_) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => return Err(PolicyFailure::Inspect(e)),
    };
    match policy {
        "never" if present => return Ok(()),
        // The engine's answer, under the name the job gave.
        "never" => {
            return Err(PolicyFailure::NotPresent {
                image: image.to_string(),
            })
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
    pull(engine, image, reference, credential, progress)
        .await
        .map_err(PolicyFailure::Pull)
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
    image: &str,
    reference: &str,
    credential: Option<&Credential>,
    progress: &JobProgress,
) -> Result<(), bollard::errors::Error> {
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
    let mut layers = PullLayers::default();
    let mut report = |(task, amount, finished)| progress.report(&task, amount, finished);
    let result = loop {
        match stream.next().await {
            None => break Ok(()),
            Some(Ok(info)) => layers.heard(image, &info).into_iter().for_each(&mut report),
            Some(Err(e)) => break Err(e),
        }
    };
    layers.end(image).into_iter().for_each(report);
    result
}

/// The layers of one pull as the engine's stream reports them (`Pulling fs layer`,
/// `Downloading` with bytes, `Download complete`, `Extracting` with bytes, `Pull
/// complete`), turned into progress of each layer's download and extraction.
#[derive(Default)]
struct PullLayers {
    /// Layers whose current step has not ended yet, with the step's last amount.
    open: Vec<(String, LayerStep, Amount)>,
}

type LayerReport = (Task, Amount, bool);

impl PullLayers {
    fn heard(&mut self, image: &str, info: &bollard::models::CreateImageInfo) -> Vec<LayerReport> {
        let (Some(layer), Some(status)) = (info.id.as_deref(), info.status.as_deref()) else {
            return Vec::new();
        };
        let bytes = info.progress_detail.as_ref().map(|d| Amount::Bytes {
            done: d.current.unwrap_or(0).max(0) as u64,
            total: d.total.filter(|t| *t > 0).map(|t| t as u64),
        });
        let (step, amount, finished) = match status {
            "Pulling fs layer" | "Waiting" => (LayerStep::Download, None, false),
            "Downloading" => (LayerStep::Download, bytes, false),
            "Download complete" => (LayerStep::Download, None, true),
            "Extracting" => (LayerStep::Extract, bytes, false),
            "Pull complete" => (LayerStep::Extract, None, true),
            // `Already exists`, `Verifying Checksum`, the tag's own lines: nothing moves.
            _ => return Vec::new(),
        };
        let mut reports = Vec::new();
        // A layer's extraction starts: its download is over, whether or not it was said.
        if step == LayerStep::Extract {
            reports.extend(self.close(image, layer, LayerStep::Download));
        }
        let index = match self
            .open
            .iter()
            .position(|(l, s, _)| l == layer && *s == step)
        {
            Some(index) => index,
            None if finished => {
                // `Pull complete` without an `Extracting` line (a tiny layer): it ends
                // all the same.
                let none = Amount::Bytes {
                    done: 0,
                    total: None,
                };
                reports.push((layer_task(image, layer, step), none, true));
                return reports;
            }
            None => {
                let start = Amount::Bytes {
                    done: 0,
                    total: None,
                };
                self.open.push((layer.to_string(), step, start));
                self.open.len() - 1
            }
        };
        if let Some(amount) = amount {
            self.open[index].2 = amount;
        }
        if finished {
            reports.extend(self.close(image, layer, step));
        } else {
            let task = layer_task(image, layer, step);
            reports.push((task, self.open[index].2, false));
        }
        reports
    }

    /// Ends `layer`'s `step` if it is open.
    fn close(&mut self, image: &str, layer: &str, step: LayerStep) -> Option<LayerReport> {
        let index = self
            .open
            .iter()
            .position(|(l, s, _)| l == layer && *s == step)?;
        let (_, _, amount) = self.open.remove(index);
        let amount = match amount {
            // Done means all of it.
            Amount::Bytes { total: Some(t), .. } => Amount::Bytes {
                done: t,
                total: Some(t),
            },
            other => other,
        };
        Some((layer_task(image, layer, step), amount, true))
    }

    /// The pull is over (or failed): every open step ends.
    fn end(&mut self, image: &str) -> Vec<LayerReport> {
        std::mem::take(&mut self.open)
            .into_iter()
            .map(|(layer, step, amount)| (layer_task(image, &layer, step), amount, true))
            .collect()
    }
}

fn layer_task(image: &str, layer: &str, step: LayerStep) -> Task {
    Task::Layer {
        image: image.to_string(),
        layer: layer.to_string(),
        step,
    }
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

    fn info(
        id: &str,
        status: &str,
        detail: Option<(i64, i64)>,
    ) -> bollard::models::CreateImageInfo {
        bollard::models::CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: detail.map(|(current, total)| bollard::models::ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        }
    }

    /// The engine's stream of a pull of two layers, one already present.
    #[test]
    fn each_layer_reports_its_download_and_extraction() {
        let mut layers = PullLayers::default();
        let stream = [
            info("1", "Pulling from library/x", None),
            info("aaa", "Already exists", None),
            info("bbb", "Pulling fs layer", None),
            info("bbb", "Downloading", Some((100, 1000))),
            info("bbb", "Downloading", Some((1000, 1000))),
            info("bbb", "Verifying Checksum", None),
            info("bbb", "Download complete", None),
            info("bbb", "Extracting", Some((500, 4000))),
            info("bbb", "Pull complete", None),
        ];
        let heard: Vec<LayerReport> = stream.iter().flat_map(|i| layers.heard("x", i)).collect();
        let bytes = |done, total| Amount::Bytes {
            done,
            total: Some(total),
        };
        let download = layer_task("x", "bbb", LayerStep::Download);
        let extract = layer_task("x", "bbb", LayerStep::Extract);
        assert_eq!(
            heard,
            [
                (
                    download.clone(),
                    Amount::Bytes {
                        done: 0,
                        total: None
                    },
                    false
                ),
                (download.clone(), bytes(100, 1000), false),
                (download.clone(), bytes(1000, 1000), false),
                (download, bytes(1000, 1000), true),
                (extract.clone(), bytes(500, 4000), false),
                (extract, bytes(4000, 4000), true),
            ]
        );
        assert!(layers.end("x").is_empty());
    }

    #[test]
    fn a_broken_pull_ends_its_open_layers() {
        let mut layers = PullLayers::default();
        layers.heard("x", &info("ccc", "Downloading", Some((5, 10))));
        let end = layers.end("x");
        assert_eq!(end.len(), 1);
        assert!(end[0].2);
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
