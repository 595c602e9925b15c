//! Generic packages (`API::GenericPackages`):
//! `PUT /projects/:id/packages/generic/:name/:version/:file` (the body is the file) and
//! `GET` of the same path.
//!
//! Files live in `ApiConfig::packages_dir` (`<GLCI_HOME>/packages` under `cargo glci`) as
//! `<project path>/<name>/<version>/<file>`, so a later job or a later run finds them. An
//! upload streams into a temp file next to its destination, is size-checked, fsynced and
//! renamed, so a reader never sees half a file. Names are checked with GitLab's rules, which
//! also keep every path inside the directory.

use std::path::PathBuf;

use http::StatusCode;
use serde_json::json;

use super::{bad_request, Caller};
use crate::server::http::{self as h, BodyError, Request, Response};
use crate::server::runner_api::state::PackageFile;
use crate::server::storage::PendingFile;
use crate::server::Shared;

/// The path parameters of a generic package file.
pub(super) struct Coordinates<'a> {
    pub(super) name: &'a str,
    pub(super) version: &'a str,
    pub(super) file: &'a str,
}

/// A package path parameter GitLab's rules refuse; the message goes into the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum InvalidCoordinate {
    #[error("package_name {0:?} is invalid")]
    Name(String),
    #[error("package_version {0:?} is invalid")]
    Version(String),
    #[error("file_name {0:?} is invalid")]
    FileName(String),
}

/// GitLab's `generic_package_name_regex` / `generic_package_file_name_regex`
/// (`[A-Za-z0-9._+~-]`, `~` only in file names) and its semver-like version rule, with `.`
/// and `..` refused so no name climbs out of the package directory.
fn validate(c: &Coordinates<'_>) -> Result<(), InvalidCoordinate> {
    let plain = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.len() <= 255
            && s != "."
            && s != ".."
            && !s.contains("..")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b) || extra.contains(&b))
    };
    if !plain(c.name, b"") {
        return Err(InvalidCoordinate::Name(c.name.to_string()));
    }
    if !plain(c.version, b"") || c.version.starts_with('.') || c.version.ends_with('.') {
        return Err(InvalidCoordinate::Version(c.version.to_string()));
    }
    if !plain(c.file, b"~") {
        return Err(InvalidCoordinate::FileName(c.file.to_string()));
    }
    Ok(())
}

fn dir_of(shared: &Shared, caller: &Caller, c: &Coordinates<'_>) -> PathBuf {
    let root = shared
        .config
        .api
        .packages_dir
        .clone()
        .unwrap_or_else(|| shared.config.data_dir.join("packages"));
    // Project paths were validated as `group/project` segments when the job was queued.
    root.join(&caller.project_path).join(c.name).join(c.version)
}

pub(super) async fn upload(
    shared: &Shared,
    caller: &Caller,
    c: &Coordinates<'_>,
    req: Request,
) -> Response {
    if let Err(e) = validate(c) {
        return bad_request(&e.to_string());
    }
    let dir = dir_of(shared, caller, c);
    let limit = shared.config.api.max_package_bytes;
    let mut pending = match PendingFile::new_in(&dir) {
        Ok(f) => f,
        Err(e) => return storage_error(&dir, &e),
    };
    let size = match h::copy_limited(req.into_body(), &mut pending.file, limit, |_| {}).await {
        Ok(n) => n,
        Err(BodyError::TooLarge(_)) => {
            return h::json_message(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("413 Request Entity Too Large - file is larger than {limit} bytes"),
            )
        }
        Err(BodyError::Io(e)) => return storage_error(&dir, &e),
        Err(e) => return bad_request(&e.to_string()),
    };
    let dest = dir.join(c.file);
    if let Err(e) = pending.commit(&dest).await {
        return storage_error(&dir, &e);
    }
    let mut inner = shared.api.lock();
    inner.packages.retain(|p| p.path != dest);
    inner.packages.push(PackageFile {
        job: caller.id,
        package: c.name.to_string(),
        version: c.version.to_string(),
        file_name: c.file.to_string(),
        size,
        path: dest,
    });
    drop(inner);
    h::json(StatusCode::CREATED, &json!({ "message": "201 Created" }))
}

pub(super) async fn download(shared: &Shared, caller: &Caller, c: &Coordinates<'_>) -> Response {
    if let Err(e) = validate(c) {
        return bad_request(&e.to_string());
    }
    let path = dir_of(shared, caller, c).join(c.file);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return h::json_message(StatusCode::NOT_FOUND, "404 Package Not Found"),
    };
    let size = file.metadata().await.map(|m| m.len()).ok();
    h::download(file, size, c.file)
}

fn storage_error(dir: &std::path::Path, e: &std::io::Error) -> Response {
    tracing::error!("package storage {}: {e}", dir.display());
    h::json_message(
        StatusCode::INSUFFICIENT_STORAGE,
        &format!("507 cannot store package file: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, version: &str, file: &str) -> bool {
        validate(&Coordinates {
            name,
            version,
            file,
        })
        .is_ok()
    }

    #[test]
    fn names_follow_gitlab_and_never_climb_out() {
        assert!(check("my-pkg", "1.0.0", "app_v1.tar.gz"));
        assert!(check("pkg", "1.0.0+build.1", "a~b"));
        assert!(!check("..", "1.0.0", "f"));
        assert!(!check("pkg", "..", "f"));
        assert!(!check("pkg", "1.0.0", ".."));
        assert!(!check("pkg", "1.0.0", "a/b"));
        assert!(!check("pkg", "1.0.0", "a..b"));
        assert!(!check("p kg", "1.0.0", "f"));
        assert!(!check("pkg", ".1", "f"));
        assert!(!check("pkg~", "1", "f"));
    }
}
