//! The GitLab side of cache keys: the key and fallback keys a job's `cache:` entry reaches
//! the runner with, as GitLab computes them when it creates the pipeline
//! (`Gitlab::Ci::Build::Cache`, `Gitlab::Ci::Pipeline::Seed::Build::Cache`,
//! `Ci::Build#cache`; docs/ci-yaml-semantics.md §10.1):
//!
//! - a literal key is sent as written (the runner expands variables and sanitises it);
//! - `key:files` → `<prefix>-<sha1>` where the SHA-1 is of the sorted, unique git blob ids of
//!   the files at the pipeline commit joined by `-` (wildcards expanded against the commit's
//!   files), or `<prefix>-default` when none exists; `key:files_commits` the same with each
//!   file's last commit id;
//! - without `prefix`, `<cache index>_<file names before their first dot, joined by _>` for
//!   `files`, the index alone for `files_commits`;
//! - then `-protected` on protected refs, `-non_protected` otherwise (`unprotect: true`
//!   shares the unprotected cache), on the key and on every fallback key.
//!
//! GitLab's per-project cache index (bumped by "Clear runner caches") is not modelled: it is
//! absent until a user clears the caches.

use sha1::{Digest, Sha1};

use super::model::{Cache, CacheKey};

/// Where the files behind `key:files` and `key:files_commits` come from: the repository at
/// the pipeline commit.
pub struct KeySource<'a> {
    /// A file's content at the pipeline commit; `None` when the path is not a file there
    /// (missing, or a directory).
    pub file: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    /// Every file path of the commit, to expand wildcard patterns (`*`, `**`).
    pub all_files: &'a [String],
    /// The id of the last commit (up to the pipeline commit) that touched the given path;
    /// called with one path at a time, as GitLab asks per file.
    pub last_commit: &'a dyn Fn(&[String]) -> Option<String>,
}

/// The key and fallback keys of the first (or only) `cache:` entry of a job, without
/// wildcard expansion in `key:files`. See [`cache_keys_at`].
pub fn cache_keys(
    cache: &Cache,
    files: &dyn Fn(&str) -> Option<Vec<u8>>,
    last_commit: &dyn Fn(&[String]) -> Option<String>,
    protected: bool,
) -> (String, Vec<String>) {
    let source = KeySource {
        file: files,
        all_files: &[],
        last_commit,
    };
    cache_keys_at(0, cache, &source, protected)
}

/// The key and fallback keys of the `index`-th entry of a job's `cache:` list, exactly as
/// GitLab sends them to the runner. `protected`: the pipeline's ref is protected.
pub fn cache_keys_at(
    index: usize,
    cache: &Cache,
    source: &KeySource<'_>,
    protected: bool,
) -> (String, Vec<String>) {
    let base = match &cache.key {
        CacheKey::Literal(key) => key.clone(),
        CacheKey::Files { files, prefix } => {
            let files = &strip_leading_slashes(files);
            let prefix = prefix
                .clone()
                .unwrap_or_else(|| default_files_prefix(index, files));
            let digest = files_digest(files, source);
            join_present(&prefix, digest.as_deref().unwrap_or("default"))
        }
        CacheKey::FilesCommits { files, prefix } => {
            let files = &strip_leading_slashes(files);
            let prefix = prefix.clone().unwrap_or_else(|| index.to_string());
            let digest = commits_digest(files, source);
            join_present(&prefix, digest.as_deref().unwrap_or("default"))
        }
    };
    let suffix = protection_suffix(cache, protected);
    let fallback = cache
        .fallback_keys
        .iter()
        .map(|k| format!("{k}-{suffix}"))
        .collect();
    (format!("{base}-{suffix}"), fallback)
}

/// `Entry::Files#value`: leading slashes are dropped before anything else sees the paths
/// (the default prefix too).
fn strip_leading_slashes(files: &[String]) -> Vec<String> {
    files
        .iter()
        .map(|f| f.trim_start_matches('/').to_string())
        .collect()
}

/// `protected` or `non_protected`, as `Ci::Build#cache` picks it.
fn protection_suffix(cache: &Cache, protected: bool) -> &'static str {
    if protected && !cache.unprotect {
        "protected"
    } else {
        "non_protected"
    }
}

/// Ruby's `[prefix, digest].select(&:present?).join('-')`.
fn join_present(prefix: &str, digest: &str) -> String {
    [prefix, digest]
        .iter()
        .filter(|s| !s.trim().is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("-")
}

/// `Gitlab::Ci::Build::Cache#cache_prefix`: `<index>_<names>`, each name the part of the
/// file path before its first `.` (Ruby's `split('.').first`), or the index alone.
fn default_files_prefix(index: usize, files: &[String]) -> String {
    if files.is_empty() {
        return index.to_string();
    }
    let names: Vec<&str> = files.iter().map(|f| ruby_split_first(f, '.')).collect();
    format!("{index}_{}", names.join("_"))
}

/// Ruby's `s.split(c).first` (trailing empty fields are dropped, so `"..."` → `nil` → "").
fn ruby_split_first(s: &str, c: char) -> &str {
    let fields: Vec<&str> = s.split(c).collect();
    let kept = fields
        .iter()
        .rposition(|f| !f.is_empty())
        .map_or(0, |i| i + 1);
    if kept == 0 {
        ""
    } else {
        fields[0]
    }
}

/// Non-blank entries, first occurrence kept (Ruby's `select(&:present?).uniq`).
fn present_unique(files: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for f in files {
        if !f.trim().is_empty() && !out.contains(&f.as_str()) {
            out.push(f);
        }
    }
    out
}

/// `Repository#search_files_by_wildcard_path`: the pattern anchored, `**` = any characters,
/// `*` = any characters but `/`, everything else literal.
fn wildcard_matches(pattern: &str, all_files: &[String]) -> Vec<String> {
    let escaped = regex::escape(pattern);
    let re = format!(
        "^{}$",
        escaped.replace(r"\*\*", ".*?").replace(r"\*", "([^/])*?")
    );
    match regex::Regex::new(&re) {
        Ok(re) => all_files
            .iter()
            .filter(|f| re.is_match(f))
            .cloned()
            .collect(),
        // An escaped pattern always compiles; should it not, no file matches (the key
        // falls back to `default`, as for a pattern matching nothing).
        Err(_) => Vec::new(),
    }
}

/// The git blob id of a content: SHA-1 of `blob <len>\0<content>`.
fn blob_id(content: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())
}

/// SHA-1 of the sorted, unique ids joined by `-`; `None` when there are none.
fn digest_of(mut ids: Vec<String>) -> Option<String> {
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return None;
    }
    Some(hex::encode(Sha1::digest(ids.join("-").as_bytes())))
}

/// `hash_of_file_contents`: blob ids of the files (wildcards expanded) at the commit.
fn files_digest(files: &[String], source: &KeySource<'_>) -> Option<String> {
    let mut paths: Vec<String> = Vec::new();
    for pattern in present_unique(files) {
        let expanded = if pattern.contains('*') {
            wildcard_matches(pattern, source.all_files)
        } else {
            vec![pattern.to_string()]
        };
        for p in expanded {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    let ids = paths
        .iter()
        .filter(|p| is_tree_path(p))
        .filter_map(|p| (source.file)(p))
        .map(|content| blob_id(&content))
        .collect();
    digest_of(ids)
}

/// `hash_of_the_latest_changes`: last commit ids of the files (no wildcard expansion).
fn commits_digest(files: &[String], source: &KeySource<'_>) -> Option<String> {
    let ids = present_unique(files)
        .into_iter()
        .filter_map(|p| (source.last_commit)(&[p.to_string()]))
        .collect();
    digest_of(ids)
}

/// Whether `p` can name a blob in a git tree: GitLab looks paths up verbatim, so `./x`,
/// `x/`, `a//b` or `a/../b` find nothing there even if a filesystem would resolve them.
fn is_tree_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::When;

    fn cache(key: CacheKey) -> Cache {
        Cache {
            key,
            paths: vec!["vendor/".into()],
            untracked: false,
            when: When::OnSuccess,
            policy: "pull-push".into(),
            unprotect: false,
            fallback_keys: vec![],
        }
    }

    fn repo(path: &str) -> Option<Vec<u8>> {
        match path {
            "Gemfile.lock" => Some(b"gems\n".to_vec()),
            "package.json" => Some(b"{}\n".to_vec()),
            "web/package.json" => Some(b"{\"web\":1}\n".to_vec()),
            _ => None,
        }
    }

    fn commits(paths: &[String]) -> Option<String> {
        match paths.first().map(String::as_str) {
            Some("Gemfile.lock") => Some("b".repeat(40)),
            Some("package.json") => Some("a".repeat(40)),
            _ => None,
        }
    }

    fn files(list: &[&str], prefix: Option<&str>) -> CacheKey {
        CacheKey::Files {
            files: list.iter().map(|s| s.to_string()).collect(),
            prefix: prefix.map(str::to_string),
        }
    }

    #[test]
    fn blob_ids_are_git_hash_object() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty blob.
        assert_eq!(blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn literal_keys_get_the_protection_suffix_and_so_do_fallbacks() {
        let mut c = cache(CacheKey::Literal("deps-$CI_COMMIT_REF_SLUG".into()));
        c.fallback_keys = vec!["deps-main".into()];
        assert_eq!(
            cache_keys(&c, &repo, &commits, true),
            (
                "deps-$CI_COMMIT_REF_SLUG-protected".to_string(),
                vec!["deps-main-protected".to_string()]
            )
        );
        assert_eq!(
            cache_keys(&c, &repo, &commits, false).0,
            "deps-$CI_COMMIT_REF_SLUG-non_protected"
        );
        c.unprotect = true;
        assert_eq!(
            cache_keys(&c, &repo, &commits, true),
            (
                "deps-$CI_COMMIT_REF_SLUG-non_protected".to_string(),
                vec!["deps-main-non_protected".to_string()]
            )
        );
        let default = cache(CacheKey::Literal("default".into()));
        assert_eq!(
            cache_keys(&default, &repo, &commits, false).0,
            "default-non_protected"
        );
    }

    #[test]
    fn files_keys_hash_sorted_blob_ids() {
        let gem = blob_id(b"gems\n");
        let pkg = blob_id(b"{}\n");
        let mut ids = [gem.clone(), pkg.clone()];
        ids.sort();
        let expected = hex::encode(Sha1::digest(ids.join("-").as_bytes()));
        let c = cache(files(&["package.json", "Gemfile.lock"], None));
        assert_eq!(
            cache_keys(&c, &repo, &commits, false).0,
            format!("0_package_Gemfile-{expected}-non_protected")
        );
        // Order, duplicates and a missing file do not change the digest.
        let c = cache(files(
            &["Gemfile.lock", "missing.txt", "package.json"],
            Some("deps"),
        ));
        assert_eq!(
            cache_keys(&c, &repo, &commits, true).0,
            format!("deps-{expected}-protected")
        );
        // One file: the digest of its single blob id.
        let c = cache(files(&["Gemfile.lock"], Some("gems")));
        let single = hex::encode(Sha1::digest(gem.as_bytes()));
        assert_eq!(
            cache_keys(&c, &repo, &commits, false).0,
            format!("gems-{single}-non_protected")
        );
    }

    #[test]
    fn files_keys_fall_back_to_default() {
        let c = cache(files(&["missing.lock"], Some("deps")));
        assert_eq!(
            cache_keys(&c, &repo, &commits, false).0,
            "deps-default-non_protected"
        );
        // `./x` is not a tree path: GitLab finds no blob (its own spec: `relative-default`).
        let c = cache(files(&["./Gemfile.lock"], Some("relative")));
        assert_eq!(
            cache_keys(&c, &repo, &commits, false).0,
            "relative-default-non_protected"
        );
        // The default prefix keeps what Ruby's split('.').first gives.
        let c = cache(files(&["./VERSION", "Gemfile.zip/"], None));
        assert_eq!(
            cache_keys_at(
                1,
                &c,
                &KeySource {
                    file: &repo,
                    all_files: &[],
                    last_commit: &commits
                },
                false
            )
            .0,
            "1__Gemfile-default-non_protected"
        );
        // Leading slashes are dropped (GitLab's `Entry::Files`), prefix included.
        let c = cache(files(&["/Gemfile.lock"], None));
        let gem = hex::encode(Sha1::digest(blob_id(b"gems\n").as_bytes()));
        assert_eq!(
            cache_keys(&c, &repo, &commits, false).0,
            format!("0_Gemfile-{gem}-non_protected")
        );
        // A blank prefix is dropped from the join.
        let c = cache(files(&["missing"], Some(" ")));
        assert_eq!(
            cache_keys(&c, &repo, &commits, false).0,
            "default-non_protected"
        );
    }

    #[test]
    fn wildcards_expand_against_the_commits_files() {
        let all: Vec<String> = ["package.json", "web/package.json", "README.md"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let source = KeySource {
            file: &repo,
            all_files: &all,
            last_commit: &commits,
        };
        // `**/` needs a slash: the top-level package.json is not matched (GitLab's regexp).
        let c = cache(files(&["**/package.json"], Some("web")));
        let only_web = hex::encode(Sha1::digest(blob_id(b"{\"web\":1}\n").as_bytes()));
        assert_eq!(
            cache_keys_at(0, &c, &source, false).0,
            format!("web-{only_web}-non_protected")
        );
        assert_eq!(
            wildcard_matches("*.json", &all),
            vec!["package.json".to_string()]
        );
        assert_eq!(
            wildcard_matches("**.json", &all),
            vec!["package.json".to_string(), "web/package.json".to_string()]
        );
        assert!(wildcard_matches("(*).md", &all).is_empty());
    }

    #[test]
    fn files_commits_keys_hash_last_commit_ids() {
        let mut ids = ["a".repeat(40), "b".repeat(40)];
        ids.sort();
        let expected = hex::encode(Sha1::digest(ids.join("-").as_bytes()));
        let c = cache(CacheKey::FilesCommits {
            files: vec!["Gemfile.lock".into(), "package.json".into()],
            prefix: None,
        });
        assert_eq!(
            cache_keys(&c, &repo, &commits, false).0,
            format!("0-{expected}-non_protected")
        );
        let c = cache(CacheKey::FilesCommits {
            files: vec!["nothing".into()],
            prefix: Some("p".into()),
        });
        assert_eq!(
            cache_keys(&c, &repo, &commits, true).0,
            "p-default-protected"
        );
    }
}
