//! GitLab's pipeline-side `ExpandVariables`, used for keys GitLab itself expands: `include`
//! locations and `workflow:name` (`expand`), `rules:changes`/`rules:exists` paths and `tags`
//! (`expand_existing`), `environment`, `resource_group`, `trigger`, `needs:project`…
//!
//! All three forms `$NAME`, `${NAME}` and `%NAME%` are recognised on every OS; there is no
//! `$$` escape here (in `$$A` the second `$` starts a reference) and no nested expansion.

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::lookup::VariableLookup;

/// `ExpandVariables::VARIABLES_REGEXP`, with Ruby's `\g<1>` subroutine calls spelled out.
static REFERENCE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"\$([a-zA-Z_][a-zA-Z0-9_]*)|\$\{([a-zA-Z_][a-zA-Z0-9_]*)\}|%([a-zA-Z_][a-zA-Z0-9_]*)%",
    )
    .ok()
});

fn reference_name<'a>(caps: &Captures<'a>) -> &'a str {
    caps.get(1)
        .or_else(|| caps.get(2))
        .or_else(|| caps.get(3))
        .map_or("", |m| m.as_str())
}

fn replace(value: &str, mut with: impl FnMut(&Captures<'_>) -> String) -> String {
    match REFERENCE.as_ref() {
        Some(re) => re
            .replace_all(value, |c: &Captures<'_>| with(c))
            .into_owned(),
        None => value.to_string(),
    }
}

/// `ExpandVariables.expand`: every reference is replaced by the variable's value, an
/// undefined one by the empty string.
pub fn expand(value: &str, vars: &dyn VariableLookup) -> String {
    replace(value, |c| {
        vars.get(reference_name(c)).unwrap_or_default().to_string()
    })
}

/// `ExpandVariables.expand_existing`: like [`expand`], but a reference to an undefined
/// variable is left as written.
pub fn expand_existing(value: &str, vars: &dyn VariableLookup) -> String {
    replace(value, |c| match vars.get(reference_name(c)) {
        Some(v) => v.to_string(),
        None => c[0].to_string(),
    })
}

/// Whether `value` may contain a reference at all (`possible_var_reference?`).
pub fn possible_reference(value: &str) -> bool {
    value.contains('$') || value.contains('%')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn spec_cases() {
        // docs/ci-yaml-semantics.md §12 #49: no nested expansion.
        let v = vars(&[("variable", "value"), ("variable2", "$variable3")]);
        assert_eq!(expand("key$variable$variable2", &v), "keyvalue$variable3");
        // §12 #50
        let only = vars(&[("variable", "value")]);
        assert_eq!(expand("key${variable}${variable2}", &only), "keyvalue");
        assert_eq!(
            expand_existing("key${variable}${variable2}", &only),
            "keyvalue${variable2}"
        );
        // §12 #51
        assert_eq!(expand("key%variable%", &only), "keyvalue");
    }

    #[test]
    fn edge_cases() {
        let v = vars(&[("A", "a"), ("A_1", "x")]);
        // No `$$` escape in this engine.
        assert_eq!(expand("$$A", &v), "$a");
        assert_eq!(expand("%%A%", &v), "%a");
        // Names are greedy ASCII words.
        assert_eq!(expand("$A_1 $A-1 ${A}_1", &v), "x a-1 a_1");
        // Not references.
        assert_eq!(expand("$ ${} %A $1 ${A", &v), "$ ${} %A $1 ${A");
        assert_eq!(expand("100% sure %", &v), "100% sure %");
        assert_eq!(expand("é$Aé", &v), "éaé");
        assert!(possible_reference("a%b") && !possible_reference("plain"));
    }
}
