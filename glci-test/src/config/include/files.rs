//! Finding files in a project directory the way GitLab finds them in a repository: plain
//! paths must stay inside the project; wildcards (`*`, `**`) are matched, with GitLab's own
//! regex translation, against the project's file list (`git ls-files` when it is a git
//! checkout, so ignored build output is not searched; a directory walk otherwise).

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;

/// Resolves a repository-relative path inside `root`, or `None` when it would leave it.
pub fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    let mut depth = 0usize;
    for comp in Path::new(rel.trim_start_matches('/')).components() {
        match comp {
            Component::Normal(c) => {
                out.push(c);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth.checked_sub(1)?;
                out.pop();
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Why a configuration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// GitLab reads configuration from the repository's own content: a link leading out of
    /// it (to a host file, or to a device such as `/dev/zero`) is never followed.
    #[error("`{}` is a symbolic link to `{}`, outside the repository `{}`", path.display(), target.display(), root.display())]
    OutsideRepository {
        path: PathBuf,
        target: PathBuf,
        root: PathBuf,
    },
    #[error("`{}` is not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// Larger than the limit: only the limit and one byte more were read.
    #[error("`{}` is larger than {limit} bytes", path.display())]
    TooBig { path: PathBuf, limit: usize },
    #[error("could not read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads the configuration file `path` of the repository (or mapped project) `root`: the
/// one way every configuration file is read. Links are resolved first and must stay inside
/// `root`; at most `limit` + 1 bytes are read, so an endless file cannot fill memory.
pub fn read_config_file(root: &Path, path: &Path, limit: usize) -> Result<String, ReadError> {
    use std::io::Read;
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let real_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let real = path.canonicalize().map_err(io)?;
    if !real.starts_with(&real_root) {
        return Err(ReadError::OutsideRepository {
            // As the configuration names it: relative to the repository.
            path: path.strip_prefix(root).unwrap_or(path).to_path_buf(),
            target: real,
            root: root.to_path_buf(),
        });
    }
    let file = std::fs::File::open(&real).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(ReadError::NotAFile(path.to_path_buf()));
    }
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > limit {
        return Err(ReadError::TooBig {
            path: path.to_path_buf(),
            limit,
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// GitLab's `search_files_by_wildcard_path` translation: `**/` → `(.*?/)?`, `**` → `.*?`,
/// `*` → `[^/]*?`, everything else literal, anchored.
pub fn wildcard_regex(pattern: &str) -> Option<Regex> {
    let escaped = regex::escape(pattern);
    let translated = escaped
        .replace(r"\*\*/", "(.*?/)?")
        .replace(r"\*\*", ".*?")
        .replace(r"\*", "[^/]*?");
    Regex::new(&format!("^{translated}$")).ok()
}

/// A glob matched as Ruby's `File.fnmatch?(p, path, FNM_PATHNAME | FNM_DOTMATCH |
/// FNM_EXTGLOB)` (`include:rules:exists`/`changes`): `**` is recursive only as a whole
/// component followed by `/`; anywhere else it is a plain `*` (globset would recurse on a
/// trailing `/**`, so the pattern is rewritten first). `None` when it does not compile.
pub fn fnmatch(pattern: &str) -> Option<GlobMatcher> {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    let mut after_slash = true;
    while let Some(c) = rest.chars().next() {
        if c == '\\' {
            let escaped: String = rest.chars().take(2).collect();
            out.push_str(&escaped);
            rest = &rest[escaped.len()..];
            after_slash = false;
            continue;
        }
        if rest.starts_with("**") {
            let stars = rest.len() - rest.trim_start_matches('*').len();
            let then_slash = rest[stars..].starts_with('/');
            out.push_str(if after_slash && then_slash { "**" } else { "*" });
            rest = &rest[stars..];
            after_slash = false;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        after_slash = c == '/';
    }
    GlobBuilder::new(&out)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// Repository-relative paths (with `/`) of the files in `root`, sorted like `git ls-files`.
pub fn list(root: &Path) -> Vec<String> {
    let mut files = git_ls_files(root).unwrap_or_else(|| {
        let mut out = Vec::new();
        walk(root, "", &mut out, 0);
        out
    });
    files.sort();
    files
}

fn git_ls_files(root: &Path) -> Option<Vec<String>> {
    // Tracked and untracked-but-not-ignored files: what a snapshot of the working tree holds
    // (`None` when `root` is not in a git work tree: the caller walks the directory).
    let files = crate::git::files_in(root).ok()?;
    Some(
        files
            .into_iter()
            .filter(|p| root.join(p).is_file())
            .collect(),
    )
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>, depth: usize) {
    // Symlink loops and absurd trees end here rather than in a stack overflow.
    if depth > 64 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".git" {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), &rel, out, depth + 1);
        } else {
            out.push(rel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_gitlab_code() {
        let m = |p: &str, f: &str| wildcard_regex(p).is_some_and(|r| r.is_match(f));
        assert!(m("configs/*.yml", "configs/a.yml"));
        assert!(!m("configs/*.yml", "configs/sub/a.yml"));
        assert!(m("configs/**.yml", "configs/sub/deep/a.yml"));
        // The code's `**/` group is optional: direct children match too (docs disagree).
        assert!(m("configs/**/*.yml", "configs/a.yml"));
        assert!(m("configs/**/*.yml", "configs/x/a.yml"));
        assert!(!m("configs/*.yml", "configsXa.yml"));
    }

    #[test]
    fn fnmatch_double_star_rules() {
        let m = |p: &str, f: &str| fnmatch(p).is_some_and(|g| g.is_match(f));
        assert!(!m("docs/**", "docs/a/b.md"));
        assert!(m("docs/**", "docs/a.md"));
        assert!(m("docs/**/*", "docs/a/b.md"));
        assert!(m("docs/**/*", "docs/b.md"));
        assert!(m("*.{yml,yaml}", "a.yaml"));
        assert!(m("src/*.rs", "src/.hidden.rs"));
        assert!(!m("src/*.rs", "src/x/y.rs"));
    }

    #[test]
    fn paths_stay_inside() {
        let root = Path::new("/p");
        assert_eq!(inside(root, "/a/b.yml"), Some(PathBuf::from("/p/a/b.yml")));
        assert_eq!(inside(root, "a/../b.yml"), Some(PathBuf::from("/p/b.yml")));
        assert_eq!(inside(root, "../x.yml"), None);
    }
}
