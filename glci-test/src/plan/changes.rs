//! `rules:changes`, `rules:exists`, `only:changes`: which diff an event means to GitLab
//! ([`changed_files`], asking `git` for the diff), and Ruby's
//! `File.fnmatch?(glob, path, FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB)` over path lists,
//! with each glob compiled once per planning run.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use globset::{GlobBuilder, GlobMatcher};

use super::predefined::{merge_request_target, pipeline_ref, PipelineRef};
use super::{Event, PipelineSource};
use crate::git::{GitError, Repo, RepoFacts};

/// Above this many path × glob comparisons GitLab gives up and answers true.
const MAX_COMPARISONS: usize = 50_000;

/// The changed-file set of `rules:changes` for `event`, as GitLab computes it for the
/// pipeline of the working tree. `Some(paths)`:
/// - merge request: the diff between the merge base of the target branch and the source;
/// - push to a branch the remote already has: the diff against the before-SHA
///   ([`RepoFacts::before_sha`]).
///
/// `None` means GitLab has no changed-file set, and every `changes:` clause is true: a new
/// branch, a tag, and every non-push source (web, schedule, API, trigger, ...).
/// `event.changed_files` (given by the user) is returned as is.
pub fn changed_files(
    repo: &Repo,
    facts: &RepoFacts,
    event: &Event,
) -> Result<Option<Vec<String>>, GitError> {
    if let Some(given) = &event.changed_files {
        return Ok(Some(given.clone()));
    }
    let remote = facts.remote.as_deref();
    match (event.source, pipeline_ref(facts, event)) {
        (PipelineSource::MergeRequestEvent, _) => {
            let target = merge_request_target(facts, event);
            repo.changed_since_merge_base(&target, remote).map(Some)
        }
        (PipelineSource::Push, PipelineRef::Branch(branch)) => {
            let Some(head) = facts.head.as_ref() else {
                return Ok(None);
            };
            // Without a remote-tracking tip the branch is new to the remote: no before-SHA,
            // whatever the tree holds, so skip capturing it (two git processes, one of
            // which hashes the whole working tree).
            if !facts.remote_tips.contains_key(&branch) {
                return Ok(None);
            }
            // The pipeline commit is HEAD when the tree is clean, else a new snapshot commit
            // (which no remote tip can equal).
            let clean = repo.working_tree_is(&head.tree)?;
            let pipeline_sha = if clean { head.sha.as_str() } else { "" };
            match facts.before_sha(&branch, pipeline_sha) {
                Some(before) => repo.changed_since(&before).map(Some),
                None => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

type Globs = HashMap<String, Option<GlobMatcher>>;

/// Compiled globs by pattern text (`None`: the pattern does not compile and matches
/// nothing). Kept with the configuration, so planning the same pipeline for many events
/// compiles each glob once.
#[derive(Default)]
pub struct GlobCache {
    globs: Mutex<Globs>,
}

impl fmt::Debug for GlobCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GlobCache")
    }
}

impl GlobCache {
    fn lock(&self) -> MutexGuard<'_, Globs> {
        // A poisoned cache only means another thread panicked mid-insert; the map is fine.
        self.globs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_matcher<R>(&self, pattern: &str, f: impl FnOnce(Option<&GlobMatcher>) -> R) -> R {
        let mut globs = self.lock();
        if !globs.contains_key(pattern) {
            globs.insert(pattern.to_string(), compile(pattern));
        }
        f(globs.get(pattern).and_then(Option::as_ref))
    }

    /// Whether `pattern` matches `path` as Ruby's fnmatch with the flags above would.
    #[cfg(test)]
    pub fn matches(&self, pattern: &str, path: &str) -> bool {
        self.with_matcher(pattern, |m| m.is_some_and(|m| m.is_match(path)))
    }

    /// Any pattern matches any path. `None` (no changed-file set known) is true, as GitLab
    /// treats pipelines without a diff; too many comparisons is true as well.
    pub fn any_changed(&self, patterns: &[String], paths: Option<&[String]>) -> bool {
        let Some(paths) = paths else {
            return true;
        };
        if patterns.len().saturating_mul(paths.len()) > MAX_COMPARISONS {
            return true;
        }
        patterns.iter().any(|p| {
            self.with_matcher(p, |m| {
                m.is_some_and(|m| paths.iter().any(|x| m.is_match(x)))
            })
        })
    }

    /// `rules:exists`: any pattern matches a file of the tree; a pattern ending in `/`
    /// names a directory, which exists when some file lies beneath a matching directory.
    pub fn any_exists(&self, patterns: &[String], files: &[String]) -> bool {
        if patterns.len().saturating_mul(files.len()) > MAX_COMPARISONS {
            return true;
        }
        patterns.iter().any(|p| {
            let p = p.strip_prefix("./").unwrap_or(p);
            match p.strip_suffix('/') {
                Some(dir) => self.with_matcher(dir, |m| {
                    m.is_some_and(|m| {
                        files
                            .iter()
                            .any(|f| f.match_indices('/').any(|(i, _)| m.is_match(&f[..i])))
                    })
                }),
                None => self.with_matcher(p, |m| {
                    m.is_some_and(|m| files.iter().any(|f| m.is_match(f)))
                }),
            }
        })
    }
}

/// Ruby's `**` is recursive only as a whole path component followed by `/` (`**/`);
/// elsewhere it is a plain `*`. globset treats a trailing `/**` as recursive, so rewrite.
fn to_globset(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            out.push_str(&pattern[i..i + 2]);
            i += 2;
            continue;
        }
        if pattern[i..].starts_with("**") {
            let mut end = i;
            while end < bytes.len() && bytes[end] == b'*' {
                end += 1;
            }
            let at_start = i == 0 || bytes[i - 1] == b'/';
            let then_slash = bytes.get(end) == Some(&b'/');
            if at_start && then_slash {
                out.push_str("**");
            } else {
                out.push('*');
            }
            i = end;
            continue;
        }
        let ch_len = pattern[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&pattern[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn compile(pattern: &str) -> Option<GlobMatcher> {
    GlobBuilder::new(&to_globset(pattern))
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        GlobCache::default().matches(p, path)
    }

    #[test]
    fn double_star_without_slash_is_single_star() {
        assert!(!m("docs/**", "docs/a/b.md"));
        assert!(m("docs/**", "docs/a.md"));
        assert!(m("docs/**/*", "docs/a/b.md"));
        assert!(m("docs/**/*", "docs/b.md"));
    }

    #[test]
    fn star_does_not_cross_slash_but_matches_dotfiles() {
        assert!(!m("*.md", "docs/a.md"));
        assert!(m("*.md", "README.md"));
        assert!(m("*", ".gitignore"));
        assert!(m("**/*.rb", "a/.hidden/x.rb"));
    }

    #[test]
    fn braces_expand() {
        assert!(m("src/*.{rs,toml}", "src/a.toml"));
        assert!(!m("src/*.{rs,toml}", "src/a.md"));
    }

    #[test]
    fn no_diff_is_true_empty_diff_is_false() {
        let c = GlobCache::default();
        let pats = vec!["src/**/*".to_string()];
        assert!(c.any_changed(&pats, None));
        assert!(!c.any_changed(&pats, Some(&[])));
        assert!(c.any_changed(&pats, Some(&["src/x/y.rs".to_string()])));
    }

    #[test]
    fn exists_files_and_directories() {
        let c = GlobCache::default();
        let files = vec!["Dockerfile".to_string(), "docs/guide/a.md".to_string()];
        assert!(c.any_exists(&["Dockerfile".into()], &files));
        assert!(c.any_exists(&["docs/guide/".into()], &files));
        assert!(!c.any_exists(&["src/".into()], &files));
        assert!(c.any_exists(&["**/*.md".into()], &files));
    }
}
