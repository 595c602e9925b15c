//! Tokens → syntax tree, with the shunting-yard algorithm of GitLab's
//! `Expression::Parser#tokens_rpn` / `#tree`, so that the same inputs are accepted and the
//! same ones rejected (e.g. `$A !` is accepted there as `!$A`).

use std::fmt;
use std::sync::Arc;

use regex::Regex;

use super::error::ExprError;
use super::lexer::{Token, TokenKind};
use super::re2::{compile_literal, regex_source};

/// A `/body/flags` literal, compiled once when the expression is parsed.
#[derive(Clone)]
pub struct Pattern {
    /// The body with `\/` already unescaped.
    pub body: String,
    /// Any of `i m s U`.
    pub flags: String,
    /// Shared, not cloned, by evaluation: a cloned `Regex` starts with an empty cache pool,
    /// so each `=~ /…/` evaluation would rebuild the matcher's caches from scratch.
    regex: Arc<Regex>,
}

impl Pattern {
    /// The compiled RE2-semantics regex.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// The compiled regex, shared (see the field).
    pub(crate) fn shared_regex(&self) -> Arc<Regex> {
        Arc::clone(&self.regex)
    }

    /// What RE2 is given: `(?flags)body`.
    pub fn source(&self) -> String {
        regex_source(&self.body, &self.flags)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.body == other.body && self.flags == other.flags
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/{}", self.body, self.flags)
    }
}

/// A leaf of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Variable(String),
    Input(String),
    String(String),
    Pattern(Pattern),
    Null,
    Bool(bool),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Equals,
    NotEquals,
    Matches,
    NotMatches,
    And,
    Or,
}

impl BinaryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Equals => "==",
            BinaryOp::NotEquals => "!=",
            BinaryOp::Matches => "=~",
            BinaryOp::NotMatches => "!~",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
        }
    }
}

/// The syntax tree; `column` is where the node's token starts (1-based, characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Operand {
        operand: Operand,
        column: usize,
    },
    Not {
        operand: Box<Node>,
        column: usize,
    },
    Binary {
        op: BinaryOp,
        left: Box<Node>,
        right: Box<Node>,
        column: usize,
    },
}

const PAREN_CLOSE: u32 = 900;

/// Precedence of an operator token (lower binds tighter), GitLab's numbers.
fn precedence(kind: &TokenKind) -> u32 {
    match kind {
        TokenKind::Not => 1,
        TokenKind::Equals | TokenKind::NotEquals | TokenKind::Matches | TokenKind::NotMatches => 10,
        TokenKind::And => 11,
        TokenKind::Or => 12,
        TokenKind::ParenClose => PAREN_CLOSE,
        _ => 901, // "("
    }
}

/// The operand a value token stands for; `patterns` holds the compiled pattern literals in
/// token order.
fn operand(kind: &TokenKind, patterns: &mut std::vec::IntoIter<Pattern>) -> Option<Operand> {
    Some(match kind {
        TokenKind::Variable(n) => Operand::Variable(n.clone()),
        TokenKind::Input(n) => Operand::Input(n.clone()),
        TokenKind::String(s) => Operand::String(s.clone()),
        TokenKind::Pattern { .. } => Operand::Pattern(patterns.next()?),
        TokenKind::Null => Operand::Null,
        TokenKind::Bool(b) => Operand::Bool(*b),
        _ => return None,
    })
}

fn binary(kind: &TokenKind) -> Option<BinaryOp> {
    Some(match kind {
        TokenKind::Equals => BinaryOp::Equals,
        TokenKind::NotEquals => BinaryOp::NotEquals,
        TokenKind::Matches => BinaryOp::Matches,
        TokenKind::NotMatches => BinaryOp::NotMatches,
        TokenKind::And => BinaryOp::And,
        TokenKind::Or => BinaryOp::Or,
        _ => return None,
    })
}

/// Reverse Polish order of `tokens` (GitLab's `tokens_rpn`).
fn to_rpn(tokens: Vec<Token>) -> Result<Vec<Token>, ExprError> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut ops: Vec<Token> = Vec::new();
    for tok in tokens {
        match tok.kind {
            TokenKind::Not | TokenKind::ParenOpen => ops.push(tok),
            TokenKind::ParenClose => {
                while ops
                    .last()
                    .is_some_and(|t| precedence(&t.kind) <= PAREN_CLOSE)
                {
                    out.extend(ops.pop());
                }
                match ops.last() {
                    None => {
                        return Err(ExprError::parse("Unmatched parenthesis", Some(tok.column)))
                    }
                    Some(t) if t.kind == TokenKind::ParenOpen => {
                        ops.pop();
                    }
                    Some(_) => {}
                }
            }
            ref k if binary(k).is_some() => {
                let p = precedence(k);
                while ops.last().is_some_and(|t| precedence(&t.kind) <= p) {
                    out.extend(ops.pop());
                }
                ops.push(tok);
            }
            _ => out.push(tok),
        }
    }
    out.extend(ops.into_iter().rev());
    Ok(out)
}

/// Builds the tree (GitLab's `Parser#tree`).
///
/// As in GitLab, where every lexeme is built (and a pattern compiled) before the tree, an
/// invalid regex is reported before any grammar error.
pub fn parse(tokens: Vec<Token>) -> Result<Node, ExprError> {
    if tokens.is_empty() {
        return Err(ExprError::parse("Empty statement", None));
    }
    let mut compiled = Vec::new();
    for tok in &tokens {
        if let TokenKind::Pattern { body, flags } = &tok.kind {
            compiled.push(Pattern {
                body: body.clone(),
                flags: flags.clone(),
                regex: Arc::new(compile_literal(body, flags, tok.column)?),
            });
        }
    }
    let rpn = to_rpn(tokens)?;
    // RPN keeps value tokens in source order, so patterns come out in the order compiled.
    let mut patterns = compiled.into_iter();
    let mut stack: Vec<Node> = Vec::new();
    for tok in rpn {
        let column = tok.column;
        if let Some(operand) = operand(&tok.kind, &mut patterns) {
            stack.push(Node::Operand { operand, column });
        } else if let Some(op) = binary(&tok.kind) {
            // GitLab pops right then left and checks the left one first, so a missing
            // operand on either side (`$A ==`, `== $A`, `==`) reads "Invalid left operand".
            let right = stack.pop();
            let left = stack.pop();
            let (Some(left), Some(right)) = (left, right) else {
                return Err(ExprError::parse("Invalid left operand", Some(column)));
            };
            stack.push(Node::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
                column,
            });
        } else if tok.kind == TokenKind::Not {
            let operand = stack
                .pop()
                .ok_or_else(|| ExprError::parse("Invalid operand", Some(column)))?;
            stack.push(Node::Not {
                operand: Box::new(operand),
                column,
            });
        } else {
            // Only a leftover "(" can get here.
            return Err(ExprError::parse(
                "Unprocessable token found in parse tree: parenthesis_open",
                Some(column),
            ));
        }
    }
    match (stack.pop(), stack.is_empty()) {
        (Some(root), true) => Ok(root),
        (Some(_), false) => Err(ExprError::parse(
            "Unreachable nodes in parse tree",
            stack.first().map(node_column),
        )),
        (None, _) => Err(ExprError::parse("Empty statement", None)),
    }
}

fn node_column(n: &Node) -> usize {
    match n {
        Node::Operand { column, .. } | Node::Not { column, .. } | Node::Binary { column, .. } => {
            *column
        }
    }
}
