//! glci's settings: one place for what used to be scattered over `GLCI_*` variables and
//! flags, read once at start so `cargo glci` and `glci_test::main!()` see the same.
//!
//! Two files, both optional: the user's `GLCI_HOME/config.toml` (global) and the project's
//! `.glci.toml` at the repository's root. Precedence, highest first: command-line flags,
//! environment variables, the project file, the global file, defaults. Each resolved value
//! keeps where it came from ([`Origin`]) for `cargo glci config --show`.
//!
//! - [`schema`]: every key, its type, variable, default and whether glci honours it;
//! - [`checks`]: values of the right type that still cannot be used (paths, names, bounds);
//! - [`file`]: reading one file, with file and line in every error and unknown-key warning;
//! - [`secret`]: `$NAME` references for secrets;
//! - [`security`]: what a project file may not loosen without the global file's leave;
//! - [`value`]: values by type, read from TOML or an environment variable's text.

pub mod checks;
pub mod file;
pub mod schema;
pub mod secret;
pub mod security;
pub mod value;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub use file::{FileSettings, Scope};
use schema::{Env, Kind, KEYS};
pub use value::Value;

/// The global file's name in `GLCI_HOME`.
pub const GLOBAL_FILE: &str = "config.toml";
/// The project file's name at the repository's root.
pub const PROJECT_FILE: &str = ".glci.toml";

/// Settings that cannot be used; one error, naming the file and line or the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// The message holds the value at fault: shown with its control characters escaped.
    #[error("{}:{line}: `{key}`: {}", path.display(), crate::printable::printable(message))]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error(
        "environment variable {var} (setting `{key}`): {}",
        crate::printable::printable(message)
    )]
    Env {
        var: String,
        key: String,
        message: String,
    },
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File {
        scope: Scope,
        path: PathBuf,
        line: usize,
    },
    Env(&'static str),
    Flag(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { scope, path, line } => {
                write!(f, "{} file {}:{line}", scope.word(), path.display())
            }
            Origin::Env(var) => write!(f, "environment {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A resolved value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: Value,
    pub origin: Origin,
}

/// The resolved settings: every key that has a value.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<&'static str, Setting>,
    /// The files looked at, and whether each was there.
    pub files: Vec<(Scope, PathBuf, bool)>,
    /// Unknown keys and similar, each `PATH:LINE: ...`.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Resolves `global` and `project` (already read) with the environment `env`, highest
    /// precedence first: environment, project, global, default. Checks the project file's
    /// security rules and every value that must make sense as a whole (registry addresses,
    /// upstream lists).
    pub fn resolve(
        global: Option<&FileSettings>,
        project: Option<&FileSettings>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        if let Some(project) = project {
            security::check_project(project, global, env)?;
        }
        let mut settings = Settings::default();
        for file in [global, project].into_iter().flatten() {
            settings.warnings.extend(file.warnings.iter().cloned());
        }
        for key in KEYS {
            let from_env = env_value(key, env)?;
            let from_file = |file: Option<&FileSettings>| {
                let file = file?;
                let (value, line) = file.get(key.name)?;
                Some(Setting {
                    value: value.clone(),
                    origin: Origin::File {
                        scope: file.scope,
                        path: file.path.clone(),
                        line: *line,
                    },
                })
            };
            let default = key.default.map(|text| Setting {
                value: Value::from_text(key.kind, text).unwrap_or_else(|_| {
                    // Defaults are checked by a unit test; keep the key unset if one broke.
                    Value::Text(text.to_string())
                }),
                origin: Origin::Default,
            });
            if let Some(setting) = from_env
                .or_else(|| from_file(project))
                .or_else(|| from_file(global))
                .or(default)
            {
                settings.values.insert(key.name, setting);
            }
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Reads `GLCI_HOME/config.toml` and `<project_root>/.glci.toml` (each if present) and
    /// resolves them with the process's environment.
    pub fn discover(project_root: &Path) -> Result<Settings, SettingsError> {
        let env = |name: &str| std::env::var(name).ok();
        let global_path = crate::pipeline::home::glci_home_path()
            .ok()
            .map(|home| home.join(GLOBAL_FILE));
        let project_path = project_root.join(PROJECT_FILE);
        let global = match &global_path {
            Some(path) => FileSettings::read(path, Scope::Global, &env)?,
            None => None,
        };
        let project = FileSettings::read(&project_path, Scope::Project, &env)?;
        let mut settings = Settings::resolve(global.as_ref(), project.as_ref(), &env)?;
        if let Some(path) = global_path {
            settings.files.push((Scope::Global, path, global.is_some()));
        }
        settings
            .files
            .push((Scope::Project, project_path, project.is_some()));
        Ok(settings)
    }

    /// A digest of every resolved value (not where each came from): two processes with the
    /// same digest run pipelines alike (the glci daemon compares them). Secrets go in by
    /// value, so the digest is never shown.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for (key, setting) in &self.values {
            let value = match &setting.value {
                Value::Text(s) => s.clone(),
                Value::Secret(s) => s.value.clone(),
                other => format!("{other:?}"),
            };
            hash.update(key.as_bytes());
            hash.update([0]);
            hash.update(value.as_bytes());
            hash.update([0]);
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `key`'s resolved value, if it has one.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.values.get(key)
    }

    /// Sets `key` from a command-line flag (the highest precedence).
    pub fn set_from_flag(&mut self, key: &'static str, value: Value, flag: &str) {
        self.values.insert(
            key,
            Setting {
                value,
                origin: Origin::Flag(flag.to_string()),
            },
        );
    }

    fn value(&self, key: &str) -> Option<&Value> {
        self.values.get(key).map(|s| &s.value)
    }

    /// A text or secret `key`'s value, if set and not empty.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.value(key)? {
            Value::Text(s) => Some(s.as_str()).filter(|s| !s.is_empty()),
            Value::Secret(s) => Some(s.value.as_str()),
            _ => None,
        }
    }

    pub(crate) fn flag(&self, key: &str) -> Option<bool> {
        match self.value(key)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        match self.value(key) {
            Some(Value::List(items)) => items.clone(),
            _ => Vec::new(),
        }
    }

    fn duration(&self, key: &str) -> Option<Duration> {
        match self.value(key)? {
            Value::Duration(d) => Some(*d),
            _ => None,
        }
    }

    fn number(&self, key: &str) -> Option<u64> {
        match self.value(key)? {
            Value::Count(n) | Value::Size(n) => Some(*n),
            _ => None,
        }
    }

    /// `[docker] host`: the engine's endpoint (`DOCKER_HOST`).
    pub fn docker_host(&self) -> Option<&str> {
        self.text(schema::DOCKER_HOST)
    }

    /// `[docker] context`: the Docker context to use when no host is set (`DOCKER_CONTEXT`).
    pub fn docker_context(&self) -> Option<&str> {
        self.text(schema::DOCKER_CONTEXT)
    }

    /// `[docker] privileged = "never"`: no privileged container, ever.
    pub fn privileged_never(&self) -> bool {
        self.value(schema::DOCKER_PRIVILEGED) == Some(&Value::Choice("never"))
    }

    /// `[docker] socket_passthrough` (`GLCI_DOCKER_SOCKET`, `--docker-socket`).
    pub fn socket_passthrough(&self) -> bool {
        self.flag(schema::DOCKER_SOCKET_PASSTHROUGH)
            .unwrap_or(false)
    }

    /// `[docker] socket_path` (`GLCI_DOCKER_SOCKET_PATH`): where jobs with socket passthrough
    /// find the engine's socket.
    pub fn docker_socket_path(&self) -> &str {
        self.text(schema::DOCKER_SOCKET_PATH)
            .unwrap_or(crate::runner::socket::SOCKET_IN_JOB)
    }

    /// `[network] container_host`: the name jobs reach the stand-in GitLab under (`None`:
    /// its address, or the relay's name).
    pub fn container_host(&self) -> Option<&str> {
        self.text(schema::NETWORK_CONTAINER_HOST)
    }

    /// `[tls] validity` (`GLCI_TLS_VALIDITY`): how long the registry's leaf certificates are
    /// valid.
    pub fn tls_validity(&self) -> Option<Duration> {
        self.duration(schema::TLS_VALIDITY)
    }

    /// `[network] bind`: where the stand-in GitLab listens (`None`: the bridge address).
    pub fn bind(&self) -> Option<IpAddr> {
        match self.value(schema::NETWORK_BIND)? {
            Value::Ip(ip) => Some(*ip),
            _ => None,
        }
    }

    /// `[cache] persistent`: the S3 cache is kept in `GLCI_HOME/cache` across runs.
    pub fn cache_persistent(&self) -> bool {
        self.flag(schema::CACHE_PERSISTENT).unwrap_or(true)
    }

    /// `[cache] max_size` in bytes.
    pub fn cache_max_size(&self) -> Option<u64> {
        self.number(schema::CACHE_MAX_SIZE)
    }

    /// `[cache] ttl`.
    pub fn cache_ttl(&self) -> Option<Duration> {
        self.duration(schema::CACHE_TTL)
    }

    /// `[network] extra_hosts`: `name:address` entries for jobs' and services' `/etc/hosts`.
    pub fn extra_hosts(&self) -> Vec<String> {
        self.list(schema::NETWORK_EXTRA_HOSTS)
    }

    /// `[tls] extra_sans` (`GLCI_REGISTRY_NAMES`).
    pub fn tls_extra_sans(&self) -> Vec<String> {
        self.list(schema::TLS_EXTRA_SANS)
    }

    /// `[daemon] idle_timeout` (`GLCI_DAEMON_IDLE_TIMEOUT`); `None`: the daemon's default.
    pub fn daemon_idle_timeout(&self) -> Option<Duration> {
        self.duration(schema::DAEMON_IDLE_TIMEOUT)
    }

    /// `[daemon] log_max_bytes` (`GLCI_DAEMON_LOG_MAX_BYTES`); `None`: the daemon's default.
    pub fn daemon_log_max_bytes(&self) -> Option<u64> {
        self.number(schema::DAEMON_LOG_MAX_BYTES)
    }

    /// `[daemon] log_count` (`GLCI_DAEMON_LOG_KEEP`); `None`: the daemon's default.
    pub fn daemon_log_count(&self) -> Option<u64> {
        self.number(schema::DAEMON_LOG_COUNT)
    }

    /// `[images] default` (`GLCI_DEFAULT_IMAGE`, `--default-image`).
    pub fn default_image(&self) -> String {
        self.text(schema::IMAGES_DEFAULT)
            .unwrap_or("glci-fixture/debian:bookworm")
            .to_string()
    }

    /// An error about `key`'s value, naming where it was set.
    pub(crate) fn invalid(&self, key: &str, message: String) -> SettingsError {
        match self.values.get(key).map(|s| &s.origin) {
            Some(Origin::File { path, line, .. }) => SettingsError::Invalid {
                path: path.clone(),
                line: *line,
                key: key.to_string(),
                message,
            },
            Some(Origin::Env(var)) => SettingsError::Env {
                var: var.to_string(),
                key: key.to_string(),
                message,
            },
            Some(Origin::Flag(flag)) => SettingsError::Env {
                var: flag.clone(),
                key: key.to_string(),
                message,
            },
            Some(Origin::Default) | None => SettingsError::Env {
                var: "(default)".to_string(),
                key: key.to_string(),
                message,
            },
        }
    }

    /// Checks what only makes sense read as a whole, so a bad value is reported at start.
    fn validate(&self) -> Result<(), SettingsError> {
        // Docker's `--add-host` form: the engine would refuse anything else at the first job.
        for entry in self.extra_hosts() {
            let valid = entry.split_once(':').is_some_and(|(name, address)| {
                !name.is_empty()
                    && !name.contains(char::is_whitespace)
                    && (address == "host-gateway" || address.parse::<IpAddr>().is_ok())
            });
            if !valid {
                return Err(self.invalid(
                    schema::NETWORK_EXTRA_HOSTS,
                    format!("`{entry}` is not `name:address` (an IP address, or `host-gateway`)"),
                ));
            }
        }
        let unusable = |key: &str, e: checks::Unusable| self.invalid(key, e.to_string());
        // As written, so that `""` in a file is an error rather than the default.
        let written = |key: &str| match self.value(key) {
            Some(Value::Text(text)) => Some(text.as_str()),
            _ => None,
        };
        if let Some(path) = written(schema::DOCKER_SOCKET_PATH) {
            checks::socket_path(path).map_err(|e| unusable(schema::DOCKER_SOCKET_PATH, e))?;
        }
        if let Some(name) = written(schema::NETWORK_CONTAINER_HOST) {
            checks::host_name(name).map_err(|e| unusable(schema::NETWORK_CONTAINER_HOST, e))?;
        }
        if let Some(setting) = self.get(schema::TLS_VALIDITY) {
            if let Value::Duration(validity) = setting.value {
                checks::leaf_validity(validity, setting.value.shown())
                    .map_err(|e| unusable(schema::TLS_VALIDITY, e))?;
            }
        }
        Ok(())
    }
}

/// `key`'s value from its environment variable, if set. Empty counts as unset, except for a
/// list (`GLCI_REGISTRY_UPSTREAMS=` means none).
fn env_value(
    key: &schema::Key,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Setting>, SettingsError> {
    let (var, negated) = match key.env {
        Env::None => return Ok(None),
        Env::Var(var) => (var, false),
        Env::Negated(var) => (var, true),
    };
    let Some(text) = env(var).filter(|t| !t.is_empty() || key.kind == Kind::List) else {
        return Ok(None);
    };
    let bad = |message: String| SettingsError::Env {
        var: var.to_string(),
        key: key.name.to_string(),
        message,
    };
    let mut value = Value::from_text(key.kind, &text).map_err(|e| bad(e.to_string()))?;
    if negated {
        if let Value::Bool(b) = value {
            value = Value::Bool(!b);
        }
    }
    Ok(Some(Setting {
        value,
        origin: Origin::Env(var),
    }))
}

/// The repository root above `dir` (the nearest directory with `.git`), else `dir`: where
/// the project file lives.
pub fn project_root(dir: &Path) -> PathBuf {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(&dir)
        .to_path_buf()
}

/// The settings of this process, read once.
struct Loaded {
    settings: Settings,
    error: Option<SettingsError>,
}

static CURRENT: OnceLock<Loaded> = OnceLock::new();

fn loaded() -> &'static Loaded {
    CURRENT.get_or_init(|| {
        let root = project_root(Path::new("."));
        match Settings::discover(&root) {
            Ok(settings) => Loaded {
                settings,
                error: None,
            },
            // The error is reported by `check` (every entry point calls it at start); what
            // is read meanwhile are the defaults alone.
            Err(error) => Loaded {
                settings: Settings::resolve(None, None, &|_| None).unwrap_or_default(),
                error: Some(error),
            },
        }
    })
}

/// This process's settings (read at first use from the current directory's repository and
/// `GLCI_HOME`), or the error that keeps them from being used. Entry points call this at
/// start, so a bad file is one clear error before anything runs.
pub fn check() -> Result<&'static Settings, SettingsError> {
    let loaded = loaded();
    match &loaded.error {
        Some(error) => Err(error.clone()),
        None => Ok(&loaded.settings),
    }
}

/// This process's settings (see [`check`]; after a failed check, the defaults).
pub fn current() -> &'static Settings {
    &loaded().settings
}

#[cfg(test)]
mod tests;
