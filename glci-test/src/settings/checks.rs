//! Values that are of their key's kind but still unusable: a socket path Docker could not
//! mount, a host name no resolver would take, a certificate validity clients refuse. Checked
//! when the settings are read, so the error names the file and line (see
//! [`Settings::invalid`](super::Settings::invalid)) before anything runs.

use std::net::IpAddr;
use std::time::Duration;

/// The shortest leaf validity accepted: renewal comes a seventh before the end, so shorter
/// leaves would be reissued every few minutes, and clients' clocks need some slack.
pub const MIN_LEAF_VALIDITY: Duration = Duration::from_secs(3600);
/// The longest leaf validity accepted: 825 days, the CA/Browser Forum's limit that Apple's
/// TLS clients (and others since) enforce on leaf certificates; a longer one is refused by
/// them even under a trusted CA.
pub const MAX_LEAF_VALIDITY: Duration = Duration::from_secs(825 * 24 * 3600);

/// Why a value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("`{path}` is not a path for a socket in the job: {why}")]
    SocketPath { path: String, why: &'static str },
    #[error("`{name}` is not a DNS host name: {why}")]
    HostName { name: String, why: &'static str },
    #[error("{shown} is {why}: a leaf certificate is valid for at least 1h and at most 825d (what TLS clients accept)")]
    Validity { shown: String, why: &'static str },
}

/// `[docker] socket_path`: where the socket is mounted in the job, so an absolute path
/// (Docker mounts nothing else), not `/` itself, without `..` (Docker refuses it in a mount
/// target) and without `:` or `,` (they separate a bind's parts and a mount's options).
pub fn socket_path(path: &str) -> Result<(), Unusable> {
    let why = if !path.starts_with('/') {
        Some("it must be absolute")
    } else if path.trim_end_matches('/').is_empty() {
        Some("it must name a file below `/`")
    } else if path.split('/').any(|part| part == "..") {
        Some("it must not contain `..`")
    } else if path.contains([':', ',']) {
        Some("`:` and `,` separate a mount's parts")
    } else if path.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(Unusable::SocketPath {
            path: path.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// `[network] container_host`: a name that goes into URLs and every container's `/etc/hosts`,
/// so a DNS host name (RFC 1123: dot-separated labels of letters, digits and `-`, each 1 to
/// 63 characters, not starting or ending with `-`; 253 characters at most). An IP address is
/// not a name (the bridge address is what jobs get without one), and `localhost` must keep
/// naming each container itself.
pub fn host_name(name: &str) -> Result<(), Unusable> {
    let bad = |why| {
        Err(Unusable::HostName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    if name.parse::<IpAddr>().is_ok() {
        return bad("it is an IP address (leave the key unset for the bridge address)");
    }
    if name.eq_ignore_ascii_case("localhost") {
        return bad("`localhost` must keep naming each container itself");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label has 1 to 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return bad("only letters, digits, `-` and `.` are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label may not start or end with `-`");
        }
    }
    Ok(())
}

/// `[tls] validity`: within what clients accept for a leaf certificate and long enough that
/// renewing it (a seventh before its end) is not constant.
pub fn leaf_validity(validity: Duration, shown: String) -> Result<(), Unusable> {
    let why = if validity < MIN_LEAF_VALIDITY {
        "shorter than 1h"
    } else if validity > MAX_LEAF_VALIDITY {
        "longer than 825d"
    } else {
        return Ok(());
    };
    Err(Unusable::Validity { shown, why })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_absolute_and_mountable() {
        for good in ["/var/run/docker.sock", "/run/engine.sock", "/a/b/c.sock"] {
            assert_eq!(socket_path(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "run/docker.sock",
            "/",
            "//",
            "/run/../etc/docker.sock",
            "/run/..",
            "/run/a:b.sock",
            "/run/a,ro.sock",
        ] {
            assert!(socket_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_follow_rfc_1123() {
        for good in ["gitlab", "gitlab.test", "ci-1.example.com", "0a.example"] {
            assert_eq!(host_name(good), Ok(()), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in [
            "",
            "gitlab_test",
            "-gitlab",
            "gitlab-.test",
            "git lab",
            "gitlab..test",
            "gitlab.test.",
            "10.0.0.1",
            "::1",
            "LocalHost",
            "http://gitlab",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(host_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leaf_validity_is_between_an_hour_and_825_days() {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        for good in [Duration::from_secs(3600), days(7), days(825)] {
            assert_eq!(leaf_validity(good, String::new()), Ok(()));
        }
        for bad in [Duration::from_secs(3599), days(826), Duration::ZERO] {
            assert!(leaf_validity(bad, String::new()).is_err(), "{bad:?}");
        }
    }
}
