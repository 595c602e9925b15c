//! The YAML tree every later stage works on: plain data plus the place it came from, so that
//! any error, however late, can say `file:line:col`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use indexmap::IndexMap;

/// Where a node was written: file (as the user would name it), 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Span {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A mapping key. Keys compare by name only; the span is carried for error messages.
#[derive(Debug, Clone, Default)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

impl Key {
    pub fn new(name: impl Into<String>, span: Span) -> Self {
        Key {
            name: name.into(),
            span,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}
impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.name
    }
}

/// An ordered mapping, as GitLab keeps hashes in insertion order. Hashed with foldhash rather
/// than std's SipHash: keys are short and looked up constantly (every entry of every job,
/// while extending, merging and validating), and SipHash was a tenth of planning time.
/// foldhash is still seeded per map, so colliding keys cannot be prepared in advance.
/// Make one with `Mapping::default()`.
pub type Mapping = IndexMap<Key, Node, foldhash::fast::RandomState>;

/// A YAML value after tag and scalar resolution (YAML 1.1 booleans, as Psych reads them).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Mapping),
    /// `!reference [a, b]` before resolution; resolution replaces every one of these.
    Reference(Vec<String>),
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

impl Node {
    pub fn new(value: Value, span: Span) -> Self {
        Node { value, span }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Mapping> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Looks a key up when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// The scalar as GitLab would turn it into a string (for variables, script lines).
    pub fn scalar_string(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            // Ruby's `to_s`, as GitLab turns `1.0` into "1.0", not "1".
            Value::Float(x) => Some(ruby_float(*x)),
            Value::Null => Some(String::new()),
            _ => None,
        }
    }
}

/// Ruby's `Float#to_s`: `1.0`, `1.5`, `1.0e+20`, `Infinity`, `NaN`.
pub fn ruby_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = x.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Ruby switches to scientific notation outside this range, always with a fraction.
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_float_strings() {
        assert_eq!(ruby_float(1.0), "1.0");
        assert_eq!(ruby_float(1.1), "1.1");
        assert_eq!(ruby_float(1e20), "1.0e+20");
        assert_eq!(ruby_float(-0.5), "-0.5");
    }
}
