//! RE2 semantics on top of the `regex` crate.
//!
//! GitLab compiles `rules:if` patterns with RE2 (`Gitlab::UntrustedRegexp`). The `regex` crate
//! is close to RE2 but not equal: its `\d \w \s \b` are Unicode-aware (RE2's are ASCII), it reads
//! `[` inside a class as a nested class and `&& -- ~~` as set operations (RE2: literals), it
//! accepts flags RE2 rejects (`x`, `u`, `R`), `\<`/`\>` are word boundaries there (RE2: the
//! literal characters), and an unmatched `{` is an error there (RE2: a literal). This module
//! rewrites an RE2 pattern into an equivalent `regex` pattern, rejecting what RE2 rejects.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock};

use regex::{Regex, RegexBuilder};

use super::error::ExprError;

/// Memoised compilations, keyed by (body, flags).
type Compiled = HashMap<(String, String), Result<Regex, Re2Error>>;

/// What RE2 would reject in a pattern, in RE2's words where it has them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Re2Error {
    #[error("unsupported regular expression flag `{0}`")]
    UnsupportedFlag(char),
    /// What follows "bad repetition operator: " (the operator, or why the count is wrong).
    #[error("bad repetition operator: {0}")]
    BadRepetition(String),
    #[error("trailing \\")]
    TrailingBackslash,
    /// The escape without its backslash.
    #[error("invalid escape sequence: \\{0}")]
    InvalidEscape(String),
    #[error("missing closing ]")]
    MissingBracket,
    #[error("missing closing )")]
    MissingParen,
    #[error("invalid named capture group")]
    UnclosedNamedGroup,
    #[error("invalid named capture group: {0}")]
    InvalidNamedGroup(String),
    #[error("invalid or unsupported Perl syntax: `{0}`")]
    UnsupportedPerlSyntax(String),
    #[error("pattern too large")]
    TooLarge,
    /// The `regex` crate's own reason (its last line).
    #[error("{0}")]
    Rejected(String),
}

/// RE2's `kMaxRepeat`: counted repetitions above this are a syntax error in RE2.
const MAX_REPEAT: u32 = 1000;

/// Compiles `body` with RE2 semantics, with the `/…/flags` flags (`i m s U`) prepended as
/// `(?flags)` the way `Gitlab::UntrustedRegexp::RubySyntax` does.
///
/// Results are memoised: a pipeline repeats the same few patterns in every job's rules (a
/// 1,000-job pipeline compiled `/^v\d+/` a thousand times, 14% of planning), and a `Regex`
/// clone is a reference-count bump. The cache is bounded because patterns can also come
/// from variable values.
pub(crate) fn compile(body: &str, flags: &str) -> Result<Regex, Re2Error> {
    const MAX_CACHED: usize = 512;
    static CACHE: OnceLock<Mutex<Compiled>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let key = (body.to_string(), flags.to_string());
    // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return hit.clone();
    }
    let compiled = compile_uncached(body, flags);
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_CACHED {
        map.clear();
    }
    map.insert(key, compiled.clone());
    compiled
}

fn compile_uncached(body: &str, flags: &str) -> Result<Regex, Re2Error> {
    if let Some(bad) = flags.chars().find(|c| !"imsU".contains(*c)) {
        return Err(Re2Error::UnsupportedFlag(bad));
    }
    let translated = translate(body)?;
    let pattern = if flags.is_empty() {
        translated
    } else {
        format!("(?{flags}){translated}")
    };
    RegexBuilder::new(&pattern)
        // A pattern comes from a CI file or a variable; keep a hostile one from eating memory.
        .size_limit(8 << 20)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(msg) => Re2Error::Rejected(last_line(&msg)),
            regex::Error::CompiledTooBig(_) => Re2Error::TooLarge,
            other => Re2Error::Rejected(other.to_string()),
        })
}

/// `regex` syntax errors are multi-line drawings; the last line says what is wrong.
fn last_line(msg: &str) -> String {
    msg.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(msg)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

/// Rewrites an RE2 pattern into `regex` syntax with the same meaning.
fn translate(src: &str) -> Result<String, Re2Error> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len() + 16);
    let mut i = 0;
    // Inside `[...]`: `class_start` is the index of the first member, where `]` is literal.
    let mut in_class = false;
    let mut class_start = 0;
    // Whether the previous item was a repetition: RE2 (Perl mode) rejects stacked ones such
    // as `a**`, `a+*` or `a{2}{3}`, which the `regex` crate accepts.
    let mut last_repeat = false;
    while i < chars.len() {
        let c = chars[i];
        let was_repeat = std::mem::take(&mut last_repeat);
        match c {
            '*' | '+' | '?' if !in_class => {
                if was_repeat {
                    return Err(Re2Error::BadRepetition(c.to_string()));
                }
                out.push(c);
                i += 1;
                if chars.get(i) == Some(&'?') {
                    out.push('?');
                    i += 1;
                }
                last_repeat = true;
                continue;
            }
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err(Re2Error::TrailingBackslash);
                };
                i += 2;
                match next {
                    'd' => out.push_str(if in_class { "[:digit:]" } else { "[[:digit:]]" }),
                    'D' => out.push_str(if in_class {
                        "[:^digit:]"
                    } else {
                        "[[:^digit:]]"
                    }),
                    'w' => out.push_str(if in_class { "[:word:]" } else { "[[:word:]]" }),
                    'W' => out.push_str(if in_class { "[:^word:]" } else { "[[:^word:]]" }),
                    // RE2's \s is [\t\n\f\r ] (no \v).
                    // Nested classes work inside a class too (as a union).
                    's' => out.push_str("[\\t\\n\\x0C\\r\\x20]"),
                    'S' => out.push_str("[^\\t\\n\\x0C\\r\\x20]"),
                    'b' | 'B' if !in_class => out.push_str(if next == 'b' {
                        "(?-u:\\b)"
                    } else {
                        "(?-u:\\B)"
                    }),
                    'C' => out.push_str(if in_class {
                        "\\x00-\\x{10FFFF}"
                    } else {
                        "(?s:.)"
                    }),
                    'Q' => {
                        // \Q...\E: everything up to \E (or the end) is literal.
                        while i < chars.len() {
                            if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                                i += 2;
                                break;
                            }
                            push_literal(&mut out, chars[i]);
                            i += 1;
                        }
                    }
                    'E' => {} // a stray \E is ignored by RE2
                    '0'..='7' => {
                        // RE2: \0, \0N, \0NN, and \NN / \NNN (octal); a lone \1..\7 is a
                        // backreference, which RE2 does not support.
                        let mut digits = String::from(next);
                        while digits.len() < 3 && matches!(chars.get(i), Some('0'..='7')) {
                            digits.push(chars[i]);
                            i += 1;
                        }
                        if next != '0' && digits.len() == 1 {
                            return Err(Re2Error::InvalidEscape(next.to_string()));
                        }
                        let code = u32::from_str_radix(&digits, 8)
                            .map_err(|_| Re2Error::InvalidEscape(digits.clone()))?;
                        out.push_str(&format!("\\x{{{code:X}}}"));
                    }
                    '8' | '9' => return Err(Re2Error::InvalidEscape(next.to_string())),
                    'p' | 'P' | 'x' => {
                        out.push('\\');
                        out.push(next);
                    }
                    'a' | 'f' | 't' | 'n' | 'r' | 'v' | 'A' | 'z' => {
                        out.push('\\');
                        out.push(next);
                    }
                    'b' => out.push_str("\\x08"), // inside a class: RE2 has no \b there either
                    n if n.is_ascii_alphanumeric() => {
                        return Err(Re2Error::InvalidEscape(n.to_string()));
                    }
                    n if n.is_ascii() => push_literal(&mut out, n),
                    n => return Err(Re2Error::InvalidEscape(n.to_string())),
                }
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                class_start = i;
                continue;
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // POSIX class inside a class: same syntax and ASCII meaning in both engines.
                let rest: String = chars[i..].iter().collect();
                if let Some(end) = rest.find(":]") {
                    out.push_str(&rest[..end + 2]);
                    i += rest[..end + 2].chars().count();
                } else {
                    out.push_str("\\[");
                    i += 1;
                }
                continue;
            }
            ']' if in_class && i == class_start => out.push_str("\\]"),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '-' if in_class && chars.get(i + 1) == Some(&'-') => out.push_str("\\-"),
            '{' if !in_class => match repetition(&chars[i..]) {
                Some((len, min, max)) => {
                    if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                        return Err(Re2Error::BadRepetition("repeat count over 1000".into()));
                    }
                    if max.is_some_and(|m| m < min) {
                        return Err(Re2Error::BadRepetition("max below min".into()));
                    }
                    if was_repeat {
                        return Err(Re2Error::BadRepetition("{".into()));
                    }
                    out.extend(&chars[i..i + len]);
                    i += len;
                    if chars.get(i) == Some(&'?') {
                        out.push('?');
                        i += 1;
                    }
                    last_repeat = true;
                    continue;
                }
                None => out.push_str("\\{"),
            },
            '}' if !in_class => out.push_str("\\}"),
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => {
                let len = group_prefix(&chars[i..])?;
                out.extend(&chars[i..i + len]);
                i += len;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    if in_class {
        return Err(Re2Error::MissingBracket);
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if regex_syntax_meta(c) {
        out.push('\\');
    }
    out.push(c);
}

fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

/// `{n}`, `{n,}`, `{n,m}` at the start of `s`: (length, min, max). Anything else is a literal
/// `{` in RE2.
fn repetition(s: &[char]) -> Option<(usize, u32, Option<u32>)> {
    let close = s.iter().position(|&c| c == '}')?;
    let inner: String = s[1..close].iter().collect();
    let (min, max) = match inner.split_once(',') {
        None => {
            let n = parse_count(&inner)?;
            (n, Some(n))
        }
        Some((a, "")) => (parse_count(a)?, None),
        Some((a, b)) => (parse_count(a)?, Some(parse_count(b)?)),
    };
    Some((close + 1, min, max))
}

fn parse_count(s: &str) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Huge counts are still a repetition (and then rejected), not a literal.
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// Validates a `(?` group opener the way RE2 does and returns its length.
fn group_prefix(s: &[char]) -> Result<usize, Re2Error> {
    let text: String = s.iter().take(4).collect();
    if text.starts_with("(?P<")
        || text.starts_with("(?<") && !text.starts_with("(?<=") && !text.starts_with("(?<!")
    {
        // Named group: the name is checked by the regex crate (RE2: word characters).
        let open = if text.starts_with("(?P<") { 4 } else { 3 };
        let close = s
            .iter()
            .position(|&c| c == '>')
            .ok_or(Re2Error::UnclosedNamedGroup)?;
        let name: String = s[open..close].iter().collect();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Re2Error::InvalidNamedGroup(name));
        }
        return Ok(close + 1);
    }
    // Flags group: (?flags) or (?flags:. RE2 rejects `(?)`, a `-` not followed by a flag,
    // and any flag outside `imsU`.
    let mut i = 2;
    let mut negated = false;
    let mut saw_flag = false;
    let mut flag_after_neg = false;
    while let Some(&c) = s.get(i) {
        match c {
            'i' | 'm' | 's' | 'U' => {
                saw_flag = true;
                flag_after_neg = negated;
            }
            '-' if !negated => negated = true,
            ':' | ')' => {
                let bad = (negated && !flag_after_neg) || (c == ')' && !saw_flag);
                if bad {
                    break;
                }
                return Ok(i + 1);
            }
            _ => break,
        }
        i += 1;
    }
    if i >= s.len() {
        return Err(Re2Error::MissingParen);
    }
    Err(Re2Error::UnsupportedPerlSyntax(take(s, i + 1)))
}

fn take(s: &[char], n: usize) -> String {
    s.iter().take(n).collect()
}

/// Compiles a `/body/flags` literal of the expression. GitLab re-reads the literal with
/// `RubySyntax` (`^/(.*)/([ismU]*)$`, where `.` stops at a newline), so a body spanning lines
/// is invalid even though the lexer accepted it.
pub(crate) fn compile_literal(body: &str, flags: &str, column: usize) -> Result<Regex, ExprError> {
    let invalid = |why: &str| {
        ExprError::syntax(
            format!("Invalid regular expression! /{body}/{flags}: {why}"),
            column,
        )
    };
    if body.contains('\n') {
        return Err(invalid("a pattern literal cannot span lines"));
    }
    compile(body, flags).map_err(|e| invalid(&e.to_string()))
}

/// The source RE2 sees: flags prepended as a group, like `RubySyntax.create_untrusted_regexp`.
pub(crate) fn regex_source(body: &str, flags: &str) -> String {
    if flags.is_empty() {
        body.to_string()
    } else {
        format!("(?{flags}){body}")
    }
}

/// `Gitlab::UntrustedRegexp::RubySyntax`: a string of the form `/body/flags` (any body
/// length, flags `ismU`) that RE2 accepts. Ruby's `^…$` are line anchors and `.` stops at a
/// newline, hence `(?m)` and a newline-free body.
pub(crate) fn string_as_regex(s: &str) -> Option<Regex> {
    static RUBY_SYNTAX: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"(?m)^/(.*)/([ismU]*)$").ok());
    let caps = RUBY_SYNTAX.as_ref()?.captures(s)?;
    compile(&caps[1], &caps[2]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(body: &str, flags: &str, text: &str) -> bool {
        match compile(body, flags) {
            Ok(r) => r.is_match(text),
            Err(e) => panic!("{body}: {e}"),
        }
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert!(!m(r"^\w$", "", "é"));
        assert!(m(r"^\w$", "", "e"));
        assert!(!m(r"\d", "", "٣"));
        assert!(m(r"^[\d\w]+$", "", "a1_"));
        assert!(m(r"\bfoo\b", "", "a foo b"));
        assert!(m(r"^\s$", "", "\t"));
        assert!(!m(r"^\s$", "", "\u{0B}"));
    }

    #[test]
    fn re2_literals_that_regex_reads_otherwise() {
        assert!(m(r"a{", "", "a{"));
        assert!(m(r"a{x}", "", "a{x}"));
        assert!(m(r"[a[]", "", "["));
        assert!(m(r"[&&]", "", "&"));
        assert!(m(r"\<", "", "<"));
        assert!(m(r"\Qa.b\E", "", "a.b"));
        assert!(!m(r"\Qa.b\E", "", "axb"));
        assert!(m(r"\101", "", "A"));
        assert!(m(r"[]a]", "", "]"));
        assert!(m(r"^[\S]+$", "", "ab"));
        assert!(!m(r"^[\s]+$", "", "ab"));
        assert!(m(r"^[^\S]$", "", " "));
        assert!(m(r"^a*?b+?c??d{1,2}?$", "", "bdd"));
    }

    #[test]
    fn rejects_what_re2_rejects() {
        for bad in [
            r"(?=a)", r"(?!a)", r"(?<=a)", r"(?<!a)", r"(a)\1", r"(?x)a", r"a{1001}", r"*a", r"(",
            r"[a", r"\y", r"(?u)a",
        ] {
            assert!(compile(bad, "").is_err(), "{bad} should be rejected");
        }
        assert!(compile("a{1000}", "").is_ok());
        assert!(compile("a", "x").is_err());
    }

    #[test]
    fn flags() {
        assert!(m("ABC", "i", "xabcx"));
        assert!(m("^b$", "m", "a\nb\nc"));
        assert!(!m("^b$", "", "a\nb\nc"));
        assert!(m("a.b", "s", "a\nb"));
        assert!(!m("a.b", "", "a\nb"));
        let r = compile("a+", "U").map_err(|e| e.to_string());
        assert_eq!(
            r.ok()
                .and_then(|r| r.find("aaa").map(|x| x.as_str().to_string())),
            Some("a".into())
        );
        assert!(m("(?i:X)y", "", "xy"));
        assert!(m("(?P<n>a)(?<m>b)", "", "ab"));
    }

    #[test]
    fn memoised_results_match_fresh_compilation() {
        // The same key with different flags must not share an entry, and errors are cached
        // as errors.
        for _ in 0..2 {
            assert!(m("^v\\d+$", "", "v12"));
            assert!(!m("^V\\d+$", "", "v12"));
            assert!(m("^V\\d+$", "i", "v12"));
            assert_eq!(
                compile("a{2,1}", "").err(),
                compile_uncached("a{2,1}", "").err()
            );
        }
        for i in 0..600 {
            // More distinct patterns than the cache holds: still correct after it is cleared.
            assert!(m(&format!("^x{i}$"), "", &format!("x{i}")));
        }
    }
}
