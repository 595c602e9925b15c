//! `!reference [key, subkey, …]` resolution, as GitLab's `Yaml::Tags::Resolver` does it: after
//! includes and `extends`, every tag is replaced by a copy of the value it names in the merged
//! configuration, itself resolved (nested references), with GitLab's messages for a missing
//! path and a circular chain.

use super::error::ConfigError;
use super::value::{Node, Span, Value};
use super::yaml::{node_count, TOO_BIG};

/// How many `!reference` may be resolved inside one another (GitLab documents 10 levels).
pub const MAX_NESTING: usize = 10;
/// Copies made by resolution, in nodes: references can fan out, so they get a budget too.
const MAX_COPIED_NODES: usize = 2_000_000;

/// Replaces every `!reference` in `root` by the value it names in `root` as it was before
/// resolution started.
pub fn resolve_references(root: &mut Node) -> Result<(), ConfigError> {
    // Two passes instead of resolving in place against a copy of the whole tree (a copy, and
    // its drop, that cost as much as the resolution itself): first every reference's value is
    // worked out from `root` as it is, in document order, then the tags are replaced in that
    // same order. The tree's shape does not change between the passes, so the orders match.
    let split = crate::threads::two_cores();
    let values = collect_all(root, split)?;
    if !values.is_empty() {
        replace(root, &mut values.into_iter());
    }
    Ok(())
}

/// Below this many top-level entries the references are collected on one thread.
const SPLIT_ENTRIES: usize = 256;

/// The resolved value of every tag in `root`, in document order. A big configuration's
/// top-level entries are split in two halves collected side by side (collecting only reads
/// `root`; it is a third of resolving a 1,000-job file). The result is the one-thread
/// result: the first half is collected exactly as it would be; the second starts its copy
/// budget at zero, so whenever it fails or the two halves together exceed the budget it is
/// collected again after the first, with the first half's count, as one thread would.
fn collect_all(root: &Node, split: bool) -> Result<Vec<Node>, ConfigError> {
    let state = |copied| State {
        config: root,
        chain: Vec::new(),
        copied,
    };
    let entries: Vec<&Node> = match &root.value {
        Value::Map(map) if split && map.len() >= SPLIT_ENTRIES => map.values().collect(),
        _ => {
            let mut values = Vec::new();
            state(0).collect(root, &mut values)?;
            return Ok(values);
        }
    };
    let (first, second) = entries.split_at(entries.len() / 2);
    let collect = |part: &[&Node], copied| {
        let mut values = Vec::new();
        let mut st = state(copied);
        let result = part.iter().try_for_each(|n| st.collect(n, &mut values));
        result.map(|()| (values, st.copied))
    };
    let (head, tail) = std::thread::scope(|s| {
        let tail = s.spawn(|| collect(second, 0));
        (collect(first, 0), crate::threads::join(tail))
    });
    let (mut values, copied) = head?;
    let rest = match tail {
        Ok((rest, more)) if copied.saturating_add(more) <= MAX_COPIED_NODES => rest,
        _ => collect(second, copied)?.0,
    };
    values.extend(rest);
    Ok(values)
}

/// Puts the resolved `values` in place of the tags of `node`, in document order.
fn replace(node: &mut Node, values: &mut impl Iterator<Item = Node>) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|i| replace(i, values)),
        Value::Map(map) => map.values_mut().for_each(|v| replace(v, values)),
        Value::Reference(_) => {
            if let Some(value) = values.next() {
                *node = value;
            }
        }
        _ => {}
    }
}

/// The `!reference [".a", "b"]` text GitLab uses in its messages (Ruby's `Array#inspect`).
pub fn describe(path: &[String]) -> String {
    let parts: Vec<String> = path.iter().map(|p| format!("{p:?}")).collect();
    format!("!reference [{}]", parts.join(", "))
}

struct State<'a> {
    config: &'a Node,
    /// Where each reference being resolved right now was written: Ruby marks the tag object
    /// itself as "resolving", and a tag is identified here by its place in the source.
    chain: Vec<Span>,
    copied: usize,
}

impl State<'_> {
    /// The resolved value of every tag in `node`, in document order (`resolve_in`'s order).
    fn collect(&mut self, node: &Node, out: &mut Vec<Node>) -> Result<(), ConfigError> {
        match &node.value {
            Value::Seq(items) => items.iter().try_for_each(|i| self.collect(i, out)),
            Value::Map(map) => map.values().try_for_each(|v| self.collect(v, out)),
            Value::Reference(path) => {
                out.push(self.resolve_one(path, &node.span)?);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Resolves the tags inside a copied value, in place.
    fn resolve_in(&mut self, node: &mut Node) -> Result<(), ConfigError> {
        match &mut node.value {
            Value::Seq(items) => items.iter_mut().try_for_each(|i| self.resolve_in(i)),
            Value::Map(map) => map.values_mut().try_for_each(|v| self.resolve_in(v)),
            Value::Reference(path) => {
                let path = path.clone();
                *node = self.resolve_one(&path, &node.span)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn resolve_one(&mut self, path: &[String], span: &Span) -> Result<Node, ConfigError> {
        if self.chain.contains(span) {
            return Err(ConfigError::at(
                span,
                format!("{} is part of a circular chain", describe(path)),
            ));
        }
        if self.chain.len() >= MAX_NESTING {
            return Err(ConfigError::at(
                span,
                format!(
                    "{} is nested too deeply: at most {MAX_NESTING} levels of !reference are allowed",
                    describe(path)
                ),
            ));
        }
        let found = dig(self.config, path).ok_or_else(|| {
            ConfigError::at(span, format!("{} could not be found", describe(path)))
        })?;
        self.copied = self.copied.saturating_add(node_count(found));
        if self.copied > MAX_COPIED_NODES {
            return Err(ConfigError::at(span, TOO_BIG));
        }
        let mut copy = found.clone();
        self.chain.push(span.clone());
        let result = self.resolve_in(&mut copy);
        self.chain.pop();
        result.map(|()| copy)
    }
}

/// `config.dig(*path)`, then Ruby's `unless object`: a missing key, a path through something
/// that is not a mapping, `null` and `false` all count as "could not be found".
fn dig<'a>(config: &'a Node, path: &[String]) -> Option<&'a Node> {
    let mut here = config;
    for key in path {
        here = here.get(key)?;
    }
    match here.value {
        Value::Null | Value::Bool(false) => None,
        _ => Some(here),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn resolved(text: &str) -> Result<Node, String> {
        let mut n = parse_yaml(text, "r.yml").map_err(|e| e.to_string())?;
        resolve_references(&mut n).map_err(|e| e.to_string())?;
        Ok(n)
    }

    #[test]
    fn replaces_values_and_nests_arrays() {
        let n = resolved(
            ".setup:\n  script: [a, b]\n  variables: {X: '1'}\njob:\n  variables: !reference [.setup, variables]\n  script:\n    - !reference [.setup, script]\n    - c\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let job = n.get("job").unwrap_or(&n);
        assert_eq!(
            job.get("variables")
                .and_then(|v| v.get("X"))
                .and_then(Node::as_str),
            Some("1")
        );
        let script = job.get("script").and_then(Node::as_seq).unwrap_or_default();
        assert_eq!(script.len(), 2);
        assert_eq!(script[0].as_seq().map(<[Node]>::len), Some(2));
    }

    #[test]
    fn nested_references_resolve() {
        let n = resolved(
            ".a:\n  script: [a]\n.b:\n  script:\n    - !reference [.a, script]\n    - b\njob:\n  script: !reference [.b, script]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let script = n.get("job").and_then(|j| j.get("script")).cloned();
        let inner = script
            .as_ref()
            .and_then(Node::as_seq)
            .and_then(|s| s.first())
            .and_then(Node::as_seq)
            .and_then(|s| s.first())
            .and_then(Node::as_str);
        assert_eq!(inner, Some("a"));
    }

    #[test]
    fn missing_reference_message() {
        assert_eq!(
            resolved("job:\n  script: !reference [.setup, script]\n").err(),
            Some("r.yml:2:11: !reference [\".setup\", \"script\"] could not be found".into())
        );
        // Digging through a scalar, and a `false` value, are "not found" in GitLab too.
        assert!(resolved(".a: x\njob:\n  script: !reference [.a, b]\n")
            .is_err_and(|e| e.ends_with("could not be found")));
        assert!(resolved(".a: {f: false}\njob:\n  x: !reference [.a, f]\n")
            .is_err_and(|e| e.ends_with("could not be found")));
    }

    #[test]
    fn circular_chain_message() {
        let e = resolved(
            ".a:\n  script: [!reference [.b, script]]\n.b:\n  script: [!reference [.a, script]]\n",
        )
        .err()
        .unwrap_or_default();
        assert!(e.ends_with("is part of a circular chain"), "{e}");
        let e = resolved(".a:\n  x: !reference [.a]\n")
            .err()
            .unwrap_or_default();
        assert!(e.ends_with("is part of a circular chain"), "{e}");
    }

    /// A configuration of `n` jobs using references, plus `extras` lines before the job at
    /// each position.
    fn many_jobs(n: usize, extras: &[(usize, &str)]) -> Node {
        let mut text = String::from(".a: {script: [a, b], rules: [{if: $X}]}\n");
        for i in 0..n {
            for (_, extra) in extras.iter().filter(|(at, _)| *at == i) {
                text.push_str(extra);
            }
            text.push_str(&format!(
                "job-{i}:\n  script: [!reference [.a, script], echo {i}]\n  rules: !reference [.a, rules]\n"
            ));
        }
        parse_yaml(&text, "r.yml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn split_collection_matches_one_thread() {
        let cases = [
            (0, ""),
            (10, "bad: !reference [.missing]\n"),
            (900, "bad: !reference [.missing]\n"),
            (900, ".c: {x: !reference [.c, x]}\n"),
        ];
        for (at, extra) in cases {
            let root = many_jobs(1000, &[(at, extra)]);
            let one = collect_all(&root, false);
            let two = collect_all(&root, true);
            assert_eq!(one, two, "{at} {extra:?}");
            assert_eq!(one.is_ok(), extra.is_empty(), "{at} {extra:?}");
        }
        // Errors in both halves: the first one in document order wins.
        let root = many_jobs(
            1000,
            &[
                (10, "bad: !reference [.first]\n"),
                (900, "worse: !reference [.second]\n"),
            ],
        );
        let e = collect_all(&root, true).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains(".first")));
    }

    #[test]
    fn nesting_limit() {
        let mut text = String::from(".l0: {v: [x]}\n");
        for i in 1..=12 {
            text.push_str(&format!(".l{i}: {{v: [!reference [.l{}, v]]}}\n", i - 1));
        }
        text.push_str("job: {v: !reference [.l12, v]}\n");
        let e = resolved(&text).err().unwrap_or_default();
        assert!(e.contains("nested too deeply"), "{e}");
        let mut ok = String::from(".l0: {v: [x]}\n");
        for i in 1..=8 {
            ok.push_str(&format!(".l{i}: {{v: [!reference [.l{}, v]]}}\n", i - 1));
        }
        ok.push_str("job: {v: !reference [.l8, v]}\n");
        assert!(resolved(&ok).is_ok());
    }
}
