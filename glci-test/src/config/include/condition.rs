//! The one place `include:rules:if` meets the expression engine.

use crate::expr::Expression;

/// Whether `if: src` matches. A syntax error is GitLab's "invalid expression syntax"; a
/// runtime error counts as "does not match", as in GitLab.
pub fn evaluate_if(src: &str, vars: &[(String, String)]) -> Result<bool, String> {
    let expr = Expression::parse(src).map_err(|_| "invalid expression syntax".to_string())?;
    Ok(expr.evaluate(&vars).unwrap_or(false))
}
