//! Moving files between the host and a container (tar, the Docker archive API's format) and
//! between the runner and the server (zip, GitLab's artifact and cache format).

use std::collections::BTreeSet;
use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// An error building or reading an archive, naming the file at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArchiveError(pub String);

/// Tars the directory `dir` so that it unpacks at `dest` (absolute, e.g. `/builds/acme/demo`)
/// when uploaded to `/`. Parent directories are included; ownership is root.
pub fn tar_dir_at(dir: &Path, dest: &str) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let dest = dest.trim_matches('/');
    let mut prefix = String::new();
    for part in dest.split('/').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        append_dir_entry(&mut builder, &prefix)?;
    }
    builder
        .append_dir_all(dest, dir)
        .map_err(|e| ArchiveError(format!("cannot pack {}: {e}", dir.display())))?;
    builder
        .into_inner()
        .map_err(|e| ArchiveError(format!("cannot pack {}: {e}", dir.display())))
}

fn append_dir_entry(builder: &mut tar::Builder<Vec<u8>>, path: &str) -> Result<(), ArchiveError> {
    builder
        .append_data(&mut dir_header(0o777), format!("{path}/"), std::io::empty())
        .map_err(|e| ArchiveError(format!("cannot pack {path}: {e}")))
}

/// How far an archive made by a job may expand when glci unpacks it. Any job can upload an
/// artifact or a cache with its own token, so a small zip of zeros (a "zip bomb") must not
/// fill glci's memory or the disk. The official runner has no such bounds; these are far
/// above what a real artifact or cache needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandLimits {
    /// Total bytes of all files once expanded.
    pub max_bytes: u64,
    /// Files, directories and links together.
    pub max_entries: usize,
    /// Expanded bytes per byte of archive, checked once the archive expands to more than
    /// [`RATIO_CHECKED_ABOVE`] (small, repetitive files legitimately compress far better).
    pub max_ratio: u64,
}

/// Below this expanded size the compression ratio is not checked.
pub const RATIO_CHECKED_ABOVE: u64 = 16 * 1024 * 1024;

impl Default for ExpandLimits {
    fn default() -> Self {
        ExpandLimits {
            max_bytes: 1024 * 1024 * 1024,
            max_entries: 100_000,
            max_ratio: 200,
        }
    }
}

/// Why a zip made by a job was not unpacked. Each bound and each escape has its own error.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("not a zip archive: {0}")]
    NotZip(zip::result::ZipError),
    #[error("the archive has {count} entries, more than the {limit} glci unpacks")]
    TooManyEntries { count: usize, limit: usize },
    #[error("the archive expands to {expanded} bytes, more than the {limit} glci unpacks")]
    TooLarge { expanded: u64, limit: u64 },
    #[error(
        "the archive expands {ratio} times its size of {archive} bytes, more than the \
         {limit} times glci allows (a zip bomb?)"
    )]
    RatioTooHigh {
        ratio: u64,
        archive: u64,
        limit: u64,
    },
    #[error("zip entry `{0}` escapes the directory it is unpacked into")]
    Escapes(String),
    #[error(
        "zip entry `{name}` is a link to `{target}`, outside the directory it is unpacked into"
    )]
    LinkEscapes { name: String, target: String },
    #[error("zip entry `{name}` holds more or less than the {declared} bytes its header says")]
    SizeMismatch { name: String, declared: u64 },
    #[error("corrupt zip entry {index}: {source}")]
    Corrupt {
        index: usize,
        source: zip::result::ZipError,
    },
    #[error("cannot read zip entry `{name}`: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot write `{name}`: {source}")]
    Write {
        name: String,
        source: std::io::Error,
    },
}

impl From<UnpackError> for ArchiveError {
    fn from(e: UnpackError) -> Self {
        ArchiveError(e.to_string())
    }
}

/// What one checked zip entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// A regular file of the size its header declares (checked again while it is read).
    File {
        size: u64,
    },
    /// A symbolic link whose target stays inside the destination.
    Symlink {
        target: String,
    },
}

/// One zip entry that passed [`check_zip`]: its index, where it goes (relative, `/`-separated,
/// only normal components) and its Unix mode.
#[derive(Debug, Clone)]
pub struct CheckedEntry {
    pub index: usize,
    pub rel: String,
    pub mode: u32,
    pub kind: EntryKind,
}

/// The most a link target may hold (Linux's `PATH_MAX`).
const MAX_LINK_TARGET: u64 = 4096;

/// Checks a whole zip before anything is unpacked, from its central directory (and the
/// targets of its links): the entry count, the expanded size and the compression ratio
/// against `limits`, and that no entry or link leaves the destination (`..`, absolute
/// paths). `archive_len` is the size of the zip in bytes.
pub fn check_zip<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    archive_len: u64,
    limits: ExpandLimits,
) -> Result<Vec<CheckedEntry>, UnpackError> {
    if zip.len() > limits.max_entries {
        return Err(UnpackError::TooManyEntries {
            count: zip.len(),
            limit: limits.max_entries,
        });
    }
    let mut expanded = 0u64;
    let mut entries = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let mut entry = zip
            .by_index(index)
            .map_err(|source| UnpackError::Corrupt { index, source })?;
        let raw_name = entry.name().unwrap_or_default().to_string();
        // The zip crate would read `/etc/x` as `etc/x`; an absolute name is refused instead.
        let absolute = raw_name.starts_with(['/', '\\']) || raw_name.get(1..2) == Some(":");
        let rel = (!absolute)
            .then(|| entry.enclosed_name())
            .flatten()
            .filter(|p| {
                p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .map(|p| p.trim_end_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| UnpackError::Escapes(raw_name.clone()))?;
        let is_dir = entry.is_dir();
        let mode = entry
            .unix_mode()
            .unwrap_or(if is_dir { 0o755 } else { 0o644 });
        let kind = if is_dir {
            EntryKind::Dir
        } else if mode & 0o170000 == 0o120000 {
            let mut target = String::new();
            (&mut entry)
                .take(MAX_LINK_TARGET)
                .read_to_string(&mut target)
                .map_err(|source| UnpackError::Read {
                    name: rel.clone(),
                    source,
                })?;
            if !link_stays_inside(&rel, &target) {
                return Err(UnpackError::LinkEscapes { name: rel, target });
            }
            EntryKind::Symlink { target }
        } else {
            let size = entry.size();
            expanded = expanded.saturating_add(size);
            if expanded > limits.max_bytes {
                return Err(UnpackError::TooLarge {
                    expanded,
                    limit: limits.max_bytes,
                });
            }
            EntryKind::File { size }
        };
        entries.push(CheckedEntry {
            index,
            rel,
            mode,
            kind,
        });
    }
    let ratio = expanded / archive_len.max(1);
    if expanded > RATIO_CHECKED_ABOVE && ratio > limits.max_ratio {
        return Err(UnpackError::RatioTooHigh {
            ratio,
            archive: archive_len,
            limit: limits.max_ratio,
        });
    }
    Ok(entries)
}

/// Whether the link `rel` (relative to the destination) with this target resolves inside
/// the destination, lexically: absolute targets never do, `..` may not climb above it.
/// Every link of an archive is checked, so a path through other links stays inside too.
fn link_stays_inside(rel: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth = rel.split('/').count() - 1;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// A checked entry's content, read as it is written: exactly the size its header declared
/// (the sizes [`check_zip`] bounded), an error if the data holds more or less.
pub struct DeclaredSize<'a, R> {
    inner: R,
    remaining: u64,
    name: &'a str,
    declared: u64,
}

impl<'a, R: Read> DeclaredSize<'a, R> {
    pub fn new(inner: R, declared: u64, name: &'a str) -> Self {
        DeclaredSize {
            inner,
            remaining: declared,
            name,
            declared,
        }
    }

    fn unreadable(&self, source: std::io::Error) -> std::io::Error {
        std::io::Error::other(UnpackError::Read {
            name: self.name.to_string(),
            source,
        })
    }

    fn mismatch(&self) -> std::io::Error {
        std::io::Error::other(UnpackError::SizeMismatch {
            name: self.name.to_string(),
            declared: self.declared,
        })
    }
}

impl<R: Read> Read for DeclaredSize<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            // One byte more than declared is a lie about the size: refuse it.
            let mut probe = [0u8; 1];
            return match self
                .inner
                .read(&mut probe)
                .map_err(|e| self.unreadable(e))?
            {
                0 => Ok(0),
                _ => Err(self.mismatch()),
            };
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self
            .inner
            .read(&mut buf[..want])
            .map_err(|e| self.unreadable(e))?;
        if n == 0 {
            return Err(self.mismatch());
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Writes a checked zip as a tar that unpacks at `dest` (absolute, e.g.
/// `/builds/acme/demo`), one entry at a time: no file is ever held whole in memory.
pub fn write_zip_as_tar<R: Read + std::io::Seek, W: Write>(
    zip: &mut zip::ZipArchive<R>,
    entries: &[CheckedEntry],
    dest: &str,
    out: W,
) -> Result<W, UnpackError> {
    let dest = dest.trim_matches('/');
    let mut builder = tar::Builder::new(out);
    let write_err = |name: &str| {
        let name = name.to_string();
        move |source| UnpackError::Write { name, source }
    };
    let mut prefix = String::new();
    for part in dest.split('/').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        let mut header = dir_header(0o777);
        builder
            .append_data(&mut header, format!("{prefix}/"), std::io::empty())
            .map_err(write_err(&prefix))?;
    }
    for checked in entries {
        let path = format!("{dest}/{}", checked.rel);
        let rel = checked.rel.as_str();
        match &checked.kind {
            EntryKind::Dir => {
                let mut header = dir_header(checked.mode & 0o7777);
                builder
                    .append_data(&mut header, format!("{path}/"), std::io::empty())
                    .map_err(write_err(rel))?;
            }
            EntryKind::Symlink { target } => {
                let mut header = tar::Header::new_gnu();
                header.set_mtime(0);
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, &path, target)
                    .map_err(write_err(rel))?;
            }
            EntryKind::File { size } => {
                let entry = zip
                    .by_index(checked.index)
                    .map_err(|source| UnpackError::Corrupt {
                        index: checked.index,
                        source,
                    })?;
                let mut header = tar::Header::new_gnu();
                header.set_mtime(0);
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(checked.mode & 0o7777);
                header.set_size(*size);
                builder
                    .append_data(&mut header, &path, DeclaredSize::new(entry, *size, rel))
                    .map_err(|e| copy_error(e, rel))?;
            }
        }
    }
    builder.into_inner().map_err(write_err(dest))
}

/// An I/O error from copying an entry: the [`UnpackError`] [`DeclaredSize`] put inside it
/// when reading was the problem, a write error otherwise.
pub fn copy_error(e: std::io::Error, name: &str) -> UnpackError {
    let write = |source| UnpackError::Write {
        name: name.to_string(),
        source,
    };
    if !e.get_ref().is_some_and(|inner| inner.is::<UnpackError>()) {
        return write(e);
    }
    match e.into_inner().map(|inner| inner.downcast::<UnpackError>()) {
        Some(Ok(unpack)) => *unpack,
        // Not reached: checked just above.
        _ => write(std::io::Error::other("unknown error")),
    }
}

fn dir_header(mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(mode);
    header.set_size(0);
    header.set_mtime(0);
    header
}

/// Turns a zip archive into a tar that unpacks at `dest`, in memory (for tests and small
/// archives; [`zip_to_tar_stream`] is what the runner uses). Checked as [`check_zip`] says.
pub fn zip_to_tar_at(zip_bytes: &[u8], dest: &str) -> Result<Vec<u8>, ArchiveError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(UnpackError::NotZip)?;
    let entries = check_zip(&mut zip, zip_bytes.len() as u64, ExpandLimits::default())?;
    Ok(write_zip_as_tar(&mut zip, &entries, dest, Vec::new())?)
}

/// A tar produced while it is sent: chunks for an HTTP body (the Docker archive API's
/// upload), written on a thread of its own so the whole tar never sits in memory.
pub struct TarStream(pub Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>);

/// Chunks written on the tar thread, handed to the stream; full channel = the thread waits.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// [`zip_to_tar_at`], streamed: the zip is checked here (every bound and escape is an
/// error before anything is sent), then written as a tar chunk by chunk on a thread. An
/// entry whose data turns out to differ from its header ends the stream with that error.
pub fn zip_to_tar_stream(
    zip_bytes: Bytes,
    dest: &str,
    limits: ExpandLimits,
) -> Result<TarStream, UnpackError> {
    let archive_len = zip_bytes.len() as u64;
    let mut zip = zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(UnpackError::NotZip)?;
    let entries = check_zip(&mut zip, archive_len, limits)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let dest = dest.to_string();
    let spawned = std::thread::Builder::new()
        .name("glci-unzip".into())
        .spawn(move || {
            let out = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            let result = write_zip_as_tar(&mut zip, &entries, &dest, out).and_then(|mut w| {
                w.send().map_err(|source| UnpackError::Write {
                    name: dest.clone(),
                    source,
                })
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(std::io::Error::other(e)));
            }
        });
    if let Err(source) = spawned {
        return Err(UnpackError::Write {
            name: "unpacking thread".into(),
            source,
        });
    }
    Ok(TarStream(Box::pin(futures_util::stream::poll_fn(
        move |cx| rx.poll_recv(cx),
    ))))
}

/// Which files of the project directory go into an artifact or cache archive.
#[derive(Debug, Default)]
pub struct Selection {
    include: Option<GlobSet>,
    /// Literal paths (and directories: everything below them).
    include_prefixes: Vec<String>,
    exclude: Option<GlobSet>,
    exclude_prefixes: Vec<String>,
    untracked: bool,
    tracked: BTreeSet<String>,
}

impl Selection {
    /// `paths` and `exclude` as the runner reads them (doublestar globs relative to the
    /// project directory; a directory means everything below it), `untracked` = files git does
    /// not track.
    pub fn new(
        paths: &[String],
        exclude: &[String],
        untracked: bool,
        tracked: BTreeSet<String>,
    ) -> Result<Selection, ArchiveError> {
        let (include, include_prefixes) = globs(paths)?;
        let (exclude, exclude_prefixes) = globs(exclude)?;
        Ok(Selection {
            include,
            include_prefixes,
            exclude,
            exclude_prefixes,
            untracked,
            tracked,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.include_prefixes.is_empty() && !self.untracked
    }

    /// Whether the file `rel` (relative to the project directory) is selected.
    pub fn selects(&self, rel: &str) -> bool {
        let included = matches(&self.include, &self.include_prefixes, rel)
            || (self.untracked && !self.tracked.contains(rel) && !rel.starts_with(".git/"));
        included && !matches(&self.exclude, &self.exclude_prefixes, rel)
    }
}

fn matches(set: &Option<GlobSet>, prefixes: &[String], rel: &str) -> bool {
    if prefixes
        .iter()
        .any(|p| rel == p || rel.starts_with(&format!("{p}/")))
    {
        return true;
    }
    let Some(set) = set else { return false };
    // A glob naming a directory selects what is under it: try every ancestor too.
    let mut path = rel;
    loop {
        if set.is_match(path) {
            return true;
        }
        match path.rfind('/') {
            Some(i) => path = &path[..i],
            None => return false,
        }
    }
}

fn globs(patterns: &[String]) -> Result<(Option<GlobSet>, Vec<String>), ArchiveError> {
    let mut builder = GlobSetBuilder::new();
    let mut prefixes = Vec::new();
    let mut any = false;
    for p in patterns {
        let p = p.trim_start_matches("./").trim_end_matches('/');
        if p.is_empty() {
            continue;
        }
        if !p.contains(['*', '?', '[', '{']) {
            prefixes.push(p.to_string());
            continue;
        }
        let glob = GlobBuilder::new(p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| ArchiveError(format!("invalid path pattern `{p}`: {e}")))?;
        builder.add(glob);
        any = true;
    }
    let set = if any {
        Some(
            builder
                .build()
                .map_err(|e| ArchiveError(format!("invalid path patterns: {e}")))?,
        )
    } else {
        None
    };
    Ok((set, prefixes))
}

/// Builds a zip of the selected files from a tar of the project directory as the Docker
/// archive API returns it (top-level entry = the directory's own name). Returns the zip and
/// the number of files in it.
pub fn tar_to_zip(
    tar_bytes: &[u8],
    selection: &Selection,
) -> Result<(Vec<u8>, usize), ArchiveError> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut count = 0;
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError(format!("cannot read container files: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ArchiveError(format!("cannot read container files: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| ArchiveError(format!("bad path in container files: {e}")))?
            .to_string_lossy()
            .into_owned();
        // Strip the top-level directory name (the project directory itself).
        let Some((_, rel)) = path.trim_end_matches('/').split_once('/') else {
            continue;
        };
        if rel.is_empty() || !selection.selects(rel) {
            continue;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode & 0o7777);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                zip.add_directory(rel, options)
                    .map_err(|e| ArchiveError(format!("cannot archive {rel}: {e}")))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                zip.add_symlink(rel, target, options)
                    .map_err(|e| ArchiveError(format!("cannot archive {rel}: {e}")))?;
                count += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                zip.start_file(rel, options)
                    .map_err(|e| ArchiveError(format!("cannot archive {rel}: {e}")))?;
                std::io::copy(&mut entry, &mut zip)
                    .map_err(|e| ArchiveError(format!("cannot archive {rel}: {e}")))?;
                count += 1;
            }
            _ => {}
        }
    }
    let cursor = zip
        .finish()
        .map_err(|e| ArchiveError(format!("cannot finish archive: {e}")))?;
    let mut bytes = cursor.into_inner();
    bytes.flush().ok();
    Ok((bytes, count))
}

/// The selected regular files of a project tar (see [`tar_to_zip`]), in archive order, as
/// (relative path, content).
fn selected_files(
    tar_bytes: &[u8],
    selection: &Selection,
) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut files = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError(format!("cannot read container files: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ArchiveError(format!("cannot read container files: {e}")))?;
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| ArchiveError(format!("bad path in container files: {e}")))?
            .to_string_lossy()
            .into_owned();
        let Some((_, rel)) = path.split_once('/') else {
            continue;
        };
        if rel.is_empty() || !selection.selects(rel) {
            continue;
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| ArchiveError(format!("cannot read {rel}: {e}")))?;
        files.push((rel.to_string(), content));
    }
    Ok(files)
}

/// The `gzip` artifact format of reports (dotenv, junit, ...): as the official runner's gzip
/// archiver writes it, one gzip member per selected file, named after the file, concatenated.
/// Returns the stream and the number of files in it.
pub fn tar_to_gzip(
    tar_bytes: &[u8],
    selection: &Selection,
) -> Result<(Vec<u8>, usize), ArchiveError> {
    let files = selected_files(tar_bytes, selection)?;
    let mut out = Vec::new();
    for (rel, content) in &files {
        let mut gz = flate2::GzBuilder::new()
            .filename(rel.as_bytes())
            .write(&mut out, flate2::Compression::default());
        gz.write_all(content)
            .and_then(|_| gz.try_finish())
            .map_err(|e| ArchiveError(format!("cannot compress {rel}: {e}")))?;
    }
    Ok((out, files.len()))
}

/// The `raw` artifact format: the one selected file as it is. Like the official runner, more
/// than one file is an error naming them.
pub fn tar_to_raw(
    tar_bytes: &[u8],
    selection: &Selection,
) -> Result<(Vec<u8>, usize), ArchiveError> {
    let mut files = selected_files(tar_bytes, selection)?;
    if files.len() > 1 {
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        return Err(ArchiveError(format!(
            "only one file can be sent as raw, found {}: {}",
            files.len(),
            names.join(", ")
        )));
    }
    Ok(match files.pop() {
        Some((_, content)) => (content, 1),
        None => (Vec::new(), 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_tar(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, format!("demo/{path}"), content.as_bytes())
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    fn zip_names(bytes: &[u8]) -> Vec<String> {
        let z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut names: Vec<String> = z.file_names().map(|n| n.unwrap().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn selects_paths_globs_excludes_and_untracked() {
        let tar = project_tar(&[
            ("out/a.txt", "a"),
            ("out/skip.log", "l"),
            ("src/main.rs", "m"),
            ("target/x/report.xml", "r"),
            ("new.txt", "n"),
        ]);
        let tracked: BTreeSet<String> = ["src/main.rs".to_string()].into();
        let sel = Selection::new(
            &["out/".into(), "target/**/*.xml".into()],
            &["out/*.log".into()],
            false,
            tracked.clone(),
        )
        .unwrap();
        let (zip, n) = tar_to_zip(&tar, &sel).unwrap();
        assert_eq!(n, 2);
        assert_eq!(zip_names(&zip), ["out/a.txt", "target/x/report.xml"]);

        let untracked = Selection::new(&[], &[], true, tracked).unwrap();
        let (zip, _) = tar_to_zip(&tar, &untracked).unwrap();
        assert_eq!(
            zip_names(&zip),
            [
                "new.txt",
                "out/a.txt",
                "out/skip.log",
                "target/x/report.xml"
            ]
        );
    }

    #[test]
    fn zip_round_trips_into_a_tar_at_the_project_dir() {
        let tar = project_tar(&[("out/a.txt", "hello")]);
        let sel = Selection::new(&["out".into()], &[], false, BTreeSet::new()).unwrap();
        let (zip, _) = tar_to_zip(&tar, &sel).unwrap();
        let back = zip_to_tar_at(&zip, "/builds/acme/demo").unwrap();
        let mut archive = tar::Archive::new(back.as_slice());
        let mut found = None;
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == "builds/acme/demo/out/a.txt" {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                found = Some(s);
            }
        }
        assert_eq!(found.as_deref(), Some("hello"));
    }

    #[test]
    fn zip_entries_escaping_the_project_are_refused() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("../evil", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"x").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let err = zip_to_tar_at(&bytes, "/builds/p").unwrap_err();
        assert!(
            err.to_string()
                .contains("escapes the directory it is unpacked into"),
            "{err}"
        );
    }

    #[test]
    fn gzip_reports_are_one_member_per_file_and_raw_takes_exactly_one() {
        let tar = project_tar(&[
            ("build.env", "A=1\n"),
            ("more.env", "B=2\n"),
            ("other.txt", "x"),
        ]);
        let envs = Selection::new(&["*.env".into()], &[], false, BTreeSet::new()).unwrap();
        let (gz, count) = tar_to_gzip(&tar, &envs).unwrap();
        assert_eq!(count, 2);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "A=1\nB=2\n");

        let one = Selection::new(&["build.env".into()], &[], false, BTreeSet::new()).unwrap();
        assert_eq!(tar_to_raw(&tar, &one).unwrap(), (b"A=1\n".to_vec(), 1));
        let err = tar_to_raw(&tar, &envs).unwrap_err().to_string();
        assert!(err.contains("build.env, more.env"), "{err}");
    }

    /// A zip of `entries`: (name, content, unix mode); mode 0o120000 bits make a link.
    fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, content, mode) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode & 0o7777);
            if mode & 0o170000 == 0o120000 {
                let target = std::str::from_utf8(content).unwrap();
                zip.add_symlink(*name, target, options).unwrap();
            } else {
                zip.start_file(*name, options).unwrap();
                zip.write_all(content).unwrap();
            }
        }
        zip.finish().unwrap().into_inner()
    }

    fn check(bytes: &[u8], limits: ExpandLimits) -> Result<Vec<CheckedEntry>, UnpackError> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(UnpackError::NotZip)?;
        check_zip(&mut zip, bytes.len() as u64, limits)
    }

    #[test]
    fn a_zip_bomb_is_refused_before_anything_is_expanded() {
        // 64 MiB of zeros compress to about 64 KiB: a ratio near 1000.
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let bomb = zip_of(&[("zeros.bin", &zeros, 0o644)]);
        drop(zeros);
        let err = check(&bomb, ExpandLimits::default()).unwrap_err();
        assert!(
            matches!(err, UnpackError::RatioTooHigh { limit: 200, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("(a zip bomb?)"), "{err}");
        let err = zip_to_tar_at(&bomb, "/builds/p").unwrap_err().to_string();
        assert!(err.contains("more than the 200 times glci allows"), "{err}");
    }

    #[test]
    fn expanded_size_and_entry_count_are_bounded_each_with_its_error() {
        let zip = zip_of(&[
            ("a", b"12345", 0o644),
            ("b", b"67890", 0o644),
            ("d/", b"", 0o40755),
        ]);
        let limits = ExpandLimits {
            max_bytes: 9,
            ..ExpandLimits::default()
        };
        let err = check(&zip, limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the archive expands to 10 bytes, more than the 9 glci unpacks"
        );
        let limits = ExpandLimits {
            max_entries: 2,
            ..ExpandLimits::default()
        };
        let err = check(&zip, limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the archive has 3 entries, more than the 2 glci unpacks"
        );
        assert_eq!(check(&zip, ExpandLimits::default()).unwrap().len(), 3);
    }

    #[test]
    fn absolute_paths_and_links_leading_out_are_refused_links_inside_are_kept() {
        let absolute = zip_of(&[("/etc/evil", b"x", 0o644)]);
        assert!(matches!(
            check(&absolute, ExpandLimits::default()),
            Err(UnpackError::Escapes(_))
        ));
        for target in ["../outside", "/etc/passwd", "sub/../../x", "a/../../../etc"] {
            let zip = zip_of(&[("link", target.as_bytes(), 0o120777)]);
            let err = check(&zip, ExpandLimits::default()).unwrap_err();
            assert!(
                matches!(err, UnpackError::LinkEscapes { .. }),
                "{target}: {err}"
            );
        }
        let inside = zip_of(&[
            ("dir/file", b"content", 0o644),
            ("dir/up", b"../dir/file", 0o120777),
            ("top", b"dir", 0o120777),
        ]);
        let tar = zip_to_tar_at(&inside, "/builds/p").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut links = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            if e.header().entry_type() == tar::EntryType::Symlink {
                links.push((
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                ));
            }
        }
        assert_eq!(
            links,
            [
                ("builds/p/dir/up".to_string(), "../dir/file".to_string()),
                ("builds/p/top".to_string(), "dir".to_string())
            ]
        );
    }

    /// Patches the uncompressed size of the only entry, in its local header and in the
    /// central directory, to `size`.
    fn lie_about_size(mut zip: Vec<u8>, size: u32) -> Vec<u8> {
        for (signature, offset) in [(&b"PK\x03\x04"[..], 22), (&b"PK\x01\x02"[..], 24)] {
            let at = memchr::memmem::find(&zip, signature).unwrap() + offset;
            zip[at..at + 4].copy_from_slice(&size.to_le_bytes());
        }
        zip
    }

    #[test]
    fn an_entry_holding_more_than_its_header_says_is_refused_while_streaming() {
        let honest = zip_of(&[("f", &[7u8; 4096], 0o644)]);
        let liar = lie_about_size(honest, 10);
        let err = zip_to_tar_at(&liar, "/builds/p").unwrap_err().to_string();
        assert!(
            err.contains("zip entry `f` holds more or less than the 10 bytes its header says")
                || err.contains("cannot read zip entry `f`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_streamed_tar_is_the_in_memory_one() {
        use futures_util::TryStreamExt;
        let zip = zip_of(&[
            ("out/a.txt", b"hello", 0o644),
            ("out/big", &[1u8; 300_000], 0o755),
        ]);
        let expected = zip_to_tar_at(&zip, "/builds/acme/demo").unwrap();
        let stream = zip_to_tar_stream(
            Bytes::from(zip),
            "/builds/acme/demo",
            ExpandLimits::default(),
        )
        .unwrap();
        let chunks: Vec<Bytes> = stream.0.try_collect().await.unwrap();
        assert!(chunks.len() > 1, "streamed in chunks");
        assert_eq!(chunks.concat(), expected);
    }
}
