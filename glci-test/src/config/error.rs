//! The one error type of configuration loading: a message in GitLab's wording, and where the
//! offending text was written when we know it.

use std::fmt;

use super::value::Span;

/// A configuration error. Displays as `FILE:LINE:COL: MESSAGE` when the place is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub span: Option<Span>,
    pub message: String,
}

impl ConfigError {
    /// An error located at `span`.
    pub fn at(span: &Span, message: impl Into<String>) -> Self {
        ConfigError {
            span: Some(span.clone()),
            message: message.into(),
        }
    }

    /// An error with no single place to point at (e.g. a limit over several files).
    pub fn bare(message: impl Into<String>) -> Self {
        ConfigError {
            span: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.span {
            Some(span) => write!(f, "{span}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
