//! The runner's expansion (`JobVariables.ExpandValue`, a backport of Go 1.10's `os.Expand`),
//! used for the job's variables and for keys the runner expands: `image`, `services[].name`,
//! `cache:key`/`paths`, `artifacts:name`/`paths`/`exclude`.
//!
//! `$NAME` and `${NAME}` only (no `%NAME%`), single pass, no nesting; `$$` yields `$` (the
//! runner maps the special name `$` to itself), other shell specials (`$1`, `$*`, `$#`…)
//! yield nothing, and a `$` that starts no name is swallowed — except as the last character.

use super::lookup::VariableLookup;
use super::variable::Variable;

/// The runner's `JobVariables.Get`: specials first, then the last definition, else "".
fn get<'a>(vars: &'a dyn VariableLookup, name: &'a str) -> &'a str {
    match name {
        "$" => "$",
        "*" | "#" | "@" | "!" | "?" | "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" => {
            ""
        }
        _ => vars.get(name).unwrap_or_default(),
    }
}

fn is_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_alnum(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// The name starting `s` (which follows a `$`) and how many bytes it takes (Go's
/// `getShellName`). Names are ASCII, so byte offsets always fall on char boundaries.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            // "${}" is bad syntax: eaten, expands to nothing.
            Some(0) => ("", 2),
            // Anything up to the brace is the name, even if it is not a valid identifier.
            Some(i) => (&s[1..=i], i + 2),
            // "${" without a closing brace: eaten.
            None => ("", 1),
        };
    }
    if is_special(b[0]) {
        return (&s[..1], 1);
    }
    let n = b.iter().take_while(|&&c| is_alnum(c)).count();
    (&s[..n], n)
}

/// Expands `value` once against `vars` the way the runner does.
pub fn expand_value(value: &str, vars: &dyn VariableLookup) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut copied = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&value[copied..j]);
            let (name, width) = shell_name(&value[j + 1..]);
            out.push_str(get(vars, name));
            j += width;
            copied = j + 1;
        }
        j += 1;
    }
    out.push_str(&value[copied.min(value.len())..]);
    out
}

/// The runner's `JobVariables.Expand`: every non-raw variable is expanded once against the
/// *unexpanded* list (so nothing nests); raw ones are kept verbatim.
pub fn expand_all(vars: &[Variable]) -> Vec<Variable> {
    vars.iter()
        .map(|v| {
            let mut v2 = v.clone();
            if !v.raw {
                v2.value = expand_value(&v.value, &vars);
            }
            v2
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_legacy_expand_cases() {
        let vars = vec![
            Variable::new("HOME", "/usr/gopher"),
            Variable::new("H", "(Value of H)"),
            Variable::new("home_1", "/usr/foo"),
            Variable::new("_", "underscore"),
        ];
        let cases = [
            ("", ""),
            ("$*", ""),
            ("$$", "$"),
            ("${*}", ""),
            ("$1", ""),
            ("now is the time", "now is the time"),
            ("$HOME", "/usr/gopher"),
            ("$home_1", "/usr/foo"),
            ("${HOME}", "/usr/gopher"),
            ("${H}OME", "(Value of H)OME"),
            ("A$$$#$1$H$home_1*B", "A$(Value of H)/usr/foo*B"),
            ("$_", "underscore"),
            ("end$", "end$"),
            ("a$/b", "a/b"),
            ("${}x", "x"),
            ("${HOME", "HOME"),
            ("${not valid}", ""),
            ("$UNDEFINED-x", "-x"),
            ("%HOME%", "%HOME%"),
            ("ü$Hü", "ü(Value of H)ü"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_value(input, &vars), want, "{input:?}");
        }
    }

    #[test]
    fn expand_all_is_single_pass_and_keeps_raw() {
        let vars = vec![
            Variable::new("A", "a"),
            Variable::new("B", "$A-b"),
            Variable::new("C", "$B-c"),
            Variable::new("R", "$A").raw(),
            Variable::new("P", "price: $$5"),
        ];
        let out = expand_all(&vars);
        let values: Vec<&str> = out.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(values, vec!["a", "a-b", "$A-b-c", "$A", "price: $5"]);
        assert!(out[3].raw);
    }
}
