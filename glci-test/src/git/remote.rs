//! From a remote URL to GitLab's project identity (`CI_PROJECT_PATH`, `CI_PROJECT_NAMESPACE`,
//! `CI_PROJECT_NAME`).

use std::path::Path;

/// Namespace used when the repository has no usable remote: GitLab has no project without
/// a namespace, and `local/<directory>` reads as what it is.
pub const FALLBACK_NAMESPACE: &str = "local";

/// A GitLab project's full path, split the way GitLab's variables split it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPath {
    /// Host of the remote (`gitlab.com`), without user or port; `None` for the fallback.
    pub host: Option<String>,
    /// `group/subgroup` (`CI_PROJECT_NAMESPACE`).
    pub namespace: String,
    /// Last path segment without `.git` (`CI_PROJECT_NAME`).
    pub name: String,
}

impl ProjectPath {
    /// `namespace/name` (`CI_PROJECT_PATH`).
    pub fn path(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The project's id (`CI_PROJECT_ID`): GitLab scopes caches, artifacts and much else by
    /// it, so two projects must not share one. Derived from [`ProjectPath::path`] (FNV-1a,
    /// stable across glci versions and machines), in GitLab's id range (a positive 32-bit
    /// integer, as `projects.id` is).
    pub fn stable_id(&self) -> u64 {
        const MAX_ID: u64 = i32::MAX as u64;
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.path().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        1 + hash % MAX_ID
    }

    /// First namespace segment (`CI_PROJECT_ROOT_NAMESPACE`).
    pub fn root_namespace(&self) -> &str {
        self.namespace.split('/').next().unwrap_or(&self.namespace)
    }

    /// Parses `git@host:group/sub/proj.git`, `ssh://git@host:22/group/proj`,
    /// `https://user:token@host/group/proj.git` (with or without `.git` or a trailing `/`).
    /// `None` for local paths, `file://` URLs and paths with fewer than two segments (GitLab
    /// has no project outside a namespace).
    pub fn from_remote_url(url: &str) -> Option<ProjectPath> {
        let url = url.trim();
        let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
            if scheme.eq_ignore_ascii_case("file") {
                return None;
            }
            let (authority, path) = rest.split_once('/')?;
            // Credentials may contain ':' and '@'; the host is after the last '@'.
            let host_port = authority.rsplit('@').next().unwrap_or(authority);
            (strip_port(host_port), path)
        } else {
            // scp-like syntax: `[user@]host:path`. A colon after a slash, or a one-letter
            // "host" (a Windows drive), means this is a local path instead.
            let (before, path) = url.split_once(':')?;
            if before.contains('/') || before.len() <= 1 {
                return None;
            }
            (
                before.rsplit('@').next().unwrap_or(before).to_string(),
                path,
            )
        };
        if host.is_empty() {
            return None;
        }
        let path = path.trim_matches('/');
        let path = path
            .strip_suffix(".git")
            .unwrap_or(path)
            .trim_end_matches('/');
        let (namespace, name) = path.rsplit_once('/')?;
        let namespace = namespace.trim_matches('/');
        if namespace.is_empty() || name.is_empty() || namespace.starts_with('~') {
            return None;
        }
        Some(ProjectPath {
            host: Some(host),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// Fallback identity `local/<directory name>` for a repository without a remote; any
    /// character GitLab refuses in a project path becomes `-`.
    pub fn from_dir_name(dir: &Path) -> ProjectPath {
        let raw = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut name: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        name = name.trim_matches(|c| c == '-' || c == '.').to_string();
        if name.is_empty() {
            name = "project".to_string();
        }
        ProjectPath {
            host: None,
            namespace: FALLBACK_NAMESPACE.to_string(),
            name,
        }
    }
}

/// `host:port` → `host`, keeping bracketed IPv6 literals whole.
fn strip_port(host_port: &str) -> String {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    host_port.split(':').next().unwrap_or(host_port).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Option<(String, String, String)> {
        ProjectPath::from_remote_url(url).map(|p| (p.host.unwrap_or_default(), p.namespace, p.name))
    }

    fn t(h: &str, n: &str, p: &str) -> Option<(String, String, String)> {
        Some((h.into(), n.into(), p.into()))
    }

    #[test]
    fn ssh_scp_like_with_subgroups() {
        assert_eq!(
            parse("git@gitlab.com:group/sub/proj.git"),
            t("gitlab.com", "group/sub", "proj")
        );
        assert_eq!(parse("git@host:group/proj"), t("host", "group", "proj"));
        assert_eq!(parse("host:/group/proj.git/"), t("host", "group", "proj"));
    }

    #[test]
    fn urls_with_scheme_credentials_and_ports() {
        assert_eq!(
            parse("https://gitlab.example.com/a/b/c.git"),
            t("gitlab.example.com", "a/b", "c")
        );
        assert_eq!(
            parse("https://oauth2:p@ss:w@rd@gitlab.example.com:8443/a/c/"),
            t("gitlab.example.com", "a", "c")
        );
        assert_eq!(
            parse("ssh://git@gitlab.com:2222/group/proj.git"),
            t("gitlab.com", "group", "proj")
        );
        assert_eq!(parse("http://[::1]:8080/g/p"), t("::1", "g", "p"));
    }

    #[test]
    fn local_paths_and_single_segments_are_not_projects() {
        assert_eq!(parse("/srv/git/proj.git"), None);
        assert_eq!(parse("../proj"), None);
        assert_eq!(parse("file:///srv/g/p.git"), None);
        assert_eq!(parse("C:\\repos\\p"), None);
        assert_eq!(parse("https://host/proj.git"), None);
        assert_eq!(parse("git@host:proj.git"), None);
    }

    #[test]
    fn fallback_from_directory_name() {
        let p = ProjectPath::from_dir_name(Path::new("/home/me/My Project!"));
        assert_eq!(p.path(), "local/My-Project");
        assert_eq!(p.root_namespace(), "local");
        assert_eq!(ProjectPath::from_dir_name(Path::new("/")).name, "project");
    }

    #[test]
    fn project_ids_are_stable_distinct_and_in_gitlabs_range() {
        let id = |path: &str| {
            let (namespace, name) = path.rsplit_once('/').unwrap_or(("local", path));
            ProjectPath {
                host: None,
                namespace: namespace.into(),
                name: name.into(),
            }
            .stable_id()
        };
        // Fixed forever: caches saved under one id must be found by later versions.
        assert_eq!(id("acme/proj"), 1_410_391_894);
        let ids = [
            id("acme/a"),
            id("acme/b"),
            id("acme/proj"),
            id("local/proj"),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert!((1..=i32::MAX as u64).contains(a), "{a}");
            assert!(ids[i + 1..].iter().all(|b| b != a), "{ids:?}");
        }
    }
}
