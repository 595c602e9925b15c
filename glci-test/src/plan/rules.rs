//! `rules:` evaluation (`Gitlab::Ci::Build::Rules`): the first rule whose clauses (`if`,
//! `changes`, `exists`) all hold decides.

use crate::plan::StrMap;

use super::changes::GlobCache;
use super::condition;
use super::model::{Changes, Rule};
use super::scope::Scope;

/// What rule clauses are evaluated against.
pub struct RuleEnv<'a> {
    pub scope: &'a Scope<'a>,
    /// `None`: no changed-file set (every `changes` clause holds).
    pub changed_files: Option<&'a [String]>,
    /// `compare_to` ref → files changed since its merge base.
    pub compare_to: &'a StrMap<Vec<String>>,
    pub files: &'a [String],
    pub globs: &'a GlobCache,
}

/// A rule that can not be evaluated (GitLab: "Failed to parse rule for <job>: <msg>").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rules:changes:compare_to is not a valid ref: {0}")]
    CompareToNotARef(String),
}

/// The first matching rule, `Ok(None)` when none matches, `Err` for a rule that can not be
/// evaluated.
pub fn first_match<'r>(
    rules: &'r [Rule],
    env: &RuleEnv<'_>,
) -> Result<Option<&'r Rule>, RuleError> {
    for rule in rules {
        if matches(rule, env)? {
            return Ok(Some(rule));
        }
    }
    Ok(None)
}

fn matches(rule: &Rule, env: &RuleEnv<'_>) -> Result<bool, RuleError> {
    if let Some(expr) = &rule.if_ {
        if !condition::evaluate(expr, env.scope) {
            return Ok(false);
        }
    }
    if let Some(changes) = &rule.changes {
        if !changed(changes, env)? {
            return Ok(false);
        }
    }
    if let Some(exists) = &rule.exists {
        let paths: Vec<String> = exists
            .iter()
            .map(|p| condition::expand_existing(p, env.scope))
            .collect();
        if !env.globs.any_exists(&paths, env.files) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn changed(changes: &Changes, env: &RuleEnv<'_>) -> Result<bool, RuleError> {
    let paths: Vec<String> = changes
        .paths
        .iter()
        .map(|p| condition::expand_existing(p, env.scope))
        .collect();
    match &changes.compare_to {
        Some(reference) => {
            let reference = condition::expand_existing(reference, env.scope);
            match env.compare_to.get(&reference) {
                Some(files) => Ok(env.globs.any_changed(&paths, Some(files))),
                None => Err(RuleError::CompareToNotARef(reference)),
            }
        }
        None => Ok(env.globs.any_changed(&paths, env.changed_files)),
    }
}
