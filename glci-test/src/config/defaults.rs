//! `default:` and the deprecated top-level `image`, `services`, `cache`, `before_script`,
//! `after_script`, applied to jobs the way GitLab's entries inherit them: a key is copied only
//! when the job does not set it (no merging), `inherit:default` filters, trigger jobs take only
//! `interruptible`, and `default:timeout` has no effect.

use super::error::ConfigError;
use super::jobs::{entry_kind, jobs_mut, EntryKind};
use super::keywords::{DEFAULT_KEYS, DEPRECATED_GLOBALS};
use super::value::{Key, Mapping, Node, Value};

/// Moves deprecated globals into `default:` (error if both set one) and copies the defaults
/// into every job. `default:` stays in the tree for whoever wants to show it.
pub fn apply_defaults(root: &mut Node) -> Result<(), ConfigError> {
    let root_span = root.span.clone();
    let Value::Map(map) = &mut root.value else {
        return Ok(());
    };
    let default_is_global = map
        .get("default")
        .is_none_or(|d| entry_kind("default", d) == EntryKind::Global);
    let mut defaults: Mapping = if default_is_global {
        map.get("default")
            .and_then(Node::as_map)
            .cloned()
            .unwrap_or_default()
    } else {
        Mapping::default()
    };
    let mut moved = false;
    for name in &DEPRECATED_GLOBALS {
        let Some((key, value)) = map.shift_remove_entry(*name) else {
            continue;
        };
        if defaults.contains_key(*name) {
            return Err(ConfigError::at(
                &key.span,
                format!("{name} is defined in top-level and `default:` entry"),
            ));
        }
        defaults.insert(key, value);
        moved = true;
    }
    if moved {
        let span = map
            .get("default")
            .map(|d| d.span.clone())
            .unwrap_or(root_span.clone());
        let node = Node::new(Value::Map(defaults.clone()), span.clone());
        if default_is_global {
            if let Some(d) = map.get_mut("default") {
                *d = node;
            } else {
                map.insert(Key::new("default", span), node);
            }
        }
    }
    if defaults.is_empty() {
        return Ok(());
    }
    for (_, kind, job) in jobs_mut(map) {
        apply_to_job(&defaults, kind, job);
    }
    Ok(())
}

/// Which default keys a job takes under `inherit:default`.
fn inherits(job: &Node, key: &str) -> bool {
    match job.get("inherit").and_then(|i| i.get("default")) {
        None => true,
        Some(v) => match &v.value {
            Value::Bool(b) => *b,
            Value::Seq(items) => items.iter().any(|i| i.as_str() == Some(key)),
            // Invalid values are the validator's to report; inheriting nothing is safest.
            _ => false,
        },
    }
}

fn apply_to_job(defaults: &Mapping, kind: EntryKind, job: &mut Node) {
    let allowed: &[&str] = match kind {
        EntryKind::Bridge => &["interruptible"],
        _ => &DEFAULT_KEYS,
    };
    let take: Vec<(Key, Node)> = defaults
        .iter()
        .filter(|(k, _)| k.name != "timeout" && allowed.contains(&k.name.as_str()))
        .filter(|(k, _)| inherits(job, &k.name))
        // An explicit `key: null` is "not specified" for GitLab's entries too.
        .filter(|(k, _)| job.get(&k.name).is_none_or(|v| v.value == Value::Null))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Value::Map(m) = &mut job.value {
        for (k, v) in take {
            m.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, to_yaml};

    fn run(text: &str) -> Result<String, String> {
        let mut n = parse_yaml(text, "d.yml").map_err(|e| e.to_string())?;
        apply_defaults(&mut n).map_err(|e| e.to_string())?;
        Ok(to_yaml(&n))
    }

    #[test]
    fn copies_only_missing_keys_without_merging() {
        let out = run("default:\n  image: ruby\n  cache: {key: a, paths: [x]}\n  timeout: 1h\njob:\n  script: x\n  cache: {key: b}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.contains("job:\n  script: x\n  cache:\n    key: b\n  image: ruby\n"),
            "{out}"
        );
        assert!(
            !out.contains("job:\n  script: x\n  cache:\n    key: b\n  image: ruby\n  timeout"),
            "{out}"
        );
    }

    #[test]
    fn inherit_default_false_and_list() {
        let out = run("default: {image: ruby, tags: [t]}\na: {script: x, inherit: {default: false}}\nb: {script: x, inherit: {default: [tags]}}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.contains("a:\n  script: x\n  inherit:\n    default: false\nb:"),
            "{out}"
        );
        assert!(
            out.contains("b:\n  script: x\n  inherit:\n    default:\n    - tags\n  tags:\n  - t\n"),
            "{out}"
        );
    }

    #[test]
    fn trigger_jobs_take_only_interruptible() {
        let out = run("default: {image: ruby, interruptible: true}\nt: {trigger: other/project}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.ends_with("t:\n  trigger: other/project\n  interruptible: true\n"),
            "{out}"
        );
    }

    #[test]
    fn deprecated_globals_act_as_defaults() {
        let out = run("image: alpine\nbefore_script: [b]\njob: {script: x}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            "job:\n  script: x\n  image: alpine\n  before_script:\n  - b\ndefault:\n  image: alpine\n  before_script:\n  - b\n"
        );
        assert_eq!(
            run("image: a\ndefault: {image: b}\njob: {script: x}\n").err(),
            Some("d.yml:1:1: image is defined in top-level and `default:` entry".into())
        );
    }
}
