//! Errors of the expression language, worded as GitLab words them.

use std::fmt;

/// Which stage rejected the expression; GitLab reports all of them as an invalid expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprErrorKind {
    /// The lexer found no lexeme at a position, or too many tokens.
    Syntax,
    /// Tokens that do not form one expression (unbalanced parentheses, missing operands).
    Parse,
    /// Evaluation failed (e.g. `=~` against a boolean).
    Runtime,
}

/// An expression that GitLab would reject: the message uses GitLab's wording where GitLab has
/// one; `column` (1-based, in characters) points at the offending token when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub kind: ExprErrorKind,
    pub message: String,
    pub column: Option<usize>,
}

impl ExprError {
    pub(crate) fn syntax(message: impl Into<String>, column: usize) -> Self {
        ExprError {
            kind: ExprErrorKind::Syntax,
            message: message.into(),
            column: Some(column),
        }
    }

    pub(crate) fn parse(message: impl Into<String>, column: Option<usize>) -> Self {
        ExprError {
            kind: ExprErrorKind::Parse,
            message: message.into(),
            column,
        }
    }

    pub(crate) fn runtime(message: impl Into<String>, column: Option<usize>) -> Self {
        ExprError {
            kind: ExprErrorKind::Runtime,
            message: message.into(),
            column,
        }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(col) = self.column {
            write!(f, " (at column {col})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}
