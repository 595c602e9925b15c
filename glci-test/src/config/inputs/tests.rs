use super::*;
use crate::config::{parse_documents, to_yaml};

fn run(text: &str, given: &[(&str, &str)]) -> Result<String, String> {
    let docs = parse_documents(text, "i.yml").map_err(|e| e.to_string())?;
    let at = Span::default();
    let mut provided = Mapping::default();
    for (k, v) in given {
        // Given as YAML so that tests can pass typed values.
        let node = crate::config::parse_yaml(v, "given.yml").map_err(|e| e.to_string())?;
        provided.insert(Key::new(*k, at.clone()), node);
    }
    let vars = vec![("HOME".to_string(), "/root".to_string())];
    let ctx = Context {
        variables: &vars,
        component: None,
        given_at: &at,
    };
    interpolate(docs.header.as_ref(), docs.content, &provided, &ctx)
        .map(|n| to_yaml(&n))
        .map_err(|e| e.message)
}

const HEADER: &str = "spec:\n  inputs:\n    stage:\n      default: test\n    n:\n      type: number\n      default: 2\n    flag:\n      type: boolean\n      default: false\n    list:\n      type: array\n      default: [a, b]\n    env:\n      options: [dev, prod]\n      default: dev\n    ver:\n      regex: ^v\\d+$\n      default: v1\n---\n";

#[test]
fn typed_values_and_string_rendering() {
    let out = run(
        &format!("{HEADER}job-$[[ inputs.stage ]]:\n  stage: $[[ inputs.stage ]]\n  parallel: $[[ inputs.n ]]\n  allow_failure: $[[ inputs.flag ]]\n  script:\n    - echo first\n    - $[[ inputs.list ]]\n    - echo $[[ inputs.list ]] $[[ inputs.n ]]\n  variables:\n    V: $[[ inputs.list[1] ]]\n"),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out,
        "job-test:\n  stage: test\n  parallel: 2\n  allow_failure: false\n  script:\n  - echo first\n  - a\n  - b\n  - echo [\"a\", \"b\"] 2\n  variables:\n    V: b\n"
    );
}

#[test]
fn given_values_are_coerced_and_checked() {
    let out = run(
        &format!("{HEADER}job:\n  parallel: $[[ inputs.n ]]\n  x: $[[ inputs.flag ]]\n"),
        &[("n", "'5'"), ("flag", "'true'")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, "job:\n  parallel: 5\n  x: true\n");
    assert_eq!(
        run(&format!("{HEADER}a: 1\n"), &[("n", "abc")]).err(),
        Some("`n` input: provided value is not a number".into())
    );
    assert_eq!(
        run(&format!("{HEADER}a: 1\n"), &[("env", "staging")]).err(),
        Some("`env` input: `staging` cannot be used because it is not in the list of allowed options".into())
    );
    assert_eq!(
        run(&format!("{HEADER}a: 1\n"), &[("ver", "x2")]).err(),
        Some("`ver` input: provided value does not match required RE2 regular expression".into())
    );
    assert_eq!(
        run(&format!("{HEADER}a: 1\n"), &[("nope", "1"), ("zap", "2")]).err(),
        Some("unknown input arguments: nope, zap".into())
    );
}

#[test]
fn required_and_unknown() {
    let header = "spec:\n  inputs:\n    must:\n---\n";
    assert_eq!(
        run(&format!("{header}a: 1\n"), &[]).err(),
        Some("`must` input: required value has not been provided".into())
    );
    assert_eq!(
        run(
            &format!("{header}a: $[[ inputs.other ]]\n"),
            &[("must", "x")]
        )
        .err(),
        Some("unknown interpolation provided: `other` in `inputs.other`".into())
    );
    assert_eq!(
        run("a: 1\n", &[("x", "1")]).err(),
        Some(
            "Given inputs not defined in the `spec` section of the included configuration file"
                .into()
        )
    );
}

#[test]
fn no_header_means_no_interpolation_and_matrix_is_left() {
    assert_eq!(
        run("a: $[[ inputs.x ]]\n", &[]).as_deref(),
        Ok("a: $[[ inputs.x ]]\n")
    );
    let out = run(
        "spec:\n  inputs:\n    x:\n      default: y\n---\nj:\n  needs: [\"b: [$[[ matrix.OS ]]]\"]\n  v: $[[ inputs.x ]]\n",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("\"b: [$[[ matrix.OS ]]]\""), "{out}");
}

#[test]
fn functions() {
    let header = "spec:\n  inputs:\n    s:\n      default: \"hello world's $HOME\"\n---\n";
    let out = run(
        &format!("{header}a: $[[ inputs.s | truncate(0,5) ]]\nb: $[[ inputs.s | expand_vars ]]\nc: $[[ inputs.s | posix_escape ]]\n"),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out,
        "a: hello\nb: hello world's /root\nc: hello\\ world\\'s\\ \\$HOME\n"
    );
    assert!(run(&format!("{header}a: $[[ inputs.s | nope ]]\n"), &[])
        .is_err_and(|e| e.starts_with("no function matching `nope`")));
    assert!(run(
        &format!("{header}a: $[[ inputs.s | posix_escape | posix_escape | posix_escape | posix_escape ]]\n"),
        &[]
    )
    .is_err_and(|e| e.starts_with("too many functions")));
}

#[test]
fn input_rules_choose_options_and_default() {
    let header = "spec:\n  inputs:\n    cloud:\n      default: aws\n    region:\n      rules:\n        - if: $[[ inputs.cloud ]] == \"aws\"\n          options: [us-east-1, eu-west-1]\n          default: us-east-1\n        - options: [europe-west1]\n          default: europe-west1\n---\n";
    let text = format!("{header}r: $[[ inputs.region ]]\n");
    assert_eq!(run(&text, &[]).as_deref(), Ok("r: us-east-1\n"));
    assert_eq!(
        run(&text, &[("cloud", "gcp")]).as_deref(),
        Ok("r: europe-west1\n")
    );
    assert_eq!(
        run(&text, &[("cloud", "gcp"), ("region", "us-east-1")]).err(),
        Some("`region` input: `us-east-1` cannot be used because it is not in the list of allowed options".into())
    );
}
