//! Readers for the value shapes jobs and workflow share (variables, rules, needs, lists),
//! each reporting GitLab's entry message at the node's span.

use crate::plan::StrMap;

use super::{Changes, MatrixEntry, Need, Parallel, Policy, Rule, Variable, When, Workflow};
use crate::config::{Node, Value};
use crate::expr::Expression;
use crate::plan::lint::LintError;

/// How deep `script`-like arrays may nest (`Entry::Commands`).
const MAX_NESTING: usize = 10;

/// Flattens a string or nested array of strings into `out`; false on any other shape.
pub fn flatten_strings(node: &Node, depth: usize, out: &mut Vec<String>) -> bool {
    match &node.value {
        Value::String(s) => {
            out.push(s.clone());
            true
        }
        Value::Seq(items) if depth < MAX_NESTING => {
            items.iter().all(|i| flatten_strings(i, depth + 1, out))
        }
        _ => false,
    }
}

/// `script`, `before_script`, `after_script`.
pub fn commands(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Vec<String> {
    let mut out = Vec::new();
    if !flatten_strings(node, 0, &mut out) {
        errors.push(LintError::entry(
            &node.span,
            loc,
            "config should be a string or a nested array of strings up to 10 levels deep",
        ));
    }
    out
}

/// A string or an array of strings (`extends`, `tags`, `dependencies`, `exists`...).
pub fn string_list(node: &Node, loc: &str, what: &str, errors: &mut Vec<LintError>) -> Vec<String> {
    match &node.value {
        Value::String(s) => vec![s.clone()],
        Value::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => {
                        errors.push(LintError::entry(&item.span, loc, what));
                        break;
                    }
                }
            }
            out
        }
        _ => {
            errors.push(LintError::entry(&node.span, loc, what));
            Vec::new()
        }
    }
}

/// Scalar as GitLab stringifies it (`true` → `"true"`), or an error.
pub fn scalar(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<String> {
    match &node.value {
        Value::Seq(_) | Value::Map(_) | Value::Reference(_) => {
            errors.push(LintError::entry(&node.span, loc, "should be a string"));
            None
        }
        _ => node.scalar_string(),
    }
}

pub fn bool_value(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<bool> {
    let b = node.as_bool();
    if b.is_none() {
        errors.push(LintError::entry(
            &node.span,
            loc,
            "should be a boolean value",
        ));
    }
    b
}

/// `variables:` at top level (`top`: description/options allowed) or in a job.
pub fn variables(
    node: &Node,
    loc: &str,
    top: bool,
    errors: &mut Vec<LintError>,
) -> StrMap<Variable> {
    let mut out = StrMap::default();
    if matches!(node.value, Value::Null) {
        return out;
    }
    let Some(map) = node.as_map() else {
        errors.push(LintError::entry(
            &node.span,
            loc,
            "config should be a hash of key value pairs",
        ));
        return out;
    };
    for (key, value) in map {
        let var = match &value.value {
            Value::Map(fields) => {
                let allowed: &[&str] = if top {
                    &["value", "description", "expand", "options"]
                } else {
                    &["value", "expand"]
                };
                let bad: Vec<&str> = fields
                    .keys()
                    .map(|k| k.name.as_str())
                    .filter(|k| !allowed.contains(k))
                    .collect();
                if !bad.is_empty() {
                    errors.push(LintError::entry(
                        &value.span,
                        loc,
                        &format!("config uses invalid data keys: {}", bad.join(", ")),
                    ));
                    continue;
                }
                let text = fields
                    .get("value")
                    .and_then(|v| scalar(v, &format!("{loc}:{}", key.name), errors))
                    .unwrap_or_default();
                let expand = fields.get("expand").and_then(Node::as_bool).unwrap_or(true);
                if let Some(options) = fields.get("options").and_then(Node::as_seq) {
                    let opts: Vec<String> =
                        options.iter().filter_map(Node::scalar_string).collect();
                    if !opts.contains(&text) {
                        errors.push(LintError::entry(
                            &value.span,
                            loc,
                            "config value must be present in options",
                        ));
                    }
                }
                Variable {
                    value: text,
                    expand,
                }
            }
            Value::Seq(_) | Value::Reference(_) => {
                errors.push(LintError::entry(
                    &value.span,
                    loc,
                    "config should be a hash of key value pairs, value can be a hash",
                ));
                continue;
            }
            _ => Variable::plain(value.scalar_string().unwrap_or_default()),
        };
        out.insert(key.name.clone(), var);
    }
    out
}

/// `rules:variables`, `services:variables`: scalars only.
pub fn plain_variables(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> StrMap<String> {
    let mut out = StrMap::default();
    let Some(map) = node.as_map() else {
        if !matches!(node.value, Value::Null) {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "config should be a hash of key value pairs",
            ));
        }
        return out;
    };
    for (key, value) in map {
        if let Some(v) = scalar(value, &format!("{loc}:{}", key.name), errors) {
            out.insert(key.name.clone(), v);
        }
    }
    out
}

pub fn when(node: &Node, loc: &str, allowed: &[When], errors: &mut Vec<LintError>) -> Option<When> {
    let parsed = node.as_str().and_then(When::parse);
    match parsed {
        Some(w) if allowed.contains(&w) => Some(w),
        _ => {
            let names: Vec<&str> = allowed.iter().map(|w| w.as_str()).collect();
            errors.push(LintError::entry(
                &node.span,
                loc,
                &format!("when should be one of: {}", names.join(", ")),
            ));
            None
        }
    }
}

const JOB_RULE_KEYS: [&str; 9] = [
    "if",
    "changes",
    "exists",
    "when",
    "start_in",
    "allow_failure",
    "variables",
    "needs",
    "interruptible",
];

const RULE_WHEN: [When; 6] = [
    When::OnSuccess,
    When::OnFailure,
    When::Always,
    When::Never,
    When::Manual,
    When::Delayed,
];

/// `rules:` of a job (`workflow`: only `always|never` for `when`).
pub fn rules(node: &Node, loc: &str, workflow: bool, errors: &mut Vec<LintError>) -> Vec<Rule> {
    let mut items = Vec::new();
    flatten_rules(node, 0, &mut items);
    if items.is_empty() {
        errors.push(LintError::entry(&node.span, loc, "rules can't be blank"));
        return Vec::new();
    }
    let rule_loc = format!("{loc}:rules:rule");
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(map) = item.as_map() else {
            errors.push(LintError::entry(
                &item.span,
                &format!("{loc}:rules"),
                "config should be an array of hashes",
            ));
            continue;
        };
        let mut keys: Vec<&str> = JOB_RULE_KEYS.to_vec();
        if workflow {
            keys.push("auto_cancel");
        }
        errors.extend(LintError::unknown_keys(
            &item.span,
            &rule_loc,
            map.keys().map(|k| k.name.as_str()),
            &keys,
        ));
        let mut rule = Rule {
            span: item.span.clone(),
            ..Rule::default()
        };
        if let Some(n) = map.get("if") {
            match n.as_str().map(Expression::parse) {
                Some(Ok(e)) => rule.if_ = Some(e),
                Some(Err(_)) => errors.push(LintError::entry(
                    &n.span,
                    &rule_loc,
                    "if invalid expression syntax",
                )),
                None => errors.push(LintError::entry(
                    &n.span,
                    &rule_loc,
                    "if should be a string",
                )),
            }
        }
        if let Some(n) = map.get("changes") {
            rule.changes = Some(changes(n, &rule_loc, errors));
        }
        if let Some(n) = map.get("exists") {
            let paths = match n.get("paths") {
                Some(p) => p,
                None => n,
            };
            rule.exists = Some(string_list(
                paths,
                &rule_loc,
                "exists should be an array of strings",
                errors,
            ));
        }
        if let Some(n) = map.get("when") {
            let w = match n.as_str().and_then(When::parse) {
                Some(w) if !workflow || matches!(w, When::Always | When::Never) => Some(w),
                _ => {
                    let shown = n.scalar_string().unwrap_or_default();
                    errors.push(LintError::entry(
                        &n.span,
                        &rule_loc,
                        &format!("when unknown value: {shown}"),
                    ));
                    None
                }
            };
            rule.when = w.filter(|w| RULE_WHEN.contains(w));
        }
        if let Some(n) = map.get("start_in") {
            rule.start_in = scalar(n, &rule_loc, errors);
        }
        if let Some(n) = map.get("allow_failure") {
            rule.allow_failure = bool_value(n, &format!("{rule_loc} allow_failure"), errors);
        }
        if let Some(n) = map.get("interruptible") {
            rule.interruptible = bool_value(n, &format!("{rule_loc} interruptible"), errors);
        }
        if let Some(n) = map.get("variables") {
            rule.variables = plain_variables(n, &format!("{rule_loc}:variables"), errors);
        }
        if let Some(n) = map.get("needs") {
            rule.needs = Some(needs(n, &format!("{rule_loc}:needs"), errors));
        }
        if !workflow {
            if rule.when == Some(When::Delayed) && rule.start_in.is_none() {
                errors.push(LintError::entry(
                    &item.span,
                    &rule_loc,
                    "start_in should be a duration",
                ));
            }
            if let (Some(When::Delayed), Some(start_in)) = (rule.when, &rule.start_in) {
                if let Some(message) = start_in_error(start_in) {
                    errors.push(LintError::entry(&item.span, &rule_loc, message));
                }
            }
            if rule.start_in.is_some() && rule.when != Some(When::Delayed) {
                errors.push(LintError::entry(
                    &item.span,
                    &rule_loc,
                    "start_in must be blank",
                ));
            }
        }
        out.push(rule);
    }
    out
}

/// `rules` may nest arrays (from `!reference`) up to 10 levels; they are flattened.
fn flatten_rules<'a>(node: &'a Node, depth: usize, out: &mut Vec<&'a Node>) {
    match &node.value {
        Value::Seq(items) if depth < MAX_NESTING => {
            for i in items {
                flatten_rules(i, depth + 1, out);
            }
        }
        _ if depth > 0 => out.push(node),
        _ => {}
    }
}

/// `changes:` as an array or `{paths, compare_to}`.
pub fn changes(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Changes {
    if let Some(map) = node.as_map() {
        let paths = map
            .get("paths")
            .map(|p| {
                string_list(
                    p,
                    loc,
                    "changes paths should be an array of strings",
                    errors,
                )
            })
            .unwrap_or_default();
        let compare_to = map.get("compare_to").and_then(|c| scalar(c, loc, errors));
        return Changes { paths, compare_to };
    }
    Changes {
        paths: string_list(node, loc, "changes should be an array of strings", errors),
        compare_to: None,
    }
}

/// `needs:` items.
pub fn needs(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Vec<Need> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Map(_) | Value::String(_) => vec![node],
        _ => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "config should be an array",
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match &item.value {
            Value::String(s) => out.push(Need {
                job: s.clone(),
                artifacts: true,
                optional: false,
                matrix: None,
                external: false,
                pipeline: false,
                span: item.span.clone(),
            }),
            Value::Map(map) => {
                let external = map.contains_key("project") || map.contains_key("pipeline");
                let job = map.get("job").and_then(Node::as_str);
                let Some(job) = job.or(if external { Some("") } else { None }) else {
                    errors.push(LintError::entry(
                        &item.span,
                        loc,
                        "job config missing required keys: job",
                    ));
                    continue;
                };
                let artifacts = map.get("artifacts").and_then(Node::as_bool).unwrap_or(true);
                let optional = map.get("optional").and_then(Node::as_bool).unwrap_or(false);
                let mut matrix = None;
                if let Some(p) = map.get("parallel") {
                    match p.get("matrix") {
                        Some(m) => {
                            if optional {
                                errors.push(LintError::entry(
                                    &item.span,
                                    loc,
                                    "config key optional cannot be used with parallel:matrix",
                                ));
                            }
                            matrix = Some(matrix_entries(m, &format!("{loc}:parallel"), errors));
                        }
                        None => errors.push(LintError::entry(
                            &p.span,
                            &format!("{loc}:parallel"),
                            "cannot use \"parallel: <number>\".",
                        )),
                    }
                }
                out.push(Need {
                    job: job.to_string(),
                    artifacts,
                    optional,
                    matrix,
                    external,
                    pipeline: map.contains_key("pipeline"),
                    span: item.span.clone(),
                });
            }
            _ => errors.push(LintError::entry(
                &item.span,
                loc,
                "config should be a string or a hash",
            )),
        }
    }
    out
}

/// `parallel:` as a count (1..=200) or a matrix.
pub fn parallel(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<Parallel> {
    match &node.value {
        Value::Int(n) if (1..=200).contains(n) => u32::try_from(*n).ok().map(Parallel::Count),
        Value::Int(_) => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "config must be less than or equal to 200",
            ));
            None
        }
        Value::Map(m) => match m.get("matrix") {
            Some(matrix) => {
                let entries = matrix_entries(matrix, &format!("{loc}:matrix"), errors);
                let total: usize = entries
                    .iter()
                    .map(|e| e.values().map(Vec::len).product::<usize>())
                    .sum();
                if total > 200 {
                    errors.push(LintError::entry(
                        &matrix.span,
                        &format!("{loc}:matrix"),
                        "config generates too many jobs (maximum is 200)",
                    ));
                    return None;
                }
                Some(Parallel::Matrix(entries))
            }
            None => {
                errors.push(LintError::entry(
                    &node.span,
                    loc,
                    "config missing required keys: matrix",
                ));
                None
            }
        },
        _ => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "should be an integer or a hash",
            ));
            None
        }
    }
}

/// Matrix entries: each a hash of name → value or list of values (strings or integers).
pub fn matrix_entries(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Vec<MatrixEntry> {
    let Some(items) = node.as_seq() else {
        errors.push(LintError::entry(
            &node.span,
            loc,
            "should be an array of hashes",
        ));
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(map) = item.as_map() else {
            errors.push(LintError::entry(
                &item.span,
                loc,
                "should be an array of hashes",
            ));
            continue;
        };
        let mut entry = MatrixEntry::default();
        for (k, v) in map {
            let values: Vec<&Node> = match &v.value {
                Value::Seq(vs) => vs.iter().collect(),
                _ => vec![v],
            };
            let mut strings = Vec::with_capacity(values.len());
            for value in values {
                match &value.value {
                    Value::String(s) => strings.push(s.clone()),
                    Value::Int(i) => strings.push(i.to_string()),
                    _ => {
                        errors.push(LintError::entry(
                            &value.span,
                            &format!("{loc}:{}", k.name),
                            "config should be a string, an integer or an array of them",
                        ));
                    }
                }
            }
            entry.insert(k.name.clone(), strings);
        }
        out.push(entry);
    }
    out
}

/// `only:` / `except:` in array or hash form.
pub fn policy(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<Policy> {
    match &node.value {
        Value::Seq(_) | Value::String(_) => Some(Policy {
            refs: Some(refs(node, loc, errors)),
            ..Policy::default()
        }),
        Value::Map(map) => {
            errors.extend(LintError::unknown_keys(
                &node.span,
                loc,
                map.keys().map(|k| k.name.as_str()),
                &["refs", "variables", "changes", "kubernetes"],
            ));
            Some(Policy {
                refs: map
                    .get("refs")
                    .map(|r| refs(r, &format!("{loc}:refs"), errors)),
                variables: map.get("variables").map(|v| {
                    let vloc = format!("{loc}:variables");
                    string_list(v, &vloc, "config should be an array of strings", errors)
                        .iter()
                        .filter_map(|src| match Expression::parse(src) {
                            Ok(e) => Some(e),
                            Err(_) => {
                                errors.push(LintError::entry(
                                    &v.span,
                                    &vloc,
                                    "config should be valid expressions",
                                ));
                                None
                            }
                        })
                        .collect()
                }),
                changes: map.get("changes").map(|c| changes(c, loc, errors).paths),
                kubernetes: map.get("kubernetes").and_then(Node::scalar_string),
            })
        }
        Value::Null => None,
        _ => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "has to be either an array of conditions or a hash",
            ));
            None
        }
    }
}

fn refs(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Vec<String> {
    const MSG: &str =
        "config should be an array of strings or regular expressions using re2 syntax";
    let list = string_list(node, loc, MSG, errors);
    for item in &list {
        if let Some((body, flags)) = crate::plan::regexp::split_regex(item) {
            if crate::plan::regexp::compile(body, flags).is_none() {
                errors.push(LintError::entry(&node.span, loc, MSG));
                break;
            }
        }
    }
    list
}

/// `workflow:`.
pub fn workflow(node: &Node, errors: &mut Vec<LintError>) -> Workflow {
    let mut wf = Workflow::default();
    let Some(map) = node.as_map() else {
        if !matches!(node.value, Value::Null) {
            errors.push(LintError::entry(
                &node.span,
                "workflow",
                "config should be a hash",
            ));
        }
        return wf;
    };
    for (k, v) in map {
        match k.name.as_str() {
            "rules" => wf.rules = Some(rules(v, "workflow", true, errors)),
            "name" => wf.name = scalar(v, "workflow name", errors),
            "auto_cancel" => {}
            other => errors.push(LintError::entry(
                &k.span,
                "workflow",
                &format!("config contains unknown keys: {other}"),
            )),
        }
    }
    wf
}

/// GitLab's `DurationValidator` with `limit: '1 week'` on a delayed job's or rule's
/// `start_in`: the message for a value that is no duration or waits longer than a week.
pub fn start_in_error(start_in: &str) -> Option<&'static str> {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 60 * 60);
    match crate::pipeline::duration::parse_duration(start_in) {
        None => Some("start_in should be a duration"),
        Some(d) if d > LIMIT => Some("start_in should not exceed the limit"),
        Some(_) => None,
    }
}
