//! Validation of a resolved configuration: the model's entry validation
//! ([`super::model::read`]), then the logical checks over the whole pipeline
//! (`YamlProcessor#validate_job!` and `YamlProcessor::Dag`): stage exists → dependencies →
//! needs → cycles. First logical error wins.

use foldhash::{HashMap, HashSet, HashSetExt};

use crate::plan::StrMap;

use super::lint::LintError;
use super::model::{self, JobConfig, Need, PipelineConfig};
use super::parallel::{self, Instance};
use crate::config::Node;

/// Reads and validates a resolved configuration tree. Entry errors are all collected (as
/// GitLab reports several at once); logical errors (stages, needs, dependencies, cycles) stop
/// at the first one, after entry errors.
pub fn validate(tree: &Node) -> Result<PipelineConfig, Vec<LintError>> {
    let config = model::read(tree)?;
    logical(&config).map_err(|e| vec![e])?;
    Ok(config)
}

/// Every concrete job after `parallel` expansion, in file order.
pub struct Expanded<'a> {
    pub jobs: Vec<(Instance, &'a JobConfig)>,
    /// Configured parallel job name → its instance names.
    pub parallel_names: StrMap<Vec<String>>,
    /// Concrete name → index in `jobs`.
    pub by_name: HashMap<String, usize>,
}

pub fn expand(config: &PipelineConfig) -> Expanded<'_> {
    let mut jobs = Vec::with_capacity(config.jobs.len());
    let mut parallel_names = StrMap::default();
    for job in config.jobs.values() {
        let instances = parallel::instances(job);
        if job.parallel.is_some() {
            parallel_names.insert(
                job.name.clone(),
                instances.iter().map(|i| i.name.clone()).collect(),
            );
        }
        jobs.extend(instances.into_iter().map(|i| (i, job)));
    }
    let by_name = jobs
        .iter()
        .enumerate()
        .map(|(i, (inst, _))| (inst.name.clone(), i))
        .collect();
    Expanded {
        jobs,
        parallel_names,
        by_name,
    }
}

/// A need with `$[[ matrix.X ]]` replaced for one instance.
pub fn resolve_need(need: &Need, inst: &Instance, job: &str) -> Result<Need, LintError> {
    if need.matrix.is_none() && !need.job.contains("$[[") {
        return Ok(need.clone());
    }
    let fail =
        |e: parallel::MatrixError| LintError::new(Some(&need.span), format!("{job} job: {e}"));
    let mut out = need.clone();
    out.job = parallel::interpolate_matrix(&need.job, &inst.matrix).map_err(fail)?;
    if let Some(entries) = &mut out.matrix {
        for entry in entries.iter_mut() {
            for values in entry.values_mut() {
                for v in values.iter_mut() {
                    *v = parallel::interpolate_matrix(v, &inst.matrix).map_err(fail)?;
                }
            }
        }
    }
    Ok(out)
}

pub fn logical(config: &PipelineConfig) -> Result<(), LintError> {
    let expanded = expand(config);
    let stage_of = |name: &str| -> Option<usize> {
        expanded
            .by_name
            .get(name)
            .and_then(|&i| config.stage_index(&expanded.jobs[i].1.stage))
    };
    // Each job is checked on its own (read-only), so big pipelines check them on two
    // threads; the first error in file order is the one reported, as in one loop.
    let check_job = |(inst, job): &(Instance, &JobConfig)| -> Result<(), LintError> {
        let name = &inst.name;
        let Some(stage_idx) = config.stage_index(&job.stage) else {
            return Err(LintError::new(
                Some(&job.span),
                format!(
                    "{name} job: chosen stage {} does not exist; available stages are {}",
                    job.stage,
                    config.stages.join(", ")
                ),
            ));
        };
        if let Some(deps) = &job.dependencies {
            for dep in deps {
                let names = match expanded.parallel_names.get(dep) {
                    Some(n) => n.clone(),
                    None => vec![dep.clone()],
                };
                for d in &names {
                    match stage_of(d) {
                        None => {
                            return Err(LintError::new(
                                Some(&job.span),
                                format!("{name} job: undefined dependency: {d}"),
                            ))
                        }
                        Some(s) if s > stage_idx => {
                            return Err(LintError::new(
                                Some(&job.span),
                                format!(
                                    "{name} job: dependency {d} is not defined in current or prior stages"
                                ),
                            ))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        if let Some(needs) = &job.needs {
            let mut seen = HashSet::new();
            let mut duplicated = Vec::new();
            let mut needed = HashSet::new();
            for need in needs.iter().filter(|n| !n.external) {
                let need = resolve_need(need, inst, name)?;
                for n in parallel::need_names(&need, &expanded.parallel_names) {
                    match stage_of(&n) {
                        None if need.optional => {}
                        None => {
                            return Err(LintError::new(
                                Some(&need.span),
                                format!("{name} job: undefined need: {n}"),
                            ))
                        }
                        Some(s) if s > stage_idx => {
                            return Err(LintError::new(
                                Some(&need.span),
                                format!(
                                    "{name} job: need {n} is not defined in current or prior stages"
                                ),
                            ))
                        }
                        Some(_) => {}
                    }
                    if !seen.insert(n.clone()) {
                        duplicated.push(n.clone());
                    }
                    needed.insert(n);
                }
            }
            if !duplicated.is_empty() {
                return Err(LintError::new(
                    Some(&job.span),
                    format!(
                        "{name} has the following needs duplicated: {}.",
                        duplicated.join(", ")
                    ),
                ));
            }
            if let Some(deps) = &job.dependencies {
                for dep in deps {
                    let names = match expanded.parallel_names.get(dep) {
                        Some(n) => n.clone(),
                        None => vec![dep.clone()],
                    };
                    if names.iter().any(|d| !needed.contains(d)) {
                        return Err(LintError::new(
                            Some(&job.span),
                            format!("{name} job: dependencies the {dep} should be part of needs"),
                        ));
                    }
                }
            }
        }
        check_on_stop(config, name, job)
    };
    for checked in crate::threads::map_in_order(&expanded.jobs, check_job) {
        checked?;
    }
    check_cycles(&expanded)
}

/// `YamlProcessor#validate_on_stop_job!`: the stop job exists and stops the same environment.
fn check_on_stop(config: &PipelineConfig, name: &str, job: &JobConfig) -> Result<(), LintError> {
    let Some(env) = &job.environment else {
        return Ok(());
    };
    let Some(on_stop) = &env.on_stop else {
        return Ok(());
    };
    let fail = |what: &str| {
        Err(LintError::new(
            Some(&job.span),
            format!("{name} job: on_stop job {on_stop} {what}"),
        ))
    };
    let Some(stop_job) = config.jobs.get(on_stop) else {
        return fail("is not defined");
    };
    let Some(stop_env) = &stop_job.environment else {
        return fail("does not have environment defined");
    };
    if stop_env.name != env.name {
        return fail("have different environment name");
    }
    if stop_env.action.as_deref() != Some("stop") {
        return fail("needs to have action stop defined");
    }
    Ok(())
}

/// `Dag.check_circular_dependencies!`: a topological sort over needs (Tarjan's SCCs, as
/// Ruby's TSort); a component of more than one job, or a job needing itself, is a cycle.
fn check_cycles(expanded: &Expanded<'_>) -> Result<(), LintError> {
    let n = expanded.jobs.len();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, (inst, job)) in expanded.jobs.iter().enumerate() {
        for need in job.needs.iter().flatten().filter(|n| !n.external) {
            let Ok(need) = resolve_need(need, inst, &inst.name) else {
                continue;
            };
            for name in parallel::need_names(&need, &expanded.parallel_names) {
                if let Some(&j) = expanded.by_name.get(&name) {
                    if i == j {
                        return Err(LintError::new(
                            Some(&job.span),
                            format!(
                                "The pipeline has circular dependencies: self-dependency: {name}"
                            ),
                        ));
                    }
                    edges[i].push(j);
                }
            }
        }
    }
    for component in tarjan(&edges) {
        if component.len() > 1 {
            let names: Vec<String> = component
                .iter()
                .map(|&i| format!("{:?}", expanded.jobs[i].0.name))
                .collect();
            let span = &expanded.jobs[component[0]].1.span;
            return Err(LintError::new(
                Some(span),
                format!(
                    "The pipeline has circular dependencies: topological sort failed: [{}]",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Strongly connected components, iterative (no recursion depth limit on big pipelines).
pub(super) fn tarjan(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut counter = 0usize;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut next)) = call.last_mut() {
            if let Some(&w) = edges[v].get(*next) {
                *next += 1;
                if index[w] == usize::MAX {
                    index[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(parent, _)) = call.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                component.sort_unstable();
                out.push(component);
            }
        }
    }
    out
}
