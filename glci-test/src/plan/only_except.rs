//! `only:` / `except:` (`Gitlab::Ci::Build::Policy::{Refs, Variables, Changes, Kubernetes}`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use regex::Regex;

use super::changes::GlobCache;
use super::condition;
use super::model::Policy;
use super::scope::Scope;
use super::{Event, PipelineSource};
use crate::expr::Expression;

/// `/body/flags` → (body, flags) when the item is written as a regexp.
pub fn split_regex(item: &str) -> Option<(&str, &str)> {
    let rest = item.strip_prefix('/')?;
    let end = rest.rfind('/')?;
    let (body, flags) = (&rest[..end], &rest[end + 1..]);
    (!body.is_empty() && flags.chars().all(|c| "ismxU".contains(c))).then_some((body, flags))
}

/// Compiles an RE2-syntax regexp with Ruby-style flags; `None` when RE2 rejects it.
pub fn compile(body: &str, flags: &str) -> Option<Regex> {
    let flags: String = flags.chars().filter(|c| "imsU".contains(*c)).collect();
    let src = if flags.is_empty() {
        body.to_string()
    } else {
        format!("(?{flags}){body}")
    };
    Regex::new(&src).ok()
}

/// What a policy is evaluated against; regexps are compiled once per planning run.
pub struct PolicyEnv<'a> {
    pub event: &'a Event,
    pub project_path: &'a str,
    pub scope: &'a Scope<'a>,
    pub changed_files: Option<&'a [String]>,
    pub globs: &'a GlobCache,
    pub regexes: &'a RegexCache,
}

/// Compiled `only`/`except` ref regexps by `flags/body`, kept with the configuration.
#[derive(Default)]
pub struct RegexCache {
    compiled: Mutex<HashMap<String, Option<Regex>>>,
}

impl fmt::Debug for RegexCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RegexCache")
    }
}

impl RegexCache {
    fn is_match(&self, body: &str, flags: &str, text: &str) -> Option<bool> {
        let mut map = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("{flags}/{body}");
        let re = map.entry(key).or_insert_with(|| compile(body, flags));
        re.as_ref().map(|r| r.is_match(text))
    }
}

/// Whether every key of the policy is satisfied (`only`); for `except`, callers negate
/// [`any_satisfied`].
pub fn all_satisfied(policy: &Policy, env: &PolicyEnv<'_>) -> bool {
    policy.refs.as_ref().is_none_or(|r| refs(r, env))
        && policy.variables.as_ref().is_none_or(|v| variables(v, env))
        && policy
            .changes
            .as_ref()
            .is_none_or(|c| env.globs.any_changed(c, env.changed_files))
        && policy.kubernetes.is_none()
}

/// Whether any key of the policy is satisfied (an `except` that excludes the job).
pub fn any_satisfied(policy: &Policy, env: &PolicyEnv<'_>) -> bool {
    policy.refs.as_ref().is_some_and(|r| refs(r, env))
        || policy.variables.as_ref().is_some_and(|v| variables(v, env))
        || policy
            .changes
            .as_ref()
            .is_some_and(|c| env.globs.any_changed(c, env.changed_files))
}

fn variables(exprs: &[Expression], env: &PolicyEnv<'_>) -> bool {
    exprs.iter().any(|e| condition::evaluate(e, env.scope))
}

fn pluralize(word: &str) -> String {
    if ["s", "sh", "ch", "x"].iter().any(|s| word.ends_with(s)) {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

fn refs(items: &[String], env: &PolicyEnv<'_>) -> bool {
    let event = env.event;
    let is_mr = event.source == PipelineSource::MergeRequestEvent;
    let is_tag = !is_mr && event.tag.is_some();
    let is_branch = !is_mr && !is_tag;
    let ref_name = if is_tag {
        event.tag.as_deref()
    } else {
        event.branch.as_deref()
    }
    .unwrap_or("");
    let source = event.source.as_str();
    let source = source.strip_suffix("_event").unwrap_or(source);
    items.iter().any(|item| {
        let (pattern, path) = match item.split_once('@') {
            Some((p, path)) if split_regex(item).is_none() => (p, Some(path)),
            _ => (item.as_str(), None),
        };
        if path.is_some_and(|p| p != env.project_path) {
            return false;
        }
        if (is_tag && pattern == "tags") || (is_branch && pattern == "branches") {
            return true;
        }
        if source == pattern || pluralize(source) == pattern {
            return true;
        }
        if !(is_branch || is_tag) {
            return false;
        }
        if let Some((body, flags)) = split_regex(pattern) {
            if let Some(matched) = env.regexes.is_match(body, flags, ref_name) {
                return matched;
            }
        }
        pattern == ref_name
    })
}
