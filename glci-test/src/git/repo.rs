//! Finding the repository and reading its facts: branch, HEAD, remote → project path,
//! default branch, tags at HEAD, remote-tracking tips. Read-only: nothing here writes to the
//! user's repository (every command runs with `GIT_OPTIONAL_LOCKS=0`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::command::git;
use super::{CommitInfo, GitError, ProjectPath};
use crate::threads::join;

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

    /// Reads all [`RepoFacts`].
    ///
    /// Planning time is mostly git start-up (about 1.5 ms a process), so the facts come from
    /// four git processes run side by side, each answering several questions at once:
    /// `cat-file --batch` (HEAD's SHA and commit), `symbolic-ref HEAD` (the branch),
    /// `for-each-ref` (tags, remote-tracking branches, `main`/`master`) and `config`
    /// (remotes, `insteadOf` rewrites, user). A fifth only when HEAD has annotated tags.
    pub fn facts(&self) -> Result<RepoFacts, GitError> {
        let (head, branch, refs, config) = std::thread::scope(|s| {
            let head = s.spawn(|| self.head_commit());
            let branch = s.spawn(|| self.current_branch());
            let refs = s.spawn(|| self.refs());
            let config = self.config_facts();
            (join(head), join(branch), join(refs), config)
        });
        let (head, branch, refs, config) = (head?, branch?, refs?, config?);

        let remote = config.remote_name();
        let remote_url = remote.as_deref().and_then(|r| config.remote_url(r));
        let project = remote_url
            .as_deref()
            .and_then(ProjectPath::from_remote_url)
            .unwrap_or_else(|| ProjectPath::from_dir_name(&self.top));
        let tags_at_head = match &head {
            Some(head) => refs.tags_at(&head.sha),
            None => Vec::new(),
        };
        let tag_messages = self.tag_messages(&tags_at_head)?;
        Ok(RepoFacts {
            top_level: self.top.clone(),
            default_branch: refs.default_branch(remote.as_deref(), branch.as_deref()),
            remote_tips: remote
                .as_deref()
                .map(|r| refs.remote_tips(r))
                .unwrap_or_default(),
            branch,
            head,
            remote,
            remote_url,
            project,
            tags_at_head: tags_at_head.into_iter().map(|t| t.name).collect(),
            tag_messages,
            user: config.user(),
        })
    }

    /// HEAD's commit, `None` before the first commit: SHA and content from one
    /// `cat-file --batch` process.
    pub(crate) fn head_commit(&self) -> Result<Option<CommitInfo>, GitError> {
        let cmd = git(&self.top).args(["cat-file", "--batch"]).input("HEAD\n");
        let out = cmd.run()?;
        match parse_batch(&out).as_slice() {
            [None] => Ok(None),
            [Some(object)] if object.kind == "commit" => {
                CommitInfo::parse(&object.sha, object.content)
                    .map(Some)
                    .ok_or_else(|| cmd.parse_error("HEAD is not a readable commit"))
            }
            _ => Err(cmd.parse_error("expected one commit object for HEAD")),
        }
    }

    /// Every ref the facts look at, in one `for-each-ref`.
    fn refs(&self) -> Result<RefList, GitError> {
        let out = git(&self.top)
            .args([
                "for-each-ref",
                "--format=%(refname)%00%(objectname)%00%(objecttype)%00%(*objectname)%00%(symref)",
                "refs/tags/",
                "refs/remotes/",
                "refs/heads/main",
                "refs/heads/master",
            ])
            .run()?;
        Ok(RefList::parse(&String::from_utf8_lossy(&out)))
    }

    /// Remotes, `url.*.insteadOf` rewrites and the user, in one `config` process.
    fn config_facts(&self) -> Result<ConfigFacts, GitError> {
        let out = git(&self.top)
            .args([
                "config",
                "-z",
                "--get-regexp",
                r"^(user\.(name|email)|remote\..+\.(url|fetch)|url\..+\.insteadof)$",
            ])
            // Exit 1: none of these keys is set.
            .run_opt()?
            .unwrap_or_default();
        Ok(ConfigFacts::parse(&out))
    }

    /// `user.name` / `user.email` (`glci` / `glci@localhost` when unset or empty).
    pub fn user(&self) -> Result<GitUser, GitError> {
        Ok(self.config_facts()?.user())
    }

    /// Messages of the annotated tags among `tags` (signature removed), from one
    /// `cat-file --batch` process, or none when all are lightweight.
    fn tag_messages(&self, tags: &[TagRef]) -> Result<BTreeMap<String, String>, GitError> {
        let annotated: Vec<&TagRef> = tags.iter().filter(|t| t.annotated).collect();
        if annotated.is_empty() {
            return Ok(BTreeMap::new());
        }
        let input: String = annotated.iter().map(|t| format!("{}\n", t.sha)).collect();
        let cmd = git(&self.top).args(["cat-file", "--batch"]).input(input);
        let out = cmd.run()?;
        let objects = parse_batch(&out);
        if objects.len() != annotated.len() {
            return Err(cmd.parse_error("one object per annotated tag expected"));
        }
        Ok(annotated
            .iter()
            .zip(objects)
            .filter_map(|(tag, object)| {
                let object = object.filter(|o| o.kind == "tag")?;
                let text = String::from_utf8_lossy(object.content);
                let body = text.split_once("\n\n").map(|(_, b)| b).unwrap_or("");
                Some((tag.name.clone(), strip_signature(body).to_string()))
            })
            .collect())
    }
}

/// One object of `cat-file --batch` output.
struct BatchObject<'a> {
    sha: String,
    kind: String,
    content: &'a [u8],
}

/// Splits `cat-file --batch` output into its objects, in input order: `None` for a name
/// that is `missing` (or `ambiguous`). Stops at the first malformed header.
fn parse_batch(mut out: &[u8]) -> Vec<Option<BatchObject<'_>>> {
    let mut objects = Vec::new();
    while let Some(eol) = out.iter().position(|&b| b == b'\n') {
        let header = String::from_utf8_lossy(&out[..eol]).into_owned();
        out = &out[eol + 1..];
        let fields: Vec<&str> = header.split(' ').collect();
        match fields[..] {
            [sha, kind, size] => {
                let Ok(size) = size.parse::<usize>() else {
                    break;
                };
                // The content, then one newline.
                let Some(content) = out.get(..size) else {
                    break;
                };
                objects.push(Some(BatchObject {
                    sha: sha.to_string(),
                    kind: kind.to_string(),
                    content,
                }));
                out = out.get(size + 1..).unwrap_or_default();
            }
            [_, "missing" | "ambiguous"] => objects.push(None),
            _ => break,
        }
    }
    objects
}

/// A tag pointing at HEAD.
struct TagRef {
    name: String,
    /// SHA of the tag object (annotated) or of the commit (lightweight).
    sha: String,
    annotated: bool,
}

/// One line of [`Repo::refs`].
struct RefEntry {
    name: String,
    sha: String,
    kind: String,
    /// What an annotated tag points at.
    peeled: String,
    /// The target of a symbolic ref (`refs/remotes/origin/HEAD`).
    symref: String,
}

/// Tags, remote-tracking branches and local `main`/`master`, as `for-each-ref` listed them
/// (sorted by name).
struct RefList(Vec<RefEntry>);

impl RefList {
    fn parse(out: &str) -> RefList {
        RefList(
            out.lines()
                .filter_map(|line| {
                    let mut f = line.split('\0');
                    Some(RefEntry {
                        name: f.next()?.to_string(),
                        sha: f.next()?.to_string(),
                        kind: f.next()?.to_string(),
                        peeled: f.next()?.to_string(),
                        symref: f.next()?.to_string(),
                    })
                })
                .collect(),
        )
    }

    /// Tags whose commit is `head` (as `git tag --points-at`), sorted by name.
    fn tags_at(&self, head: &str) -> Vec<TagRef> {
        self.0
            .iter()
            .filter_map(|r| {
                let name = r.name.strip_prefix("refs/tags/")?;
                let annotated = r.kind == "tag";
                let target = if annotated { &r.peeled } else { &r.sha };
                (target == head).then(|| TagRef {
                    name: name.to_string(),
                    sha: r.sha.clone(),
                    annotated,
                })
            })
            .collect()
    }

    /// Remote-tracking branches of `remote`: branch name → SHA.
    fn remote_tips(&self, remote: &str) -> BTreeMap<String, String> {
        let prefix = format!("refs/remotes/{remote}/");
        self.0
            .iter()
            .filter_map(|r| {
                let branch = r.name.strip_prefix(&prefix)?;
                (branch != "HEAD").then(|| (branch.to_string(), r.sha.clone()))
            })
            .collect()
    }

    /// See [`RepoFacts::default_branch`].
    fn default_branch(&self, remote: Option<&str>, current: Option<&str>) -> String {
        let commit = |name: &str| self.0.iter().any(|r| r.name == name && r.kind == "commit");
        if let Some(remote) = remote {
            let prefix = format!("refs/remotes/{remote}/");
            let head = self
                .0
                .iter()
                .find(|r| r.name == format!("{prefix}HEAD"))
                .and_then(|r| r.symref.strip_prefix(&prefix));
            if let Some(branch) = head {
                return branch.to_string();
            }
        }
        for candidate in ["main", "master"] {
            if commit(&format!("refs/heads/{candidate}"))
                || remote.is_some_and(|r| commit(&format!("refs/remotes/{r}/{candidate}")))
            {
                return candidate.to_string();
            }
        }
        current.unwrap_or("main").to_string()
    }
}

/// The configuration keys the facts need (see [`Repo::config_facts`]).
#[derive(Debug, Default)]
struct ConfigFacts {
    /// Remote names in configuration order, each with its first URL.
    remotes: Vec<(String, Option<String>)>,
    /// `url.<base>.insteadOf = <prefix>`: (prefix, base).
    instead_of: Vec<(String, String)>,
    user_name: Option<String>,
    user_email: Option<String>,
}

impl ConfigFacts {
    /// Parses `config -z --get-regexp` output: entries are `key\nvalue\0`, section and
    /// variable names lower-cased, subsections as written.
    fn parse(out: &[u8]) -> ConfigFacts {
        let mut facts = ConfigFacts::default();
        for entry in out.split(|&b| b == 0) {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('\n').unwrap_or((&entry, ""));
            match key {
                // Like `config --get`, the last value wins.
                "user.name" => facts.user_name = Some(value.trim().to_string()),
                "user.email" => facts.user_email = Some(value.trim().to_string()),
                _ => {}
            }
            if let Some(rest) = key.strip_prefix("remote.") {
                // A remote's name may contain dots: it is everything up to the last one.
                if let Some((name, var)) = rest.rsplit_once('.') {
                    let i = match facts.remotes.iter().position(|(n, _)| n == name) {
                        Some(i) => i,
                        None => {
                            facts.remotes.push((name.to_string(), None));
                            facts.remotes.len() - 1
                        }
                    };
                    // Like `remote get-url`, the first URL is the remote's URL.
                    if var == "url" && facts.remotes[i].1.is_none() {
                        facts.remotes[i].1 = Some(value.to_string());
                    }
                }
            } else if let Some(base) = key
                .strip_prefix("url.")
                .and_then(|k| k.strip_suffix(".insteadof"))
            {
                facts.instead_of.push((value.to_string(), base.to_string()));
            }
        }
        facts
    }

    /// `origin`, or the only remote when there is exactly one, or `None`.
    fn remote_name(&self) -> Option<String> {
        if self.remotes.iter().any(|(n, _)| n == "origin") {
            Some("origin".to_string())
        } else if let [(only, _)] = &self.remotes[..] {
            Some(only.clone())
        } else {
            None
        }
    }

    /// The URL of `remote` after `url.<base>.insteadOf` rewriting, as `git remote get-url`
    /// gives it: the longest matching prefix is replaced by its base.
    fn remote_url(&self, remote: &str) -> Option<String> {
        let url = self.remotes.iter().find(|(n, _)| n == remote)?.1.clone()?;
        let rewrite = self
            .instead_of
            .iter()
            .filter(|(prefix, _)| url.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len());
        Some(match rewrite {
            Some((prefix, base)) => format!("{base}{}", &url[prefix.len()..]),
            None => url,
        })
    }

    fn user(&self) -> GitUser {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        GitUser {
            name: set(&self.user_name).unwrap_or_else(|| "glci".to_string()),
            email: set(&self.user_email).unwrap_or_else(|| "glci@localhost".to_string()),
        }
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
    fn remote_urls_are_rewritten_by_the_longest_instead_of_prefix() {
        let out = b"remote.origin.url\ngh:acme/app.git\0remote.origin.fetch\n+refs/heads/*:refs/remotes/origin/*\0\
remote.my.fork.url\nfirst\0remote.my.fork.url\nsecond\0\
url.https://github.com/.insteadof\ngh:\0url.git@gitlab.com:group/.insteadof\ngh:acme/\0\
user.name\nAda\0";
        let facts = ConfigFacts::parse(out);
        assert_eq!(facts.remote_name().as_deref(), Some("origin"));
        assert_eq!(
            facts.remote_url("origin").as_deref(),
            Some("git@gitlab.com:group/app.git")
        );
        // Names may contain dots; the first URL counts.
        assert_eq!(facts.remote_url("my.fork").as_deref(), Some("first"));
        assert_eq!(facts.user().name, "Ada");
        assert_eq!(facts.user().email, "glci@localhost");
        let single = ConfigFacts::parse(b"remote.upstream.fetch\nx\0");
        assert_eq!(single.remote_name().as_deref(), Some("upstream"));
        assert_eq!(single.remote_url("upstream"), None);
        assert_eq!(ConfigFacts::parse(b"").remote_name(), None);
    }

    #[test]
    fn batch_output_is_split_into_objects_in_input_order() {
        let out = b"aaaa commit 5\nx\ny\nz\nHEAD missing\nbbbb tag 0\n\n";
        let objects = parse_batch(out);
        assert_eq!(objects.len(), 3);
        assert!(matches!(&objects[0], Some(o) if o.sha == "aaaa" && o.content == b"x\ny\nz"));
        assert!(objects[1].is_none());
        assert!(matches!(&objects[2], Some(o) if o.kind == "tag" && o.content.is_empty()));
        // A truncated object ends the list instead of reading past the output.
        assert_eq!(parse_batch(b"aaaa commit 99\nshort").len(), 0);
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
