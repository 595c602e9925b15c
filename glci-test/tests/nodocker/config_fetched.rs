//! `include:template` and `include:component` fetched over HTTP when no directory is mapped,
//! from a small HTTP server on 127.0.0.1 started by each test (standing in for gitlab.com's
//! raw files), through glci's include cache.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use glci_test::config::{load, to_yaml, FetchSources, LoadOptions, Resolved, SourceLocation};

/// A server of fixed files; it records every path asked for.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn start(files: &[(&str, &str)]) -> Server {
        let files: BTreeMap<String, String> = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (seen, count) = (requests.clone(), hits.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                count.fetch_add(1, Ordering::SeqCst);
                let (status, body) = match files.get(&path) {
                    Some(text) => ("200 OK", text.as_str()),
                    None => ("404 Not Found", ""),
                };
                if let Ok(mut seen) = seen.lock() {
                    seen.push(path);
                }
                let mut out = &stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server {
            base: format!("http://{addr}"),
            requests,
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Template and component sources pointing at this server.
    fn sources(&self) -> FetchSources {
        FetchSources {
            template_url: format!(
                "{}/gitlab-org/gitlab/-/raw/{{ref}}/lib/gitlab/ci/templates",
                self.base
            ),
            template_ref: "v17.0.0-ee".into(),
            component_url: Some(self.base.clone()),
        }
    }
}

const TEMPLATE: &str = "build:\n  stage: build\n  script: [make]\n";
const TEMPLATE_PATH: &str =
    "/gitlab-org/gitlab/-/raw/v17.0.0-ee/lib/gitlab/ci/templates/Jobs/Build.gitlab-ci.yml";
const COMPONENT: &str = "spec:\n  component: [version]\n  inputs:\n    stage: {default: test}\n---\n$[[ inputs.stage ]]-lint:\n  stage: $[[ inputs.stage ]]\n  script:\n    - lint $[[ component.version ]]\n";
const COMPONENT_PATH: &str = "/my-group/ci-components/-/raw/1.2.0/templates/lint/template.yml";

/// Loads `text` as `.gitlab-ci.yml` of a fresh project, with the include cache in `cache`.
fn load_with(
    text: &str,
    cache: &Path,
    edit: impl FnOnce(&mut LoadOptions),
) -> Result<Resolved, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join(".gitlab-ci.yml"), text).map_err(|e| e.to_string())?;
    let mut opts = LoadOptions {
        project_dir: dir.path().to_path_buf(),
        include_cache: Some(cache.to_path_buf()),
        // The test server is on loopback, as `--allow-private-includes` lets through.
        allow_private_remote: true,
        ..LoadOptions::default()
    };
    edit(&mut opts);
    load(&opts).map_err(|e| e.to_string())
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn templates_are_fetched_at_the_chosen_release_then_read_from_the_cache() {
    let server = Server::start(&[(TEMPLATE_PATH, TEMPLATE)]);
    let cache = tempdir();
    let ci = "include:\n  - template: Jobs/Build.gitlab-ci.yml\ntest: {script: [t]}\n";
    let first = load_with(ci, cache.path(), |o| o.sources = server.sources())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        to_yaml(&first.tree),
        "build:\n  stage: build\n  script:\n  - make\ntest:\n  script:\n  - t\n"
    );
    assert_eq!(server.requests(), [TEMPLATE_PATH]);
    assert_eq!(
        first.files[1].location,
        SourceLocation::Url(format!("{}{TEMPLATE_PATH}", server.base))
    );
    // A release's templates do not change: the second run, online, fetches nothing.
    let second = load_with(ci, cache.path(), |o| o.sources = server.sources())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(to_yaml(&second.tree), to_yaml(&first.tree));
    let offline = load_with(ci, cache.path(), |o| {
        o.sources = server.sources();
        o.offline = true;
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(to_yaml(&offline.tree), to_yaml(&first.tree));
    assert_eq!(server.hits(), 1, "{:?}", server.requests());
    // Another release is another URL, so another fetch.
    let err = load_with(ci, cache.path(), |o| {
        o.sources = FetchSources {
            template_ref: "v16.0.0-ee".into(),
            ..server.sources()
        }
    })
    .err();
    assert!(err.is_some());
    assert_eq!(server.hits(), 2);
}

#[test]
fn a_missing_template_is_one_error_naming_the_include_and_the_url() {
    let server = Server::start(&[]);
    let cache = tempdir();
    let err = load_with(
        "include:\n  - template: Nope.gitlab-ci.yml\n",
        cache.path(),
        |o| o.sources = server.sources(),
    )
    .err();
    assert_eq!(
        err,
        Some(format!(
            ".gitlab-ci.yml:2:5: Template file `Nope.gitlab-ci.yml` could not be read from `{}/gitlab-org/gitlab/-/raw/v17.0.0-ee/lib/gitlab/ci/templates/Nope.gitlab-ci.yml`: HTTP code `404` error; no such template in that GitLab version: check the name, pick another version with `--template-ref`",
            server.base
        ))
    );
    // Offline with nothing cached: the same include and URL, and what to do.
    let err = load_with(
        "include:\n  - template: Jobs/Build.gitlab-ci.yml\n",
        cache.path(),
        |o| {
            o.sources = server.sources();
            o.offline = true;
        },
    )
    .err()
    .unwrap_or_default();
    assert!(
        err.starts_with(&format!(".gitlab-ci.yml:2:5: Template file `Jobs/Build.gitlab-ci.yml` could not be read from `{}{TEMPLATE_PATH}`: it is not in glci's include cache and `--offline` is set", server.base))
            && err.ends_with("pass `--template-dir DIR` (a copy of GitLab's `lib/gitlab/ci/templates`) to read templates locally"),
        "{err}"
    );
    assert_eq!(server.hits(), 1);
}

#[test]
fn templates_on_private_addresses_are_refused_unless_allowed() {
    let server = Server::start(&[(TEMPLATE_PATH, TEMPLATE)]);
    let cache = tempdir();
    let err = load_with(
        "include:\n  - template: Jobs/Build.gitlab-ci.yml\n",
        cache.path(),
        |o| {
            o.sources = server.sources();
            o.allow_private_remote = false;
        },
    )
    .err()
    .unwrap_or_default();
    assert!(
        err.contains("is a local or private address (127.0.0.1); pass `--allow-private-includes` to allow it"),
        "{err}"
    );
    assert_eq!(server.hits(), 0);
}

#[test]
fn components_are_fetched_from_their_project_at_their_version() {
    let server = Server::start(&[(COMPONENT_PATH, COMPONENT)]);
    let cache = tempdir();
    let ci = "include:\n  - component: $CI_SERVER_FQDN/my-group/ci-components/lint@1.2.0\n    inputs: {stage: check}\nstages: [check]\n";
    let load = |offline: bool| {
        load_with(ci, cache.path(), |o| {
            o.sources = server.sources();
            o.offline = offline;
            o.variables = vec![("CI_SERVER_FQDN".into(), "gitlab.example.com".into())];
        })
    };
    let first = load(false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        to_yaml(&first.tree),
        "check-lint:\n  stage: check\n  script:\n  - lint 1.2.0\nstages:\n- check\n"
    );
    // `templates/lint.yml` first, then `templates/lint/template.yml`, as GitLab looks.
    assert_eq!(
        server.requests(),
        [
            "/my-group/ci-components/-/raw/1.2.0/templates/lint.yml",
            COMPONENT_PATH
        ]
    );
    // A tagged version is fixed: the next runs, online or offline, fetch nothing.
    let second = load(false).unwrap_or_else(|e| panic!("{e}"));
    let offline = load(true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(to_yaml(&second.tree), to_yaml(&first.tree));
    assert_eq!(to_yaml(&offline.tree), to_yaml(&first.tree));
    assert_eq!(server.hits(), 2, "{:?}", server.requests());
}

#[test]
fn component_errors_name_the_component_and_the_urls() {
    let server = Server::start(&[]);
    let cache = tempdir();
    let err = load_with(
        "include:\n  - component: gitlab.com/g/p/missing@1.0\n",
        cache.path(),
        |o| o.sources = server.sources(),
    )
    .err();
    let base = &server.base;
    assert_eq!(
        err,
        Some(format!(
            ".gitlab-ci.yml:2:5: component `gitlab.com/g/p/missing@1.0` not found: `{base}/g/p/-/raw/1.0/templates/missing.yml` and `{base}/g/p/-/raw/1.0/templates/missing/template.yml` (HTTP code `404`); check the name and version or map the project to a checkout with `--project g/p=PATH`"
        ))
    );
    let err = load_with(
        "include:\n  - component: gitlab.com/g/p/x@~latest\n",
        cache.path(),
        |o| o.sources = server.sources(),
    )
    .err()
    .unwrap_or_default();
    assert!(
        err.contains("glci cannot ask the CI/CD catalog for `~latest`"),
        "{err}"
    );
    assert_eq!(server.hits(), 2);
}
