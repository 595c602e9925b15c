//! The part of GitLab's REST API a job calls with its `CI_JOB_TOKEN` at `CI_API_V4_URL`:
//! the current job, job artifacts, generic packages and releases.
//!
//! Authentication is GitLab's for job tokens: the `JOB-TOKEN` header, `Authorization:
//! Bearer <token>`, HTTP basic auth as `gitlab-ci-token`, or a `job_token` parameter. Only a
//! job that is still running may use its token (401 otherwise, as GitLab's
//! `find_user_from_job_token` refuses finished jobs). A job reaches only its own project
//! (404 for any other, GitLab's answer for a project it cannot see). Every other path gets
//! GitLab's `{"message":"404 Not Found"}` and one line in the calling job's log naming the
//! endpoint, so a user knows glci, not their script, is what is missing.

pub(crate) mod artifacts;
mod job;
mod packages;
mod releases;

use base64::Engine as _;
use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::http::{self as h, Request, Response};
use super::runner_api::spec::JobId;
use super::runner_api::state::{ApiState, Inner, Job};
use super::Shared;

/// Routes one `/api/v4/...` request the runner API does not own.
pub(crate) async fn handle(shared: &Shared, req: Request) -> Response {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let rest = path.strip_prefix("/api/v4").unwrap_or("");
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let query = super::params::query(&req);
    let mut caller = authenticate(&shared.api, &req, &query);
    let Some(route) = Route::of(&method, &segs) else {
        // GitLab answers unknown routes 404 whoever asks; a job's call also gets a log line.
        if let Some(caller) = &caller {
            not_implemented(shared, caller.id, &method, &path);
        }
        return not_found();
    };
    // A release's parameters, `job_token` among them, may also come in the body.
    let mut req = Some(req);
    let mut release_params = None;
    if let Some(r) = req.take_if(|_| matches!(route, Route::CreateRelease)) {
        let params = match super::params::read(r).await {
            Ok(p) => p,
            Err(e) => return e.response(),
        };
        if caller.is_none() {
            caller = super::params::string(&params, "job_token")
                .and_then(|t| caller_for(&shared.api, t));
        }
        release_params = Some(params);
    }
    let Some(caller) = caller else {
        return unauthorized();
    };
    if let ["projects", project, ..] = segs.as_slice() {
        if !caller.owns_project(project) {
            return not_found();
        }
    }
    match route {
        Route::CurrentJob => job::current(shared, caller.id),
        Route::ArtifactsByRef { ref_name, file } => {
            artifacts::by_ref(shared, &caller, ref_name, file, &query).await
        }
        Route::ArtifactsById(id) => artifacts::by_id(shared, &caller, id).await,
        Route::Package { coords, upload } => {
            if upload {
                match req.take() {
                    Some(req) => packages::upload(shared, &caller, &coords, req).await,
                    None => not_found(),
                }
            } else {
                packages::download(shared, &caller, &coords).await
            }
        }
        Route::CreateRelease => {
            releases::create(shared, &caller, release_params.unwrap_or_default())
        }
    }
}

/// The endpoints jobs can call.
enum Route<'a> {
    /// `GET /job`
    CurrentJob,
    /// `GET /projects/:id/jobs/artifacts/:ref_name/download` (`file` = `None`) or
    /// `.../:ref_name/raw/*path`; `ref_name` may hold slashes, as GitLab's route allows.
    ArtifactsByRef {
        ref_name: String,
        file: Option<String>,
    },
    /// `GET /projects/:id/jobs/:job_id/artifacts`
    ArtifactsById(JobId),
    /// `PUT`/`GET /projects/:id/packages/generic/:name/:version/:file`
    Package {
        coords: packages::Coordinates<'a>,
        upload: bool,
    },
    /// `POST /projects/:id/releases`
    CreateRelease,
}

impl<'a> Route<'a> {
    fn of(method: &Method, segs: &[&'a str]) -> Option<Route<'a>> {
        Some(match (method, segs) {
            (&Method::GET, ["job"]) => Route::CurrentJob,
            (&Method::GET, ["projects", _, "jobs", "artifacts", tail @ ..]) => {
                if let Some(raw) = tail.iter().position(|s| *s == "raw").filter(|&i| i > 0) {
                    if raw + 1 >= tail.len() {
                        return None;
                    }
                    Route::ArtifactsByRef {
                        ref_name: tail[..raw].join("/"),
                        file: Some(tail[raw + 1..].join("/")),
                    }
                } else if let [ref_parts @ .., "download"] = tail {
                    if ref_parts.is_empty() {
                        return None;
                    }
                    Route::ArtifactsByRef {
                        ref_name: ref_parts.join("/"),
                        file: None,
                    }
                } else {
                    return None;
                }
            }
            (&Method::GET, ["projects", _, "jobs", job_id, "artifacts"]) => {
                Route::ArtifactsById(JobId(job_id.parse().ok()?))
            }
            (
                &Method::PUT | &Method::GET,
                ["projects", _, "packages", "generic", name, version, file],
            ) => Route::Package {
                coords: packages::Coordinates {
                    name,
                    version,
                    file,
                },
                upload: method == Method::PUT,
            },
            (&Method::POST, ["projects", _, "releases"]) => Route::CreateRelease,
            _ => return None,
        })
    }
}

/// The running job a request's token belongs to.
pub(crate) struct Caller {
    pub(crate) id: JobId,
    pub(crate) project_id: u64,
    pub(crate) project_path: String,
}

impl Caller {
    /// Whether `:id` of a `/projects/:id/...` path names the caller's project: its number or
    /// its full path (`group%2Fproject`, decoded by the router).
    fn owns_project(&self, id: &str) -> bool {
        id == self.project_id.to_string() || id == self.project_path
    }
}

/// The token as GitLab's `find_job_from_job_token` reads it.
fn token_of(req: &Request, query: &Value) -> Option<String> {
    let headers = req.headers();
    if let Some(t) = h::header_str(headers, "job-token") {
        return Some(t.trim().to_string());
    }
    if let Some(auth) = h::header_str(headers, "authorization") {
        let (scheme, value) = auth.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(value.trim().to_string());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            return (user == "gitlab-ci-token").then(|| password.to_string());
        }
    }
    super::params::string(query, "job_token").map(str::to_string)
}

fn authenticate(api: &ApiState, req: &Request, query: &Value) -> Option<Caller> {
    caller_for(api, &token_of(req, query)?)
}

/// The running job owning `token`.
fn caller_for(api: &ApiState, token: &str) -> Option<Caller> {
    let inner = api.lock();
    let job = ApiState::job_by_token(&inner, token)?;
    job.state.is_active().then(|| Caller {
        id: job.id,
        project_id: job.spec.project.id,
        project_path: job.spec.project.path.clone(),
    })
}

/// Adds a line to a job's log (after the runner's trace).
pub(crate) fn note(inner: &mut Inner, id: JobId, line: String) {
    if let Some(job) = inner.jobs.get_mut(&id.0) {
        job.notes.push(line);
    }
}

fn not_implemented(shared: &Shared, caller: JobId, method: &Method, path: &str) {
    let line = format!(
        "glci: this job called {method} {path}, which glci's stand-in for GitLab does not \
         implement (answered 404)"
    );
    tracing::info!("job {caller}: {line}");
    note(&mut shared.api.lock(), caller, line);
}

pub(crate) fn not_found() -> Response {
    h::json_message(StatusCode::NOT_FOUND, "404 Not Found")
}

fn unauthorized() -> Response {
    h::json_message(StatusCode::UNAUTHORIZED, "401 Unauthorized")
}

pub(crate) fn bad_request(msg: &str) -> Response {
    h::json_message(StatusCode::BAD_REQUEST, &format!("400 Bad request - {msg}"))
}

/// A job of this server by id, if it belongs to the caller's project.
pub(crate) fn project_job<'a>(inner: &'a Inner, caller: &Caller, id: JobId) -> Option<&'a Job> {
    inner
        .jobs
        .get(&id.0)
        .filter(|j| j.spec.project.path == caller.project_path)
}
