//! Nested arrays that GitLab's entries flatten: `script`, `before_script`, `after_script`,
//! `hooks:pre_get_sources_script` (`Entry::Commands`: strings, arrays nested up to 10 levels)
//! and `rules` (hashes, same nesting). They appear through `!reference` and `- *alias`.
//!
//! The composable entries flatten too, with Ruby's `[config].flatten` (every level, no
//! limit): `needs` (`Entry::Needs`, also under `rules:`), `cache` (`Entry::Caches`),
//! `services` (`Entry::Services`) and the `ports` of `image` and of each service
//! (`Entry::Ports`). So `needs: [*common, build]` with a list anchor is a flat list of needs.
//! What the items must be is left to the entry validation.

use super::error::ConfigError;
use super::jobs::{jobs_mut, EntryKind};
use super::value::{Node, Value};

/// Deepest nesting GitLab accepts, the outer array counting as level 1.
pub const MAX_LEVEL: usize = 10;

const COMMANDS: &[&str] = &["script", "before_script", "after_script"];

/// Flattens the command lists and rules of every job, of `default:` and of `workflow:rules`.
pub fn flatten_lists(root: &mut Node) -> Result<(), ConfigError> {
    let Value::Map(map) = &mut root.value else {
        return Ok(());
    };
    if let Some(default) = map.get_mut("default") {
        if default.get("script").is_none() {
            flatten_entry("default", default)?;
        }
    }
    if let Some(rules) = map.get_mut("workflow").and_then(|w| get_mut(w, "rules")) {
        flatten_rules("workflow", "rules", rules)?;
    }
    for (name, kind, job) in jobs_mut(map) {
        let location = format!("jobs:{name}");
        if kind == EntryKind::Job || kind == EntryKind::Bridge {
            flatten_entry(&location, job)?;
        }
    }
    Ok(())
}

fn get_mut<'a>(node: &'a mut Node, key: &str) -> Option<&'a mut Node> {
    match &mut node.value {
        Value::Map(m) => m.get_mut(key),
        _ => None,
    }
}

// Locations are passed in parts and joined only for an error message: formatting them for
// every list of every job cost as much as the flattening.
fn flatten_entry(location: &str, entry: &mut Node) -> Result<(), ConfigError> {
    for key in COMMANDS {
        if let Some(list) = get_mut(entry, key) {
            flatten_commands(location, key, list)?;
        }
    }
    if let Some(list) = get_mut(entry, "hooks").and_then(|h| get_mut(h, "pre_get_sources_script")) {
        flatten_commands(location, "hooks:pre_get_sources_script", list)?;
    }
    if let Some(rules) = get_mut(entry, "rules") {
        flatten_rules(location, "rules", rules)?;
        if let Value::Seq(items) = &mut rules.value {
            for rule in items {
                if let Some(needs) = get_mut(rule, "needs") {
                    flatten_composable(needs);
                }
            }
        }
    }
    for key in ["needs", "cache"] {
        if let Some(list) = get_mut(entry, key) {
            flatten_composable(list);
        }
    }
    if let Some(ports) = get_mut(entry, "image").and_then(|i| get_mut(i, "ports")) {
        flatten_composable(ports);
    }
    if let Some(services) = get_mut(entry, "services") {
        flatten_composable(services);
        if let Value::Seq(items) = &mut services.value {
            for service in items {
                if let Some(ports) = get_mut(service, "ports") {
                    flatten_composable(ports);
                }
            }
        }
    }
    Ok(())
}

/// Ruby's `Array#flatten` on an array (every level); anything else is left alone.
fn flatten_composable(list: &mut Node) {
    let Value::Seq(items) = &list.value else {
        return;
    };
    if !items.iter().any(|i| matches!(i.value, Value::Seq(_))) {
        return;
    }
    fn push_leaves(items: Vec<Node>, out: &mut Vec<Node>) {
        for item in items {
            match item.value {
                Value::Seq(inner) => push_leaves(inner, out),
                _ => out.push(item),
            }
        }
    }
    let Value::Seq(items) = std::mem::replace(&mut list.value, Value::Null) else {
        return;
    };
    let mut out = Vec::with_capacity(items.len());
    push_leaves(items, &mut out);
    list.value = Value::Seq(out);
}

fn flatten_commands(location: &str, key: &str, list: &mut Node) -> Result<(), ConfigError> {
    flatten(list, &|n| matches!(n.value, Value::String(_)), || {
        format!("{location}:{key} config should be a string or a nested array of strings up to {MAX_LEVEL} levels deep")
    })
}

fn flatten_rules(location: &str, key: &str, list: &mut Node) -> Result<(), ConfigError> {
    flatten(list, &|n| matches!(n.value, Value::Map(_)), || {
        format!("{location}:{key} config should be an array containing hashes and arrays of hashes")
    })
}

/// Replaces the array `list` by its leaves; `message` when a leaf is not `leaf_ok` or the
/// nesting is too deep. Anything but an array is left alone.
fn flatten(
    list: &mut Node,
    leaf_ok: &dyn Fn(&Node) -> bool,
    message: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    let Value::Seq(items) = &list.value else {
        return Ok(());
    };
    // Already flat and valid (most lists): nothing to rebuild, so nothing to copy.
    if items
        .iter()
        .all(|i| !matches!(i.value, Value::Seq(_)) && leaf_ok(i))
    {
        return Ok(());
    }
    let mut out = Vec::new();
    if !collect(list, 1, &mut out, leaf_ok) {
        return Err(ConfigError::at(&list.span, message()));
    }
    list.value = Value::Seq(out);
    Ok(())
}

/// Pushes the leaves of `node` (an array at `level`) into `out`; false on a bad leaf or depth.
fn collect(
    node: &Node,
    level: usize,
    out: &mut Vec<Node>,
    leaf_ok: &dyn Fn(&Node) -> bool,
) -> bool {
    let Value::Seq(items) = &node.value else {
        return false;
    };
    if level > MAX_LEVEL {
        return false;
    }
    for item in items {
        match &item.value {
            Value::Seq(_) => {
                if !collect(item, level + 1, out, leaf_ok) {
                    return false;
                }
            }
            _ if leaf_ok(item) => out.push(item.clone()),
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, to_yaml};

    fn run(text: &str) -> Result<String, String> {
        let mut n = parse_yaml(text, "f.yml").map_err(|e| e.to_string())?;
        flatten_lists(&mut n).map_err(|e| e.to_string())?;
        Ok(to_yaml(&n))
    }

    #[test]
    fn flattens_anchored_steps_and_rules() {
        let out = run(".s: &s [a, b]\n.r: &r [{if: $A}]\njob:\n  script: [*s, c, [[d]]]\n  rules: [*r, {when: never}]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("job:\n  script:\n  - a\n  - b\n  - c\n  - d\n  rules:\n  - if: $A\n  - when: never\n"), "{out}");
    }

    #[test]
    fn rejects_hash_in_script_with_gitlab_message() {
        assert_eq!(
            run("job:\n  script:\n    - echo a: b\n").err(),
            Some("f.yml:3:5: jobs:job:script config should be a string or a nested array of strings up to 10 levels deep".into())
        );
    }

    #[test]
    fn composable_entries_flatten_list_anchors() {
        let out = run(concat!(
            ".n: &n [a, {job: b}]\n.c: &c [{key: k, paths: [p]}]\n.s: &s [redis]\n",
            "job:\n  script: x\n  needs: [*n, c]\n  cache: [*c]\n  services: [*s, {name: pg, ports: [[5432]]}]\n",
            "  rules: [{needs: [*n]}]\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.contains("  needs:\n  - a\n  - job: b\n  - c\n  cache:\n  - key: k\n"),
            "{out}"
        );
        assert!(
            out.contains("  services:\n  - redis\n  - name: pg\n    ports:\n    - 5432\n"),
            "{out}"
        );
        assert!(
            out.contains("  rules:\n  - needs:\n    - a\n    - job: b\n"),
            "{out}"
        );
    }

    #[test]
    fn depth_limit() {
        let ok = format!("job: {{script: {}x{}}}\n", "[".repeat(10), "]".repeat(10));
        assert!(run(&ok).is_ok());
        let bad = format!("job: {{script: {}x{}}}\n", "[".repeat(11), "]".repeat(11));
        assert!(run(&bad).is_err_and(|e| e.contains("up to 10 levels deep")));
    }
}
