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

/// A job of a child pipeline planned before the run: the trial `<trigger job>/<job>`.
pub struct ChildTrial {
    /// The trigger job of the plan it comes after.
    pub trigger: String,
    pub name: String,
    pub stage: String,
    pub manual: bool,
    /// The child pipeline's plan and the prefix of its jobs' names (`trigger/`), so a job
    /// kept from running by a failed job of its own pipeline fails as one of the parent does.
    pub plan: Arc<Plan>,
    pub prefix: String,
}

/// What every trial shares.
pub struct Context {
    pub plan: Plan,
    /// Child pipelines' jobs, each after its trigger job.
    pub children: Vec<ChildTrial>,
    pub session: Arc<LazySession>,
    pub snapshots: Selection,
    pub snapshot_settings: SnapshotSettings,
}

pub fn trials(ctx: &Arc<Context>, with_kind: bool) -> Vec<Trial> {
    let trial = |name: &str, stage: &str, manual: bool, child: Option<(Arc<Plan>, String)>| {
        let job = name.to_string();
        let ctx = Arc::clone(ctx);
        // Test names are printed to the terminal: escaped, and filters match them so.
        let shown = crate::printable::printable(name).into_owned();
        let trial = Trial::ignorable_test(shown, move || run_trial(&ctx, &job, child.as_ref()))
            .with_ignored_flag(manual);
        if with_kind {
            trial.with_kind(crate::printable::printable(stage).into_owned())
        } else {
            trial
        }
    };
    let mut out = Vec::with_capacity(ctx.plan.jobs.len() + ctx.children.len());
    for job in &ctx.plan.jobs {
        out.push(trial(&job.name, &job.stage, job.when == When::Manual, None));
        for child in ctx.children.iter().filter(|c| c.trigger == job.name) {
            let own = Some((Arc::clone(&child.plan), child.prefix.clone()));
            out.push(trial(&child.name, &child.stage, child.manual, own));
        }
    }
    out
}

/// Runs `job` (of a child pipeline when `child` gives its plan and name prefix) and judges it.
fn run_trial(
    ctx: &Context,
    job: &str,
    child: Option<&(Arc<Plan>, String)>,
) -> Result<Completion, Failed> {
    let (report, reports) = ctx.session.job(job)?;
    let judged = match child {
        None => verdict(&ctx.plan, &report, &reports),
        Some((plan, prefix)) => {
            // The child's jobs under their own names, as its plan knows them.
            let own: std::collections::HashMap<String, crate::pipeline::JobReport> = reports
                .iter()
                .filter_map(|(name, r)| {
                    Some((name.strip_prefix(prefix.as_str())?.to_string(), r.clone()))
                })
                .collect();
            let mut mine = report.clone();
            mine.name = job.strip_prefix(prefix.as_str()).unwrap_or(job).to_string();
            verdict(plan, &mine, &own)
        }
    };
    match judged {
        Verdict::Fail(message) => Err(message.into()),
        Verdict::Ignored(reason) => Ok(Completion::ignored_with(reason)),
        Verdict::Pass(note) => {
            if let Some(note) = note {
                // libtest-mimic has no output for passing trials: say it on stderr.
                eprintln!("{note}");
            }
            if let Some(tests) = report.tests.summary_line() {
                eprintln!("{job}: {tests}");
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
            children: Vec::new(),
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
