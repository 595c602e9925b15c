//! Finding the repository and reading its facts: branch, HEAD, remote → project path,
//! default branch, tags at HEAD, remote-tracking tips. Read-only: nothing here writes to the
//! user's repository (every command runs with `GIT_OPTIONAL_LOCKS=0`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::command::git;
use super::{CommitInfo, GitError, ProjectPath};

/// The 40 zeros GitLab uses for "no previous commit" (`Gitlab::Git::SHA1_BLANK_SHA`).
pub const BLANK_SHA: &str = "0000000000000000000000000000000000000000";

/// A git work tree glci runs the pipeline of.
#[derive(Debug, Clone)]
pub struct Repo {
    top: PathBuf,
    git_dir: PathBuf,
    objects_dir: PathBuf,
    index_file: PathBuf,
}

/// The identity git would commit as (`user.name`, `user.email`), for `GITLAB_USER_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUser {
    pub name: String,
    pub email: String,
}

/// Everything about the repository that planning and predefined variables need, read once.
#[derive(Debug, Clone)]
pub struct RepoFacts {
    /// Top-level directory of the work tree.
    pub top_level: PathBuf,
    /// Checked-out branch; `None` on a detached HEAD.
    pub branch: Option<String>,
    /// The HEAD commit; `None` before the first commit.
    pub head: Option<CommitInfo>,
    /// Remote the project identity and remote-tracking tips come from (`origin`, or the only
    /// remote when there is exactly one).
    pub remote: Option<String>,
    /// That remote's URL (after `insteadOf` rewriting).
    pub remote_url: Option<String>,
    /// Project identity from the remote URL, or `local/<directory>` without one.
    pub project: ProjectPath,
    /// Default branch: `<remote>/HEAD`, else `main` or `master` when they exist, else the
    /// current branch, else `main`.
    pub default_branch: String,
    /// Tags pointing at HEAD, sorted.
    pub tags_at_head: Vec<String>,
    /// Messages of the annotated tags among `tags_at_head` (signature removed).
    pub tag_messages: BTreeMap<String, String>,
    /// Remote-tracking branch name → SHA (`refs/remotes/<remote>/*`): what GitLab has.
    pub remote_tips: BTreeMap<String, String>,
    /// `user.name` / `user.email`, or `glci` / `glci@localhost` when unset.
    pub user: GitUser,
}

impl RepoFacts {
    pub fn head_sha(&self) -> Option<&str> {
        self.head.as_ref().map(|h| h.sha.as_str())
    }

    /// `CI_COMMIT_BEFORE_SHA` of a push of `pipeline_sha` to `branch`: the branch's tip on
    /// the remote (what GitLab had before the push). `None` (GitLab's 40 zeros) when the
    /// remote does not have the branch: a new branch. When the remote already has exactly
    /// this commit there is nothing to push; the last push is then taken to be HEAD's own
    /// commit, so the before-SHA is HEAD's first parent.
    pub fn before_sha(&self, branch: &str, pipeline_sha: &str) -> Option<String> {
        let tip = self.remote_tips.get(branch)?;
        if tip != pipeline_sha {
            return Some(tip.clone());
        }
        self.head
            .as_ref()
            .filter(|h| h.sha == pipeline_sha)
            .and_then(|h| h.parents.first().cloned())
    }
}

impl Repo {
    /// The repository whose work tree contains `path`. A bare repository, or a path outside
    /// any repository, is [`GitError::NotARepo`].
    pub fn discover(path: &Path) -> Result<Repo, GitError> {
        let not_a_repo = || GitError::NotARepo {
            path: path.to_path_buf(),
        };
        // Absolute, so that the paths derived below stay valid whatever directory later
        // commands run in.
        let path = &path.canonicalize().map_err(|_| not_a_repo())?;
        let out = git(path)
            .args([
                "rev-parse",
                "--show-toplevel",
                "--absolute-git-dir",
                "--git-path",
                "objects",
                "--git-path",
                "index",
            ])
            .run()
            .map_err(|e| match e {
                GitError::Command { .. } => not_a_repo(),
                other => other,
            })?;
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text.lines().collect();
        let [top, git_dir, objects, index] = lines[..] else {
            return Err(git(path).arg("rev-parse").parse_error(format!(
                "expected 4 lines (top-level, git dir, objects, index), got {:?}",
                lines
            )));
        };
        if top.is_empty() {
            return Err(not_a_repo());
        }
        let top = PathBuf::from(top);
        // `--git-path` answers relative to the directory git ran in (`path`).
        let absolute = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                path.join(p)
            }
        };
        Ok(Repo {
            objects_dir: absolute(objects),
            index_file: absolute(index),
            git_dir: PathBuf::from(git_dir),
            top,
        })
    }

    /// Top-level directory of the work tree.
    pub fn top_level(&self) -> &Path {
        &self.top
    }

    /// The git directory (`.git`, or `.git/worktrees/<name>` for a linked work tree).
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// The object store (shared by all work trees of the repository).
    pub fn objects_dir(&self) -> &Path {
        &self.objects_dir
    }

    /// The index file of this work tree.
    pub fn index_file(&self) -> &Path {
        &self.index_file
    }

    /// SHA of the commit `rev` names, `None` when it names none.
    pub fn resolve_commit(&self, rev: &str) -> Result<Option<String>, GitError> {
        git(&self.top)
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{rev}^{{commit}}"))
            .text_opt()
    }

    /// HEAD's SHA; `None` before the first commit.
    pub fn head_sha(&self) -> Result<Option<String>, GitError> {
        self.resolve_commit("HEAD")
    }

    /// The checked-out branch; `None` on a detached HEAD.
    pub fn current_branch(&self) -> Result<Option<String>, GitError> {
        let full = git(&self.top)
            .args(["symbolic-ref", "--quiet", "HEAD"])
            .text_opt()?;
        Ok(full.and_then(|r| r.strip_prefix("refs/heads/").map(str::to_string)))
    }

    /// Reads one commit.
    pub fn commit(&self, rev: &str) -> Result<CommitInfo, GitError> {
        let sha = self
            .resolve_commit(rev)?
            .ok_or_else(|| GitError::UnknownRef {
                name: rev.to_string(),
                repo: self.top.clone(),
            })?;
        self.commit_at(&sha)
    }

    /// Reads the commit whose full SHA is `sha` (already resolved: one git process less).
    fn commit_at(&self, sha: &str) -> Result<CommitInfo, GitError> {
        let cmd = git(&self.top).args(["cat-file", "commit", sha]);
        let raw = cmd.run()?;
        CommitInfo::parse(sha, &raw).ok_or_else(|| cmd.parse_error("not a commit object"))
    }

    /// `origin`, or the only remote when there is exactly one, or `None`.
    pub fn remote_name(&self) -> Result<Option<String>, GitError> {
        let out = git(&self.top).arg("remote").text()?;
        let remotes: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        Ok(if remotes.contains(&"origin") {
            Some("origin".to_string())
        } else if let [only] = remotes[..] {
            Some(only.to_string())
        } else {
            None
        })
    }

    /// URL of `remote` after `url.*.insteadOf` rewriting.
    pub fn remote_url(&self, remote: &str) -> Result<Option<String>, GitError> {
        git(&self.top)
            .args(["remote", "get-url", "--"])
            .arg(remote)
            .run_opt()
            .map(|o| o.map(|o| String::from_utf8_lossy(&o).trim().to_string()))
            // `get-url` exits 2 for an unknown remote: treat like "no URL".
            .or_else(|e| match e {
                GitError::Command { .. } => Ok(None),
                other => Err(other),
            })
    }

    /// Default branch as seen from this clone (see [`RepoFacts::default_branch`]).
    pub fn default_branch(&self, remote: Option<&str>) -> Result<String, GitError> {
        if let Some(remote) = remote {
            let head = git(&self.top)
                .args(["symbolic-ref", "--quiet"])
                .arg(format!("refs/remotes/{remote}/HEAD"))
                .text_opt()?;
            let prefix = format!("refs/remotes/{remote}/");
            if let Some(branch) = head.as_deref().and_then(|h| h.strip_prefix(&prefix)) {
                return Ok(branch.to_string());
            }
        }
        for candidate in ["main", "master"] {
            let mut refs = vec![format!("refs/heads/{candidate}")];
            if let Some(remote) = remote {
                refs.push(format!("refs/remotes/{remote}/{candidate}"));
            }
            for r in refs {
                if self.resolve_commit(&r)?.is_some() {
                    return Ok(candidate.to_string());
                }
            }
        }
        Ok(self.current_branch()?.unwrap_or_else(|| "main".to_string()))
    }

    /// Tags pointing at HEAD, sorted by name.
    pub fn tags_at_head(&self) -> Result<Vec<String>, GitError> {
        if self.head_sha()?.is_none() {
            return Ok(Vec::new());
        }
        self.tags_at_existing_head()
    }

    /// [`Repo::tags_at_head`] once HEAD is known to exist.
    fn tags_at_existing_head(&self) -> Result<Vec<String>, GitError> {
        let out = git(&self.top).args(["tag", "--points-at", "HEAD"]).text()?;
        let mut tags: Vec<String> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        tags.sort();
        Ok(tags)
    }

    /// The message of annotated tag `tag` with any signature removed; `None` for a
    /// lightweight or missing tag (`CI_COMMIT_TAG_MESSAGE` is then empty).
    pub fn tag_message(&self, tag: &str) -> Result<Option<String>, GitError> {
        let r = format!("refs/tags/{tag}");
        let kind = git(&self.top)
            .args(["cat-file", "-t", "--end-of-options", &r])
            .run_opt()
            .or_else(|e| match e {
                GitError::Command { .. } => Ok(None),
                other => Err(other),
            })?;
        if kind
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).trim().to_string())
            != Some("tag".to_string())
        {
            return Ok(None);
        }
        let raw = git(&self.top).args(["cat-file", "tag", &r]).run()?;
        let text = String::from_utf8_lossy(&raw);
        let body = text.split_once("\n\n").map(|(_, b)| b).unwrap_or("");
        Ok(Some(strip_signature(body).to_string()))
    }

    /// Remote-tracking branches of `remote`: branch name → SHA.
    pub fn remote_tips(&self, remote: &str) -> Result<BTreeMap<String, String>, GitError> {
        let prefix = format!("refs/remotes/{remote}/");
        let out = git(&self.top)
            .args(["for-each-ref", "--format=%(objectname) %(refname)"])
            .arg(&prefix)
            .text()?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(sha, name)| {
                let branch = name.strip_prefix(&prefix)?;
                (branch != "HEAD").then(|| (branch.to_string(), sha.to_string()))
            })
            .collect())
    }

    /// `user.name` / `user.email`.
    pub fn user(&self) -> Result<GitUser, GitError> {
        // Both keys in one git process (planning time is mostly process start-up). Like
        // `config --get`, the last value of a key wins.
        let out = git(&self.top)
            .args(["config", "-z", "--get-regexp", r"^user\.(name|email)$"])
            .run_opt()?
            .unwrap_or_default();
        let (mut name, mut email) = (None, None);
        for entry in out.split(|&b| b == 0) {
            let entry = String::from_utf8_lossy(entry);
            // `-z`: the key, a newline, then the value.
            match entry.split_once('\n') {
                Some(("user.name", v)) => name = Some(v.trim().to_string()),
                Some(("user.email", v)) => email = Some(v.trim().to_string()),
                _ => {}
            }
        }
        Ok(GitUser {
            // An empty value counts as unset, as with `config --get` before.
            name: name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "glci".to_string()),
            email: email
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "glci@localhost".to_string()),
        })
    }

    /// Reads all [`RepoFacts`].
    pub fn facts(&self) -> Result<RepoFacts, GitError> {
        // Each question below is a git process; facts resolve HEAD once and reuse it.
        let head = match self.head_sha()? {
            Some(sha) => Some(self.commit_at(&sha)?),
            None => None,
        };
        let remote = self.remote_name()?;
        let remote_url = match &remote {
            Some(r) => self.remote_url(r)?,
            None => None,
        };
        let project = remote_url
            .as_deref()
            .and_then(ProjectPath::from_remote_url)
            .unwrap_or_else(|| ProjectPath::from_dir_name(&self.top));
        let tags_at_head = match head {
            Some(_) => self.tags_at_existing_head()?,
            None => Vec::new(),
        };
        let mut tag_messages = BTreeMap::new();
        for tag in &tags_at_head {
            if let Some(message) = self.tag_message(tag)? {
                tag_messages.insert(tag.clone(), message);
            }
        }
        Ok(RepoFacts {
            top_level: self.top.clone(),
            branch: self.current_branch()?,
            head,
            default_branch: self.default_branch(remote.as_deref())?,
            remote_tips: match &remote {
                Some(r) => self.remote_tips(r)?,
                None => BTreeMap::new(),
            },
            remote,
            remote_url,
            project,
            tags_at_head,
            tag_messages,
            user: self.user()?,
        })
    }
}

/// Removes a trailing PGP/SSH/X.509 signature block from a tag message, as GitLab does
/// (`strip_signature`) before exposing `CI_COMMIT_TAG_MESSAGE`.
fn strip_signature(body: &str) -> &str {
    const MARKERS: [&str; 3] = [
        "-----BEGIN PGP SIGNATURE-----",
        "-----BEGIN SSH SIGNATURE-----",
        "-----BEGIN SIGNED MESSAGE-----",
    ];
    MARKERS
        .iter()
        .filter_map(|m| body.find(m))
        .min()
        .map_or(body, |i| &body[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_reads_both_keys_in_one_process_last_value_wins() {
        let Ok(tmp) = tempfile::tempdir() else {
            return;
        };
        let dir = tmp.path();
        let run = |args: &[&str]| {
            git(dir)
                .args(args)
                .run()
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(run(&["init", "-q"]), Ok(()));
        let repo = Repo::discover(dir).map_err(|e| e.to_string());
        let Ok(repo) = repo else {
            panic!("discover: {repo:?}");
        };
        assert_eq!(run(&["config", "user.name", "First"]), Ok(()));
        assert_eq!(
            run(&["config", "--add", "user.name", "Ada Lovelace"]),
            Ok(())
        );
        assert_eq!(run(&["config", "user.email", ""]), Ok(()));
        assert_eq!(run(&["config", "user.emailx", "not@this"]), Ok(()));
        let user = repo.user().map_err(|e| e.to_string());
        assert_eq!(
            user.map(|u| (u.name, u.email)),
            Ok(("Ada Lovelace".to_string(), "glci@localhost".to_string()))
        );
    }

    #[test]
    fn strips_tag_signatures() {
        assert_eq!(
            strip_signature("Release 1\n-----BEGIN PGP SIGNATURE-----\nabc\n"),
            "Release 1\n"
        );
        assert_eq!(strip_signature("Plain\n"), "Plain\n");
    }
}
