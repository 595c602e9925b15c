//! A job's normalized log held against an insta snapshot stored in the user's project.
//!
//! Snapshots are ordinary insta files (`<dir>/glci-<job>.snap`), so `cargo insta review`,
//! `cargo insta accept` and `cargo insta test` work on them, and insta's rules decide what a
//! mismatch does: locally a `.snap.new` is written and the trial fails; with `CI` set nothing
//! is written and the trial fails; `INSTA_UPDATE=always` accepts; `INSTA_FORCE_PASS=1`
//! records without failing.

use std::path::{Path, PathBuf};

use super::normalize::Normalizer;

/// Which jobs have their log snapshotted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Selection {
    #[default]
    None,
    All,
    Jobs(Vec<String>),
}

impl Selection {
    /// `*` selects every job; other names are job names, as in `.gitlab-ci.yml`.
    pub fn from_names<I, S>(names: I) -> Selection
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names: Vec<String> = names
            .into_iter()
            .map(|n| n.as_ref().trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if names.iter().any(|n| n == "*") {
            Selection::All
        } else if names.is_empty() {
            Selection::None
        } else {
            Selection::Jobs(names)
        }
    }

    /// `GLCI_SNAPSHOTS`: comma-separated job names, or `*`.
    pub fn parse_list(list: &str) -> Selection {
        Selection::from_names(list.split(','))
    }

    pub fn union(self, other: Selection) -> Selection {
        match (self, other) {
            (Selection::All, _) | (_, Selection::All) => Selection::All,
            (Selection::None, s) | (s, Selection::None) => s,
            (Selection::Jobs(mut a), Selection::Jobs(b)) => {
                for n in b {
                    if !a.contains(&n) {
                        a.push(n);
                    }
                }
                Selection::Jobs(a)
            }
        }
    }

    pub fn includes(&self, job: &str) -> bool {
        match self {
            Selection::None => false,
            Selection::All => true,
            Selection::Jobs(names) => names.iter().any(|n| n == job),
        }
    }
}

/// Where and how job logs are snapshotted.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// Absolute directory of the `.snap` files.
    pub dir: PathBuf,
    /// The CI file the jobs come from (shown in the snapshot header).
    pub ci_file: PathBuf,
    pub normalizer: Normalizer,
}

/// The snapshot's name for a job: GitLab job names may hold spaces, slashes, colons and
/// brackets, none of which belong in a file name.
pub fn snapshot_name(job: &str) -> String {
    let safe: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("glci-{safe}")
}

/// Compares the normalized `log` of `job` with its snapshot. `Err` names the job and says how
/// to review; insta has printed the diff to stderr already.
pub fn assert_job_log(settings: &SnapshotSettings, job: &str, log: &str) -> Result<(), String> {
    let value = settings.normalizer.normalize(log);
    let name = snapshot_name(job);
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(&settings.dir);
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s.set_input_file(&settings.ci_file);
    s.set_description(format!("log of CI job `{job}`, normalized by glci"));
    quiet_panics_on_this_thread(true);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.bind(|| insta::assert_snapshot!(name.as_str(), value.as_str()));
    }));
    quiet_panics_on_this_thread(false);
    match outcome {
        Ok(()) => Ok(()),
        Err(_) => Err(format!(
            "the log of job `{job}` does not match its snapshot {}\n\
             review with `cargo insta review` (or accept with `cargo insta accept`)",
            snapshot_file(&settings.dir, job).display()
        )),
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// insta reports a mismatch by panicking after it printed the diff; the panic message (and a
/// backtrace under `RUST_BACKTRACE`) would only bury the diff. The hook is process-wide, so
/// it stays quiet only on a thread that is inside a snapshot assertion.
fn quiet_panics_on_this_thread(quiet: bool) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(quiet));
}

pub fn snapshot_file(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("{}.snap", snapshot_name(job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_from_names_and_lists() {
        assert_eq!(Selection::parse_list(""), Selection::None);
        assert_eq!(
            Selection::parse_list("build, test"),
            Selection::Jobs(vec!["build".into(), "test".into()])
        );
        assert_eq!(Selection::parse_list("build,*"), Selection::All);
        let s = Selection::parse_list("a").union(Selection::parse_list("b,a"));
        assert_eq!(s, Selection::Jobs(vec!["a".into(), "b".into()]));
        assert!(s.includes("b") && !s.includes("c"));
        assert!(Selection::All.includes("anything"));
        assert!(!Selection::None.includes("a"));
    }

    #[test]
    fn job_names_become_file_names() {
        assert_eq!(snapshot_name("test: [ruby, 3]"), "glci-test___ruby__3_");
        assert_eq!(snapshot_name("deploy/prod"), "glci-deploy_prod");
    }

    fn settings(dir: &Path) -> SnapshotSettings {
        SnapshotSettings {
            dir: dir.to_path_buf(),
            ci_file: dir.join(".gitlab-ci.yml"),
            normalizer: Normalizer::new().mask(["hunter2".to_string()]),
        }
    }

    /// insta reads its settings (`INSTA_UPDATE`, `CI`) once per process, so this test leaves
    /// them alone: a new snapshot fails (and is written as `.snap.new` outside CI), an
    /// accepted one matches across runs and catches a change.
    #[test]
    fn new_snapshot_fails_accepted_snapshot_matches_and_catches_changes() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("temp dir: {e}"),
        };
        let s = settings(dir.path());
        let first = assert_job_log(&s, "new job", "at 12:00:01 hello hunter2\n");
        assert!(first.is_err());
        let pending = dir.path().join("glci-new_job.snap.new");
        if let Ok(text) = std::fs::read_to_string(&pending) {
            assert!(text.contains("at [TIME] hello [MASKED]"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        // As `cargo insta accept` leaves it.
        let accepted = "---\nsource: glci\n---\nat [TIME] hello [MASKED]\n";
        let written = std::fs::write(snapshot_file(dir.path(), "build job"), accepted);
        assert!(written.is_ok());
        let again = assert_job_log(&s, "build job", "at 13:14:15 hello hunter2\n");
        assert!(again.is_ok(), "{again:?}");
        let err = assert_job_log(&s, "build job", "at 13:14:15 bye\n")
            .err()
            .unwrap_or_default();
        assert!(err.contains("job `build job`"), "{err}");
        assert!(err.contains("glci-build_job.snap"), "{err}");
    }
}
