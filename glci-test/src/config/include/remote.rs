//! `include:remote`: one HTTP(S) GET with GitLab's deadline, and `integrity: sha256-<b64>`.
//! As GitLab's `UrlBlocker` does by default, a URL whose host is or resolves to a loopback,
//! private, link-local or otherwise local address is refused (also after a redirect) unless
//! the user allows it: a configuration must not make `lint` read the machine's own services.
//! The check runs in the HTTP client's own resolver ([`PublicOnly`]), so the connection goes to
//! exactly the addresses that passed it: a name that resolves to a public address for the
//! check and to a private one for the connection (DNS rebinding) gets nowhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

/// Biggest remote file read (GitLab's default `max_yaml_size_bytes`).
pub const MAX_BYTES: u64 = 2 * 1024 * 1024;

/// Redirects followed, as GitLab's HTTP client does.
const MAX_REDIRECTS: usize = 10;

/// Why a fetch failed; [`FetchError::remote_message`] words it as GitLab does for
/// `include:remote`, the include kinds fetched for glci (templates, components) name their own.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}; pass `--allow-private-includes` to allow it")]
    NotPublic(String),
    #[error("timeout error")]
    Timeout,
    #[error("redirect error")]
    Redirect,
    #[error("HTTP code `{0}` error")]
    Status(u16),
    #[error("socket error ({0})")]
    Socket(String),
    #[error("read error ({0})")]
    Read(String),
}

impl FetchError {
    /// GitLab's sentence for an `include:remote` of `url` that failed this way.
    pub fn remote_message(&self, url: &str) -> String {
        match self {
            FetchError::NotPublic(_) => format!("Remote file `{url}` is not fetched: {self}"),
            FetchError::Read(why) => format!("Remote file `{url}` could not be read: {why}"),
            FetchError::Socket(why) => format!(
                "Remote file `{url}` could not be fetched because of a socket error! ({why})"
            ),
            FetchError::Timeout | FetchError::Redirect => {
                format!("Remote file `{url}` could not be fetched because of a {self}!")
            }
            FetchError::Status(_) => {
                format!("Remote file `{url}` could not be fetched because of {self}!")
            }
        }
    }
}

/// Fetches `url`. Unless `allow_private`, every URL on the way (redirects included) must
/// name a public address.
pub fn fetch(url: &str, timeout: Duration, allow_private: bool) -> Result<String, FetchError> {
    let deadline = Instant::now() + timeout;
    let agent = agent(timeout, allow_private);
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        if !allow_private {
            check_public(&current).map_err(|e| FetchError::NotPublic(e.to_string()))?;
        }
        if Instant::now() >= deadline {
            return Err(FetchError::Timeout);
        }
        let response = get(&agent, &current)?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or(FetchError::Redirect)?;
            current = join(&current, location);
            continue;
        }
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        return response
            .into_body()
            .with_config()
            .limit(MAX_BYTES)
            .read_to_string()
            .map_err(|e| FetchError::Read(e.to_string()));
    }
    Err(FetchError::Redirect)
}

/// The HTTP client: redirects are followed by [`fetch`] (to check each hop), and unless
/// `allow_private` it connects only to public addresses.
fn agent(timeout: Duration, allow_private: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build();
    if allow_private {
        ureq::Agent::new_with_config(config)
    } else {
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            PublicOnly::default(),
        )
    }
}

/// The default resolver, refusing names with a non-public address among their addresses.
#[derive(Debug, Default)]
struct PublicOnly {
    inner: ureq::unversioned::resolver::DefaultResolver,
}

/// [`PublicOnly`]'s refusal, carried through the client's I/O error, and [`check_public`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{host}` is a local or private address ({ip})")]
struct NotPublicAddress {
    host: String,
    ip: IpAddr,
}

impl ureq::unversioned::resolver::Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addresses = self.inner.resolve(uri, config, timeout)?;
        match addresses.iter().find(|a| !is_public(&a.ip())) {
            Some(a) => Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                NotPublicAddress {
                    host: uri.host().unwrap_or_default().to_string(),
                    ip: a.ip(),
                },
            ))),
            None => Ok(addresses),
        }
    }
}

/// One GET of `current`.
fn get(agent: &ureq::Agent, current: &str) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
    agent.get(current).call().map_err(|e| match e {
        ureq::Error::Io(io) if io.get_ref().is_some_and(|i| i.is::<NotPublicAddress>()) => {
            FetchError::NotPublic(io.into_inner().map(|i| i.to_string()).unwrap_or_default())
        }
        ureq::Error::Timeout(_) => FetchError::Timeout,
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => FetchError::Redirect,
        other => FetchError::Socket(other.to_string()),
    })
}

/// A redirect's `Location` against the URL it came from (absolute, or a path on its host).
fn join(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{location}")
    }
}

/// Why [`check_public`] refused a URL (see [`FetchError::NotPublic`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NotPublicUrl {
    /// `reason` is the URL parser's message (its error type cannot be compared).
    #[error("`{url}` is not a valid URL ({reason})")]
    Invalid { url: String, reason: String },
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error(transparent)]
    Address(#[from] NotPublicAddress),
}

/// Refuses a URL whose host is, or resolves to, a non-public address.
fn check_public(url: &str) -> Result<(), NotPublicUrl> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| NotPublicUrl::Invalid {
        url: url.to_string(),
        reason: format!("{e}"),
    })?;
    let host = uri
        .host()
        .ok_or_else(|| NotPublicUrl::NoHost(url.to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        // A name that does not resolve is the fetch's socket error to report, not this.
        Err(_) => (host, port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    match addresses.iter().find(|ip| !is_public(ip)) {
        Some(ip) => Err(NotPublicAddress {
            host: host.to_string(),
            ip: *ip,
        }
        .into()),
        None => Ok(()),
    }
}

/// Whether GitLab's `UrlBlocker` lets an address through without `allow_local_requests`.
fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(&v4),
            None => !is_local_v6(v6),
        },
    }
}

fn is_public_v4(ip: &Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT: shared, not public.
        || (a == 100 && (64..128).contains(&b)))
}

fn is_local_v6(ip: &Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// Why an `include:remote` with `integrity:` is refused, worded as GitLab does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error(
        "Remote file `{url}`: integrity `{integrity}` must be `sha256-` followed by a base64 digest"
    )]
    Malformed { url: String, integrity: String },
    #[error(
        "Remote file `{url}` failed integrity check: expected `sha256-{expected}`, got `sha256-{actual}`"
    )]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
}

/// Checks `integrity: sha256-<base64>` against the fetched text.
pub fn check_integrity(url: &str, text: &str, integrity: &str) -> Result<(), IntegrityError> {
    let Some(expected) = integrity.strip_prefix("sha256-") else {
        return Err(IntegrityError::Malformed {
            url: url.to_string(),
            integrity: integrity.to_string(),
        });
    };
    let actual = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    if actual != expected {
        return Err(IntegrityError::Mismatch {
            url: url.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_private_addresses_are_refused() {
        for url in [
            "http://127.0.0.1:8080/ci.yml",
            "http://localhost/ci.yml",
            "http://[::1]/ci.yml",
            "http://169.254.169.254/latest/meta-data.yml",
            "http://10.1.2.3/ci.yml",
            "https://192.168.0.1/ci.yml",
            "http://172.17.0.1/ci.yml",
            "http://100.64.0.1/ci.yml",
            "http://[fd00::1]/ci.yml",
            "http://[fe80::1]/ci.yml",
            "http://[::ffff:127.0.0.1]/ci.yml",
            "http://0.0.0.0/ci.yml",
        ] {
            assert!(check_public(url).is_err(), "{url}");
        }
        for url in [
            "https://93.184.215.14/ci.yml",
            "http://[2606:4700::1]/x.yml",
        ] {
            assert_eq!(check_public(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn the_connection_only_goes_to_addresses_that_passed_the_check() {
        // As if a name had resolved to a public address for `check_public` and resolves to
        // loopback now: the client's own resolver refuses, and nothing connects.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let agent = agent(Duration::from_secs(5), false);
        for url in [
            format!("http://127.0.0.1:{port}/ci.yml"),
            format!("http://localhost:{port}/ci.yml"),
        ] {
            match get(&agent, &url) {
                Err(FetchError::NotPublic(why)) => {
                    assert!(
                        why.contains("is a local or private address (127.0.0.1)")
                            || why.contains("(::1)"),
                        "{why}"
                    )
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(listener.accept().is_err(), "a connection was made");
        // Allowed, the same fetch connects.
        assert!(
            private_fetch_connects(),
            "no connection when private addresses are allowed"
        );
    }

    /// Whether a GET with private addresses allowed reaches a listener on loopback.
    fn private_fetch_connects() -> bool {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = std::thread::spawn(move || listener.accept().is_ok());
        let _ = get(
            &agent(Duration::from_secs(2), true),
            &format!("http://127.0.0.1:{port}/x.yml"),
        );
        server.join().unwrap_or(false)
    }

    #[test]
    fn unresolvable_names_are_left_to_the_fetch() {
        assert_eq!(check_public("https://gitlab.glci.invalid/ci.yml"), Ok(()));
    }

    #[test]
    fn redirect_locations() {
        assert_eq!(join("http://h:1/a/b.yml", "/c.yml"), "http://h:1/c.yml");
        assert_eq!(join("http://h/a/b.yml", "c.yml"), "http://h/a/c.yml");
        assert_eq!(join("http://h/a", "https://x/y.yml"), "https://x/y.yml");
    }
}
