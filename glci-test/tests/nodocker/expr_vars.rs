//! Cases #49–#54 of `docs/ci-yaml-semantics.md` §12 (GitLab's `expand_variables_spec`,
//! `collection_spec`, `collection/sort_spec`) and derived cases for the three expansion
//! engines.

use std::collections::HashMap;

use glci_test::vars::{
    expand_for_runner, gitlab, runner, sort_and_expand_all, tsort, ExpandOptions, Variable,
};

fn v(key: &str, value: &str) -> Variable {
    Variable::new(key, value)
}

fn values(vars: &[Variable]) -> Vec<(&str, &str)> {
    vars.iter()
        .map(|v| (v.key.as_str(), v.value.as_str()))
        .collect()
}

fn keys_in_order(vars: &[Variable]) -> Vec<&str> {
    match tsort(vars) {
        Ok(order) => order.into_iter().map(|i| vars[i].key.as_str()).collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn expand_variables_spec() {
    let vars: HashMap<String, String> = [("variable", "value"), ("variable2", "$variable3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // #49
    assert_eq!(
        gitlab::expand("key$variable$variable2", &vars),
        "keyvalue$variable3"
    );
    // #50
    let one = vec![("variable".to_string(), "value".to_string())];
    assert_eq!(
        gitlab::expand("key${variable}${variable2}", &one),
        "keyvalue"
    );
    assert_eq!(
        gitlab::expand_existing("key${variable}${variable2}", &one),
        "keyvalue${variable2}"
    );
    // #51
    assert_eq!(gitlab::expand("key%variable%", &one), "keyvalue");
    // A Variable list works as a lookup too, last definition winning.
    let list = vec![v("A", "1"), v("A", "2")];
    assert_eq!(gitlab::expand("$A", &list), "2");
}

#[test]
fn password_with_special_characters() {
    // #52: `$$` and `%%` are escapes GitLab leaves for the runner.
    let vars = vec![
        v("VAR", "$PASSWORD"),
        v("PASSWORD", "my_password$$_%%_$A"),
        v("A", "value"),
    ];
    let out = sort_and_expand_all(&vars, ExpandOptions::default()).unwrap_or_default();
    let map: HashMap<&str, &str> = values(&out).into_iter().collect();
    assert_eq!(map.get("VAR"), Some(&"my_password$$_%%_value"));
    assert_eq!(map.get("PASSWORD"), Some(&"my_password$$_%%_value"));
    // …and the runner turns `$$` into `$` (it does not know `%%`).
    assert_eq!(
        runner::expand_value("my_password$$_%%_value", &out),
        "my_password$_%%_value"
    );
}

#[test]
fn raw_variables() {
    // #53
    let vars = vec![
        v("variable1", "value1"),
        v("raw_var", "raw-$variable1").raw(),
        v("nonraw_var", "nonraw-$variable1"),
        v("variable2", "$raw_var and $nonraw_var"),
    ];
    let find = |out: &[Variable], k: &str| {
        out.iter()
            .find(|x| x.key == k)
            .map(|x| x.value.clone())
            .unwrap_or_default()
    };
    let default = sort_and_expand_all(&vars, ExpandOptions::default()).unwrap_or_default();
    assert_eq!(
        find(&default, "variable2"),
        "raw-$variable1 and nonraw-value1"
    );
    assert_eq!(find(&default, "raw_var"), "raw-$variable1");
    let no_raw = sort_and_expand_all(
        &vars,
        ExpandOptions {
            expand_raw_refs: false,
            ..ExpandOptions::default()
        },
    )
    .unwrap_or_default();
    assert_eq!(find(&no_raw, "variable2"), "$raw_var and nonraw-value1");
    // The runner then resolves `$raw_var` without expanding inside it.
    let job = runner::expand_all(&no_raw);
    assert_eq!(find(&job, "variable2"), "raw-$variable1 and nonraw-value1");
    assert_eq!(find(&job, "raw_var"), "raw-$variable1");
}

#[test]
fn cycles() {
    // #54
    let vars = vec![
        v("variable", "$variable2"),
        v("variable2", "$variable3"),
        v("variable3", "key$variable$variable2"),
    ];
    let err = sort_and_expand_all(&vars, ExpandOptions::default()).err();
    assert_eq!(
        err.as_ref().map(ToString::to_string).as_deref(),
        Some(r#"circular variable reference detected: ["variable", "variable2", "variable3"]"#)
    );
    assert_eq!(
        err.map(|e| e.for_job("rspec")).as_deref(),
        Some(
            r#"rspec: circular variable reference detected: ["variable", "variable2", "variable3"]"#
        )
    );
    // Pipeline-variable case from the seed spec.
    let abc = vec![v("A", "$B"), v("B", "$C"), v("C", "$A")];
    assert_eq!(
        expand_for_runner(&abc)
            .err()
            .map(|e| e.for_job("rspec"))
            .as_deref(),
        Some(r#"rspec: circular variable reference detected: ["A", "B", "C"]"#)
    );
    // Two independent cycles are both listed.
    let two = vec![v("A", "$B"), v("B", "$A"), v("C", "%D%"), v("D", "${C}")];
    assert_eq!(
        tsort(&two).err().map(|e| e.to_string()).as_deref(),
        Some(r#"circular variable reference detected: ["A", "B"], ["C", "D"]"#)
    );
    // A raw variable breaks the cycle; a self-reference is not a cycle.
    let raw = vec![
        v("variable", "$variable2"),
        v("variable2", "$variable3"),
        v("variable3", "key$variable$variable2").raw(),
    ];
    assert!(tsort(&raw).is_ok());
    assert!(tsort(&[v("A", "x$A")]).is_ok());
}

#[test]
fn sort_order_spec() {
    assert_eq!(
        keys_in_order(&[
            v("variable", "value"),
            v("variable2", "result"),
            v("variable3", "key$variable$variable2")
        ]),
        ["variable", "variable2", "variable3"]
    );
    assert_eq!(
        keys_in_order(&[v("variable2", "key${variable}"), v("variable", "value")]),
        ["variable", "variable2"]
    );
    assert_eq!(
        keys_in_order(&[
            v("variable", "value"),
            v("variable4", "key$variable$variable3"),
            v("variable2", "result2"),
            v("variable3", "result3"),
        ]),
        ["variable", "variable3", "variable4", "variable2"]
    );
    assert_eq!(
        keys_in_order(&[
            v("variable4", "key${variable}${variable2}${variable3}"),
            v("variable", "value"),
            v("variable3", "value3"),
        ]),
        ["variable", "variable3", "variable4"]
    );
    assert_eq!(
        keys_in_order(&[
            v("variable", "$variable2"),
            v("variable2", "$variable3"),
            v("variable3", "key$variable$variable2").raw(),
        ]),
        ["variable3", "variable2", "variable"]
    );
    assert_eq!(
        keys_in_order(&[
            v("variable_b", "$$variable_a"),
            v("variable_c", "$variable_a"),
            v("variable_a", "value"),
        ]),
        ["variable_b", "variable_a", "variable_c"]
    );
}

#[test]
fn nested_and_shadowed_expansion() {
    // Nested to any depth, in dependency order, whatever the definition order.
    let vars = vec![v("C", "$B-c"), v("B", "${A}-b"), v("A", "a")];
    let out = sort_and_expand_all(&vars, ExpandOptions::default()).unwrap_or_default();
    let map: HashMap<&str, &str> = values(&out).into_iter().collect();
    assert_eq!(map.get("C"), Some(&"a-b-c"));
    // A later definition may extend an earlier one of the same name.
    let path = vec![v("PATH", "/bin"), v("PATH", "$PATH:/opt/bin")];
    let out = sort_and_expand_all(&path, ExpandOptions::default()).unwrap_or_default();
    assert_eq!(
        glci_test::vars::find(&out, "PATH").map(|v| v.value.as_str()),
        Some("/bin:/opt/bin")
    );
    // Unknown: "" by default, kept for the runner.
    let unknown = vec![v("X", "a$NOPE-b")];
    let out = sort_and_expand_all(&unknown, ExpandOptions::default()).unwrap_or_default();
    assert_eq!(values(&out), [("X", "a-b")]);
    let out = expand_for_runner(&unknown).unwrap_or_default();
    assert_eq!(values(&out), [("X", "a$NOPE-b")]);
    // File-type references stay literal for the runner, expand to the content otherwise.
    let file = vec![
        v("KUBECONFIG", "apiVersion: v1").file(),
        v("K", "$KUBECONFIG"),
    ];
    let out = expand_for_runner(&file).unwrap_or_default();
    assert_eq!(
        glci_test::vars::find(&out, "K").map(|v| v.value.as_str()),
        Some("$KUBECONFIG")
    );
    assert!(glci_test::vars::find(&out, "KUBECONFIG").is_some_and(|v| v.file));
    let out = sort_and_expand_all(&file, ExpandOptions::default()).unwrap_or_default();
    assert_eq!(
        glci_test::vars::find(&out, "K").map(|v| v.value.as_str()),
        Some("apiVersion: v1")
    );
    // `${}` is left alone; unicode passes through.
    let odd = vec![v("U", "ü"), v("X", "${}$U%U%")];
    let out = sort_and_expand_all(&odd, ExpandOptions::default()).unwrap_or_default();
    assert_eq!(
        glci_test::vars::find(&out, "X").map(|v| v.value.as_str()),
        Some("${}üü")
    );
}

#[test]
fn long_chain_does_not_overflow() {
    let n = 50_000;
    let mut vars: Vec<Variable> = (1..n)
        .map(|i| v(&format!("V{i}"), &format!("${{V{}}}", i - 1)))
        .collect();
    vars.push(v("V0", "end"));
    let out = sort_and_expand_all(&vars, ExpandOptions::default()).unwrap_or_default();
    assert_eq!(
        glci_test::vars::find(&out, &format!("V{}", n - 1)).map(|v| v.value.as_str()),
        Some("end")
    );
}
