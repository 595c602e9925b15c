//! Which top-level entries are jobs, as `Entry::Root#filter_jobs!` decides, and dropping the
//! hidden ones (`.name`) once `extends`, `!reference` and anchors have used them.

use super::error::ConfigError;
use super::keywords::RESERVED;
use super::value::{Mapping, Node, Value};

/// What a top-level entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A global keyword (`variables`, `stages`, `default`, `workflow`, …).
    Global,
    /// `.name`: a template, never run.
    Hidden,
    /// A hash with `script` or `run`.
    Job,
    /// A hash with `trigger` or `needs` (a trigger job).
    Bridge,
    /// Not a keyword and not recognisably a job; GitLab's validation rejects it.
    Unknown,
}

fn looks_like(value: &Node, keys: &[&str]) -> bool {
    value
        .as_map()
        .is_some_and(|m| keys.iter().any(|k| m.contains_key(*k)))
}

/// Classifies one top-level entry; `default` and `workflow` are jobs if they look like one.
pub fn entry_kind(name: &str, value: &Node) -> EntryKind {
    if RESERVED.contains(&name) {
        return EntryKind::Global;
    }
    if name.starts_with('.') {
        return EntryKind::Hidden;
    }
    if looks_like(value, &["script", "run"]) {
        return EntryKind::Job;
    }
    if looks_like(value, &["trigger", "needs"]) {
        return EntryKind::Bridge;
    }
    if matches!(name, "default" | "workflow" | "spec") {
        return EntryKind::Global;
    }
    EntryKind::Unknown
}

/// Removes hidden entries, refusing blank ones as GitLab does (`.x:` or `.x: {}`).
pub fn drop_hidden(root: &mut Node) -> Result<(), ConfigError> {
    let Value::Map(map) = &mut root.value else {
        return Ok(());
    };
    for (key, value) in map.iter() {
        if entry_kind(&key.name, value) == EntryKind::Hidden && is_blank(value) {
            return Err(ConfigError::at(
                &key.span,
                format!("jobs:{} config can't be blank", key.name),
            ));
        }
    }
    map.retain(|k, v| entry_kind(&k.name, v) != EntryKind::Hidden);
    Ok(())
}

fn is_blank(value: &Node) -> bool {
    match &value.value {
        Value::Null => true,
        Value::Map(m) => m.is_empty(),
        Value::Seq(s) => s.is_empty(),
        Value::String(s) => s.trim().is_empty(),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// The jobs of a mapping, in order (script and trigger jobs, not hidden/global/unknown).
pub fn jobs_mut(map: &mut Mapping) -> impl Iterator<Item = (&str, EntryKind, &mut Node)> {
    map.iter_mut().filter_map(|(k, v)| {
        let kind = entry_kind(&k.name, v);
        matches!(kind, EntryKind::Job | EntryKind::Bridge).then_some((k.name.as_str(), kind, v))
    })
}
