//! One libtest-mimic trial per planned job.
//!
//! - name = the job's name (what filters, `--exact` and `--skip` match); kind = its stage,
//!   shown as `[stage] job` — except when listing or under nextest, where a line must be
//!   exactly `<name>: test` for nextest to find the test again by `--exact <name>`;
//! - `when: manual` jobs are ignored trials (`--ignored` / `--include-ignored` play them);
//! - a job that rightly did not run (e.g. `when: on_failure`, nothing failed) reports
//!   "ignored" at run time.

use std::sync::Arc;

use libtest_mimic::{Completion, Failed, Trial};

use crate::plan::model::When;
use crate::plan::Plan;

use super::outcome::{verdict, Verdict};
use super::session::LazySession;
use super::snapshot::{self, Selection, SnapshotSettings};

/// What every trial shares.
pub struct Context {
    pub plan: Plan,
    pub session: Arc<LazySession>,
    pub snapshots: Selection,
    pub snapshot_settings: SnapshotSettings,
}

pub fn trials(ctx: &Arc<Context>, with_kind: bool) -> Vec<Trial> {
    ctx.plan
        .jobs
        .iter()
        .map(|job| {
            let name = job.name.clone();
            let ctx = Arc::clone(ctx);
            // Test names are printed to the terminal: escaped, and filters match them so.
            let shown = crate::printable::printable(&job.name).into_owned();
            let trial = Trial::ignorable_test(shown, move || run_trial(&ctx, &name))
                .with_ignored_flag(job.when == When::Manual);
            if with_kind {
                trial.with_kind(crate::printable::printable(&job.stage).into_owned())
            } else {
                trial
            }
        })
        .collect()
}

fn run_trial(ctx: &Context, job: &str) -> Result<Completion, Failed> {
    let (report, reports) = ctx.session.job(job)?;
    match verdict(&ctx.plan, &report, &reports) {
        Verdict::Fail(message) => Err(message.into()),
        Verdict::Ignored(reason) => Ok(Completion::ignored_with(reason)),
        Verdict::Pass(note) => {
            if let Some(note) = note {
                // libtest-mimic has no output for passing trials: say it on stderr.
                eprintln!("{note}");
            }
            if ctx.snapshots.includes(job) {
                snapshot::assert_job_log(&ctx.snapshot_settings, job, &report.log)?;
            }
            Ok(Completion::Completed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::normalize::Normalizer;
    use crate::harness::test_support::plan_yaml;
    use crate::pipeline::{PipelineOptions, RunOptions};

    #[test]
    fn one_trial_per_job_kind_is_the_stage_manual_jobs_are_ignored() {
        let plan = plan_yaml(
            "stages: [build, deploy]\n\
             build: {stage: build, script: [x]}\n\
             'test: [a, 1]': {stage: build, script: [x]}\n\
             deploy: {stage: deploy, script: [x], when: manual}\n\
             never: {stage: deploy, script: [x], rules: [{when: never}]}\n",
        );
        let plan = match plan {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let session = LazySession::new(
            PipelineOptions::new("."),
            RunOptions::default(),
            false,
            None,
        );
        let session = match session {
            Ok(s) => Arc::new(s),
            Err(e) => panic!("{e}"),
        };
        let ctx = Arc::new(Context {
            plan,
            session,
            snapshots: Selection::None,
            snapshot_settings: SnapshotSettings {
                dir: ".".into(),
                ci_file: ".gitlab-ci.yml".into(),
                normalizer: Normalizer::new(),
            },
        });
        let with_kind = trials(&ctx, true);
        let seen: Vec<(&str, &str, bool)> = with_kind
            .iter()
            .map(|t| (t.name(), t.kind(), t.has_ignored_flag()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("build", "build", false),
                ("test: [a, 1]", "build", false),
                ("deploy", "deploy", true),
            ]
        );
        // Listing (and nextest) gets bare names: `<name>: test` lines.
        assert!(trials(&ctx, false).iter().all(|t| t.kind().is_empty()));
    }
}
