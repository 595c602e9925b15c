//! `PATCH /jobs/:id/trace`: append-only log with GitLab's offset rules (runner-contract §2.6).

use bytes::Bytes;
use http::StatusCode;

use super::jobs::job_headers;
use super::state::{JobEvent, JobId};
use super::{forbidden, job_token_from, not_found};
use crate::server::http::{self as h, BodyError, Request, Response};
use crate::server::Shared;

/// The runner sends at most 1 MiB per PATCH; allow a little slack, refuse beyond.
const MAX_PATCH: u64 = 2 * 1024 * 1024;

/// `Content-Range: <start>-<end>` (inclusive, no unit, no total).
fn parse_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = b.trim().parse().ok()?;
    (end >= start).then_some((start, end))
}

fn range_response(status: StatusCode, len: usize) -> Response {
    let mut resp = h::response(status, h::empty());
    h::set_header(&mut resp, "range", &format!("0-{len}"));
    resp
}

pub(super) async fn patch(shared: &Shared, req: Request, id: JobId) -> Response {
    let token = job_token_from(&req).unwrap_or_default();
    let range = h::header_str(req.headers(), "content-range").map(str::to_string);
    {
        let inner = shared.api.lock();
        // 403 rather than 404 for unknown jobs, as GitLab's `authenticate_job!`.
        let Some(job) = inner.jobs.get(&id.0) else {
            return forbidden();
        };
        if !crate::server::sigv4::constant_time_eq(job.token.as_bytes(), token.as_bytes()) {
            return forbidden();
        }
        if !job.state.is_active() {
            return job_headers(shared, forbidden(), &job.state);
        }
    }
    let Some((start, end)) = range.as_deref().and_then(parse_range) else {
        return h::json_message(
            StatusCode::BAD_REQUEST,
            "400 Bad request - Content-Range is missing or not `<start>-<end>`",
        );
    };
    let body = match h::collect_limited(req.into_body(), MAX_PATCH).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(_)) => {
            return h::json_message(StatusCode::PAYLOAD_TOO_LARGE, "413 Trace patch too large")
        }
        Err(e) => return h::json_message(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let declared = end - start + 1;
    if (body.len() as u64) < declared {
        return h::json_message(
            StatusCode::BAD_REQUEST,
            &format!(
                "400 Bad request - Content-Range {start}-{end} names {declared} bytes, the body has {}",
                body.len()
            ),
        );
    }
    let mut inner = shared.api.lock();
    let limit = shared.config.api.max_trace_bytes;
    let Some(job) = inner.jobs.get_mut(&id.0) else {
        return not_found();
    };
    // Re-checked: the job may have been canceled while the body arrived.
    if !job.state.is_active() {
        let state = job.state.clone();
        return job_headers(shared, forbidden(), &state);
    }
    let stored = job.trace.len();
    // Append only at the stored length; otherwise tell the runner where we are, never
    // claiming more than we hold.
    if start != stored as u64 {
        return range_response(StatusCode::RANGE_NOT_SATISFIABLE, stored);
    }
    if stored as u64 + declared > limit {
        let state = job.state.clone();
        return job_headers(
            shared,
            h::json_message(
                StatusCode::FORBIDDEN,
                "403 Forbidden - job log exceeded the limit",
            ),
            &state,
        );
    }
    let data = Bytes::copy_from_slice(&body[..declared as usize]);
    job.trace.extend_from_slice(&data);
    let new_len = job.trace.len();
    let state = job.state.clone();
    drop(inner);
    shared.api.emit(JobEvent::Trace {
        job: id,
        offset: start,
        data,
    });
    job_headers(
        shared,
        range_response(StatusCode::ACCEPTED, new_len),
        &state,
    )
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn content_range_is_inclusive_start_end() {
        assert_eq!(parse_range("0-1841"), Some((0, 1841)));
        assert_eq!(parse_range("1842-5120"), Some((1842, 5120)));
        assert_eq!(parse_range("5-4"), None);
        assert_eq!(parse_range("abc"), None);
        assert_eq!(parse_range("-4"), None);
    }
}
