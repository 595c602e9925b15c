//! `[runners.docker]` applied to a job's containers, as gitlab-runner's Docker executor
//! applies it (`createHostConfig` for the build container, `createHostConfigForService` for
//! services): privileges, capabilities, security options, volumes, devices, `/dev/shm`, hosts
//! entries and the network of jobs without services.
//!
//! `privileged = true` on an engine that refuses privileged containers (a capability bounding
//! set without `CAP_SYS_RESOURCE`: "unable to apply caps") falls back to
//! [`HostSettings::without_privileged`], the set of capabilities and security options that
//! runs Docker-in-Docker there; whether the engine refuses is learned by
//! [`super::privileges`], which sits above this file and `build_container.rs` (it starts a
//! probe container), so that the settings themselves import neither.

use bollard::models::{ContainerCreateBody, DeviceMapping, HostConfig};

use super::runner_config::DockerSettings;

/// What `[runners.docker]` sets on one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    /// `HOST:CONTAINER[:MODE]` binds and bare `CONTAINER` paths (anonymous volumes, removed
    /// with the container).
    pub volumes: Vec<String>,
    pub devices: Vec<String>,
    pub extra_hosts: Vec<String>,
    /// `/dev/shm` in bytes.
    pub shm_size: Option<i64>,
    /// Used only for a container on no network of the job's own.
    pub network_mode: Option<String>,
}

impl HostSettings {
    /// The build container's settings.
    pub fn for_build(docker: &DockerSettings) -> HostSettings {
        HostSettings {
            privileged: docker.privileged,
            cap_add: docker.cap_add.clone(),
            cap_drop: docker.cap_drop.clone(),
            security_opt: docker.security_opt.clone(),
            volumes: docker.volumes.clone(),
            devices: docker.devices.clone(),
            extra_hosts: docker.extra_hosts.clone(),
            shm_size: (docker.shm_size > 0).then_some(docker.shm_size),
            network_mode: docker.network_mode.clone().filter(|m| !m.is_empty()),
        }
    }

    /// A service's settings: gitlab-runner gives services `services_privileged` (default
    /// `privileged`), the volumes, hosts entries and `/dev/shm`, but not the build container's
    /// capabilities, security options or devices.
    pub fn for_service(docker: &DockerSettings) -> HostSettings {
        HostSettings {
            privileged: docker.services_privileged.unwrap_or(docker.privileged),
            volumes: docker.volumes.clone(),
            extra_hosts: docker.extra_hosts.clone(),
            shm_size: (docker.shm_size > 0).then_some(docker.shm_size),
            ..HostSettings::default()
        }
    }

    /// `body` with these settings laid over what the executor set.
    pub fn apply(&self, mut body: ContainerCreateBody) -> ContainerCreateBody {
        if *self == HostSettings::default() {
            return body;
        }
        let host = body.host_config.get_or_insert_with(HostConfig::default);
        // Only ever adds privileges: what the executor asked for (a Docker-in-Docker service's)
        // stays.
        if self.privileged {
            host.privileged = Some(true);
        }
        extend(&mut host.cap_add, &self.cap_add);
        extend(&mut host.cap_drop, &self.cap_drop);
        // `systempaths=unconfined` is the docker CLI's: the API takes it as empty masked and
        // read-only path lists.
        let (system_paths, security_opt): (Vec<String>, Vec<String>) = self
            .security_opt
            .iter()
            .cloned()
            .partition(|o| o == "systempaths=unconfined");
        extend(&mut host.security_opt, &security_opt);
        if !system_paths.is_empty() {
            host.masked_paths = Some(Vec::new());
            host.readonly_paths = Some(Vec::new());
        }
        extend(&mut host.extra_hosts, &self.extra_hosts);
        let (binds, anonymous): (Vec<&String>, Vec<&String>) =
            self.volumes.iter().partition(|v| v.contains(':'));
        extend(
            &mut host.binds,
            &binds.into_iter().cloned().collect::<Vec<_>>(),
        );
        if !anonymous.is_empty() {
            let volumes = body.volumes.get_or_insert_with(Vec::new);
            volumes.extend(anonymous.into_iter().cloned());
        }
        if !self.devices.is_empty() {
            host.devices = Some(self.devices.iter().map(|d| device(d)).collect());
        }
        if self.shm_size.is_some() {
            host.shm_size = self.shm_size;
        }
        if host.network_mode.is_none() {
            host.network_mode = self.network_mode.clone();
        }
        body
    }

    /// These settings for an engine that refuses privileged containers: privileges become
    /// the capability set that works there (every capability but `SYS_RESOURCE`, seccomp,
    /// AppArmor and system paths unconfined, the cgroup tree writable), as a Docker daemon
    /// inside the container needs.
    pub fn without_privileged(&self) -> HostSettings {
        let mut out = self.clone();
        if !self.privileged {
            return out;
        }
        out.privileged = false;
        push_new(&mut out.cap_add, "ALL");
        push_new(&mut out.cap_drop, "SYS_RESOURCE");
        for opt in [
            "seccomp=unconfined",
            "apparmor=unconfined",
            "systempaths=unconfined",
        ] {
            push_new(&mut out.security_opt, opt);
        }
        push_new(&mut out.volumes, "/sys/fs/cgroup:/sys/fs/cgroup:rw");
        out
    }
}

fn extend(field: &mut Option<Vec<String>>, more: &[String]) {
    if more.is_empty() {
        return;
    }
    field
        .get_or_insert_with(Vec::new)
        .extend(more.iter().cloned());
}

fn push_new(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

/// `HOST[:CONTAINER[:PERMISSIONS]]`, as `docker run --device`.
fn device(spec: &str) -> DeviceMapping {
    let mut parts = spec.splitn(3, ':');
    let host = parts.next().unwrap_or_default().to_string();
    let container = parts
        .next()
        .filter(|p| !p.is_empty())
        .map_or_else(|| host.clone(), str::to_string);
    let permissions = parts.next().unwrap_or("rwm").to_string();
    DeviceMapping {
        path_on_host: Some(host),
        path_in_container: Some(container),
        cgroup_permissions: Some(permissions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_lay_over_the_executors_host_config() {
        let docker = DockerSettings {
            privileged: true,
            cap_add: vec!["NET_ADMIN".into()],
            volumes: vec![
                "/var/run/docker.sock:/var/run/docker.sock".into(),
                "/cache".into(),
            ],
            devices: vec!["/dev/fuse".into()],
            shm_size: 1 << 20,
            network_mode: Some("host".into()),
            extra_hosts: vec!["a:1.2.3.4".into()],
            ..DockerSettings::default()
        };
        let body = ContainerCreateBody {
            host_config: Some(HostConfig {
                extra_hosts: Some(vec!["host.docker.internal:host-gateway".into()]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let body = HostSettings::for_build(&docker).apply(body);
        let host = body.host_config.unwrap();
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(
            host.binds,
            Some(vec!["/var/run/docker.sock:/var/run/docker.sock".to_string()])
        );
        assert_eq!(body.volumes, Some(vec!["/cache".to_string()]));
        assert_eq!(host.extra_hosts.unwrap().len(), 2);
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(host.shm_size, Some(1 << 20));
        let device = &host.devices.unwrap()[0];
        assert_eq!(device.path_in_container.as_deref(), Some("/dev/fuse"));
        // Services: privileges and volumes, not the build container's capabilities.
        let service = HostSettings::for_service(&docker);
        assert!(service.privileged && service.cap_add.is_empty());
    }

    #[test]
    fn the_fallback_for_privileged_is_the_dind_capability_set() {
        let settings = HostSettings {
            privileged: true,
            ..HostSettings::default()
        }
        .without_privileged();
        assert!(!settings.privileged);
        assert_eq!(settings.cap_add, vec!["ALL"]);
        assert_eq!(settings.cap_drop, vec!["SYS_RESOURCE"]);
        assert!(settings
            .security_opt
            .contains(&"seccomp=unconfined".to_string()));
        let body = settings.apply(ContainerCreateBody::default());
        let host = body.host_config.unwrap();
        assert_eq!(host.masked_paths, Some(Vec::new()));
        assert!(!host
            .security_opt
            .unwrap()
            .contains(&"systempaths=unconfined".to_string()));
    }
}
