//! Readers for the structured job fields: image, services, cache, artifacts, environment,
//! retry, trigger.

use super::parse;
use super::{Artifacts, Cache, CacheKey, Environment, Image, Retry, Service, Trigger, When};
use crate::config::{Node, Value};
use crate::plan::lint::LintError;
use crate::plan::StrMap;

fn pull_policy(node: Option<&Node>, loc: &str, errors: &mut Vec<LintError>) -> Vec<String> {
    node.map(|n| {
        parse::string_list(
            n,
            &format!("{loc}:pull_policy"),
            "config should be a string or an array of strings",
            errors,
        )
    })
    .unwrap_or_default()
}

fn string_array(
    node: Option<&Node>,
    loc: &str,
    errors: &mut Vec<LintError>,
) -> Option<Vec<String>> {
    node.map(|n| match n.as_seq() {
        Some(_) => parse::string_list(n, loc, "config should be an array of strings", errors),
        None => {
            errors.push(LintError::entry(
                &n.span,
                loc,
                "config should be an array of strings",
            ));
            Vec::new()
        }
    })
}

pub fn image(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<Image> {
    match &node.value {
        Value::String(s) => Some(Image {
            name: s.clone(),
            ..Image::default()
        }),
        Value::Map(m) => {
            let Some(name) = m.get("name").and_then(Node::as_str) else {
                errors.push(LintError::entry(
                    &node.span,
                    loc,
                    "config missing required keys: name",
                ));
                return None;
            };
            let docker = m.get("docker");
            Some(Image {
                name: name.to_string(),
                entrypoint: string_array(m.get("entrypoint"), &format!("{loc}:entrypoint"), errors),
                pull_policy: pull_policy(m.get("pull_policy"), loc, errors),
                platform: docker
                    .and_then(|d| d.get("platform"))
                    .and_then(Node::scalar_string),
                user: docker
                    .and_then(|d| d.get("user"))
                    .and_then(Node::scalar_string),
            })
        }
        _ => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "config should be a hash or a string",
            ));
            None
        }
    }
}

pub fn services(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Vec<Service> {
    let Some(items) = node.as_seq() else {
        errors.push(LintError::entry(
            &node.span,
            loc,
            "config should be a array",
        ));
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match &item.value {
            Value::String(s) => out.push(Service {
                name: s.clone(),
                ..Service::default()
            }),
            Value::Map(m) => {
                let Some(name) = m.get("name").and_then(Node::as_str) else {
                    errors.push(LintError::entry(
                        &item.span,
                        &format!("{loc}:service"),
                        "config missing required keys: name",
                    ));
                    continue;
                };
                let command = m.get("command").map(|c| {
                    let mut v = Vec::new();
                    if !parse::flatten_strings(c, 0, &mut v) {
                        errors.push(LintError::entry(
                            &c.span,
                            &format!("{loc}:service:command"),
                            "config should be a string or a nested array of strings up to 10 levels deep",
                        ));
                    }
                    v
                });
                out.push(Service {
                    name: name.to_string(),
                    alias: m.get("alias").and_then(Node::scalar_string),
                    entrypoint: string_array(
                        m.get("entrypoint"),
                        &format!("{loc}:service:entrypoint"),
                        errors,
                    ),
                    command,
                    variables: m
                        .get("variables")
                        .map(|v| {
                            parse::plain_variables(v, &format!("{loc}:service:variables"), errors)
                        })
                        .unwrap_or_default(),
                    pull_policy: pull_policy(m.get("pull_policy"), loc, errors),
                });
            }
            _ => errors.push(LintError::entry(
                &item.span,
                &format!("{loc}:service"),
                "config should be a hash or a string",
            )),
        }
    }
    out
}

const CACHE_WHEN: [When; 3] = [When::OnSuccess, When::OnFailure, When::Always];

/// `cache:` as one hash or a list of up to 4.
pub fn caches(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Vec<Cache> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    if items.len() > 4 {
        errors.push(LintError::entry(
            &node.span,
            loc,
            "no more than 4 caches can be created",
        ));
        return Vec::new();
    }
    items
        .into_iter()
        .filter_map(|i| cache(i, loc, errors))
        .collect()
}

fn cache(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<Cache> {
    let Some(m) = node.as_map() else {
        errors.push(LintError::entry(&node.span, loc, "config should be a hash"));
        return None;
    };
    let key = match m.get("key") {
        None => CacheKey::Literal("default".to_string()),
        Some(k) => match &k.value {
            Value::Map(km) => {
                let prefix = km.get("prefix").and_then(Node::scalar_string);
                let list = |n: &Node, errors: &mut Vec<LintError>| {
                    parse::string_list(
                        n,
                        &format!("{loc}:key:files"),
                        "config should be an array of strings",
                        errors,
                    )
                };
                match (km.get("files"), km.get("files_commits")) {
                    (Some(f), None) => CacheKey::Files {
                        files: list(f, errors),
                        prefix,
                    },
                    (None, Some(f)) => CacheKey::FilesCommits {
                        files: list(f, errors),
                        prefix,
                    },
                    _ => {
                        errors.push(LintError::entry(
                            &k.span,
                            &format!("{loc}:key"),
                            "config must use exactly one of these keys: files, files_commits",
                        ));
                        return None;
                    }
                }
            }
            _ => {
                let text = parse::scalar(k, &format!("{loc}:key"), errors)?;
                if text.contains('/') || text.to_lowercase().contains("%2f") {
                    errors.push(LintError::entry(
                        &k.span,
                        &format!("{loc}:key"),
                        "config cannot contain the \"/\" character",
                    ));
                } else if text == "." || text == ".." {
                    errors.push(LintError::entry(
                        &k.span,
                        &format!("{loc}:key"),
                        "config cannot be \".\" or \"..\"",
                    ));
                }
                CacheKey::Literal(text)
            }
        },
    };
    let when = match m.get("when") {
        Some(w) => parse::when(w, loc, &CACHE_WHEN, errors)?,
        None => When::OnSuccess,
    };
    Some(Cache {
        key,
        paths: m
            .get("paths")
            .map(|p| {
                parse::string_list(
                    p,
                    &format!("{loc}:paths"),
                    "config should be an array of strings",
                    errors,
                )
            })
            .unwrap_or_default(),
        untracked: m.get("untracked").and_then(Node::as_bool).unwrap_or(false),
        when,
        policy: m
            .get("policy")
            .and_then(Node::scalar_string)
            .unwrap_or_else(|| "pull-push".to_string()),
        unprotect: m.get("unprotect").and_then(Node::as_bool).unwrap_or(false),
        fallback_keys: m
            .get("fallback_keys")
            .map(|p| {
                parse::string_list(
                    p,
                    &format!("{loc}:fallback_keys"),
                    "config should be an array of strings",
                    errors,
                )
            })
            .unwrap_or_default(),
    })
}

const ARTIFACT_KEYS: [&str; 10] = [
    "paths",
    "exclude",
    "untracked",
    "when",
    "expire_in",
    "name",
    "expose_as",
    "reports",
    "public",
    "access",
];

pub fn artifacts(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<Artifacts> {
    let Some(m) = node.as_map() else {
        errors.push(LintError::entry(&node.span, loc, "config should be a hash"));
        return None;
    };
    errors.extend(LintError::unknown_keys(
        &node.span,
        loc,
        m.keys().map(|k| k.name.as_str()),
        &ARTIFACT_KEYS,
    ));
    if m.contains_key("public") && m.contains_key("access") {
        errors.push(LintError::entry(
            &node.span,
            loc,
            "config these keys cannot be used together: public, access",
        ));
    }
    let list = |key: &str, errors: &mut Vec<LintError>| {
        m.get(key)
            .map(|p| {
                parse::string_list(
                    p,
                    &format!("{loc}:{key}"),
                    "config should be an array of strings",
                    errors,
                )
            })
            .unwrap_or_default()
    };
    let mut reports = StrMap::default();
    if let Some(r) = m.get("reports").and_then(Node::as_map) {
        for (k, v) in r {
            let paths = match v.get("path") {
                Some(p) => p.scalar_string().into_iter().collect(),
                None => parse::string_list(
                    v,
                    &format!("{loc}:reports:{}", k.name),
                    "config should be an array of strings or a string",
                    errors,
                ),
            };
            reports.insert(k.name.clone(), paths);
        }
    }
    let when = match m.get("when") {
        Some(w) => parse::when(w, loc, &CACHE_WHEN, errors),
        None => None,
    };
    Some(Artifacts {
        paths: list("paths", errors),
        exclude: list("exclude", errors),
        untracked: m.get("untracked").and_then(Node::as_bool).unwrap_or(false),
        when,
        expire_in: m.get("expire_in").and_then(Node::scalar_string),
        name: m.get("name").and_then(Node::scalar_string),
        expose_as: m.get("expose_as").and_then(Node::scalar_string),
        public: m.get("public").and_then(Node::as_bool),
        access: m.get("access").and_then(Node::scalar_string),
        reports,
    })
}

pub fn environment(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<Environment> {
    match &node.value {
        Value::String(s) => Some(Environment {
            name: s.clone(),
            ..Environment::default()
        }),
        Value::Map(m) => {
            let Some(name) = m.get("name").and_then(Node::scalar_string) else {
                errors.push(LintError::entry(&node.span, loc, "name can't be blank"));
                return None;
            };
            let action = m.get("action").and_then(Node::scalar_string);
            if let Some(a) = &action {
                if !["start", "prepare", "stop", "verify", "access"].contains(&a.as_str()) {
                    errors.push(LintError::entry(
                        &node.span,
                        loc,
                        "action should be start, stop, prepare, verify, or access",
                    ));
                }
            }
            // `Entry::Environment`: the tiers of `Environment.deployment_tiers`.
            let deployment_tier = m.get("deployment_tier").and_then(Node::scalar_string);
            if let Some(tier) = &deployment_tier {
                const TIERS: [&str; 5] =
                    ["production", "staging", "testing", "development", "other"];
                if !TIERS.contains(&tier.as_str()) {
                    errors.push(LintError::entry(
                        &node.span,
                        loc,
                        "deployment tier must be one of production, staging, testing, development, other",
                    ));
                }
            }
            Some(Environment {
                name,
                url: m.get("url").and_then(Node::scalar_string),
                action,
                deployment_tier,
                on_stop: m.get("on_stop").and_then(Node::scalar_string),
                auto_stop_in: m.get("auto_stop_in").and_then(Node::scalar_string),
            })
        }
        _ => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "config should be a hash or a string",
            ));
            None
        }
    }
}

pub fn retry(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<Retry> {
    let max_of = |n: &Node, errors: &mut Vec<LintError>| match n.value {
        Value::Int(i @ 0..=2) => u8::try_from(i).ok(),
        _ => {
            errors.push(LintError::entry(
                &n.span,
                loc,
                "max config must be less than or equal to 2",
            ));
            None
        }
    };
    match &node.value {
        Value::Int(_) => Some(Retry {
            max: max_of(node, errors)?,
            ..Retry::default()
        }),
        Value::Map(m) => {
            let max = match m.get("max") {
                Some(n) => max_of(n, errors)?,
                None => 0,
            };
            let when = m
                .get("when")
                .map(|w| {
                    parse::string_list(
                        w,
                        &format!("{loc} when"),
                        "should be a string or an array of strings",
                        errors,
                    )
                })
                .unwrap_or_default();
            let exit_codes = match m.get("exit_codes").map(|c| &c.value) {
                Some(Value::Int(i)) => vec![*i],
                Some(Value::Seq(items)) => items
                    .iter()
                    .filter_map(|i| match i.value {
                        Value::Int(n) => Some(n),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some(Retry {
                max,
                when,
                exit_codes,
            })
        }
        _ => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "config has to be either an integer or a hash",
            ));
            None
        }
    }
}

pub fn trigger(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<Trigger> {
    match &node.value {
        Value::String(s) => Some(Trigger::Project {
            project: s.clone(),
            branch: None,
            strategy: None,
            forward_yaml_variables: true,
            forward_pipeline_variables: false,
        }),
        Value::Map(m) => {
            let strategy = m.get("strategy").and_then(Node::scalar_string);
            let forward = m.get("forward");
            let flag = |key: &str, default: bool| {
                forward
                    .and_then(|f| f.get(key))
                    .and_then(Node::as_bool)
                    .unwrap_or(default)
            };
            if let Some(include) = m.get("include") {
                let items = match &include.value {
                    Value::Seq(items) => items.clone(),
                    _ => vec![include.clone()],
                };
                Some(Trigger::Child {
                    include: items,
                    strategy,
                    forward_yaml_variables: flag("yaml_variables", true),
                    forward_pipeline_variables: flag("pipeline_variables", false),
                })
            } else if let Some(project) = m.get("project").and_then(Node::scalar_string) {
                Some(Trigger::Project {
                    project,
                    branch: m.get("branch").and_then(Node::scalar_string),
                    strategy,
                    forward_yaml_variables: flag("yaml_variables", true),
                    forward_pipeline_variables: flag("pipeline_variables", false),
                })
            } else {
                errors.push(LintError::entry(
                    &node.span,
                    loc,
                    "config must specify either project or include",
                ));
                None
            }
        }
        _ => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "config should be a hash or a string",
            ));
            None
        }
    }
}
