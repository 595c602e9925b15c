//! The push-through mirror (`--push-through URL`), as in GitLab's local tool: every manifest
//! pushed here is pushed to an upstream registry too, with the blobs it needs, so an image a
//! pipeline builds also lands where the user's real registry keeps it.
//!
//! - Idempotent: a blob the upstream has (`HEAD` answers 200) is not sent again, and pushing
//!   the same manifest twice is what a registry expects; a retried push repeats nothing.
//! - Blobs go as one monolithic upload each (`POST` for a session, `PUT ?digest=` with the
//!   file streamed), manifests as a `PUT` with their media type, in that order, so the
//!   upstream never sees a manifest whose blobs it lacks. An index's entries were mirrored
//!   when they were pushed (by digest, before the index).
//! - Auth: the given user and password, as `Basic` or through a `Bearer` token realm with
//!   `pull,push` scope; none when both are empty.
//! - A failure fails the push: the pusher gets a 5xx naming the upstream and the step, the
//!   image stays stored here, and a retry mirrors what is missing.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use super::error::RemoteError;
use super::names::Digest;
use super::upstream::bearer_token;

/// Where pushes are mirrored, and as whom.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushThroughConfig {
    /// `http(s)://host[:port]` of the upstream registry.
    pub url: String,
    pub username: String,
    pub password: String,
}

/// The mirror of one server.
pub(crate) struct PushThrough {
    url: String,
    basic: Option<String>,
    agent: ureq::Agent,
}

/// One blob to mirror: its digest and the file holding it.
pub(crate) struct BlobFile {
    pub(crate) digest: Digest,
    pub(crate) path: PathBuf,
}

impl PushThrough {
    pub(crate) fn new(config: &PushThroughConfig) -> PushThrough {
        let basic = (!config.username.is_empty() || !config.password.is_empty()).then(|| {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", config.username, config.password))
        });
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(10)))
                .build(),
        );
        PushThrough {
            url: config.url.trim_end_matches('/').to_string(),
            basic,
            agent,
        }
    }

    /// The upstream's address, for messages.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Pushes `blobs`, then the manifest `data` as `reference` of `name`, to the upstream.
    /// `Err` says which step failed and how.
    pub(crate) async fn mirror(
        self: &std::sync::Arc<Self>,
        name: &str,
        reference: &str,
        data: Vec<u8>,
        media_type: &str,
        blobs: Vec<BlobFile>,
    ) -> Result<(), RemoteError> {
        let this = self.clone();
        let (name, reference, media_type) = (
            name.to_string(),
            reference.to_string(),
            media_type.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            let mut auth = None;
            for blob in &blobs {
                this.blob(&name, blob, &mut auth)?;
            }
            let url = format!("{}/v2/{name}/manifests/{reference}", this.url);
            let resp = this.send(&name, &mut auth, |auth| {
                let mut req = this.agent.put(&url).header("content-type", &media_type);
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                req.send(&data[..])
            })?;
            expect(resp, 201, format!("PUT {url}"))
        })
        .await
        .unwrap_or_else(|e| Err(RemoteError::Task(e)))
    }

    /// One blob: nothing when the upstream has it, else a monolithic upload.
    fn blob(
        &self,
        name: &str,
        blob: &BlobFile,
        auth: &mut Option<String>,
    ) -> Result<(), RemoteError> {
        let url = format!("{}/v2/{name}/blobs/{}", self.url, blob.digest);
        let head = self.send(name, auth, |auth| {
            let mut req = self.agent.head(&url);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            req.call()
        })?;
        if head.status() == 200 {
            return Ok(());
        }
        let start = format!("{}/v2/{name}/blobs/uploads/", self.url);
        let session = self.send(name, auth, |auth| {
            let mut req = self.agent.post(&start);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            req.send_empty()
        })?;
        if session.status() != 202 {
            return Err(RemoteError::Status {
                request: format!("POST {start}"),
                status: session.status(),
            });
        }
        let location = session
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| RemoteError::NoLocation {
                request: format!("POST {start}"),
            })?;
        let location = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.url)
        };
        let put = format!(
            "{location}{}digest={}",
            if location.contains('?') { '&' } else { '?' },
            blob.digest
        );
        let resp = self.send(name, auth, |auth| {
            let file = std::fs::File::open(&blob.path)?;
            let mut req = self
                .agent
                .put(&put)
                .header("content-type", "application/octet-stream");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            req.send(file)
        })?;
        expect(resp, 201, format!("PUT of blob {}", blob.digest))
    }

    /// Sends a request, answering one auth challenge (and keeping the answer in `auth` for
    /// the requests that follow).
    fn send(
        &self,
        name: &str,
        auth: &mut Option<String>,
        request: impl Fn(Option<&str>) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        let unreachable = |e: ureq::Error| RemoteError::Unreachable(Box::new(e));
        let resp = request(auth.as_deref()).map_err(unreachable)?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        *auth = Some(self.authorize(name, &challenge)?);
        request(auth.as_deref()).map_err(unreachable)
    }

    /// The `Authorization` value answering `challenge` for pushing to `name`.
    fn authorize(&self, name: &str, challenge: &str) -> Result<String, RemoteError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let basic = self.basic.as_ref().ok_or(RemoteError::NoCredentials)?;
        if scheme.eq_ignore_ascii_case("basic") {
            return Ok(format!("Basic {basic}"));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(RemoteError::UnknownChallenge(challenge.to_string()));
        }
        bearer_token(
            &self.agent,
            params,
            &format!("repository:{name}:pull,push"),
            Some(basic),
        )
    }
}

fn expect(
    resp: ureq::http::Response<ureq::Body>,
    status: u16,
    request: String,
) -> Result<(), RemoteError> {
    if resp.status().as_u16() == status {
        Ok(())
    } else {
        Err(RemoteError::Status {
            request,
            status: resp.status(),
        })
    }
}
