//! `include:rules`: `if`, `exists`, `changes`, `when` (`always`/`never`); the first rule that
//! matches decides, none matching leaves the file out, no rules includes it.

use super::super::error::ConfigError;
use super::super::expand::expand;
use super::super::value::{Node, Value};
use super::files;

const RULE_KEYS: &[&str] = &["if", "exists", "changes", "when"];

/// Where `exists` looks: the project of the file holding the `include`, or another mapped one.
pub trait ExistsRoot {
    fn root_for(&self, project: Option<&str>, at: &Node)
        -> Result<std::path::PathBuf, ConfigError>;
}

/// Whether an include with these `rules` is included.
pub fn included(
    rules: &Node,
    vars: &[(String, String)],
    roots: &dyn ExistsRoot,
    changed: Option<&[String]>,
) -> Result<bool, ConfigError> {
    let Some(list) = rules.as_seq() else {
        return Err(ConfigError::at(
            &rules.span,
            "include rules should be an array of hashes",
        ));
    };
    for rule in list {
        let Some(map) = rule.as_map() else {
            return Err(ConfigError::at(&rule.span, "include rule should be a hash"));
        };
        let unknown: Vec<&str> = map
            .keys()
            .map(|k| k.name.as_str())
            .filter(|k| !RULE_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::at(
                &rule.span,
                format!(
                    "include rule config contains unknown keys: {}",
                    unknown.join(", ")
                ),
            ));
        }
        let when = match rule.get("when") {
            None => None,
            Some(w) => match &w.value {
                Value::Null => None,
                Value::String(s) if s == "always" || s == "never" => Some(s.as_str()),
                _ => {
                    return Err(ConfigError::at(
                        &w.span,
                        format!(
                            "include rule when unknown value: {}",
                            w.scalar_string().unwrap_or_default()
                        ),
                    ))
                }
            },
        };
        if matches(rule, vars, roots, changed)? {
            return Ok(when != Some("never"));
        }
    }
    Ok(false)
}

fn matches(
    rule: &Node,
    vars: &[(String, String)],
    roots: &dyn ExistsRoot,
    changed: Option<&[String]>,
) -> Result<bool, ConfigError> {
    if let Some(cond) = rule.get("if") {
        let Some(src) = cond.as_str() else {
            return Err(ConfigError::at(
                &cond.span,
                "include rule if should be a string",
            ));
        };
        // GitLab words every syntax error the same, without the parser's detail.
        let ok = super::condition::evaluate_if(src, vars).map_err(|_| {
            ConfigError::at(&cond.span, "include rule if invalid expression syntax")
        })?;
        if !ok {
            return Ok(false);
        }
    }
    if let Some(exists) = rule.get("exists") {
        if !exists_matches(exists, vars, roots)? {
            return Ok(false);
        }
    }
    // Without a diff (GitLab: new branches, web/schedule pipelines…) `changes` matches.
    if let (Some(changes), Some(changed)) = (rule.get("changes"), changed) {
        if !changes_match(changes, vars, changed)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `changes: [globs]` or `changes: {paths: [globs]}` against the changed files, matched like
/// GitLab's `File.fnmatch?` with `FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB`.
fn changes_match(
    changes: &Node,
    vars: &[(String, String)],
    changed: &[String],
) -> Result<bool, ConfigError> {
    let paths = match &changes.value {
        Value::Map(_) => changes.get("paths"),
        _ => Some(changes),
    };
    let patterns: Vec<String> = match paths.map(|p| &p.value) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(Node::as_str)
            .map(str::to_string)
            .collect(),
        _ => {
            return Err(ConfigError::at(
                &changes.span,
                "include rule changes should be an array of strings or a hash with `paths`",
            ))
        }
    };
    for pattern in patterns {
        let pattern = expand(&pattern, vars);
        let glob = files::fnmatch(pattern.trim_start_matches('/')).ok_or_else(|| {
            ConfigError::at(
                &changes.span,
                format!("include rule changes: invalid pattern `{pattern}`"),
            )
        })?;
        if changed.iter().any(|f| glob.is_match(f)) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn exists_matches(
    exists: &Node,
    vars: &[(String, String)],
    roots: &dyn ExistsRoot,
) -> Result<bool, ConfigError> {
    let (paths, project) = match &exists.value {
        Value::Map(_) => (
            exists.get("paths").cloned(),
            exists.get("project").and_then(Node::as_str),
        ),
        _ => (Some(exists.clone()), None),
    };
    let patterns: Vec<String> = match paths.as_ref().map(|p| &p.value) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(Node::as_str)
            .map(str::to_string)
            .collect(),
        _ => {
            return Err(ConfigError::at(
                &exists.span,
                "include rule exists should be an array of strings or a hash with `paths`",
            ))
        }
    };
    let root = roots.root_for(project, exists)?;
    let mut listing: Option<Vec<String>> = None;
    for pattern in patterns {
        let pattern = expand(&pattern, vars);
        let pattern = pattern.trim_start_matches('/');
        if !pattern.contains(['*', '?', '[', '{']) {
            if files::inside(&root, pattern).is_some_and(|p| p.is_file()) {
                return Ok(true);
            }
            continue;
        }
        let glob = files::fnmatch(pattern).ok_or_else(|| {
            ConfigError::at(
                &exists.span,
                format!("include rule exists: invalid pattern `{pattern}`"),
            )
        })?;
        let all = listing.get_or_insert_with(|| files::list(&root));
        if all.iter().any(|f| glob.is_match(f)) {
            return Ok(true);
        }
    }
    Ok(false)
}
