//! Test reports through the CLI, with a real pytest suite in `glci-fixture/python:pytest`
//! (built here when missing): `cargo glci run` counts the job's tests and shows its coverage in
//! the summary; `cargo glci test --report-tests` then lists each case the run reported as a
//! test of its own, and running one runs the job and takes the case's result. Needs the Docker
//! engine.

use std::path::Path;
use std::process::Command;

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

const PIPELINE: &str = r#"unit:
  image: glci-fixture/python:pytest
  coverage: '/TOTAL\s+\d+\s+\d+\s+(\d+%)/'
  script:
    - echo "TOTAL 40 10 75%"
    - python3 -m pytest -p no:cacheprovider --junitxml=reports/unit.xml tests
  artifacts:
    reports:
      junit: reports/*.xml
"#;

const TESTS: &str =
    "def test_adds():\n    assert 1 + 1 == 2\n\n\ndef test_divides():\n    assert 6 / 3 == 3\n";

fn ensure_image() {
    let present = Command::new("docker")
        .args(["image", "inspect", "glci-fixture/python:pytest"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        let script = glci_e2e::repo_root().join("scripts/fixture-images");
        let out = Command::new(script).arg("python").output().expect("runs");
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

fn glci(dir: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    run(
        glci_bin!(),
        dir,
        args,
        &[("GLCI_HOME", home.to_str().unwrap())],
    )
}

#[test]
fn run_counts_the_cases_and_report_tests_makes_each_case_a_test() {
    ensure_image();
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(
        None,
        &[(".gitlab-ci.yml", PIPELINE), ("tests/test_calc.py", TESTS)],
    );
    let dir = project.path();

    // No run recorded: only the job is a test.
    let out = glci(
        dir,
        home.path(),
        &["test", "--report-tests", "--", "--list"],
    );
    assert_eq!(stdout(&out), "unit: test\n", "{}", stderr(&out));

    let out = glci(dir, home.path(), &["run", "-q"]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("unit: tests: 1 passed, 1 failed, 0 skipped; coverage 75%; reports: junit\n"),
        "{text}{}",
        stderr(&out)
    );

    // The same counts in `--json`'s job_finished event.
    let out = glci(dir, home.path(), &["run", "--json"]);
    let finished: serde_json::Value = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "job_finished")
        .unwrap_or_else(|| panic!("no job_finished event: {}", stdout(&out)));
    assert_eq!(
        finished["tests"],
        serde_json::json!({"passed": 1, "failed": 1, "skipped": 0})
    );
    assert_eq!(finished["coverage"], "75");

    let out = glci(
        dir,
        home.path(),
        &["test", "--report-tests", "--", "--list"],
    );
    assert_eq!(
        stdout(&out),
        "unit: test\nunit/pytest::test_adds: test\nunit/pytest::test_divides: test\n",
        "{}",
        stderr(&out)
    );

    let out = glci(
        dir,
        home.path(),
        &[
            "test",
            "--report-tests",
            "--",
            "--exact",
            "unit/pytest::test_adds",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let out = glci(
        dir,
        home.path(),
        &[
            "test",
            "--report-tests",
            "--",
            "--exact",
            "unit/pytest::test_divides",
        ],
    );
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("unit/pytest::test_divides (failed)"),
        "{text}{}",
        stderr(&out)
    );
    assert!(text.contains("assert (6 / 3) == 3"), "{text}");
}
