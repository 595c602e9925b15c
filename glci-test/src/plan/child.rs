//! Child pipelines (`trigger:include`): the context a child pipeline is planned with. The
//! caller loads the child configuration (the `include` locations of [`Trigger::Child`]) and
//! plans it with [`plan`](super::plan) and this context.

use super::model::Trigger;
use super::{PipelineSource, PlanContext, PlannedJob};

/// The context of the child pipeline `bridge` creates: source `parent_pipeline`, the
/// bridge's YAML variables forwarded as pipeline variables (`forward:yaml_variables`,
/// default on) and the parent's pipeline variables only with `forward:pipeline_variables`.
/// `None` when `bridge` is not a child-pipeline trigger.
pub fn child_context(parent: &PlanContext, bridge: &PlannedJob) -> Option<PlanContext> {
    let Some(Trigger::Child {
        forward_yaml_variables,
        forward_pipeline_variables,
        ..
    }) = &bridge.trigger
    else {
        return None;
    };
    let mut ctx = parent.clone();
    ctx.event.source = PipelineSource::ParentPipeline;
    for (k, v) in ctx.predefined.iter_mut() {
        if k == "CI_PIPELINE_SOURCE" {
            *v = PipelineSource::ParentPipeline.as_str().to_string();
        }
    }
    let mut variables = Vec::new();
    if *forward_yaml_variables {
        variables.extend(
            bridge
                .variables
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone())),
        );
    }
    if *forward_pipeline_variables {
        variables.extend(parent.event.variables.iter().cloned());
    }
    ctx.event.variables = variables;
    Some(ctx)
}
