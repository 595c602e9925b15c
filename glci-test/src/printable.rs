//! User text (job and stage names, error messages quoting them) as it may be shown on a
//! terminal or written to a file: control characters escaped, so a job named
//! `"\e]0;title\a"` prints as `\u{1b}]0;title\u{7}` instead of driving the terminal.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal raw: C0 and C1 controls, DEL, and the Unicode
/// bidirectional overrides that reorder what is displayed.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) && !keep(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One piece of user text, every control character escaped (newlines too).
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// Several lines of output holding user text: as [`printable`], but line breaks and tabs stay.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(printable("build: [linux, 1.2]"), Cow::Borrowed(_)));
        assert_eq!(printable("\x1b[31mred\x07"), "\\u{1b}[31mred\\u{7}");
        assert_eq!(printable("a\nb"), "a\\u{a}b");
        assert_eq!(printable("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(printable("x\u{202E}gnp.exe"), "x\\u{202e}gnp.exe");
        assert_eq!(
            printable_lines("a\tb\n\x1b]0;t\x07\n"),
            "a\tb\n\\u{1b}]0;t\\u{7}\n"
        );
    }
}
