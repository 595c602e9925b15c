//! What one engine grants containers that need privileges, learned once and remembered:
//! engines whose capability bounding set lacks a capability (hardened or nested hosts, "unable
//! to apply caps") refuse `--privileged`, and then only an explicit capability set works.
//!
//! Two users share what is learned here, in this process and in a memo volume on the engine
//! ([`MEMO_VOLUME`]): Docker-in-Docker services (their first start is the probe, see
//! [`super::dind`]) and `privileged = true` in a runner configuration's `[runners.docker]`
//! (a probe container, see [`engine_allows_privileged`]), whose settings then fall back to
//! [`HostSettings::without_privileged`], as [`job_host_settings`] says in the job's log.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use bollard::models::VolumeCreateRequest;

use crate::docker::{Engine, Owner};

use super::build_container::{ContainerConfig, JobContainer};
use super::docker_settings::HostSettings;
use super::runner_config::DockerSettings;
use super::trace::Trace;

/// How containers that need privileges start on one engine, once learned: with
/// `--privileged`, or (an engine that refuses it) with the capability set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrivilegedStart {
    Privileged,
    Capabilities,
}

impl PrivilegedStart {
    fn as_str(self) -> &'static str {
        match self {
            PrivilegedStart::Privileged => "privileged",
            PrivilegedStart::Capabilities => "capabilities",
        }
    }
}

/// What each engine (by endpoint) allows, as learned or recalled by this process.
static KNOWN: LazyLock<Mutex<HashMap<String, PrivilegedStart>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The empty volume that remembers on the engine itself how privileged containers start
/// there, so that each run does not pay for a refused `--privileged` start again (about 1.5 s
/// here). It carries `io.glci.pipeline`, so `cargo glci clean --all` forgets it; the next
/// DinD job probes again. (Its name and label predate the probe for `[runners.docker]`; they
/// stay, so that engines keep what they learned.)
const MEMO_VOLUME: &str = "glci-dind-privileges";
/// The memo volume's label holding [`PrivilegedStart::as_str`].
const LABEL_MEMO: &str = "io.glci.dind-privileges";

/// What this process, or the engine's memo volume, knows of `engine`.
pub(crate) async fn recall(engine: &Engine) -> Option<PrivilegedStart> {
    let known = {
        let map = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        map.get(engine.endpoint()).copied()
    };
    if known.is_some() {
        return known;
    }
    let memo = engine.client().inspect_volume(MEMO_VOLUME).await.ok()?;
    let how = match memo.labels.get(LABEL_MEMO).map(String::as_str) {
        Some("privileged") => PrivilegedStart::Privileged,
        Some("capabilities") => PrivilegedStart::Capabilities,
        _ => return None,
    };
    let mut map = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    map.insert(engine.endpoint().to_string(), how);
    Some(how)
}

/// Remembers whether `engine` runs privileged containers, unless that is known already.
async fn remember_privileged(engine: &Engine, allowed: bool) {
    let how = if allowed {
        PrivilegedStart::Privileged
    } else {
        PrivilegedStart::Capabilities
    };
    if recall(engine).await != Some(how) {
        learn(engine, how).await;
    }
}

/// Forgets what was learned about `engine`, here and on the engine: the next DinD service or
/// privileged `[runners.docker]` job probes again (after the engine's host changed, or to see
/// the probe work).
pub async fn forget_privileges(engine: &Engine) {
    {
        let mut map = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(engine.endpoint());
    }
    let opts = bollard::query_parameters::RemoveVolumeOptionsBuilder::new()
        .force(true)
        .build();
    let _ = engine.client().remove_volume(MEMO_VOLUME, Some(opts)).await;
}

/// Remembers `how` for `engine`, in this process and in the engine's memo volume.
pub(crate) async fn learn(engine: &Engine, how: PrivilegedStart) {
    forget_privileges(engine).await;
    {
        let mut map = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(engine.endpoint().to_string(), how);
    }
    // A concurrent run may have made it meanwhile (409): it learned the same thing.
    let _ = engine
        .client()
        .create_volume(VolumeCreateRequest {
            name: Some(MEMO_VOLUME.into()),
            labels: Some(HashMap::from([
                (
                    crate::docker::LABEL_PIPELINE.to_string(),
                    "dind-memo".to_string(),
                ),
                (LABEL_MEMO.to_string(), how.as_str().to_string()),
            ])),
            ..Default::default()
        })
        .await;
}

/// The build container's and the services' settings for a job of `image`; privileges the
/// engine refuses become [`HostSettings::without_privileged`], said in the job's log.
pub async fn job_host_settings(
    engine: &Engine,
    owner: &Owner,
    image: &str,
    docker: &DockerSettings,
    trace: &Trace,
) -> (HostSettings, HostSettings) {
    let mut build = HostSettings::for_build(docker);
    let mut service = HostSettings::for_service(docker);
    if (build.privileged || service.privileged)
        && !engine_allows_privileged(engine, owner, image).await
    {
        trace.warning(
            "privileged = true: this Docker engine refuses privileged containers (\"unable to apply caps\"); running them with every capability but SYS_RESOURCE and seccomp, AppArmor and system paths unconfined instead (enough for Docker-in-Docker)",
        );
        build = build.without_privileged();
        service = service.without_privileged();
    }
    (build, service)
}

/// Whether the engine at `engine`'s endpoint runs privileged containers, probed once per
/// engine and remembered with what Docker-in-Docker services learn ([`recall`]): a
/// privileged container of `image` whose command does not exist is started; an engine that
/// refuses privileges fails before looking for the command ("unable to apply caps"), one that
/// allows them fails on the command.
pub async fn engine_allows_privileged(engine: &Engine, owner: &Owner, image: &str) -> bool {
    if let Some(how) = recall(engine).await {
        return how == PrivilegedStart::Privileged;
    }
    match probe_privileged(engine, owner, image).await {
        Some(allowed) => {
            remember_privileged(engine, allowed).await;
            allowed
        }
        // No probe container: nothing learned, and privileges assumed refused.
        None => false,
    }
}

async fn probe_privileged(engine: &Engine, owner: &Owner, image: &str) -> Option<bool> {
    let config = ContainerConfig {
        name: format!(
            "{}-privileged-probe-{}",
            owner.name_prefix(),
            rand::random::<u32>()
        ),
        image: image.to_string(),
        entrypoint: Some(vec!["/glci-privileged-probe".to_string()]),
        host: HostSettings {
            privileged: true,
            ..HostSettings::default()
        },
        ..ContainerConfig::default()
    };
    let container = JobContainer::create(engine, owner, &config).await.ok()?;
    let refused = match container.start(engine).await {
        Ok(()) => false,
        Err(e) => refuses_privileges(&e.to_string()),
    };
    container.remove(engine).await;
    Some(!refused)
}

/// The engine's answer when its capability bounding set cannot grant what `--privileged`
/// asks for.
fn refuses_privileges(error: &str) -> bool {
    error.contains("apply caps") || error.contains("operation not permitted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_without_the_capabilities_refuses_with_apply_caps() {
        assert!(refuses_privileges(
            "unable to apply caps: operation not permitted"
        ));
    }
}
