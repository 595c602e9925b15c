//! What a finished job means as a test (docs/ARCHITECTURE.md §4): passed, passed
//! with an allowed failure shown, failed with its failed JUnit cases and the tail of its log,
//! failed because an upstream job failed, or ignored because it was never meant to run.

use std::collections::HashMap;

use crate::pipeline::JobReport;
use crate::plan::status::Status;
use crate::plan::Plan;

/// Lines of the job log a failing trial prints.
pub const TAIL_LINES: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed; `Some` carries an allowed failure to show.
    Pass(Option<String>),
    Fail(String),
    /// Not run, and rightly so (e.g. `when: on_failure` with nothing failed).
    Ignored(String),
}

/// The verdict for `report`, given every report of the session so far (to name the upstream
/// job whose failure kept this one from running).
pub fn verdict(plan: &Plan, report: &JobReport, reports: &HashMap<String, JobReport>) -> Verdict {
    match report.status {
        Status::Success | Status::SuccessWithWarnings => Verdict::Pass(None),
        Status::Failed | Status::Canceled if report.allowed_failure => {
            Verdict::Pass(Some(format!(
                "{} (allowed to fail)\n{}{}",
                failure_line(report),
                report.tests.failed_cases_text(),
                tail(report)
            )))
        }
        Status::Failed | Status::Canceled => Verdict::Fail(format!(
            "{}\n{}{}",
            failure_line(report),
            report.tests.failed_cases_text(),
            tail(report)
        )),
        Status::Skipped => match failed_upstream(plan, &report.name, reports) {
            Some(upstream) => Verdict::Fail(format!("not run: needs `{upstream}`, which failed")),
            None => Verdict::Ignored(format!(
                "not run: {}",
                report
                    .not_run_because
                    .as_deref()
                    .unwrap_or("skipped by the pipeline")
            )),
        },
        other => Verdict::Fail(format!(
            "not run ({}): {}",
            other.as_str(),
            report
                .not_run_because
                .as_deref()
                .unwrap_or("the job never started")
        )),
    }
}

fn failure_line(report: &JobReport) -> String {
    let mut line = format!("job `{}` {}", report.name, report.status.as_str());
    if let Some(code) = report.exit_code {
        line.push_str(&format!(": exit code {code}"));
    }
    if let Some(reason) = &report.failure_reason {
        line.push_str(&format!(" ({reason})"));
    }
    if let Some(why) = &report.not_run_because {
        line.push_str(&format!(": {why}"));
    }
    line
}

/// The last [`TAIL_LINES`] lines of the log, rendered (no colours or section markers), and
/// where the whole log is.
pub fn tail(report: &JobReport) -> String {
    let rendered = super::normalize::render(&report.log);
    let lines: Vec<&str> = rendered.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("[... {start} earlier lines]\n"));
    }
    for l in &lines[start..] {
        out.push_str(l);
        out.push('\n');
    }
    match &report.log_path {
        Some(p) => out.push_str(&format!("full log: {}", p.display())),
        None => out.push_str("full log: (not kept)"),
    }
    out
}

/// The job whose failure kept `job` from running: a failed (not allowed) job among what it
/// waits for (its `needs`, or every job of earlier stages), looking through upstream jobs
/// that were themselves skipped.
pub fn failed_upstream(
    plan: &Plan,
    job: &str,
    reports: &HashMap<String, JobReport>,
) -> Option<String> {
    let mut queue = vec![job.to_string()];
    let mut seen = vec![job.to_string()];
    while let Some(current) = queue.pop() {
        for up in upstream(plan, &current) {
            if seen.contains(&up) {
                continue;
            }
            seen.push(up.clone());
            let Some(r) = reports.get(&up) else { continue };
            match r.status {
                Status::Failed | Status::Canceled if !r.allowed_failure => return Some(up),
                Status::Skipped => queue.push(up),
                _ => {}
            }
        }
    }
    None
}

fn upstream(plan: &Plan, job: &str) -> Vec<String> {
    plan.job(job)
        .map(|j| {
            plan.upstream(j)
                .into_iter()
                .map(|u| u.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn report(name: &str, status: Status) -> JobReport {
        JobReport {
            name: name.to_string(),
            stage: "test".to_string(),
            status,
            allowed_failure: false,
            exit_code: None,
            failure_reason: None,
            attempts: 1,
            duration: Duration::ZERO,
            log: String::new(),
            log_path: None,
            artifacts_dir: None,
            dotenv: Vec::new(),
            releases: Vec::new(),
            packages: Vec::new(),
            kept_container: None,
            not_run_because: None,
            tests: Default::default(),
        }
    }

    fn plan() -> Plan {
        let yaml = "stages: [build, test, deploy]\n\
                    build: {stage: build, script: [x]}\n\
                    lint: {stage: build, script: [x]}\n\
                    unit: {stage: test, needs: [build], script: [x]}\n\
                    deploy: {stage: deploy, script: [x]}\n\
                    cleanup: {stage: deploy, when: on_failure, script: [x]}\n";
        match crate::harness::test_support::plan_yaml(yaml) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn success_passes_and_allowed_failure_passes_with_the_failure_shown() {
        let p = plan();
        let none = HashMap::new();
        assert_eq!(
            verdict(&p, &report("build", Status::Success), &none),
            Verdict::Pass(None)
        );
        let mut r = report("lint", Status::Failed);
        r.allowed_failure = true;
        r.exit_code = Some(3);
        r.log = "checking\nbad style\n".to_string();
        match verdict(&p, &r, &none) {
            Verdict::Pass(Some(note)) => {
                assert!(
                    note.starts_with("job `lint` failed: exit code 3 (allowed to fail)"),
                    "{note}"
                );
                assert!(note.contains("bad style"), "{note}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn failure_prints_the_tail_and_the_log_path() {
        let p = plan();
        let mut r = report("build", Status::Failed);
        r.exit_code = Some(1);
        r.failure_reason = Some("script_failure".into());
        r.log = (1..=100).map(|i| format!("\u{1b}[0Kline {i}\n")).collect();
        r.log_path = Some("/data/logs/build.log".into());
        let Verdict::Fail(msg) = verdict(&p, &r, &HashMap::new()) else {
            panic!("not a failure")
        };
        assert!(
            msg.starts_with("job `build` failed: exit code 1 (script_failure)\n"),
            "{msg}"
        );
        assert!(msg.contains("[... 60 earlier lines]\nline 61\n"), "{msg}");
        assert!(!msg.contains("line 60\n"), "{msg}");
        assert!(
            msg.ends_with("line 100\nfull log: /data/logs/build.log"),
            "{msg}"
        );
    }

    #[test]
    fn failed_junit_cases_come_before_the_log_tail() {
        let p = plan();
        let mut r = report("unit", Status::Failed);
        r.exit_code = Some(1);
        r.log = "collected 2 items\n1 failed\n".to_string();
        r.tests.cases = Some(vec![crate::pipeline::test_reports::TestCase {
            suite: "pytest".into(),
            classname: Some("tests.test_calc".into()),
            name: "test_divides".into(),
            file: Some("tests/test_calc.py".into()),
            line: Some("7".into()),
            status: crate::pipeline::test_reports::CaseStatus::Failed,
            message: Some("assert 2 == 3".into()),
            details: "assert 2 == 3\nAssertionError".into(),
        }]);
        let Verdict::Fail(msg) = verdict(&p, &r, &HashMap::new()) else {
            panic!("not a failure")
        };
        assert!(
            msg.starts_with(
                "job `unit` failed: exit code 1\n1 of 1 test cases failed:\n\
                 - pytest::tests.test_calc::test_divides (tests/test_calc.py:7)\n    \
                 assert 2 == 3\n    | AssertionError\ncollected 2 items\n"
            ),
            "{msg}"
        );
    }

    #[test]
    fn upstream_failure_names_the_failed_job_through_needs_and_stages() {
        let p = plan();
        let mut reports = HashMap::new();
        reports.insert("build".to_string(), report("build", Status::Failed));
        reports.insert("lint".to_string(), report("lint", Status::Success));
        reports.insert("unit".to_string(), report("unit", Status::Skipped));
        let v = verdict(&p, &report("unit", Status::Skipped), &reports);
        assert_eq!(
            v,
            Verdict::Fail("not run: needs `build`, which failed".into())
        );
        // deploy waits on earlier stages; unit was skipped because of build.
        reports.insert("build".to_string(), report("build", Status::Success));
        let mut unit = report("unit", Status::Failed);
        unit.exit_code = Some(2);
        reports.insert("unit".to_string(), unit);
        let v = verdict(&p, &report("deploy", Status::Skipped), &reports);
        assert_eq!(
            v,
            Verdict::Fail("not run: needs `unit`, which failed".into())
        );
    }

    #[test]
    fn skipped_without_a_failed_upstream_is_ignored() {
        let p = plan();
        let mut r = report("cleanup", Status::Skipped);
        r.not_run_because = Some("when: on_failure and nothing failed".into());
        assert_eq!(
            verdict(&p, &r, &HashMap::new()),
            Verdict::Ignored("not run: when: on_failure and nothing failed".into())
        );
    }
}
