//! GitLab's runner API (`/api/v4/...`) as the official runner and glci's built-in runner use
//! it: registration, job requests, state updates, trace patches, artifacts. Status codes and
//! headers follow `docs/runner-contract.md` §2; unknown JSON fields are ignored like GitLab does.

pub(crate) mod archive_record;
mod artifacts;
mod dotenv;
mod jobs;
mod payload;
mod runners;
pub mod spec;
pub mod state;
mod trace;

use http::{Method, StatusCode};
use serde_json::Value;

use super::http::{self as h, Request, Response};
use super::params;
use super::Shared;

pub(crate) use state::ApiState;

pub(crate) async fn handle(shared: &Shared, req: Request) -> Response {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let rest = path.strip_prefix("/api/v4").unwrap_or("");
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    match (&method, segs.as_slice()) {
        (&Method::POST, ["runners"]) => runners::register(shared, req).await,
        (&Method::DELETE, ["runners"]) => runners::unregister(shared, req).await,
        (&Method::POST, ["runners", "verify"]) => runners::verify(shared, req).await,
        (&Method::DELETE, ["runners", "managers"]) => {
            runners::unregister_manager(shared, req).await
        }
        (&Method::POST, ["runners", "reset_authentication_token"]) => {
            runners::reset_token(shared, req).await
        }
        (&Method::POST, ["jobs", "request"]) => jobs::request(shared, req).await,
        (&Method::PUT, ["jobs", id]) => match parse_id(id) {
            Some(id) => jobs::update(shared, req, id).await,
            None => not_found(),
        },
        (&Method::PATCH, ["jobs", id, "trace"]) => match parse_id(id) {
            Some(id) => trace::patch(shared, req, id).await,
            None => not_found(),
        },
        (&Method::POST, ["jobs", id, "artifacts"]) => match parse_id(id) {
            Some(id) => artifacts::upload(shared, req, id).await,
            None => not_found(),
        },
        (&Method::GET, ["jobs", id, "artifacts"]) => match parse_id(id) {
            Some(id) => artifacts::download(shared, req, id).await,
            None => not_found(),
        },
        // Everything else is the API jobs call with their token.
        _ => crate::server::job_api::handle(shared, req).await,
    }
}

fn parse_id(s: &str) -> Option<spec::JobId> {
    s.parse().ok().map(spec::JobId)
}

fn not_found() -> Response {
    h::json_message(StatusCode::NOT_FOUND, "404 Not Found")
}

fn forbidden() -> Response {
    h::json_message(StatusCode::FORBIDDEN, "403 Forbidden")
}

/// Every parameter of the request (query string and body, in any of GitLab's formats).
async fn params_of(req: Request) -> Result<Value, Response> {
    params::read(req).await.map_err(|e| e.response())
}

/// The job token from the `Job-Token` header, else the `token` query parameter.
fn job_token_from(req: &Request) -> Option<String> {
    if let Some(t) = h::header_str(req.headers(), "job-token") {
        return Some(t.to_string());
    }
    let pairs = h::query_pairs(req.uri().query());
    h::query_get(&pairs, "token").map(str::to_string)
}
