use super::*;

fn parse(text: &str) -> Node {
    parse_yaml(text, "t.yml").unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse_yaml(text, "t.yml") {
        Ok(n) => panic!("expected an error, got {n:?}"),
        Err(e) => e.to_string(),
    }
}

fn keys(node: &Node) -> Vec<&str> {
    node.as_map()
        .map(|m| m.keys().map(|k| k.name.as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn scalars_and_spans() {
    let n = parse("a: yes\nb: '1'\nc: 1.10\nd:\n  - x\n  - ~\n");
    assert_eq!(n.get("a").map(|v| &v.value), Some(&Value::Bool(true)));
    assert_eq!(n.get("b").and_then(Node::as_str), Some("1"));
    assert_eq!(n.get("c").map(|v| &v.value), Some(&Value::Float(1.1)));
    let d = n.get("d").and_then(Node::as_seq).unwrap_or_default();
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].span.line, d[0].span.col), (5, 5));
    assert_eq!(d[1].value, Value::Null);
    let key = n
        .as_map()
        .and_then(|m| m.get_key_value("d"))
        .map(|(k, _)| k);
    assert_eq!(key.map(|k| (k.span.line, k.span.col)), Some((4, 1)));
}

#[test]
fn block_scalars_are_strings() {
    let n = parse("a: |\n  true\nb: >-\n  123\n");
    assert_eq!(n.get("a").and_then(Node::as_str), Some("true\n"));
    assert_eq!(n.get("b").and_then(Node::as_str), Some("123"));
}

#[test]
fn core_tags() {
    let n = parse("a: !!str yes\nb: !!int '12'\nc: !!float 3\n");
    assert_eq!(n.get("a").and_then(Node::as_str), Some("yes"));
    assert_eq!(n.get("b").map(|v| &v.value), Some(&Value::Int(12)));
    assert_eq!(n.get("c").map(|v| &v.value), Some(&Value::Float(3.0)));
}

#[test]
fn non_string_keys_become_strings() {
    let n = parse("on: 1\n2: b\n1.0: c\n~: d\n");
    assert_eq!(keys(&n), vec!["true", "2", "1.0", ""]);
}

#[test]
fn duplicate_keys_last_wins_first_position() {
    let n = parse("a: 1\nb: 2\na: 3\n");
    assert_eq!(keys(&n), vec!["a", "b"]);
    assert_eq!(n.get("a").map(|v| &v.value), Some(&Value::Int(3)));
}

#[test]
fn anchors_and_aliases() {
    let n = parse("x: &a [1, 2]\ny: *a\nz:\n  - *a\n");
    assert_eq!(n.get("y"), n.get("x"));
    let z = n.get("z").and_then(Node::as_seq).unwrap_or_default();
    assert_eq!(z[0].as_seq().map(<[Node]>::len), Some(2));
}

#[test]
fn merge_key_is_positional() {
    // Keys before `<<` are overwritten by the merged map; keys after it override it.
    let n = parse(".t: &t\n  script: b\n  image: i\njob:\n  script: a\n  <<: *t\n  image: mine\n");
    let job = n.get("job").cloned().unwrap_or_else(|| panic!("no job"));
    assert_eq!(job.get("script").and_then(Node::as_str), Some("b"));
    assert_eq!(job.get("image").and_then(Node::as_str), Some("mine"));
    assert_eq!(keys(&job), vec!["script", "image"]);
}

#[test]
fn merge_key_sequence_earlier_wins() {
    let n = parse("a: &a {k: 1, x: 1}\nb: &b {k: 2, y: 2}\nc:\n  <<: [*a, *b]\n");
    let c = n.get("c").cloned().unwrap_or_else(|| panic!("no c"));
    assert_eq!(c.get("k").map(|v| &v.value), Some(&Value::Int(1)));
    assert_eq!(c.get("y").map(|v| &v.value), Some(&Value::Int(2)));
}

#[test]
fn merge_key_is_shallow() {
    let n = parse(".t: &t\n  variables: {A: 1, B: 2}\njob:\n  <<: *t\n  variables: {C: 3}\n");
    let vars = n.get("job").and_then(|j| j.get("variables")).cloned();
    assert_eq!(vars.as_ref().map(keys), Some(vec!["C"]));
}

#[test]
fn merge_key_with_scalar_stays_a_key() {
    let n = parse("s: &s hello\nm:\n  <<: *s\n");
    assert_eq!(
        n.get("m").and_then(|m| m.get("<<")).and_then(Node::as_str),
        Some("hello")
    );
    let n = parse("m:\n  !!str <<: {a: 1}\n");
    assert_eq!(keys(n.get("m").unwrap_or(&n)), vec!["<<"]);
}

#[test]
fn reference_tag_is_kept() {
    let n = parse("job:\n  script:\n    - !reference [.setup, script]\n");
    let script = n
        .get("job")
        .and_then(|j| j.get("script"))
        .and_then(Node::as_seq);
    assert_eq!(
        script.map(|s| s[0].value.clone()),
        Some(Value::Reference(vec![".setup".into(), "script".into()]))
    );
}

#[test]
fn invalid_reference_is_located() {
    assert_eq!(
        err("a: !reference [.x, 1]\n"),
        "t.yml:1:4: !reference [\".x\", 1] is not valid"
    );
    assert!(err("a: !reference foo\n").starts_with("t.yml:1:4: !reference foo is not valid"));
    assert!(err("a: !reference {a: 1}\n").starts_with("t.yml:1:4: !reference is not valid"));
}

#[test]
fn header_document() {
    let d = parse_documents("spec:\n  inputs:\n    a:\n---\njob: {script: x}\n", "t.yml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.header.is_some());
    assert!(d.content.get("job").is_some());
    let d = parse_documents("a: 1\n---\nb: 2\n", "t.yml").unwrap_or_else(|e| panic!("{e}"));
    assert!(d.header.is_none());
    assert_eq!(keys(&d.content), vec!["b"]);
    assert!(err("a: 1\n---\nb: 2\n---\nc: 3\n").starts_with("t.yml:5:1: too many YAML documents"));
}

#[test]
fn empty_text_is_null() {
    assert_eq!(parse("").value, Value::Null);
    assert_eq!(parse("# only a comment\n").value, Value::Null);
}

#[test]
fn billion_laughs_is_refused() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='j' {
        text.push_str(&format!(
            "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
        prev = c;
    }
    assert!(err(&text).ends_with(TOO_BIG), "{}", err(&text));
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(err(&text).ends_with(TOO_BIG));
}

#[test]
fn dates_are_refused() {
    assert_eq!(
        err("a: 2024-01-01\n"),
        "t.yml:1:4: Tried to load unspecified class: Date"
    );
}

#[test]
fn syntax_errors_are_located() {
    let e = err("a: [1, 2\nb: 3\n");
    assert!(e.starts_with("t.yml:"), "{e}");
    let e = err("a:\n  b: 1\n c: 2\n");
    assert!(e.starts_with("t.yml:3:"), "{e}");
    let e = err("a: *nope\n");
    assert!(e.contains("unknown anchor"), "{e}");
}

#[test]
fn nasty_inputs_never_panic() {
    let nasty = [
        "",
        "---",
        "...",
        "-",
        ":",
        "? a\n: b\n",
        "? [a]\n: b\n",
        "{a: 1, a: 2}",
        "[}",
        "}{",
        "a: &x\n  b: *x\n",
        "&a [*a]",
        "*a",
        "!reference",
        "!reference []",
        "<<: 1",
        "<<: [1, 2]",
        "a: !!int x",
        "a: !!float x",
        "\t",
        "a:\tb",
        "'",
        "\"\\u",
        "%YAML 1.1\n---\na: 1",
        "%TAG ! tag:x,2000:\n---\na: !x 1",
        "a: !ruby/object:Foo {}",
        "\u{feff}a: 1",
        "a: \u{0}",
        "- - - - - -",
        "a: |\n b\n  c\n d",
        "a: >\n",
        "[a, b]: c",
        "{? a}",
        "&a a: 1",
        "a: 1\n---\nb: 2\n---\nc: 3",
        "-1:30",
        "0x",
        "0b",
        "+",
        "-.",
        "9223372036854775808",
    ];
    for text in nasty {
        match parse_yaml(text, "nasty.yml") {
            Ok(_) => {}
            Err(e) => assert!(e.to_string().starts_with("nasty.yml:"), "{text:?}: {e}"),
        }
    }
}

#[test]
fn repeated_merge_keys_apply_in_order() {
    // The shape of GitLab's own Auto DevOps "timed rollout 100%" job: two `<<` in one mapping.
    let n = parse(
        ".t: &t\n  script: [rollout]\n  when: delayed\n  start_in: 5 minutes\n.p: &p\n  stage: production\n  script: [deploy]\njob:\n  <<: *t\n  <<: *p\n  stage: incremental rollout 100%\n",
    );
    let job = n.get("job").cloned().unwrap_or_else(|| panic!("no job"));
    assert_eq!(keys(&job), vec!["script", "when", "start_in", "stage"]);
    let script = job.get("script").and_then(Node::as_seq).unwrap_or_default();
    assert_eq!(script.first().and_then(Node::as_str), Some("deploy"));
    assert_eq!(
        job.get("stage").and_then(Node::as_str),
        Some("incremental rollout 100%")
    );
}

#[test]
fn byte_order_mark_is_not_part_of_the_first_key() {
    let n = parse("\u{feff}job: {script: x}\n");
    assert_eq!(keys(&n), vec!["job"]);
}

#[test]
fn windows_line_endings() {
    let n = parse("job:\r\n  script:\r\n    - echo hi\r\n");
    let script = n
        .get("job")
        .and_then(|j| j.get("script"))
        .and_then(Node::as_seq);
    assert_eq!(
        script.and_then(|s| s.first()).and_then(Node::as_str),
        Some("echo hi")
    );
}

/// A file big enough to be parsed on two threads, with anchors, aliases, merge keys,
/// `!reference` and numbers, whose tail is `tail`.
fn big_text(tail: &str) -> String {
    let mut text = String::from(".base: &base\n  image: rust\n  retry: 1\n");
    for i in 0..3000 {
        text.push_str(&format!(
            "job-{i}:\n  <<: *base\n  extends: .base\n  when: 1:30\n  script: [!reference [.base, image], echo {i}, 0x1f]\n"
        ));
    }
    text.push_str(tail);
    assert!(text.len() >= PIPELINE_BYTES, "{}", text.len());
    text
}

#[test]
fn pipelined_parse_builds_what_one_thread_builds() {
    let file: Arc<str> = Arc::from("big.yml");
    for tail in [
        "",
        // A scanner error at the very end, and builder errors after many batches.
        "last: [unclosed\n",
        "bad: !reference {a: b}\n",
        "? [a, b]\n: mapping key\n",
        "recursive: &r [*r]\n",
    ] {
        let text = big_text(tail);
        let one = build_documents(&text, &file, false);
        let two = build_documents(&text, &file, true);
        assert_eq!(one, two, "tail {tail:?}");
        assert_eq!(one.is_ok(), tail.is_empty(), "tail {tail:?}: {one:?}");
    }
    // An error early in the file stops both at the same place.
    let text = format!("first: [\n{}", big_text(""));
    let one = build_documents(&text, &file, false)
        .err()
        .map(|e| e.to_string());
    let two = build_documents(&text, &file, true)
        .err()
        .map(|e| e.to_string());
    assert!(one.is_some());
    assert_eq!(one, two);
}

#[test]
fn flow_collections_continue_left_of_their_key_as_in_libyaml() {
    // Issue 15: GitLab (libyaml) reads this; a stricter parser called it bad indentation.
    let n = parse(
        "job:\n  script: [echo]\n  parallel:\n    matrix:\n      - V: [\n          a,\n          b\n      ]\n",
    );
    let matrix = n
        .get("job")
        .and_then(|j| j.get("parallel"))
        .and_then(|p| p.get("matrix"))
        .and_then(Node::as_seq)
        .unwrap_or_default();
    let v = matrix
        .first()
        .and_then(|m| m.get("V"))
        .and_then(Node::as_seq);
    let v: Vec<_> = v
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_str)
        .collect();
    assert_eq!(v, ["a", "b"]);
    let n = parse("a:\n  b: \"c\nd\"\n");
    assert_eq!(
        n.get("a").and_then(|a| a.get("b")).and_then(Node::as_str),
        Some("c d")
    );
}

#[test]
fn block_scalar_at_the_end_without_a_line_break() {
    for (text, want) in [
        ("a: |\n  make\n  make test", "make\nmake test"),
        ("a: |+\n  b", "b"),
        ("a: |-\n  b", "b"),
        ("a: >\n  b\n  c", "b c"),
        ("a: |\n  b\n", "b\n"),
        ("a: |\n  b\n ", "b\n"),
    ] {
        assert_eq!(
            parse(text).get("a").and_then(Node::as_str),
            Some(want),
            "{text:?}"
        );
    }
}

#[test]
fn parser_failures_are_located_errors() {
    // libyaml-safer panics here (libyaml reads `["", "b"]`): an error, never a crash.
    let e = err("a: [!!str, b]\n");
    assert!(e.starts_with("t.yml:1:"), "{e}");
}

#[test]
fn block_scalar_at_the_end_after_a_byte_order_mark() {
    assert_eq!(
        parse("\u{feff}a: |\n  b").get("a").and_then(Node::as_str),
        Some("b")
    );
}
