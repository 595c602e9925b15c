//! `get_sources`: the checkout the official helper container makes, made here on the host with
//! the real `git` against the server's smart-HTTP endpoint (same refspecs, depth and checkout),
//! then copied into the build container. Job images therefore need no git, and nothing but the
//! Docker API is needed to reach the engine (a remote engine works too).

use std::path::Path;
use std::process::Stdio;

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

/// Fetches and checks out the job's commit into `dir` (empty), printing what the official
/// runner prints. `GIT_STRATEGY` none/empty leaves the directory empty.
pub async fn get_sources(
    payload: &JobPayload,
    dir: &Path,
    trace: &Trace,
) -> Result<Checkout, SourcesError> {
    let project_dir = payload.project_dir();
    let strategy = payload
        .variable("GIT_STRATEGY")
        .unwrap_or(if payload.allow_git_fetch {
            "fetch"
        } else {
            "clone"
        });
    match strategy {
        "none" | "empty" => {
            trace.line("Skipping Git repository setup and creating an empty build directory");
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
    if git.depth > 0 {
        trace.line(&format!(
            "Fetching changes with git depth set to {}...",
            git.depth
        ));
    } else {
        trace.line("Fetching changes...");
    }
    run_git(dir, &["init", "-q", "--template", ""]).await?;
    trace.line(&format!(
        "Initialized empty Git repository in {project_dir}/.git/"
    ));
    run_git(dir, &["remote", "add", "origin", &git.repo_url]).await?;
    trace.line("Created fresh repository.");

    let mut fetch: Vec<String> = vec![
        "-c".into(),
        "http.userAgent=glci".into(),
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
    run_git(dir, &fetch_refs).await?;

    if payload.variable("GIT_CHECKOUT") == Some("false") {
        trace.line("Skipping Git checkout");
    } else {
        trace.line(&format!(
            "Checking out {} as detached HEAD (ref is {})...",
            &git.sha[..8],
            git.git_ref
        ));
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
    trace.line("Skipping Git submodules setup");

    let listed = run_git(dir, &["ls-files", "-z"]).await?;
    let tracked = listed
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Checkout { tracked })
}

/// Runs git in `dir` and returns stdout; the error carries git's own message, with any
/// credentials in URLs removed.
async fn run_git(dir: &Path, args: &[&str]) -> Result<String, SourcesError> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
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
    fn credentials_are_stripped_from_git_errors() {
        assert_eq!(
            strip_url_credentials(
                "fatal: unable to access 'http://gitlab-ci-token:glcbt-1@172.17.0.1:1/a/b.git/'"
            ),
            "fatal: unable to access 'http://172.17.0.1:1/a/b.git/'"
        );
    }
}
