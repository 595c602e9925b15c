//! `extends`, as GitLab's `Extendable::Entry#extend!` does it over the merged top-level hash:
//! bases in order, each itself extended first, deep-merged, then the job on top; the result
//! keeps its `extends` key. Errors use GitLab's wording, named after the entry where found.

use foldhash::{HashMap, HashMapExt};

use super::error::ConfigError;
use super::merge::deep_merge;
use super::value::{Key, Mapping, Node, Span, Value};

/// More ancestors than this is "nesting too deep" (11 levels in all).
pub const MAX_NESTING_LEVELS: usize = 10;
/// GitLab re-extends a base every time it is named (no memo, so the depth limit counts from
/// each job); a diamond-heavy file could make that exponential, hence a bound on the steps.
const MAX_EXTEND_STEPS: usize = 200_000;

/// Applies `extends` to every top-level entry of `root` that has one.
pub fn apply_extends(root: &mut Node) -> Result<(), ConfigError> {
    let Value::Map(map) = &mut root.value else {
        return Ok(());
    };
    let keys: Vec<Key> = map.keys().cloned().collect();
    let mut walk = Walk {
        budget: MAX_EXTEND_STEPS,
        done: HashMap::new(),
    };
    for key in keys {
        extend(map, &key, &mut Vec::new(), &mut walk)?;
    }
    Ok(())
}

/// What re-extending an entry that was already extended once costs, in the two measures
/// that can make it fail.
#[derive(Debug, Clone, Copy)]
struct Cost {
    /// How many levels of entries with `extends` lie below it (0: its bases have none).
    height: usize,
    /// How many `extend` steps a full re-extension takes (itself included).
    steps: usize,
}

/// The state of one `apply_extends` pass.
struct Walk {
    budget: usize,
    /// Entries already extended, by name. Re-extending one gives back the very same node:
    /// its bases are fixed once extended themselves, and `deep_merge(bases, deep_merge(bases,
    /// job))` equals `deep_merge(bases, job)` (same keys, order, values and spans). So a
    /// re-extension only matters for its errors, and it can fail only on depth or on the
    /// step budget (names, bases and cycles were checked the first time and do not change):
    /// when neither can fail it is skipped. Without this, a base shared by N jobs was
    /// re-merged (and its whole chain cloned) N times.
    done: HashMap<String, Cost>,
}

/// The names in an `extends:` value, or an error when it is neither a string nor strings.
fn extends_names(job: &Key, value: &Node) -> Result<Vec<String>, ConfigError> {
    let bad = || {
        ConfigError::at(
            &value.span,
            format!(
                "jobs:{} extends should be an array of strings or a string",
                job.name
            ),
        )
    };
    match &value.value {
        // `Array(nil)`: `extends: null` extends nothing.
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Seq(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

/// Extends the entry `key` (in place). `None` when it has nothing to extend, else what a
/// re-extension of it costs.
fn extend(
    map: &mut Mapping,
    key: &Key,
    ancestors: &mut Vec<String>,
    walk: &mut Walk,
) -> Result<Option<Cost>, ConfigError> {
    let Some(entry) = map.get(key.name.as_str()) else {
        return Ok(None);
    };
    let Some(extends) = entry.get("extends") else {
        return Ok(None);
    };
    // A repeat that can fail neither on depth nor on the budget is skipped (see `Walk`); one
    // that could takes the full path below, so the error is the one a full walk reports.
    if let Some(cost) = walk.done.get(key.name.as_str()).copied() {
        if ancestors.len() + cost.height <= MAX_NESTING_LEVELS && walk.budget >= cost.steps {
            walk.budget -= cost.steps;
            return Ok(Some(cost));
        }
    }
    let budget = &mut walk.budget;
    if *budget == 0 {
        return Err(ConfigError::at(
            &extends.span,
            format!("{}: `extends` is too complex to resolve", key.name),
        ));
    }
    *budget -= 1;
    // The key as written in this entry, for error locations.
    let here = map
        .get_key_value(key.name.as_str())
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| key.clone());
    let names = extends_names(&here, extends)?;
    let at = extends.span.clone();
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !map.contains_key(n.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(ConfigError::at(
            &at,
            format!(
                "{}: unknown keys in `extends` ({})",
                here.name,
                unknown.join(", ")
            ),
        ));
    }
    let invalid: Vec<&str> = names
        .iter()
        .filter(|n| map.get(n.as_str()).and_then(Node::as_map).is_none())
        .map(String::as_str)
        .collect();
    if !invalid.is_empty() {
        return Err(ConfigError::at(
            &at,
            format!(
                "{}: invalid base hashes in `extends` ({})",
                here.name,
                invalid.join(", ")
            ),
        ));
    }
    if ancestors.len() > MAX_NESTING_LEVELS {
        return Err(ConfigError::at(
            &at,
            format!("{}: nesting too deep in `extends`", here.name),
        ));
    }
    if ancestors.contains(&here.name) {
        return Err(ConfigError::at(
            &at,
            format!("{}: circular dependency detected in `extends`", here.name),
        ));
    }
    ancestors.push(here.name.clone());
    let mut merged: Option<Node> = None;
    let mut cost = Cost {
        height: 0,
        steps: 1,
    };
    for name in &names {
        let base_key = Key::new(name.clone(), at.clone());
        if let Some(below) = extend(map, &base_key, ancestors, walk)? {
            cost.height = cost.height.max(below.height + 1);
            cost.steps += below.steps;
        }
        if let Some(base) = map.get(name.as_str()) {
            match &mut merged {
                None => merged = Some(base.clone()),
                Some(m) => deep_merge(m, base.clone()),
            }
        }
    }
    ancestors.pop();
    if let Some(job) = map.get_mut(here.name.as_str()) {
        let mut result =
            merged.unwrap_or_else(|| Node::new(Value::Map(Mapping::default()), job.span.clone()));
        // Moved out rather than cloned: it is replaced by `result` just below.
        let job_node = std::mem::replace(job, Node::new(Value::Null, Span::default()));
        result.span = job_node.span.clone();
        deep_merge(&mut result, job_node);
        *job = result;
    }
    walk.done.insert(here.name.clone(), cost);
    Ok(Some(cost))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, to_yaml};

    fn run(text: &str) -> Result<String, String> {
        let mut n = parse_yaml(text, "x.yml").map_err(|e| e.to_string())?;
        apply_extends(&mut n).map_err(|e| e.to_string())?;
        Ok(to_yaml(&n))
    }

    #[test]
    fn single_simple_extension() {
        // GitLab extendable_spec "single simple extension".
        let out = run("something:\n  script: deploy\n  only: {variables: [$SOMETHING]}\ntest:\n  extends: something\n  script: ls\n  only: {refs: [master]}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.ends_with("test:\n  script: ls\n  only:\n    variables:\n    - $SOMETHING\n    refs:\n    - master\n  extends: something\n"), "{out}");
    }

    #[test]
    fn multiple_parents_later_wins_and_arrays_replace() {
        let out = run(".a: {script: [a], variables: {A: '1', X: a}}\n.b: {script: [b], variables: {B: '2', X: b}}\njob: {extends: [.a, .b], tags: [t]}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("job:\n  script:\n  - b\n  variables:\n    A: \"1\"\n    X: b\n    B: \"2\"\n  extends:\n  - .a\n  - .b\n  tags:\n  - t\n"), "{out}");
    }

    #[test]
    fn chains_resolve_regardless_of_order() {
        let out =
            run("job: {extends: .b}\n.b: {extends: .a, image: b}\n.a: {script: [x], image: a}\n")
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.starts_with("job:\n  script:\n  - x\n  image: b\n"),
            "{out}"
        );
    }

    #[test]
    fn null_deletes_empty_hash_keeps() {
        let out = run(".p: {only: {variables: [$X]}, when: manual}\na: {extends: .p, only: {}}\nb: {extends: .p, only: null}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.contains("a:\n  only:\n    variables:\n    - $X\n"),
            "{out}"
        );
        assert!(out.contains("b:\n  only: null\n"), "{out}");
    }

    #[test]
    fn errors() {
        assert_eq!(
            run("test: {extends: test, script: x}\n").err(),
            Some("x.yml:1:17: test: circular dependency detected in `extends`".into())
        );
        assert!(run("a: {extends: .b}\n.b: {extends: a}\n")
            .is_err_and(|e| e.ends_with("a: circular dependency detected in `extends`")));
        assert_eq!(
            run("job: {extends: [.x, .y]}\n").err(),
            Some("x.yml:1:16: job: unknown keys in `extends` (.x, .y)".into())
        );
        assert!(run("something: 'some text'\njob: {extends: something}\n")
            .is_err_and(|e| e.ends_with("job: invalid base hashes in `extends` (something)")));
        assert!(run("job: {extends: 1}\n").is_err_and(
            |e| e.ends_with("jobs:job extends should be an array of strings or a string")
        ));
    }

    #[test]
    fn depth_limit_is_eleven_levels() {
        let chain = |n: usize| {
            let mut t = String::from(".l0: {script: [x]}\n");
            for i in 1..n {
                t.push_str(&format!(".l{i}: {{extends: .l{}}}\n", i - 1));
            }
            t.push_str(&format!("job: {{extends: .l{}}}\n", n - 1));
            t
        };
        assert!(run(&chain(11)).is_ok());
        assert!(run(&chain(12)).is_err_and(|e| e.contains("nesting too deep in `extends`")));
        // `job` is extended (and remembered) first; reached again one level deeper, from
        // `deeper`, the chain is too deep, and that must still be reported.
        let deeper = format!("{}deeper: {{extends: job}}\n", chain(11));
        assert!(run(&deeper).is_err_and(|e| e.contains("nesting too deep in `extends`")));
    }

    #[test]
    fn shared_bases_extend_every_job_alike() {
        // Bases named by many jobs, in chains and diamonds, merged once per job.
        let out = run(".a: {variables: {A: a, X: a}, script: [a]}\n.b: {extends: .a, variables: {X: b}}\n.c: {extends: [.a, .b], image: c}\nj1: {extends: .c, variables: {J: '1'}}\nj2: {extends: [.b, .c], script: [j2]}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("j1:\n  variables:\n    A: a\n    X: b\n    J: \"1\"\n  script:\n  - a\n  extends: .c\n  image: c\n"), "{out}");
        assert!(out.contains("j2:\n  variables:\n    A: a\n    X: b\n  script:\n  - j2\n  extends:\n  - .b\n  - .c\n  image: c\n"), "{out}");
    }
}
