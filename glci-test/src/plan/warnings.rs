//! Lint warnings (not errors) GitLab shows for a valid configuration.

use super::lint::LintError;
use super::model::{PipelineConfig, Rule, When};

const DUPLICATE_PIPELINES: &str = "may allow multiple pipelines to run for a single action due to `rules:when` clause with no `workflow:rules` - read more: https://docs.gitlab.com/ee/ci/jobs/job_troubleshooting.html#job-may-allow-multiple-pipelines-to-run-for-a-single-action-warning";

/// A rule written as nothing but `when:` (other than `never`): it matches every pipeline.
fn is_catch_all(rule: &Rule) -> bool {
    rule.if_.is_none()
        && rule.changes.is_none()
        && rule.exists.is_none()
        && rule.start_in.is_none()
        && rule.allow_failure.is_none()
        && rule.variables.is_empty()
        && rule.needs.is_none()
        && rule.interruptible.is_none()
        && rule.when.is_some_and(|w| w != When::Never)
}

/// `Entry::Job#validate_against_warnings`: without `workflow:rules`, a job whose last rule
/// is a bare `when:` runs in both the branch and the merge request pipeline.
pub fn warnings(config: &PipelineConfig) -> Vec<LintError> {
    if config.has_workflow_rules() {
        return Vec::new();
    }
    config
        .jobs
        .values()
        .filter(|job| {
            job.rules
                .as_ref()
                .and_then(|r| r.last())
                .is_some_and(is_catch_all)
        })
        .map(|job| {
            LintError::new(
                Some(&job.span),
                format!("jobs:{} {DUPLICATE_PIPELINES}", job.name),
            )
        })
        .collect()
}
