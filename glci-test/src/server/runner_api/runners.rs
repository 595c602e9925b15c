//! Runner registration endpoints (docs/runner-contract.md §2.1).

use http::StatusCode;
use serde_json::{json, Value};

use super::{forbidden, params_of};
use crate::server::http::{self as h, Request, Response};
use crate::server::params;
use crate::server::{random_string, Shared};

fn token_of(body: &Value, req_token: Option<String>) -> String {
    params::string(body, "token")
        .map(str::to_string)
        .or(req_token)
        .unwrap_or_default()
}

fn runner_token_header(req: &Request) -> Option<String> {
    h::header_str(req.headers(), "runner-token").map(str::to_string)
}

/// `POST /runners`: legacy registration with the registration token.
pub(super) async fn register(shared: &Shared, req: Request) -> Response {
    let header = runner_token_header(&req);
    let body = match params_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = token_of(&body, header);
    if !crate::server::sigv4::constant_time_eq(
        token.as_bytes(),
        shared.api.registration_token().as_bytes(),
    ) {
        return forbidden();
    }
    let tags = params::list(&body, "tag_list");
    // GitLab's default for `run_untagged` is true.
    let run_untagged = params::flag(&body, "/run_untagged").unwrap_or(true);
    let description = params::string(&body, "description").unwrap_or("");
    let creds = shared.api.create_runner(&tags, run_untagged, description);
    h::json(
        StatusCode::CREATED,
        &json!({ "id": creds.id, "token": creds.token, "token_expires_at": null }),
    )
}

/// `POST /runners/verify`.
pub(super) async fn verify(shared: &Shared, req: Request) -> Response {
    let header = runner_token_header(&req);
    let body = match params_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = token_of(&body, header);
    let inner = shared.api.lock();
    match inner.runners.get(&token) {
        // `token_expires_at: null`: a real expiry makes the runner reset its token.
        Some(r) => h::json(
            StatusCode::OK,
            &json!({ "id": r.id, "token": token, "token_expires_at": null }),
        ),
        None => forbidden(),
    }
}

/// `DELETE /runners`.
pub(super) async fn unregister(shared: &Shared, req: Request) -> Response {
    let header = runner_token_header(&req);
    let body = match params_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = token_of(&body, header);
    let mut inner = shared.api.lock();
    match inner.runners.remove(&token) {
        Some(_) => h::response(StatusCode::NO_CONTENT, h::empty()),
        None => forbidden(),
    }
}

/// `DELETE /runners/managers`: the runner entry stays; only the manager goes.
pub(super) async fn unregister_manager(shared: &Shared, req: Request) -> Response {
    let header = runner_token_header(&req);
    let body = match params_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = token_of(&body, header);
    if !shared.api.lock().runners.contains_key(&token) {
        return forbidden();
    }
    if params::string(&body, "system_id").unwrap_or("").is_empty() {
        return h::json_message(
            StatusCode::BAD_REQUEST,
            "400 Bad request - system_id is missing",
        );
    }
    h::response(StatusCode::NO_CONTENT, h::empty())
}

/// `POST /runners/reset_authentication_token`.
pub(super) async fn reset_token(shared: &Shared, req: Request) -> Response {
    let header = runner_token_header(&req);
    let body = match params_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = token_of(&body, header);
    let mut inner = shared.api.lock();
    let Some(runner) = inner.runners.remove(&token) else {
        return forbidden();
    };
    let fresh = format!("glrt-{}", random_string(24));
    inner.runners.insert(fresh.clone(), runner);
    h::json(
        StatusCode::CREATED,
        &json!({ "token": fresh, "token_expires_at": null }),
    )
}
