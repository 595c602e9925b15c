//! Parsing, precedence, security rules and unknown keys, on files given as text.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use super::schema::{self, KEYS};
use super::*;
use crate::pipeline::{ExternalRegistry, RegistryChoice};

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn global(text: &str) -> FileSettings {
    FileSettings::parse(
        Path::new("/home/u/.glci/config.toml"),
        Scope::Global,
        text,
        &env_of(&[("REG_PASS", "s3cret")]),
    )
    .unwrap()
}

fn project(text: &str) -> Result<FileSettings, SettingsError> {
    FileSettings::parse(
        Path::new("/repo/.glci.toml"),
        Scope::Project,
        text,
        &env_of(&[]),
    )
}

#[test]
fn every_default_reads_as_its_kind() {
    for key in KEYS {
        if let Some(text) = key.default {
            assert!(Value::from_text(key.kind, text).is_ok(), "{}", key.name);
        }
    }
    let s = Settings::resolve(None, None, &env_of(&[])).unwrap();
    assert_eq!(s.default_image(), "glci-fixture/debian:bookworm");
    assert_eq!(s.cache_max_size(), Some(20 << 30));
    assert_eq!(s.cache_ttl(), Some(Duration::from_secs(14 * 86_400)));
    assert_eq!(
        crate::server::Upstream::from_settings(&s).unwrap(),
        crate::server::Upstream::defaults()
    );
    assert_eq!(
        RegistryChoice::from_settings(&s).unwrap(),
        RegistryChoice::Served
    );
    assert!(!s.socket_passthrough() && !s.privileged_never() && s.cache_persistent());
    assert_eq!(s.bind(), None);
}

#[test]
fn unknown_keys_are_warnings_naming_file_line_and_key() {
    let file = global("[docker]\nhost = \"unix:///x.sock\"\nhots = 1\n\n[netwrk]\nbind = \"127.0.0.1\"\ntop = 2\n");
    assert_eq!(
        file.warnings,
        vec![
            "/home/u/.glci/config.toml:3: unknown key `docker.hots` (ignored)".to_string(),
            "/home/u/.glci/config.toml:5: unknown key `netwrk` (ignored)".to_string(),
        ]
    );
    // The known key is still read.
    let s = Settings::resolve(Some(&file), None, &env_of(&[])).unwrap();
    assert_eq!(s.docker_host(), Some("unix:///x.sock"));
    assert_eq!(s.warnings.len(), 2);
}

#[test]
fn flags_beat_environment_beats_project_beats_global_beats_default() {
    let g = global("[images]\ndefault = \"from-global\"\n[cache]\nttl = \"1h\"\nmax_size = \"1GiB\"\n[docker]\nhost = \"unix:///global.sock\"\n");
    let p = project("[images]\ndefault = \"from-project\"\n\n[cache]\nttl = 60\n").unwrap();
    let env = env_of(&[("DOCKER_HOST", "tcp://10.0.0.1:2375")]);
    let mut s = Settings::resolve(Some(&g), Some(&p), &env).unwrap();
    assert_eq!(s.default_image(), "from-project");
    assert_eq!(
        s.get(schema::IMAGES_DEFAULT).unwrap().origin.to_string(),
        "project file /repo/.glci.toml:2"
    );
    assert_eq!(s.cache_ttl(), Some(Duration::from_secs(60)));
    assert_eq!(s.cache_max_size(), Some(1 << 30));
    assert_eq!(
        s.get(schema::CACHE_MAX_SIZE).unwrap().origin.to_string(),
        "global file /home/u/.glci/config.toml:5"
    );
    assert_eq!(s.docker_host(), Some("tcp://10.0.0.1:2375"));
    assert_eq!(
        s.get(schema::DOCKER_HOST).unwrap().origin,
        Origin::Env("DOCKER_HOST")
    );
    assert_eq!(
        s.get(schema::DOCKER_PRIVILEGED).unwrap().origin,
        Origin::Default
    );
    s.set_from_flag(
        schema::IMAGES_DEFAULT,
        Value::Text("from-flag".into()),
        "--default-image",
    );
    assert_eq!(s.default_image(), "from-flag");
    assert_eq!(
        s.get(schema::IMAGES_DEFAULT).unwrap().origin.to_string(),
        "flag --default-image"
    );
}

#[test]
fn environment_variables_keep_their_meaning() {
    let env = env_of(&[
        ("GLCI_NO_REGISTRY", "1"),
        ("GLCI_DOCKER_SOCKET", "yes"),
        ("GLCI_REGISTRY_UPSTREAMS", ""),
        ("GLCI_REGISTRY_NAMES", "ci.example, 10.0.0.5"),
        ("GLCI_DAEMON_IDLE_TIMEOUT", "90"),
        ("GLCI_DAEMON_LOG_KEEP", "3"),
    ]);
    let s = Settings::resolve(None, None, &env).unwrap();
    assert_eq!(
        RegistryChoice::from_settings(&s).unwrap(),
        RegistryChoice::Disabled
    );
    assert!(s.socket_passthrough());
    assert_eq!(crate::server::Upstream::from_settings(&s).unwrap(), vec![]);
    assert_eq!(s.tls_extra_sans(), vec!["ci.example", "10.0.0.5"]);
    assert_eq!(s.daemon_idle_timeout(), Some(Duration::from_secs(90)));
    assert_eq!(s.daemon_log_count(), Some(3));
    assert_eq!(s.daemon_log_max_bytes(), None);
    let e =
        Settings::resolve(None, None, &env_of(&[("GLCI_DOCKER_SOCKET", "perhaps")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable GLCI_DOCKER_SOCKET (setting `docker.socket_passthrough`): expected true or false, found `perhaps`"
    );
}

#[test]
fn registry_with_a_secret_reference_and_upstreams_from_the_file() {
    let g = global(
        "[registry]\nexternal = \"https://registry.example:5000/\"\nuser = \"ci\"\npassword = \"$REG_PASS\"\nupstreams = [\"https://mirror.example\", \"quay.io=https://quay.io\"]\n",
    );
    let s = Settings::resolve(Some(&g), None, &env_of(&[])).unwrap();
    assert_eq!(
        RegistryChoice::from_settings(&s).unwrap(),
        RegistryChoice::External(ExternalRegistry {
            address: "registry.example:5000".into(),
            username: "ci".into(),
            password: "s3cret".into(),
        })
    );
    let shown = s.get(schema::REGISTRY_PASSWORD).unwrap().value.shown();
    assert_eq!(shown, "[MASKED] ($REG_PASS)");
    let names: Vec<String> = crate::server::Upstream::from_settings(&s)
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, vec!["mirror.example", "quay.io"]);
}

#[test]
fn a_missing_secret_or_a_bad_value_is_one_error_naming_file_line_and_key() {
    let e = FileSettings::parse(
        Path::new("/home/u/.glci/config.toml"),
        Scope::Global,
        "[registry]\n\npush_through = \"https://m.example\"\npush_through_password = \"$NOT_SET\"\n",
        &env_of(&[]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/home/u/.glci/config.toml:4: `registry.push_through_password`: refers to $NOT_SET, which is not set in the environment"
    );
    let e = project("[cache]\nmax_size = \"lots\"\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/repo/.glci.toml:2: `cache.max_size`: expected a size (bytes, or e.g. \"512MiB\", \"20GiB\"), found `lots`"
    );
    let e = project("[docker]\nprivileged = true\n").unwrap_err();
    assert!(e.to_string().starts_with("/repo/.glci.toml:2: `docker.privileged`: expected one of \"auto\", \"never\", found a boolean"), "{e}");
    let e = project("[docker\nhost = 1\n").unwrap_err();
    assert!(e.to_string().starts_with("/repo/.glci.toml:1:"), "{e}");
    let p = project("[registry]\nexternal = \"registry.example/group\"\n").unwrap();
    let s = Settings::resolve(None, Some(&p), &env_of(&[])).unwrap();
    let e = RegistryChoice::from_settings(&s).unwrap_err();
    assert!(e.to_string().starts_with("/repo/.glci.toml:2: `registry.external`: registry `registry.example/group` is not `host[:port]`"), "{e}");
}

#[test]
fn a_project_file_holds_no_secret_and_gets_none_of_the_users() {
    for text in [
        "[registry]\nexternal = \"r.example\"\npassword = \"plain\"\n",
        "[registry]\nexternal = \"r.example\"\npassword = \"$HOME\"\n",
    ] {
        let e = project(text).unwrap_err();
        assert!(
            e.to_string().starts_with("/repo/.glci.toml:3: `registry.password`: a project's settings file may not hold secrets"),
            "{e}"
        );
    }
    // A registry the project names never gets the user's password.
    let p = project("[registry]\npush_through = \"https://evil.example\"\n").unwrap();
    let env = env_of(&[("GLCI_PUSH_THROUGH_PASSWORD", "users-own")]);
    let e = Settings::resolve(None, Some(&p), &env).unwrap_err();
    assert!(
        e.to_string().starts_with("/repo/.glci.toml:2: `registry.push_through`: a project's settings file may not name the registry your `registry.push_through_password` is sent to"),
        "{e}"
    );
    let g = global("[registry]\npassword = \"$REG_PASS\"\n");
    let p = project("[registry]\nexternal = \"evil.example\"\n").unwrap();
    assert!(Settings::resolve(Some(&g), Some(&p), &env_of(&[])).is_err());
    // Without a password it is fine.
    assert!(Settings::resolve(None, Some(&p), &env_of(&[])).is_ok());
}

#[test]
fn socket_path_container_host_and_validity_are_read_from_either_file() {
    let defaults = Settings::resolve(None, None, &env_of(&[])).unwrap();
    assert_eq!(
        defaults.docker_socket_path(),
        crate::runner::socket::SOCKET_IN_JOB
    );
    assert_eq!(defaults.container_host(), None);
    // The default validity is the certificate's own default.
    assert_eq!(
        defaults.tls_validity().map(|d| d.as_secs()),
        Some(crate::server::tls::LEAF_VALIDITY.whole_seconds() as u64)
    );
    let p = project(
        "[docker]\nsocket_path = \"/run/engine.sock\"\n[network]\ncontainer_host = \"gitlab.test\"\n[tls]\nvalidity = \"2d\"\n",
    )
    .unwrap();
    let s = Settings::resolve(None, Some(&p), &env_of(&[])).unwrap();
    assert_eq!(s.docker_socket_path(), "/run/engine.sock");
    assert_eq!(s.container_host(), Some("gitlab.test"));
    assert_eq!(s.tls_validity(), Some(Duration::from_secs(2 * 86_400)));
    // Setting the path turns nothing on.
    assert!(!s.socket_passthrough());
    let env = env_of(&[
        ("GLCI_DOCKER_SOCKET_PATH", "/run/other.sock"),
        ("GLCI_TLS_VALIDITY", "12h"),
    ]);
    let s = Settings::resolve(None, Some(&p), &env).unwrap();
    assert_eq!(s.docker_socket_path(), "/run/other.sock");
    assert_eq!(s.tls_validity(), Some(Duration::from_secs(12 * 3600)));
}

#[test]
fn an_unusable_socket_path_host_name_or_validity_is_one_error_naming_file_line_and_key() {
    for (text, key, line, says) in [
        (
            "[docker]\n\nsocket_path = \"run/engine.sock\"\n",
            "docker.socket_path",
            3,
            "must be absolute",
        ),
        (
            "[docker]\nsocket_path = \"/run/../etc/engine.sock\"\n",
            "docker.socket_path",
            2,
            "`..`",
        ),
        (
            "[docker]\nsocket_path = \"/\"\n",
            "docker.socket_path",
            2,
            "below `/`",
        ),
        (
            "[docker]\nsocket_path = \"\"\n",
            "docker.socket_path",
            2,
            "must be absolute",
        ),
        (
            "[network]\ncontainer_host = \"gitlab_test\"\n",
            "network.container_host",
            2,
            "not a DNS host name",
        ),
        (
            "[network]\ncontainer_host = \"http://gitlab\"\n",
            "network.container_host",
            2,
            "not a DNS host name",
        ),
        (
            "[network]\ncontainer_host = \"\"\n",
            "network.container_host",
            2,
            "it is empty",
        ),
        (
            "[tls]\nvalidity = \"30m\"\n",
            "tls.validity",
            2,
            "\"30m\" is shorter than 1h",
        ),
        (
            "[tls]\n# too long\nvalidity = \"826d\"\n",
            "tls.validity",
            3,
            "\"826d\" is longer than 825d",
        ),
    ] {
        for (file, path) in [
            (project(text).unwrap(), "/repo/.glci.toml"),
            (global(text), "/home/u/.glci/config.toml"),
        ] {
            let (g, p) = match file.scope {
                Scope::Global => (Some(&file), None),
                Scope::Project => (None, Some(&file)),
            };
            let e = Settings::resolve(g, p, &env_of(&[])).unwrap_err();
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("{path}:{line}: `{key}`: ")),
                "{message}"
            );
            assert!(message.contains(says), "{message}");
        }
    }
    // From the environment, the error names the variable.
    let e = Settings::resolve(None, None, &env_of(&[("GLCI_TLS_VALIDITY", "900d")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("environment variable GLCI_TLS_VALIDITY (setting `tls.validity`): "),
        "{e}"
    );
}

#[test]
fn a_project_file_may_not_loosen_security_on_its_own() {
    let cases = [
        (
            "[network]\nbind = \"0.0.0.0\"\n",
            "network.bind",
            "network.allow_project_bind_all",
        ),
        (
            "[network]\nbind = \"::\"\n",
            "network.bind",
            "network.allow_project_bind_all",
        ),
        (
            "[docker]\nsocket_passthrough = true\n",
            "docker.socket_passthrough",
            "docker.allow_project_socket_passthrough",
        ),
        (
            "[docker]\nprivileged = \"auto\"\n",
            "docker.privileged",
            "docker.allow_project_privileged",
        ),
    ];
    for (text, key, allow) in cases {
        let p = project(text).unwrap();
        let e = Settings::resolve(Some(&global("")), Some(&p), &env_of(&[])).unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with(&format!(
                "/repo/.glci.toml:2: `{key}`: a project's settings file may not"
            )),
            "{message}"
        );
        assert!(message.contains(&format!("`{allow} = true`")), "{message}");
        // The global file's leave makes it fine.
        let section = allow.split_once('.').unwrap();
        let g = global(&format!("[{}]\n{} = true\n", section.0, section.1));
        assert!(
            Settings::resolve(Some(&g), Some(&p), &env_of(&[])).is_ok(),
            "{key}"
        );
    }
    // The same in the global file, and tightening in the project file, are fine.
    let g = global("[network]\nbind = \"0.0.0.0\"\n[docker]\nsocket_passthrough = true\n");
    let p = project("[network]\nbind = \"127.0.0.1\"\n[docker]\nprivileged = \"never\"\nsocket_passthrough = false\n").unwrap();
    let s = Settings::resolve(Some(&g), Some(&p), &env_of(&[])).unwrap();
    assert_eq!(s.bind(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert!(s.privileged_never() && !s.socket_passthrough());
    // The engine is the user's choice too: jobs' sources and masked variables go there.
    let e = project("[docker]\nhost = \"tcp://build.example:2375\"\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/repo/.glci.toml:2: `docker.host`: only the global settings file"),
        "{e}"
    );
    // The leave itself is the global file's alone.
    let e = project("[network]\nallow_project_bind_all = true\n").unwrap_err();
    assert!(
        e.to_string().starts_with(
            "/repo/.glci.toml:2: `network.allow_project_bind_all`: only the global settings file"
        ),
        "{e}"
    );
}

#[test]
fn the_project_file_is_found_at_the_repository_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    std::fs::create_dir_all(dir.path().join("crates/app")).unwrap();
    let root = project_root(&dir.path().join("crates/app"));
    assert_eq!(root, std::path::absolute(dir.path()).unwrap());
}

#[test]
fn extra_hosts_must_be_name_and_address() {
    let p = project("[network]\nextra_hosts = [\"db.example:10.0.0.7\", \"gw:host-gateway\"]\n")
        .unwrap();
    let s = Settings::resolve(None, Some(&p), &env_of(&[])).unwrap();
    assert_eq!(
        s.extra_hosts(),
        vec!["db.example:10.0.0.7", "gw:host-gateway"]
    );
    let p = project("[network]\n\nextra_hosts = [\"db.example\"]\n").unwrap();
    let e = Settings::resolve(None, Some(&p), &env_of(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/repo/.glci.toml:3: `network.extra_hosts`: `db.example` is not `name:address` (an IP address, or `host-gateway`)"
    );
}

#[test]
fn privileged_never_refuses_privileged_runners_and_keeps_dind_to_capabilities() {
    use crate::runner::dind::{DindOptions, DindPrivileges};
    use crate::runner::runner_config::RunnerConfig;
    let runners = RunnerConfig::parse(
        Path::new("/repo/.glci/runner.toml"),
        "[[runners]]\nname = \"a\"\n[runners.docker]\nservices_privileged = true\n",
    )
    .unwrap();
    let never = Settings::resolve(
        Some(&global("[docker]\nprivileged = \"never\"\n")),
        None,
        &env_of(&[]),
    )
    .unwrap();
    let e = crate::runner::runner_config::refuse_privileged_runners(&runners, &never).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/repo/.glci/runner.toml: `runners[0].docker.services_privileged`: privileged containers are off: glci's settings say `privileged = \"never\"` under [docker] (global file /home/u/.glci/config.toml:2)"
    );
    let dind = DindOptions::from_setting(None).with_policy(&never);
    assert_eq!(dind.privileges, DindPrivileges::Capabilities);
    // The default policy leaves both alone.
    let auto = Settings::resolve(None, None, &env_of(&[])).unwrap();
    assert!(crate::runner::runner_config::refuse_privileged_runners(&runners, &auto).is_ok());
    let dind = DindOptions::from_setting(None).with_policy(&auto);
    assert_eq!(dind.privileges, DindPrivileges::Probe);
}
