//! The one place `include:rules:if` meets the expression engine.

use crate::expr::{ExprError, Expression};

/// Whether `if: src` matches. A syntax error is returned (GitLab reports any as "invalid
/// expression syntax"); a runtime error counts as "does not match", as in GitLab.
pub fn evaluate_if(src: &str, vars: &[(String, String)]) -> Result<bool, ExprError> {
    let expr = Expression::parse(src)?;
    Ok(expr.evaluate(&vars).unwrap_or(false))
}
