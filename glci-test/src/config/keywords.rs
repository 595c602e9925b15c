//! GitLab's keyword tables, once: which top-level names can never be jobs, and which keys
//! `default:` takes. Both the loader (`config/defaults.rs`, `config/jobs.rs`, which
//! copy defaults into jobs and classify entries) and the validator (`plan/model.rs`, which
//! reports unknown keys) read these, so they cannot disagree about a keyword.

/// The `Entry::Root` entries declared `reserved: true`: names that can never be jobs. The
/// root's other two keys, `default` and `workflow`, are not reserved — a hash with `script`
/// under either is a job.
pub const RESERVED: [&str; 8] = [
    "include",
    "before_script",
    "image",
    "services",
    "after_script",
    "variables",
    "stages",
    "cache",
];

/// `Entry::Default::ALLOWED_KEYS` (CE) plus EE's `identity` (gitlab.com runs EE): what
/// `default:` may hold and `inherit:default` may name.
pub const DEFAULT_KEYS: [&str; 13] = [
    "before_script",
    "after_script",
    "hooks",
    "cache",
    "image",
    "services",
    "interruptible",
    "timeout",
    "retry",
    "tags",
    "artifacts",
    "id_tokens",
    "identity",
];

/// Top-level keywords that still act as defaults (deprecated in favour of `default:`).
pub const DEPRECATED_GLOBALS: [&str; 5] = [
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn set<'a>(words: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
        words.into_iter().collect()
    }

    /// The tables against GitLab's own lists, copied here by hand from gitlabhq
    /// `lib/gitlab/ci/config/entry/root.rb` (`ALLOWED_KEYS`, the `reserved: true` entries) and
    /// `entry/default.rb` (`ALLOWED_KEYS`), with EE's `identity` added to the latter. A
    /// keyword GitLab adds is added here first, then to the table.
    #[test]
    fn tables_match_gitlabs_entries() {
        let root_allowed = "default include before_script image services after_script \
                            variables stages cache workflow";
        let root_reserved =
            "include before_script image services after_script variables stages cache";
        let default_allowed = "before_script after_script hooks cache image services \
                               interruptible timeout retry tags artifacts id_tokens";
        let ee_default = "identity";
        assert_eq!(set(RESERVED), set(root_reserved.split_whitespace()));
        assert_eq!(
            set(DEFAULT_KEYS),
            set(default_allowed
                .split_whitespace()
                .chain(ee_default.split_whitespace()))
        );
        // Only `default` and `workflow` of the root's keys are not reserved.
        let root = set(root_allowed.split_whitespace());
        let unreserved: BTreeSet<&str> = root.difference(&set(RESERVED)).copied().collect();
        assert_eq!(unreserved, set(["default", "workflow"]));
        // Deprecated globals are root keys that `Entry::Default` also takes.
        for key in DEPRECATED_GLOBALS {
            assert!(root.contains(key) && DEFAULT_KEYS.contains(&key), "{key}");
        }
    }
}
