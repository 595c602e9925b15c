//! The resolved tree back to YAML text (`cargo glci config`, snapshots): block style, strings
//! quoted whenever GitLab's YAML 1.1 reading would turn them into something else, multi-line
//! strings as literal blocks so scripts stay readable.

use std::fmt::Write;

use super::scalar::{resolve_plain, Resolved};
use super::value::ruby_float;
use super::value::{Node, Value};

/// Emits `node` as a YAML document (no `---`), ending with a newline.
pub fn to_yaml(node: &Node) -> String {
    let mut out = String::new();
    match &node.value {
        Value::Map(m) if !m.is_empty() => emit_map(node, 0, &mut out),
        Value::Seq(s) if !s.is_empty() => emit_seq(node, 0, &mut out),
        _ => {
            out.push_str(&inline(node, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn emit_map(node: &Node, indent: usize, out: &mut String) {
    let Value::Map(map) = &node.value else {
        return;
    };
    let mut first = true;
    for (key, value) in map {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str(&scalar_string(&key.name));
        out.push(':');
        emit_value_after_key(value, indent, out);
    }
}

fn emit_value_after_key(value: &Node, indent: usize, out: &mut String) {
    match &value.value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            emit_map(value, indent + 2, out);
        }
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            pad(out, indent);
            emit_seq(value, indent, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(value, indent));
            out.push('\n');
        }
    }
}

fn emit_seq(node: &Node, indent: usize, out: &mut String) {
    let Value::Seq(items) = &node.value else {
        return;
    };
    let mut first = true;
    for item in items {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str("- ");
        match &item.value {
            Value::Map(m) if !m.is_empty() => emit_map(item, indent + 2, out),
            Value::Seq(s) if !s.is_empty() => emit_seq(item, indent + 2, out),
            _ => {
                out.push_str(&inline(item, indent + 2));
                out.push('\n');
            }
        }
    }
}

/// A value that fits after `key: ` or `- ` (scalars, empty collections, references, blocks).
fn inline(node: &Node, indent: usize) -> String {
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(x) if x.is_nan() => ".nan".into(),
        Value::Float(x) if x.is_infinite() => if *x > 0.0 { ".inf" } else { "-.inf" }.into(),
        Value::Float(x) => ruby_float(*x),
        Value::String(s) => match literal_block(s, indent) {
            Some(block) => block,
            None => scalar_string(s),
        },
        Value::Seq(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
        Value::Reference(path) => {
            let parts: Vec<String> = path.iter().map(|p| scalar_string(p)).collect();
            format!("!reference [{}]", parts.join(", "))
        }
    }
}

/// `|`, `|-` or `|+` block for multi-line text that a block can hold exactly.
fn literal_block(s: &str, indent: usize) -> Option<String> {
    if !s.contains('\n')
        || s.starts_with([' ', '\t', '\n'])
        || s.chars().any(|c| c.is_control() && c != '\n')
        || s.lines().any(|l| l.ends_with([' ', '\t']))
    {
        return None;
    }
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let mut out = format!("|{chomp}");
    for line in s[..body.len()].split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(&mut out, indent + 2);
            out.push_str(line);
        }
    }
    for _ in 1..trailing {
        out.push('\n');
    }
    Some(out)
}

/// A string as a plain scalar when it reads back as the same string, double-quoted otherwise.
fn scalar_string(s: &str) -> String {
    if plain_ok(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn plain_ok(s: &str) -> bool {
    if s.is_empty()
        || s.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`', ' ', '<',
        ])
        || s.ends_with([' ', ':'])
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(char::is_control)
    {
        return false;
    }
    matches!(resolve_plain(s), Resolved::Value(Value::String(ref back)) if back == s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    #[test]
    fn round_trips_tricky_scalars() {
        let text = "a: 'yes'\nb: '1.0'\nc: \"x: y\"\nd: |\n  echo 1\n  echo 2\ne: '-x'\nf: ''\ng: ~\nh: [1, 'on']\ni: {}\nj: !reference [.a, b]\nk: 1.0\nl: \"tab\\there\"\n";
        let n = parse_yaml(text, "e.yml").unwrap_or_else(|e| panic!("{e}"));
        let out = to_yaml(&n);
        let back = parse_yaml(&out, "e2.yml").unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(to_yaml(&back), out);
        assert!(out.contains("a: \"yes\"\n"), "{out}");
        assert!(out.contains("d: |\n  echo 1\n  echo 2\n"), "{out}");
        assert!(out.contains("j: !reference [.a, b]\n"), "{out}");
        assert!(out.contains("k: 1.0\n"), "{out}");
        assert_eq!(back.get("l").and_then(Node::as_str), Some("tab\there"));
    }

    #[test]
    fn nested_collections() {
        let n = parse_yaml(
            "job:\n  script: [a, b]\n  rules:\n    - if: $X\n      when: never\n",
            "e.yml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            to_yaml(&n),
            "job:\n  script:\n  - a\n  - b\n  rules:\n  - if: $X\n    when: never\n"
        );
    }
}
