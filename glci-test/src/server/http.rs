//! Small HTTP helpers shared by the server's protocol handlers: one body type for every
//! response, size-limited request bodies, and query parsing.

use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use futures_util::stream;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Every response carries this body type, so fixed and streamed bodies share one router.
pub(crate) type Body = BoxBody<Bytes, io::Error>;
pub(crate) type Response = hyper::Response<Body>;
pub(crate) type Request = hyper::Request<Incoming>;

pub(crate) fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// Bytes per read of a streamed file and per write of a streamed upload. Every read or write
/// of a tokio file is a round trip to a blocking thread; at 64 KiB (or hyper's ~16 KiB frames)
/// a 100 MiB layer took thousands of them and served at a fraction of the disk's speed.
pub(crate) const FILE_CHUNK: usize = 1024 * 1024;

/// Streams any reader as a response body, so large files never sit in memory (one
/// [`FILE_CHUNK`] at a time).
pub(crate) fn reader_body<R: AsyncRead + Unpin + Send + Sync + 'static>(reader: R) -> Body {
    let chunks = stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; FILE_CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    });
    BodyExt::boxed(StreamBody::new(chunks))
}

pub(crate) fn response(status: StatusCode, body: Body) -> Response {
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = status;
    resp
}

pub(crate) fn text(status: StatusCode, message: &str) -> Response {
    let mut resp = response(status, full(format!("{message}\n")));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// JSON with `application/json`: the runner drops job bodies of any other content type.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut resp = response(status, full(value.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// GitLab's error body shape: `{"message": "..."}`, which the runner logs.
pub(crate) fn json_message(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "message": message }))
}

/// A file streamed as a download, as GitLab sends artifacts and packages:
/// `application/octet-stream`, its length when known, and `Content-Disposition: attachment`
/// naming `filename` (quotes dropped, so the header stays well formed).
pub(crate) fn download(file: tokio::fs::File, size: Option<u64>, filename: &str) -> Response {
    let mut resp = response(StatusCode::OK, reader_body(file));
    set_header(&mut resp, "content-type", "application/octet-stream");
    if let Some(size) = size {
        set_header(&mut resp, "content-length", &size.to_string());
    }
    set_header(
        &mut resp,
        "content-disposition",
        &format!("attachment; filename=\"{}\"", filename.replace('"', "")),
    );
    resp
}

pub(crate) fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decoded query pairs in request order.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body: {0}")]
    Transport(#[from] hyper::Error),
    #[error("writing the request body to disk: {0}")]
    Io(#[from] io::Error),
}

/// Reads a whole body, refusing more than `limit` bytes before buffering them.
pub(crate) async fn collect_limited(mut body: Incoming, limit: u64) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                return Err(BodyError::TooLarge(limit));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Streams a body into `sink` (a temp file), refusing more than `limit` bytes; every chunk
/// is also handed to `observe` (hashing) so the data is read once. Writes go out in
/// [`FILE_CHUNK`]s, not per frame.
pub(crate) async fn copy_limited<W: tokio::io::AsyncWrite + Unpin>(
    mut body: Incoming,
    sink: &mut W,
    limit: u64,
    mut observe: impl FnMut(&[u8]),
) -> Result<u64, BodyError> {
    let mut sink = tokio::io::BufWriter::with_capacity(FILE_CHUNK, sink);
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            total += data.len() as u64;
            if total > limit {
                return Err(BodyError::TooLarge(limit));
            }
            observe(&data);
            sink.write_all(&data).await?;
        }
    }
    sink.flush().await?;
    Ok(total)
}
