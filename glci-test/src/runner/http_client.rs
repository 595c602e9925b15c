//! The runner process's HTTP client, once for its two kinds of traffic: the runner API
//! (`api.rs`) and the cache's presigned S3 transfers (`cache.rs`). One connector set-up and
//! one whole-answer type, so both talk to servers the same way.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// A plain-HTTP client with bodies sent whole.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The client as the runner sets it up: a 10 s connect timeout, and `TCP_NODELAY` so requests
/// go out at once, not after the server's delayed ACK (Nagle).
pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A server's whole answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// A header's value, when it is present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why an exchange produced no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The request could not be sent or no response head came back.
    #[error("{0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    /// The response body broke off.
    #[error("{0}")]
    Body(#[from] hyper::Error),
}

impl ExchangeError {
    /// The message followed by each underlying cause (`connection refused` and the like,
    /// which the send error's own message leaves out).
    pub(crate) fn with_causes(&self) -> String {
        match self {
            ExchangeError::Send(e) => {
                let mut reason = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    reason = format!("{reason}: {s}");
                    source = s.source();
                }
                reason
            }
            ExchangeError::Body(e) => e.to_string(),
        }
    }
}

/// Sends `request` and reads the whole answer.
pub(crate) async fn exchange(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<Answer, ExchangeError> {
    let response = client.request(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// [`exchange`], telling `received` the answer's announced length (`Content-Length`) once
/// its head arrives and then each part of its body as it arrives (for progress of large
/// downloads).
pub(crate) async fn exchange_counting(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    received: &mut (dyn Received + Send),
) -> Result<Answer, ExchangeError> {
    let response = client.request(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    received.announced(
        headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    );
    let mut body = response.into_body();
    let mut whole = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received.part(data.len() as u64);
            whole.extend_from_slice(&data);
        }
    }
    Ok(Answer {
        status,
        headers,
        body: whole.freeze(),
    })
}

/// What [`exchange_counting`] reports to.
pub(crate) trait Received {
    /// The answer's head arrived, announcing `length` body bytes (`None`: not said).
    fn announced(&mut self, length: Option<u64>);
    /// `bytes` more of the body arrived.
    fn part(&mut self, bytes: u64);
}
