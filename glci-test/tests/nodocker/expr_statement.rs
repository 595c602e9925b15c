//! Cases #1–#24 of `docs/ci-yaml-semantics.md` §12 for the expression language (GitLab's
//! `statement_spec.rb`), plus derived cases.

use std::collections::HashMap;

use glci_test::expr::{evaluate, ExprErrorKind, Expression, Value};

fn spec_vars() -> HashMap<String, String> {
    vars(&[
        ("PRESENT_VARIABLE", "my variable"),
        ("PATH_VARIABLE", "a/path/variable/value"),
        ("FULL_PATH_VARIABLE", "/a/full/path/variable/value"),
        ("EMPTY_VARIABLE", ""),
    ])
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Expected value of `Statement#evaluate`.
#[derive(Debug, Clone, Copy)]
enum V {
    Nil,
    S(&'static str),
    B(bool),
}

fn value(src: &str, vars: &HashMap<String, String>) -> Value {
    match Expression::parse(src).and_then(|e| e.value(vars)) {
        Ok(v) => v,
        Err(e) => panic!("`{src}` failed: {e}"),
    }
}

fn check_value(src: &str, vars: &HashMap<String, String>, want: V) {
    let got = value(src, vars);
    let ok = match (want, &got) {
        (V::Nil, Value::Nil) => true,
        (V::S(w), Value::String(g)) => w == g,
        (V::B(w), Value::Bool(g)) => w == *g,
        _ => false,
    };
    assert!(ok, "`{src}`: expected {want:?}, got {got:?}");
}

fn truthful(src: &str, vars: &HashMap<String, String>) -> bool {
    // GitLab's `truthful?` rescues every statement error as false.
    evaluate(src, vars).unwrap_or(false)
}

#[test]
fn statement_evaluate_table() {
    let v = spec_vars();
    let table: &[(&str, V)] = &[
        // #1 – #4
        ("$EMPTY_VARIABLE == null", V::B(false)),
        (r#""" == $EMPTY_VARIABLE"#, V::B(true)),
        ("$UNDEFINED_VARIABLE == null", V::B(true)),
        ("null == $UNDEFINED_VARIABLE", V::B(true)),
        ("$EMPTY_VARIABLE", V::S("")),
        ("$PRESENT_VARIABLE", V::S("my variable")),
        ("$UNDEFINED_VARIABLE", V::Nil),
        // #5 – #9
        ("$PRESENT_VARIABLE =~ /^var.*/", V::B(false)),
        ("$PRESENT_VARIABLE =~ /VAR.*/i", V::B(true)),
        (r"$PATH_VARIABLE =~ /path\/variable/", V::B(true)),
        (
            r"$FULL_PATH_VARIABLE =~ /^\/a\/full\/path\/variable\/value$/",
            V::B(true),
        ),
        (r"$PRESENT_VARIABLE =~ /va\r.*e$/", V::B(false)),
        ("$UNDEFINED_VARIABLE =~ /var.*/", V::B(false)),
        ("$UNDEFINED_VARIABLE !~ /var.*/", V::B(true)),
        ("$PRESENT_VARIABLE !~ /var.*/", V::B(false)),
        // #10 – #14
        ("$EMPTY_VARIABLE && $PRESENT_VARIABLE", V::S("my variable")),
        ("$PRESENT_VARIABLE && null", V::Nil),
        ("null && $PRESENT_VARIABLE", V::Nil),
        (r#"$EMPTY_VARIABLE == "" || $PRESENT_VARIABLE"#, V::B(true)),
        (
            "$PRESENT_VARIABLE || $UNDEFINED_VARIABLE == null",
            V::S("my variable"),
        ),
        (
            r#"$PRESENT_VARIABLE && null || $EMPTY_VARIABLE == """#,
            V::B(true),
        ),
        ("$UNDEFINED_VARIABLE || $EMPTY_VARIABLE", V::S("")),
        // #15, #16
        (r#"("string" == "test" || "string")"#, V::S("string")),
        (r#"("string" == ("test" && "string"))"#, V::B(true)),
        (r#"("string" == ("test" || "string"))"#, V::B(false)),
        // #17 – #19
        ("!$UNDEFINED_VARIABLE", V::B(true)),
        ("!null", V::B(true)),
        (r#"!"""#, V::B(true)),
        (r#"!"false""#, V::B(false)),
        (r#"!"0""#, V::B(false)),
        ("!($UNDEFINED_VARIABLE && $PRESENT_VARIABLE)", V::B(true)),
        ("!$PRESENT_VARIABLE", V::B(false)),
        ("!!$PRESENT_VARIABLE", V::B(true)),
    ];
    for (src, want) in table {
        check_value(src, &v, *want);
    }
}

#[test]
fn statement_truthful_table() {
    let v = spec_vars();
    // #4, #18, #20, #21
    let table = [
        ("$EMPTY_VARIABLE", false),
        ("$PRESENT_VARIABLE", true),
        ("$UNDEFINED_VARIABLE", false),
        (r#""false""#, true),
        (r#""0""#, true),
        (r#""""#, false),
        ("null", false),
        ("$INVALID = 1", false),
        (r#"!"false""#, false),
        ("true", true),
        ("false", false),
        ("$PRESENT_VARIABLE =~ /my var/", true),
    ];
    for (src, want) in table {
        assert_eq!(truthful(src, &v), want, "`{src}`");
    }
}

#[test]
fn variables_holding_patterns() {
    // #22, #23
    let v = vars(&[
        ("teststring", "abcde"),
        ("pattern1", "/^ab.*/"),
        ("pattern2", "/^at.*/"),
    ]);
    assert!(truthful("$teststring =~ $pattern1", &v));
    assert!(!truthful("$teststring =~ $pattern2", &v));
    assert!(truthful("$teststring !~ $pattern2", &v));
    assert!(truthful(r#"$teststring =~ "abcde""#, &v));
    assert!(truthful("$teststring =~ $teststring", &v));
    // Substring fallback: the left value is searched inside the right one.
    assert!(truthful(r#""23" =~ "1234""#, &v));
    assert!(!truthful(r#""1234" =~ "23""#, &v));
    let x = vars(&[("X", "23"), ("P", "/./"), ("Q", "/A/i"), ("R", "/(?=x)/")]);
    assert!(truthful(r#"$X =~ "1234""#, &x));
    // Variables may hold one-character regexes, literals may not.
    assert!(truthful("$X =~ $P", &x));
    assert!(Expression::parse("$X =~ /./").is_err());
    assert!(truthful(r#""a" =~ $Q"#, &x));
    // Not valid RE2 → substring fallback: "23" is not inside "/(?=x)/".
    assert!(!truthful("$X =~ $R", &x));
    // Undefined left side is "", found in any string.
    assert!(truthful(r#"$NOPE =~ "abc""#, &x));
    // Right side nil.
    assert!(!truthful("$X =~ $NOPE", &x));
    assert!(truthful("$X !~ $NOPE", &x));
}

#[test]
fn inputs() {
    // #24
    let e = Expression::parse(r#"$[[ inputs.cloud_provider ]] == "aws""#);
    let inputs = vars(&[("cloud_provider", "aws")]);
    let none = HashMap::<String, String>::new();
    let r = e
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|e| e.evaluate_with_inputs(&none, &inputs));
    assert_eq!(r, Ok(true));
    // An input that is not given is nil, like an undefined variable.
    let r = e.and_then(|e| e.evaluate_with_inputs(&none, &none));
    assert_eq!(r, Ok(false));
    assert_eq!(
        evaluate("$[[ inputs.x ]] == null", &none),
        Ok(true),
        "no inputs at all"
    );
}

#[test]
fn derived_cases() {
    // GitLab issue 358775: "" is truthy inside ||, and the final "" is not present.
    let v = vars(&[("a", ""), ("b", "1")]);
    assert!(!truthful("$a || $b == '1'", &v));
    assert!(truthful("$b == '1' || $a", &v));
    let f = vars(&[("FLAG", "true"), ("OFF", "false"), ("SPACES", "  \t")]);
    assert!(truthful("$FLAG == true", &f));
    assert!(truthful("true == $FLAG", &f));
    assert!(truthful("$OFF == false", &f));
    assert!(truthful("$OFF", &f));
    assert!(!truthful("$SPACES", &f));
    assert!(truthful("!$SPACES", &f));
    assert!(!truthful("$FLAG != true", &f));
    // Precedence: `!` binds tightest, `==` over `&&` over `||`, left-associative.
    let p = vars(&[("A", "x")]);
    check_value(r#"!$A == "x""#, &p, V::B(false)); // (!$A) == "x"
    check_value("!$A == false", &p, V::B(true));
    check_value(r#"!($A == "x")"#, &p, V::B(false));
    check_value(r#""a" || "b" && null"#, &p, V::S("a")); // a || (b && nil)
    check_value(r#"("a" || "b") && null"#, &p, V::Nil);
    check_value(r#"null || "" || "c""#, &p, V::S(""));
    check_value(r#"$A == "x" == true"#, &p, V::B(true)); // ($A == "x") == true
                                                         // Regexps compare by RE2 source, flags included.
    check_value("/ab/ == /ab/", &p, V::B(true));
    check_value("/ab/i == /(?i)ab/", &p, V::B(true));
    check_value("/ab/ == /ab/i", &p, V::B(false));
    check_value(r#""ab" == /ab/"#, &p, V::B(false));
    // Unicode values and regexes.
    let u = vars(&[("U", "Ünïcødé ブランチ")]);
    assert!(truthful("$U =~ /ブランチ$/", &u));
    assert!(truthful("$U =~ /^ünï/i", &u));
    assert!(!truthful(r"$U =~ /^\w/", &u), "RE2 \\w is ASCII");
    assert!(truthful(r#"$U == "Ünïcødé ブランチ""#, &u));
    // Regex flags.
    let m = vars(&[("M", "one\ntwo")]);
    assert!(!truthful("$M =~ /^two$/", &m));
    assert!(truthful("$M =~ /^two$/m", &m));
    assert!(truthful("$M =~ /one.two/s", &m));
    assert!(!truthful("$M =~ /one.two/", &m));
    assert!(truthful("$M =~ /ONE/im", &m));
    // Strings have no escapes: a backslash is an ordinary character.
    check_value(r#""a\" == 'a\'"#, &m, V::B(true));
    assert!(Expression::parse(r#""say \"hi\"""#).is_err());
    check_value(r#"'say "hi"'"#, &m, V::S("say \"hi\""));
    // YAML may shadow predefined variables: the lookup just sees the last value.
    let shadow = vec![
        ("CI_COMMIT_BRANCH".to_string(), "main".to_string()),
        ("CI_COMMIT_BRANCH".to_string(), "foo".to_string()),
    ];
    assert_eq!(evaluate(r#"$CI_COMMIT_BRANCH == "foo""#, &shadow), Ok(true));
}

#[test]
fn invalid_expressions() {
    let cases: &[(&str, &str, Option<usize>)] = &[
        ("$VAR == 1", "Unknown lexeme found!", Some(9)),
        ("${VAR}", "Unknown lexeme found!", Some(1)),
        ("$A = 1", "Unknown lexeme found!", Some(4)),
        ("$A and $B", "Unknown lexeme found!", Some(4)),
        ("$A in $B", "Unknown lexeme found!", Some(4)),
        ("$A)", "Unmatched parenthesis", Some(3)),
        (
            "($A",
            "Unprocessable token found in parse tree: parenthesis_open",
            Some(1),
        ),
        ("$A $B", "Unreachable nodes in parse tree", Some(1)),
        ("$A ==", "Invalid left operand", Some(4)),
        ("== $A", "Invalid left operand", Some(1)),
        ("==", "Invalid left operand", Some(1)),
        ("!", "Invalid operand", Some(1)),
        ("", "Empty statement", None),
        ("   ", "Empty statement", None),
        ("/pattern/x", "Unknown lexeme found!", Some(10)),
    ];
    for (src, msg, col) in cases {
        match Expression::parse(src) {
            Ok(e) => panic!("`{src}` should be invalid, parsed as {:?}", e.root()),
            Err(e) => {
                assert_eq!(&e.message, msg, "`{src}`");
                assert_eq!(e.column, *col, "`{src}`");
            }
        }
    }
    // Regexes RE2 rejects are syntax errors of the statement, with the column of the literal.
    for src in [
        "$A =~ /^(?!master).+/",
        r"$A =~ /(a)\1/",
        "$A =~ /a(?<=b)/",
        "$A =~ /a{2000}/",
        "$A =~ /(?x) a /",
        "$A =~ /[a-/",
        "$A =~ /a\nb/",
    ] {
        let e = Expression::parse(src).err();
        assert_eq!(
            e.as_ref().map(|e| e.kind),
            Some(ExprErrorKind::Syntax),
            "`{src}`"
        );
        assert_eq!(e.as_ref().and_then(|e| e.column), Some(7), "`{src}`");
        let shown = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(shown.starts_with("Invalid regular expression!"), "{shown}");
        assert!(shown.ends_with("(at column 7)"), "{shown}");
    }
    // `=~` against a boolean fails at run time (GitLab: NoMethodError → rule does not match).
    let e = evaluate("$A =~ true", &HashMap::<String, String>::new());
    assert_eq!(e.map_err(|e| e.kind), Err(ExprErrorKind::Runtime));
}

#[test]
fn error_precedence_follows_gitlab_phases() {
    // GitLab lexes everything, then builds lexemes (compiling patterns), then parses.
    let msg = |src: &str| Expression::parse(src).err().map(|e| e.message);
    assert_eq!(
        msg("$A =~ /(?!x)/ 123").as_deref(),
        Some("Unknown lexeme found!")
    );
    assert!(msg("$A =~ /(?!x)/ )").is_some_and(|m| m.starts_with("Invalid regular expression!")));
    assert_eq!(
        msg("$A =~ /x+/ )").as_deref(),
        Some("Unmatched parenthesis")
    );
}

#[test]
fn columns_count_characters() {
    let e = Expression::parse("\"ü\" == é").err();
    assert_eq!(e.and_then(|e| e.column), Some(8));
    let e = Expression::parse("$ブ").err();
    assert_eq!(
        e.map(|e| e.to_string()).as_deref(),
        Some("Unknown lexeme found! (at column 1)")
    );
}

#[test]
fn accepted_like_gitlab() {
    // Shunting-yard quirks GitLab shares: a trailing `!` applies to the operand before it.
    assert!(Expression::parse("$A !").is_ok());
    assert!(Expression::parse("(($A))").is_ok());
    assert!(Expression::parse("$A==$B&&$C!=null").is_ok());
    assert!(Expression::parse("\t$A\n==\r\n'x'").is_ok());
}

#[test]
fn ruby_syntax_regexes_for_refs() {
    use glci_test::expr::{re2_regex, ruby_syntax_regex};
    // §12 #33: `only: ['/DOCS-.*/i']` matches ref `docs-something`.
    assert!(ruby_syntax_regex("/DOCS-.*/i").is_some_and(|r| r.is_match("docs-something")));
    // §12 #35: RE2 rejects lookahead, so the item is no regex (GitLab compares it literally).
    assert!(ruby_syntax_regex("/^(?!master).+/").is_none());
    // §12 #37: `/*invalid/` is not valid RE2.
    assert!(ruby_syntax_regex("/*invalid/").is_none());
    assert!(ruby_syntax_regex("master").is_none());
    assert!(
        ruby_syntax_regex("//").is_some(),
        "an empty body is fine outside the lexer"
    );
    assert!(re2_regex("a(?=b)", "").is_err());
    assert!(re2_regex("a.b", "s").is_ok_and(|r| r.is_match("a\nb")));
}
