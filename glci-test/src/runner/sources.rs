//! `get_sources`: the checkout the official helper container makes, made here on the host with
//! the real `git` against the server's smart-HTTP endpoint (same refspecs, depth and checkout),
//! then copied into the build container. Job images therefore need no git, and nothing but the
//! Docker API is needed to reach the engine (a remote engine works too).
//!
//! Two ways into the container: a tar copied in through the API ([`sources_tar`], any engine),
//! or, when the engine runs on this host, a copy in the host directory the container mounts as
//! its builds directory ([`sources_into`]), as the official runner's builds volume: the engine's
//! archive extraction costs about 80 ms per job, a copy on the host a few, made while the
//! container starts.
//!
//! Either way the files have the modes the official helper gives them: it checks out as root
//! under `umask 0000` (unless `FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR`), so files are 0666,
//! executables and directories 0777, which lets images running as another user write them.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use super::archive;

use super::payload::JobPayload;
use super::trace::Trace;

/// Why getting the sources failed (the job fails with `script_failure` semantics of the stage).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourcesError(pub String);

/// Which files the checkout tracks (for `artifacts:untracked` and `cache:untracked`).
#[derive(Debug, Default, Clone)]
pub struct Checkout {
    pub tracked: std::collections::BTreeSet<String>,
}

/// Checkouts made earlier in this process, by everything that decides their content (the
/// repository, commit, refspecs, depth and git variables). Jobs of one pipeline all check
/// out the same commit; the second one copies the first one's checkout instead of fetching
/// again (a fifth of a second per job). The log says what the fetch would have said, so logs
/// do not depend on the order jobs ran in.
#[derive(Debug, Clone, Default)]
pub struct SourceCache {
    slots: Arc<tokio::sync::Mutex<HashMap<String, CacheSlot>>>,
    /// Where checkouts are made (`None`: the system's temporary directory).
    root: Option<std::path::PathBuf>,
}

/// One checkout, filled by the first job that needs it while later ones wait.
type CacheSlot = Arc<tokio::sync::Mutex<Option<Cached>>>;

#[derive(Debug)]
struct Cached {
    dir: tempfile::TempDir,
    checkout: Checkout,
    /// The remote URL the checkout was fetched with (the job token of the job that fetched).
    repo_url: String,
    /// Its `.git/config` as fetched, read once.
    git_config: String,
}

impl Cached {
    /// Gives the checkout in `dir` (this one, or a copy of it) the `.git/config` of a job
    /// fetching from `repo_url`: its own token, not that of the job that fetched. git writes
    /// the URL as given: tokens and our server's URLs need no quoting. The file keeps its mode.
    fn write_git_config(&self, dir: &Path, repo_url: &str) -> Result<(), SourcesError> {
        let config = dir.join(".git/config");
        std::fs::write(&config, self.git_config.replace(&self.repo_url, repo_url))
            .map_err(|e| SourcesError(format!("writing {}: {e}", config.display())))
    }
}

impl SourceCache {
    /// A cache whose checkouts are made under `root` (an existing directory): the same file
    /// system as the jobs' builds directories the checkouts are copied to.
    pub fn in_dir(root: std::path::PathBuf) -> SourceCache {
        SourceCache {
            slots: Arc::default(),
            root: Some(root),
        }
    }

    /// The checkout for `payload`: made now (fetch and checkout, logged as the official
    /// runner logs them), or one made earlier with the same lines logged. `true` when reused.
    /// The slot stays locked while the caller copies from it.
    async fn checkout(
        &self,
        payload: &JobPayload,
        trace: &Trace,
        clone_url: Option<&str>,
    ) -> Result<(tokio::sync::OwnedMutexGuard<Option<Cached>>, bool), SourcesError> {
        let entry = self
            .slots
            .lock()
            .await
            .entry(cache_key(payload))
            .or_default()
            .clone();
        let mut slot = entry.lock_owned().await;
        if slot.is_some() {
            announce_fetch(payload, trace);
            announce_checkout(payload, trace);
            return Ok((slot, true));
        }
        let dir = match &self.root {
            Some(root) => tempfile::tempdir_in(root),
            None => tempfile::tempdir(),
        }
        .map_err(|e| SourcesError(format!("making a directory for the checkout: {e}")))?;
        let checkout = get_sources(payload, dir.path(), trace, clone_url).await?;
        let config_path = dir.path().join(".git/config");
        let git_config = std::fs::read_to_string(&config_path)
            .map_err(|e| SourcesError(format!("reading {}: {e}", config_path.display())))?;
        *slot = Some(Cached {
            dir,
            checkout,
            repo_url: payload.git_info.repo_url.clone(),
            git_config,
        });
        Ok((slot, false))
    }
}

/// The job's sources as a tar that unpacks at the project directory, and what it tracks.
/// With a `cache`, a checkout of the same content made earlier is reused. `clone_url`: see
/// [`get_sources`].
pub async fn sources_tar(
    payload: &JobPayload,
    trace: &Trace,
    cache: Option<&SourceCache>,
    clone_url: Option<&str>,
) -> Result<(Vec<u8>, Checkout), SourcesError> {
    let project_dir = payload.project_dir();
    let pack = |dir: &Path| {
        archive::tar_dir_at(dir, &project_dir).map_err(|e| SourcesError(e.to_string()))
    };
    let Some(cache) = cache.filter(|_| !matches!(strategy(payload), "none" | "empty")) else {
        let dir = tempfile::tempdir().map_err(|e| SourcesError(e.to_string()))?;
        let checkout = get_sources(payload, dir.path(), trace, clone_url).await?;
        let tar = pack(dir.path())?;
        // Deleting a checkout takes tens of milliseconds; the job need not wait for it.
        tokio::task::spawn_blocking(move || drop(dir));
        return Ok((tar, checkout));
    };
    let (slot, reused) = cache.checkout(payload, trace, clone_url).await?;
    let cached = filled(&slot)?;
    if reused {
        // Written into the cached checkout itself: the slot stays locked until it is packed.
        cached.write_git_config(cached.dir.path(), &payload.git_info.repo_url)?;
    }
    Ok((pack(cached.dir.path())?, cached.checkout.clone()))
}

/// The job's sources as files in `project_dir` (an empty directory on the host that the job's
/// container sees as `CI_PROJECT_DIR`), with the job's own `.git/config`. A checkout made
/// earlier is copied, not linked: the job writes into its files.
pub async fn sources_into(
    payload: &JobPayload,
    trace: &Trace,
    cache: Option<&SourceCache>,
    project_dir: &Path,
    clone_url: Option<&str>,
) -> Result<Checkout, SourcesError> {
    let Some(cache) = cache.filter(|_| !matches!(strategy(payload), "none" | "empty")) else {
        return get_sources(payload, project_dir, trace, clone_url).await;
    };
    let (slot, reused) = cache.checkout(payload, trace, clone_url).await?;
    let cached = filled(&slot)?;
    let (from, to) = (cached.dir.path().to_path_buf(), project_dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        copy_tree(&from, &to)?;
        std::fs::set_permissions(&to, std::fs::metadata(&from)?.permissions())
    })
    .await
    .map_err(|e| SourcesError(e.to_string()))?
    .map_err(|e| SourcesError(format!("copying the checkout: {e}")))?;
    if reused {
        cached.write_git_config(project_dir, &payload.git_info.repo_url)?;
    }
    Ok(cached.checkout.clone())
}

/// The entry [`SourceCache::checkout`] filled.
fn filled(slot: &Option<Cached>) -> Result<&Cached, SourcesError> {
    slot.as_ref()
        .ok_or_else(|| SourcesError("the checkout cache lost an entry".into()))
}

#[cfg(unix)]
fn copy_symlink(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)
}

#[cfg(not(unix))]
fn copy_symlink(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::copy(src, dst).map(|_| ())
}

/// Recreates the tree under `from` in `to` (an existing directory): directories made and
/// files copied with their modes, symbolic links recreated.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
            std::fs::set_permissions(&dst, entry.metadata()?.permissions())?;
        } else if kind.is_symlink() {
            copy_symlink(&src, &dst)?;
        } else {
            // Copies the permission bits too.
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// The mode a file or directory of the checkout would have had if git had made it under
/// `umask 0000`, as the official helper does: git asks for 0777 (directories, executables),
/// 0666 (other files) or 0444 (objects), and so owner-writable entries become writable by all.
#[cfg(unix)]
fn umask_0000_mode(mode: u32) -> u32 {
    let mode = mode & 0o7777;
    if mode & 0o200 == 0 {
        mode
    } else if mode & 0o100 != 0 {
        mode | 0o777
    } else {
        mode | 0o666
    }
}

/// Gives `dir` and everything under it (symbolic links aside) the modes of
/// [`umask_0000_mode`].
#[cfg(unix)]
fn apply_helper_umask(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, meta: &std::fs::Metadata| {
        let mode = meta.permissions().mode();
        let wanted = umask_0000_mode(mode);
        if wanted != mode & 0o7777 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
        }
        Ok::<(), std::io::Error>(())
    };
    set(dir, &std::fs::metadata(dir)?)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            apply_helper_umask(&entry.path())?;
        } else if !kind.is_symlink() {
            set(&entry.path(), &entry.metadata()?)?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn apply_helper_umask(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Whether the job keeps git's own modes (`FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR`).
fn umask_disabled(payload: &JobPayload) -> bool {
    matches!(
        payload.variable("FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR"),
        Some("true" | "1")
    )
}

/// The modes the official helper leaves on a checkout in `dir` (see [`umask_0000_mode`]);
/// without its umask, git's own, and 0755 for the project directory (not the 0700 of a
/// temporary directory).
fn helper_modes(payload: &JobPayload, dir: &Path) -> Result<(), SourcesError> {
    let result = if umask_disabled(payload) {
        set_mode(dir, 0o755)
    } else {
        apply_helper_umask(dir)
    };
    result.map_err(|e| SourcesError(format!("setting the modes of {}: {e}", dir.display())))
}

#[cfg(unix)]
pub(super) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
pub(super) fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Whether `path` belongs to root: files glci makes are root's, as the official helper's are,
/// only when glci runs as root.
#[cfg(unix)]
pub(super) fn owned_by_root(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.uid() == 0)
}

#[cfg(not(unix))]
pub(super) fn owned_by_root(_path: &Path) -> std::io::Result<bool> {
    Ok(false)
}

fn strategy(payload: &JobPayload) -> &str {
    payload
        .variable("GIT_STRATEGY")
        .unwrap_or(if payload.allow_git_fetch {
            "fetch"
        } else {
            "clone"
        })
}

fn cache_key(payload: &JobPayload) -> String {
    let git = &payload.git_info;
    let vars = [
        "GIT_STRATEGY",
        "GIT_CHECKOUT",
        "GIT_FETCH_EXTRA_FLAGS",
        "GIT_SUBMODULE_STRATEGY",
        "GIT_CLEAN_FLAGS",
        // The checkout's modes.
        "FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR",
    ]
    .map(|k| payload.variable(k).unwrap_or(""));
    format!(
        "{}\n{}\n{}\n{}\n{}",
        strip_url_credentials(&git.repo_url),
        git.sha,
        git.refspecs.join(" "),
        git.depth,
        vars.join("\n")
    )
}

/// What the official runner prints while it initialises and fetches.
fn announce_fetch(payload: &JobPayload, trace: &Trace) {
    let depth = payload.git_info.depth;
    if depth > 0 {
        trace.line(&format!(
            "Fetching changes with git depth set to {depth}..."
        ));
    } else {
        trace.line("Fetching changes...");
    }
    trace.line(&format!(
        "Initialized empty Git repository in {}/.git/",
        payload.project_dir()
    ));
    trace.line("Created fresh repository.");
}

/// What the official runner prints while it checks out.
fn announce_checkout(payload: &JobPayload, trace: &Trace) {
    let git = &payload.git_info;
    if payload.variable("GIT_CHECKOUT") == Some("false") {
        trace.line("Skipping Git checkout");
    } else {
        trace.line(&format!(
            "Checking out {} as detached HEAD (ref is {})...",
            &git.sha[..8.min(git.sha.len())],
            git.git_ref
        ));
    }
    trace.line("Skipping Git submodules setup");
}

/// Fetches and checks out the job's commit into `dir` (empty), printing what the official
/// runner prints. `GIT_STRATEGY` none/empty leaves the directory empty. With `clone_url`
/// (the server as this process reaches it, when jobs reach it under another name), the
/// fetch goes there while the checkout's `origin` stays the payload's `repo_url`.
pub async fn get_sources(
    payload: &JobPayload,
    dir: &Path,
    trace: &Trace,
    clone_url: Option<&str>,
) -> Result<Checkout, SourcesError> {
    match strategy(payload) {
        "none" | "empty" => {
            trace.line("Skipping Git repository setup and creating an empty build directory");
            helper_modes(payload, dir)?;
            return Ok(Checkout::default());
        }
        "clone" | "fetch" => {}
        other => return Err(SourcesError(format!("unknown GIT_STRATEGY: {other}"))),
    }
    let git = &payload.git_info;
    if git.sha.len() < 8 {
        return Err(SourcesError(format!(
            "job payload has an invalid commit SHA `{}`",
            git.sha
        )));
    }
    announce_fetch(payload, trace);
    run_git(dir, &["init", "-q", "--template", ""]).await?;
    run_git(dir, &["remote", "add", "origin", &git.repo_url]).await?;

    let mut fetch: Vec<String> = vec![
        "-c".into(),
        "http.userAgent=glci".into(),
        // A throw-away clone: no `git maintenance` process after the fetch.
        "-c".into(),
        "maintenance.auto=false".into(),
        "fetch".into(),
        "origin".into(),
        "--no-recurse-submodules".into(),
    ];
    fetch.extend(git.refspecs.iter().cloned());
    if git.depth > 0 {
        fetch.push("--depth".into());
        fetch.push(git.depth.to_string());
    }
    let extra = payload
        .variable("GIT_FETCH_EXTRA_FLAGS")
        .unwrap_or("--prune --quiet");
    fetch.extend(extra.split_whitespace().map(str::to_string));
    let fetch_refs: Vec<&str> = fetch.iter().map(String::as_str).collect();
    // git's own URL rewriting, through the environment: nothing of it lands in .git/config,
    // and the token stays out of the process list.
    let rewrite: Vec<(String, String)> = clone_url
        .and_then(|clone_url| fetch_rewrite(&git.repo_url, clone_url))
        .map(|(to, from)| {
            vec![
                ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
                (
                    "GIT_CONFIG_KEY_0".to_string(),
                    format!("url.{to}.insteadOf"),
                ),
                ("GIT_CONFIG_VALUE_0".to_string(), from),
            ]
        })
        .unwrap_or_default();
    run_git_with_env(dir, &fetch_refs, &rewrite).await?;

    announce_checkout(payload, trace);
    if payload.variable("GIT_CHECKOUT") != Some("false") {
        run_git(
            dir,
            &[
                "-c",
                "submodule.recurse=false",
                "checkout",
                "-f",
                "-q",
                &git.sha,
            ],
        )
        .await?;
    }

    let listed = run_git(dir, &["ls-files", "-z"]).await?;
    let tracked = listed
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    helper_modes(payload, dir)?;
    Ok(Checkout { tracked })
}

/// `(base this process fetches from, base in repo_url)` for git's `url.<base>.insteadOf`:
/// `repo_url`'s scheme, credentials and host swapped for `clone_url`'s scheme and host.
fn fetch_rewrite(repo_url: &str, clone_url: &str) -> Option<(String, String)> {
    let (_, rest) = repo_url.split_once("://")?;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let from = format!(
        "{}/",
        &repo_url[..repo_url.len() - rest.len() + authority.len()]
    );
    let (scheme, host) = clone_url.trim_end_matches('/').split_once("://")?;
    let to = match authority.rsplit_once('@') {
        Some((credentials, _)) => format!("{scheme}://{credentials}@{host}/"),
        None => format!("{scheme}://{host}/"),
    };
    (to != from).then_some((to, from))
}

/// Runs git in `dir` and returns stdout; the error carries git's own message, with any
/// credentials in URLs removed.
async fn run_git(dir: &Path, args: &[&str]) -> Result<String, SourcesError> {
    run_git_with_env(dir, args, &[]).await
}

/// [`run_git`] with more environment variables.
async fn run_git_with_env(
    dir: &Path,
    args: &[&str],
    env: &[(String, String)],
) -> Result<String, SourcesError> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "Never")
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| SourcesError(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SourcesError(strip_url_credentials(stderr.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `http://user:secret@host/…` → `http://host/…`.
fn strip_url_credentials(text: &str) -> String {
    let re = regex::Regex::new(r"(https?://)[^/@\s]+@").expect("constant regex");
    re.replace_all(text, "$1").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runners_fetch_is_rewritten_to_the_clone_url() {
        assert_eq!(
            fetch_rewrite(
                "http://gitlab-ci-token:tok@glci-server:4123/group/p.git",
                "http://127.0.0.1:4123"
            ),
            Some((
                "http://gitlab-ci-token:tok@127.0.0.1:4123/".to_string(),
                "http://gitlab-ci-token:tok@glci-server:4123/".to_string()
            ))
        );
        assert_eq!(
            fetch_rewrite("http://glci-server:1/g/p.git", "http://127.0.0.1:1/"),
            Some((
                "http://127.0.0.1:1/".to_string(),
                "http://glci-server:1/".to_string()
            ))
        );
        assert_eq!(
            fetch_rewrite("http://t:x@172.17.0.1:1/g/p.git", "http://172.17.0.1:1"),
            None
        );
    }

    #[test]
    fn credentials_are_stripped_from_git_errors() {
        assert_eq!(
            strip_url_credentials(
                "fatal: unable to access 'http://gitlab-ci-token:glcbt-1@172.17.0.1:1/a/b.git/'"
            ),
            "fatal: unable to access 'http://172.17.0.1:1/a/b.git/'"
        );
    }
}

#[cfg(test)]
mod copy_tests {
    use super::{apply_helper_umask, copy_tree, umask_0000_mode};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn copies_files_with_their_modes_directories_and_symbolic_links() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(from.path().join("a/b")).unwrap();
        std::fs::write(from.path().join("a/b/f.txt"), "content").unwrap();
        std::fs::write(from.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            from.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        std::fs::set_permissions(
            from.path().join("a"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        std::fs::write(from.path().join(".hidden"), "h").unwrap();
        std::os::unix::fs::symlink("a/b/f.txt", from.path().join("link")).unwrap();
        copy_tree(from.path(), to.path()).unwrap();
        let (src, dst) = (
            std::fs::metadata(from.path().join("a/b/f.txt")).unwrap(),
            std::fs::metadata(to.path().join("a/b/f.txt")).unwrap(),
        );
        assert_ne!(src.ino(), dst.ino(), "a copy: the job writes into it");
        assert_eq!(
            std::fs::read_to_string(to.path().join("a/b/f.txt")).unwrap(),
            "content"
        );
        assert_eq!(mode(&to.path().join("run.sh")), 0o777);
        assert_eq!(mode(&to.path().join("a")), 0o777);
        assert_eq!(
            std::fs::read_to_string(to.path().join(".hidden")).unwrap(),
            "h"
        );
        assert_eq!(
            std::fs::read_link(to.path().join("link")).unwrap(),
            std::path::Path::new("a/b/f.txt")
        );
    }

    #[test]
    fn modes_are_those_git_makes_under_umask_0000() {
        assert_eq!(umask_0000_mode(0o100644), 0o666);
        assert_eq!(umask_0000_mode(0o755), 0o777);
        assert_eq!(umask_0000_mode(0o600), 0o666);
        assert_eq!(umask_0000_mode(0o700), 0o777);
        assert_eq!(umask_0000_mode(0o444), 0o444, "git objects stay read-only");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), "").unwrap();
        std::fs::set_permissions(
            dir.path().join("sub/f"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/f", dir.path().join("link")).unwrap();
        apply_helper_umask(dir.path()).unwrap();
        assert_eq!(mode(dir.path()), 0o777);
        assert_eq!(mode(&dir.path().join("sub")), 0o777);
        assert_eq!(mode(&dir.path().join("sub/f")), 0o666);
    }
}
