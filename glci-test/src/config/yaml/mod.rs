//! YAML text → [`Node`] tree, read the way GitLab's Psych `safe_load` reads it: YAML 1.1 plain
//! scalars, aliases expanded (with a budget against "billion laughs"), `<<` merge keys applied
//! in position like `Psych::Visitors::ToRuby#revive_hash`, `!reference` kept for later, keys
//! turned into strings, and every node carrying the 1-based line:col it was written at.
//!
//! The events come from `libyaml-safer`, a safe-Rust port of libyaml, the C parser under Psych:
//! what GitLab accepts as YAML (a flow sequence whose `]` sits left of its key, a quoted scalar
//! continued at column 1, a tab after `:`) is what glci accepts, and what libyaml refuses is
//! refused with libyaml's message at its line and column. Everything above the events (anchors,
//! merge keys, tags, the budgets) is glci's own, mirroring Psych's `ToRuby` visitor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use libyaml_safer::{Event, EventData, Mark, Parser, ScalarStyle};

use super::error::ConfigError;
use super::scalar::{resolve_plain, Resolved};
use super::value::ruby_float;
use super::value::{Key, Mapping, Node, Span, Value};

/// GitLab's `max_yaml_depth` default.
pub const MAX_DEPTH: usize = 100;
/// Nodes one file may expand to, aliases included. Psych shares aliased objects, we copy
/// them; this bound keeps a hostile file from exhausting memory while leaving real
/// configurations (a 2 MB file holds far fewer nodes) untouched.
pub const MAX_NODES: usize = 500_000;
/// GitLab's message when `DeepSize` refuses a parsed file.
pub const TOO_BIG: &str = "The parsed YAML is too big";

/// The documents of one file: an optional `spec:` header and the configuration itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Documents {
    pub header: Option<Node>,
    pub content: Node,
}

/// Parses one YAML text into the configuration document (the last one, after an optional
/// `spec:` header). An empty text gives a `Null` node.
pub fn parse_yaml(text: &str, file: &str) -> Result<Node, ConfigError> {
    Ok(parse_documents(text, file)?.content)
}

/// Parses one YAML text and splits off the `spec:` header as GitLab does: a header exists only
/// when there are two documents and the first is a mapping with a `spec` key.
pub fn parse_documents(text: &str, file: &str) -> Result<Documents, ConfigError> {
    let file: Arc<str> = Arc::from(file);
    let mut docs = parse_all(text, &file)?;
    let start = Span {
        file: file.clone(),
        line: 1,
        col: 1,
    };
    if docs.len() > 2 {
        let span = docs[2].span.clone();
        return Err(ConfigError::at(
            &span,
            "too many YAML documents: at most 2 are allowed (a `spec:` header, then the configuration)",
        ));
    }
    let content = docs.pop().unwrap_or_else(|| Node::new(Value::Null, start));
    let header = docs.pop().filter(|first| first.get("spec").is_some());
    Ok(Documents { header, content })
}

/// One parser item: an event (with where it was written), or the parser's refusal.
type Item = Result<Event, SyntaxError>;

/// libyaml's refusal of a text: Psych's wording and where.
#[derive(Debug)]
struct SyntaxError {
    message: String,
    mark: Mark,
}

impl From<libyaml_safer::Error> for SyntaxError {
    /// As Psych words it (`problem context`, e.g. "did not find expected ',' or ']' while
    /// parsing a flow sequence"), at the problem's line and column.
    fn from(e: libyaml_safer::Error) -> Self {
        let message = match e.context() {
            Some(context) => format!("{} {context}", e.problem()),
            // A reader error (a control character, say) has no mark: its text has the offset.
            None if e.problem_mark().is_none() => e.to_string(),
            None => e.problem().to_string(),
        };
        SyntaxError {
            message,
            mark: e.problem_mark().unwrap_or_default(),
        }
    }
}

/// The text handed to the parser: `text` with a line break added when its last line has
/// none and is not blank. libyaml-safer panics ("unexpected end of input") on a block scalar
/// that runs to the end of the text without a final break, where libyaml's C reader sees its
/// NUL sentinel; with the break it parses, and [`Events`] takes the break back out of the one
/// scalar it lands in. A blank unterminated last line is dropped instead: it only ever adds
/// trailing blanks, which Psych ignores too (outside a block scalar indented less than them).
/// A byte order mark is left out here rather than by the parser, whose offsets then count
/// from after it, as [`Events`] needs.
fn parser_text(text: &str) -> Cow<'_, str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let last_line = text.rsplit(['\n', '\r']).next().unwrap_or_default();
    if last_line.is_empty() {
        Cow::Borrowed(text)
    } else if last_line.trim_matches([' ', '\t']).is_empty() {
        Cow::Borrowed(&text[..text.len() - last_line.len()])
    } else {
        Cow::Owned(format!("{text}\n"))
    }
}

/// libyaml's events for a text, ending after the end of the stream or at the first error.
struct Events<'t> {
    parser: Parser<&'t [u8]>,
    /// The length of the text as written (the parser may see one more line break).
    written: usize,
    /// Where the last event ended, to place a parser failure.
    last: Mark,
    done: bool,
}

impl<'t> Events<'t> {
    fn new(parser_text: &'t str, written: usize) -> Self {
        let mut parser = Parser::new();
        parser.set_input(parser_text.as_bytes());
        Events {
            parser,
            written,
            last: Mark::default(),
            done: false,
        }
    }
}

impl Iterator for Events<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        // libyaml-safer has a few `panic!`s where libyaml's C code goes on (a tag right before
        // `,` in a flow collection); a panic becomes a located error, never a crash.
        let parser = &mut self.parser;
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parser.next()));
        match next {
            Ok(Some(Ok(mut event))) => {
                if let EventData::Scalar { value, style, .. } = &mut event.data {
                    // The break [`parser_text`] added ends the last line of a block scalar
                    // (`|`, `>`); clipped or kept, that line had no break of its own.
                    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                        && usize::try_from(event.end_mark.index).unwrap_or(usize::MAX)
                            > self.written
                        && value.ends_with('\n')
                    {
                        value.pop();
                    }
                }
                self.last = event.end_mark;
                Some(Ok(event))
            }
            Ok(Some(Err(e))) => {
                self.done = true;
                Some(Err(SyntaxError::from(e)))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(_) => {
                self.done = true;
                Some(Err(SyntaxError {
                    message: "the YAML parser (libyaml-safer) failed on what follows; GitLab's libyaml may read it".into(),
                    mark: self.last,
                }))
            }
        }
    }
}

/// Events handed from the parsing thread to the building one at a time.
const BATCH: usize = 1024;
/// Below this size a file is parsed and built on one thread (a thread costs more).
const PIPELINE_BYTES: usize = 64 * 1024;

fn parse_all(text: &str, file: &Arc<str>) -> Result<Vec<Node>, ConfigError> {
    let pipelined = text.len() >= PIPELINE_BYTES && crate::threads::two_cores();
    build_documents(text, file, pipelined)
}

/// The documents of `text`, parsed and built on one thread or (`pipelined`) two.
fn build_documents(text: &str, file: &Arc<str>, pipelined: bool) -> Result<Vec<Node>, ConfigError> {
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        docs: Vec::new(),
    };
    let parser_text = parser_text(text);
    let written = text.strip_prefix('\u{feff}').unwrap_or(text).len();
    let events = || Events::new(&parser_text, written);
    if !pipelined {
        for item in events() {
            builder.item(item, file)?;
        }
        return Ok(builder.docs);
    }
    // A big file is parsed on a second thread while this one builds the tree from the
    // events already parsed: scanning (libyaml) is most of the work and building the
    // other third, so the two overlap. Events arrive in order and building stops at the
    // first error, parser's or builder's, exactly as the one-thread loop does; dropping the
    // receiver then stops the parser at its next batch.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Item>>(8);
        s.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            for item in events() {
                let failed = item.is_err();
                batch.push(item);
                if failed || batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(full).is_err() || failed {
                        return;
                    }
                }
            }
            // The receiver may be gone already (it stopped at an error): nothing to do then.
            let _ = tx.send(batch);
        });
        for batch in rx {
            for item in batch {
                builder.item(item, file)?;
            }
        }
        Ok(builder.docs)
    })
}

enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: Option<String>,
        reference: bool,
    },
    Map {
        map: Mapping,
        key: Option<(Node, bool)>,
        span: Span,
        anchor: Option<String>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    /// Anchor name → (node, its node count), for alias expansion. A later anchor of the same
    /// name replaces an earlier one, as in libyaml and Psych.
    anchors: HashMap<String, (Node, usize)>,
    nodes: usize,
    docs: Vec<Node>,
}

/// The prefix libyaml expands the `!!` handle to.
const CORE_PREFIX: &str = "tag:yaml.org,2002:";

/// `str` for `!!str` (resolved by libyaml to `tag:yaml.org,2002:str`), and so on.
fn core_suffix(tag: &str) -> Option<&str> {
    tag.strip_prefix(CORE_PREFIX)
}

fn is_reference(tag: &str) -> bool {
    tag == "!reference"
}

/// A libyaml mark (0-based line and column) as a 1-based span in `file`.
fn span_at(file: &Arc<str>, mark: Mark) -> Span {
    Span {
        file: file.clone(),
        line: u32::try_from(mark.line + 1).unwrap_or(u32::MAX),
        col: u32::try_from(mark.column + 1).unwrap_or(u32::MAX),
    }
}

impl Builder {
    /// One parser item: its error as a configuration error, or its event built in.
    fn item(&mut self, item: Item, file: &Arc<str>) -> Result<(), ConfigError> {
        let event = item.map_err(|e| ConfigError::at(&span_at(file, e.mark), e.message))?;
        let at = span_at(file, event.start_mark);
        self.event(event.data, at)
    }

    fn event(&mut self, event: EventData, at: Span) -> Result<(), ConfigError> {
        match event {
            EventData::StreamStart { .. }
            | EventData::StreamEnd
            | EventData::DocumentStart { .. }
            | EventData::DocumentEnd { .. } => Ok(()),
            EventData::Alias { anchor } => {
                let (node, size) = match self.anchors.get(&anchor) {
                    Some(found) => found.clone(),
                    // An anchor is registered when its node is complete, so an alias inside
                    // its own anchor's node is not found yet.
                    None if self.is_open(&anchor) => {
                        return Err(ConfigError::at(
                            &at,
                            "alias refers to a node that contains it (recursive alias)",
                        ))
                    }
                    // Psych's wording (`Psych::AnchorNotDefined`).
                    None => {
                        return Err(ConfigError::at(
                            &at,
                            format!("An alias referenced an unknown anchor: {anchor}"),
                        ))
                    }
                };
                self.count(size, &at)?;
                self.complete(node, false, None)
            }
            EventData::Scalar {
                anchor,
                tag,
                value,
                style,
                ..
            } => {
                self.count(1, &at)?;
                let tag = tag.as_deref();
                let str_tagged = tag.and_then(core_suffix) == Some("str");
                let value = self.scalar(&value, style, tag, &at)?;
                self.complete(Node::new(value, at), str_tagged, anchor)
            }
            EventData::SequenceStart { anchor, tag, .. } => {
                self.count(1, &at)?;
                self.push(
                    Frame::Seq {
                        items: Vec::new(),
                        span: at.clone(),
                        anchor,
                        reference: tag.as_deref().is_some_and(is_reference),
                    },
                    &at,
                )
            }
            EventData::MappingStart { anchor, tag, .. } => {
                self.count(1, &at)?;
                if tag.as_deref().is_some_and(is_reference) {
                    return Err(ConfigError::at(
                        &at,
                        "!reference is not valid: it takes a sequence of keys, e.g. !reference [.job, script]",
                    ));
                }
                self.push(
                    Frame::Map {
                        map: Mapping::default(),
                        key: None,
                        span: at.clone(),
                        anchor,
                    },
                    &at,
                )
            }
            EventData::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    span,
                    anchor,
                    reference,
                }) => {
                    let value = if reference {
                        reference_value(&items, &span)?
                    } else {
                        Value::Seq(items)
                    };
                    self.complete(Node::new(value, span), false, anchor)
                }
                _ => Err(ConfigError::at(&at, "unbalanced YAML sequence end")),
            },
            EventData::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    map,
                    key,
                    span,
                    anchor,
                }) => {
                    if let Some((k, _)) = key {
                        return Err(ConfigError::at(&k.span, "mapping key without a value"));
                    }
                    self.complete(Node::new(Value::Map(map), span), false, anchor)
                }
                _ => Err(ConfigError::at(&at, "unbalanced YAML mapping end")),
            },
        }
    }

    /// Whether `anchor` names a collection still being built.
    fn is_open(&self, anchor: &str) -> bool {
        self.stack.iter().any(|frame| match frame {
            Frame::Seq { anchor: a, .. } | Frame::Map { anchor: a, .. } => {
                a.as_deref() == Some(anchor)
            }
        })
    }

    fn count(&mut self, n: usize, at: &Span) -> Result<(), ConfigError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(ConfigError::at(at, TOO_BIG));
        }
        Ok(())
    }

    fn push(&mut self, frame: Frame, at: &Span) -> Result<(), ConfigError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ConfigError::at(at, TOO_BIG));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&str>,
        at: &Span,
    ) -> Result<Value, ConfigError> {
        if let Some(tag) = tag {
            if is_reference(tag) {
                return Err(ConfigError::at(
                    at,
                    format!("!reference {text} is not valid: it takes a sequence of keys, e.g. !reference [.job, script]"),
                ));
            }
            if tag.starts_with("!ruby/") || tag.starts_with("tag:ruby.yaml.org,") {
                return Err(ConfigError::at(
                    at,
                    format!("Tried to load unspecified class: {tag}"),
                ));
            }
            if let Some(suffix) = core_suffix(tag) {
                return core_tagged(text, suffix, at);
            }
            // Psych ignores other tags on scalars and resolves the text as if untagged.
        }
        if style != ScalarStyle::Plain {
            return Ok(Value::String(text.to_string()));
        }
        match resolve_plain(text) {
            Resolved::Value(v) => Ok(v),
            Resolved::Disallowed(class) => Err(ConfigError::at(
                at,
                format!("Tried to load unspecified class: {class}"),
            )),
        }
    }

    fn complete(
        &mut self,
        node: Node,
        str_tagged: bool,
        anchor: Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(anchor) = anchor {
            // Sized only here: counting every collection as it closed walked each subtree
            // once per enclosing level, for nothing when no alias would ever copy it.
            let size = node_count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                self.docs.push(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { map, key, .. }) => match key.take() {
                None => {
                    *key = Some((node, str_tagged));
                    Ok(())
                }
                Some((k, k_str_tagged)) => insert_pair(map, k, k_str_tagged, node),
            },
        }
    }
}

/// `!!str`, `!!int`, … on a scalar, as Psych's `deserialize` handles the core tags.
fn core_tagged(text: &str, suffix: &str, at: &Span) -> Result<Value, ConfigError> {
    let resolved = match resolve_plain(text) {
        Resolved::Value(v) => v,
        Resolved::Disallowed(_) => Value::String(text.to_string()),
    };
    Ok(match suffix {
        "str" | "binary" => Value::String(text.to_string()),
        "int" => match resolved {
            Value::Int(i) => Value::Int(i),
            _ => {
                return Err(ConfigError::at(
                    at,
                    format!("invalid value for Integer(): {text:?}"),
                ))
            }
        },
        "float" => match resolved {
            Value::Float(x) => Value::Float(x),
            Value::Int(i) => Value::Float(i as f64),
            _ => {
                return Err(ConfigError::at(
                    at,
                    format!("invalid value for Float(): {text:?}"),
                ))
            }
        },
        _ => resolved,
    })
}

fn reference_value(items: &[Node], span: &Span) -> Result<Value, ConfigError> {
    let mut path = Vec::with_capacity(items.len());
    for item in items {
        match &item.value {
            Value::String(s) => path.push(s.clone()),
            _ => {
                return Err(ConfigError::at(
                    span,
                    format!("!reference {} is not valid", inspect_seq(items)),
                ))
            }
        }
    }
    if path.is_empty() {
        return Err(ConfigError::at(span, "!reference [] is not valid"));
    }
    Ok(Value::Reference(path))
}

/// Renders a short sequence the way Ruby's `inspect` would, for messages.
fn inspect_seq(items: &[Node]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|n| match &n.value {
            Value::String(s) => format!("{s:?}"),
            Value::Null => "nil".into(),
            other => key_text(other).unwrap_or_else(|| "...".into()),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// A scalar key as GitLab ends up naming it: Ruby's `to_s` of whatever Psych resolved.
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(x) => Some(ruby_float(*x)),
        Value::Null => Some(String::new()),
        Value::Seq(_) | Value::Map(_) | Value::Reference(_) => None,
    }
}

/// One `key: value` pair into a mapping, as `revive_hash` does: `<<` (unless written `!!str`)
/// merges a mapping, or a sequence of mappings with earlier ones winning, over what is already
/// there; later keys override; a repeated key keeps its first position and takes the last value.
fn insert_pair(map: &mut Mapping, k: Node, k_str_tagged: bool, v: Node) -> Result<(), ConfigError> {
    // The key's string is moved into the `Key`, not copied: one allocation less per key.
    let Node { value, span } = k;
    let name = match value {
        Value::String(s) => s,
        other => match key_text(&other) {
            Some(name) => name,
            None => {
                return Err(ConfigError::at(
                    &span,
                    "mapping keys must be scalars (strings, numbers, booleans)",
                ))
            }
        },
    };
    let key = Key::new(name, span);
    if key.name == "<<" && !k_str_tagged {
        match &v.value {
            Value::Map(merged) => {
                for (mk, mv) in merged {
                    map.insert(mk.clone(), mv.clone());
                }
                return Ok(());
            }
            Value::Seq(items) if items.iter().all(|i| matches!(i.value, Value::Map(_))) => {
                let mut combined = Mapping::default();
                for item in items.iter().rev() {
                    if let Value::Map(m) = &item.value {
                        for (mk, mv) in m {
                            combined.insert(mk.clone(), mv.clone());
                        }
                    }
                }
                for (mk, mv) in combined {
                    map.insert(mk, mv);
                }
                return Ok(());
            }
            // Psych's `merge!` raises TypeError on anything else and keeps `<<` as a plain key.
            _ => {}
        }
    }
    map.insert(key, v);
    Ok(())
}

/// Nodes in a tree (for the alias budget).
pub(crate) fn node_count(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(node_count).sum(),
        Value::Map(m) => m.values().map(|v| 1 + node_count(v)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
