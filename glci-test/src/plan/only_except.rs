//! `only:` / `except:` (`Gitlab::Ci::Build::Policy::{Refs, Variables, Changes, Kubernetes}`).

use super::changes::GlobCache;
use super::condition;
use super::model::Policy;
use super::regexp::{split_regex, RegexCache};
use super::scope::Scope;
use super::{Event, PipelineSource};
use crate::expr::Expression;

/// What a policy is evaluated against; regexps are compiled once per planning run.
pub struct PolicyEnv<'a> {
    pub event: &'a Event,
    pub project_path: &'a str,
    pub scope: &'a Scope<'a>,
    pub changed_files: Option<&'a [String]>,
    pub globs: &'a GlobCache,
    pub regexes: &'a RegexCache,
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
