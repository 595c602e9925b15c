//! `include:remote`: one HTTP(S) GET with GitLab's deadline, and `integrity: sha256-<b64>`.

use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};

/// Biggest remote file read (GitLab's default `max_yaml_size_bytes`).
pub const MAX_BYTES: u64 = 2 * 1024 * 1024;

/// Fetches `url`; the error is GitLab's sentence for the failure.
pub fn fetch(url: &str, timeout: Duration) -> Result<String, String> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => {
            format!("Remote file `{url}` could not be fetched because of a timeout error!")
        }
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
            format!("Remote file `{url}` could not be fetched because of a redirect error!")
        }
        other => {
            format!("Remote file `{url}` could not be fetched because of a socket error! ({other})")
        }
    })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!(
            "Remote file `{url}` could not be fetched because of HTTP code `{status}` error!"
        ));
    }
    response
        .into_body()
        .with_config()
        .limit(MAX_BYTES)
        .read_to_string()
        .map_err(|e| format!("Remote file `{url}` could not be read: {e}"))
}

/// Checks `integrity: sha256-<base64>` against the fetched text.
pub fn check_integrity(url: &str, text: &str, integrity: &str) -> Result<(), String> {
    let Some(expected) = integrity.strip_prefix("sha256-") else {
        return Err(format!(
            "Remote file `{url}`: integrity `{integrity}` must be `sha256-` followed by a base64 digest"
        ));
    };
    let actual = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    if actual != expected {
        return Err(format!(
            "Remote file `{url}` failed integrity check: expected `sha256-{expected}`, got `sha256-{actual}`"
        ));
    }
    Ok(())
}
