//! A setting's value, read from a TOML value or an environment variable's text by its
//! [`Kind`], and shown by `cargo glci config --show`.

use std::net::IpAddr;
use std::time::Duration;

use toml::de::DeValue;

use super::schema::Kind;
use super::secret::Secret;

/// A value of one of the [`Kind`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Secret(Secret),
    Bool(bool),
    Count(u64),
    Size(u64),
    Duration(Duration),
    Ip(IpAddr),
    List(Vec<String>),
    Choice(&'static str),
}

/// A value that is not of its key's kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct BadValue {
    pub expected: String,
    pub found: String,
}

fn expected(kind: Kind, found: impl Into<String>) -> BadValue {
    let expected = match kind {
        Kind::Text | Kind::Secret => "a string".to_string(),
        Kind::Bool => "true or false".to_string(),
        Kind::Count => "a whole number".to_string(),
        Kind::Size => "a size (bytes, or e.g. \"512MiB\", \"20GiB\")".to_string(),
        Kind::Duration => "a duration (seconds, or e.g. \"14d\", \"30 minutes\")".to_string(),
        Kind::Ip => "an IP address".to_string(),
        Kind::List => "a list of strings".to_string(),
        Kind::Choice(words) => format!("one of {}", quoted(words)),
    };
    BadValue {
        expected,
        found: found.into(),
    }
}

fn quoted(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Value {
    /// From an environment variable's (or a default's) text. Secrets are taken literally
    /// here: a `$NAME` reference is a file's way to point at the environment.
    pub fn from_text(kind: Kind, text: &str) -> Result<Value, BadValue> {
        let shown = || format!("`{text}`");
        let trimmed = text.trim();
        Ok(match kind {
            Kind::Text => Value::Text(text.to_string()),
            Kind::Secret => Value::Secret(Secret::literal(text)),
            Kind::Bool => match trimmed.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Value::Bool(true),
                "0" | "false" | "no" | "" => Value::Bool(false),
                _ => return Err(expected(kind, shown())),
            },
            Kind::Count => Value::Count(trimmed.parse().map_err(|_| expected(kind, shown()))?),
            Kind::Size => Value::Size(parse_size(trimmed).ok_or_else(|| expected(kind, shown()))?),
            Kind::Duration => Value::Duration(
                crate::pipeline::duration::parse_duration(trimmed)
                    .ok_or_else(|| expected(kind, shown()))?,
            ),
            Kind::Ip => Value::Ip(trimmed.parse().map_err(|_| expected(kind, shown()))?),
            Kind::List => Value::List(
                trimmed
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            Kind::Choice(words) => Value::Choice(
                words
                    .iter()
                    .find(|w| **w == trimmed)
                    .ok_or_else(|| expected(kind, shown()))?,
            ),
        })
    }

    /// From a TOML value. Secrets come back literal; `secret.rs` resolves references.
    pub fn from_toml(kind: Kind, value: &DeValue<'_>) -> Result<Value, BadValue> {
        let found = || format!("{} {}", article(value.type_str()), value.type_str());
        match (kind, value) {
            (Kind::Text, DeValue::String(s)) => Ok(Value::Text(s.to_string())),
            (Kind::Secret, DeValue::String(s)) => Ok(Value::Secret(Secret::literal(s))),
            (Kind::Bool, DeValue::Boolean(b)) => Ok(Value::Bool(*b)),
            (Kind::Count | Kind::Size | Kind::Duration, DeValue::Integer(i)) => {
                let n: u64 = i64::from_str_radix(i.as_str(), i.radix())
                    .ok()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| expected(kind, format!("`{}`", i.as_str())))?;
                Ok(match kind {
                    Kind::Count => Value::Count(n),
                    Kind::Size => Value::Size(n),
                    _ => Value::Duration(Duration::from_secs(n)),
                })
            }
            (Kind::Size | Kind::Duration | Kind::Ip | Kind::Choice(_), DeValue::String(s)) => {
                Value::from_text(kind, s)
            }
            (Kind::List, DeValue::Array(items)) => items
                .iter()
                .map(|item| match item.get_ref() {
                    DeValue::String(s) => Ok(s.to_string()),
                    other => Err(expected(
                        kind,
                        format!(
                            "{} {} in the list",
                            article(other.type_str()),
                            other.type_str()
                        ),
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Value::List),
            _ => Err(expected(kind, found())),
        }
    }

    /// The value as `config --show` and errors print it: secrets masked, sizes and durations
    /// in units, control characters in text escaped (a value is user input).
    pub fn shown(&self) -> String {
        use crate::printable::printable;
        match self {
            Value::Text(s) => format!("\"{}\"", printable(s)),
            Value::Secret(secret) => secret.shown(),
            Value::Bool(b) => b.to_string(),
            Value::Count(n) => n.to_string(),
            Value::Size(n) => show_size(*n),
            Value::Duration(d) => show_duration(*d),
            Value::Ip(ip) => format!("\"{ip}\""),
            Value::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|i| format!("\"{}\"", printable(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Choice(w) => format!("\"{w}\""),
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

const UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("kB", 1_000),
    ("B", 1),
];

/// `20GiB`, `512 MiB`, `1GB`, `4096`: bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits].parse().ok()?;
    let unit = text[digits..].trim();
    if unit.is_empty() {
        return Some(number);
    }
    let (_, factor) = UNITS.iter().find(|(name, _)| *name == unit)?;
    number.checked_mul(*factor)
}

fn show_size(bytes: u64) -> String {
    for (name, factor) in &UNITS[..4] {
        if bytes >= *factor && bytes.is_multiple_of(*factor) {
            return format!("\"{}{name}\"", bytes / factor);
        }
    }
    bytes.to_string()
}

fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, factor) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= factor && secs.is_multiple_of(factor) {
            return format!("\"{}{unit}\"", secs / factor);
        }
    }
    secs.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_units_and_show_them_back() {
        assert_eq!(parse_size("20GiB"), Some(20 << 30));
        assert_eq!(parse_size("512 MiB"), Some(512 << 20));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(show_size(20 << 30), "\"20GiB\"");
        assert_eq!(show_size(1000), "1000");
        let ttl = Value::from_text(Kind::Duration, "14d").unwrap();
        assert_eq!(ttl, Value::Duration(Duration::from_secs(14 * 86_400)));
        assert_eq!(ttl.shown(), "\"14d\"");
    }

    #[test]
    fn environment_text_is_read_by_kind() {
        assert_eq!(Value::from_text(Kind::Bool, "yes"), Ok(Value::Bool(true)));
        assert!(Value::from_text(Kind::Bool, "maybe").is_err());
        assert_eq!(
            Value::from_text(Kind::List, "a, b,,c"),
            Ok(Value::List(vec!["a".into(), "b".into(), "c".into()]))
        );
        let e = Value::from_text(Kind::Choice(&["auto", "never"]), "sometimes").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected one of \"auto\", \"never\", found `sometimes`"
        );
    }
}
