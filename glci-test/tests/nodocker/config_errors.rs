//! Every configuration error is located (`file:line:col`) and worded as GitLab words it;
//! malformed input of any kind gives an error, never a panic.

use std::path::Path;

use glci_test::config::{load, LoadOptions};

/// Writes `files` into a fresh project and loads it.
fn load_files(files: &[(&str, &str)]) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    write_all(dir.path(), files);
    let opts = LoadOptions {
        project_dir: dir.path().to_path_buf(),
        variables: vec![("CI_COMMIT_BRANCH".into(), "main".into())],
        ..LoadOptions::default()
    };
    load(&opts)
        .map(|r| glci_test::config::to_yaml(&r.tree))
        .map_err(|e| e.to_string())
}

fn write_all(root: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn error_of(files: &[(&str, &str)]) -> String {
    match load_files(files) {
        Ok(tree) => panic!("expected an error, got:\n{tree}"),
        Err(e) => e,
    }
}

fn main_only(text: &str) -> String {
    error_of(&[(".gitlab-ci.yml", text)])
}

#[test]
fn gitlab_messages_with_locations() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[(".gitlab-ci.yml", "  \n")], ".gitlab-ci.yml:1:1: Please provide content of .gitlab-ci.yml"),
        (&[(".gitlab-ci.yml", "- a\n- b\n")], ".gitlab-ci.yml:1:1: Invalid configuration format"),
        (&[(".gitlab-ci.yml", "include: missing.yml\n")], ".gitlab-ci.yml:1:10: Local file `missing.yml` does not exist!"),
        (&[(".gitlab-ci.yml", "include: notes.txt\n"), ("notes.txt", "a: 1\n")], ".gitlab-ci.yml:1:10: Included file `notes.txt` does not have YAML extension!"),
        (&[(".gitlab-ci.yml", "include: e.yml\n"), ("e.yml", "")], ".gitlab-ci.yml:1:10: Local file `e.yml` is empty!"),
        // Not blank as text, but no hash either: GitLab's wording for that.
        (&[(".gitlab-ci.yml", "include: e.yml\n"), ("e.yml", "# nothing\n")], "e.yml:1:1: Included file `e.yml` does not have valid YAML syntax!"),
        (&[(".gitlab-ci.yml", "include: [loop.yml]\n"), ("loop.yml", "include: loop.yml\n")], "loop.yml:1:10: Maximum of 150 nested includes are allowed!"),
        (&[(".gitlab-ci.yml", "include:\n  - local: a.yml\n    remote: https://x/b.yml\n")], ".gitlab-ci.yml:2:5: Each include must use only one of: `local`, `project`, `remote`, `template`, `artifact`, `component`"),
        (&[(".gitlab-ci.yml", "include:\n  - file: a.yml\n")], ".gitlab-ci.yml:2:5: `{\"file\" => \"a.yml\"}` does not have a valid subkey for include. Valid subkeys are: `local`, `project`, `remote`, `template`, `artifact`, `component`"),
        (&[(".gitlab-ci.yml", "include:\n  - local: a.yml\n    rules:\n      - if: $X = 1\n")], ".gitlab-ci.yml:4:13: include rule if invalid expression syntax"),
        (&[(".gitlab-ci.yml", "include:\n  - local: a.yml\n    inputs: {x: 1}\n"), ("a.yml", "j: {script: x}\n")], ".gitlab-ci.yml:2:5: Given inputs not defined in the `spec` section of the included configuration file"),
        (&[(".gitlab-ci.yml", "include: a.yml\n"), ("a.yml", "job:\n  script: [a\n")], "a.yml:3:1: did not find expected ',' or ']' while parsing a flow sequence"),
        (&[(".gitlab-ci.yml", "include: a.yml\nj: {script: x}\n"), ("a.yml", "k:\n  script: !reference [.nope, script]\n")], "a.yml:2:11: !reference [\".nope\", \"script\"] could not be found"),
        (&[(".gitlab-ci.yml", "job:\n  extends: .base\n  script: x\n")], ".gitlab-ci.yml:2:12: job: unknown keys in `extends` (.base)"),
        (&[(".gitlab-ci.yml", "cache: {key: a}\ndefault: {cache: {key: b}}\nj: {script: x}\n")], ".gitlab-ci.yml:1:1: cache is defined in top-level and `default:` entry"),
        (&[(".gitlab-ci.yml", ".hidden:\nj: {script: x}\n")], ".gitlab-ci.yml:1:1: jobs:.hidden config can't be blank"),
        (&[(".gitlab-ci.yml", "include: {artifact: x.yml, job: gen}\n")], ".gitlab-ci.yml:1:10: Including configs from artifacts is only allowed when triggering child pipelines"),
        (&[(".gitlab-ci.yml", "include: {component: foo}\n")], ".gitlab-ci.yml:1:10: component `foo` should be `<fqdn>/<project-path>/<component-name>@<version>`"),
        (&[(".gitlab-ci.yml", "when: 2024-01-01\n")], ".gitlab-ci.yml:1:7: Tried to load unspecified class: Date"),
    ];
    for (files, want) in cases {
        assert_eq!(&error_of(files), want, "{files:?}");
    }
}

#[test]
fn include_rules_pick_files() {
    let tree = load_files(&[
        (
            ".gitlab-ci.yml",
            "include:\n  - local: yes.yml\n    rules: [{if: $CI_COMMIT_BRANCH == \"main\"}]\n  - local: no.yml\n    rules: [{if: $CI_COMMIT_BRANCH == \"main\", when: never}]\n  - local: gone.yml\n    rules: [{exists: [nothing/**/*.txt]}]\nmain: {script: x}\n",
        ),
        ("yes.yml", "yes-job: {script: y}\n"),
        ("no.yml", "no-job: {script: n}\n"),
        ("gone.yml", "gone-job: {script: g}\n"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(tree.contains("yes-job:"), "{tree}");
    assert!(!tree.contains("no-job:"), "{tree}");
    assert!(!tree.contains("gone-job:"), "{tree}");
}

#[test]
fn deep_merge_order_last_inclusion_wins() {
    let tree = load_files(&[
        (
            ".gitlab-ci.yml",
            "include: [a.yml, b.yml, a.yml]\nj:\n  variables: {MAIN: '1'}\n",
        ),
        ("a.yml", "j:\n  script: [a]\n  variables: {A: a, WHO: a}\n"),
        ("b.yml", "j:\n  script: [b]\n  variables: {B: b, WHO: b}\n"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        tree,
        "j:\n  script:\n  - a\n  variables:\n    A: a\n    WHO: a\n    B: b\n    MAIN: \"1\"\n"
    );
}

#[test]
fn nasty_inputs_never_panic() {
    let nasty: &[&str] = &[
        "include: 5\n",
        "include: [[a.yml]]\n",
        "include: {local: [a.yml]}\n",
        "include: {local: ../../../etc/passwd.yml}\n",
        "include: {local: '**'}\nj: {script: x}\n",
        "include: {local: '*.yml'}\nj: {script: x}\n",
        "include: {remote: 'http://127.0.0.1:1/x.yml'}\n",
        "include: 'http://'\n",
        "include: {project: a/b}\n",
        "include: {template: ../x.yml}\n",
        "include: {local: a.yml, rules: 5}\n",
        "include: {local: a.yml, rules: [5]}\n",
        "include: {local: a.yml, rules: [{if: 5}]}\n",
        "include: {local: a.yml, rules: [{exists: {paths: 5}}]}\n",
        "include: {local: a.yml, rules: [{exists: ['[']}]}\n",
        "include: {local: a.yml, rules: [{when: manual}]}\n",
        "include: {local: a.yml, rules: [{bogus: 1}]}\n",
        "include: {component: 'a/b/c@'}\n",
        "include: {component: '/@1'}\n",
        "j: {extends: [[a]]}\n",
        "j: {extends: j}\n",
        "j: {script: !reference [a, [b]]}\n",
        "j: {script: !reference []}\n",
        "j: {script: !reference [j, script]}\n",
        "j: {<<: *undefined}\n",
        "a: &a [*a]\n",
        "spec: {inputs: {x: {type: nonsense}}}\n---\nj: {script: x}\n",
        "spec: {inputs: {x: {default: 1, regex: '('}}}\n---\nj: {script: x}\n",
        "spec: {inputs: {x: {default: a, options: 5}}}\n---\nj: {script: x}\n",
        "spec: {inputs: {x: {default: [a]}}}\n---\nj:\n  script: $[[ inputs.x[9] ]]\n",
        "spec: {inputs: {x: {default: a}}}\n---\nj:\n  script: $[[ inputs.x | truncate(a,b) ]]\n",
        "spec: {inputs: {x: {default: a}}}\n---\nj:\n  script: $[[ inputs.x[0][0][0][0][0][0] ]]\n",
        "spec: {inputs: {x: {default: a}}}\n---\nj:\n  script: $[[ nope ]]\n",
        "spec: 5\n---\nj: {script: x}\n",
        "image: a\ndefault: 5\nj: {script: x}\n",
        "default: {script: x}\nimage: a\n",
        "j: {script: [[[[[[[[[[[[x]]]]]]]]]]]]}\n",
        "j: {script: x, rules: [5]}\n",
        "workflow: {rules: [[{if: $X}]]}\nj: {script: x}\n",
        "j: {script: x, inherit: {default: 5}}\ndefault: {image: a}\n",
        "\u{0}\u{1}\u{2}",
        "\u{feff}",
        "---\n---\n---\n",
        "? [a, b]\n: c\n",
        "&a x: *a\n",
    ];
    for text in nasty {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_all(dir.path(), &[(".gitlab-ci.yml", text)]);
        let opts = LoadOptions {
            project_dir: dir.path().to_path_buf(),
            remote_timeout: std::time::Duration::from_secs(2),
            ..LoadOptions::default()
        };
        if let Err(e) = load(&opts) {
            assert!(e.span.is_some(), "{text:?}: unlocated error {e}");
            assert!(!e.message.is_empty(), "{text:?}");
        }
    }
}

#[test]
fn include_count_is_per_file_not_per_distinct_file() {
    // 150 inclusions of the same file are fine; the 151st is not.
    let list = |n: usize| {
        format!(
            "include: [{}]\nj: {{script: x}}\n",
            vec!["a.yml"; n].join(", ")
        )
    };
    assert!(load_files(&[
        (".gitlab-ci.yml", &list(150)),
        ("a.yml", "a: {script: x}\n")
    ])
    .is_ok());
    let err = error_of(&[
        (".gitlab-ci.yml", &list(151)),
        ("a.yml", "a: {script: x}\n"),
    ]);
    assert!(
        err.ends_with("Maximum of 150 nested includes are allowed!"),
        "{err}"
    );
}

#[test]
fn main_file_errors() {
    assert!(main_only("a: [1\n").starts_with(".gitlab-ci.yml:2:1: "));
}

#[test]
fn wildcards_outside_git_walk_the_directory() {
    // A temp dir is not a git checkout: the directory walk stands in for `git ls-files`.
    let files: &[(&str, &str)] = &[
        ("c/top.yml", "top: {script: x}\n"),
        ("c/sub/deep.yml", "deep: {script: x}\n"),
        ("c/sub/more/deeper.yml", "deeper: {script: x}\n"),
    ];
    let with = |pattern: &str| {
        let mut all = vec![(
            ".gitlab-ci.yml",
            format!("include: '{pattern}'\nmain: {{script: x}}\n"),
        )];
        all.extend(files.iter().map(|(a, b)| (*a, b.to_string())));
        let refs: Vec<(&str, &str)> = all.iter().map(|(a, b)| (*a, b.as_str())).collect();
        let tree = load_files(&refs).unwrap_or_else(|e| panic!("{e}"));
        let mut jobs: Vec<String> = tree
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('-'))
            .map(|l| l.trim_end_matches(':').to_string())
            .collect();
        jobs.sort();
        jobs.join(",")
    };
    assert_eq!(with("c/*.yml"), "main,top");
    assert_eq!(with("c/**/*.yml"), "deep,deeper,main,top");
    assert_eq!(with("c/sub/**.yml"), "deep,deeper,main");
    assert_eq!(with("nothing/*.yml"), "main");
}

#[test]
fn include_rules_changes_use_the_diff_when_known() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write_all(
        dir.path(),
        &[
            (
                ".gitlab-ci.yml",
                "include:\n  - local: docs.yml\n    rules: [{changes: ['docs/**/*']}]\n  - local: src.yml\n    rules: [{changes: {paths: ['src/*.rs']}}]\nmain: {script: x}\n",
            ),
            ("docs.yml", "docs-job: {script: d}\n"),
            ("src.yml", "src-job: {script: s}\n"),
        ],
    );
    let run = |changed: Option<Vec<String>>| {
        let mut o = LoadOptions::new(dir.path());
        o.changed_files = changed;
        let tree = load(&o)
            .map(|r| glci_test::config::to_yaml(&r.tree))
            .unwrap_or_else(|e| panic!("{e}"));
        (tree.contains("docs-job:"), tree.contains("src-job:"))
    };
    assert_eq!(run(None), (true, true), "no diff known: changes match");
    assert_eq!(run(Some(vec!["docs/a/b.md".into()])), (true, false));
    assert_eq!(run(Some(vec!["src/main.rs".into()])), (false, true));
    assert_eq!(run(Some(vec!["src/deep/x.rs".into()])), (false, false));
}

/// GitLab reads configuration from the repository's content: a committed link leading out of
/// the repository is refused, naming the file, and an endless file (a link to `/dev/zero`) is
/// refused after reading just past the 2 MiB limit, not when memory runs out.
#[cfg(unix)]
#[test]
fn links_out_of_the_repository_and_endless_files_are_refused() {
    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(outside.path().join("secret.yml"), "leaked: {script: x}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write_all(
        dir.path(),
        &[
            (".gitlab-ci.yml", "include: inc.yml\nj: {script: x}\n"),
            ("ci/inner.yml", "inner: {script: y}\n"),
        ],
    );
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap_or_else(|e| panic!("{e}"))
    };
    link(&outside.path().join("secret.yml"), "inc.yml");
    let opts = LoadOptions::new(dir.path());
    let err = load(&opts).map(|_| ()).unwrap_err().to_string();
    assert!(
        err.starts_with(".gitlab-ci.yml:1:10: ")
            && err.contains("`inc.yml` is a symbolic link to")
            && err.contains("outside the repository"),
        "{err}"
    );

    // A link that stays inside the repository is followed.
    std::fs::remove_file(dir.path().join("inc.yml")).unwrap_or_else(|e| panic!("{e}"));
    link(Path::new("ci/inner.yml"), "inc.yml");
    let tree = load(&opts)
        .map(|r| glci_test::config::to_yaml(&r.tree))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(tree.contains("inner:"), "{tree}");

    // The main file itself, linked to a device that never ends.
    std::fs::remove_file(dir.path().join(".gitlab-ci.yml")).unwrap_or_else(|e| panic!("{e}"));
    link(Path::new("/dev/zero"), ".gitlab-ci.yml");
    let err = load(&opts).map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("`.gitlab-ci.yml` is a symbolic link to `/dev/zero`, outside the repository"),
        "{err}"
    );

    // Over 2 MiB inside the repository: GitLab's error, as before.
    std::fs::remove_file(dir.path().join(".gitlab-ci.yml")).unwrap_or_else(|e| panic!("{e}"));
    let big = format!("j: {{script: x}}\n#{}\n", "x".repeat(2 * 1024 * 1024));
    std::fs::write(dir.path().join(".gitlab-ci.yml"), big).unwrap_or_else(|e| panic!("{e}"));
    let err = load(&opts).map(|_| ()).unwrap_err().to_string();
    assert_eq!(
        err,
        ".gitlab-ci.yml:1:1: `.gitlab-ci.yml`: The parsed YAML is too big"
    );
}
