//! glci's YAML reader against libyaml, the parser GitLab's Psych wraps: every input below is
//! read by both (libyaml through PyYAML's `CSafeLoader`), and they must agree on whether it
//! is YAML and, when it is, on the value. The inputs are the corners where a YAML parser
//! may be stricter or laxer than libyaml: indentation inside flow collections, quoted and
//! plain scalars over several lines, tabs, comments, directives, keys.
//!
//! Skipped, with a message, where `python3` with PyYAML built against libyaml is missing.
//! (A redefined anchor is left out: PyYAML's composer refuses it, libyaml and Psych do not.)
//!
//! glci's events come from libyaml-safer, a port of libyaml; [`KNOWN_DIFFERENCES`] lists the
//! inputs where glci still reads otherwise, each with the reason. The test fails when the list
//! is wrong either way, so fixing one means removing it.

use std::io::Write;
use std::process::{Command, Stdio};

use glci_test::config::{parse_yaml, Node, Value};

/// The inputs, each a small `.gitlab-ci.yml`-like document.
const CASES: &[&str] = &[
    // The flow sequence of issue 15: `]` less indented than its key.
    "job:\n  script: [echo]\n  parallel:\n    matrix:\n      - V: [\n          a,\n          b\n      ]\n",
    "a: [\n  b,\n  c\n]\n",
    "a:\n  b: [\n    c\n]\n",
    "a:\n  b: {\n    c: d\n}\n",
    "a:\n  - [b,\nc]\n",
    "a: [b,\nc]\n",
    "a: {b: c,\nd: e}\n",
    "- [a,\n b]\n- c\n",
    "a:\n  b:\n    - {c: d,\n  e: f}\n",
    // Flow details.
    "a: [b, c,]\n",
    "a: [b, , c]\n",
    "a: {b: c,}\n",
    "a: [b: c, d]\n",
    "a: {b, c: d}\n",
    "a: [\"b\":c]\n",
    "a: [b]# comment\n",
    "a: [b] # comment\n",
    "a: [http://x.y/z, c]\n",
    "a: {url: http://x.y}\n",
    "a: [b\n  c, d]\n",
    "a: [\n]\n",
    "a: {\n}\n",
    // Quoted scalars over several lines, continuation less indented.
    "a:\n  b: \"c\nd\"\n",
    "a:\n  b: 'c\nd'\n",
    "a: \"b\n   c\"\n",
    "- \"a\n b\"\n",
    "a:\n  b: \"c\n  d\"\n",
    // Plain scalars over several lines.
    "a: b\n  c\n",
    "a:\n  b: c\n d\n",
    "a: b\nc\n",
    "- a\n  b\n- c\n",
    // Tabs.
    "a:\tb\n",
    "a: b\t# c\n",
    "a:\n\tb: c\n",
    "a: [b,\tc]\n",
    "a: |\n  b\n  \tc\n",
    // Comments and blank lines.
    "a: b #c\n#d\n  # e\nf: g\n",
    "a: |\n  b\n # c\nd: e\n",
    "a:\n  # c\n  - b\n",
    "a: b#c\n",
    // Block scalars.
    "a: |2\n    b\n",
    "a: |+\n  b\n\nc: d\n",
    "a: >-\n  b\n\n  c\n",
    "a: |\n b\n  c\n",
    "a: |\nb\n",
    // Keys and structure.
    "? a\n: b\n",
    "- ? a\n  : b\n",
    "a: b: c\n",
    "a:\n  - b\n  c: d\n",
    "a:\n- b\n- c\n",
    "- - a\n  - b\n- c\n",
    "- a: 1\n  b: 2\n",
    "a: &x\n  - 1\nb: *x\n",
    "a: &x\nb: *x\n",
    "&a a: b\nc: *a\n",
    "a: &x [1, 2]\nb: [*x, 3]\n",
    "a: b\na: c\n",
    "\"a\": b\n'c': d\n",
    "a : b\n",
    "a:b\n",
    "a:\n  b\n  c: d\n",
    // Documents and directives.
    "---\na: b\n...\n",
    "%YAML 1.1\n---\na: b\n",
    "%YAML 1.2\n---\na: b\n",
    "%TAG !e! tag:example.com,2000:\n---\na: b\n",
    "--- a\n",
    "spec:\n  inputs: {}\n---\na: b\n",
    "a: b\n--- \nc: d\n",
    "\u{feff}a: b\n",
    "a: b\r\nc: d\r\n",
    // Anchors and tags.
    "- &a !!str foo\n- *a\n",
    "a: !!str 1\n",
    "a: !reference [b, c]\n",
    "a: *undefined\n",
    "<<: {a: b}\nc: d\n",
    // Indentation.
    "a:\n   b: c\n  d: e\n",
    "a:\n  - b\n   - c\n",
    "a:\n    - b\n    - c\n  d: e\n",
    "  a: b\n  c: d\n",
    " a: b\nc: d\n",
    // The last line without a line break (libyaml-safer needs help there, see `parser_text`).
    "a: |\n b",
    "a: |+\n b",
    "a: |-\n b",
    "a: >\n b\n c",
    "a: |\n b\n #c",
    "a: |\n b\n  ",
    "a: |\n  b\n ",
    "a: |+\n  b\n ",
    "a: |\n  b\n\n  c",
    "a:\n  - |\n    b",
    "a: b",
    "a: 'b'",
    "a: \"b",
    "a: \"\\",
    "a: [b",
    "a: [b]",
    "a: b\n ",
    "a: b\n# c",
    "\u{feff}a: |\n b",
    "a: |\r\n b\r\n c",
    "a: >+\n b\n\n c",
    // Tags and anchors in flow collections.
    "a: [!!str , b]\n",
    "a: [!!str, b]\n",
    "a: {b: !!str}\n",
    "a: [&x b, *x]\n",
    "a: *b\nb: &b c\n",
    // Control characters and escapes.
    "a: \"\\x41\\u00e9\\t\"\n",
    "a: \"\\q\"\n",
    "a: b\u{1}\n",
    // Forms from real configurations: flow collections continued on lines left of their key.
    "job:\n  variables: {A: '1',\n B: '2'}\n  rules: [{if: $X,\n    when: never}]\n",
    "job:\n  script:\n    - \"echo a\n      b\"\n    - 'echo c\n  d'\n",
    "job:\n  needs: [\n    build,\n  test]\n",
    ".x: &x\n  - a\njob:\n  needs: [*x,\n  b]\n",
];

/// Inputs glci reads otherwise than libyaml, and why (see the module comment).
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "a: [!!str, b]\n",
        "libyaml-safer panics on a tag directly before `,` in a flow collection where libyaml \
         reads an empty tagged scalar; glci turns the panic into an error",
    ),
    (
        "a: |\n b\n  ",
        "a blank last line without a line break is dropped before parsing (libyaml-safer \
         panics on it); libyaml keeps its spaces beyond the block scalar's indentation",
    ),
];

/// libyaml's verdict on every case: `Some(value as JSON)` or `None` when it refuses the text;
/// `Err` with the reason when libyaml cannot be run here.
fn libyaml(cases: &[&str]) -> Result<Vec<Option<serde_json::Value>>, String> {
    const SCRIPT: &str = r#"
import json, sys
try:
    import yaml
    loader = yaml.CSafeLoader
except Exception as e:
    print("unavailable: " + repr(e)); sys.exit(3)
class Reference(yaml.CSafeLoader):
    pass
Reference.add_constructor("!reference", lambda l, n: {"!reference": l.construct_sequence(n)})
def plain(v):
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)
out = []
for text in json.load(sys.stdin):
    try:
        docs = list(yaml.load_all(text, Loader=Reference))
        out.append({"ok": True, "value": plain(docs[-1] if docs else None)})
    except yaml.YAMLError as e:
        out.append({"ok": False, "error": str(e).splitlines()[0]})
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    let input = serde_json::to_string(cases).map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 3 is "no libyaml here" (skip); any other failure is the script's and must show.
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "the libyaml script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!(
            "{}{}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let results: Vec<serde_json::Value> =
        serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;
    Ok(results
        .into_iter()
        .map(|r| (r["ok"] == true).then(|| r["value"].clone()))
        .collect())
}

fn json(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::String(s) => s.clone().into(),
        Value::Seq(items) => items.iter().map(json).collect(),
        Value::Map(m) => m.iter().map(|(k, v)| (k.name.clone(), json(v))).collect(),
        Value::Reference(path) => serde_json::json!({ "!reference": path }),
    }
}

#[test]
fn glci_reads_yaml_as_libyaml_does() {
    let expected = match libyaml(CASES) {
        Ok(e) => e,
        Err(why) => {
            eprintln!("skipped: PyYAML with libyaml (CSafeLoader) is not available: {why}");
            return;
        }
    };
    let mut disagreements = Vec::new();
    for (text, want) in CASES.iter().zip(expected) {
        let got = parse_yaml(text, "t.yml");
        if KNOWN_DIFFERENCES.iter().any(|(known, _)| known == text) {
            let same = match (&got, &want) {
                (Ok(node), Some(value)) => json(node) == *value,
                (Err(_), None) => true,
                _ => false,
            };
            if same {
                disagreements.push(format!(
                    "{text:?} is listed in KNOWN_DIFFERENCES but glci and libyaml now agree: remove it"
                ));
            }
            continue;
        }
        match (&got, &want) {
            (Ok(node), Some(value)) if json(node) == *value => {}
            (Err(_), None) => {}
            (Ok(node), Some(value)) => disagreements.push(format!(
                "{text:?}: glci read {} but libyaml {value}",
                json(node)
            )),
            (Ok(node), None) => disagreements.push(format!(
                "{text:?}: glci accepts ({}) but libyaml refuses",
                json(node)
            )),
            (Err(e), Some(value)) => disagreements.push(format!(
                "{text:?}: glci refuses ({e}) but libyaml reads {value}"
            )),
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} cases differ from libyaml:\n{}",
        disagreements.len(),
        CASES.len(),
        disagreements.join("\n")
    );
}
