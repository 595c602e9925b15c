//! What a project's `.glci.toml` may not do on its own: it comes with the repository, so a
//! cloned project must not be able to open the stand-in GitLab (and every job's secrets) to
//! the network, hand its jobs the engine's socket (root on this machine), or turn privileged
//! containers back on. Each needs the user's global file to allow it; the error names the
//! project file, the line and the key.

use super::file::FileSettings;
use super::schema::{
    self, DOCKER_ALLOW_PROJECT_PRIVILEGED, DOCKER_ALLOW_PROJECT_SOCKET, DOCKER_PRIVILEGED,
    DOCKER_SOCKET_PASSTHROUGH, NETWORK_ALLOW_PROJECT_BIND_ALL, NETWORK_BIND, REGISTRY_EXTERNAL,
    REGISTRY_PASSWORD, REGISTRY_PUSH_THROUGH, REGISTRY_PUSH_THROUGH_PASSWORD,
};
use super::value::Value;
use super::SettingsError;

/// Whether `global` (if any) sets the boolean `key` to true.
fn allows(global: Option<&FileSettings>, key: &str) -> bool {
    global
        .and_then(|g| g.get(key))
        .is_some_and(|(v, _)| *v == Value::Bool(true))
}

/// Refuses the first setting of `project` that loosens security without the global file's
/// leave.
pub fn check_project(
    project: &FileSettings,
    global: Option<&FileSettings>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), SettingsError> {
    let env_password = |key: &str| match schema::key(key).map(|k| k.env) {
        Some(schema::Env::Var(var)) => env(var).filter(|v| !v.is_empty()),
        _ => None,
    };
    let refuse = |key: &str, line: usize, what: &str, allow_key: &str| {
        SettingsError::Invalid {
        path: project.path.clone(),
        line,
        key: key.to_string(),
        message: format!(
            "a project's settings file may not {what}; set `{allow_key} = true` in the global settings file (GLCI_HOME/config.toml) to allow it"
        ),
    }
    };
    if let Some((Value::Ip(ip), line)) = project.get(NETWORK_BIND) {
        if ip.is_unspecified() && !allows(global, NETWORK_ALLOW_PROJECT_BIND_ALL) {
            return Err(refuse(
                NETWORK_BIND,
                *line,
                &format!(
                    "bind all interfaces (`{ip}`): every job's secrets pass through this server"
                ),
                NETWORK_ALLOW_PROJECT_BIND_ALL,
            ));
        }
    }
    if let Some((Value::Bool(true), line)) = project.get(DOCKER_SOCKET_PASSTHROUGH) {
        if !allows(global, DOCKER_ALLOW_PROJECT_SOCKET) {
            return Err(refuse(
                DOCKER_SOCKET_PASSTHROUGH,
                *line,
                "turn socket passthrough on (a job with the engine's socket controls this machine)",
                DOCKER_ALLOW_PROJECT_SOCKET,
            ));
        }
    }
    // A registry the repository chose never gets the user's password (from the global file
    // or the environment), which was meant for a registry the user chose.
    for (address, password) in [
        (REGISTRY_EXTERNAL, REGISTRY_PASSWORD),
        (REGISTRY_PUSH_THROUGH, REGISTRY_PUSH_THROUGH_PASSWORD),
    ] {
        let Some((_, line)) = project.get(address) else {
            continue;
        };
        let password_given =
            global.is_some_and(|g| g.get(password).is_some()) || env_password(password).is_some();
        if password_given {
            return Err(SettingsError::Invalid {
                path: project.path.clone(),
                line: *line,
                key: address.to_string(),
                message: format!(
                    "a project's settings file may not name the registry your `{password}` is sent to; name it in the global settings file or the environment, next to the password"
                ),
            });
        }
    }
    if let Some((Value::Choice(policy), line)) = project.get(DOCKER_PRIVILEGED) {
        if *policy != "never" && !allows(global, DOCKER_ALLOW_PROJECT_PRIVILEGED) {
            return Err(refuse(
                DOCKER_PRIVILEGED,
                *line,
                &format!("allow privileged containers (`privileged = \"{policy}\"`)"),
                DOCKER_ALLOW_PROJECT_PRIVILEGED,
            ));
        }
    }
    Ok(())
}
