//! The registry's storage under one directory (`GLCI_HOME/registry`), content-addressed like
//! distribution's filesystem driver:
//!
//! ```text
//! blobs/sha256/<2 hex>/<hex>                            every blob and manifest, by digest
//! repositories/<name>/_layers/sha256/<hex>              the blob belongs to the repository
//! repositories/<name>/_manifests/revisions/sha256/<hex> a manifest (holds its media type)
//! repositories/<name>/_manifests/tags/<tag>             holds the tagged digest
//! repositories/<name>/_referrers/sha256/<subject>/<hex> a referrer's descriptor (JSON)
//! uploads/<pid>-<random>/<id>                          data of an upload in progress
//! ```
//!
//! A blob becomes visible only by a rename after its digest was checked and its data fsynced,
//! so a reader or a crash never sees half a blob; two pushes of the same blob rename the same
//! content over each other, which is harmless. Link files are written the same way.
//! Upload sessions (their hash state) live in memory: resumable within a run.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hyper::body::Incoming;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncSeekExt;

use super::error::ApiError;
use super::names::Digest;
use crate::server::http::{copy_limited, BodyError};
use crate::server::random_string;
use crate::server::storage::{write_atomic, PendingFile};

pub(crate) struct Store {
    root: PathBuf,
    /// `uploads/<pid>-<random>`: this server's upload data.
    uploads_dir: PathBuf,
    uploads: Mutex<HashMap<String, Slot>>,
    max_blob_bytes: u64,
}

/// An upload session; `Busy` while a request streams into it, so two requests never append
/// to one file at once.
enum Slot {
    Idle(Upload),
    Busy,
}

#[derive(Clone)]
struct Upload {
    repository: String,
    size: u64,
    hasher: Sha256,
}

/// A blob ready to be read.
pub(crate) struct BlobFile {
    pub(crate) file: tokio::fs::File,
    pub(crate) size: u64,
}

fn io_err(context: &str) -> impl Fn(io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(context, e)
}

fn body_err(e: BodyError) -> ApiError {
    match e {
        BodyError::TooLarge(limit) => ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("blob larger than the registry's limit of {limit} bytes"),
        ),
        // The client went away or sent garbage: its upload is not stored.
        BodyError::Transport(e) => ApiError::upload_invalid(format!("reading the body: {e}")),
        BodyError::Io(e) => ApiError::internal("writing the blob", e),
    }
}

/// Writes a small file atomically off the async threads.
async fn write_small(path: PathBuf, data: Vec<u8>) -> Result<(), ApiError> {
    tokio::task::spawn_blocking(move || write_atomic(&path, &data))
        .await
        .map_err(|e| ApiError::internal("writing registry metadata", e))?
        .map_err(io_err("writing registry metadata"))
}

async fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ApiError> {
    match tokio::fs::read(path).await {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::internal("reading registry metadata", e)),
    }
}

async fn remove_optional(path: &Path) -> Result<bool, ApiError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ApiError::internal("removing registry metadata", e)),
    }
}

/// Sorted names in a directory; none when it does not exist. Temp files are not names.
async fn list_dir(dir: &Path) -> Result<Vec<String>, ApiError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ApiError::internal("listing registry metadata", e)),
    };
    let mut names = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io_err("listing registry metadata"))?
    {
        if let Some(name) = entry.file_name().to_str() {
            if !name.starts_with(".tmp-") {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.uploads_dir);
    }
}

impl Store {
    pub(crate) fn open(root: &Path, max_blob_bytes: u64) -> io::Result<Store> {
        for dir in ["blobs/sha256", "repositories", "uploads"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        // Several servers (pipelines running at once) share the directory; each keeps its
        // uploads in a directory of its own, named after its process. Sessions do not survive
        // their process, so the directories of processes that are gone are removed.
        for entry in std::fs::read_dir(root.join("uploads"))?.flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.split('-').next());
            let alive = pid.is_some_and(|pid| Path::new("/proc").join(pid).exists());
            if !alive && Path::new("/proc/self").exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let uploads_dir =
            root.join("uploads")
                .join(format!("{}-{}", std::process::id(), random_string(8)));
        std::fs::create_dir_all(&uploads_dir)?;
        Ok(Store {
            root: root.to_path_buf(),
            uploads_dir,
            uploads: Mutex::new(HashMap::new()),
            max_blob_bytes,
        })
    }

    pub(super) fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path_in(&self.blobs_root(), digest)
    }

    /// `blobs/sha256`: every blob, two hex digits of fan-out below it.
    pub(super) fn blobs_root(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// `repository` is validated by [`super::names::repository`]: it stays below `root`.
    pub(super) fn repo_dir(&self, repository: &str) -> PathBuf {
        self.root.join("repositories").join(repository)
    }

    pub(super) fn layer_link(&self, repository: &str, digest: &Digest) -> PathBuf {
        self.repo_dir(repository)
            .join("_layers/sha256")
            .join(digest.hex())
    }

    pub(super) fn revision_link(&self, repository: &str, digest: &Digest) -> PathBuf {
        self.repo_dir(repository)
            .join("_manifests/revisions/sha256")
            .join(digest.hex())
    }

    pub(super) fn tags_dir(&self, repository: &str) -> PathBuf {
        self.repo_dir(repository).join("_manifests/tags")
    }

    pub(super) fn referrers_dir(&self, repository: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(repository)
            .join("_referrers/sha256")
            .join(subject.hex())
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.uploads_dir.join(id)
    }

    pub(crate) async fn repository_exists(&self, repository: &str) -> bool {
        tokio::fs::metadata(self.repo_dir(repository)).await.is_ok()
    }

    // --- blobs ---

    /// The blob if it belongs to `repository`.
    pub(crate) async fn open_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<BlobFile, ApiError> {
        if tokio::fs::metadata(self.layer_link(repository, digest))
            .await
            .is_err()
        {
            return Err(ApiError::blob_unknown(&digest.to_string()));
        }
        let file = match tokio::fs::File::open(self.blob_path(digest)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ApiError::blob_unknown(&digest.to_string()))
            }
            Err(e) => return Err(ApiError::internal("opening a blob", e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(io_err("reading a blob's size"))?
            .len();
        Ok(BlobFile { file, size })
    }

    pub(crate) async fn blob_size(&self, repository: &str, digest: &Digest) -> Option<u64> {
        tokio::fs::metadata(self.layer_link(repository, digest))
            .await
            .ok()?;
        Some(
            tokio::fs::metadata(self.blob_path(digest))
                .await
                .ok()?
                .len(),
        )
    }

    pub(crate) async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<(), ApiError> {
        write_small(self.layer_link(repository, digest), Vec::new()).await
    }

    /// Removes the blob from the repository (the data stays for other repositories).
    pub(crate) async fn unlink_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, ApiError> {
        remove_optional(&self.layer_link(repository, digest)).await
    }

    /// Cross-repository mount: links a blob of `from` into `repository` without data.
    pub(crate) async fn mount(
        &self,
        repository: &str,
        from: &str,
        digest: &Digest,
    ) -> Result<bool, ApiError> {
        if self.blob_size(from, digest).await.is_none() {
            return Ok(false);
        }
        self.link_blob(repository, digest).await?;
        Ok(true)
    }

    /// A whole blob in one request (`POST ?digest=` or a manifest): streamed to a temp file
    /// next to its final place, hashed on the way, renamed only when the digest matches.
    pub(crate) async fn put_blob_stream(
        &self,
        repository: &str,
        expected: &Digest,
        body: Incoming,
    ) -> Result<u64, ApiError> {
        let dest = self.blob_path(expected);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let mut pending = PendingFile::new_in(&dir).map_err(io_err("creating a blob"))?;
        let mut hasher = Sha256::new();
        let size = copy_limited(body, &mut pending.file, self.max_blob_bytes, |d| {
            hasher.update(d)
        })
        .await
        .map_err(body_err)?;
        let actual = Digest::from_sha256(&hasher.finalize());
        if &actual != expected {
            return Err(ApiError::digest_invalid(format!(
                "the content's digest is {actual}, not {expected}"
            )));
        }
        pending
            .commit(&dest)
            .await
            .map_err(io_err("storing a blob"))?;
        self.link_blob(repository, expected).await?;
        Ok(size)
    }

    /// Stores a small blob (a manifest) already in memory.
    pub(crate) async fn put_blob_bytes(&self, data: Vec<u8>) -> Result<Digest, ApiError> {
        let digest = Digest::of(&data);
        write_small(self.blob_path(&digest), data).await?;
        Ok(digest)
    }

    // --- uploads ---

    pub(crate) async fn start_upload(&self, repository: &str) -> Result<String, ApiError> {
        let id = random_string(32);
        tokio::fs::File::create(self.upload_path(&id))
            .await
            .map_err(io_err("creating an upload"))?;
        self.lock_uploads().insert(
            id.clone(),
            Slot::Idle(Upload {
                repository: repository.to_string(),
                size: 0,
                hasher: Sha256::new(),
            }),
        );
        Ok(id)
    }

    fn lock_uploads(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the session for one request; `Busy` until [`Store::release`].
    fn take(&self, repository: &str, id: &str) -> Result<Upload, ApiError> {
        let mut uploads = self.lock_uploads();
        let slot = uploads.get_mut(id).ok_or_else(ApiError::upload_unknown)?;
        match slot {
            Slot::Idle(upload) if upload.repository == repository => {
                let Slot::Idle(upload) = std::mem::replace(slot, Slot::Busy) else {
                    unreachable!("matched Idle above")
                };
                Ok(upload)
            }
            Slot::Idle(_) => Err(ApiError::upload_unknown()),
            Slot::Busy => Err(ApiError::upload_invalid(
                "another request is writing to this upload",
            )),
        }
    }

    fn release(&self, id: &str, upload: Upload) {
        self.lock_uploads()
            .insert(id.to_string(), Slot::Idle(upload));
    }

    /// Bytes received so far.
    pub(crate) fn upload_size(&self, repository: &str, id: &str) -> Result<u64, ApiError> {
        match self.lock_uploads().get(id) {
            Some(Slot::Idle(u)) if u.repository == repository => Ok(u.size),
            Some(Slot::Busy) => Err(ApiError::upload_invalid(
                "another request is writing to this upload",
            )),
            _ => Err(ApiError::upload_unknown()),
        }
    }

    /// Appends a chunk. `range` is the client's `Content-Range` (`start-end`, inclusive): the
    /// chunk must start where the upload stands and be exactly that long. A chunk that fails
    /// (out of order, short, the client gone) leaves the upload as it was before it.
    pub(crate) async fn append(
        &self,
        repository: &str,
        id: &str,
        range: Option<(u64, u64)>,
        body: Incoming,
    ) -> Result<u64, ApiError> {
        let mut upload = self.take(repository, id)?;
        let before = upload.clone();
        let result = self.append_taken(id, &mut upload, range, body).await;
        match result {
            Ok(()) => {
                let size = upload.size;
                self.release(id, upload);
                Ok(size)
            }
            Err(e) => {
                // Cut the file back to the last good chunk, so the session stays usable.
                let cut = match std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.upload_path(id))
                {
                    Ok(f) => f.set_len(before.size),
                    Err(e) => Err(e),
                };
                match cut {
                    Ok(()) => self.release(id, before),
                    Err(cut_err) => {
                        tracing::warn!("registry: truncating upload {id}: {cut_err}");
                        self.lock_uploads().remove(id);
                        let _ = std::fs::remove_file(self.upload_path(id));
                    }
                }
                Err(e)
            }
        }
    }

    async fn append_taken(
        &self,
        id: &str,
        upload: &mut Upload,
        range: Option<(u64, u64)>,
        body: Incoming,
    ) -> Result<(), ApiError> {
        if let Some((start, _)) = range {
            if start != upload.size {
                return Err(ApiError::upload_invalid(format!(
                    "chunk starts at byte {start}, but the upload has {} bytes",
                    upload.size
                )));
            }
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.upload_path(id))
            .await
            .map_err(io_err("opening an upload"))?;
        file.seek(io::SeekFrom::Start(upload.size))
            .await
            .map_err(io_err("seeking in an upload"))?;
        let limit = self.max_blob_bytes.saturating_sub(upload.size);
        let hasher = &mut upload.hasher;
        let written = copy_limited(body, &mut file, limit, |d| hasher.update(d))
            .await
            .map_err(body_err)?;
        if let Some((start, end)) = range {
            if end + 1 - start != written {
                return Err(ApiError::upload_invalid(format!(
                    "Content-Range {start}-{end} announces {} bytes, the chunk had {written}",
                    end + 1 - start
                )));
            }
        }
        upload.size += written;
        Ok(())
    }

    /// Ends an upload: the data must hash to `expected`, else nothing is stored and the
    /// session is gone (`DIGEST_INVALID`).
    pub(crate) async fn finish(
        &self,
        repository: &str,
        id: &str,
        expected: &Digest,
    ) -> Result<(), ApiError> {
        let upload = self.take(repository, id)?;
        self.lock_uploads().remove(id);
        let path = self.upload_path(id);
        let actual = Digest::from_sha256(&upload.hasher.finalize());
        if &actual != expected {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::digest_invalid(format!(
                "the uploaded content's digest is {actual}, not {expected}"
            )));
        }
        let dest = self.blob_path(expected);
        let stored = async {
            tokio::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .await?
                .sync_all()
                .await?;
            if let Some(dir) = dest.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::rename(&path, &dest).await
        }
        .await;
        if let Err(e) = stored {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::internal("storing an uploaded blob", e));
        }
        self.link_blob(repository, expected).await
    }

    pub(crate) async fn cancel(&self, repository: &str, id: &str) -> Result<(), ApiError> {
        self.take(repository, id)?;
        self.lock_uploads().remove(id);
        let _ = tokio::fs::remove_file(self.upload_path(id)).await;
        Ok(())
    }

    // --- manifests and tags ---

    pub(crate) async fn resolve_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Digest>, ApiError> {
        let Some(data) = read_optional(&self.tags_dir(repository).join(tag)).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&data);
        Digest::parse(text.trim())
            .map(Some)
            .map_err(|e| ApiError::internal(&format!("tag {repository}:{tag}"), e))
    }

    /// The manifest's bytes and media type, if it belongs to `repository`.
    pub(crate) async fn manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<(Vec<u8>, String)>, ApiError> {
        let Some(media_type) = read_optional(&self.revision_link(repository, digest)).await? else {
            return Ok(None);
        };
        let Some(data) = read_optional(&self.blob_path(digest)).await? else {
            return Ok(None);
        };
        Ok(Some((
            data,
            String::from_utf8_lossy(&media_type).into_owned(),
        )))
    }

    pub(crate) async fn has_manifest(&self, repository: &str, digest: &Digest) -> bool {
        tokio::fs::metadata(self.revision_link(repository, digest))
            .await
            .is_ok()
    }

    /// Stores a verified manifest: its bytes as a blob, then the revision, then the tag.
    pub(crate) async fn put_manifest(
        &self,
        repository: &str,
        data: Vec<u8>,
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<Digest, ApiError> {
        let digest = self.put_blob_bytes(data).await?;
        write_small(
            self.revision_link(repository, &digest),
            media_type.as_bytes().to_vec(),
        )
        .await?;
        if let Some(tag) = tag {
            write_small(
                self.tags_dir(repository).join(tag),
                digest.to_string().into_bytes(),
            )
            .await?;
        }
        Ok(digest)
    }

    /// Removes the manifest from the repository and every tag that points at it.
    pub(crate) async fn delete_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, ApiError> {
        for tag in self.tags(repository).await? {
            if self.resolve_tag(repository, &tag).await?.as_ref() == Some(digest) {
                remove_optional(&self.tags_dir(repository).join(&tag)).await?;
            }
        }
        remove_optional(&self.revision_link(repository, digest)).await
    }

    pub(crate) async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, ApiError> {
        remove_optional(&self.tags_dir(repository).join(tag)).await
    }

    pub(crate) async fn tags(&self, repository: &str) -> Result<Vec<String>, ApiError> {
        list_dir(&self.tags_dir(repository)).await
    }

    pub(crate) async fn add_referrer(
        &self,
        repository: &str,
        subject: &Digest,
        referrer: &Digest,
        descriptor: &serde_json::Value,
    ) -> Result<(), ApiError> {
        write_small(
            self.referrers_dir(repository, subject).join(referrer.hex()),
            descriptor.to_string().into_bytes(),
        )
        .await
    }

    pub(crate) async fn remove_referrer(
        &self,
        repository: &str,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), ApiError> {
        remove_optional(&self.referrers_dir(repository, subject).join(referrer.hex())).await?;
        Ok(())
    }

    /// Descriptors of the manifests whose `subject` is `subject`, by digest.
    pub(crate) async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
    ) -> Result<Vec<serde_json::Value>, ApiError> {
        let dir = self.referrers_dir(repository, subject);
        let mut out = Vec::new();
        for name in list_dir(&dir).await? {
            if let Some(data) = read_optional(&dir.join(name)).await? {
                if let Ok(v) = serde_json::from_slice(&data) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// Every repository, sorted: a directory below `repositories/` with blobs or manifests.
    pub(crate) async fn catalog(&self) -> Result<Vec<String>, ApiError> {
        let root = self.root.join("repositories");
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![(root.clone(), String::new())];
            while let Some((dir, name)) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(_) => continue,
                };
                let mut is_repo = false;
                for entry in entries.flatten() {
                    let Some(file) = entry.file_name().to_str().map(str::to_string) else {
                        continue;
                    };
                    if file.starts_with('_') {
                        is_repo = true;
                    } else if !file.starts_with(".tmp-") && entry.path().is_dir() {
                        let child = if name.is_empty() {
                            file
                        } else {
                            format!("{name}/{file}")
                        };
                        stack.push((entry.path(), child));
                    }
                }
                if is_repo && !name.is_empty() {
                    out.push(name);
                }
            }
            out.sort();
            out
        })
        .await
        .map_err(|e| ApiError::internal("listing repositories", e))
    }
}

/// `blobs/sha256/<2 hex>/<hex>` below `blobs_root`.
pub(super) fn blob_path_in(blobs_root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    blobs_root.join(&hex[..2]).join(hex)
}

/// Streams `reader` into the blob store below `blobs_root` (blocking; for a thread of its
/// own): a temp file in `blobs_root` (the file system of every blob), hashed on the way,
/// fsynced, renamed to its digest's path. Nothing is stored when `expected` is given and does
/// not match, when the data exceeds `limit`, or when reading fails.
pub(super) fn write_blob_sync(
    blobs_root: &Path,
    reader: &mut dyn io::Read,
    expected: Option<&Digest>,
    limit: u64,
) -> Result<(Digest, u64), ApiError> {
    use std::io::Write as _;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(blobs_root)
        .map_err(io_err("creating a blob"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ApiError::internal("reading a blob", e)),
        };
        size += n as u64;
        if size > limit {
            return Err(body_err(BodyError::TooLarge(limit)));
        }
        hasher.update(&buf[..n]);
        temp.write_all(&buf[..n])
            .map_err(io_err("writing a blob"))?;
    }
    let actual = Digest::from_sha256(&hasher.finalize());
    if let Some(expected) = expected {
        if &actual != expected {
            return Err(ApiError::digest_invalid(format!(
                "the content's digest is {actual}, not {expected}"
            )));
        }
    }
    temp.as_file()
        .sync_all()
        .map_err(io_err("storing a blob"))?;
    let dest = blob_path_in(blobs_root, &actual);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("storing a blob"))?;
    }
    temp.persist(&dest)
        .map_err(|e| ApiError::internal("storing a blob", e.error))?;
    Ok((actual, size))
}

/// What the pull-through cache keeps in a repository it filled: `_mirror` holds where the
/// content came from. A repository without it received pushes: a project's.
impl Store {
    fn mirror_marker(&self, repository: &str) -> PathBuf {
        self.repo_dir(repository).join("_mirror")
    }

    pub(crate) async fn mark_mirrored(
        &self,
        repository: &str,
        origin: &str,
    ) -> Result<(), ApiError> {
        write_small(self.mirror_marker(repository), origin.as_bytes().to_vec()).await
    }

    /// A push makes the repository a project's: the cache no longer fills it, and only
    /// credentials that may pull from it reach it.
    pub(crate) async fn forget_mirror(&self, repository: &str) -> Result<(), ApiError> {
        remove_optional(&self.mirror_marker(repository)).await?;
        Ok(())
    }

    /// Where a mirrored repository's content came from; none for a project's repository.
    pub(crate) async fn mirror_origin(&self, repository: &str) -> Option<String> {
        let data = tokio::fs::read(self.mirror_marker(repository)).await.ok()?;
        Some(String::from_utf8_lossy(&data).into_owned())
    }

    /// A repository that exists and was not filled by the cache: pushes went there.
    pub(crate) async fn is_pushed_repository(&self, repository: &str) -> bool {
        let dir = self.repo_dir(repository);
        let has = |sub: &'static str| tokio::fs::metadata(dir.join(sub));
        (has("_layers").await.is_ok() || has("_manifests").await.is_ok())
            && self.mirror_origin(repository).await.is_none()
    }

    /// Whether the blob's data is in the store (in any repository).
    pub(crate) async fn has_blob_data(&self, digest: &Digest) -> bool {
        tokio::fs::metadata(self.blob_path(digest)).await.is_ok()
    }
}
