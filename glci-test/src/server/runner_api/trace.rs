//! `PATCH /jobs/:id/trace`: append-only log with GitLab's offset rules
//! (docs/runner-contract.md §2.4).

use bytes::Bytes;
use http::StatusCode;

use super::jobs::job_headers;
use super::spec::JobId;
use super::state::{JobEvent, JobState};
use super::{forbidden, job_token_from, not_found};
use crate::server::http::{self as h, BodyError, Request, Response};
use crate::server::Shared;

/// The runner sends at most 1 MiB per PATCH; allow a little slack, refuse beyond.
const MAX_PATCH: u64 = 2 * 1024 * 1024;

/// The start of `Content-Range: <start>-<end>`. Like GitLab, the end is not trusted: the
/// runner's end has been off by one in some versions, so the body length decides.
fn parse_start(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let (a, _) = v.split_once('-')?;
    a.trim().parse().ok()
}

fn range_response(status: StatusCode, len: u64) -> Response {
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
    let Some(start) = range.as_deref().and_then(parse_start) else {
        return h::json_message(
            StatusCode::BAD_REQUEST,
            "400 Missing header Content-Range (or not `<start>-<end>`)",
        );
    };
    let body = match h::collect_limited(req.into_body(), MAX_PATCH).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(_)) => {
            return h::json_message(StatusCode::PAYLOAD_TOO_LARGE, "413 Trace patch too large")
        }
        Err(e) => return h::json_message(StatusCode::BAD_REQUEST, &e.to_string()),
    };
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
    if start != stored {
        return range_response(StatusCode::RANGE_NOT_SATISFIABLE, stored);
    }
    if stored + body.len() as u64 > limit {
        // GitLab drops the job with `trace_size_exceeded` and refuses the patch.
        shared.api.set_state(
            &mut inner,
            id,
            JobState::Failed {
                reason: "trace_size_exceeded".to_string(),
                exit_code: None,
            },
        );
        return job_headers(
            shared,
            h::json_message(StatusCode::FORBIDDEN, "403 Forbidden"),
            &inner
                .jobs
                .get(&id.0)
                .map(|j| j.state.clone())
                .unwrap_or(JobState::Canceled),
        );
    }
    let data = Bytes::from(body);
    if let Err(e) = job.trace.append(&data) {
        tracing::warn!("storing the trace of job {id}: {e}");
        return h::json_message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error - the trace could not be stored",
        );
    }
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
    use super::parse_start;

    #[test]
    fn content_range_start_is_what_counts() {
        assert_eq!(parse_start("0-1841"), Some(0));
        assert_eq!(parse_start("1842-5120"), Some(1842));
        assert_eq!(parse_start("bytes 5-9"), Some(5));
        assert_eq!(parse_start("abc"), None);
        assert_eq!(parse_start("-4"), None);
    }
}
