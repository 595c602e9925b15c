//! A finished job's test results: the cases of its `artifacts:reports:junit` files (see
//! [`junit`]), the figure its `coverage:` regex finds in the log (see [`coverage`]), and the
//! other report types it uploaded. The harness puts the failed cases first in a failed
//! trial's message (`harness::outcome`); the run summary counts them.
//!
//! Reports are read from what the runner uploaded: the `junit` artifact is a concatenation of
//! gzip members, one per matched file, each named after its file (the `gzip` format of
//! `Ci::JobArtifact`), so several files and globs need nothing more here. A report that
//! cannot be read is a warning naming its file; what was read before the fault is kept.

pub mod coverage;
pub mod junit;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::pipeline::past_runs::{JobRecord, PastPipeline};
use crate::server::StoredArtifact;

pub use junit::{CaseStatus, TestCase};

/// Decompressed bytes read from one job's JUnit reports; GitLab refuses larger uploads
/// through its artifact size limits, a local run keeps what fits and says so.
/// (A single text node is held whole while it is read, so this also bounds memory.)
const MAX_XML_BYTES: u64 = 64 * 1024 * 1024;

/// Failed cases named in a failed trial's message; the rest are counted.
const FAILED_CASES_SHOWN: usize = 20;

/// Lines of a failed case's details shown in a trial's message.
const DETAIL_LINES: usize = 8;

/// What a job's reports and log say about its tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestResults {
    /// Cases of the `junit` reports, in report order; `None` when the job uploaded none.
    pub cases: Option<Vec<TestCase>>,
    /// The `coverage:` figure (e.g. `87.5`), as GitLab takes it from the log.
    pub coverage: Option<String>,
    /// Report types the job uploaded besides its archive (`junit`, `codequality`, ...).
    pub report_types: Vec<String>,
    /// Reports that could not be read, each naming its file.
    pub warnings: Vec<String>,
}

/// Counts of a job's cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    /// Failed or error.
    pub failed: usize,
    pub skipped: usize,
}

impl TestResults {
    /// Reads the job's uploaded reports and, when the job has a `coverage:` regex, its log.
    pub fn collect(
        artifacts: &[StoredArtifact],
        coverage_regex: Option<&str>,
        log: Option<&Path>,
    ) -> TestResults {
        let mut results = TestResults::default();
        for artifact in artifacts {
            if artifact.artifact_type == "archive" || artifact.artifact_type == "trace" {
                continue;
            }
            results.report_types.push(artifact.artifact_type.clone());
            if artifact.artifact_type == "junit" {
                let cases = results.cases.get_or_insert_with(Vec::new);
                read_junit(artifact, MAX_XML_BYTES, cases, &mut results.warnings);
            }
        }
        if let (Some(regex), Some(log)) = (coverage_regex, log) {
            match coverage::from_log(regex, log) {
                Ok(figure) => results.coverage = figure,
                Err(e) => results.warnings.push(format!("coverage: {e}")),
            }
        }
        results
    }

    /// The results of a job recorded in an earlier run (`past_runs`): its reports only (the
    /// log of an earlier run is not read again for coverage).
    pub fn from_record(pipeline: &PastPipeline, job: &JobRecord) -> TestResults {
        let artifacts: Vec<StoredArtifact> = job
            .artifacts
            .iter()
            .map(|a| StoredArtifact {
                artifact_type: a.artifact_type.clone(),
                format: a.format.clone(),
                filename: a.filename.clone(),
                path: pipeline.dir.join(&a.path),
                size: a.size,
                expire_in: a.expire_in.clone(),
            })
            .collect();
        TestResults::collect(&artifacts, None, None)
    }

    pub fn counts(&self) -> Option<Counts> {
        let cases = self.cases.as_ref()?;
        let mut counts = Counts::default();
        for case in cases {
            match case.status {
                CaseStatus::Success => counts.passed += 1,
                CaseStatus::Failed | CaseStatus::Error => counts.failed += 1,
                CaseStatus::Skipped => counts.skipped += 1,
            }
        }
        Some(counts)
    }

    /// One line for the run summary: `tests: 3 passed, 1 failed, 0 skipped; coverage 87.5%;
    /// reports: junit, codequality`, or `None` when there is nothing to say.
    pub fn summary_line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(c) = self.counts() {
            parts.push(format!(
                "tests: {} passed, {} failed, {} skipped",
                c.passed, c.failed, c.skipped
            ));
        }
        if let Some(figure) = &self.coverage {
            parts.push(format!("coverage {figure}%"));
        }
        if !self.report_types.is_empty() {
            parts.push(format!("reports: {}", self.report_types.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The failed cases for a failed trial's message: one paragraph each (suite, name,
    /// location, message, the first lines of the details), at most [`FAILED_CASES_SHOWN`];
    /// then the warnings. Empty when there is nothing to show.
    pub fn failed_cases_text(&self) -> String {
        let mut out = String::new();
        let failed: Vec<&TestCase> = self
            .cases
            .iter()
            .flatten()
            .filter(|c| c.status.is_failure())
            .collect();
        if !failed.is_empty() {
            let counts = self.counts().unwrap_or_default();
            out.push_str(&format!(
                "{} of {} test cases failed:\n",
                counts.failed,
                counts.passed + counts.failed + counts.skipped
            ));
        }
        for case in failed.iter().take(FAILED_CASES_SHOWN) {
            out.push_str(&case_text(case));
        }
        if failed.len() > FAILED_CASES_SHOWN {
            out.push_str(&format!(
                "[... {} more failed cases]\n",
                failed.len() - FAILED_CASES_SHOWN
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

/// `- [error] suite::Class::name (file:line)`, then the message and the first details lines,
/// indented.
fn case_text(case: &TestCase) -> String {
    let mut head = String::from("- ");
    if case.status == CaseStatus::Error {
        head.push_str("[error] ");
    }
    for part in [Some(case.suite.as_str()), case.classname.as_deref()]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty() && !case.name.starts_with(*p))
    {
        head.push_str(part);
        head.push_str("::");
    }
    head.push_str(&case.name);
    if let Some(at) = case.location() {
        head.push_str(&format!(" ({at})"));
    }
    head.push('\n');
    let message = case
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    if let Some(m) = message {
        for line in m.lines() {
            head.push_str(&format!("    {line}\n"));
        }
    }
    let details: Vec<&str> = case
        .details
        .lines()
        .filter(|l| !l.trim().is_empty())
        // The message is often the details' first line again.
        .filter(|l| message.is_none_or(|m| l.trim() != m))
        .collect();
    for line in details.iter().take(DETAIL_LINES) {
        head.push_str(&format!("    | {line}\n"));
    }
    if details.len() > DETAIL_LINES {
        head.push_str(&format!(
            "    | [... {} more lines]\n",
            details.len() - DETAIL_LINES
        ));
    }
    head
}

/// The cases of a stored `junit` artifact: gzip members read one after the other (each
/// named in warnings by the file name in its header), or one raw file.
fn read_junit(
    artifact: &StoredArtifact,
    max_bytes: u64,
    cases: &mut Vec<TestCase>,
    warnings: &mut Vec<String>,
) {
    let file = match std::fs::File::open(&artifact.path) {
        Ok(f) => f,
        Err(e) => {
            warnings.push(format!("{}: {e}", artifact.path.display()));
            return;
        }
    };
    let mut budget = max_bytes;
    if artifact.format != "gzip" {
        let name = artifact.filename.clone();
        read_one(&name, BufReader::new(file), &mut budget, cases, warnings);
        return;
    }
    let mut input = BufReader::new(file);
    let mut index = 0;
    loop {
        match input.fill_buf() {
            Ok([]) => return,
            Ok(_) => {}
            Err(e) => {
                warnings.push(format!("{}: {e}", artifact.filename));
                return;
            }
        }
        index += 1;
        let mut member = flate2::bufread::GzDecoder::new(&mut input);
        let name = member
            .header()
            .and_then(|h| h.filename())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_else(|| format!("{} (file {index})", artifact.filename));
        let complete = read_one(&name, &mut member, &mut budget, cases, warnings);
        if !complete {
            // The rest of this member was not read; where the next one starts is unknown
            // without decompressing it all, so the reports after it are left out.
            if budget > 0 && cases.len() < junit::Limits::default().cases {
                let mut rest = (&mut member).take(budget);
                if std::io::copy(&mut rest, &mut std::io::sink()).is_ok() && rest.limit() > 0 {
                    continue;
                }
            }
            warnings.push(format!("reports after {name} were not read"));
            return;
        }
    }
}

/// Parses one report, counting its bytes against `budget`; `false` when it was not read to
/// its end (an error or the budget), with a warning naming `name`.
fn read_one(
    name: &str,
    input: impl Read,
    budget: &mut u64,
    cases: &mut Vec<TestCase>,
    warnings: &mut Vec<String>,
) -> bool {
    let mut limited = input.take(*budget);
    let parsed = junit::parse(
        BufReader::new(&mut limited),
        junit::Limits::default(),
        cases,
    );
    let left = limited.limit();
    *budget = left;
    match parsed {
        _ if left == 0 => {
            warnings.push(format!(
                "{name}: the JUnit reports are larger than glci reads ({MAX_XML_BYTES} bytes); the rest was not read"
            ));
            false
        }
        Ok(()) => true,
        Err(e) => {
            warnings.push(format!("{name}: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip_members(files: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, content) in files {
            let mut gz = flate2::GzBuilder::new()
                .filename(name.as_bytes())
                .write(&mut out, flate2::Compression::default());
            gz.write_all(content.as_bytes()).expect("write");
            gz.finish().expect("finish");
        }
        out
    }

    fn stored(dir: &Path, artifact_type: &str, format: &str, bytes: &[u8]) -> StoredArtifact {
        let path = dir.join(format!("{artifact_type}.{format}"));
        std::fs::write(&path, bytes).expect("write");
        StoredArtifact {
            artifact_type: artifact_type.to_string(),
            format: format.to_string(),
            filename: format!("{artifact_type}.gz"),
            path,
            size: bytes.len() as u64,
            expire_in: None,
        }
    }

    #[test]
    fn several_files_are_read_and_a_bad_one_is_a_warning_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let junit = gzip_members(&[
            (
                "reports/a.xml",
                r#"<testsuite name="a"><testcase name="ok"/><testcase name="bad" file="a.py" line="3"><failure message="boom">trace line 1
trace line 2</failure></testcase></testsuite>"#,
            ),
            (
                "reports/broken.xml",
                "<testsuite name=\"b\"><testcase name=\"x\"/><oops",
            ),
            (
                "reports/c.xml",
                r#"<testsuites><testsuite name="c"><testcase name="skip"><skipped/></testcase></testsuite></testsuites>"#,
            ),
        ]);
        let artifacts = vec![
            stored(dir.path(), "archive", "zip", b"PK\x03\x04"),
            stored(dir.path(), "junit", "gzip", &junit),
            stored(dir.path(), "codequality", "raw", b"[]"),
        ];
        let r = TestResults::collect(&artifacts, None, None);
        assert_eq!(
            r.counts(),
            Some(Counts {
                passed: 2,
                failed: 1,
                skipped: 1
            })
        );
        assert_eq!(r.report_types, ["junit", "codequality"]);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(
            r.warnings[0].starts_with("reports/broken.xml: "),
            "{:?}",
            r.warnings
        );
        let text = r.failed_cases_text();
        assert!(
            text.starts_with("1 of 4 test cases failed:\n- a::bad (a.py:3)\n    boom\n    | trace line 1\n    | trace line 2\n"),
            "{text}"
        );
        assert!(text.contains("warning: reports/broken.xml: "), "{text}");
        assert_eq!(
            r.summary_line().as_deref(),
            Some("tests: 2 passed, 1 failed, 1 skipped; reports: junit, codequality")
        );
    }

    #[test]
    fn no_reports_no_line_and_a_gzip_bomb_stops_at_the_budget() {
        assert_eq!(TestResults::collect(&[], None, None).summary_line(), None);
        let dir = tempfile::tempdir().expect("temp dir");
        // 3 MB of one repeated byte compress to a few KB; the budget here is 1 MB.
        let mut out = Vec::new();
        {
            let mut gz = flate2::GzBuilder::new()
                .filename(&b"big.xml"[..])
                .write(&mut out, flate2::Compression::fast());
            gz.write_all(b"<testsuite name=\"s\"><testcase name=\"a\"/>")
                .expect("w");
            let chunk = vec![b' '; 1024 * 1024];
            for _ in 0..3 {
                gz.write_all(&chunk).expect("w");
            }
            gz.finish().expect("finish");
        }
        let artifact = stored(dir.path(), "junit", "gzip", &out);
        let (mut cases, mut warnings) = (Vec::new(), Vec::new());
        read_junit(&artifact, 1024 * 1024, &mut cases, &mut warnings);
        assert_eq!(cases.len(), 1);
        let r = TestResults {
            warnings,
            ..TestResults::default()
        };
        assert!(
            r.warnings
                .iter()
                .any(|w| w.starts_with("big.xml: the JUnit reports are larger")),
            "{:?}",
            r.warnings
        );
    }
}
