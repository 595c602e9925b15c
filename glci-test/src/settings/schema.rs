//! Every key of glci's settings files: its section, type, environment variable, default, and
//! whether glci has behaviour behind it. One table, so loading, precedence, `cargo glci config
//! --show` and the README cannot disagree about what exists.

/// The type of a key's value, and how its text (a TOML value, or an environment variable's
/// text) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Text,
    /// A string that may be a `$NAME` reference to an environment variable (see `secret.rs`);
    /// never printed.
    Secret,
    /// `true`/`false` (in the environment also `1`/`yes`, `0`/`no`).
    Bool,
    /// A non-negative integer.
    Count,
    /// Bytes: an integer, or a string with a unit (`512MiB`, `20 GiB`, `1GB`).
    Size,
    /// Seconds as an integer, or GitLab's human durations (`14d`, `2 weeks`, `1h 30m`).
    Duration,
    /// An IP address.
    Ip,
    /// A list of strings (in the environment: separated by commas).
    List,
    /// One of the listed words.
    Choice(&'static [&'static str]),
}

/// How an environment variable maps onto a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    None,
    /// The variable's text is the value.
    Var(&'static str),
    /// A `Bool` key that the variable turns off (`GLCI_NO_REGISTRY=1` is `enabled = false`).
    Negated(&'static str),
}

/// Whether glci does what a key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Honoured, in either file.
    Wired,
    /// Honoured, and only the global file may set it: what a project file could loosen (or
    /// send elsewhere) on its own.
    GlobalOnly,
    /// Refused with this reason: glci has nothing behind it yet, and a setting that silently
    /// does nothing is worse than an error.
    Refused(&'static str),
}

/// One key of a settings file.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `section.key`.
    pub name: &'static str,
    pub kind: Kind,
    pub env: Env,
    /// The value when nothing sets it, as text read like an environment variable's (`None`:
    /// unset, the behaviour described in `about`).
    pub default: Option<&'static str>,
    pub support: Support,
    /// What it does, one line (for `config --show` and the README).
    pub about: &'static str,
}

pub const DOCKER_HOST: &str = "docker.host";
pub const DOCKER_CONTEXT: &str = "docker.context";
pub const DOCKER_PRIVILEGED: &str = "docker.privileged";
pub const DOCKER_SOCKET_PASSTHROUGH: &str = "docker.socket_passthrough";
pub const DOCKER_SOCKET_PATH: &str = "docker.socket_path";
pub const DOCKER_ALLOW_PROJECT_PRIVILEGED: &str = "docker.allow_project_privileged";
pub const DOCKER_ALLOW_PROJECT_SOCKET: &str = "docker.allow_project_socket_passthrough";
pub const NETWORK_BIND: &str = "network.bind";
pub const NETWORK_ALLOW_PROJECT_BIND_ALL: &str = "network.allow_project_bind_all";
pub const NETWORK_CONTAINER_HOST: &str = "network.container_host";
pub const NETWORK_EXTRA_HOSTS: &str = "network.extra_hosts";
pub const CACHE_PERSISTENT: &str = "cache.persistent";
pub const CACHE_MAX_SIZE: &str = "cache.max_size";
pub const CACHE_TTL: &str = "cache.ttl";
pub const REGISTRY_ENABLED: &str = "registry.enabled";
pub const REGISTRY_UPSTREAMS: &str = "registry.upstreams";
pub const REGISTRY_PUSH_THROUGH: &str = "registry.push_through";
pub const REGISTRY_PUSH_THROUGH_USER: &str = "registry.push_through_user";
pub const REGISTRY_PUSH_THROUGH_PASSWORD: &str = "registry.push_through_password";
pub const REGISTRY_EXTERNAL: &str = "registry.external";
pub const REGISTRY_USER: &str = "registry.user";
pub const REGISTRY_PASSWORD: &str = "registry.password";
pub const TLS_EXTRA_SANS: &str = "tls.extra_sans";
pub const TLS_VALIDITY: &str = "tls.validity";
pub const DAEMON_IDLE_TIMEOUT: &str = "daemon.idle_timeout";
pub const DAEMON_LOG_MAX_BYTES: &str = "daemon.log_max_bytes";
pub const DAEMON_LOG_COUNT: &str = "daemon.log_count";
pub const IMAGES_DEFAULT: &str = "images.default";

/// The privileged policy's words: `auto` starts Docker-in-Docker services `--privileged`
/// where the engine allows it (else with a capability set) and honours a runner
/// configuration's `privileged = true`; `never` uses the capability set only and refuses
/// `privileged = true`.
pub const PRIVILEGED_POLICIES: &[&str] = &["auto", "never"];

/// Every key, in the order `config --show` prints them.
pub const KEYS: &[Key] = &[
    Key {
        name: DOCKER_HOST,
        kind: Kind::Text,
        env: Env::Var("DOCKER_HOST"),
        default: None,
        // Not a repository's choice: jobs' sources and masked variables go to that engine.
        support: Support::GlobalOnly,
        about: "the engine: unix://, tcp://, ssh:// (unset: the Docker context, else /var/run/docker.sock)",
    },
    Key {
        name: DOCKER_CONTEXT,
        kind: Kind::Text,
        env: Env::Var("DOCKER_CONTEXT"),
        default: None,
        support: Support::GlobalOnly,
        about: "the Docker context whose engine is used when no host is set (unset: currentContext of ~/.docker/config.json)",
    },
    Key {
        name: DOCKER_PRIVILEGED,
        kind: Kind::Choice(PRIVILEGED_POLICIES),
        env: Env::None,
        default: Some("auto"),
        support: Support::Wired,
        about: "`auto`: Docker-in-Docker --privileged where the engine allows it, runner configs may say privileged = true; `never`: capability set only, privileged = true refused",
    },
    Key {
        name: DOCKER_SOCKET_PASSTHROUGH,
        kind: Kind::Bool,
        env: Env::Var("GLCI_DOCKER_SOCKET"),
        default: Some("false"),
        support: Support::Wired,
        about: "give jobs the engine's socket (what --docker-socket does)",
    },
    Key {
        name: DOCKER_SOCKET_PATH,
        kind: Kind::Text,
        env: Env::Var("GLCI_DOCKER_SOCKET_PATH"),
        default: Some(crate::runner::socket::SOCKET_IN_JOB),
        // Either file: the path only says where inside the job the socket goes, and turns
        // nothing on (passthrough itself stays under `allow_project_socket_passthrough`).
        support: Support::Wired,
        about: "where jobs with socket passthrough find the engine's socket; another path than the default also sets DOCKER_HOST=unix://PATH in the job",
    },
    Key {
        name: DOCKER_ALLOW_PROJECT_PRIVILEGED,
        kind: Kind::Bool,
        env: Env::None,
        default: Some("false"),
        support: Support::GlobalOnly,
        about: "let a project's .glci.toml set privileged = \"auto\"",
    },
    Key {
        name: DOCKER_ALLOW_PROJECT_SOCKET,
        kind: Kind::Bool,
        env: Env::None,
        default: Some("false"),
        support: Support::GlobalOnly,
        about: "let a project's .glci.toml set socket_passthrough = true",
    },
    Key {
        name: NETWORK_BIND,
        kind: Kind::Ip,
        env: Env::None,
        default: None,
        support: Support::Wired,
        about: "the address the stand-in GitLab listens on (unset: this host's address on the engine's bridge)",
    },
    Key {
        name: NETWORK_ALLOW_PROJECT_BIND_ALL,
        kind: Kind::Bool,
        env: Env::None,
        default: Some("false"),
        support: Support::GlobalOnly,
        about: "let a project's .glci.toml bind all interfaces (0.0.0.0, ::)",
    },
    Key {
        name: NETWORK_CONTAINER_HOST,
        kind: Kind::Text,
        env: Env::None,
        default: None,
        // Either file: it renames what the project's own jobs reach, nothing else.
        support: Support::Wired,
        about: "the host name jobs reach the stand-in GitLab under (CI_API_V4_URL, the clone URL, CI_REGISTRY; unset: the bridge address, or `glci-server` through the relay)",
    },
    Key {
        name: NETWORK_EXTRA_HOSTS,
        kind: Kind::List,
        env: Env::None,
        default: None,
        support: Support::Wired,
        about: "/etc/hosts entries (`name:address`) of every job and service container, as gitlab-runner's extra_hosts",
    },
    Key {
        name: CACHE_PERSISTENT,
        kind: Kind::Bool,
        env: Env::None,
        default: Some("true"),
        support: Support::Wired,
        about: "keep the S3 cache (`cache:`) across runs in GLCI_HOME/cache (false: each pipeline starts empty)",
    },
    Key {
        name: CACHE_MAX_SIZE,
        kind: Kind::Size,
        env: Env::None,
        default: Some("20GiB"),
        support: Support::Wired,
        about: "the cache's total size; the oldest entries are evicted beyond it",
    },
    Key {
        name: CACHE_TTL,
        kind: Kind::Duration,
        env: Env::None,
        default: Some("14d"),
        support: Support::Wired,
        about: "cache entries older than this are gone",
    },
    Key {
        name: REGISTRY_ENABLED,
        kind: Kind::Bool,
        env: Env::Negated("GLCI_NO_REGISTRY"),
        default: Some("true"),
        support: Support::Wired,
        about: "give jobs a container registry (false: no CI_REGISTRY*, as --no-registry)",
    },
    Key {
        name: REGISTRY_UPSTREAMS,
        kind: Kind::List,
        env: Env::Var("GLCI_REGISTRY_UPSTREAMS"),
        default: Some("docker.io=https://registry-1.docker.io,registry.gitlab.com=https://registry.gitlab.com"),
        support: Support::Wired,
        about: "the pull-through cache's upstreams, in order: URL or NAME=URL (empty: none, only the engine)",
    },
    Key {
        name: REGISTRY_PUSH_THROUGH,
        kind: Kind::Text,
        env: Env::Var("GLCI_PUSH_THROUGH"),
        default: None,
        support: Support::Wired,
        about: "mirror every push to glci's registry to this http(s):// registry too",
    },
    Key {
        name: REGISTRY_PUSH_THROUGH_USER,
        kind: Kind::Text,
        env: Env::Var("GLCI_PUSH_THROUGH_USER"),
        default: None,
        support: Support::Wired,
        about: "the user for push_through",
    },
    Key {
        name: REGISTRY_PUSH_THROUGH_PASSWORD,
        kind: Kind::Secret,
        env: Env::Var("GLCI_PUSH_THROUGH_PASSWORD"),
        default: None,
        support: Support::Wired,
        about: "its password (a $NAME reference keeps it out of the file)",
    },
    Key {
        name: REGISTRY_EXTERNAL,
        kind: Kind::Text,
        env: Env::Var("GLCI_REGISTRY"),
        default: None,
        support: Support::Wired,
        about: "a real registry ([https://]host[:port]) jobs use instead of glci's (as --registry)",
    },
    Key {
        name: REGISTRY_USER,
        kind: Kind::Text,
        env: Env::Var("GLCI_REGISTRY_USER"),
        default: None,
        support: Support::Wired,
        about: "CI_REGISTRY_USER for the external registry",
    },
    Key {
        name: REGISTRY_PASSWORD,
        kind: Kind::Secret,
        env: Env::Var("GLCI_REGISTRY_PASSWORD"),
        default: None,
        support: Support::Wired,
        about: "CI_REGISTRY_PASSWORD for the external registry (a $NAME reference keeps it out of the file)",
    },
    Key {
        name: TLS_EXTRA_SANS,
        kind: Kind::List,
        env: Env::Var("GLCI_REGISTRY_NAMES"),
        default: None,
        support: Support::Wired,
        about: "names and addresses the registry's certificate is valid for besides the bridge address, loopback and localhost",
    },
    Key {
        name: TLS_VALIDITY,
        kind: Kind::Duration,
        env: Env::Var("GLCI_TLS_VALIDITY"),
        default: Some("7d"),
        support: Support::Wired,
        about: "how long the registry's certificate is valid (1h to 825d); it is renewed when a seventh of that is left",
    },
    Key {
        name: DAEMON_IDLE_TIMEOUT,
        kind: Kind::Duration,
        env: Env::Var("GLCI_DAEMON_IDLE_TIMEOUT"),
        default: None,
        support: Support::Wired,
        about: "the daemon stops after this long without clients (unset: the daemon's default)",
    },
    Key {
        name: DAEMON_LOG_MAX_BYTES,
        kind: Kind::Size,
        env: Env::Var("GLCI_DAEMON_LOG_MAX_BYTES"),
        default: None,
        support: Support::Wired,
        about: "the daemon's log is rotated beyond this size (unset: the daemon's default)",
    },
    Key {
        name: DAEMON_LOG_COUNT,
        kind: Kind::Count,
        env: Env::Var("GLCI_DAEMON_LOG_KEEP"),
        default: None,
        support: Support::Wired,
        about: "rotated daemon logs kept (unset: the daemon's default)",
    },
    Key {
        name: IMAGES_DEFAULT,
        kind: Kind::Text,
        env: Env::Var("GLCI_DEFAULT_IMAGE"),
        default: Some("glci-fixture/debian:bookworm"),
        support: Support::Wired,
        about: "the image of jobs without `image:` (as --default-image)",
    },
];

/// The key named `name` (`section.key`).
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The sections, in file order.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in KEYS {
        let section = k.name.split_once('.').map_or(k.name, |(s, _)| s);
        if !out.contains(&section) {
            out.push(section);
        }
    }
    out
}
