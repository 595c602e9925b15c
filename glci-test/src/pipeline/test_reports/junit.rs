//! JUnit XML as GitLab reads it (`Gitlab::Ci::Parsers::Test::Junit`): every `<testcase>`
//! inside a `<testsuites>` or (nested) `<testsuite>` is a case, named by its `name` and
//! `classname`, in the suite named by the innermost enclosing suite's `name`. Its status comes
//! from the child element it has — `<failure>` (failed), else `<error>` (error), else
//! `<skipped>` (skipped), else success — never from a `status` attribute. `file` is kept as
//! written (GitLab links it; a `#L55` anchor may be part of it); `line` is kept as written
//! too (GitLab ignores it; pytest's `xunit1` family writes it 0-based, PHPUnit 1-based).
//!
//! The reader streams events and never expands entities beyond XML's five predefined ones and
//! character references: a document declaring its own entities (an "XML bomb") is read as
//! far as its first use of one, then reported as an error. Sizes are bounded by the caller
//! (the bytes read) and here (cases, text per case).

use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// How a case ended, GitLab's four statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CaseStatus {
    Success,
    Failed,
    Error,
    Skipped,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Success => "success",
            CaseStatus::Failed => "failed",
            CaseStatus::Error => "error",
            CaseStatus::Skipped => "skipped",
        }
    }

    /// Failed or error: what makes a test suite red.
    pub fn is_failure(self) -> bool {
        matches!(self, CaseStatus::Failed | CaseStatus::Error)
    }

    /// GitLab's precedence when a case holds several status elements.
    fn rank(self) -> u8 {
        match self {
            CaseStatus::Success => 0,
            CaseStatus::Skipped => 1,
            CaseStatus::Error => 2,
            CaseStatus::Failed => 3,
        }
    }
}

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestCase {
    /// The enclosing suite's `name` (empty when it has none).
    pub suite: String,
    pub classname: Option<String>,
    pub name: String,
    pub file: Option<String>,
    pub line: Option<String>,
    pub status: CaseStatus,
    /// The status element's `message` attribute.
    pub message: Option<String>,
    /// The status element's text (a stack trace, an assertion diff), at most
    /// [`Limits::text_per_case`] bytes.
    pub details: String,
}

impl TestCase {
    /// `file:line`, `file`, or nothing.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_deref().filter(|f| !f.is_empty())?;
        Some(match self.line.as_deref().filter(|l| !l.is_empty()) {
            Some(line) => format!("{file}:{line}"),
            None => file.to_string(),
        })
    }
}

/// Bounds on what one report may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Cases kept from one job's reports (glci's own bound: far beyond a real suite, small
    /// enough to keep in memory).
    pub cases: usize,
    /// Bytes of failure/skip text kept per case.
    pub text_per_case: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cases: 200_000,
            text_per_case: 4 * 1024,
        }
    }
}

/// Why a report could not be read to its end (what was read before stays).
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    #[error("not well-formed XML at byte {position}: {source}")]
    Xml {
        position: u64,
        source: quick_xml::Error,
    },
    #[error("more than {0} test cases; the rest were not read")]
    TooManyCases(usize),
    #[error("the document ends inside <{0}>")]
    Truncated(&'static str),
}

/// The case being read, and which status element's text is being collected.
struct Open {
    case: TestCase,
    in_status: bool,
}

/// Reads the cases of one report from `input` into `cases` (appending, so a job's several
/// reports share the [`Limits::cases`] bound). On an error the cases read before it are kept.
pub fn parse(
    input: impl BufRead,
    limits: Limits,
    cases: &mut Vec<TestCase>,
) -> Result<(), JunitError> {
    let mut reader = Reader::from_reader(input);
    let config = reader.config_mut();
    config.trim_text(false);
    config.expand_empty_elements = false;
    let mut buf = Vec::new();
    // Names of the enclosing `testsuite`/`testsuites` elements, innermost last.
    let mut suites: Vec<String> = Vec::new();
    let mut open: Option<Open> = None;
    loop {
        let position = reader.buffer_position();
        let xml_err = |source| JunitError::Xml { position, source };
        let event = reader.read_event_into(&mut buf).map_err(xml_err)?;
        match event {
            Event::Start(e) if is_suite(&e) => {
                suites.push(attr(&e, "name").map_err(xml_err)?.unwrap_or_default());
            }
            // An empty suite holds no cases.
            Event::Empty(e) if is_suite(&e) => {}
            Event::End(e) if matches!(e.local_name().as_ref(), "testsuite" | "testsuites") => {
                suites.pop();
            }
            // A case outside any suite is not a case; one inside a case is not either.
            Event::Start(e) if is_case(&e) && !suites.is_empty() && open.is_none() => {
                open = Some(Open {
                    case: new_case(&e, &suites).map_err(xml_err)?,
                    in_status: false,
                });
            }
            Event::Empty(e) if is_case(&e) && !suites.is_empty() && open.is_none() => {
                push(cases, new_case(&e, &suites).map_err(xml_err)?, limits)?;
            }
            Event::End(e) if e.local_name().as_ref() == "testcase" => {
                if let Some(o) = open.take() {
                    push(cases, o.case, limits)?;
                }
            }
            Event::Start(e) => {
                if let Some(o) = open.as_mut() {
                    status_element(o, &e, true).map_err(xml_err)?;
                }
            }
            Event::Empty(e) => {
                if let Some(o) = open.as_mut() {
                    status_element(o, &e, false).map_err(xml_err)?;
                }
            }
            Event::End(e) => {
                if let Some(o) = open.as_mut() {
                    if status_of_name(e.local_name().as_ref()).is_some() {
                        o.in_status = false;
                    }
                }
            }
            Event::Text(t) => {
                if let Some(o) = open.as_mut().filter(|o| o.in_status) {
                    append_capped(&mut o.case.details, &t.xml10_content(), limits);
                }
            }
            Event::CData(t) => {
                if let Some(o) = open.as_mut().filter(|o| o.in_status) {
                    append_capped(&mut o.case.details, &t.xml10_content(), limits);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(o) = open.as_mut().filter(|o| o.in_status) {
                    let text = match r.resolve_char_ref().map_err(xml_err)? {
                        Some(c) => c.to_string(),
                        None => {
                            match quick_xml::escape::resolve_predefined_entity(&r.xml10_content()) {
                                Some(s) => s.to_string(),
                                None => {
                                    return Err(xml_err(quick_xml::Error::Escape(
                                        quick_xml::escape::EscapeError::UnrecognizedEntity(
                                            0..0,
                                            r.xml10_content().into_owned(),
                                        ),
                                    )))
                                }
                            }
                        }
                    };
                    append_capped(&mut o.case.details, &text, limits);
                }
            }
            Event::Eof if open.is_some() => return Err(JunitError::Truncated("testcase")),
            Event::Eof if !suites.is_empty() => return Err(JunitError::Truncated("testsuite")),
            Event::Eof => return Ok(()),
            _ => {}
        }
        buf.clear();
    }
}

/// A child element of the open case: a status element of a higher rank than the case's
/// status so far sets it (the first of that rank wins), and its text is collected while it
/// is open (`has_content`).
fn status_element(
    open: &mut Open,
    e: &BytesStart<'_>,
    has_content: bool,
) -> Result<(), quick_xml::Error> {
    if let Some(status) = status_of(e) {
        if status.rank() > open.case.status.rank() {
            open.case.status = status;
            open.case.message = attr(e, "message")?;
            open.case.details.clear();
            open.in_status = has_content;
        }
    }
    Ok(())
}

fn is_case(e: &BytesStart<'_>) -> bool {
    e.local_name().as_ref() == "testcase"
}

fn is_suite(e: &BytesStart<'_>) -> bool {
    matches!(e.local_name().as_ref(), "testsuite" | "testsuites")
}

fn status_of_name(name: &str) -> Option<CaseStatus> {
    match name {
        "failure" => Some(CaseStatus::Failed),
        "error" => Some(CaseStatus::Error),
        "skipped" => Some(CaseStatus::Skipped),
        _ => None,
    }
}

fn status_of(e: &BytesStart<'_>) -> Option<CaseStatus> {
    status_of_name(e.local_name().as_ref())
}

fn new_case(e: &BytesStart<'_>, suites: &[String]) -> Result<TestCase, quick_xml::Error> {
    Ok(TestCase {
        suite: suites.last().cloned().unwrap_or_default(),
        classname: attr(e, "classname")?,
        name: attr(e, "name")?.unwrap_or_default(),
        file: attr(e, "file")?,
        line: attr(e, "line")?,
        status: CaseStatus::Success,
        message: None,
        details: String::new(),
    })
}

fn push(cases: &mut Vec<TestCase>, case: TestCase, limits: Limits) -> Result<(), JunitError> {
    if cases.len() >= limits.cases {
        return Err(JunitError::TooManyCases(limits.cases));
    }
    cases.push(case);
    Ok(())
}

fn append_capped(details: &mut String, text: &str, limits: Limits) {
    let room = limits.text_per_case.saturating_sub(details.len());
    if room == 0 {
        return;
    }
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    details.push_str(&text[..end]);
}

/// The value of attribute `name`, with predefined entities and character references resolved.
fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, quick_xml::Error> {
    for a in e.attributes() {
        let a = a?;
        if a.key.local_name().as_ref() == name {
            let v = a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn cases_of(xml: &str) -> Result<Vec<TestCase>, JunitError> {
        let mut cases = Vec::new();
        parse(xml.as_bytes(), Limits::default(), &mut cases)?;
        Ok(cases)
    }

    fn fixture(name: &str) -> Vec<TestCase> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/junit")
            .join(name);
        let xml = std::fs::read_to_string(&path).expect("fixture");
        cases_of(&xml).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn summary(cases: &[TestCase]) -> Vec<(String, String, &'static str)> {
        cases
            .iter()
            .map(|c| (c.suite.clone(), c.name.clone(), c.status.as_str()))
            .collect()
    }

    #[test]
    fn pytest_xunit2_and_xunit1_with_file_and_line() {
        let cases = fixture("pytest.xml");
        assert_eq!(
            summary(&cases),
            [
                ("pytest".into(), "test_adds".into(), "success"),
                ("pytest".into(), "test_divides".into(), "failed"),
                ("pytest".into(), "test_network".into(), "skipped"),
                ("pytest".into(), "test_fixture_breaks".into(), "error"),
            ]
        );
        let failed = &cases[1];
        assert_eq!(failed.classname.as_deref(), Some("tests.test_calc"));
        assert_eq!(failed.message.as_deref(), Some("assert 2 == 3"));
        assert!(failed.details.contains("def test_divides():"), "{failed:?}");
        assert!(failed.details.contains("assert 2 == 3"));
        assert_eq!(failed.location().as_deref(), Some("tests/test_calc.py:7"));
        assert_eq!(cases[0].location(), Some("tests/test_calc.py:2".into()));
    }

    #[test]
    fn nextest_surefire_gotestsum_and_jest() {
        let nextest = fixture("nextest.xml");
        assert_eq!(
            summary(&nextest),
            [
                ("calc".into(), "tests::adds".into(), "success"),
                ("calc".into(), "tests::divides_by_zero".into(), "failed"),
                ("calc::integration".into(), "round_trip".into(), "success"),
            ]
        );
        assert_eq!(
            nextest[1].message.as_deref(),
            Some("thread 'tests::divides_by_zero' panicked at src/lib.rs:21:9")
        );

        let surefire = fixture("surefire.xml");
        assert_eq!(
            summary(&surefire),
            [
                ("com.example.CalcTest".into(), "adds".into(), "success"),
                ("com.example.CalcTest".into(), "divides".into(), "failed"),
                ("com.example.CalcTest".into(), "parses".into(), "error"),
                ("com.example.CalcTest".into(), "later".into(), "skipped"),
            ]
        );
        assert_eq!(
            surefire[1].message.as_deref(),
            Some("expected: <2> but was: <3>")
        );
        assert!(surefire[2].details.contains("NumberFormatException"));

        let go = fixture("gotestsum.xml");
        assert_eq!(
            summary(&go),
            [
                ("example.com/calc".into(), "TestAdd".into(), "success"),
                ("example.com/calc".into(), "TestDivide".into(), "failed"),
                ("example.com/calc".into(), "TestSlow".into(), "skipped"),
                (
                    "example.com/calc/parse".into(),
                    "TestParse".into(),
                    "success"
                ),
            ]
        );
        assert_eq!(go[1].message.as_deref(), Some("Failed"));
        assert!(go[1].details.contains("calc_test.go:14: got 3, want 2"));

        let jest = fixture("jest.xml");
        assert_eq!(
            summary(&jest),
            [
                ("calc".into(), "calc adds".into(), "success"),
                ("calc".into(), "calc divides".into(), "failed"),
                ("parse".into(), "parse reads numbers".into(), "skipped"),
            ]
        );
        assert_eq!(jest[1].file.as_deref(), Some("src/calc.test.js"));
        assert!(jest[1].details.contains("Expected: 2"), "{:?}", jest[1]);
    }

    #[test]
    fn status_comes_from_elements_with_gitlabs_precedence_not_attributes() {
        let cases = cases_of(
            r#"<testsuite name="s">
                 <testcase name="a" status="failed"/>
                 <testcase name="b"><skipped/><failure message="m">t</failure></testcase>
                 <testcase name="c"><error message="e"/><skipped message="s"/></testcase>
                 <testcase name="d"><system-out>out &amp; more</system-out></testcase>
               </testsuite>"#,
        )
        .expect("parses");
        assert_eq!(
            summary(&cases),
            [
                ("s".into(), "a".into(), "success"),
                ("s".into(), "b".into(), "failed"),
                ("s".into(), "c".into(), "error"),
                ("s".into(), "d".into(), "success"),
            ]
        );
        assert_eq!(cases[1].details, "t");
        assert_eq!(cases[2].message.as_deref(), Some("e"));
        assert_eq!(cases[3].details, "");
    }

    #[test]
    fn cases_outside_any_suite_are_not_cases_and_nested_suites_name_theirs() {
        let cases = cases_of(
            r#"<testsuites name="all"><testcase name="top"/>
                 <testsuite name="outer"><testsuite name="inner"><testcase name="deep"/></testsuite>
                 <testcase name="after"/></testsuite></testsuites>"#,
        )
        .expect("parses");
        assert_eq!(
            summary(&cases),
            [
                ("all".into(), "top".into(), "success"),
                ("inner".into(), "deep".into(), "success"),
                ("outer".into(), "after".into(), "success"),
            ]
        );
        assert!(cases_of(r#"<testcase name="loose"/>"#)
            .expect("parses")
            .is_empty());
    }

    #[test]
    fn entities_are_resolved_but_declared_ones_are_refused() {
        let cases = cases_of(
            r#"<testsuite name="s"><testcase name="a &lt;b&gt;"><failure message="x &#x3E; 1">1 &lt; 2 &#65;</failure></testcase></testsuite>"#,
        )
        .expect("parses");
        assert_eq!(cases[0].name, "a <b>");
        assert_eq!(cases[0].message.as_deref(), Some("x > 1"));
        assert_eq!(cases[0].details, "1 < 2 A");

        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<testsuite name="s"><testcase name="kept"/><testcase name="b"><failure>&lol2;</failure></testcase></testsuite>"#;
        let mut cases = Vec::new();
        let err = parse(bomb.as_bytes(), Limits::default(), &mut cases).expect_err("refused");
        assert!(err.to_string().contains("lol2"), "{err}");
        assert_eq!(cases.len(), 1, "what came before the bad part stays");
    }

    #[test]
    fn bad_xml_is_an_error_with_a_position_and_bounds_hold() {
        let err = cases_of(r#"<testsuite name="s"><testcase name="a"></testsuite>"#)
            .expect_err("mismatched");
        assert!(
            err.to_string().starts_with("not well-formed XML at byte"),
            "{err}"
        );
        let err = cases_of(r#"<testsuites><testsuite name="s"><testcase name="a"/>"#)
            .expect_err("cut short");
        assert_eq!(err.to_string(), "the document ends inside <testsuite>");

        let many: String = std::iter::once("<testsuite name=\"s\">".to_string())
            .chain((0..10).map(|i| format!("<testcase name=\"{i}\"/>")))
            .chain(std::iter::once("</testsuite>".to_string()))
            .collect();
        let mut cases = Vec::new();
        let limits = Limits {
            cases: 4,
            text_per_case: 3,
        };
        let err = parse(many.as_bytes(), limits, &mut cases).expect_err("too many");
        assert!(matches!(err, JunitError::TooManyCases(4)));
        assert_eq!(cases.len(), 4);

        let mut cases = Vec::new();
        parse(
            "<testsuite><testcase name=\"x\"><failure>ééé</failure></testcase></testsuite>"
                .as_bytes(),
            limits,
            &mut cases,
        )
        .expect("parses");
        assert_eq!(cases[0].details, "é", "cut at a character boundary");
    }
}
