//! TLS for the registry's job listener (see `runner::registry_access` for who reaches which
//! listener): glci's own CA, kept in `GLCI_HOME/registry-ca/`, and the short-lived leaf
//! certificate the listener presents, issued by that CA for every address and name jobs use.
//!
//! - The CA is made once (`ca.crt`, and `ca.key` at mode 0600) and reused by every later run,
//!   so a CA a user chose to trust stays valid. Concurrent first runs each build a complete
//!   CA in a directory of their own and rename it into place; the first rename wins and the
//!   others load the winner's, so the files never mix two CAs.
//! - The CA is trusted only inside job containers (the runner injects it); glci never puts it
//!   into the host's trust stores or Docker configuration.
//! - Leaf certificates live [`LEAF_VALIDITY`] (or the `[tls] validity` setting, within
//!   [`MIN_LEAF_VALIDITY`](crate::settings::checks::MIN_LEAF_VALIDITY)..=
//!   [`MAX_LEAF_VALIDITY`](crate::settings::checks::MAX_LEAF_VALIDITY)) and are made in memory, never written: a
//!   new one at every server start, and again on the first handshake once less than a
//!   seventh of their validity is left ([`renew_before`]), so a server that runs for weeks
//!   keeps a valid certificate. The CA's own validity (10 years) does not follow the leaf's.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};

/// The CA's certificate in its directory (PEM).
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA's private key in its directory (PKCS#8 PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The CA's subject; leaves name it as their issuer, so it never changes.
const CA_COMMON_NAME: &str = "glci registry CA";
/// How long a new CA is valid. Delete the directory to get a new one.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a leaf certificate is valid unless configured (`[tls] validity`).
pub const LEAF_VALIDITY: Duration = Duration::days(7);

/// How close to its end a leaf of `validity` is replaced at the next handshake: a seventh
/// of it (a day of the default week).
pub fn renew_before(validity: Duration) -> Duration {
    validity / 7
}

/// Why the registry's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("registry CA in {}: {source}", dir.display())]
    Io { dir: PathBuf, source: io::Error },
    #[error("registry CA in {}: {message}", dir.display())]
    Invalid { dir: PathBuf, message: String },
    #[error("registry certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("registry TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// glci's registry CA, loaded from (or first made in) its directory.
pub struct RegistryCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for RegistryCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCa").finish_non_exhaustive()
    }
}

/// The CA's parameters. An [`Issuer`] is rebuilt from them and the stored key: leaves carry
/// the subject and the key identifier (a hash of the public key), both the same as in the
/// stored certificate.
fn ca_params(validity: Option<(OffsetDateTime, OffsetDateTime)>) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "glci");
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    // It signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if let Some((not_before, not_after)) = validity {
        params.not_before = not_before;
        params.not_after = not_after;
    }
    params
}

impl RegistryCa {
    /// The CA in `dir`, made there first if there is none.
    pub fn load_or_create(dir: &Path) -> Result<RegistryCa, TlsError> {
        let io_err = |source| TlsError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        if !dir.join(CA_KEY_FILE).exists() {
            create(dir).map_err(io_err)?;
        }
        RegistryCa::load(dir)
    }

    fn load(dir: &Path) -> Result<RegistryCa, TlsError> {
        let invalid = |message: String| TlsError::Invalid {
            dir: dir.to_path_buf(),
            message,
        };
        let read = |file: &str| {
            fs::read_to_string(dir.join(file)).map_err(|e| {
                invalid(format!(
                    "cannot read {file} ({e}); delete the directory to make a new CA"
                ))
            })
        };
        let key_path = dir.join(CA_KEY_FILE);
        let mode = fs::metadata(&key_path)
            .map_err(|source| TlsError::Io {
                dir: dir.to_path_buf(),
                source,
            })?
            .permissions()
            .mode();
        // As ssh does with private keys: a key others can read is no secret any more.
        if mode & 0o077 != 0 {
            return Err(invalid(format!(
                "{CA_KEY_FILE} has mode {:o}: others may read the CA's key; \
                 `chmod 600` it, or delete the directory to make a new CA",
                mode & 0o777
            )));
        }
        let key = KeyPair::from_pem(&read(CA_KEY_FILE)?)
            .map_err(|e| invalid(format!("{CA_KEY_FILE} is no private key: {e}")))?;
        let cert_pem = read(CA_CERT_FILE)?;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| invalid(format!("{CA_CERT_FILE} is no PEM certificate: {e:?}")))?;
        // The certificate must hold this key, or leaves would not verify against it.
        if !der
            .windows(key.public_key_raw().len())
            .any(|w| w == key.public_key_raw())
        {
            return Err(invalid(format!(
                "{CA_CERT_FILE} does not belong to {CA_KEY_FILE}; delete the directory to \
                 make a new CA"
            )));
        }
        Ok(RegistryCa {
            cert_pem,
            issuer: Issuer::new(ca_params(None), key),
        })
    }

    /// The CA certificate (PEM), what jobs trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A new leaf for `names` (IP addresses and DNS names), valid from now for `validity`,
    /// with its own new key; and when it should be replaced.
    pub fn issue(
        &self,
        names: &[String],
        validity: Duration,
    ) -> Result<(Arc<CertifiedKey>, OffsetDateTime), TlsError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "glci");
        subject.push(DnType::CommonName, "glci registry");
        params.distinguished_name = subject;
        // A few minutes back: a client whose clock runs a little behind still accepts it.
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing_key = provider::sign::any_supported_type(&key_der)?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing_key);
        Ok((
            Arc::new(certified),
            params.not_after - renew_before(validity),
        ))
    }
}

/// Makes a CA in `dir`: built complete in a sibling directory, then renamed into place.
/// When another process got there first, its CA stays and this one is dropped.
fn create(dir: &Path) -> io::Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other("the CA directory has no parent"))?;
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".registry-ca.{}-{}",
        std::process::id(),
        super::random_string(8)
    ));
    fs::DirBuilder::new().mode(0o700).create(&tmp)?;
    let made = write_ca(&tmp).and_then(|()| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, dir)
    });
    match made {
        Ok(()) => sync_dir(parent),
        // Lost the race (or a directory is in the way): whoever is there is loaded, and a
        // broken one is reported by the loader.
        Err(_) if dir.join(CA_KEY_FILE).exists() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn write_ca(dir: &Path) -> io::Result<()> {
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate().map_err(io::Error::other)?;
    let cert = ca_params(Some((now - Duration::minutes(5), now + CA_VALIDITY)))
        .self_signed(&key)
        .map_err(io::Error::other)?;
    write_synced(
        &dir.join(CA_KEY_FILE),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_synced(&dir.join(CA_CERT_FILE), cert.pem().as_bytes(), 0o644)?;
    sync_dir(dir)
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Presents the current leaf, replacing it when it nears its end.
pub(crate) struct LeafResolver {
    ca: RegistryCa,
    names: Vec<String>,
    validity: Duration,
    current: RwLock<(Arc<CertifiedKey>, OffsetDateTime)>,
}

impl std::fmt::Debug for LeafResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafResolver")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl LeafResolver {
    /// Issues the first leaf for `names`, valid for `validity`; later ones are issued alike.
    pub(crate) fn new(
        ca: RegistryCa,
        names: Vec<String>,
        validity: Duration,
    ) -> Result<LeafResolver, TlsError> {
        let current = ca.issue(&names, validity)?;
        Ok(LeafResolver {
            ca,
            names,
            validity,
            current: RwLock::new(current),
        })
    }

    fn leaf(&self) -> Arc<CertifiedKey> {
        let (leaf, renew_at) = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if OffsetDateTime::now_utc() < renew_at {
            return leaf;
        }
        match self.ca.issue(&self.names, self.validity) {
            Ok(renewed) => {
                let leaf = renewed.0.clone();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = renewed;
                leaf
            }
            Err(e) => {
                tracing::warn!("renewing the registry's certificate failed: {e}");
                leaf
            }
        }
    }
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.leaf())
    }
}

/// The listener's TLS configuration: HTTP/1.1 (what the server speaks), the leaf from
/// `resolver`.
pub(crate) fn server_config(resolver: LeafResolver) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Marks a request that arrived over TLS (a request extension): the registry's token realm
/// is then an `https://` URL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViaTls;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_with_a_private_key_and_reused() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("registry-ca");
        let first = RegistryCa::load_or_create(&dir).unwrap();
        let mode = fs::metadata(dir.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = RegistryCa::load_or_create(&dir).unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
        // Nothing but the CA's directory is left beside it.
        let entries: Vec<_> = fs::read_dir(home.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn concurrent_first_runs_agree_on_one_ca() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("registry-ca");
        let pems: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        RegistryCa::load_or_create(&dir)
                            .unwrap()
                            .cert_pem()
                            .to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(pems.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(fs::read_dir(home.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_readable_key_or_a_foreign_certificate_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("registry-ca");
        RegistryCa::load_or_create(&dir).unwrap();
        let key = dir.join(CA_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = RegistryCa::load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("mode 644"), "{err}");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let other = home.path().join("other");
        RegistryCa::load_or_create(&other).unwrap();
        fs::copy(other.join(CA_CERT_FILE), dir.join(CA_CERT_FILE)).unwrap();
        let err = RegistryCa::load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("does not belong"), "{err}");
    }

    #[test]
    fn leaves_are_short_lived_and_renewed_before_their_end() {
        let home = tempfile::tempdir().unwrap();
        let ca = RegistryCa::load_or_create(&home.path().join("ca")).unwrap();
        let names = ["127.0.0.1".to_string()];
        // The default week is renewed a day before its end, a configured validity a seventh
        // of it before.
        assert_eq!(renew_before(LEAF_VALIDITY), Duration::days(1));
        for validity in [LEAF_VALIDITY, Duration::hours(2)] {
            let (_, renew_at) = ca.issue(&names, validity).unwrap();
            let left = renew_at - OffsetDateTime::now_utc();
            let expected = validity - renew_before(validity);
            assert!(left > expected - Duration::minutes(1), "{validity}");
            assert!(left <= expected, "{validity}");
        }
        let resolver = LeafResolver::new(ca, names.to_vec(), LEAF_VALIDITY).unwrap();
        let first = resolver.leaf();
        assert!(Arc::ptr_eq(&first, &resolver.leaf()));
        // Due for renewal: the next handshake gets a new leaf.
        resolver.current.write().unwrap().1 = OffsetDateTime::now_utc() - Duration::seconds(1);
        assert!(!Arc::ptr_eq(&first, &resolver.leaf()));
    }
}
