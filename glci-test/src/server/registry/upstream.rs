//! The pull-through cache, as in GitLab's local tool: a manifest or blob that a repository
//! which received no pushes lacks is fetched from the first upstream registry that has it,
//! verified against its digest, stored like a pushed one and served from the store. Once
//! stored it is served from here: a second pull asks no upstream (a cached tag is not
//! refreshed; `cargo glci registry clean` drops what no tag holds).
//!
//! Naming: the registry's own namespace doubles as Docker Hub's, the way a Docker daemon with
//! `registry-mirrors` asks a mirror for `library/busybox`. A repository whose first component
//! is an upstream's name (`docker.io/…`, `registry.gitlab.com/…`) asks that upstream only, for
//! the rest of the name; any other name asks every upstream in order (Docker Hub gets
//! `library/` in front of a one-component name). After the upstreams comes the engine that
//! runs the jobs ([`super::engine_source`]).
//!
//! Auth towards an upstream: anonymous, or the `auth` of the upstream's entry in
//! `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`); a `Bearer` challenge is answered by
//! the token realm's flow, a `Basic` one with the credentials. Credential helpers
//! (`credsStore`, `credHelpers`) are not consulted.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::RemoteError;
use super::manifest;
use super::names::Digest;
use super::store::{write_blob_sync, Store};
use crate::settings::{Settings, SettingsError};

/// Docker Hub's name, as clients and `~/.docker/config.json` spell it.
pub const DOCKER_HUB: &str = "docker.io";

/// The environment variable naming the upstreams (see [`Upstream::from_env`]).
pub const UPSTREAMS_ENV: &str = "GLCI_REGISTRY_UPSTREAMS";

/// How long an upstream gets to accept a connection before the next one is asked.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream registry of the pull-through cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// How a repository name selects it as its first component (`docker.io`).
    pub name: String,
    /// The base URL of its `/v2/` API (`https://registry-1.docker.io`).
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamListError {
    #[error(
        "upstream `{entry}` is not `URL` or `NAME=URL` with an http:// or https:// URL \
         (NAME: lower-case letters, digits, `.`, `_`, `-`)"
    )]
    BadEntry { entry: String },
}

impl Upstream {
    /// GitLab's tool's defaults: Docker Hub, then GitLab.com's registry.
    pub fn defaults() -> Vec<Upstream> {
        vec![
            Upstream {
                name: DOCKER_HUB.to_string(),
                url: "https://registry-1.docker.io".to_string(),
            },
            Upstream {
                name: "registry.gitlab.com".to_string(),
                url: "https://registry.gitlab.com".to_string(),
            },
        ]
    }

    /// Entries separated by commas or white space, each `URL` (named after the URL's host)
    /// or `NAME=URL`. An empty list means no upstream (the engine is still asked).
    pub fn parse_list(text: &str) -> Result<Vec<Upstream>, UpstreamListError> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let bad = || UpstreamListError::BadEntry {
                    entry: entry.to_string(),
                };
                let (name, url) = match entry.split_once('=') {
                    Some((name, url)) => (Some(name), url),
                    None => (None, entry),
                };
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"))
                    .ok_or_else(bad)?;
                let authority = rest.split('/').next().unwrap_or_default();
                let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
                let name = name.unwrap_or(host).to_string();
                if authority.is_empty() || super::names::repository(&name).is_err() {
                    return Err(bad());
                }
                if name.contains('/') {
                    return Err(bad());
                }
                Ok(Upstream {
                    name,
                    url: url.trim_end_matches('/').to_string(),
                })
            })
            .collect()
    }

    /// `[registry] upstreams` of glci's settings (`GLCI_REGISTRY_UPSTREAMS`; empty: none),
    /// else [`Upstream::defaults`]. The list was checked when the settings were read.
    pub fn configured() -> Vec<Upstream> {
        Upstream::from_settings(crate::settings::current()).unwrap_or_else(|_| Upstream::defaults())
    }

    /// `[registry] upstreams` (`GLCI_REGISTRY_UPSTREAMS`), in order.
    pub fn from_settings(settings: &Settings) -> Result<Vec<Upstream>, SettingsError> {
        Upstream::parse_list(
            &settings
                .list(crate::settings::schema::REGISTRY_UPSTREAMS)
                .join(","),
        )
        .map_err(|e| settings.invalid(crate::settings::schema::REGISTRY_UPSTREAMS, e.to_string()))
    }

    /// The repository to ask this upstream for when a client asked for `name`.
    fn remote_name(&self, name: &str) -> String {
        if self.name == DOCKER_HUB && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_string()
        }
    }

    /// `host[:port]` of the URL: the key of its credentials in `~/.docker/config.json`.
    fn authority(&self) -> &str {
        let rest = self.url.split_once("://").map_or(&*self.url, |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }
}

/// The upstreams to ask for `name`, each with the name to ask it for.
fn route<'a>(upstreams: &'a [Upstream], name: &str) -> Vec<(&'a Upstream, String)> {
    if let Some((first, rest)) = name.split_once('/') {
        if let Some(u) = upstreams.iter().find(|u| u.name == first) {
            return vec![(u, u.remote_name(rest))];
        }
    }
    upstreams.iter().map(|u| (u, u.remote_name(name))).collect()
}

/// The name the engine knows an image by when a client asked for `name`: Docker Hub's
/// images without `docker.io/` (the engine's `library/x` is `docker.io/library/x`).
pub(super) fn engine_name(name: &str) -> &str {
    name.strip_prefix("docker.io/").unwrap_or(name)
}

/// `auths.<key>.auth` of the user's Docker configuration, by upstream name.
fn docker_credentials(upstreams: &[Upstream]) -> HashMap<String, String> {
    let path = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".docker/config.json"),
            None => return HashMap::new(),
        },
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return HashMap::new();
    };
    let Ok(config) = serde_json::from_str::<serde_json::Value>(&text) else {
        tracing::warn!(
            "registry: {} is not JSON; upstreams are asked anonymously",
            path.display()
        );
        return HashMap::new();
    };
    let mut out = HashMap::new();
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return out;
    };
    for (key, entry) in auths {
        let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else {
            continue;
        };
        let host = key.split_once("://").map_or(key.as_str(), |(_, r)| r);
        let host = host.split('/').next().unwrap_or(host);
        let docker_hub = matches!(
            host,
            "index.docker.io" | "registry-1.docker.io" | DOCKER_HUB
        );
        for u in upstreams {
            let matches = if u.name == DOCKER_HUB {
                docker_hub
            } else {
                u.authority() == host
            };
            if matches {
                out.insert(u.name.clone(), auth.to_string());
            }
        }
    }
    out
}

/// Every manifest format the registry stores, for the upstream's `Accept` negotiation.
fn manifest_accept() -> String {
    [
        manifest::OCI_INDEX,
        manifest::DOCKER_LIST,
        manifest::OCI_MANIFEST,
        manifest::DOCKER_MANIFEST,
    ]
    .join(", ")
}

/// The pull-through cache's side of the registry.
pub(crate) struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    upstreams: Vec<Upstream>,
    agent: ureq::Agent,
    /// Base64 `user:password` by upstream name.
    credentials: HashMap<String, String>,
    /// The last `Authorization` value that worked, by upstream name and repository.
    tokens: Mutex<HashMap<(String, String), String>>,
    max_manifest_bytes: u64,
    max_blob_bytes: u64,
}

/// A manifest fetched and verified.
pub(super) struct Fetched {
    pub(super) data: Vec<u8>,
    pub(super) media_type: String,
    /// The upstream it came from, for the repository's `_mirror` marker.
    pub(super) origin: String,
}

/// The answer of one upstream to one request.
enum Reply {
    Found(ureq::http::Response<ureq::Body>),
    /// Why this upstream did not serve it, for the error that lists what was tried.
    Missed(String),
}

impl Cache {
    pub(crate) fn new(
        upstreams: Vec<Upstream>,
        max_manifest_bytes: u64,
        max_blob_bytes: u64,
    ) -> Cache {
        let credentials = docker_credentials(&upstreams);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build();
        Cache {
            inner: Arc::new(Inner {
                upstreams,
                agent: ureq::Agent::new_with_config(config),
                credentials,
                tokens: Mutex::new(HashMap::new()),
                max_manifest_bytes,
                max_blob_bytes,
            }),
        }
    }

    /// The manifest `reference` of `name` from the first upstream that has it, verified:
    /// against the digest when `reference` is one, else against the upstream's
    /// `Docker-Content-Digest`. `Err` lists what was tried.
    pub(super) async fn fetch_manifest(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<Fetched, Vec<String>> {
        let inner = self.inner.clone();
        let (name, reference) = (name.to_string(), reference.to_string());
        tokio::task::spawn_blocking(move || inner.fetch_manifest(&name, &reference))
            .await
            .unwrap_or_else(|e| Err(vec![format!("the fetch failed: {e}")]))
    }

    /// Streams the blob from the first upstream that has it into the store (not yet linked
    /// to `name`). `Err` lists what was tried.
    pub(super) async fn fetch_blob(
        &self,
        store: &Store,
        name: &str,
        digest: &Digest,
    ) -> Result<String, Vec<String>> {
        let inner = self.inner.clone();
        let blobs_root = store.blobs_root();
        let (name, digest) = (name.to_string(), digest.clone());
        tokio::task::spawn_blocking(move || inner.fetch_blob(&blobs_root, &name, &digest))
            .await
            .unwrap_or_else(|e| Err(vec![format!("the fetch failed: {e}")]))
    }
}

impl Inner {
    fn fetch_manifest(&self, name: &str, reference: &str) -> Result<Fetched, Vec<String>> {
        let mut tried = Vec::new();
        for (upstream, remote) in route(&self.upstreams, name) {
            let path = format!("/v2/{remote}/manifests/{reference}");
            let resp = match self.get(upstream, &remote, &path, Some(&manifest_accept())) {
                Reply::Found(resp) => resp,
                Reply::Missed(why) => {
                    tried.push(why);
                    continue;
                }
            };
            let header = |n: &str| {
                resp.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header("content-type");
            let announced = header("docker-content-digest");
            let what = format!("{} ({}{path})", upstream.name, upstream.url);
            let data = match resp
                .into_body()
                .with_config()
                .limit(self.max_manifest_bytes)
                .read_to_vec()
            {
                Ok(d) => d,
                Err(e) => {
                    tried.push(format!("{what}: reading the manifest: {e}"));
                    continue;
                }
            };
            let actual = Digest::of(&data);
            let expected = if reference.contains(':') {
                Some(reference.to_string())
            } else {
                announced
            };
            if let Some(expected) = expected.filter(|e| *e != actual.to_string()) {
                tried.push(format!(
                    "{what}: the manifest's digest is {actual}, not {expected}"
                ));
                continue;
            }
            match manifest::parse(&data, content_type.as_deref()) {
                Ok(parsed) => {
                    return Ok(Fetched {
                        data,
                        media_type: parsed.media_type,
                        origin: upstream.url.clone(),
                    })
                }
                Err(e) => tried.push(format!("{what}: {}", e.message)),
            }
        }
        Err(tried)
    }

    fn fetch_blob(
        &self,
        blobs_root: &Path,
        name: &str,
        digest: &Digest,
    ) -> Result<String, Vec<String>> {
        let mut tried = Vec::new();
        for (upstream, remote) in route(&self.upstreams, name) {
            let path = format!("/v2/{remote}/blobs/{digest}");
            let resp = match self.get(upstream, &remote, &path, None) {
                Reply::Found(resp) => resp,
                Reply::Missed(why) => {
                    tried.push(why);
                    continue;
                }
            };
            let mut body = resp.into_body();
            let mut reader = body.as_reader();
            match write_blob_sync(blobs_root, &mut reader, Some(digest), self.max_blob_bytes) {
                Ok(_) => return Ok(upstream.url.clone()),
                Err(e) => tried.push(format!(
                    "{} ({}{path}): {}",
                    upstream.name, upstream.url, e.message
                )),
            }
        }
        Err(tried)
    }

    /// One GET on `upstream`, answering its auth challenge once. `Found` is a 200.
    fn get(&self, upstream: &Upstream, remote: &str, path: &str, accept: Option<&str>) -> Reply {
        let url = format!("{}{path}", upstream.url);
        let what = format!("{} ({url})", upstream.name);
        let key = (upstream.name.clone(), remote.to_string());
        let remembered = self.lock_tokens().get(&key).cloned();
        let send = |authorization: Option<&str>| {
            let mut req = self.agent.get(&url);
            if let Some(accept) = accept {
                req = req.header("accept", accept);
            }
            if let Some(value) = authorization {
                req = req.header("authorization", value);
            }
            req.call()
        };
        let mut resp = match send(remembered.as_deref()) {
            Ok(r) => r,
            Err(e) => return Reply::Missed(format!("{what}: unreachable: {e}")),
        };
        if resp.status() == 401 {
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let authorization = match self.authorize(upstream, remote, &challenge) {
                Ok(a) => a,
                Err(why) => return Reply::Missed(format!("{what}: {why}")),
            };
            resp = match send(Some(&authorization)) {
                Ok(r) => r,
                Err(e) => return Reply::Missed(format!("{what}: unreachable: {e}")),
            };
            if resp.status() != 401 {
                self.lock_tokens().insert(key, authorization);
            }
        }
        match resp.status().as_u16() {
            200 => Reply::Found(resp),
            404 => Reply::Missed(format!("{what}: not found")),
            401 | 403 => Reply::Missed(format!(
                "{what}: {} (credentials: {})",
                resp.status(),
                if self.credentials.contains_key(&upstream.name) {
                    "from the Docker configuration"
                } else {
                    "anonymous"
                }
            )),
            _ => Reply::Missed(format!("{what}: {}", resp.status())),
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` value answering `challenge`: a token from a `Bearer` realm
    /// (distribution's token flow, with the user's credentials if any), or `Basic`.
    fn authorize(
        &self,
        upstream: &Upstream,
        remote: &str,
        challenge: &str,
    ) -> Result<String, RemoteError> {
        let basic = self.credentials.get(&upstream.name);
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            // The credentials come from the Docker configuration, so "none given" means none
            // there for this upstream.
            return basic
                .map(|b| format!("Basic {b}"))
                .ok_or(RemoteError::NoCredentials);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(RemoteError::UnknownChallenge(challenge.to_string()));
        }
        bearer_token(
            &self.agent,
            params,
            &format!("repository:{remote}:pull"),
            basic.map(String::as_str),
        )
    }
}

/// distribution's token flow: the token a `Bearer` challenge's realm (`params`, the part
/// after `Bearer `) hands out for `scope`, asked with `basic` (base64 `user:password`) when
/// given; as an `Authorization` value. The pull-through cache asks for `pull`, the
/// push-through mirror for `pull,push`.
pub(super) fn bearer_token(
    agent: &ureq::Agent,
    params: &str,
    scope: &str,
    basic: Option<&str>,
) -> Result<String, RemoteError> {
    let raw = params;
    let params = challenge_params(raw);
    let realm = params
        .get("realm")
        .ok_or_else(|| RemoteError::NoRealm(raw.to_string()))?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(service) = params.get("service") {
        query.append_pair("service", service);
    }
    query.append_pair("scope", scope);
    let url = format!(
        "{realm}{}{}",
        if realm.contains('?') { '&' } else { '?' },
        query.finish()
    );
    let mut req = agent.get(&url);
    if let Some(b) = basic {
        req = req.header("authorization", &format!("Basic {b}"));
    }
    let resp = req.call().map_err(|e| RemoteError::RealmUnreachable {
        realm: realm.clone(),
        source: Box::new(e),
    })?;
    if resp.status() != 200 {
        return Err(RemoteError::RealmStatus {
            realm: realm.clone(),
            status: resp.status(),
        });
    }
    let mut text = String::new();
    resp.into_body()
        .as_reader()
        .take(1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| RemoteError::RealmRead {
            realm: realm.clone(),
            source: e,
        })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| RemoteError::TokenNotJson {
            realm: realm.clone(),
            source: e,
        })?;
    let token = value
        .get("token")
        .or_else(|| value.get("access_token"))
        .and_then(|t| t.as_str())
        .ok_or_else(|| RemoteError::NoToken {
            realm: realm.clone(),
        })?;
    Ok(format!("Bearer {token}"))
}

/// `realm="…",service="…",scope="…"` of a `WWW-Authenticate` header.
fn challenge_params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, t)) => (v, t),
                None => (quoted, ""),
            }
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.insert(key, value.to_string());
        rest = tail.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_route_to_upstreams() {
        let ups = Upstream::defaults();
        let asked = |name: &str| {
            route(&ups, name)
                .into_iter()
                .map(|(u, r)| format!("{}:{r}", u.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            asked("busybox"),
            ["docker.io:library/busybox", "registry.gitlab.com:busybox"]
        );
        assert_eq!(
            asked("library/busybox"),
            [
                "docker.io:library/busybox",
                "registry.gitlab.com:library/busybox"
            ]
        );
        assert_eq!(asked("docker.io/alpine"), ["docker.io:library/alpine"]);
        assert_eq!(
            asked("registry.gitlab.com/g/p"),
            ["registry.gitlab.com:g/p"]
        );
        assert_eq!(engine_name("docker.io/library/x"), "library/x");
        assert_eq!(engine_name("glci-fixture/busybox"), "glci-fixture/busybox");
    }

    #[test]
    fn upstream_lists() {
        let list =
            Upstream::parse_list("http://127.0.0.1:5000, hub=https://mirror.example/").unwrap();
        assert_eq!(list[0].name, "127.0.0.1");
        assert_eq!(list[0].url, "http://127.0.0.1:5000");
        assert_eq!(list[1].name, "hub");
        assert_eq!(list[1].url, "https://mirror.example");
        assert!(Upstream::parse_list("").unwrap().is_empty());
        assert!(Upstream::parse_list("ftp://x").is_err());
        assert!(Upstream::parse_list("A=http://x").is_err());
    }

    #[test]
    fn challenges() {
        let p = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
    }
}
