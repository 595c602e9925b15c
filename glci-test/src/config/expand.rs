//! GitLab's `ExpandVariables` for configuration strings (include paths, `expand_vars`):
//! `$NAME`, `${NAME}` and `%NAME%`, one pass, no nested expansion.

use std::sync::LazyLock;

use regex::{Captures, Regex};

static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$([a-zA-Z_][a-zA-Z0-9_]*)|\$\{([a-zA-Z_][a-zA-Z0-9_]*)\}|%([a-zA-Z_][a-zA-Z0-9_]*)%",
    )
    .unwrap_or_else(|e| panic!("built-in variable regex: {e}"))
});

fn lookup<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    // Later definitions win, as they would in GitLab's variables collection.
    vars.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn name<'c>(caps: &'c Captures<'_>) -> &'c str {
    caps.get(1)
        .or_else(|| caps.get(2))
        .or_else(|| caps.get(3))
        .map_or("", |m| m.as_str())
}

/// `ExpandVariables.expand`: unknown variables become empty.
pub fn expand(value: &str, vars: &[(String, String)]) -> String {
    VARIABLE
        .replace_all(value, |caps: &Captures<'_>| {
            lookup(vars, name(caps)).unwrap_or("").to_string()
        })
        .into_owned()
}

/// `ExpandVariables.expand_existing`: unknown variables stay as written.
pub fn expand_existing(value: &str, vars: &[(String, String)]) -> String {
    VARIABLE
        .replace_all(value, |caps: &Captures<'_>| {
            match lookup(vars, name(caps)) {
                Some(v) => v.to_string(),
                None => caps.get(0).map_or("", |m| m.as_str()).to_string(),
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![
            ("variable".into(), "value".into()),
            ("variable2".into(), "$variable3".into()),
        ]
    }

    #[test]
    fn gitlab_cases() {
        // expand_variables_spec: nested expansion is not expanded; % syntax; missing → blank.
        assert_eq!(
            expand("key$variable$variable2", &vars()),
            "keyvalue$variable3"
        );
        assert_eq!(expand("key%variable%", &vars()), "keyvalue");
        assert_eq!(expand("key${variable}${missing}", &vars()), "keyvalue");
        assert_eq!(
            expand_existing("key${variable}${missing}", &vars()),
            "keyvalue${missing}"
        );
    }
}
