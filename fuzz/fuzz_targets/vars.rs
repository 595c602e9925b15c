//! Runs every expansion engine over arbitrary variable lists: nothing may panic, and the
//! collection expansion either orders all variables or reports a cycle.
#![no_main]

use glci_test::vars::{expand_for_runner, gitlab, runner, sort_and_expand_all, ExpandOptions, Variable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // One `KEY=VALUE` per line; a leading `!` marks it raw, a leading `@` file-type.
    let vars: Vec<Variable> = src
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            let var = Variable::new(k.trim_start_matches(['!', '@']), v);
            Some(match k.chars().next() {
                Some('!') => var.raw(),
                Some('@') => var.file(),
                _ => var,
            })
        })
        .collect();
    for v in &vars {
        let _ = gitlab::expand(&v.value, &vars);
        let _ = gitlab::expand_existing(&v.value, &vars);
        let _ = runner::expand_value(&v.value, &vars);
    }
    let _ = runner::expand_all(&vars);
    if let Ok(out) = sort_and_expand_all(&vars, ExpandOptions::default()) {
        assert_eq!(out.len(), vars.len());
    }
    if let Ok(out) = expand_for_runner(&vars) {
        assert_eq!(out.len(), vars.len());
    }
});
