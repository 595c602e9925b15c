//! The lexer of `Gitlab::Ci::Pipeline::Expression::Lexer`: at each position the first lexeme
//! pattern that matches wins, in GitLab's order.

use std::sync::LazyLock;

use regex::Regex;

use super::error::ExprError;

/// GitLab's `Lexer::MAX_TOKENS`. Its loop runs this many times and checks for the end of
/// input only at the top of an iteration, so a statement of exactly this many tokens is
/// already "Too many tokens!".
pub const MAX_TOKENS: usize = 100;

/// One lexeme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    ParenOpen,
    ParenClose,
    /// `$[[ inputs.NAME ]]`
    Input(String),
    /// `$NAME`
    Variable(String),
    /// `"…"` or `'…'`, no escapes.
    String(String),
    /// `/body/flags`, with `\/` already unescaped in `body`.
    Pattern {
        body: String,
        flags: String,
    },
    Null,
    Bool(bool),
    Equals,
    Matches,
    NotEquals,
    NotMatches,
    And,
    Or,
    Not,
}

/// A lexeme and the 1-based character column where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub column: usize,
}

// Each pattern is anchored at the scan position, like Ruby's `StringScanner#scan`, which also
// treats the scan position as the start of the string (so `\b` sees nothing before it).
// Ruby's `\w`, `\s` and `.` are ASCII / newline-excluding here, hence `(?-u)`-free explicit sets.
static WHITESPACE: LazyLock<Regex> = LazyLock::new(|| re(r"\A[ \t\r\n\x0B\x0C]+"));
static INPUT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\A\$\[\[[ \t\r\n\x0B\x0C]*inputs\.([0-9A-Za-z_]+)[ \t\r\n\x0B\x0C]*\]\]")
});
static VARIABLE: LazyLock<Regex> = LazyLock::new(|| re(r"\A\$([0-9A-Za-z_]+)"));
static STRING: LazyLock<Regex> = LazyLock::new(|| re(r#"\A(?:"([^\n]*?)"|'([^\n]*?)')"#));
static PATTERN: LazyLock<Regex> = LazyLock::new(|| re(r"\A/(?:[^/]|\\/)+[^\\]/[ismU]*"));
static BOOLEAN: LazyLock<Regex> = LazyLock::new(|| re(r"\A(?:true|false)(?-u:\b)"));

#[allow(clippy::expect_used)]
fn re(p: &str) -> Regex {
    // The patterns above are constants; a typo is a programming error caught by every test.
    Regex::new(p).expect("lexer pattern is valid")
}

const OPERATORS: [(&str, TokenKind); 7] = [
    ("==", TokenKind::Equals),
    ("=~", TokenKind::Matches),
    ("!=", TokenKind::NotEquals),
    ("!~", TokenKind::NotMatches),
    ("&&", TokenKind::And),
    ("||", TokenKind::Or),
    ("!", TokenKind::Not),
];

/// Splits `src` into tokens, or fails like GitLab's lexer ("Unknown lexeme found!",
/// "Too many tokens!") with the column of the failure.
pub fn tokenize(src: &str) -> Result<Vec<Token>, ExprError> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    let column = |pos: usize| src[..pos].chars().count() + 1;
    for _ in 0..MAX_TOKENS {
        if let Some(m) = WHITESPACE.find(&src[pos..]) {
            pos += m.end();
        }
        if pos >= src.len() {
            return Ok(tokens);
        }
        let rest = &src[pos..];
        let (kind, len) =
            scan(rest).ok_or_else(|| ExprError::syntax("Unknown lexeme found!", column(pos)))?;
        tokens.push(Token {
            kind,
            column: column(pos),
        });
        pos += len;
    }
    Err(ExprError::syntax("Too many tokens!", column(pos)))
}

/// The first lexeme matching at the start of `rest`, and its length in bytes.
fn scan(rest: &str) -> Option<(TokenKind, usize)> {
    if rest.starts_with('(') {
        return Some((TokenKind::ParenOpen, 1));
    }
    if rest.starts_with(')') {
        return Some((TokenKind::ParenClose, 1));
    }
    if let Some(c) = INPUT.captures(rest) {
        return Some((TokenKind::Input(c[1].to_string()), c[0].len()));
    }
    if let Some(c) = VARIABLE.captures(rest) {
        return Some((TokenKind::Variable(c[1].to_string()), c[0].len()));
    }
    if let Some(c) = STRING.captures(rest) {
        let s = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
        return Some((TokenKind::String(s.to_string()), c[0].len()));
    }
    if let Some(m) = PATTERN.find(rest) {
        let text = m.as_str();
        // `/body/flags`: the body runs to the last `/` of the lexeme (the flags have none).
        let close = text.rfind('/').unwrap_or(0);
        let body = text[1..close].replace("\\/", "/");
        let flags = text[close + 1..].to_string();
        return Some((TokenKind::Pattern { body, flags }, m.end()));
    }
    if rest.starts_with("null") {
        return Some((TokenKind::Null, 4));
    }
    if let Some(m) = BOOLEAN.find(rest) {
        return Some((TokenKind::Bool(m.as_str() == "true"), m.end()));
    }
    OPERATORS
        .iter()
        .find(|(op, _)| rest.starts_with(op))
        .map(|(op, kind)| (kind.clone(), op.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        match tokenize(src) {
            Ok(t) => t.into_iter().map(|t| t.kind).collect(),
            Err(e) => panic!("{src}: {e}"),
        }
    }

    #[test]
    fn lexes_all_kinds_with_columns() {
        let t = tokenize(r#"($A == "x") && $B =~ /a\/b/i || !null != true"#).unwrap_or_default();
        let cols: Vec<usize> = t.iter().map(|t| t.column).collect();
        assert_eq!(
            cols,
            vec![1, 2, 5, 8, 11, 13, 16, 19, 22, 30, 33, 34, 39, 42]
        );
        assert_eq!(
            t[8].kind,
            TokenKind::Pattern {
                body: "a/b".into(),
                flags: "i".into()
            }
        );
    }

    #[test]
    fn pattern_scanning() {
        // docs/ci-yaml-semantics.md §12 #27: `//` is not a pattern.
        assert!(tokenize("//").is_err());
        // §12 #28: the `x` flag is not consumed.
        let e = tokenize("/pattern/x");
        assert_eq!(e.as_ref().err().and_then(|e| e.column), Some(10));
        // §12 #29: eager, ends at the first `/`.
        assert_eq!(
            scan("/some .* / pattern/"),
            Some((
                TokenKind::Pattern {
                    body: "some .* ".into(),
                    flags: "".into()
                },
                10
            ))
        );
        // §12 #30: `\$` stays.
        assert_eq!(
            kinds(r"/some numeric \$ pattern/"),
            vec![TokenKind::Pattern {
                body: r"some numeric \$ pattern".into(),
                flags: "".into()
            }]
        );
        // A one-character body is not a pattern literal.
        assert!(tokenize("/./").is_err());
    }

    #[test]
    fn unknown_lexemes() {
        // §12 #25
        let e = tokenize("$V1 123 $V2").err();
        assert_eq!(
            e.as_ref().map(|e| e.message.as_str()),
            Some("Unknown lexeme found!")
        );
        assert_eq!(e.and_then(|e| e.column), Some(5));
        for bad in [
            "${X}",
            "$X = 1",
            "a",
            "$X and $Y",
            "$",
            "\"unterminated",
            "é",
        ] {
            assert!(tokenize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_limit() {
        let ok = vec!["$A"; MAX_TOKENS - 1].join(" ");
        assert_eq!(tokenize(&ok).map(|t| t.len()).ok(), Some(MAX_TOKENS - 1));
        let too_many = vec!["$A"; MAX_TOKENS].join(" ");
        let e = tokenize(&too_many).err();
        assert_eq!(e.map(|e| e.message), Some("Too many tokens!".to_string()));
    }

    #[test]
    fn strings_and_keywords() {
        assert_eq!(
            kinds(r#""" '' "it's" 'say "hi"'"#),
            vec![
                TokenKind::String("".into()),
                TokenKind::String("".into()),
                TokenKind::String("it's".into()),
                TokenKind::String("say \"hi\"".into()),
            ]
        );
        assert_eq!(
            kinds("true false null"),
            vec![
                TokenKind::Bool(true),
                TokenKind::Bool(false),
                TokenKind::Null
            ]
        );
        assert!(tokenize("truex").is_err());
        assert_eq!(
            kinds("$[[ inputs.cloud_provider ]]"),
            vec![TokenKind::Input("cloud_provider".into())]
        );
        assert!(
            tokenize("$ÄB").is_err(),
            "non-ASCII names are not variables"
        );
    }
}
