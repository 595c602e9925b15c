//! `--report-tests`: each JUnit test case of a job as its own trial, named
//! `<job>/<suite>::<case>` (kind: the job's stage), so an IDE or a test report shows the
//! tests inside CI jobs one by one.
//!
//! libtest-mimic takes every trial before it runs any (`libtest_mimic::run(args, trials)`),
//! and listing must not touch Docker, so the cases cannot come from this run: they come from
//! the last recorded run of each job in `GLCI_HOME` (the JUnit reports `cargo glci run` and
//! `cargo glci test` keep per pipeline). Running a case trial runs its job (once per process,
//! shared with the job's own trial) and reads the case from this run's report: failed or
//! error fails, skipped is ignored, passed passes; a case this run's report no longer has is
//! ignored, saying so. Cases new in this run are not trials of this process (they are named
//! in the job trial's message when they fail) and become trials on the next run.

use std::path::Path;
use std::sync::Arc;

use libtest_mimic::{Completion, Failed, Trial};

use crate::pipeline::past_runs;
use crate::pipeline::test_reports::{CaseStatus, TestCase, TestResults};
use crate::plan::model::When;

use super::trials::Context;

/// The trial name of `case` of `job`.
pub fn trial_name(job: &str, case: &TestCase) -> String {
    let suite = if case.suite.is_empty() {
        case.classname.as_deref().unwrap_or_default()
    } else {
        case.suite.as_str()
    };
    if suite.is_empty() {
        format!("{job}/{}", case.name)
    } else {
        format!("{job}/{suite}::{}", case.name)
    }
}

/// One trial per case of the last recorded run of each planned job of `project` in `home`.
pub fn trials(ctx: &Arc<Context>, home: &Path, project: &Path, with_kind: bool) -> Vec<Trial> {
    let mut out = Vec::new();
    for job in &ctx.plan.jobs {
        let Some((pipeline, record)) = past_runs::last_job(home, project, &job.name) else {
            continue;
        };
        let past = TestResults::from_record(&pipeline, &record);
        let mut seen = std::collections::HashSet::new();
        for case in past.cases.into_iter().flatten() {
            let name = trial_name(&job.name, &case);
            // Parametrised cases can repeat a name; libtest needs unique names.
            if !seen.insert(name.clone()) {
                continue;
            }
            let ctx = Arc::clone(ctx);
            let job_name = job.name.clone();
            let shown = crate::printable::printable(&name).into_owned();
            let trial = Trial::ignorable_test(shown, move || run_case(&ctx, &job_name, &name))
                .with_ignored_flag(job.when == When::Manual);
            out.push(if with_kind {
                trial.with_kind(crate::printable::printable(&job.stage).into_owned())
            } else {
                trial
            });
        }
    }
    out
}

fn run_case(ctx: &Context, job: &str, name: &str) -> Result<Completion, Failed> {
    let (report, _) = ctx.session.job(job)?;
    let Some(cases) = &report.tests.cases else {
        return Err(format!(
            "job `{job}` {} without a JUnit report",
            report.status.as_str()
        )
        .into());
    };
    let Some(case) = cases.iter().find(|c| trial_name(job, c) == name) else {
        return Ok(Completion::ignored_with(
            "not in this run's JUnit report (known from an earlier run)",
        ));
    };
    match case.status {
        CaseStatus::Success => Ok(Completion::Completed),
        CaseStatus::Skipped => Ok(Completion::ignored_with(
            case.message.as_deref().unwrap_or("skipped"),
        )),
        CaseStatus::Failed | CaseStatus::Error => {
            let mut message = format!("{} ({})", name, case.status.as_str());
            if let Some(at) = case.location() {
                message.push_str(&format!(" at {at}"));
            }
            if let Some(m) = &case.message {
                message.push('\n');
                message.push_str(m);
            }
            if !case.details.is_empty() {
                message.push('\n');
                message.push_str(&case.details);
            }
            Err(message.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_job_suite_and_case() {
        let case = TestCase {
            suite: "pytest".into(),
            classname: Some("tests.test_calc".into()),
            name: "test_divides".into(),
            file: None,
            line: None,
            status: CaseStatus::Failed,
            message: None,
            details: String::new(),
        };
        assert_eq!(trial_name("unit", &case), "unit/pytest::test_divides");
        let bare = TestCase {
            suite: String::new(),
            classname: None,
            ..case
        };
        assert_eq!(trial_name("unit", &bare), "unit/test_divides");
    }

    #[test]
    fn listed_from_the_last_recorded_run_of_each_job() {
        use crate::harness::normalize::Normalizer;
        use crate::harness::session::LazySession;
        use crate::harness::snapshot::{Selection, SnapshotSettings};
        use crate::pipeline::past_runs::{ArtifactRecord, JobRecord};
        use crate::pipeline::{PipelineOptions, RunOptions};
        use std::io::Write;

        let home = tempfile::tempdir().expect("temp dir");
        let project = Path::new("/src/demo");
        // Pipeline 1 is older: pipeline 2's report of `unit` wins.
        for (id, xml) in [
            (
                1,
                r#"<testsuite name="old"><testcase name="gone"/></testsuite>"#,
            ),
            (
                2,
                r#"<testsuite name="pytest"><testcase name="test_a"/><testcase name="test_b"><failure/></testcase><testcase name="test_a"/></testsuite>"#,
            ),
        ] {
            let dir = home.path().join("pipelines").join(id.to_string());
            std::fs::create_dir_all(dir.join("artifacts/7")).expect("dir");
            let mut gz = flate2::GzBuilder::new()
                .filename(&b"unit.xml"[..])
                .write(Vec::new(), flate2::Compression::default());
            gz.write_all(xml.as_bytes()).expect("write");
            let bytes = gz.finish().expect("gzip");
            std::fs::write(dir.join("artifacts/7/junit.gz"), &bytes).expect("write");
            let record = JobRecord {
                name: "unit".into(),
                stage: "test".into(),
                job_id: 7,
                pipeline_id: id,
                status: "failed".into(),
                finished_at: id,
                project: project.to_path_buf(),
                artifacts: vec![ArtifactRecord {
                    artifact_type: "junit".into(),
                    format: "gzip".into(),
                    filename: "junit.gz".into(),
                    path: "artifacts/7/junit.gz".into(),
                    size: bytes.len() as u64,
                    expire_in: None,
                }],
                dotenv: Vec::new(),
            };
            past_runs::write(&dir, &record).expect("record");
        }
        let plan = crate::harness::test_support::plan_yaml(
            "unit: {stage: test, script: [x]}\nlint: {stage: test, script: [x]}\n",
        )
        .expect("plans");
        let session = LazySession::new(
            PipelineOptions::new("."),
            RunOptions::default(),
            false,
            None,
        )
        .expect("session");
        let ctx = Arc::new(Context {
            plan,
            session: Arc::new(session),
            snapshots: Selection::None,
            snapshot_settings: SnapshotSettings {
                dir: ".".into(),
                ci_file: ".gitlab-ci.yml".into(),
                normalizer: Normalizer::new(),
            },
            children: Vec::new(),
        });
        let listed = trials(&ctx, home.path(), project, true);
        let names: Vec<(&str, &str)> = listed.iter().map(|t| (t.name(), t.kind())).collect();
        assert_eq!(
            names,
            [
                ("unit/pytest::test_a", "test"),
                ("unit/pytest::test_b", "test")
            ]
        );
        assert!(trials(&ctx, home.path(), Path::new("/other"), true).is_empty());
    }
}
