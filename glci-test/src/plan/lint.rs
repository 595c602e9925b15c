//! Configuration errors in GitLab's wording, each pointing at the place that caused it.

use std::fmt;

use crate::config::Span;

/// One validation error: GitLab's message plus, when known, where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct LintError {
    pub message: String,
    pub span: Option<Span>,
}

impl LintError {
    /// An entry error: GitLab lower-cases `"<location> <message>"` as a whole
    /// (`Gitlab::Config::Entry::Validator`), so we do the same.
    pub fn entry(span: &Span, location: &str, message: &str) -> Self {
        LintError {
            message: format!("{location} {message}").to_lowercase(),
            span: Some(span.clone()),
        }
    }

    /// GitLab's entry validation of a hash's keys: `<location> config contains unknown keys:
    /// a, b` at `span`, naming every key outside `allowed` in order; `None` when all are known.
    pub fn unknown_keys<'a>(
        span: &Span,
        location: &str,
        keys: impl IntoIterator<Item = &'a str>,
        allowed: &[&str],
    ) -> Option<Self> {
        let unknown: Vec<&str> = keys.into_iter().filter(|k| !allowed.contains(k)).collect();
        (!unknown.is_empty()).then(|| {
            LintError::entry(
                span,
                location,
                &format!("config contains unknown keys: {}", unknown.join(", ")),
            )
        })
    }

    /// A logical or pipeline-level error, kept verbatim.
    pub fn new(span: Option<&Span>, message: impl Into<String>) -> Self {
        LintError {
            message: message.into(),
            span: span.cloned(),
        }
    }
}

impl fmt::Display for LintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.span {
            Some(span) if !span.file.is_empty() => write!(f, "{span}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for LintError {}

/// Joins errors one per line, for callers that want a single message.
pub fn join(errors: &[LintError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
