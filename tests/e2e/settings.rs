//! glci's settings files: `GLCI_HOME/config.toml` and the project's `.glci.toml`, under the
//! environment. `config --show` says each value and where it came from; a setting from a file
//! takes effect in a run; a project file that loosens security is refused before anything runs.

use std::path::Path;

use glci_e2e::{docker_engine_id, glci_bin, run, stderr, stdout, temp_project};

const GLOBAL: &str = r#"# the user's own
[images]
default = "from-global:1"

[cache]
ttl = "2d"
max_size = "5GiB"

[registry]
upstreams = ["https://global-mirror.example"]
external = "registry.example:5000"
password = "$E2E_REGISTRY_PASSWORD"
"#;

const PROJECT: &str = r#"[cache]
max_size = "1GiB"
maxsize = "typo"

[images]
default = "from-project:1"
"#;

const PRINT: &str = r#"print:
  script:
    - test -x /bin/busybox && echo runs-in-busybox
    - grep settings-host.example /etc/hosts
"#;

fn line_of<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no line for {key}:\n{text}"))
}

#[test]
fn config_show_prints_each_setting_and_where_it_came_from() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), GLOBAL).unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", PRINT), (".glci.toml", PROJECT)]);
    // From a subdirectory: the project file is the repository root's.
    let sub = project.path().join("src");
    std::fs::create_dir_all(&sub).unwrap();
    let out = run(
        glci_bin!(),
        &sub,
        &["config", "--show"],
        &[
            ("GLCI_HOME", home.path().to_str().unwrap()),
            ("GLCI_REGISTRY_UPSTREAMS", "https://env-mirror.example"),
            ("E2E_REGISTRY_PASSWORD", "hunter2-from-env"),
            ("GLCI_DEFAULT_IMAGE", ""),
        ],
    );
    let text = stdout(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    let global = home.path().join("config.toml");
    let project_file = project.path().join(".glci.toml");
    let at = |path: &Path, line: usize| format!("{}:{line}", path.display());

    // Project over global, each naming its file and line.
    let image = line_of(&text, "images.default");
    assert!(image.contains("\"from-project:1\""), "{image}");
    assert!(
        image.ends_with(&format!("# project file {}", at(&project_file, 6))),
        "{image}"
    );
    let size = line_of(&text, "cache.max_size");
    assert!(
        size.contains("\"1GiB\"") && size.contains("project file"),
        "{size}"
    );
    let ttl = line_of(&text, "cache.ttl");
    assert!(
        ttl.contains("\"2d\"") && ttl.ends_with(&format!("# global file {}", at(&global, 6))),
        "{ttl}"
    );
    // The environment over both files.
    let upstreams = line_of(&text, "registry.upstreams");
    assert!(
        upstreams.contains("https://env-mirror.example")
            && upstreams.ends_with("# environment GLCI_REGISTRY_UPSTREAMS"),
        "{upstreams}"
    );
    // A secret from a $NAME reference: never printed.
    assert!(!text.contains("hunter2-from-env"), "{text}");
    let password = line_of(&text, "registry.password");
    assert!(
        password.contains("[MASKED] ($E2E_REGISTRY_PASSWORD)"),
        "{password}"
    );
    // Defaults say so; unset keys are marked.
    assert!(
        line_of(&text, "docker.privileged").ends_with("# default"),
        "{text}"
    );
    let validity = line_of(&text, "tls.validity");
    assert!(
        validity.contains("\"7d\"") && validity.ends_with("# default"),
        "{validity}"
    );
    assert!(
        line_of(&text, "docker.socket_path").contains("\"/var/run/docker.sock\""),
        "{text}"
    );
    assert!(text.contains("# network.container_host: unset"), "{text}");
    // The unknown key: a warning naming file, line and key.
    assert!(
        err.contains(&format!(
            "warning: {}: unknown key `cache.maxsize` (ignored)",
            at(&project_file, 3)
        )),
        "{err}"
    );
}

#[test]
fn the_default_image_and_extra_hosts_from_the_settings_files_reach_the_job() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("config.toml"),
        "[network]\nextra_hosts = [\"settings-host.example:10.11.12.13\"]\n",
    )
    .unwrap();
    let project = temp_project(
        None,
        &[
            (".gitlab-ci.yml", PRINT),
            (
                ".glci.toml",
                "[images]\ndefault = \"glci-fixture/busybox:latest\"\n",
            ),
        ],
    );
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "--no-registry"],
        &[
            ("GLCI_HOME", home.path().to_str().unwrap()),
            ("GLCI_DEFAULT_IMAGE", ""),
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.contains("runs-in-busybox"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("10.11.12.13") && l.contains("settings-host.example")),
        "{text}"
    );
}

#[test]
fn a_project_file_binding_all_interfaces_is_refused_before_anything_runs() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(
        None,
        &[
            (".gitlab-ci.yml", PRINT),
            (
                ".glci.toml",
                "[network]\n# open to the world\nbind = \"0.0.0.0\"\n",
            ),
        ],
    );
    let args: &[&[&str]] = &[&["run"], &["config", "--show"]];
    for args in args {
        let out = run(
            glci_bin!(),
            project.path(),
            args,
            &[("GLCI_HOME", home.path().to_str().unwrap())],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let expected = format!(
            "error: glci settings: {}:3: `network.bind`: a project's settings file may not bind all interfaces",
            project.path().join(".glci.toml").display()
        );
        assert!(err.starts_with(&expected), "{err}");
        assert!(
            err.contains("network.allow_project_bind_all = true"),
            "{err}"
        );
        // Nothing ran: no pipeline was created.
        assert!(!home.path().join("pipelines").exists(), "{err}");
    }
    // The global file's leave lets it through (as far as `config --show`).
    std::fs::write(
        home.path().join("config.toml"),
        "[network]\nallow_project_bind_all = true\n",
    )
    .unwrap();
    let out = run(
        glci_bin!(),
        project.path(),
        &["config", "--show"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        line_of(&text, "network.bind").contains("\"0.0.0.0\""),
        "{text}"
    );
}

/// Files below `dir` (0 when it does not exist).
fn files_below(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                files_below(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_cache_that_is_not_persistent_stays_out_of_glci_home() {
    const CACHED: &str = r#"fill:
  image: glci-fixture/busybox:latest
  cache:
    key: settings-e2e
    paths: [out/]
  script:
    - mkdir -p out && echo cached > out/file
"#;
    for (persistent, kept) in [(None, true), (Some(false), false)] {
        let home = tempfile::tempdir().unwrap();
        if let Some(persistent) = persistent {
            std::fs::write(
                home.path().join("config.toml"),
                format!("[cache]\npersistent = {persistent}\n"),
            )
            .unwrap();
        }
        let project = temp_project(None, &[(".gitlab-ci.yml", CACHED)]);
        let out = run(
            glci_bin!(),
            project.path(),
            &["run", "--no-registry"],
            &[("GLCI_HOME", home.path().to_str().unwrap())],
        );
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
        assert!(text.contains("Created cache"), "{text}");
        let in_home = files_below(&home.path().join("cache"));
        assert_eq!(
            in_home > 0,
            kept,
            "persistent = {persistent:?}: {in_home} files in GLCI_HOME/cache"
        );
    }
}

/// Runs `cargo glci run ARGS` in a project of `ci_yaml` with `config` as the global settings
/// file; the job's output, after checking that the run passed.
fn run_with_global_settings(config: &str, ci_yaml: &str, args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", ci_yaml)]);
    let out = run(
        glci_bin!(),
        project.path(),
        args,
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    text
}

#[test]
fn a_socket_path_puts_the_engines_socket_there_and_names_it_in_docker_host() {
    const SOCKET_JOB: &str = r#"job:
  image:
    name: glci-fixture/docker:cli
    entrypoint: [""]
  script:
    - test -S /run/engine.sock && echo "socket-at-path host=$DOCKER_HOST"
    - test -e /var/run/docker.sock || printf 'no-socket-at-%s\n' /var/run/docker.sock
    - docker info --format 'engine-id {{.ID}}'
"#;
    let text = run_with_global_settings(
        "[docker]\nsocket_passthrough = true\nsocket_path = \"/run/engine.sock\"\n",
        SOCKET_JOB,
        &["run", "--no-registry"],
    );
    assert!(
        text.contains("socket-at-path host=unix:///run/engine.sock"),
        "{text}"
    );
    assert!(text.contains("no-socket-at-/var/run/docker.sock"), "{text}");
    // The docker CLI found this machine's engine through DOCKER_HOST alone.
    let engine_id = docker_engine_id();
    assert!(text.contains(&format!("engine-id {engine_id}")), "{text}");
}

#[test]
fn a_container_host_names_the_server_in_every_url_and_resolves_in_the_job() {
    // The service serves its own /etc/hosts: services resolve the name too.
    const REACH_JOB: &str = r#"reach:
  services:
    - name: glci-fixture/busybox:latest
      alias: side
      entrypoint: ["nc", "-ll", "-p", "8080", "-e", "cat", "/etc/hosts"]
  script:
    - echo "api $CI_API_V4_URL"
    - echo "registry $CI_REGISTRY"
    - echo "clone $CI_REPOSITORY_URL" | sed 's/gitlab-ci-token:[^@]*@//'
    - curl -sf -H "JOB-TOKEN:$CI_JOB_TOKEN" "$CI_API_V4_URL/job" | grep -o '"name":"[a-z]*"'
    - curl -s -o /dev/null -w 'registry-tls %{http_code}\n' "https://$CI_REGISTRY/v2/"
    - for i in $(seq 20); do (exec 3<>/dev/tcp/side/8080 && cat <&3) 2>/dev/null | grep gitlab.test | sed 's/^/from-side /' && break; sleep 0.5; done
"#;
    let text = run_with_global_settings(
        "[network]\ncontainer_host = \"gitlab.test\"\n",
        REACH_JOB,
        &["run"],
    );
    assert!(text.contains("api http://gitlab.test:"), "{text}");
    assert!(text.contains("registry gitlab.test:"), "{text}");
    assert!(text.contains("clone http://gitlab.test:"), "{text}");
    // The API answered under that name...
    assert!(text.contains("\"name\":\"reach\""), "{text}");
    // ... and the registry's certificate is valid for it: curl verified it against glci's CA.
    assert!(text.contains("registry-tls 401"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("from-side ") && l.contains("gitlab.test") && !l.contains("grep")),
        "{text}"
    );
}

#[test]
fn a_container_host_is_what_docker_in_docker_reaches_the_registry_by() {
    const DIND_JOB: &str = r#"dind:
  image: glci-fixture/docker:cli
  services:
    - name: glci-fixture/docker:dind
      alias: docker
  script:
    - echo "$CI_JOB_TOKEN" | docker login -u gitlab-ci-token --password-stdin "$CI_REGISTRY"
    - docker pull -q "$CI_REGISTRY_IMAGE/absent:1" 2>&1 | sed 's/^/pulled-/' || true
"#;
    let text = run_with_global_settings(
        "[network]\ncontainer_host = \"gitlab.test\"\n",
        DIND_JOB,
        &["run"],
    );
    // The daemon resolved the name, trusted the certificate for it, and asked the registry,
    // which does not have the image.
    assert!(
        text.lines().any(|l| l.contains("pulled-")
            && l.contains("gitlab.test:")
            && l.contains("manifest unknown")),
        "{text}"
    );
}

#[test]
fn a_tls_validity_makes_the_registrys_certificate_last_that_long() {
    // 2 days: valid for more than 47 hours, and for less than 49 (the default is a week).
    const CERT_JOB: &str = r#"cert:
  script:
    - echo | openssl s_client -connect "$CI_REGISTRY" 2>/dev/null | openssl x509 -out leaf.pem
    - openssl x509 -in leaf.pem -noout -enddate
    - if openssl x509 -in leaf.pem -noout -checkend 169200; then printf 'leaf-valid-past-%sh\n' 47; fi
    - if ! openssl x509 -in leaf.pem -noout -checkend 176400; then printf 'leaf-ends-before-%sh\n' 49; fi
"#;
    let text = run_with_global_settings("[tls]\nvalidity = \"2d\"\n", CERT_JOB, &["run"]);
    assert!(text.contains("notAfter="), "{text}");
    assert!(text.contains("leaf-valid-past-47h"), "{text}");
    assert!(text.contains("leaf-ends-before-49h"), "{text}");
}
