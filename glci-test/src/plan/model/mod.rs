//! The typed pipeline model: the resolved YAML tree read into Rust types, with GitLab's entry
//! validation messages (`Gitlab::Ci::Config::Entry::*`). The types are in `types.rs` (a leaf
//! every other part of `plan` may import); reading is here and in `parse.rs`, `job.rs` and
//! `fields.rs`. Logical checks that need the whole pipeline (stages, needs, dependencies)
//! live in `plan/validate.rs`, which calls [`read`] first.

use std::sync::Arc;

use super::lint::LintError;
use crate::config::keywords::{DEFAULT_KEYS, DEPRECATED_GLOBALS, RESERVED};
use crate::config::{Mapping, Node, Value};

mod fields;
mod job;
mod parse;
mod types;

pub use job::parse_job;
pub use types::*;

/// Reads a resolved configuration tree with GitLab's entry validation. Entry errors are all
/// collected (as GitLab reports several at once). The logical checks come after, in
/// [`crate::plan::validate`].
pub fn read(tree: &Node) -> Result<PipelineConfig, Vec<LintError>> {
    let mut errors = Vec::new();
    let config = read_root(tree, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    config.ok_or(errors)
}

fn read_root(tree: &Node, errors: &mut Vec<LintError>) -> Option<PipelineConfig> {
    let Some(root) = tree.as_map() else {
        errors.push(LintError::new(
            Some(&tree.span),
            "Invalid configuration format",
        ));
        return None;
    };
    // Empty content is reported by `config` on the text; an empty mapping here means
    // every job was hidden (and dropped after `extends`/`!reference` used them).
    if root.is_empty() {
        errors.push(LintError::new(
            Some(&tree.span),
            "jobs config should contain at least one visible job",
        ));
        return None;
    }

    let stages = read_stages(root.get("stages"), errors);
    let variables = match root.get("variables") {
        Some(node) => parse::variables(node, "variables", true, errors),
        None => StrMap::default(),
    };
    let mut workflow = None;

    let defaults = collect_defaults(root, errors);

    let mut jobs = StrMap::default();
    let mut tasks: Vec<(usize, &str, &Node, &Mapping)> = Vec::new();
    let mut visible = 0usize;
    for (key, node) in root {
        let name = key.name.as_str();
        if RESERVED.contains(&name) {
            continue;
        }
        let looks_like_job = node.as_map().is_some_and(|m| {
            ["script", "run", "trigger", "needs"]
                .iter()
                .any(|k| m.contains_key(*k))
        });
        if (name == "default" || name == "workflow") && !looks_like_job {
            if name == "workflow" {
                workflow = Some(parse::workflow(node, errors));
            }
            continue;
        }
        if name.starts_with('.') {
            if is_blank(node) {
                errors.push(LintError::entry(
                    &key.span,
                    &format!("jobs:{name}"),
                    "config can't be blank",
                ));
            }
            continue;
        }
        let Some(map) = node.as_map().filter(|_| looks_like_job) else {
            errors.push(LintError::entry(
                &key.span,
                &format!("jobs {}", name.replace(' ', "_")),
                "config should implement the script:, run:, or trigger: keyword",
            ));
            continue;
        };
        visible += 1;
        // Read below, in parallel; `errors.len()` is where this job's errors go.
        tasks.push((errors.len(), name, node, map));
    }
    // Each job reads on its own (its defaults, its keys), so big pipelines read them on two
    // threads; the errors are put back where the sequential loop would have pushed them.
    let read = crate::threads::map_in_order(&tasks, |&(_, name, node, map)| {
        let mut job_errors = Vec::new();
        let job_defaults = defaults_for(map, &defaults);
        let job = parse_job(name, node, &job_defaults, &mut job_errors);
        (job, job_errors)
    });
    let mut merged = Vec::with_capacity(errors.len());
    let mut earlier = std::mem::take(errors).into_iter();
    let mut taken = 0;
    for (&(at, name, _, _), (job, job_errors)) in tasks.iter().zip(read) {
        merged.extend(earlier.by_ref().take(at - taken));
        taken = at;
        merged.extend(job_errors);
        if let Some(job) = job {
            jobs.insert(name.to_string(), job);
        }
    }
    merged.extend(earlier);
    *errors = merged;
    if visible == 0 && errors.is_empty() {
        errors.push(LintError::new(
            Some(&tree.span),
            "jobs config should contain at least one visible job",
        ));
    }
    Some(PipelineConfig {
        stages,
        variables,
        workflow,
        jobs,
        matchers: Arc::default(),
    })
}

fn is_blank(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Map(m) => m.is_empty(),
        Value::Seq(s) => s.is_empty(),
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// `default:` merged with the deprecated top-level globals; both defining one key is an error.
fn collect_defaults(root: &Mapping, errors: &mut Vec<LintError>) -> Mapping {
    let mut defaults = Mapping::default();
    let default_node = root.get("default").filter(|n| {
        !n.as_map().is_some_and(|m| {
            ["script", "run", "trigger", "needs"]
                .iter()
                .any(|k| m.contains_key(*k))
        })
    });
    if let Some(node) = default_node {
        match node.as_map() {
            Some(map) => {
                errors.extend(LintError::unknown_keys(
                    &node.span,
                    "default",
                    map.keys().map(|k| k.name.as_str()),
                    &DEFAULT_KEYS,
                ));
                for (k, v) in map {
                    defaults.insert(k.clone(), v.clone());
                }
            }
            None if matches!(node.value, Value::Null) => {}
            None => errors.push(LintError::entry(
                &node.span,
                "default",
                "config should be a hash",
            )),
        }
    }
    for key in DEPRECATED_GLOBALS {
        if let Some((k, v)) = root.get_key_value(key) {
            if defaults.contains_key(key) {
                errors.push(LintError::new(
                    Some(&k.span),
                    format!("{key} is defined in top-level and `default:` entry"),
                ));
            } else {
                defaults.insert(k.clone(), v.clone());
            }
        }
    }
    defaults
}

/// The defaults a job receives: `inherit:default` filters them, and trigger jobs only take
/// `interruptible`.
fn defaults_for(job: &Mapping, defaults: &Mapping) -> Mapping {
    let inherit = job
        .get("inherit")
        .and_then(|i| i.get("default"))
        .map(|d| match &d.value {
            Value::Bool(false) => InheritList::None,
            Value::Seq(items) => {
                InheritList::Only(items.iter().filter_map(Node::scalar_string).collect())
            }
            _ => InheritList::All,
        })
        .unwrap_or(InheritList::All);
    let is_trigger = job.contains_key("trigger");
    defaults
        .iter()
        .filter(|(k, _)| inherit.allows(&k.name))
        .filter(|(k, _)| !is_trigger || k.name == "interruptible")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `stages:` flattened (nested arrays up to 10 levels), `.pre`/`.post` moved to the edges.
fn read_stages(node: Option<&Node>, errors: &mut Vec<LintError>) -> Vec<String> {
    let Some(node) = node else {
        return DEFAULT_STAGES.iter().map(|s| s.to_string()).collect();
    };
    let mut flat = Vec::new();
    if !parse::flatten_strings(node, 0, &mut flat) {
        errors.push(LintError::entry(
            &node.span,
            "stages",
            "config should be an array of strings",
        ));
    }
    let mut stages = vec![".pre".to_string()];
    stages.extend(flat.into_iter().filter(|s| s != ".pre" && s != ".post"));
    stages.push(".post".to_string());
    stages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keywords::DEFAULT_KEYS;
    use crate::config::{parse_yaml, resolve_tree};

    /// The loader (which copies `default:` into jobs) and this validator (which refuses
    /// unknown `default:` keys) read one table, so every key the loader copies is one the
    /// validator accepts — `identity` included, which they once disagreed on.
    #[test]
    fn default_keys_the_loader_copies_are_keys_the_validator_accepts() {
        assert!(DEFAULT_KEYS.contains(&"identity"));
        let yaml = "default:\n  identity: google_cloud\n  tags: [docker]\n\
                    job:\n  script: [echo]\n";
        let tree = parse_yaml(yaml, ".gitlab-ci.yml")
            .and_then(resolve_tree)
            .expect("config loads");
        let job = tree.get("job").expect("job is kept");
        assert!(job.get("identity").is_some(), "the loader copied identity");
        let config = read(&tree).map_err(|e| crate::plan::lint::join(&e));
        assert!(config.is_ok(), "{config:?}");

        let unknown = "default:\n  no_such_key: 1\njob:\n  script: [echo]\n";
        let tree = parse_yaml(unknown, ".gitlab-ci.yml")
            .and_then(resolve_tree)
            .expect("config loads");
        let errors = read(&tree).map_err(|e| crate::plan::lint::join(&e));
        assert!(
            errors
                .as_ref()
                .is_err_and(|e| e.contains("config contains unknown keys: no_such_key")),
            "{errors:?}"
        );
    }
}
