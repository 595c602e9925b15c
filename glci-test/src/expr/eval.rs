//! Evaluation with Ruby's value semantics, as GitLab's `Expression::Lexeme#evaluate` does it.

use std::fmt;
use std::sync::Arc;

use regex::Regex;

use super::error::ExprError;
use super::parser::{BinaryOp, Node, Operand};
use super::re2;
use crate::vars::VariableLookup;

/// A value during evaluation: Ruby `nil`, a String, a Boolean or an RE2 regexp.
#[derive(Debug, Clone)]
pub enum Value {
    Nil,
    String(String),
    Bool(bool),
    /// A compiled pattern and its RE2 source (`(?flags)body`, as `UntrustedRegexp#source`).
    Regex(Arc<Regex>, String),
}

impl Value {
    /// Ruby/ActiveSupport `present?`: not nil, not false, not an empty or whitespace-only
    /// string. This decides whether a rule matches.
    pub fn is_present(&self) -> bool {
        !self.is_blank()
    }

    /// ActiveSupport `blank?` (Unicode whitespace counts as blank, like `[[:space:]]`).
    pub fn is_blank(&self) -> bool {
        match self {
            Value::Nil | Value::Bool(false) => true,
            Value::String(s) => s.chars().all(char::is_whitespace),
            Value::Bool(true) | Value::Regex(..) => false,
        }
    }

    /// Ruby truthiness, used by `&&` and `||`: only `nil` and `false` are falsy.
    fn is_truthy(&self) -> bool {
        !matches!(self, Value::Nil | Value::Bool(false))
    }

    /// Ruby `to_s`.
    fn to_text(&self) -> String {
        match self {
            Value::Nil => String::new(),
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Regex(_, src) => src.clone(),
        }
    }
}

impl PartialEq for Value {
    /// `==` of GitLab's `Equals` lexeme: plain equality, except that a Boolean and a String
    /// compare as text (`$F == true` holds for `F="true"`). Two regexps are equal when their
    /// sources are (`UntrustedRegexp#==`).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Nil, Value::Nil) => true,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Bool(b), Value::String(s)) | (Value::String(s), Value::Bool(b)) => {
                s == if *b { "true" } else { "false" }
            }
            (Value::Regex(_, a), Value::Regex(_, b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("null"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Regex(_, src) => f.write_str(src),
        }
    }
}

/// Where evaluation reads `$VAR` and `$[[ inputs.NAME ]]` from.
pub(crate) struct Context<'a> {
    pub vars: &'a dyn VariableLookup,
    pub inputs: Option<&'a dyn VariableLookup>,
}

pub(crate) fn evaluate(node: &Node, ctx: &Context<'_>) -> Result<Value, ExprError> {
    match node {
        Node::Operand { operand, .. } => Ok(operand_value(operand, ctx)),
        Node::Not { operand, .. } => Ok(Value::Bool(evaluate(operand, ctx)?.is_blank())),
        Node::Binary {
            op,
            left,
            right,
            column,
        } => match op {
            BinaryOp::And => {
                let l = evaluate(left, ctx)?;
                if l.is_truthy() {
                    evaluate(right, ctx)
                } else {
                    Ok(l)
                }
            }
            BinaryOp::Or => {
                let l = evaluate(left, ctx)?;
                if l.is_truthy() {
                    Ok(l)
                } else {
                    evaluate(right, ctx)
                }
            }
            BinaryOp::Equals => Ok(Value::Bool(evaluate(left, ctx)? == evaluate(right, ctx)?)),
            BinaryOp::NotEquals => Ok(Value::Bool(evaluate(left, ctx)? != evaluate(right, ctx)?)),
            BinaryOp::Matches | BinaryOp::NotMatches => {
                let text = evaluate(left, ctx)?;
                let pattern = evaluate(right, ctx)?;
                let negate = *op == BinaryOp::NotMatches;
                if matches!(pattern, Value::Nil) {
                    // `=~ nil` is false and `!~ nil` is true.
                    return Ok(Value::Bool(negate));
                }
                Ok(Value::Bool(matches(&text, pattern, *column)? != negate))
            }
        },
    }
}

fn operand_value(operand: &Operand, ctx: &Context<'_>) -> Value {
    match operand {
        Operand::Variable(name) => ctx
            .vars
            .get(name)
            .map_or(Value::Nil, |v| Value::String(v.to_string())),
        Operand::Input(name) => ctx
            .inputs
            .and_then(|i| i.get(name))
            .map_or(Value::Nil, |v| Value::String(v.to_string())),
        Operand::String(s) => Value::String(s.clone()),
        Operand::Null => Value::Nil,
        Operand::Bool(b) => Value::Bool(*b),
        Operand::Pattern(p) => Value::Regex(p.shared_regex(), p.source()),
    }
}

/// `=~` of GitLab's `Matches` lexeme, for a non-nil right side.
fn matches(text: &Value, pattern: Value, column: usize) -> Result<bool, ExprError> {
    let text = text.to_text();
    match pattern {
        Value::Regex(re, _) => Ok(re.is_match(&text)),
        Value::String(s) => match re2::string_as_regex(&s) {
            Some(re) => Ok(re.is_match(&text)),
            // Not a valid `/re/flags`: Ruby's `String#scan(text)`, i.e. a substring test with
            // the *left* value searched inside the *right* one.
            None => Ok(s.contains(&text)),
        },
        other => Err(ExprError::runtime(
            format!("undefined method `scan' for {other}"),
            Some(column),
        )),
    }
}
