//! The `rules:if` expression language: lexer, parser and evaluator, with RE2 regexes.
//!
//! Used for `rules:if`, `workflow:rules:if`, `include:rules:if` and `only/except:variables`.
//! Values are looked up raw (never expanded); see `docs/ci-yaml-semantics.md` §6.2.

mod error;
mod eval;
pub mod lexer;
pub mod parser;
mod re2;

pub use error::{ExprError, ExprErrorKind};
pub use eval::Value;
pub use parser::{BinaryOp, Node, Operand, Pattern};
pub use re2::Re2Error;

use std::cell::RefCell;
use std::sync::Arc;

use crate::vars::VariableLookup;
use eval::Context;

/// A parsed, valid expression. Immutable and shared: a clone is two reference counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    source: Arc<str>,
    root: Arc<Node>,
}

/// How many parsed expressions a thread keeps; past this the cache starts over, which keeps
/// its memory bounded whatever a long-running process parses.
const CACHE_LIMIT: usize = 1024;

thread_local! {
    /// Parsed expressions by source text. A pipeline repeats the same few `if:` texts on
    /// every job (shared with `!reference`, `extends` or anchors): a 1,000-job pipeline
    /// parsed ~3,000 expressions, nearly all identical, and lexing each (regex scans per
    /// token) was a fifth of validation. Parsing is pure, so a cached result is the same.
    /// foldhash: the lookup runs for every rule of every job, and SipHash was most of it.
    static CACHE: RefCell<foldhash::HashMap<String, Expression>> = RefCell::default();
}

impl Expression {
    /// Lexes and parses `src`. Every error here is what GitLab reports as
    /// "invalid expression syntax" at validation time. Regex literals are compiled once here
    /// too, so an invalid RE2 pattern is rejected at parse time, as GitLab's lexer does.
    pub fn parse(src: &str) -> Result<Expression, ExprError> {
        if let Some(hit) = CACHE.with(|c| c.borrow().get(src).cloned()) {
            return Ok(hit);
        }
        let root = parser::parse(lexer::tokenize(src)?)?;
        let expr = Expression {
            source: Arc::from(src),
            root: Arc::new(root),
        };
        CACHE.with(|c| {
            let mut cache = c.borrow_mut();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(src.to_string(), expr.clone());
        });
        Ok(expr)
    }

    /// The text this expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The syntax tree.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// The value of the expression (GitLab's `Statement#evaluate`): `&&`/`||` return operand
    /// values, so this can be a string or nil, not only a boolean.
    pub fn value(&self, vars: &dyn VariableLookup) -> Result<Value, ExprError> {
        eval::evaluate(&self.root, &Context { vars, inputs: None })
    }

    /// Like [`Expression::value`], with `$[[ inputs.NAME ]]` read from `inputs`.
    pub fn value_with_inputs(
        &self,
        vars: &dyn VariableLookup,
        inputs: &dyn VariableLookup,
    ) -> Result<Value, ExprError> {
        eval::evaluate(
            &self.root,
            &Context {
                vars,
                inputs: Some(inputs),
            },
        )
    }

    /// Whether a rule with this `if:` matches (GitLab's `Statement#truthful?`): the value is
    /// "present" (not nil, false, or a blank string). A runtime error is returned as `Err`;
    /// GitLab counts it as "does not match".
    pub fn evaluate(&self, vars: &dyn VariableLookup) -> Result<bool, ExprError> {
        self.value(vars).map(|v| v.is_present())
    }

    /// [`Expression::evaluate`] with `$[[ inputs.NAME ]]` read from `inputs`.
    pub fn evaluate_with_inputs(
        &self,
        vars: &dyn VariableLookup,
        inputs: &dyn VariableLookup,
    ) -> Result<bool, ExprError> {
        self.value_with_inputs(vars, inputs).map(|v| v.is_present())
    }
}

impl std::str::FromStr for Expression {
    type Err = ExprError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expression::parse(s)
    }
}

/// Compiles an RE2 pattern (with optional `i m s U` flags) with RE2's semantics; the error
/// says what RE2 would reject. For other users of GitLab's untrusted regexes.
pub fn re2_regex(pattern: &str, flags: &str) -> Result<regex::Regex, Re2Error> {
    re2::compile(pattern, flags)
}

/// `Gitlab::UntrustedRegexp::RubySyntax.fabricate`: a `/body/flags` string as a regex, or
/// `None` when it is not of that form or RE2 rejects it. This is how `only/except: refs`
/// items and variables on the right of `=~` are read.
pub fn ruby_syntax_regex(s: &str) -> Option<regex::Regex> {
    re2::string_as_regex(s)
}

/// Parses and evaluates `src` in one step: `Ok(true)` iff a rule with `if: src` matches.
pub fn evaluate(src: &str, vars: &dyn VariableLookup) -> Result<bool, ExprError> {
    Expression::parse(src)?.evaluate(vars)
}
