//! The job cache, as gitlab-runner's Docker executor with an S3 cache does it
//! (docs/runner-contract.md §5.5, §6.2): `restore_cache` before the script, `archive_cache` /
//! `archive_cache_on_failure` after it, with the official messages. The runner process does
//! the helper's work itself: it presigns GET/PUT URLs for
//! `[<path>/][runner/<short token>/]project/<project id>/<key>`, moves the zip over HTTP and
//! the files in and out of the build container as tars. Every cache failure is a warning;
//! none fails the job.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;

use crate::docker::DockerError;

use super::archive::{self, ExpandLimits, Selection, TarStream};
use super::http_client::{self, Answer};
use super::job_variables;
use super::payload::{Cache, JobPayload, JobVariable};
use super::progress::{self, Direction, JobProgress};
use super::s3_presign::S3Target;
use super::trace::Trace;

/// Why one cache entry was skipped or could not be moved: every one is a line in the job's
/// log (a warning or an info), never a job failure. The messages are the official runner's.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache key {0:?} could not be sanitized")]
    Unsanitizable(String),
    #[error("empty cache key")]
    EmptyKey,
    #[error("unknown cache policy {0}")]
    UnknownPolicy(String),
    /// No cache server configured: there is no local cache to extract either.
    #[error("Cache file does not exist")]
    NoServer,
    #[error("file does not exist")]
    NotFound,
    #[error("computed cache path outside of project bucket for key {0:?}")]
    OutsideBucket(String),
    #[error("GET {url}: the cache server answered {status}")]
    GetRefused { url: String, status: StatusCode },
    /// `body`: the start of the server's answer (at most 300 characters).
    #[error("PUT {url}: the cache server answered {status}: {body}")]
    PutRefused {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("cache {key}: {source}")]
    Unpack {
        key: String,
        source: archive::UnpackError,
    },
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error("cannot read container files: {0}")]
    ReadTar(std::io::Error),
    #[error("bad path in container files: {0}")]
    TarPath(std::io::Error),
    /// A request that got no answer (`detail`: the transport's reason, or the time-out).
    #[error("{method} {url}: {detail}")]
    Transport {
        method: Method,
        url: String,
        detail: String,
    },
    /// Moving files in or out of the build container ([`ProjectFiles`]).
    #[error(transparent)]
    Project(DockerError),
}

/// The runner's `[runners.cache]` with `Type = "s3"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub s3: S3Target,
    /// `Path`: a prefix for every object key (empty: none).
    pub path: String,
    /// `Shared`: caches are shared between runners (no `runner/<short token>/` part).
    pub shared: bool,
}

impl CacheConfig {
    /// The object key of a cache key, as `cache.GetAdapter` builds it; `None` when the key
    /// would leave the project's prefix.
    pub fn object_key(&self, short_token: &str, project_id: u64, key: &str) -> Option<String> {
        let short = if short_token.is_empty() {
            "glci"
        } else {
            short_token
        };
        let mut base = Vec::new();
        base.extend(self.path.split('/').filter(|s| !s.is_empty()));
        if !self.shared {
            base.extend(["runner", short]);
        }
        let project = project_id.to_string();
        base.extend(["project", project.as_str()]);
        let base = clean_path(&base.join("/"));
        let full = clean_path(&format!("{base}/{key}"));
        full.strip_prefix(&format!("{base}/"))
            .filter(|rest| !rest.is_empty())
            .map(|_| full.clone())
    }
}

/// Go's `path.Clean` on a relative path, without a leading slash: `.` segments dropped,
/// `..` removing the one before it (never above the start).
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// gitlab-runner's `cachekey.Sanitize`: `%2f`/`%2e` decoded, `\` read as `/`, `.`/`..`
/// resolved inside the key, trailing whitespace and empty trailing segments dropped. An
/// empty input stays empty; a key that sanitises to nothing is an error naming it.
pub fn sanitize_key(raw: &str) -> Result<String, CacheError> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let mut normalised = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        let lower = rest.get(..3).map(str::to_ascii_lowercase);
        match lower.as_deref() {
            Some("%2f") => {
                normalised.push('/');
                rest = &rest[3..];
            }
            Some("%2e") => {
                normalised.push('.');
                rest = &rest[3..];
            }
            _ => {
                normalised.push(if c == '\\' { '/' } else { c });
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    let cleaned = clean_path(&normalised);
    let mut parts: Vec<String> = cleaned.split('/').map(str::to_string).collect();
    while let Some(last) = parts.last_mut() {
        let trimmed = last.trim_end().to_string();
        if trimmed.is_empty() {
            parts.pop();
        } else {
            *last = trimmed;
            break;
        }
    }
    let key = parts.join("/");
    if key.is_empty() {
        return Err(CacheError::Unsanitizable(raw.to_string()));
    }
    Ok(key)
}

/// Whether a cache entry with this `policy` downloads (`pull`) or uploads (`push`).
/// Which way a cache stage moves an entry: restored (`pull`) or saved (`push`).
#[derive(Clone, Copy)]
enum Transfer {
    Pull,
    Push,
}

fn policy_allows(policy: &str, wanted: &str) -> Result<bool, CacheError> {
    match policy {
        "" | "pull-push" => Ok(true),
        "pull" | "push" => Ok(policy == wanted),
        other => Err(CacheError::UnknownPolicy(other.to_string())),
    }
}

/// Whether an entry with this `when` is saved after a job that succeeded or failed.
fn when_matches(when: &str, succeeded: bool) -> bool {
    match when {
        "always" => true,
        "on_failure" => !succeeded,
        _ => succeeded,
    }
}

/// The files of the job's project directory, in the build container.
pub trait ProjectFiles: Sync {
    /// Unpacks a tar (paths absolute, as [`archive::zip_to_tar_stream`] makes them) at `/`.
    fn upload_tar(&self, tar: TarStream) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// A tar of the project directory (top-level entry: its own name).
    fn project_tar(&self) -> impl Future<Output = Result<Vec<u8>, DockerError>> + Send;
}

/// One job's view of the cache.
pub struct JobCache<'a> {
    pub payload: &'a JobPayload,
    /// The job's variables (keys, fallback keys and policies are expanded against them).
    pub variables: &'a [JobVariable],
    /// `None`: no `[runners.cache]`, as a runner without one (nothing survives the job).
    pub config: Option<&'a CacheConfig>,
    pub short_token: &'a str,
    pub trace: &'a Trace,
    /// Where large downloads and uploads of cache archives report their progress.
    pub progress: &'a JobProgress,
}

/// A cache key after expansion and sanitising.
struct Key {
    human: String,
}

impl JobCache<'_> {
    fn expand(&self, text: &str) -> String {
        job_variables::expand(text, self.variables)
    }

    fn variable(&self, name: &str) -> Option<&str> {
        self.variables
            .iter()
            .rev()
            .find(|v| v.key == name)
            .map(|v| v.value.as_str())
    }

    /// `newCacheConfig`: the key (default `<job name>/<ref>`), expanded and sanitised, with
    /// the official warning when sanitising changed it. `Err` carries the reason to skip.
    fn key(&self, user_key: &str, expand: bool) -> Result<Key, CacheError> {
        let raw = if user_key.is_empty() {
            let joined = format!(
                "{}/{}",
                self.payload.job_info.name, self.payload.git_info.git_ref
            );
            clean_path(&joined)
        } else if expand {
            self.expand(user_key)
        } else {
            user_key.to_string()
        };
        let human = match sanitize_key(&raw) {
            Ok(h) => h,
            Err(e) => {
                self.trace.warning(&e.to_string());
                return Err(CacheError::EmptyKey);
            }
        };
        if human != raw {
            self.trace
                .warning(&format!("cache key {raw:?} sanitized to {human:?}"));
        }
        if human.is_empty() {
            return Err(CacheError::EmptyKey);
        }
        Ok(Key { human })
    }

    fn expires(&self) -> Duration {
        Duration::from_secs(self.payload.timeout_secs())
    }

    fn object_key(&self, key: &Key) -> Option<String> {
        self.config?.object_key(
            self.short_token,
            self.payload.job_info.project_id,
            &key.human,
        )
    }

    fn entries_with_files(&self) -> impl Iterator<Item = &Cache> {
        self.payload
            .cache
            .iter()
            .filter(|c| !c.paths.is_empty() || c.untracked)
    }

    /// The key of `entry` when its policy allows `transfer`; otherwise `None`, with the
    /// reason in the log (a key that cannot be computed, or the policy).
    fn allowed_key(&self, entry: &Cache, transfer: Transfer) -> Option<Key> {
        let (skipping, not_doing, wanted) = match transfer {
            Transfer::Pull => ("extraction", "downloading", "pull"),
            Transfer::Push => ("archiving", "uploading", "push"),
        };
        let key = match self.key(&entry.key, true) {
            Ok(k) => k,
            Err(e) => {
                self.trace
                    .info(&format!("Skipping cache {skipping} due to {e}"));
                return None;
            }
        };
        match policy_allows(&self.expand(&entry.policy), wanted) {
            Ok(true) => Some(key),
            Ok(false) => {
                self.trace.info(&format!(
                    "Not {not_doing} cache {} due to policy",
                    key.human
                ));
                None
            }
            // The official runner refuses the stage here; glci keeps cache problems
            // warnings, so the job still runs.
            Err(e) => {
                self.trace.warning(&format!("{e} for {}", key.human));
                None
            }
        }
    }

    /// `restore_cache`: for each entry with files, unless its policy is `push`, the first of
    /// key, `fallback_keys`, `CACHE_FALLBACK_KEY` that exists is extracted into the project.
    /// Skipped (no section) when no entry has `paths` or `untracked`.
    pub async fn restore(&self, files: &impl ProjectFiles, project_dir: &str) {
        let entries: Vec<&Cache> = self.entries_with_files().collect();
        if entries.is_empty() {
            return;
        }
        let trace = self.trace;
        trace.section_start("restore_cache", "Restoring cache");
        for entry in entries {
            let Some(key) = self.allowed_key(entry, Transfer::Pull) else {
                continue;
            };
            let mut candidates = vec![key];
            for fallback in &entry.fallback_keys {
                if fallback.is_empty() {
                    continue;
                }
                match self.key(fallback, true) {
                    Ok(k) => candidates.push(k),
                    Err(e) => trace.info(&format!("Skipping cache extraction due to {e}")),
                }
            }
            if let Some(global) = self
                .variable("CACHE_FALLBACK_KEY")
                .filter(|k| !k.is_empty())
            {
                // CACHE_FALLBACK_KEY is taken as is (not expanded), and may not reach into
                // protected caches.
                match self.key(global, false) {
                    Ok(k) if k.human.trim_end_matches(['.', ' ']).ends_with("-protected") => {
                        trace.warning(&format!(
                            "CACHE_FALLBACK_KEY {global:?} not allowed to end in \"-protected\""
                        ));
                    }
                    Ok(k) => candidates.push(k),
                    Err(e) => trace.info(&format!("Skipping cache extraction due to {e}")),
                }
            }
            for key in &candidates {
                trace.info(&format!("Checking cache for {}...", key.human));
                match self.extract(key, files, project_dir).await {
                    Ok(()) => {
                        trace.info("Successfully extracted cache");
                        break;
                    }
                    Err(e) => {
                        trace.warning(&e.to_string());
                        trace.warning("Failed to extract cache");
                    }
                }
            }
        }
        trace.section_end("restore_cache");
    }

    async fn extract(
        &self,
        key: &Key,
        files: &impl ProjectFiles,
        project_dir: &str,
    ) -> Result<(), CacheError> {
        let Some(config) = self.config else {
            self.trace.line(
                "No URL provided, cache will not be downloaded from shared cache server. \
                 Instead a local version of cache will be extracted.",
            );
            return Err(CacheError::NoServer);
        };
        let Some(object) = self.object_key(key) else {
            return Err(CacheError::OutsideBucket(key.human.clone()));
        };
        let url = config
            .s3
            .presign("GET", &object, &[], self.expires(), SystemTime::now());
        let mut transfer =
            self.progress
                .transfer(&format!("cache {}", key.human), Direction::Download, None);
        let answer =
            send_with_retry(Method::GET, &url, &[], Bytes::new(), Some(&mut transfer)).await?;
        transfer.finish();
        if answer.status == StatusCode::NOT_FOUND {
            return Err(CacheError::NotFound);
        }
        if !answer.status.is_success() {
            return Err(CacheError::GetRefused {
                url: config.s3.object_url(&object),
                status: answer.status,
            });
        }
        match answer.header("etag") {
            Some(etag) => self.trace.line(&format!(
                "Downloading cache from {}  ETag={etag}",
                config.s3.object_url(&object)
            )),
            None => self.trace.line(&format!(
                "Downloading cache from {}",
                config.s3.object_url(&object)
            )),
        }
        let tar = archive::zip_to_tar_stream(answer.body, project_dir, ExpandLimits::default())
            .map_err(|source| CacheError::Unpack {
                key: key.human.clone(),
                source,
            })?;
        files.upload_tar(tar).await.map_err(CacheError::Project)
    }

    /// `archive_cache` / `archive_cache_on_failure`: each entry whose `when` matches the job's
    /// result and whose policy is not `pull` is zipped and uploaded. Skipped (no section) when
    /// no entry matches. `tracked` are the files git tracks (for `untracked`).
    pub async fn archive(
        &self,
        files: &impl ProjectFiles,
        tracked: &BTreeSet<String>,
        succeeded: bool,
    ) {
        let entries: Vec<&Cache> = self
            .entries_with_files()
            .filter(|c| when_matches(&c.when, succeeded))
            .collect();
        if entries.is_empty() {
            return;
        }
        let trace = self.trace;
        let (stage, title) = if succeeded {
            ("archive_cache", "Saving cache for successful job")
        } else {
            ("archive_cache_on_failure", "Saving cache for failed job")
        };
        trace.section_start(stage, title);
        let mut project_tar: Option<Vec<u8>> = None;
        for entry in entries {
            let Some(key) = self.allowed_key(entry, Transfer::Push) else {
                continue;
            };
            trace.info(&format!("Creating cache {}...", key.human));
            if project_tar.is_none() {
                match files.project_tar().await {
                    Ok(t) => project_tar = Some(t),
                    Err(e) => {
                        trace.warning(&e.to_string());
                        trace.warning("Failed to create cache");
                        continue;
                    }
                }
            }
            let tar = project_tar.as_deref().unwrap_or_default();
            match self.create(&key, entry, tar, tracked).await {
                Ok(()) => trace.info("Created cache"),
                Err(e) => {
                    trace.warning(&e.to_string());
                    trace.warning("Failed to create cache");
                }
            }
        }
        trace.section_end(stage);
    }

    /// Zips and uploads one entry (the helper's `cache-archiver`).
    async fn create(
        &self,
        key: &Key,
        entry: &Cache,
        project_tar: &[u8],
        tracked: &BTreeSet<String>,
    ) -> Result<(), CacheError> {
        let trace = self.trace;
        let names = tar_names(project_tar)?;
        for path in &entry.paths {
            let one = Selection::new(std::slice::from_ref(path), &[], false, BTreeSet::new())?;
            let found = names.iter().filter(|n| one.selects(n)).count();
            if found == 0 {
                trace.warning(&format!(
                    "{path}: no matching files. Ensure that the artifact path is relative to the working directory ({})",
                    self.payload.project_dir()
                ));
            } else {
                trace.line(&format!(
                    "{path}: found {found} matching artifact files and directories"
                ));
            }
        }
        if entry.untracked {
            let only = Selection::new(&[], &[], true, tracked.clone())?;
            let found = names.iter().filter(|n| only.selects(n)).count();
            trace.line(&format!("untracked: found {found} files"));
        }
        let selection = Selection::new(&entry.paths, &[], entry.untracked, tracked.clone())?;
        let (zip, count) = archive::tar_to_zip(project_tar, &selection)?;
        if count == 0 {
            trace.warning("No files to cache.");
            // The archiver exits 0 here, so the script still says "Created cache".
            return Ok(());
        }
        let Some(config) = self.config else {
            trace.line(
                "No URL provided, cache will not be uploaded to shared cache server. \
                 Cache will be stored only locally.",
            );
            return Ok(());
        };
        let Some(object) = self.object_key(key) else {
            return Err(CacheError::OutsideBucket(key.human.clone()));
        };
        let meta = [("x-amz-meta-cachekey", key.human.as_str())];
        let url = config
            .s3
            .presign("PUT", &object, &meta, self.expires(), SystemTime::now());
        trace.line(&format!(
            "Uploading cache.zip to {}",
            config.s3.object_url(&object)
        ));
        let headers = [
            ("x-amz-meta-cachekey", key.human.clone()),
            ("content-type", "application/zip".to_string()),
        ];
        // The body goes whole: its start and end are all there is to report.
        let mut transfer = self.progress.transfer(
            &format!("cache {}", key.human),
            Direction::Upload,
            Some(zip.len() as u64),
        );
        let size = zip.len() as u64;
        let answer = send_with_retry(Method::PUT, &url, &headers, Bytes::from(zip), None).await;
        if answer.is_ok() {
            transfer.advance(size);
        }
        transfer.finish();
        let answer = answer?;
        if !answer.status.is_success() {
            return Err(CacheError::PutRefused {
                url: config.s3.object_url(&object),
                status: answer.status,
                body: String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(300)
                    .collect(),
            });
        }
        Ok(())
    }
}

/// Relative paths (files and directories) of a project tar as the Docker archive API returns
/// it (top-level entry: the project directory's own name).
fn tar_names(tar_bytes: &[u8]) -> Result<Vec<String>, CacheError> {
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = archive.entries().map_err(CacheError::ReadTar)?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(CacheError::ReadTar)?;
        let path = entry
            .path()
            .map_err(CacheError::TarPath)?
            .to_string_lossy()
            .into_owned();
        if let Some((_, rel)) = path.trim_end_matches('/').split_once('/') {
            if !rel.is_empty() {
                names.push(rel.to_string());
            }
        }
    }
    Ok(names)
}

/// How long one cache transfer may take (gitlab-runner's default cache request timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// One HTTP request to the cache server; errors name the URL without its signature.
async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
    received: Option<&mut progress::Transfer>,
) -> Result<Answer, CacheError> {
    let clean = url.split('?').next().unwrap_or(url).to_string();
    let transport = |detail: String| CacheError::Transport {
        method: method.clone(),
        url: clean.clone(),
        detail,
    };
    let client = http_client::client();
    let mut req = Request::builder().method(method.clone()).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .header("content-length", body.len().to_string())
        .body(Full::new(body))
        .map_err(|e| transport(e.to_string()))?;
    let exchange = async {
        match received {
            Some(received) => http_client::exchange_counting(&client, req, received).await,
            None => http_client::exchange(&client, req).await,
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(transport(e.with_causes())),
        Err(_) => Err(transport(format!(
            "no answer within {} minutes",
            REQUEST_TIMEOUT.as_secs() / 60
        ))),
    }
}

/// As the helper: transport errors and 5xx answers are retried twice, a second apart.
async fn send_with_retry(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
    mut received: Option<&mut progress::Transfer>,
) -> Result<Answer, CacheError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = send(
            method.clone(),
            url,
            headers,
            body.clone(),
            received.as_deref_mut(),
        )
        .await;
        let retry = match &result {
            Err(_) => true,
            Ok(a) => a.status.is_server_error(),
        };
        if !retry || attempt >= 3 {
            return result;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sanitised_like_the_runner() {
        let ok = |raw: &str| sanitize_key(raw).unwrap();
        assert_eq!(ok(""), "");
        assert_eq!(ok("some-job/some-ref"), "some-job/some-ref");
        assert_eq!(ok("fallback_key/ / \\  \\"), "fallback_key");
        assert_eq!(ok("fallback_key / \\o"), "fallback_key / /o");
        assert_eq!(ok("\t foo bar \t\r"), "\t foo bar");
        assert_eq!(ok("some%2f../job/some/ref/."), "job/some/ref");
        assert_eq!(ok("%2E%2e%2E"), "...");
        assert_eq!(ok("%5C"), "%5C");
        assert_eq!(ok("foo/bar/../../../.././blerp"), "blerp");
        assert_eq!(ok(r"job\name/git\ref"), "job/name/git/ref");
        assert_eq!(ok("../foo/bar"), "foo/bar");
        for bad in [
            "/",
            " ",
            ".",
            "..",
            "%2E%2E",
            "foo/bar/../..",
            " \t\r\n",
            r"//\",
        ] {
            let e = sanitize_key(bad).unwrap_err().to_string();
            assert!(e.contains("could not be sanitized"), "{bad:?}: {e}");
        }
    }

    fn config(path: &str, shared: bool) -> CacheConfig {
        CacheConfig {
            s3: S3Target {
                server_address: "127.0.0.1:1".into(),
                bucket: "b".into(),
                region: "us-east-1".into(),
                access_key: "a".into(),
                secret_key: "s".into(),
                insecure: true,
            },
            path: path.into(),
            shared,
        }
    }

    #[test]
    fn object_keys_follow_get_adapter() {
        let c = config("", false);
        assert_eq!(
            c.object_key("AbCdEfGhI", 3, "deps-non_protected")
                .as_deref(),
            Some("runner/AbCdEfGhI/project/3/deps-non_protected")
        );
        assert_eq!(
            c.object_key("", 3, "k").as_deref(),
            Some("runner/glci/project/3/k")
        );
        assert_eq!(
            config("ci/cache", true)
                .object_key("x", 7, "a/b")
                .as_deref(),
            Some("ci/cache/project/7/a/b")
        );
        assert_eq!(c.object_key("x", 7, "../../8/k"), None);
    }

    /// The build container's project directory, in memory: a tar of files, and what the
    /// cache extracted into it.
    #[derive(Default)]
    struct MemoryProject {
        files: Vec<(&'static str, &'static str)>,
        extracted: std::sync::Mutex<Vec<(String, String)>>,
    }

    impl ProjectFiles for MemoryProject {
        // Its own failures are the test's bugs: they panic rather than pose as the engine's.
        async fn upload_tar(&self, tar: TarStream) -> Result<(), DockerError> {
            use futures_util::TryStreamExt;
            let chunks: Vec<bytes::Bytes> = tar.0.try_collect().await.expect("the cache's tar");
            let tar = chunks.concat();
            let mut archive = tar::Archive::new(tar.as_slice());
            let mut out = self.extracted.lock().unwrap();
            for e in archive.entries().expect("a tar") {
                let mut e = e.expect("a tar entry");
                if e.header().entry_type().is_file() {
                    let mut body = String::new();
                    std::io::Read::read_to_string(&mut e, &mut body).expect("a text file");
                    out.push((e.path().unwrap().to_string_lossy().into_owned(), body));
                }
            }
            Ok(())
        }

        async fn project_tar(&self) -> Result<Vec<u8>, DockerError> {
            let mut b = tar::Builder::new(Vec::new());
            for (path, content) in &self.files {
                let mut h = tar::Header::new_gnu();
                h.set_size(content.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, format!("demo/{path}"), content.as_bytes())
                    .unwrap();
            }
            Ok(b.into_inner().unwrap())
        }
    }

    fn payload(cache: Vec<Cache>) -> JobPayload {
        let mut p = JobPayload::default();
        p.job_info.name = "build".into();
        p.job_info.project_id = 3;
        p.git_info.git_ref = "main".into();
        p.git_info.repo_url = "http://127.0.0.1/acme/demo.git".into();
        p.cache = cache;
        p
    }

    fn text(trace: &Trace) -> String {
        String::from_utf8_lossy(&trace.bytes()).into_owned()
    }

    #[tokio::test]
    async fn a_saved_cache_is_restored_through_a_real_s3_endpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let server = crate::server::Server::start(crate::server::ServerConfig::new(tmp.path()))
            .await
            .unwrap();
        let config = crate::pipeline::run::runner_cache_config(&server.s3_credentials(), false);
        let entry = Cache {
            key: "deps-$CI_COMMIT_REF_SLUG".into(),
            paths: vec!["vendor/".into()],
            ..Default::default()
        };
        let vars = vec![JobVariable {
            key: "CI_COMMIT_REF_SLUG".into(),
            value: "main".into(),
            ..Default::default()
        }];
        let job = payload(vec![entry.clone()]);
        let trace = Trace::new(super::super::trace::Masker::new([]), false);
        let cache = JobCache {
            payload: &job,
            variables: &vars,
            config: Some(&config),
            short_token: "AbCdEfGhI",
            trace: &trace,
            progress: &JobProgress::default(),
        };
        let project = MemoryProject {
            files: vec![("vendor/lib.txt", "cached"), ("src/main.rs", "not cached")],
            ..Default::default()
        };
        cache.archive(&project, &BTreeSet::new(), true).await;
        let log = text(&trace);
        for expected in [
            "Saving cache for successful job",
            "Creating cache deps-main...",
            "vendor/: found 1 matching artifact files and directories",
            "Uploading cache.zip to http://",
            "/glci-cache/runner/AbCdEfGhI/project/3/deps-main",
            "Created cache",
        ] {
            assert!(log.contains(expected), "missing {expected:?}:\n{log}");
        }

        // A second job (another key first, then the saved one as a fallback).
        let mut second = entry.clone();
        second.key = "other".into();
        second.fallback_keys = vec!["deps-$CI_COMMIT_REF_SLUG".into()];
        let job2 = payload(vec![second]);
        let trace2 = Trace::new(super::super::trace::Masker::new([]), false);
        let cache2 = JobCache {
            payload: &job2,
            trace: &trace2,
            progress: &JobProgress::default(),
            ..cache
        };
        let fresh = MemoryProject::default();
        cache2.restore(&fresh, "/builds/acme/demo").await;
        let log = text(&trace2);
        let order = [
            "Restoring cache",
            "Checking cache for other...",
            "WARNING: file does not exist",
            "WARNING: Failed to extract cache",
            "Checking cache for deps-main...",
            "Downloading cache from http://",
            "Successfully extracted cache",
        ];
        let mut at = 0;
        for expected in order {
            let found = log[at..].find(expected);
            assert!(found.is_some(), "missing {expected:?} in order:\n{log}");
            at += found.unwrap_or(0);
        }
        assert_eq!(
            *fresh.extracted.lock().unwrap(),
            [(
                "builds/acme/demo/vendor/lib.txt".to_string(),
                "cached".to_string()
            )]
        );
        server.shutdown().await;
    }

    /// What a job's progress reported.
    #[derive(Default)]
    struct Heard(std::sync::Mutex<Vec<super::super::progress::ProgressEvent>>);
    impl super::super::progress::ProgressSink for Heard {
        fn progress(&self, event: &super::super::progress::ProgressEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    /// A cache of 8 MiB of random text (about 6 MiB zipped) through the real S3 endpoint: its
    /// upload is reported at start and end, its download as the bytes arrive; a small
    /// cache's transfers are not reported at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_cache_reports_its_upload_and_download_as_they_go() {
        use super::super::progress::{Amount, Direction, Progress, ProgressEvent, Task};
        let tmp = tempfile::tempdir().unwrap();
        let server = crate::server::Server::start(crate::server::ServerConfig::new(tmp.path()))
            .await
            .unwrap();
        let config = crate::pipeline::run::runner_cache_config(&server.s3_credentials(), false);
        let entry = Cache {
            key: "big".into(),
            paths: vec!["vendor/".into()],
            ..Default::default()
        };
        let job = payload(vec![entry]);
        let trace = Trace::new(super::super::trace::Masker::new([]), false);
        let heard = std::sync::Arc::new(Heard::default());
        let progress = Progress::to(heard.clone()).for_job("build");
        let cache = JobCache {
            payload: &job,
            variables: &[],
            config: Some(&config),
            short_token: "AbCdEfGhI",
            trace: &trace,
            progress: &progress,
        };
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let blob: String = (0..8 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        let project = MemoryProject {
            files: vec![("vendor/blob.txt", Box::leak(blob.into_boxed_str()))],
            ..Default::default()
        };
        cache.archive(&project, &BTreeSet::new(), true).await;
        assert!(text(&trace).contains("Created cache"), "{}", text(&trace));
        let events: Vec<ProgressEvent> = std::mem::take(&mut *heard.0.lock().unwrap());
        let upload = Task::Transfer {
            what: "cache big".into(),
            direction: Direction::Upload,
        };
        assert!(events.iter().all(|e| e.task == upload && e.job == "build"));
        let (first, last) = (events.first().unwrap(), events.last().unwrap());
        let Amount::Bytes {
            done: 0,
            total: Some(size),
        } = first.amount
        else {
            panic!("{events:?}");
        };
        assert!(
            size >= super::super::progress::TRANSFER_SHOWN_FROM,
            "{size}"
        );
        assert!(
            last.finished
                && last.amount
                    == Amount::Bytes {
                        done: size,
                        total: Some(size)
                    }
        );

        cache
            .restore(&MemoryProject::default(), "/builds/acme/demo")
            .await;
        let events: Vec<ProgressEvent> = std::mem::take(&mut *heard.0.lock().unwrap());
        let download = Task::Transfer {
            what: "cache big".into(),
            direction: Direction::Download,
        };
        assert!(events.iter().all(|e| e.task == download), "{events:?}");
        let partial = |e: &ProgressEvent| matches!(e.amount, Amount::Bytes { done, total: Some(t) } if t == size && done < t);
        assert!(
            events.iter().any(|e| !e.finished && partial(e)),
            "{events:?}"
        );
        let last = events.last().unwrap();
        assert!(
            last.finished
                && last.amount
                    == Amount::Bytes {
                        done: size,
                        total: Some(size)
                    }
        );

        // A small cache: nothing to report.
        let small = MemoryProject {
            files: vec![("vendor/lib.txt", "cached")],
            ..Default::default()
        };
        cache.archive(&small, &BTreeSet::new(), true).await;
        cache
            .restore(&MemoryProject::default(), "/builds/acme/demo")
            .await;
        assert!(heard.0.lock().unwrap().is_empty());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn without_a_cache_server_nothing_fails_and_the_runner_says_so() {
        let job = payload(vec![Cache {
            key: "k".into(),
            paths: vec!["out".into()],
            when: "always".into(),
            ..Default::default()
        }]);
        let trace = Trace::new(super::super::trace::Masker::new([]), false);
        let cache = JobCache {
            payload: &job,
            variables: &[],
            config: None,
            short_token: "",
            trace: &trace,
            progress: &JobProgress::default(),
        };
        let project = MemoryProject {
            files: vec![("out/a", "a")],
            ..Default::default()
        };
        cache.restore(&project, "/builds/acme/demo").await;
        cache.archive(&project, &BTreeSet::new(), false).await;
        let log = text(&trace);
        assert!(
            log.contains("No URL provided, cache will not be downloaded"),
            "{log}"
        );
        assert!(log.contains("Cache file does not exist"), "{log}");
        assert!(log.contains("Saving cache for failed job"), "{log}");
        assert!(log.contains("Cache will be stored only locally."), "{log}");
        assert!(project.extracted.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn policy_pull_never_uploads_and_push_never_downloads() {
        let job = payload(vec![
            Cache {
                key: "pulled".into(),
                paths: vec!["out".into()],
                policy: "pull".into(),
                ..Default::default()
            },
            Cache {
                key: "pushed".into(),
                paths: vec!["out".into()],
                policy: "push".into(),
                ..Default::default()
            },
            Cache {
                key: "no-files-no-stage".into(),
                ..Default::default()
            },
        ]);
        let trace = Trace::new(super::super::trace::Masker::new([]), false);
        let cache = JobCache {
            payload: &job,
            variables: &[],
            config: None,
            short_token: "",
            trace: &trace,
            progress: &JobProgress::default(),
        };
        let project = MemoryProject::default();
        cache.restore(&project, "/builds/acme/demo").await;
        cache.archive(&project, &BTreeSet::new(), true).await;
        let log = text(&trace);
        assert!(
            log.contains("Not downloading cache pushed due to policy"),
            "{log}"
        );
        assert!(log.contains("Checking cache for pulled..."), "{log}");
        assert!(
            log.contains("Not uploading cache pulled due to policy"),
            "{log}"
        );
        assert!(log.contains("Creating cache pushed..."), "{log}");
        assert!(!log.contains("no-files-no-stage"), "{log}");
    }

    #[test]
    fn fallback_variable_may_not_reach_protected_caches() {
        let job = payload(vec![Cache {
            key: "main-key".into(),
            paths: vec!["out".into()],
            ..Default::default()
        }]);
        let vars = vec![JobVariable {
            key: "CACHE_FALLBACK_KEY".into(),
            value: "main-protected".into(),
            ..Default::default()
        }];
        let trace = Trace::new(super::super::trace::Masker::new([]), false);
        let cache = JobCache {
            payload: &job,
            variables: &vars,
            config: None,
            short_token: "",
            trace: &trace,
            progress: &JobProgress::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(cache.restore(&MemoryProject::default(), "/builds/acme/demo"));
        let log = text(&trace);
        assert!(
            log.contains(
                "CACHE_FALLBACK_KEY \"main-protected\" not allowed to end in \"-protected\""
            ),
            "{log}"
        );
        assert!(!log.contains("Checking cache for main-protected"), "{log}");
    }

    #[test]
    fn empty_keys_default_to_job_and_ref() {
        let job = payload(vec![]);
        let trace = Trace::new(super::super::trace::Masker::new([]), false);
        let cache = JobCache {
            payload: &job,
            variables: &[],
            config: None,
            short_token: "",
            trace: &trace,
            progress: &JobProgress::default(),
        };
        assert_eq!(
            cache.key("", true).map(|k| k.human).ok(),
            Some("build/main".into())
        );
        assert!(cache.key("..", true).is_err());
        assert!(text(&trace).contains("could not be sanitized"));
    }

    #[test]
    fn policies_and_whens() {
        assert_eq!(policy_allows("", "pull").ok(), Some(true));
        assert_eq!(policy_allows("pull-push", "push").ok(), Some(true));
        assert_eq!(policy_allows("pull", "push").ok(), Some(false));
        assert_eq!(policy_allows("push", "push").ok(), Some(true));
        assert!(policy_allows("sometimes", "pull").is_err());
        assert!(when_matches("", true) && !when_matches("", false));
        assert!(when_matches("on_failure", false) && !when_matches("on_failure", true));
        assert!(when_matches("always", true) && when_matches("always", false));
    }
}
