//! The runner side of GitLab's runner API (docs/runner-contract.md §2), spoken exactly as the
//! official runner speaks it, so the built-in runner can work against any GitLab-compatible
//! server — glci's own, or another.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::http_client::{self, Answer, HttpClient, Received};
use super::payload::{Artifact, JobPayload};
use super::progress::Transfer;

/// A failed API call, naming the call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{call}: cannot reach the server: {reason}")]
    Transport { call: &'static str, reason: String },
    #[error("{call}: the server answered {status}: {body}")]
    Status {
        call: &'static str,
        status: u16,
        body: String,
    },
    #[error("{call}: undecodable answer: {reason}")]
    Decode { call: &'static str, reason: String },
}

/// What the server said about a job in a trace or state update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteJobState {
    Running,
    /// `Job-Status: canceling`: stop the script, still run after_script and uploads.
    Canceling,
    /// `Job-Status: canceled|failed` or 403: stop everything at once.
    Abort,
}

/// The answer to a trace PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchResult {
    /// Accepted; the server now has this many bytes.
    Accepted {
        stored: usize,
        state: RemoteJobState,
    },
    /// 416: the server has `stored` bytes; resend from there.
    RangeMismatch { stored: usize },
    /// 404 / 403 / abort: stop sending.
    Gone(RemoteJobState),
}

/// The answer to a state PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateResult {
    Accepted(RemoteJobState),
    /// 202: come back later.
    TryAgain,
    Abort,
}

/// Identification the official runner sends with every request (its `info` object).
fn runner_info() -> Value {
    json!({
        "name": "glci",
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "glci",
        "platform": "linux",
        "architecture": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a },
        "executor": "docker",
        "shell": "bash",
        "features": {
            "variables": true, "image": true, "services": true, "artifacts": true, "cache": true,
            "fallback_cache_keys": true, "shared": false, "upload_multiple_artifacts": true,
            "upload_raw_artifacts": true, "session": false, "terminal": false, "refspecs": true,
            "masking": true, "proxy": false, "raw_variables": true, "artifacts_exclude": true,
            "multi_build_steps": true, "trace_reset": true, "trace_checksum": true, "trace_size": true,
            "vault_secrets": false, "cancelable": true, "return_exit_code": true,
            "service_variables": true, "service_multiple_aliases": true, "image_executor_opts": true,
            "service_executor_opts": true, "cancel_gracefully": true, "native_steps_integration": false,
            "two_phase_job_commit": true, "job_inputs": false
        }
    })
}

/// A client of one server's runner API.
#[derive(Clone)]
pub struct RunnerApi {
    client: HttpClient,
    /// `<url>/api/v4`
    base: String,
}

impl std::fmt::Debug for RunnerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerApi")
            .field("base", &self.base)
            .finish()
    }
}

impl Answer {
    fn remote_state(&self) -> RemoteJobState {
        match self.header("job-status") {
            Some("canceling") => RemoteJobState::Canceling,
            Some("canceled") | Some("failed") => RemoteJobState::Abort,
            _ => RemoteJobState::Running,
        }
    }

    fn error(&self, call: &'static str) -> ApiError {
        ApiError::Status {
            call,
            status: self.status.as_u16(),
            body: String::from_utf8_lossy(&self.body)
                .chars()
                .take(300)
                .collect(),
        }
    }
}

impl RunnerApi {
    /// `url` as in config.toml: trailing `/` and `/ci` are stripped, `/api/v4` appended.
    pub fn new(url: &str) -> RunnerApi {
        let url = url.trim_end_matches('/');
        let url = url.strip_suffix("/ci").unwrap_or(url);
        RunnerApi {
            client: http_client::client(),
            base: format!("{url}/api/v4"),
        }
    }

    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, ApiError> {
        self.call_counting(call, method, path, headers, body, None)
            .await
    }

    /// [`RunnerApi::call`], telling `received` about the answer's body as it arrives.
    async fn call_counting(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
        received: Option<&mut (dyn Received + Send)>,
    ) -> Result<Answer, ApiError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        req = req.header(
            "user-agent",
            format!("glci {} (linux)", env!("CARGO_PKG_VERSION")),
        );
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| ApiError::Transport {
            call,
            reason: e.to_string(),
        })?;
        match received {
            Some(received) => http_client::exchange_counting(&self.client, req, received).await,
            None => http_client::exchange(&self.client, req).await,
        }
        .map_err(|e| ApiError::Transport {
            call,
            reason: e.to_string(),
        })
    }

    async fn json_call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: &Value,
        extra: &[(&str, String)],
    ) -> Result<Answer, ApiError> {
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("accept", "application/json".to_string()),
        ];
        headers.extend(extra.iter().cloned());
        self.call(call, method, path, &headers, Bytes::from(body.to_string()))
            .await
    }

    /// Legacy registration with a registration token: returns the runner's token.
    pub async fn register(
        &self,
        registration_token: &str,
        description: &str,
        tags: &[String],
        run_untagged: bool,
    ) -> Result<String, ApiError> {
        let body = json!({
            "info": runner_info(), "token": registration_token, "description": description,
            "tag_list": tags.join(","), "run_untagged": run_untagged, "locked": true,
            "access_level": "not_protected", "paused": false, "maximum_timeout": 0,
        });
        let answer = self
            .json_call(
                "register runner",
                Method::POST,
                "/runners",
                &body,
                &[("runner-token", registration_token.to_string())],
            )
            .await?;
        if answer.status != StatusCode::CREATED {
            return Err(answer.error("register runner"));
        }
        let v: Value = serde_json::from_slice(&answer.body).map_err(|e| ApiError::Decode {
            call: "register runner",
            reason: e.to_string(),
        })?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::Decode {
                call: "register runner",
                reason: "no token in the answer".to_string(),
            })
    }

    /// `POST /jobs/request`: a job, or `None` (204). The server may hold the request open.
    pub async fn request_job(
        &self,
        runner_token: &str,
        last_update: Option<&str>,
    ) -> Result<(Option<JobPayload>, Option<String>), ApiError> {
        let mut body =
            json!({"info": runner_info(), "token": runner_token, "system_id": "s_glci00000000"});
        if let Some(lu) = last_update {
            body["last_update"] = json!(lu);
        }
        let answer = self
            .json_call(
                "request job",
                Method::POST,
                "/jobs/request",
                &body,
                &[("runner-token", runner_token.to_string())],
            )
            .await?;
        let last_update = answer.header("x-gitlab-last-update").map(str::to_string);
        match answer.status {
            StatusCode::CREATED => {
                let payload =
                    serde_json::from_slice(&answer.body).map_err(|e| ApiError::Decode {
                        call: "request job",
                        reason: e.to_string(),
                    })?;
                Ok((Some(payload), last_update))
            }
            StatusCode::NO_CONTENT => Ok((None, last_update)),
            _ => Err(answer.error("request job")),
        }
    }

    /// `PUT /jobs/:id`: `running` (ack or keep-alive) or the final `success`/`failed` with
    /// the log's checksum and size.
    pub async fn update_job(
        &self,
        job: &JobPayload,
        state: &str,
        failure_reason: Option<&str>,
        exit_code: Option<i64>,
        trace: Option<(&str, usize)>,
    ) -> Result<UpdateResult, ApiError> {
        let mut body = json!({"info": runner_info(), "token": job.token, "state": state});
        if let Some(reason) = failure_reason {
            body["failure_reason"] = json!(reason);
        }
        if let Some(code) = exit_code.filter(|c| *c != 0) {
            body["exit_code"] = json!(code);
        }
        // The log's `crc32:<hex>` and size: the server takes the final state only once it
        // holds that log (GitLab answers 202 until then).
        if let Some((checksum, len)) = trace {
            body["checksum"] = json!(checksum);
            body["output"] = json!({"checksum": checksum, "bytesize": len});
        }
        let answer = self
            .json_call(
                "update job",
                Method::PUT,
                &format!("/jobs/{}", job.id),
                &body,
                &[("job-token", job.token.clone())],
            )
            .await?;
        Ok(match answer.status {
            StatusCode::OK => match answer.remote_state() {
                RemoteJobState::Abort => UpdateResult::Abort,
                s => UpdateResult::Accepted(s),
            },
            StatusCode::ACCEPTED => UpdateResult::TryAgain,
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => UpdateResult::Abort,
            _ => return Err(answer.error("update job")),
        })
    }

    /// `PATCH /jobs/:id/trace` with `bytes` starting at `offset`.
    pub async fn patch_trace(
        &self,
        job: &JobPayload,
        offset: usize,
        bytes: &[u8],
    ) -> Result<PatchResult, ApiError> {
        let end = offset + bytes.len() - 1;
        let headers = [
            ("job-token", job.token.clone()),
            ("content-range", format!("{offset}-{end}")),
            ("content-type", "text/plain".to_string()),
        ];
        let answer = self
            .call(
                "send job log",
                Method::PATCH,
                &format!("/jobs/{}/trace?debug_trace=false", job.id),
                &headers,
                Bytes::copy_from_slice(bytes),
            )
            .await?;
        let range_end = || {
            answer
                .header("range")
                .and_then(|r| r.rsplit('-').next())
                .and_then(|n| n.trim().parse::<usize>().ok())
        };
        Ok(match answer.status {
            StatusCode::ACCEPTED => match answer.remote_state() {
                RemoteJobState::Abort => PatchResult::Gone(RemoteJobState::Abort),
                state => PatchResult::Accepted {
                    stored: range_end().unwrap_or(end + 1),
                    state,
                },
            },
            StatusCode::RANGE_NOT_SATISFIABLE => PatchResult::RangeMismatch {
                stored: range_end().unwrap_or(0),
            },
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                PatchResult::Gone(RemoteJobState::Abort)
            }
            _ => return Err(answer.error("send job log")),
        })
    }

    /// Uploads one artifact archive: multipart field `file`, format in the file name.
    pub async fn upload_artifacts(
        &self,
        job: &JobPayload,
        artifact: &Artifact,
        data: Vec<u8>,
    ) -> Result<(), ApiError> {
        let format = if artifact.artifact_format.is_empty() {
            "zip"
        } else {
            artifact.artifact_format.as_str()
        };
        let kind = if artifact.artifact_type.is_empty() {
            "archive"
        } else {
            artifact.artifact_type.as_str()
        };
        let base = if artifact.name.is_empty() {
            "artifacts"
        } else {
            artifact.name.as_str()
        };
        let base = base.rsplit('/').next().unwrap_or(base);
        let filename = match format {
            "zip" | "zipzstd" => format!("{base}.zip"),
            "gzip" => format!("{base}.gz"),
            "tarzstd" => format!("{base}.tar.zst"),
            _ => base.to_string(),
        };
        let boundary = format!("glci-{:016x}", rand::random::<u64>());
        let mut body = Vec::with_capacity(data.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut query = format!("artifact_format={format}&artifact_type={kind}");
        if !artifact.expire_in.is_empty() {
            query.push_str(&format!(
                "&expire_in={}",
                artifact.expire_in.replace(' ', "+")
            ));
        }
        let headers = [
            ("job-token", job.token.clone()),
            (
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            ),
        ];
        let answer = self
            .call(
                "upload artifacts",
                Method::POST,
                &format!("/jobs/{}/artifacts?{query}", job.id),
                &headers,
                Bytes::from(body),
            )
            .await?;
        if answer.status != StatusCode::CREATED {
            return Err(answer.error("upload artifacts"));
        }
        Ok(())
    }

    /// Downloads the artifacts archive of job `id` with `token` (the consuming job's).
    pub async fn download_artifacts(&self, id: u64, token: &str) -> Result<Vec<u8>, ApiError> {
        self.download_artifacts_counting(id, token, None).await
    }

    /// [`RunnerApi::download_artifacts`], reporting the bytes to `transfer` as they arrive.
    pub async fn download_artifacts_counting(
        &self,
        id: u64,
        token: &str,
        transfer: Option<&mut Transfer>,
    ) -> Result<Vec<u8>, ApiError> {
        let answer = self
            .call_counting(
                "download artifacts",
                Method::GET,
                &format!("/jobs/{id}/artifacts"),
                &[("job-token", token.to_string())],
                Bytes::new(),
                transfer.map(|t| t as &mut (dyn Received + Send)),
            )
            .await?;
        if answer.status != StatusCode::OK {
            return Err(answer.error("download artifacts"));
        }
        Ok(answer.body.to_vec())
    }
}
