//! `spec:inputs` and `$[[ … ]]` interpolation, as GitLab's `Interpolation::Template` applies it
//! to one file before includes are merged: inputs are checked against the header (type,
//! default, options, regex), then every string and every key of the content is interpolated.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::error::ConfigError;
use super::expand::expand_existing;
use super::value::ruby_float;
use super::value::{Key, Mapping, Node, Span, Value};
use crate::expr::Expression;

/// GitLab's limits on interpolation.
pub const MAX_BLOCKS: usize = 10_000;
pub const MAX_BLOCK_BYTES: usize = 1024;
pub const MAX_NODE_BYTES: usize = 1024 * 1024;
pub const MAX_FUNCTIONS: usize = 3;
pub const MAX_OPTIONS: usize = 50;

static BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\[\[\s*(\S.*?\S)\s*\]\]").unwrap_or_else(|e| panic!("built-in regex: {e}"))
});
static ACCESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(inputs|component)\.([a-zA-Z0-9_-]+)((?:\[\d+\])*)$")
        .unwrap_or_else(|e| panic!("built-in regex: {e}"))
});

/// What `$[[ component.* ]]` can name for a component include.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentInfo {
    pub name: String,
    pub sha: String,
    pub version: String,
    pub reference: String,
}

/// Everything one file's interpolation needs besides its own text.
pub struct Context<'a> {
    /// Variables for `| expand_vars`.
    pub variables: &'a [(String, String)],
    pub component: Option<&'a ComponentInfo>,
    /// Where the inputs were given (the `include:` entry), for input errors.
    pub given_at: &'a Span,
}

/// Checks `provided` against the header and interpolates `content`. Without a header the
/// content is returned as written (GitLab interpolates only files with a `spec:`).
pub fn interpolate(
    header: Option<&Node>,
    content: Node,
    provided: &Mapping,
    ctx: &Context<'_>,
) -> Result<Node, ConfigError> {
    let Some(header) = header else {
        if !provided.is_empty() {
            return Err(ConfigError::at(
                ctx.given_at,
                "Given inputs not defined in the `spec` section of the included configuration file",
            ));
        }
        return Ok(content);
    };
    let spec = header.get("spec");
    if let Some(include) = spec.and_then(|s| s.get("include")) {
        // Failing loudly beats reporting the inputs it would define as missing.
        return Err(ConfigError::at(
            &include.span,
            "`spec:include` (inputs from external files) is not supported by glci yet",
        ));
    }
    let inputs = resolve_inputs(spec, provided, ctx)?;
    let allowed_component: Vec<String> = spec
        .and_then(|s| s.get("component"))
        .and_then(Node::as_seq)
        .map(|items| items.iter().filter_map(Node::scalar_string).collect())
        .unwrap_or_default();
    let mut state = Interpolator {
        inputs: &inputs,
        allowed_component: &allowed_component,
        ctx,
        blocks: 0,
    };
    state.node(content)
}

/// The value of every input declared in the header, checked and coerced.
fn resolve_inputs(
    spec: Option<&Node>,
    provided: &Mapping,
    ctx: &Context<'_>,
) -> Result<Mapping, ConfigError> {
    let empty = Mapping::default();
    let specs = spec
        .and_then(|s| s.get("inputs"))
        .and_then(Node::as_map)
        .unwrap_or(&empty);
    let unknown: Vec<&str> = provided
        .keys()
        .filter(|k| !specs.contains_key(k.name.as_str()))
        .map(|k| k.name.as_str())
        .collect();
    if !unknown.is_empty() {
        return Err(ConfigError::at(
            ctx.given_at,
            format!("unknown input arguments: {}", unknown.join(", ")),
        ));
    }
    // What `$[[ inputs.x ]]` reads inside `spec:inputs:rules:if`: given values, replaced by
    // checked ones as they are resolved in declaration order.
    let mut known: BTreeMap<String, String> = provided
        .iter()
        .map(|(k, v)| (k.name.clone(), to_s(v)))
        .collect();
    let mut out = Mapping::default();
    for (name, def) in specs {
        let def = apply_rules(&name.name, def, &known, ctx)?;
        let value = resolve_input(&name.name, &def, provided.get(name.name.as_str()), ctx)?;
        known.insert(name.name.clone(), to_s(&value));
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// `spec:inputs:<name>:rules`: the first rule whose `if` matches (or that has no `if`)
/// supplies `options` and `default`; with no match the input has neither.
fn apply_rules(
    name: &str,
    def: &Node,
    known: &BTreeMap<String, String>,
    ctx: &Context<'_>,
) -> Result<Node, ConfigError> {
    let Some(rules) = def.get("rules") else {
        return Ok(def.clone());
    };
    let Some(list) = rules.as_seq() else {
        return Err(input_error(
            &rules.span,
            name,
            "rules should be an array of hashes",
        ));
    };
    let mut chosen: Option<&Node> = None;
    for rule in list {
        let matched = match rule.get("if") {
            None => true,
            Some(cond) => {
                let src = cond.as_str().unwrap_or_default();
                let expr = Expression::parse(src).map_err(|_| {
                    ConfigError::at(
                        &cond.span,
                        format!(
                            "header:spec:inputs:{name}:rules:rule if invalid expression syntax"
                        ),
                    )
                })?;
                expr.evaluate_with_inputs(&ctx.variables, known)
                    .unwrap_or(false)
            }
        };
        if matched {
            chosen = Some(rule);
            break;
        }
    }
    let mut out = def.clone();
    if let Value::Map(m) = &mut out.value {
        m.shift_remove("rules");
        for key in ["options", "default"] {
            m.shift_remove(key);
            if let Some((k, v)) = chosen
                .and_then(|r| r.as_map())
                .and_then(|r| r.get_key_value(key))
            {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

fn input_error(at: &Span, name: &str, message: &str) -> ConfigError {
    ConfigError::at(at, format!("`{name}` input: {message}"))
}

fn resolve_input(
    name: &str,
    def: &Node,
    given: Option<&Node>,
    ctx: &Context<'_>,
) -> Result<Node, ConfigError> {
    let ty = match def.get("type") {
        None => "string".to_string(),
        Some(t) => t.scalar_string().unwrap_or_default(),
    };
    if !matches!(ty.as_str(), "string" | "number" | "boolean" | "array") {
        return Err(ConfigError::at(
            &def.span,
            format!("header:spec:inputs:{name} input type unknown value: {ty}"),
        ));
    }
    // A default is checked like a given value, and errors point at whichever was used.
    let (raw, at) = match (given, def.get("default")) {
        (Some(v), _) => (v.clone(), ctx.given_at.clone()),
        (None, Some(d)) => (d.clone(), d.span.clone()),
        (None, None) => {
            return Err(input_error(
                ctx.given_at,
                name,
                "required value has not been provided",
            ))
        }
    };
    let value = coerce(&ty, raw).ok_or_else(|| {
        input_error(
            &at,
            name,
            &format!(
                "provided value is not a{} {ty}",
                if ty == "array" { "n" } else { "" }
            ),
        )
    })?;
    if let Some(options) = def.get("options") {
        let options = options.as_seq().unwrap_or_default();
        if options.len() > MAX_OPTIONS {
            return Err(input_error(
                &def.span,
                name,
                &format!("cannot define more than {MAX_OPTIONS} options"),
            ));
        }
        let shown = to_s(&value);
        let found = options.iter().any(|o| match (&value.value, &o.value) {
            (Value::String(_), _) => to_s(o) == shown,
            (a, b) => a == b,
        });
        if !found {
            return Err(input_error(
                &at,
                name,
                &format!(
                    "`{shown}` cannot be used because it is not in the list of allowed options"
                ),
            ));
        }
    }
    if let (Some(pattern), Value::String(s)) = (def.get("regex"), &value.value) {
        let pattern = pattern.scalar_string().unwrap_or_default();
        let re = Regex::new(&pattern)
            .map_err(|_| input_error(&def.span, name, "invalid regular expression"))?;
        if !re.is_match(s) {
            return Err(input_error(
                &at,
                name,
                "provided value does not match required RE2 regular expression",
            ));
        }
    }
    Ok(value)
}

/// Coerces an input to its declared type; a string given for a non-string type is read as
/// JSON first (`"2"` → 2, `"true"` → true), as GitLab does.
fn coerce(ty: &str, raw: Node) -> Option<Node> {
    let span = raw.span.clone();
    if ty == "string" {
        return Some(match raw.value {
            Value::String(_) => raw,
            _ => Node::new(Value::String(to_s(&raw)), span),
        });
    }
    let value = match &raw.value {
        Value::String(s) => json_to_node(&serde_json::from_str(s).ok()?, &span),
        _ => raw,
    };
    let ok = match ty {
        "number" => matches!(value.value, Value::Int(_) | Value::Float(_)),
        "boolean" => matches!(value.value, Value::Bool(_)),
        _ => matches!(value.value, Value::Seq(_)),
    };
    ok.then_some(value)
}

fn json_to_node(v: &serde_json::Value, span: &Span) -> Node {
    let value = match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => {
            Value::Seq(a.iter().map(|x| json_to_node(x, span)).collect())
        }
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, x)| (Key::new(k.clone(), span.clone()), json_to_node(x, span)))
                .collect(),
        ),
    };
    Node::new(value, span.clone())
}

/// Ruby's `to_s` of a value, as interpolation into a longer string renders it.
pub fn to_s(node: &Node) -> String {
    match &node.value {
        Value::Seq(_) | Value::Map(_) => inspect(node),
        Value::Float(x) => ruby_float(*x),
        _ => node.scalar_string().unwrap_or_default(),
    }
}

/// Ruby's `inspect` (3.4 style for hashes).
fn inspect(node: &Node) -> String {
    match &node.value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "nil".into(),
        Value::Seq(items) => format!(
            "[{}]",
            items.iter().map(inspect).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{:?} => {}", k.name, inspect(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Reference(path) => super::reference::describe(path),
        _ => to_s(node),
    }
}

struct Interpolator<'a> {
    inputs: &'a Mapping,
    allowed_component: &'a [String],
    ctx: &'a Context<'a>,
    blocks: usize,
}

/// What a string turned into.
enum Out {
    One(Node),
    /// A sequence item that was a single block yielding an array: spliced into the parent.
    Splice(Vec<Node>),
}

impl Interpolator<'_> {
    fn node(&mut self, node: Node) -> Result<Node, ConfigError> {
        match self.node_in(node, false)? {
            Out::One(n) => Ok(n),
            Out::Splice(_) => Err(ConfigError::bare("internal: splice outside a sequence")),
        }
    }

    fn node_in(&mut self, node: Node, in_seq: bool) -> Result<Out, ConfigError> {
        let span = node.span.clone();
        match node.value {
            Value::String(s) => self.string(&s, &span, in_seq),
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match self.node_in(item, true)? {
                        Out::One(n) => out.push(n),
                        Out::Splice(ns) => out.extend(ns),
                    }
                }
                Ok(Out::One(Node::new(Value::Seq(out), span)))
            }
            Value::Map(map) => {
                let mut out = Mapping::default();
                for (key, value) in map {
                    let name = match self.string(&key.name, &key.span, false)? {
                        Out::One(n) => to_s(&n),
                        Out::Splice(_) => key.name.clone(),
                    };
                    let value = self.node(value)?;
                    out.insert(Key::new(name, key.span), value);
                }
                Ok(Out::One(Node::new(Value::Map(out), span)))
            }
            other => Ok(Out::One(Node::new(other, span))),
        }
    }

    fn string(&mut self, s: &str, span: &Span, in_seq: bool) -> Result<Out, ConfigError> {
        let keep = || {
            Ok(Out::One(Node::new(
                Value::String(s.to_string()),
                span.clone(),
            )))
        };
        if !s.contains("$[[") {
            return keep();
        }
        if s.len() > MAX_NODE_BYTES {
            return Err(ConfigError::at(
                span,
                "config node too large for interpolation",
            ));
        }
        let blocks: Vec<_> = BLOCK.captures_iter(s).collect();
        if blocks.is_empty() {
            return keep();
        }
        // A string that is exactly one block takes the value's own type.
        if let [only] = blocks.as_slice() {
            if only
                .get(0)
                .is_some_and(|m| m.start() == 0 && m.end() == s.len())
            {
                let inner = only.get(1).map_or("", |m| m.as_str());
                return Ok(match self.block(inner, span)? {
                    None => Out::One(Node::new(Value::String(s.to_string()), span.clone())),
                    Some(v) => match v.value {
                        Value::Seq(items) if in_seq => Out::Splice(items),
                        value => Out::One(Node::new(value, span.clone())),
                    },
                });
            }
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for caps in &blocks {
            let (Some(whole), Some(inner)) = (caps.get(0), caps.get(1)) else {
                continue;
            };
            out.push_str(&s[last..whole.start()]);
            match self.block(inner.as_str(), span)? {
                Some(v) => out.push_str(&to_s(&v)),
                None => out.push_str(whole.as_str()),
            }
            last = whole.end();
        }
        out.push_str(&s[last..]);
        Ok(Out::One(Node::new(Value::String(out), span.clone())))
    }

    /// One `inputs.x | fn | fn` block; `None` when it is left for later (`matrix.*`).
    fn block(&mut self, inner: &str, span: &Span) -> Result<Option<Node>, ConfigError> {
        self.blocks += 1;
        if self.blocks > MAX_BLOCKS {
            return Err(ConfigError::at(span, "too many interpolation blocks"));
        }
        if inner.len() > MAX_BLOCK_BYTES {
            return Err(ConfigError::at(span, "interpolation block is too long"));
        }
        let mut parts = inner.split('|').map(str::trim);
        let access = parts.next().unwrap_or("");
        if access.starts_with("matrix.") {
            return Ok(None);
        }
        let functions: Vec<&str> = parts.collect();
        if functions.len() > MAX_FUNCTIONS {
            return Err(ConfigError::at(
                span,
                format!("too many functions in interpolation block: at most {MAX_FUNCTIONS} are allowed"),
            ));
        }
        let mut value = self.access(access, span)?;
        for f in functions {
            value = self.function(f, value, span)?;
        }
        Ok(Some(value))
    }

    fn access(&self, access: &str, span: &Span) -> Result<Node, ConfigError> {
        let unknown =
            || ConfigError::at(span, format!("unknown interpolation provided: `{access}`"));
        let caps = ACCESS.captures(access).ok_or_else(unknown)?;
        let (scope, name) = (
            caps.get(1).map_or("", |m| m.as_str()),
            caps.get(2).map_or("", |m| m.as_str()),
        );
        let indices = caps.get(3).map_or("", |m| m.as_str());
        let mut value = if scope == "component" {
            let info = self
                .ctx
                .component
                .filter(|_| self.allowed_component.iter().any(|c| c == name));
            let field = info.and_then(|c| match name {
                "name" => Some(c.name.clone()),
                "sha" => Some(c.sha.clone()),
                "version" => Some(c.version.clone()),
                "reference" => Some(c.reference.clone()),
                _ => None,
            });
            match field {
                Some(f) => Node::new(Value::String(f), span.clone()),
                None => {
                    return Err(ConfigError::at(
                        span,
                        format!("unknown interpolation provided: `{name}` in `component.{name}` (list it in `spec:component`)"),
                    ))
                }
            }
        } else {
            self.inputs.get(name).cloned().ok_or_else(|| {
                ConfigError::at(
                    span,
                    format!("unknown interpolation provided: `{name}` in `inputs.{name}`"),
                )
            })?
        };
        let index_list: Vec<&str> = indices
            .split(['[', ']'])
            .filter(|p| !p.is_empty())
            .collect();
        if index_list.len() > 5 {
            return Err(ConfigError::at(
                span,
                "too many array indices in interpolation: at most 5",
            ));
        }
        for idx in index_list {
            let i: usize = idx.parse().map_err(|_| unknown())?;
            value = value
                .as_seq()
                .and_then(|items| items.get(i))
                .cloned()
                .ok_or_else(|| {
                    ConfigError::at(span, format!("index {i} is out of range in `{access}`"))
                })?;
        }
        Ok(value)
    }

    fn function(&self, f: &str, value: Node, span: &Span) -> Result<Node, ConfigError> {
        let text = to_s(&value);
        let result = if f == "expand_vars" {
            expand_existing(&text, self.ctx.variables)
        } else if f == "posix_escape" {
            posix_escape(&text)
        } else if let Some(args) = f
            .strip_prefix("truncate(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let nums: Vec<Option<usize>> = args.split(',').map(|a| a.trim().parse().ok()).collect();
            match nums.as_slice() {
                [Some(offset), Some(length)] => text.chars().skip(*offset).take(*length).collect(),
                _ => {
                    return Err(ConfigError::at(
                        span,
                        format!("invalid arguments in `{f}`: truncate takes (offset, length)"),
                    ))
                }
            }
        } else {
            return Err(ConfigError::at(
                span,
                format!("no function matching `{f}`: check that the function name, arguments, and types are correct"),
            ));
        };
        Ok(Node::new(Value::String(result), value.span))
    }
}

/// Ruby's `Shellwords.escape`.
fn posix_escape(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c == '\n' {
            out.push_str("'\n'");
        } else if c.is_ascii_alphanumeric() || "_-.,:+/@".contains(c) {
            out.push(c);
        } else {
            out.push('\\');
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
