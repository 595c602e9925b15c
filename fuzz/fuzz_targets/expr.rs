//! Parses and evaluates arbitrary input as a `rules:if` expression: nothing may panic, and a
//! parsed expression must evaluate (or fail with an error) against any variables.
#![no_main]

use std::collections::HashMap;

use glci_test::expr::Expression;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // The first line, if any, supplies variable values, so that variables holding regexes,
    // blanks and unicode are exercised too; the rest is the expression.
    let (values, expr) = match src.split_once('\n') {
        Some((v, e)) => (v, e),
        None => ("", src),
    };
    let mut vars: HashMap<String, String> = HashMap::new();
    for (i, value) in values.split('\t').enumerate() {
        for name in ["A", "B", "C", "V"] {
            vars.insert(format!("{name}{i}"), value.to_string());
        }
        vars.insert(["A", "B", "C", "V"][i % 4].to_string(), value.to_string());
    }
    if let Ok(parsed) = Expression::parse(expr) {
        let first = parsed.evaluate(&vars);
        // Evaluation is deterministic.
        assert_eq!(first, parsed.evaluate(&vars));
        let _ = parsed.value(&HashMap::<String, String>::new());
    } else {
        // Every rejection carries a printable message.
        let err = Expression::parse(expr).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| !e.is_empty()));
    }
});
