//! Test reports as test results, with a real test suite: a job in `glci-fixture/python:pytest`
//! (Debian's pytest, no network; built here when missing: `scripts/fixture-images python`,
//! about a minute) runs a tiny pytest project with one failing case and uploads its JUnit
//! report through `artifacts:reports:junit`; the job's trial names that case before the log
//! tail, the counts and the `coverage:` figure are in the job's results, and a
//! `codequality` report is kept and listed.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use glci_test::harness::outcome::{verdict, Verdict};
use glci_test::pipeline::test_reports::Counts;
use glci_test::pipeline::{PipelineOptions, Quiet, RunOptions, Session};
use glci_test::plan::status::Status;

const PYTEST_IMAGE: &str = "glci-fixture/python:pytest";

fn ensure_fixture() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let present = Command::new("docker")
            .args(["image", "inspect", PYTEST_IMAGE])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fixture-images");
            let out = Command::new(script).arg("python").output().expect("runs");
            assert!(
                out.status.success(),
                "fixture-images python: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

const PIPELINE: &str = r#"
unit:
  image: glci-fixture/python:pytest
  coverage: '/TOTAL\s+\d+\s+\d+\s+(\d+%)/'
  script:
    - echo "TOTAL 40 10 75%"
    - echo '[]' > gl-code-quality-report.json
    - python3 -m pytest -p no:cacheprovider -o junit_family=xunit1 --junitxml=reports/unit.xml tests
  artifacts:
    when: always
    reports:
      junit: reports/*.xml
      codequality: gl-code-quality-report.json
"#;

const TESTS: &str = r#"
def test_adds():
    assert 1 + 1 == 2


def test_divides():
    assert 6 / 3 == 3


def test_subtracts():
    assert 3 - 1 == 2
"#;

/// A committed pytest project with [`PIPELINE`].
fn pytest_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".gitlab-ci.yml"), PIPELINE).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/test_calc.py"), TESTS).unwrap();
    let git = |args: &[&str]| crate::support::git(dir.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one"]);
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pytest_case_is_named_in_the_trial_message_before_the_log_tail() {
    ensure_fixture();
    let dir = pytest_project();
    let home = tempfile::tempdir().unwrap();
    let options = RunOptions {
        home: Some(home.path().to_path_buf()),
        ..RunOptions::default()
    };
    let session = Session::start(&PipelineOptions::new(dir.path()), options, Arc::new(Quiet))
        .await
        .expect("session");
    let plan = session.planned().plan.clone();
    let report = session.run(&[]).await.expect("runs");
    session.shutdown().await;

    let unit = &report.jobs[0];
    assert_eq!(unit.status, Status::Failed, "{}", unit.log);
    assert_eq!(
        unit.tests.counts(),
        Some(Counts {
            passed: 2,
            failed: 1,
            skipped: 0
        }),
        "{:?}\n{}",
        unit.tests,
        unit.log
    );
    assert_eq!(unit.tests.coverage.as_deref(), Some("75"));
    let mut types = unit.tests.report_types.clone();
    types.sort();
    assert_eq!(types, ["codequality", "junit"]);
    assert!(unit.tests.warnings.is_empty(), "{:?}", unit.tests.warnings);
    let summary = unit.tests.summary_line().unwrap_or_default();
    assert!(
        summary.starts_with("tests: 2 passed, 1 failed, 0 skipped; coverage 75%; reports: "),
        "{summary}"
    );

    let reports: HashMap<_, _> = report
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.clone()))
        .collect();
    let Verdict::Fail(message) = verdict(&plan, unit, &reports) else {
        panic!("the job's trial does not fail");
    };
    let case = message
        .find("- pytest::tests.test_calc::test_divides (tests/test_calc.py:")
        .unwrap_or_else(|| panic!("the failed case is not named:\n{message}"));
    let tail = message
        .find("1 failed, 2 passed")
        .unwrap_or_else(|| panic!("the log tail is missing:\n{message}"));
    assert!(
        case < tail,
        "the case comes before the log tail:\n{message}"
    );
    assert!(
        message[case..tail].contains("assert (6 / 3) == 3"),
        "the case's message is shown:\n{message}"
    );
    assert!(
        message.starts_with("job `unit` failed: exit code 1"),
        "{message}"
    );
    assert!(!message[..tail].contains("test_adds"), "{message}");
}
