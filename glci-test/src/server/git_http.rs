//! Git smart HTTP for the registered bare repositories, served by `git http-backend` as a
//! CGI (docs/protocols.md §1): it handles protocol v0/v2, gzip'd requests and shallow fetches
//! exactly like git itself. Only upload-pack (fetch/clone) is served; push is refused.
//! Access needs HTTP Basic `gitlab-ci-token:<job token>` of a job of that project that is
//! still running, like GitLab's CI job token.

use std::path::PathBuf;
use std::process::Stdio;

use base64::Engine;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::http::{self as h, Request, Response};
use super::runner_api::state::ApiState;
use super::Shared;

/// `/<namespace>/<project>.git/<rest>` → (`namespace/project`, `rest`).
pub(crate) fn split_path(path: &str) -> Option<(String, String)> {
    let idx = path
        .find(".git/")
        .or_else(|| path.ends_with(".git").then(|| path.len() - 4))?;
    let repo = path.get(1..idx)?;
    if repo.is_empty() || !repo.contains('/') {
        return None;
    }
    let rest = path.get(idx + 4..).unwrap_or("").trim_start_matches('/');
    Some((repo.to_string(), rest.to_string()))
}

fn unauthorized() -> Response {
    let mut resp = h::text(StatusCode::UNAUTHORIZED, "HTTP Basic: Access denied");
    h::set_header(&mut resp, "www-authenticate", "Basic realm=\"GitLab\"");
    resp
}

/// The job token from `Authorization: Basic gitlab-ci-token:<token>`.
fn basic_job_token(req: &Request) -> Option<String> {
    let value = h::header_str(req.headers(), "authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    (user == "gitlab-ci-token").then(|| pass.to_string())
}

fn authorized(api: &ApiState, repo: &str, token: &str) -> bool {
    let inner = api.lock();
    ApiState::job_by_token(&inner, token)
        .is_some_and(|job| job.state.is_active() && job.spec.project.path == repo)
}

pub(crate) async fn handle(shared: &Shared, req: Request, repo: &str, rest: &str) -> Response {
    let method = req.method().clone();
    let query = h::query_pairs(req.uri().query());
    let service = h::query_get(&query, "service").map(str::to_string);
    // Push is never allowed, whoever asks.
    if rest == "git-receive-pack" || service.as_deref() == Some("git-receive-pack") {
        return h::text(
            StatusCode::FORBIDDEN,
            "pushing to this repository is not allowed",
        );
    }
    let smart = (method == http::Method::GET
        && rest == "info/refs"
        && service.as_deref() == Some("git-upload-pack"))
        || (method == http::Method::POST && rest == "git-upload-pack");
    if !smart {
        // Dumb HTTP (no `service=`) cannot do shallow fetches; GitLab refuses it too.
        return h::text(
            StatusCode::FORBIDDEN,
            "only smart HTTP git-upload-pack is served",
        );
    }
    let Some(token) = basic_job_token(&req) else {
        return unauthorized();
    };
    if !authorized(&shared.api, repo, &token) {
        return unauthorized();
    }
    let bare = {
        let repos = shared.repos.read().unwrap_or_else(|p| p.into_inner());
        repos.get(repo).cloned()
    };
    let Some(bare) = bare else {
        return h::text(
            StatusCode::NOT_FOUND,
            &format!("repository {repo}.git not found"),
        );
    };
    match run_backend(req, &bare, rest).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!("git http-backend for {repo} ({}): {e}", bare.display());
            h::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("git http-backend failed: {e}"),
            )
        }
    }
}

/// Why `git http-backend` gave no usable answer; logged, and sent in the 500 answer.
#[derive(Debug, thiserror::Error)]
enum BackendError {
    #[error("{} has no parent directory", .0.display())]
    NoParent(PathBuf),
    #[error("cannot start `git http-backend`: {0}")]
    Spawn(std::io::Error),
    #[error("no {0} pipe")]
    NoPipe(&'static str),
    #[error("reading CGI headers: {0}")]
    ReadHeaders(std::io::Error),
    #[error("git http-backend ended before sending headers")]
    NoHeaders,
    #[error("malformed CGI header line {0:?}")]
    MalformedHeader(String),
    #[error("bad CGI status {0:?}")]
    BadStatus(String),
}

/// Runs `git http-backend` for one request: headers become CGI variables, the body goes to
/// stdin, the CGI header block is parsed and the rest is streamed back.
async fn run_backend(
    req: Request,
    bare: &std::path::Path,
    rest: &str,
) -> Result<Response, BackendError> {
    let (root, name): (PathBuf, String) = match (bare.parent(), bare.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_string_lossy().into_owned()),
        _ => return Err(BackendError::NoParent(bare.to_path_buf())),
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &root)
        .env("PATH_INFO", format!("/{name}/{rest}"))
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", req.method().as_str())
        .env("QUERY_STRING", req.uri().query().unwrap_or(""))
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        // The snapshot repository may belong to another uid (e.g. written by a container).
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    for (name, value) in req.headers() {
        let Ok(value) = value.to_str() else { continue };
        match name.as_str() {
            "content-type" => {
                cmd.env("CONTENT_TYPE", value);
            }
            "content-length" => {
                cmd.env("CONTENT_LENGTH", value);
            }
            // Never hand credentials to a subprocess.
            "authorization" => {}
            other => {
                let var = format!("HTTP_{}", other.to_ascii_uppercase().replace('-', "_"));
                cmd.env(var, value);
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(BackendError::Spawn)?;
    let mut stdin = child.stdin.take().ok_or(BackendError::NoPipe("stdin"))?;
    let stdout = child.stdout.take().ok_or(BackendError::NoPipe("stdout"))?;
    let stderr = child.stderr.take().ok_or(BackendError::NoPipe("stderr"))?;
    // Feed the body concurrently with reading the reply, so neither pipe can fill up and
    // block the other side.
    let mut body = req.into_body();
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
        }
        let _ = stdin.shutdown().await;
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!("git http-backend: {line}");
        }
    });
    let mut reader = BufReader::new(stdout);
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(BackendError::ReadHeaders)?;
        if n == 0 {
            return Err(BackendError::NoHeaders);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(BackendError::MalformedHeader(line.to_string()));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok());
            status = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| BackendError::BadStatus(v.to_string()))?;
        } else {
            headers.push((k.to_string(), v.to_string()));
        }
    }
    // The child is reaped when its stdout is drained; `kill_on_drop` covers aborted clients.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let mut resp = h::response(status, h::reader_body(reader));
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::split_path;

    #[test]
    fn repository_paths_are_split_at_dot_git() {
        assert_eq!(
            split_path("/group/project.git/info/refs"),
            Some(("group/project".to_string(), "info/refs".to_string()))
        );
        assert_eq!(
            split_path("/a/b/c.git/git-upload-pack"),
            Some(("a/b/c".to_string(), "git-upload-pack".to_string()))
        );
        assert_eq!(split_path("/project.git/info/refs"), None);
        assert_eq!(split_path("/glci-cache/key"), None);
    }
}
