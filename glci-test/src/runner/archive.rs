//! Moving files between the host and a container (tar, the Docker archive API's format) and
//! between the runner and the server (zip, GitLab's artifact and cache format).

use std::collections::BTreeSet;
use std::io::{Cursor, Read, Write};
use std::path::Path;

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
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o777);
    header.set_size(0);
    header.set_mtime(0);
    builder
        .append_data(&mut header, format!("{path}/"), std::io::empty())
        .map_err(|e| ArchiveError(format!("cannot pack {path}: {e}")))
}

/// Turns a zip archive into a tar that unpacks at `dest` (for uploading artifacts or a cache
/// into a container). Entries escaping `dest` (`..`, absolute) are refused.
pub fn zip_to_tar_at(zip_bytes: &[u8], dest: &str) -> Result<Vec<u8>, ArchiveError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(zip_bytes))
        .map_err(|e| ArchiveError(format!("not a zip archive: {e}")))?;
    let dest = dest.trim_matches('/');
    let mut builder = tar::Builder::new(Vec::new());
    let mut prefix = String::new();
    for part in dest.split('/').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        append_dir_entry(&mut builder, &prefix)?;
    }
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| ArchiveError(format!("corrupt zip entry {i}: {e}")))?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(ArchiveError(format!(
                "zip entry `{}` escapes the project directory",
                entry.name().unwrap_or_default()
            )));
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        let path = format!("{dest}/{}", rel.trim_end_matches('/'));
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        let mode = entry
            .unix_mode()
            .unwrap_or(if entry.is_dir() { 0o755 } else { 0o644 });
        if entry.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(mode & 0o7777);
            header.set_size(0);
            builder
                .append_data(&mut header, format!("{path}/"), std::io::empty())
                .map_err(|e| ArchiveError(format!("cannot pack {rel}: {e}")))?;
        } else if mode & 0o170000 == 0o120000 {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|e| ArchiveError(format!("cannot read {rel}: {e}")))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, &path, target)
                .map_err(|e| ArchiveError(format!("cannot pack {rel}: {e}")))?;
        } else {
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| ArchiveError(format!("cannot read {rel}: {e}")))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode & 0o7777);
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, &path, data.as_slice())
                .map_err(|e| ArchiveError(format!("cannot pack {rel}: {e}")))?;
        }
    }
    builder
        .into_inner()
        .map_err(|e| ArchiveError(format!("cannot pack: {e}")))
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
            err.to_string().contains("escapes the project directory"),
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
}
