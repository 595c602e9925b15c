//! What happened that makes a pipeline: the input of planning.

use std::fmt;
use std::str::FromStr;

/// `CI_PIPELINE_SOURCE`: why the pipeline was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum PipelineSource {
    #[default]
    Push,
    Web,
    Schedule,
    Api,
    Trigger,
    MergeRequestEvent,
    Pipeline,
    ParentPipeline,
}

impl PipelineSource {
    pub const ALL: [PipelineSource; 8] = [
        PipelineSource::Push,
        PipelineSource::Web,
        PipelineSource::Schedule,
        PipelineSource::Api,
        PipelineSource::Trigger,
        PipelineSource::MergeRequestEvent,
        PipelineSource::Pipeline,
        PipelineSource::ParentPipeline,
    ];

    /// The value GitLab puts in `CI_PIPELINE_SOURCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineSource::Push => "push",
            PipelineSource::Web => "web",
            PipelineSource::Schedule => "schedule",
            PipelineSource::Api => "api",
            PipelineSource::Trigger => "trigger",
            PipelineSource::MergeRequestEvent => "merge_request_event",
            PipelineSource::Pipeline => "pipeline",
            PipelineSource::ParentPipeline => "parent_pipeline",
        }
    }
}

impl fmt::Display for PipelineSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PipelineSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PipelineSource::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = PipelineSource::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "unknown pipeline source `{s}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// The event a pipeline is planned for. `None` fields are filled from the git repository.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub source: PipelineSource,
    /// Branch pushed to (or the MR's source branch). Exclusive with `tag`.
    pub branch: Option<String>,
    /// Tag pushed.
    pub tag: Option<String>,
    /// Target branch of a merge request (`merge_request_event` only).
    pub target_branch: Option<String>,
    /// Overrides the default branch read from `origin/HEAD`.
    pub default_branch: Option<String>,
    /// Changed paths for `rules:changes`; `None` = compute from git.
    pub changed_files: Option<Vec<String>>,
    /// `--var KEY=VALUE`: highest precedence, as pipeline variables are on GitLab.
    pub variables: Vec<(String, String)>,
}
