//! GitLab's expansion of a variable collection that references itself
//! (`Variables::Collection#sort_and_expand_all`): topological order over references (so
//! nesting works to any depth), cycle detection with GitLab's message, raw and file-type
//! variables handled per option. This is how job variables reach the runner.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::gitlab::possible_reference;
use super::variable::{find, Variable};

/// `Collection::Item::VARIABLES_REGEXP`: `$$` and `%%` are matched (and left alone) so that
/// an escaped `$` never starts a reference; `${}` is matched and left alone too.
static ITEM_REFERENCE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"\$\$|%%|\$([a-zA-Z_][a-zA-Z0-9_]*)|\$\{([a-zA-Z_][a-zA-Z0-9_]*)?\}|%([a-zA-Z_][a-zA-Z0-9_]*)%",
    )
    .ok()
});

fn key<'a>(c: &Captures<'a>) -> Option<&'a str> {
    c.get(1)
        .or_else(|| c.get(2))
        .or_else(|| c.get(3))
        .map(|m| m.as_str())
}

/// The knobs of `sort_and_expand_all`. `Default` is GitLab's default (unknown → "", file and
/// raw references expanded); [`ExpandOptions::FOR_RUNNER`] is what GitLab uses for the
/// variables it sends to the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandOptions {
    /// Leave references to undefined variables as written (else they become "").
    pub keep_undefined: bool,
    /// Replace a reference to a file-type variable by its content (else keep `$FILE_VAR`).
    pub expand_file_refs: bool,
    /// Replace a reference to a raw variable by its value (else keep it, so the runner,
    /// which knows the variable is raw, resolves it without expanding inside).
    pub expand_raw_refs: bool,
}

impl Default for ExpandOptions {
    fn default() -> Self {
        ExpandOptions {
            keep_undefined: false,
            expand_file_refs: true,
            expand_raw_refs: true,
        }
    }
}

impl ExpandOptions {
    /// `sort_and_expand_all(keep_undefined: true, expand_file_refs: false, expand_raw_refs: false)`.
    pub const FOR_RUNNER: ExpandOptions = ExpandOptions {
        keep_undefined: true,
        expand_file_refs: false,
        expand_raw_refs: false,
    };
}

/// Variables that reference each other in a loop. `Display` is GitLab's message; prefix it
/// with `"<job>: "` for the pipeline error (see [`CircularReference::for_job`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircularReference {
    /// Each cycle's variable names, in the order GitLab lists them.
    pub cycles: Vec<Vec<String>>,
}

impl CircularReference {
    /// The pipeline-creation error: `<job>: circular variable reference detected: [...]`.
    pub fn for_job(&self, job: &str) -> String {
        format!("{job}: {self}")
    }
}

impl fmt::Display for CircularReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cycles: Vec<String> = self
            .cycles
            .iter()
            .map(|c| {
                let names: Vec<String> = c.iter().map(|k| ruby_inspect(k)).collect();
                format!("[{}]", names.join(", "))
            })
            .collect();
        write!(
            f,
            "circular variable reference detected: {}",
            cycles.join(", ")
        )
    }
}

impl std::error::Error for CircularReference {}

/// Ruby's `String#inspect` for the characters variable names can realistically hold.
fn ruby_inspect(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '#' if matches!(chars.peek(), Some('{' | '$' | '@')) => out.push_str("\\#"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Names referenced by `v` (`Item#depends_on`): `None` for raw variables and values with no
/// `$`/`%` at all (those are copied without expansion).
fn depends_on(v: &Variable) -> Option<Vec<&str>> {
    if v.raw || !possible_reference(&v.value) {
        return None;
    }
    let re = ITEM_REFERENCE.as_ref()?;
    Some(re.captures_iter(&v.value).filter_map(|c| key(&c)).collect())
}

/// Strongly connected components in the order Ruby's `TSort#each_strongly_connected_component`
/// yields them (Tarjan, nodes and children in collection order), iteratively so that a long
/// reference chain cannot overflow the stack.
fn components(children: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const DONE: usize = usize::MAX;
    let n = children.len();
    // `None`: not visited; `Some(DONE)`: in a finished component; `Some(i)`: visit index.
    let mut id: Vec<Option<usize>> = vec![None; n];
    let mut next_id = 0;
    let mut stack: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    struct Frame {
        node: usize,
        child: usize,
        min: usize,
        stack_len: usize,
    }
    for root in 0..n {
        if id[root].is_some() {
            continue;
        }
        let mut frames = vec![Frame {
            node: root,
            child: 0,
            min: next_id,
            stack_len: stack.len(),
        }];
        id[root] = Some(next_id);
        next_id += 1;
        stack.push(root);
        while let Some(top) = frames.last_mut() {
            if let Some(&c) = children[top.node].get(top.child) {
                top.child += 1;
                match id[c] {
                    Some(DONE) => {}
                    Some(cid) => top.min = top.min.min(cid),
                    None => {
                        id[c] = Some(next_id);
                        frames.push(Frame {
                            node: c,
                            child: 0,
                            min: next_id,
                            stack_len: stack.len(),
                        });
                        next_id += 1;
                        stack.push(c);
                    }
                }
                continue;
            }
            // All children seen: close this node.
            let Some(done) = frames.pop() else { break };
            if id[done.node] == Some(done.min) {
                let component: Vec<usize> = stack.split_off(done.stack_len);
                for &m in &component {
                    id[m] = Some(DONE);
                }
                out.push(component);
            }
            if let Some(parent) = frames.last_mut() {
                parent.min = parent.min.min(done.min);
            }
        }
    }
    out
}

/// Expands every variable of `vars` against the others, in dependency order, like
/// `Collection#sort_and_expand_all`. Later definitions of a name shadow earlier ones, and a
/// variable may reference an earlier definition of its own name (`PATH: $PATH:/x`).
///
/// On a reference cycle GitLab keeps the values unexpanded and fails pipeline creation;
/// here that is the `Err`.
pub fn sort_and_expand_all(
    vars: &[Variable],
    opts: ExpandOptions,
) -> Result<Vec<Variable>, CircularReference> {
    let mut expanded: Vec<Variable> = Vec::with_capacity(vars.len());
    // Last definition of each name added so far (the new collection's `[]`).
    let mut last: HashMap<String, usize> = HashMap::new();
    for i in tsort(vars)? {
        let mut v = vars[i].clone();
        if depends_on(&v).is_some() {
            v.value = expand_with(&v.value, |name| last.get(name).map(|&j| &expanded[j]), opts);
        }
        last.insert(v.key.clone(), expanded.len());
        expanded.push(v);
    }
    Ok(expanded)
}

/// The order (indices into `vars`) in which GitLab's `Collection::Sort#tsort` puts the
/// variables: every variable after those it references, otherwise collection order.
pub fn tsort(vars: &[Variable]) -> Result<Vec<usize>, CircularReference> {
    // Every definition of a name (`Collection#all`), in collection order.
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, v) in vars.iter().enumerate() {
        by_key.entry(v.key.as_str()).or_default().push(i);
    }
    let children: Vec<Vec<usize>> = vars
        .iter()
        .map(|v| {
            depends_on(v)
                .into_iter()
                .flatten()
                .flat_map(|name| by_key.get(name).into_iter().flatten().copied())
                .collect()
        })
        .collect();
    let comps = components(&children);
    let cycles: Vec<Vec<String>> = comps
        .iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.iter().map(|&i| vars[i].key.clone()).collect())
        .collect();
    if !cycles.is_empty() {
        return Err(CircularReference { cycles });
    }
    Ok(comps.into_iter().flatten().collect())
}

/// GitLab's pre-expansion of the variables it sends to the runner:
/// [`sort_and_expand_all`] with [`ExpandOptions::FOR_RUNNER`].
pub fn expand_for_runner(vars: &[Variable]) -> Result<Vec<Variable>, CircularReference> {
    sort_and_expand_all(vars, ExpandOptions::FOR_RUNNER)
}

/// `Collection#expand_value`: one pass over `value` against `vars`.
pub fn expand_value(value: &str, vars: &[Variable], opts: ExpandOptions) -> String {
    expand_with(value, |name| find(vars, name), opts)
}

fn expand_with<'v>(
    value: &str,
    lookup: impl Fn(&str) -> Option<&'v Variable>,
    opts: ExpandOptions,
) -> String {
    let Some(re) = ITEM_REFERENCE.as_ref() else {
        return value.to_string();
    };
    re.replace_all(value, |c: &Captures<'_>| {
        let whole = c[0].to_string();
        let Some(name) = key(c) else {
            return whole; // `$$`, `%%` or `${}`: escapes, left for the runner
        };
        match lookup(name) {
            Some(v) if v.file => {
                if opts.expand_file_refs {
                    v.value.clone()
                } else {
                    whole
                }
            }
            Some(v) if v.raw && !opts.expand_raw_refs => whole,
            Some(v) => v.value.clone(),
            None if opts.keep_undefined => whole,
            None => String::new(),
        }
    })
    .into_owned()
}
