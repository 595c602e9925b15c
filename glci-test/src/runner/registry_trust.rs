//! Trust in the stand-in's registry inside job containers. Jobs reach the registry over TLS
//! with a certificate of glci's own CA (see [`RegistryAccess`]); GitLab's registry has a
//! publicly trusted certificate, so for a job to see what it would see on GitLab, every job
//! container (build and services) trusts glci's CA before it starts:
//!
//! - [`CA_PATH`]: the CA certificate, at a fixed path for tools told where to look
//!   (`curl --cacert`, `skopeo --cert-dir /etc/glci`);
//! - the image's system bundle ([`SYSTEM_BUNDLE`], what OpenSSL, GnuTLS, Go and most other
//!   clients read by default on Debian, Ubuntu and Alpine) gets the CA appended;
//! - `/etc/docker/certs.d/<CI_REGISTRY>/ca.crt`, where Docker clients and daemons
//!   (and `skopeo`, `podman`) look for a registry's CA;
//! - `SSL_CERT_FILE` names [`CA_PATH`] only when the image has no system bundle (see
//!   [`ssl_cert_file`]).
//!
//! The files are written into the created container through the engine's archive API, so
//! nothing needs the image's cooperation (no shell, no `update-ca-certificates`).

use std::io::Read;

use crate::docker::{DockerError, Engine};

use super::build_container::JobContainer;
use super::payload::JobVariable;
use super::registry_access::RegistryAccess;
use super::shell::ScriptVariable;

/// Where every job container finds glci's registry CA.
pub const CA_PATH: &str = "/etc/glci/registry-ca.crt";
/// The system CA bundle of Debian-like and Alpine images.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why the CA could not be put into a job container.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("packing glci's registry CA for the job: {0}")]
    Pack(#[from] std::io::Error),
    #[error("putting glci's registry CA into the job's container: {0}")]
    Docker(#[from] DockerError),
}

/// Puts glci's CA into `container`, which is created and not started, with `extra` files
/// that go in the same upload (the buildx configuration, see [`super::buildx`]). Returns
/// whether the image has a system bundle (which now holds the CA).
pub(crate) async fn inject_ca(
    engine: &Engine,
    container: &JobContainer,
    access: &RegistryAccess,
    extra: Vec<FileEntry>,
) -> Result<bool, TrustError> {
    let ca = normalized(&access.ca_pem);
    let bundle = system_bundle(engine, container).await;
    let mut files = vec![
        FileEntry::root_readable(CA_PATH.to_string(), &ca),
        FileEntry::root_readable(
            format!("/etc/docker/certs.d/{}/ca.crt", access.job_address),
            &ca,
        ),
    ];
    let has_bundle = bundle.is_some();
    if let Some(bundle) = bundle {
        let mut contents = bundle.contents;
        // A second run in a kept container, or an image built from one, has it already.
        if !contains(&contents, ca.as_bytes()) {
            if !contents.is_empty() && !contents.ends_with(b"\n") {
                contents.push(b'\n');
            }
            contents.extend_from_slice(ca.as_bytes());
        }
        files.push(FileEntry { contents, ..bundle });
    }
    files.extend(extra);
    write_files(engine, container, &files).await?;
    Ok(has_bundle)
}

/// Writes `files` into `container` (created, not started) in one upload.
pub(crate) async fn write_files(
    engine: &Engine,
    container: &JobContainer,
    files: &[FileEntry],
) -> Result<(), TrustError> {
    container.upload_tar(engine, tar_of(files)?).await?;
    Ok(())
}

/// `SSL_CERT_FILE` for a job whose image has no system bundle (and that sets none itself).
/// With a bundle it stays unset: OpenSSL then reads only that file, and the job would lose
/// every other CA the image trusts, as it would with a bundle holding only glci's CA.
pub fn ssl_cert_file(has_bundle: bool, variables: &[JobVariable]) -> Option<ScriptVariable> {
    if has_bundle || variables.iter().any(|v| v.key == "SSL_CERT_FILE") {
        return None;
    }
    Some(ScriptVariable {
        key: "SSL_CERT_FILE".to_string(),
        value: CA_PATH.to_string(),
        file: false,
    })
}

/// The PEM with exactly one trailing newline.
fn normalized(pem: &str) -> String {
    format!("{}\n", pem.trim_end())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A file (or directory) written into a container.
pub(crate) struct FileEntry {
    pub(crate) path: String,
    contents: Vec<u8>,
    mode: u32,
    /// uid, gid.
    owner: (u64, u64),
    directory: bool,
}

impl FileEntry {
    pub(crate) fn root_readable(path: String, text: &str) -> FileEntry {
        FileEntry {
            path,
            contents: text.as_bytes().to_vec(),
            mode: 0o644,
            owner: (0, 0),
            directory: false,
        }
    }

    /// A directory of root's with `mode` (the engine makes missing parents `0755`).
    pub(crate) fn directory(path: String, mode: u32) -> FileEntry {
        FileEntry {
            path,
            contents: Vec::new(),
            mode,
            owner: (0, 0),
            directory: true,
        }
    }
}

/// The image's system bundle: [`SYSTEM_BUNDLE`], or the file it links to (one level, as
/// Fedora-like images link it into `/etc/pki`). `None` when there is none.
async fn system_bundle(engine: &Engine, container: &JobContainer) -> Option<FileEntry> {
    let mut path = SYSTEM_BUNDLE.to_string();
    for _ in 0..2 {
        let tar = container.download_tar(engine, &path).await.ok()?;
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entry = archive.entries().ok()?.next()?.ok()?;
        let header = entry.header().clone();
        match header.entry_type() {
            tar::EntryType::Regular => {
                let mut contents = Vec::new();
                entry.read_to_end(&mut contents).ok()?;
                return Some(FileEntry {
                    path,
                    contents,
                    mode: header.mode().unwrap_or(0o644),
                    owner: (header.uid().unwrap_or(0), header.gid().unwrap_or(0)),
                    directory: false,
                });
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().ok()??.to_string_lossy().into_owned();
                path = if target.starts_with('/') {
                    target
                } else {
                    let dir = std::path::Path::new(&path).parent()?;
                    dir.join(target).to_string_lossy().into_owned()
                };
            }
            _ => return None,
        }
    }
    None
}

/// A tar of regular files and directories at absolute paths (the engine creates missing
/// parents; a directory comes before the files in it).
fn tar_of(files: &[FileEntry]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(if file.directory {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_uid(file.owner.0);
        header.set_gid(file.owner.1);
        header.set_mtime(now);
        let path = file.path.trim_start_matches('/');
        builder.append_data(&mut header, path, file.contents.as_slice())?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_cert_file_only_without_a_system_bundle_nor_the_jobs_own() {
        assert!(ssl_cert_file(true, &[]).is_none());
        assert_eq!(ssl_cert_file(false, &[]).unwrap().value, CA_PATH);
        let own = JobVariable {
            key: "SSL_CERT_FILE".into(),
            value: "/mine.pem".into(),
            ..Default::default()
        };
        assert!(ssl_cert_file(false, &[own]).is_none());
    }

    #[test]
    fn the_tar_holds_the_files_at_their_paths() {
        let tar = tar_of(&[FileEntry::root_readable(CA_PATH.into(), "pem\n")]).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(
            entry.path().unwrap().to_str(),
            Some("etc/glci/registry-ca.crt")
        );
        assert_eq!(entry.header().mode().unwrap(), 0o644);
    }
}
