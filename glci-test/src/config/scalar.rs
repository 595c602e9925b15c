//! Plain-scalar resolution as Ruby's Psych does it (`Psych::ScalarScanner#tokenize`, YAML 1.1):
//! GitLab reads `.gitlab-ci.yml` with Psych, so `on`/`yes` are booleans, `0755` is octal, `1:30`
//! is base 60 and `1.10` is the float 1.1. Quoted and block scalars never come through here.

use std::sync::LazyLock;

use regex::Regex;

use super::value::Value;

/// What a plain scalar turned into, or the Ruby class `safe_load` would refuse.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Value(Value),
    /// A value of a class Psych's `safe_load` refuses (`Date`, `Time`).
    Disallowed(&'static str),
}

fn re(pattern: &str) -> Regex {
    // The patterns are literals of this file; a failure is a programming error caught by tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in regex {pattern}: {e}"))
}

// Psych's "looks like a word" test (Ruby's `[[:alpha:]]` is Unicode-aware, hence
// `\p{Alphabetic}`); `^` there is a line anchor, but strings with `\n` are strings anyway.
static WORDISH: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[^\d.:\-]?[\p{Alphabetic}_\s!@#$%\^&*(){}<>|/\\~;=]+"));
static TIME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^-?\d{4}-\d{1,2}-\d{1,2}(?:[Tt]|\s+)\d{1,2}:\d\d:\d\d(?:\.\d*)?(?:\s*(?:Z|[-+]\d{1,2}:?(?:\d\d)?))?$",
    )
});
static DATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\d{4}-(?:1[012]|0\d|\d)-(?:[12]\d|3[01]|0\d|\d)$"));
static SEXAGESIMAL_INT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9]){1,2}$"));
static SEXAGESIMAL_FLOAT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9]){1,2}\.[0-9_]*$"));
static FLOAT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[-+]?(?:[0-9][0-9_,]*)?\.[0-9]*(?:[eE][-+][0-9]+)?$"));
// Psych's INTEGER_LEGACY (the default, `strict_integer: false`); the regex crate has no
// look-around so the decimal branch is spelled without it, same language.
static INTEGER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:[-+]?0b[0-1_,]+|[-+]?0[0-7_,]+|[-+]?(?:0|[1-9](?:[0-9]|,[0-9]|_[0-9])*)|[-+]?0x[0-9a-fA-F_,]+)$",
    )
});

/// `WORDISH.is_match(s)`, without running the regex for the common case. A string whose
/// first character is an ASCII letter or `_` always matches: that character either fills the
/// optional `[^\d.:\-]?` with the next one in the class, or (the `?` left empty) is itself
/// the first of the `+` class (`\p{Alphabetic}` or `_`). Most keys and values start that way
/// (`script`, `job-1`, `cargo build`), and the Unicode-class regex was most of the time spent
/// resolving scalars.
fn looks_like_word(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => true,
        _ => WORDISH.is_match(s),
    }
}

/// Resolves a plain (unquoted, untagged) scalar.
pub fn resolve_plain(s: &str) -> Resolved {
    Resolved::Value(match resolve_inner(s) {
        Ok(v) => v,
        Err(class) => return Resolved::Disallowed(class),
    })
}

fn resolve_inner(s: &str) -> Result<Value, &'static str> {
    if s.is_empty() {
        return Ok(Value::Null);
    }
    let string = || Value::String(s.to_string());
    if looks_like_word(s) || s.contains('\n') {
        if s.chars().count() > 5 {
            return Ok(string());
        }
        let lower = s.to_ascii_lowercase();
        let first = lower.chars().next().unwrap_or(' ');
        if !matches!(first, 'y' | 't' | 'o' | 'n' | 'f' | '~') {
            return Ok(string());
        }
        return Ok(match lower.as_str() {
            "~" | "null" => Value::Null,
            "yes" | "true" | "on" => Value::Bool(true),
            "no" | "false" | "off" => Value::Bool(false),
            _ => string(),
        });
    }
    // Every pattern below (times, dates, base 60, floats, integers) only ever matches ASCII
    // letters among a-f, x, t, z (either case): hex digits, `0x`, `0b`, an exponent, the
    // `T`/`Z` of a time. Any other letter (`.rust`, `$CI_COMMIT_TAG`, `src/**/*`) rules all
    // of them out: such scalars skip six regex scans (5% of parsing a 1,000-job file
    // was those scans on `extends: .base` and `!reference [.x, y]` values). `.inf`/`.nan`
    // are string comparisons and still run.
    let maybe_number = !s
        .bytes()
        .any(|b| b.is_ascii_alphabetic() && !b"abcdefxtzABCDEFXTZ".contains(&b));
    if maybe_number && TIME.is_match(s) {
        return Err("Time");
    }
    if maybe_number && DATE.is_match(s) {
        return Err("Date");
    }
    let lower = s.to_ascii_lowercase();
    if lower == ".inf" || lower == "+.inf" {
        return Ok(Value::Float(f64::INFINITY));
    }
    if lower == "-.inf" {
        return Ok(Value::Float(f64::NEG_INFINITY));
    }
    if lower == ".nan" {
        return Ok(Value::Float(f64::NAN));
    }
    if !maybe_number {
        return Ok(string());
    }
    if SEXAGESIMAL_INT.is_match(s) {
        return Ok(sexagesimal(s).map(Value::Int).unwrap_or_else(string));
    }
    if SEXAGESIMAL_FLOAT.is_match(s) {
        return Ok(sexagesimal_float(s)
            .map(Value::Float)
            .unwrap_or_else(string));
    }
    if FLOAT.is_match(s) {
        let bare = s.trim_start_matches(['+', '-']);
        if bare == "." {
            return Ok(string());
        }
        let cleaned: String = s.chars().filter(|c| *c != ',' && *c != '_').collect();
        return Ok(cleaned
            .parse::<f64>()
            .map(Value::Float)
            .unwrap_or_else(|_| string()));
    }
    if INTEGER.is_match(s) {
        return Ok(parse_int(s).map(Value::Int).unwrap_or_else(string));
    }
    Ok(string())
}

/// Ruby's `Integer(str)` after Psych removed `,` and `_`: prefixes 0b, 0x and a leading 0
/// (octal) select the base. Values beyond i64 stay strings rather than wrapping.
fn parse_int(s: &str) -> Option<i64> {
    let cleaned: String = s.chars().filter(|c| *c != ',' && *c != '_').collect();
    let (neg, body) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.strip_prefix('+').unwrap_or(&cleaned)),
    };
    let magnitude = if let Some(b) = body.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    Some(if neg { -magnitude } else { magnitude })
}

/// `1:30` → 90, `1:00:00` → 3600 (Psych: each part times 60^(distance from the end)).
fn sexagesimal(s: &str) -> Option<i64> {
    let (neg, body) = sign(s);
    let mut total: i64 = 0;
    for part in body.split(':') {
        let n: i64 = part.replace('_', "").parse().ok()?;
        total = total.checked_mul(60)?.checked_add(n)?;
    }
    Some(if neg { -total } else { total })
}

fn sexagesimal_float(s: &str) -> Option<f64> {
    let (neg, body) = sign(s);
    let mut total = 0.0;
    for part in body.split(':') {
        let n: f64 = part.replace('_', "").parse().ok()?;
        total = total * 60.0 + n;
    }
    Some(if neg { -total } else { total })
}

fn sign(s: &str) -> (bool, &str) {
    match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        match resolve_plain(s) {
            Resolved::Value(v) => v,
            Resolved::Disallowed(c) => panic!("{s} disallowed as {c}"),
        }
    }

    #[test]
    fn word_fast_path_agrees_with_the_regex() {
        for s in [
            "a",
            "Z",
            "_",
            "script",
            "job-1",
            "a:b",
            "x.1",
            "cargo build",
            "é",
            "1a",
            ".a",
            "-a",
            ":a",
            "~",
            "!x",
            " a",
            "$X",
            "",
            "a\nb",
            "12:30",
            "0x1F",
        ] {
            assert_eq!(looks_like_word(s), WORDISH.is_match(s), "{s:?}");
        }
    }

    #[test]
    fn booleans_are_yaml_1_1() {
        for t in ["yes", "Yes", "YES", "on", "On", "true", "True", "TRUE"] {
            assert_eq!(v(t), Value::Bool(true), "{t}");
        }
        for f in ["no", "No", "off", "OFF", "false", "False"] {
            assert_eq!(v(f), Value::Bool(false), "{f}");
        }
        // Psych does not treat single letters as booleans.
        assert_eq!(v("y"), Value::String("y".into()));
        assert_eq!(v("n"), Value::String("n".into()));
        assert_eq!(v("yEs!"), Value::String("yEs!".into()));
    }

    #[test]
    fn nulls() {
        assert_eq!(v(""), Value::Null);
        assert_eq!(v("~"), Value::Null);
        assert_eq!(v("null"), Value::Null);
        assert_eq!(v("NULL"), Value::Null);
        assert_eq!(v("nil"), Value::String("nil".into()));
    }

    #[test]
    fn integers() {
        assert_eq!(v("42"), Value::Int(42));
        assert_eq!(v("-7"), Value::Int(-7));
        assert_eq!(v("012345"), Value::Int(5349));
        assert_eq!(v("0b101"), Value::Int(5));
        assert_eq!(v("0x1F"), Value::Int(31));
        assert_eq!(v("1_000"), Value::Int(1000));
        assert_eq!(v("1,000"), Value::Int(1000));
        assert_eq!(v("08"), Value::String("08".into()));
        assert_eq!(v("1:30"), Value::Int(90));
        assert_eq!(v("8080:80"), Value::String("8080:80".into()));
        assert_eq!(
            v("99999999999999999999"),
            Value::String("99999999999999999999".into())
        );
    }

    #[test]
    fn floats() {
        assert_eq!(v("1.10"), Value::Float(1.1));
        assert_eq!(v(".5"), Value::Float(0.5));
        assert_eq!(v("1.5e+3"), Value::Float(1500.0));
        assert_eq!(v("1e5"), Value::String("1e5".into()));
        assert_eq!(v("."), Value::String(".".into()));
        assert_eq!(v(".inf"), Value::Float(f64::INFINITY));
        assert_eq!(v("1.2.3"), Value::String("1.2.3".into()));
    }

    #[test]
    fn dates_are_refused_like_safe_load() {
        assert_eq!(resolve_plain("2024-01-01"), Resolved::Disallowed("Date"));
        assert_eq!(
            resolve_plain("2024-01-01 10:00:00"),
            Resolved::Disallowed("Time")
        );
    }
}
