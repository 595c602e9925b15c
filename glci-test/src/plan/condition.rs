//! The bridge from planning to the expression language (`expr`) and to GitLab's variable
//! expansion (`vars`): the one place plan code calls into them.

use super::scope::Scope;

use crate::expr::Expression;
use crate::vars::VariableLookup;

impl VariableLookup for Scope<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Scope::get(self, name)
    }
}

/// Evaluates a parsed `rules:if` / `only:variables` expression (parsed once, at
/// validation); an evaluation error counts as false, as it does on GitLab.
pub fn evaluate(expr: &Expression, scope: &Scope<'_>) -> bool {
    expr.evaluate(scope).unwrap_or(false)
}

/// `ExpandVariables.expand_existing`: `$X`, `${X}`, `%X%` replaced when `X` is known,
/// left verbatim otherwise; no nested expansion.
pub fn expand_existing(text: &str, scope: &Scope<'_>) -> String {
    expand_with(text, scope, true)
}

/// `ExpandVariables.expand`: unknown variables become empty.
pub fn expand(text: &str, scope: &Scope<'_>) -> String {
    expand_with(text, scope, false)
}

fn expand_with(text: &str, scope: &Scope<'_>, keep_unknown: bool) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_start = |c: u8| c.is_ascii_alphabetic() || c == b'_';
    let is_name = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let step = text[i..].chars().next().map_or(1, char::len_utf8);
        let (name_range, end) = if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            match text[i + 2..].find('}') {
                Some(len) if len > 0 && text[i + 2..i + 2 + len].bytes().all(is_name) => {
                    (Some((i + 2, i + 2 + len)), i + 3 + len)
                }
                _ => (None, i + step),
            }
        } else if b[i] == b'$' && b.get(i + 1).is_some_and(|&c| is_start(c)) {
            let mut e = i + 1;
            while e < b.len() && is_name(b[e]) {
                e += 1;
            }
            (Some((i + 1, e)), e)
        } else if b[i] == b'%' && b.get(i + 1).is_some_and(|&c| is_start(c)) {
            let mut e = i + 1;
            while e < b.len() && is_name(b[e]) {
                e += 1;
            }
            if b.get(e) == Some(&b'%') {
                (Some((i + 1, e)), e + 1)
            } else {
                (None, i + step)
            }
        } else {
            (None, i + step)
        };
        match name_range {
            Some((s, e)) => match scope.get(&text[s..e]) {
                Some(v) => out.push_str(v),
                None if keep_unknown => out.push_str(&text[i..end]),
                None => {}
            },
            None => out.push_str(&text[i..end]),
        }
        i = end;
    }
    out
}
