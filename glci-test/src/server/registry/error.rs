//! The Distribution Spec's error body, `{"errors": [{"code", "message", "detail"}]}`, with the
//! status code each code goes with.

use http::StatusCode;

use crate::server::http::{self as h, Response};

/// One error as the spec spells it; `code` is one of the spec's codes (plus `UNKNOWN` for
/// failures of the registry itself, as distribution answers them).
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn blob_unknown(digest: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("blob {digest} is unknown to this repository"),
        )
    }

    pub(crate) fn upload_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        )
    }

    /// A chunk that does not continue the upload where it stands (416, as the spec asks).
    pub(crate) fn upload_invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            message,
        )
    }

    pub(crate) fn digest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }

    pub(crate) fn manifest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
    }

    pub(crate) fn manifest_unknown(reference: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {reference} is unknown to this repository"),
        )
    }

    pub(crate) fn name_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "NAME_INVALID", message)
    }

    pub(crate) fn name_unknown(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not known to this registry"),
        )
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub(crate) fn denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "DENIED", message)
    }

    /// The registry's own failure (disk full, I/O error): logged, and a 500 to the client.
    pub(crate) fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::warn!("registry: {context}: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("{context}: {err}"),
        )
    }

    pub(crate) fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": null }]
        });
        h::json(self.status, &body)
    }
}

/// Why a registry glci talks to as a client (an upstream of the pull-through cache, the
/// push-through mirror, or their token realms) did not do what was asked. The messages read
/// after the registry's name or address.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoteError {
    #[error("unreachable: {0}")]
    Unreachable(#[source] Box<ureq::Error>),
    #[error("{request} answered {status}")]
    Status {
        request: String,
        status: http::StatusCode,
    },
    #[error("{request} answered no Location")]
    NoLocation { request: String },
    #[error("asks for credentials, and none were given for it")]
    NoCredentials,
    #[error("answers 401 with an unknown challenge {0:?}")]
    UnknownChallenge(String),
    #[error("its challenge \"Bearer {0}\" names no realm")]
    NoRealm(String),
    #[error("its token realm {realm} is unreachable: {source}")]
    RealmUnreachable {
        realm: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("its token realm {realm} answers {status}")]
    RealmStatus {
        realm: String,
        status: http::StatusCode,
    },
    #[error("reading a token from {realm}: {source}")]
    RealmRead {
        realm: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token from {realm} is not JSON: {source}")]
    TokenNotJson {
        realm: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the answer of {realm} holds no token")]
    NoToken { realm: String },
    #[error("the push task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}
