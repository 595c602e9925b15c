//! GitLab's registry auth: the registry answers `401` with
//! `WWW-Authenticate: Bearer realm="<server>/jwt/auth",service="container_registry"`, the
//! client sends its Basic credentials (`gitlab-ci-token` and the job token) to that realm and
//! gets a short-lived token, which it presents as `Authorization: Bearer`.
//!
//! Two identities exist: a job, while it is running (its token dies with it, as on GitLab),
//! which may pull, push and delete in its own project's repositories (`group/project` and
//! below, lower-cased as `CI_REGISTRY_IMAGE`); and the host (`RunningServer::
//! registry_credentials`), which may do anything. Anonymous requests are refused.
//!
//! The bearer token is the identity, its expiry and an HMAC-SHA256 over both with a secret
//! of this server; what it may do is decided at every request from the identity, so a token
//! of a job that finished stops working at once. Basic credentials are accepted on `/v2/`
//! too (GitLab's registry does not), which lets `curl -u` talk to the registry directly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use sha2::Sha256;

use super::error::ApiError;
use crate::server::http::{self as h, Response};
use crate::server::random_string;
use crate::server::runner_api::spec::JobId;
use crate::server::runner_api::state::ApiState;
use crate::server::sigv4::constant_time_eq;

/// The user name GitLab gives job tokens (`CI_REGISTRY_USER`).
pub(crate) const JOB_USER: &str = "gitlab-ci-token";
/// The host's user name.
pub(crate) const HOST_USER: &str = "glci";
/// GitLab's `service` in the challenge and the token request.
pub(crate) const SERVICE: &str = "container_registry";
/// Tokens live as long as GitLab's default (`container_registry_token_expire_delay`, 5 min).
const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// What a registry request may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Pull,
    Push,
    Delete,
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    Host,
    /// A token issued without (valid) credentials, for pull scopes only: a Docker daemon
    /// asking its `registry-mirrors`. It reaches the pull-through cache, nothing else.
    Anonymous,
    /// A running job of `project` (its path, lower-cased).
    Job {
        id: JobId,
        project: String,
    },
}

pub(crate) struct Auth {
    secret: [u8; 32],
    host_password: String,
}

impl Auth {
    pub(crate) fn new() -> Auth {
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut secret);
        Auth {
            secret,
            host_password: random_string(32),
        }
    }

    pub(crate) fn host_password(&self) -> &str {
        &self.host_password
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn issue(&self, identity: &Identity) -> String {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(TOKEN_LIFETIME)
            .as_secs();
        let sub = match identity {
            Identity::Host => "host".to_string(),
            Identity::Anonymous => "anon".to_string(),
            Identity::Job { id, .. } => format!("job:{id}"),
        };
        let payload = format!("{sub}.{exp}");
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(self.mac(&payload)))
    }

    fn verify_bearer(&self, api: &ApiState, token: &str) -> Option<Identity> {
        let (payload, mac) = token.rsplit_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if !constant_time_eq(&mac, &self.mac(payload)) {
            return None;
        }
        let (sub, exp) = payload.split_once('.')?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        if exp.parse::<u64>().ok()? < now {
            return None;
        }
        match sub {
            "host" => Some(Identity::Host),
            "anon" => Some(Identity::Anonymous),
            _ => {
                let id = JobId(sub.strip_prefix("job:")?.parse().ok()?);
                active_job(api, |job| job.id == id)
            }
        }
    }

    fn verify_basic(&self, api: &ApiState, user: &str, password: &str) -> Option<Identity> {
        if user == HOST_USER && constant_time_eq(password.as_bytes(), self.host_password.as_bytes())
        {
            return Some(Identity::Host);
        }
        if user != JOB_USER {
            return None;
        }
        let inner = api.lock();
        let job = ApiState::job_by_token(&inner, password)?;
        job.state.is_active().then(|| Identity::Job {
            id: job.id,
            project: job.spec.project.path.to_lowercase(),
        })
    }

    /// The identity behind a request's `Authorization` header, if any and still valid.
    pub(crate) fn authenticate(&self, api: &ApiState, headers: &HeaderMap) -> Option<Identity> {
        let value = h::header_str(headers, "authorization")?;
        let (scheme, rest) = value.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            self.verify_bearer(api, rest.trim())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(rest.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            self.verify_basic(api, user, password)
        } else {
            None
        }
    }

    /// `GET /jwt/auth`: Basic credentials in, a bearer token out (distribution's token
    /// response, `token` and `access_token` both, as GitLab sends them).
    /// Without valid credentials, a request whose scopes all ask to pull gets an anonymous
    /// token (Docker's token flow for a mirror); any other is refused, so `docker login`
    /// with wrong credentials fails.
    pub(crate) fn token_endpoint(
        &self,
        api: &ApiState,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Response {
        let identity = self
            .authenticate(api, headers)
            .or_else(|| pull_only(query).then_some(Identity::Anonymous));
        let Some(identity) = identity else {
            return ApiError::unauthorized(
                "registry access needs credentials: CI_REGISTRY_USER and CI_REGISTRY_PASSWORD \
                 of a running job",
            )
            .into_response();
        };
        let token = self.issue(&identity);
        h::json(
            StatusCode::OK,
            &serde_json::json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME.as_secs(),
                "issued_at": crate::calendar::rfc3339(SystemTime::now()),
            }),
        )
    }
}

/// The job matching `pick`, as an identity, while it may still use its token.
fn active_job(
    api: &ApiState,
    pick: impl Fn(&crate::server::runner_api::state::Job) -> bool,
) -> Option<Identity> {
    let inner = api.lock();
    let job = inner.jobs.values().find(|j| pick(j))?;
    job.state.is_active().then(|| Identity::Job {
        id: job.id,
        project: job.spec.project.path.to_lowercase(),
    })
}

/// Whether a token request names scopes, all `repository:<name>:pull`.
fn pull_only(query: Option<&str>) -> bool {
    let pairs = h::query_pairs(query);
    let mut scopes = pairs.iter().filter(|(k, _)| k == "scope").peekable();
    scopes.peek().is_some()
        && scopes.all(|(_, scope)| {
            scope.split(' ').all(|s| {
                s.starts_with("repository:") && s.rsplit_once(':').is_some_and(|(_, a)| a == "pull")
            })
        })
}

/// Whether `identity` may do `action` in `repository` (the pull-through cache aside).
pub(crate) fn allowed(identity: &Identity, repository: &str, _action: Action) -> bool {
    match identity {
        Identity::Host => true,
        Identity::Anonymous => false,
        // GitLab's default job token scope: the job's own project only.
        Identity::Job { project, .. } => {
            repository == project
                || repository
                    .strip_prefix(project.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    }
}

/// The `WWW-Authenticate` challenge pointing at the realm on the address the client used
/// (`https` when it came over TLS).
pub(crate) fn challenge(host: &str, tls: bool, scope: Option<(&str, Action)>) -> String {
    let scheme = if tls { "https" } else { "http" };
    let mut value = format!("Bearer realm=\"{scheme}://{host}/jwt/auth\",service=\"{SERVICE}\"");
    if let Some((repository, action)) = scope {
        let actions = match action {
            Action::Pull => "pull",
            Action::Push => "pull,push",
            Action::Delete => "delete",
        };
        value.push_str(&format!(",scope=\"repository:{repository}:{actions}\""));
    }
    value
}
