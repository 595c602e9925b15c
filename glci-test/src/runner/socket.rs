//! Socket passthrough, the way the blog posts set it up: the host engine's socket mounted into
//! the job (`volumes = ["/var/run/docker.sock:/var/run/docker.sock"]`, or `--docker-socket`),
//! and the builds directory at the same path on the host and in the job, so that
//! `docker run -v "$CI_PROJECT_DIR:/src" …` inside the job, which the host engine resolves on
//! the host, sees the job's files.
//!
//! Builds directories shared with the host follow gitlab-runner's layout for a host-mounted
//! builds directory (`Build.ProjectUniqueDir` with `sharedDir`):
//! `<builds_dir>/<runner short token>/<concurrent id>/<namespace>/<project>`, so jobs running
//! at once never share a checkout.
//!
//! Containers a job starts through the socket are the job's: glci never removes them (it
//! cannot tell them from containers someone else started on the same engine at the same
//! time); it lists those still running when the job ends.

use std::path::{Path, PathBuf};

use bollard::query_parameters::ListContainersOptionsBuilder;

use crate::docker::{Engine, LABEL_OWNER};

/// Where jobs find the engine's socket unless `[docker] socket_path` says otherwise: where the
/// official runner's socket mode and the blog posts put it, and where Docker clients look
/// without `DOCKER_HOST`.
pub const SOCKET_IN_JOB: &str = "/var/run/docker.sock";

/// Said once per run when a runner mounts the engine's socket into jobs.
pub const SECURITY_WARNING: &str = "socket passthrough: jobs get the Docker engine's socket. A job with the socket controls every container on this machine's engine and, through it, the machine itself (it can start a privileged container mounting `/`). Run only pipelines you trust this way.";

/// Whether `volumes` (`[runners.docker] volumes`) mount an engine socket into the job: a
/// `docker.sock` on either side, or anything at `in_job` (`[docker] socket_path`).
pub fn mounts_socket(volumes: &[String], in_job: &str) -> bool {
    volumes.iter().any(|v| {
        let mut parts = v.split(':');
        let (host, container) = (parts.next(), parts.next());
        container.is_some_and(|c| c.ends_with("docker.sock") || c == in_job)
            || host.is_some_and(|h| h.ends_with("docker.sock") && container.is_some())
    })
}

/// The bind that gives jobs `engine`'s socket (`--docker-socket`): its unix socket at
/// `in_job` (`[docker] socket_path`, default [`SOCKET_IN_JOB`]). `None` for an engine reached
/// otherwise (`tcp://`, `ssh://`), whose socket is not a path on the engine's host that glci
/// knows.
pub fn socket_volume(engine: &Engine, in_job: &str) -> Option<String> {
    let path = engine.endpoint().strip_prefix("unix://")?;
    Some(format!("{path}:{in_job}"))
}

/// `DOCKER_HOST` for a job whose `volumes` put the engine's socket at `in_job` when that is
/// not where Docker clients look by themselves ([`SOCKET_IN_JOB`]); `None` otherwise, so
/// jobs at the default path get exactly what gitlab-runner's socket mode gives (nothing).
pub fn docker_host(volumes: &[String], in_job: &str) -> Option<String> {
    if in_job == SOCKET_IN_JOB {
        return None;
    }
    volumes
        .iter()
        .any(|v| v.split(':').nth(1) == Some(in_job))
        .then(|| format!("unix://{in_job}"))
}

/// A builds directory the job shares with the host: where jobs see it and where it is on the
/// host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBuilds {
    /// `CI_BUILDS_DIR`.
    pub in_job: String,
    /// The same directory on the engine's host.
    pub on_host: PathBuf,
    /// The bind glci adds for it (`None`: one of the runner's `volumes` mounts it already).
    pub bind: Option<(String, String)>,
}

impl SharedBuilds {
    /// The builds directory `builds_dir` when one of `volumes` (`HOST:CONTAINER[:MODE]`)
    /// mounts it or a directory above it from the host, as gitlab-runner's
    /// `IsHostMountedVolume` decides.
    pub fn from_volumes(builds_dir: &str, volumes: &[String]) -> Option<SharedBuilds> {
        let builds_dir = builds_dir.trim_end_matches('/');
        volumes.iter().find_map(|volume| {
            let mut parts = volume.split(':');
            let host = parts.next()?;
            let container = parts.next()?.trim_end_matches('/');
            let below = if builds_dir == container {
                ""
            } else {
                builds_dir.strip_prefix(container)?.strip_prefix('/')?
            };
            Some(SharedBuilds {
                in_job: builds_dir.to_string(),
                on_host: Path::new(host).join(below),
                bind: None,
            })
        })
    }

    /// A host directory mounted at its own path, for socket passthrough without a builds
    /// volume in the configuration.
    pub fn same_path(on_host: &Path) -> SharedBuilds {
        let path = on_host.to_string_lossy().into_owned();
        SharedBuilds {
            in_job: path.clone(),
            on_host: on_host.to_path_buf(),
            bind: Some((path.clone(), path)),
        }
    }

    /// The job's unique directory below the builds directory (gitlab-runner's shared-dir
    /// layout, without the project path): `<short token>/<concurrent id>`.
    pub fn unique_dir(short_token: &str, concurrent_id: usize) -> String {
        format!("{short_token}/{concurrent_id}")
    }
}

/// Containers running on `engine` that were created after `build_container` (the job's build
/// container, created when the job's own containers exist) and carry no glci label: those a
/// job started through the socket and left running. `name (image)` each.
pub async fn left_running(engine: &Engine, build_container: &str) -> Vec<String> {
    let opts = ListContainersOptionsBuilder::new()
        .all(false)
        .filters(&std::collections::HashMap::from([(
            "since",
            vec![build_container],
        )]))
        .build();
    let Ok(list) = engine.client().list_containers(Some(opts)).await else {
        return Vec::new();
    };
    list.into_iter()
        .filter(|c| {
            !c.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(LABEL_OWNER))
        })
        .map(|c| {
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .or(c.id)
                .unwrap_or_default();
            format!("{name} ({})", c.image.unwrap_or_default())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_volume_is_recognised() {
        assert!(mounts_socket(
            &[
                "/builds:/builds".into(),
                "/var/run/docker.sock:/var/run/docker.sock".into()
            ],
            SOCKET_IN_JOB
        ));
        assert!(mounts_socket(
            &["/run/docker.sock:/var/run/docker.sock:ro".into()],
            SOCKET_IN_JOB
        ));
        assert!(!mounts_socket(
            &["/cache".into(), "/builds:/builds".into()],
            SOCKET_IN_JOB
        ));
        // An engine socket of another name, at the configured path.
        let podman = ["/run/podman/podman.sock:/run/engine.sock".to_string()];
        assert!(mounts_socket(&podman, "/run/engine.sock"));
        assert!(!mounts_socket(&podman, SOCKET_IN_JOB));
    }

    #[test]
    fn only_a_socket_away_from_the_default_path_sets_docker_host() {
        let at_default = ["/var/run/docker.sock:/var/run/docker.sock".to_string()];
        assert_eq!(docker_host(&at_default, SOCKET_IN_JOB), None);
        let elsewhere = ["/var/run/docker.sock:/run/engine.sock:ro".to_string()];
        assert_eq!(
            docker_host(&elsewhere, "/run/engine.sock").as_deref(),
            Some("unix:///run/engine.sock")
        );
        // A volume that puts the socket somewhere else than the setting says is the
        // configuration's own choice, as in gitlab-runner: no DOCKER_HOST.
        assert_eq!(docker_host(&elsewhere, "/run/other.sock"), None);
    }

    #[test]
    fn a_builds_volume_shares_the_builds_directory() {
        let volumes = vec![
            "/var/run/docker.sock:/var/run/docker.sock".to_string(),
            "/srv/builds:/builds".to_string(),
        ];
        let shared = SharedBuilds::from_volumes("/builds", &volumes).unwrap();
        assert_eq!(shared.on_host, Path::new("/srv/builds"));
        assert_eq!(shared.in_job, "/builds");
        let below = SharedBuilds::from_volumes("/builds/ci/", &volumes).unwrap();
        assert_eq!(below.on_host, Path::new("/srv/builds/ci"));
        assert_eq!(SharedBuilds::from_volumes("/buildsx", &volumes), None);
        assert_eq!(SharedBuilds::from_volumes("/other", &volumes), None);
    }
}
