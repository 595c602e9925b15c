//! Seed-time check for circular references between a job's variables
//! (`Variables::Collection::Sort#errors`): the pipeline is not created when one exists.

use foldhash::HashMap;
use std::sync::OnceLock;

use crate::plan::StrMap;
use regex::Regex;

use super::model::Variable;
use super::validate::tarjan;

fn reference_pattern() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"\$([a-zA-Z_][a-zA-Z0-9_]*)|\$\{([a-zA-Z_][a-zA-Z0-9_]*)\}|%([a-zA-Z_][a-zA-Z0-9_]*)%",
        )
        .ok()
    })
    .as_ref()
}

/// `circular variable reference detected: ["A", "B"]` for the first cycle among `vars`
/// (raw variables reference nothing; a variable naming itself is not a cycle).
pub fn cycle_error(vars: &StrMap<Variable>) -> Option<String> {
    // A cycle needs at least two values that reference something; with fewer there is
    // nothing to index or search (the usual case: a few `$CI_…` values per job).
    let referencing = vars
        .values()
        .filter(|v| v.expand && v.value.contains(['$', '%']))
        .count();
    if referencing < 2 {
        return None;
    }
    let re = reference_pattern()?;
    let index: HashMap<&str, usize> = vars
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = vars
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            // Every reference syntax starts with `$` or `%`: a value with neither (most of
            // them) references nothing, and skipping the regex search for it saves most of
            // the time this check costs per planned job.
            if !v.expand || !v.value.contains(['$', '%']) {
                return Vec::new();
            }
            re.captures_iter(&v.value)
                .filter_map(|c| c.get(1).or_else(|| c.get(2)).or_else(|| c.get(3)))
                .filter_map(|m| index.get(m.as_str()).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let cycles: Vec<String> = tarjan(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let names: Vec<String> = c
                .iter()
                .filter_map(|&i| vars.get_index(i))
                .map(|(k, _)| format!("{k:?}"))
                .collect();
            format!("[{}]", names.join(", "))
        })
        .collect();
    (!cycles.is_empty()).then(|| {
        format!(
            "circular variable reference detected: {}",
            cycles.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> StrMap<Variable> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Variable::plain(*v)))
            .collect()
    }

    #[test]
    fn detects_cycles_in_every_syntax() {
        let v = vars(&[("A", "x${B}"), ("B", "%A%"), ("C", "$A")]);
        assert_eq!(
            cycle_error(&v).as_deref(),
            Some(r#"circular variable reference detected: ["A", "B"]"#)
        );
    }

    #[test]
    fn self_reference_raw_and_chains_are_fine() {
        assert_eq!(
            cycle_error(&vars(&[("PATH", "$PATH:/x"), ("A", "$B"), ("B", "c")])),
            None
        );
        let mut v = vars(&[("A", "$B"), ("B", "$A")]);
        v["A"].expand = false;
        assert_eq!(cycle_error(&v), None);
    }
}
