//! One job entry (`Entry::Job` / `Entry::Bridge`): allowed keys, exclusive keys, defaults.

use super::fields;
use super::parse;
use super::{AllowFailure, Inherit, InheritList, JobConfig, ReleaseConfig, ReleaseLink, When};
use crate::config::{Mapping, Node, Value};
use crate::plan::lint::LintError;

/// `Processable::PROCESSABLE_ALLOWED_KEYS`.
const PROCESSABLE_KEYS: [&str; 13] = [
    "extends",
    "stage",
    "only",
    "except",
    "rules",
    "variables",
    "inherit",
    "allow_failure",
    "when",
    "needs",
    "resource_group",
    "environment",
    "interruptible",
];

/// `Job::ALLOWED_KEYS` (plus EE keys, accepted so EE pipelines still lint).
const JOB_KEYS: [&str; 24] = [
    "tags",
    "script",
    "image",
    "services",
    "start_in",
    "artifacts",
    "cache",
    "dependencies",
    "before_script",
    "after_script",
    "hooks",
    "coverage",
    "retry",
    "parallel",
    "timeout",
    "inputs",
    "release",
    "id_tokens",
    "publish",
    "pages",
    "manual_confirmation",
    "run",
    "secrets",
    "identity",
];

const JOB_WHEN: [When; 5] = [
    When::OnSuccess,
    When::OnFailure,
    When::Always,
    When::Manual,
    When::Delayed,
];

/// Reads one visible job. `defaults` are the `default:` keys this job inherits; each applies
/// only when the job does not set that key itself (no merging).
pub fn parse_job(
    name: &str,
    node: &Node,
    defaults: &Mapping,
    errors: &mut Vec<LintError>,
) -> Option<JobConfig> {
    let map = node.as_map()?;
    let loc = format!("jobs:{name}");
    // Every field's location (`jobs:x:script`, …) is built in this one buffer: they are
    // only read when an error is reported, and a fresh string per field per job was 3% of
    // planning a 1,000-job pipeline.
    let mut scratch = String::with_capacity(loc.len() + 16);
    let before = errors.len();
    let is_bridge = !map.contains_key("script") && !map.contains_key("run");

    let unknown: Vec<&crate::config::Key> = map
        .keys()
        .filter(|k| {
            let k = k.name.as_str();
            !PROCESSABLE_KEYS.contains(&k)
                && !(if is_bridge {
                    k == "trigger" || k == "parallel"
                } else {
                    JOB_KEYS.contains(&k)
                })
        })
        .collect();
    if let Some(first) = unknown.first() {
        let names: Vec<&str> = unknown.iter().map(|k| k.name.as_str()).collect();
        // Point at the first unknown key: that is what the user has to fix.
        errors.push(LintError::entry(
            &first.span,
            &loc,
            &format!("config contains unknown keys: {}", names.join(", ")),
        ));
    }
    if is_bridge && !map.contains_key("trigger") {
        errors.push(LintError::entry(
            &node.span,
            &loc,
            "config should contain either a trigger or a needs:pipeline",
        ));
    }
    if name.chars().count() > 255 {
        errors.push(LintError::entry(
            &node.span,
            &loc,
            "name is too long (maximum is 255 characters)",
        ));
    }
    for pair in [
        ["script", "trigger"],
        ["script", "run"],
        ["before_script", "run"],
        ["after_script", "run"],
    ] {
        if pair.iter().all(|k| map.contains_key(*k)) {
            errors.push(LintError::entry(
                &node.span,
                &loc,
                &format!("these keys cannot be used together: {}", pair.join(", ")),
            ));
        }
    }
    // `key: null` is "not specified" for GitLab's entries (`Entry::Factory` makes an
    // `Unspecified` entry of it): the key's default applies and `default:` is inherited.
    // Only key-presence checks (unknown keys, which kind of job) still see the key.
    let own = |key: &str| map.get(key).filter(|n| !matches!(n.value, Value::Null));
    if own("rules").is_some() {
        for key in ["only", "except", "start_in"] {
            if own(key).is_some() {
                errors.push(LintError::entry(
                    &node.span,
                    &loc,
                    &format!("config key may not be used with `rules`: {key}"),
                ));
            }
        }
    }

    // The job's own key wins over the default one (`Entry::Default#compose!`).
    let get = |key: &str| {
        own(key).or_else(|| {
            defaults
                .get(key)
                .filter(|n| !matches!(n.value, Value::Null))
        })
    };
    let mut job = JobConfig {
        name: name.to_string(),
        stage: "test".to_string(),
        span: node.span.clone(),
        ..JobConfig::default()
    };

    if let Some(n) = own("stage") {
        match n.as_str() {
            Some(s) => job.stage = s.to_string(),
            None => errors.push(LintError::entry(
                &n.span,
                at(&mut scratch, &loc, " stage"),
                "should be a string",
            )),
        }
    }
    if let Some(n) = map.get("script") {
        if matches!(n.value, Value::Null) {
            errors.push(LintError::entry(&n.span, &loc, "script can't be blank"));
        } else {
            job.script = parse::commands(n, at(&mut scratch, &loc, ":script"), errors);
            if job.script.is_empty() && matches!(n.value, Value::Seq(_)) {
                errors.push(LintError::entry(&n.span, &loc, "script can't be blank"));
            }
        }
    }
    if let Some(n) = get("before_script") {
        job.before_script = parse::commands(n, at(&mut scratch, &loc, ":before_script"), errors);
    }
    if let Some(n) = get("after_script") {
        job.after_script = parse::commands(n, at(&mut scratch, &loc, ":after_script"), errors);
    }
    if let Some(n) = get("image") {
        job.image = fields::image(n, at(&mut scratch, &loc, ":image"), errors);
    }
    if let Some(n) = get("services") {
        job.services = fields::services(n, at(&mut scratch, &loc, ":services"), errors);
    }
    if let Some(n) = own("variables") {
        job.variables = parse::variables(n, at(&mut scratch, &loc, ":variables"), false, errors);
    }
    job.rules_key_without_rules = map.get("rules").is_some_and(|n| n.value == Value::Null);
    if let Some(n) = own("rules") {
        job.rules = Some(parse::rules(n, &loc, false, errors));
    }
    if let Some(n) = own("only") {
        job.only = parse::policy(n, at(&mut scratch, &loc, ":only"), errors);
    }
    if let Some(n) = own("except") {
        job.except = parse::policy(n, at(&mut scratch, &loc, ":except"), errors);
    }
    if let Some(n) = own("when") {
        let allowed: &[When] = if is_bridge { &JOB_WHEN[..4] } else { &JOB_WHEN };
        job.when = parse::when(n, &loc, allowed, errors);
    }
    if let Some(n) = own("start_in") {
        job.start_in = parse::scalar(n, at(&mut scratch, &loc, " start_in"), errors);
    }
    if job.when == Some(When::Delayed) && job.start_in.is_none() && job.rules.is_none() {
        errors.push(LintError::entry(
            &node.span,
            &loc,
            "start_in should be a duration",
        ));
    }
    if let (Some(When::Delayed), Some(start_in)) = (job.when, &job.start_in) {
        if let Some(message) = parse::start_in_error(start_in) {
            errors.push(LintError::entry(&node.span, &loc, message));
        }
    }
    if job.start_in.is_some() && job.when != Some(When::Delayed) && job.rules.is_none() {
        errors.push(LintError::entry(&node.span, &loc, "start_in must be blank"));
    }
    if let Some(n) = own("allow_failure") {
        job.allow_failure = allow_failure(n, at(&mut scratch, &loc, ":allow_failure"), errors);
    }
    if let Some(n) = own("needs") {
        job.needs = Some(parse::needs(n, at(&mut scratch, &loc, ":needs"), errors));
    }
    if let Some(n) = own("dependencies") {
        job.dependencies = Some(parse::string_list(
            n,
            at(&mut scratch, &loc, " dependencies"),
            "should be an array of strings",
            errors,
        ));
    }
    if let Some(n) = own("parallel") {
        job.parallel = parse::parallel(n, at(&mut scratch, &loc, ":parallel"), errors);
        if is_bridge && matches!(job.parallel, Some(super::Parallel::Count(_))) {
            errors.push(LintError::entry(
                &n.span,
                at(&mut scratch, &loc, ":parallel"),
                "config should be a hash",
            ));
        }
    }
    if let Some(n) = get("artifacts") {
        job.artifacts = fields::artifacts(n, at(&mut scratch, &loc, ":artifacts"), errors);
    }
    if let Some(n) = get("cache") {
        job.cache = Some(fields::caches(n, at(&mut scratch, &loc, ":cache"), errors));
    }
    if let Some(n) = own("environment") {
        job.environment = fields::environment(n, at(&mut scratch, &loc, ":environment"), errors);
    }
    if let Some(n) = get("retry") {
        job.retry = fields::retry(n, at(&mut scratch, &loc, ":retry"), errors);
    }
    // `default:timeout` is accepted but has no effect (docs/ci-yaml-semantics.md, Appendix
    // A.2): only the job's own.
    if let Some(n) = own("timeout") {
        job.timeout = parse::scalar(n, at(&mut scratch, &loc, " timeout"), errors);
    }
    if let Some(n) = get("tags") {
        job.tags = parse::string_list(
            n,
            at(&mut scratch, &loc, " tags"),
            "should be an array of strings",
            errors,
        );
    }
    if let Some(n) = map.get("trigger") {
        job.trigger = fields::trigger(n, at(&mut scratch, &loc, ":trigger"), errors);
    }
    if let Some(n) = own("inherit") {
        job.inherit = inherit(n, at(&mut scratch, &loc, ":inherit"), errors);
    }
    if let Some(n) = get("interruptible") {
        job.interruptible = parse::bool_value(n, at(&mut scratch, &loc, " interruptible"), errors);
    }
    if let Some(n) = own("coverage") {
        job.coverage = parse::scalar(n, at(&mut scratch, &loc, " coverage"), errors);
    }
    if let Some(n) = own("resource_group") {
        job.resource_group = parse::scalar(n, at(&mut scratch, &loc, " resource_group"), errors);
    }
    if let Some(n) = map.get("release") {
        job.release = release(n, at(&mut scratch, &loc, ":release"), errors);
    }
    (errors.len() == before).then_some(job)
}

/// `loc` followed by `suffix`, written into `buf`.
fn at<'b>(buf: &'b mut String, loc: &str, suffix: &str) -> &'b str {
    buf.clear();
    buf.push_str(loc);
    buf.push_str(suffix);
    buf
}

/// `release:` as GitLab's `Entry::Release` validates it: `tag_name` and `description` are
/// required; `assets:links` entries need `name` and `url`.
fn release(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<ReleaseConfig> {
    let Value::Map(m) = &node.value else {
        errors.push(LintError::entry(&node.span, loc, "config should be a hash"));
        return None;
    };
    const KEYS: [&str; 8] = [
        "tag_name",
        "tag_message",
        "name",
        "description",
        "ref",
        "released_at",
        "milestones",
        "assets",
    ];
    errors.extend(LintError::unknown_keys(
        &node.span,
        loc,
        m.keys().map(|k| k.name.as_str()),
        &KEYS,
    ));
    let field = |key: &str, errors: &mut Vec<LintError>| {
        m.get(key)
            .and_then(|n| parse::scalar(n, &format!("{loc} {key}"), errors))
    };
    let tag_name = field("tag_name", errors).filter(|t| !t.trim().is_empty());
    let description = field("description", errors).filter(|d| !d.trim().is_empty());
    if tag_name.is_none() {
        errors.push(LintError::entry(&node.span, loc, "tag name can't be blank"));
    }
    if description.is_none() {
        errors.push(LintError::entry(
            &node.span,
            loc,
            "description can't be blank",
        ));
    }
    let milestones = m
        .get("milestones")
        .map(|n| {
            parse::string_list(
                n,
                &format!("{loc} milestones"),
                "should be an array of strings or a string",
                errors,
            )
        })
        .unwrap_or_default();
    let links = m
        .get("assets")
        .map(|n| release_links(n, &format!("{loc}:assets"), errors))
        .unwrap_or_default();
    Some(ReleaseConfig {
        tag_name: tag_name?,
        description: description?,
        name: field("name", errors),
        tag_message: field("tag_message", errors),
        ref_name: field("ref", errors),
        released_at: field("released_at", errors),
        milestones,
        links,
    })
}

/// `release:assets`: `links`, a list of `{name, url, direct_asset_path, link_type}`.
fn release_links(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Vec<ReleaseLink> {
    let Value::Map(assets) = &node.value else {
        errors.push(LintError::entry(&node.span, loc, "config should be a hash"));
        return Vec::new();
    };
    let Some(links) = assets.get("links") else {
        errors.push(LintError::entry(&node.span, loc, "links can't be blank"));
        return Vec::new();
    };
    let loc = format!("{loc}:links");
    let Value::Seq(items) = &links.value else {
        errors.push(LintError::entry(
            &links.span,
            &loc,
            "config should be an array",
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Map(link) = &item.value else {
            errors.push(LintError::entry(
                &item.span,
                &loc,
                "config should be a hash",
            ));
            continue;
        };
        let field = |key: &str, errors: &mut Vec<LintError>| {
            link.get(key)
                .and_then(|n| parse::scalar(n, &format!("{loc}:link {key}"), errors))
        };
        let (name, url) = (field("name", errors), field("url", errors));
        for (key, value) in [("name", &name), ("url", &url)] {
            if value.is_none() {
                errors.push(LintError::entry(
                    &item.span,
                    &format!("{loc}:link"),
                    &format!("{key} can't be blank"),
                ));
            }
        }
        let (Some(name), Some(url)) = (name, url) else {
            continue;
        };
        out.push(ReleaseLink {
            name,
            url,
            direct_asset_path: field("direct_asset_path", errors)
                .or_else(|| field("filepath", errors)),
            link_type: field("link_type", errors),
        });
    }
    out
}

fn allow_failure(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Option<AllowFailure> {
    match &node.value {
        Value::Bool(b) => Some(AllowFailure::Bool(*b)),
        Value::Map(m) => match m.get("exit_codes") {
            Some(codes) => {
                let list: Vec<&Node> = match &codes.value {
                    Value::Seq(items) => items.iter().collect(),
                    _ => vec![codes],
                };
                let mut out = Vec::with_capacity(list.len());
                for c in list {
                    match c.value {
                        Value::Int(i) => out.push(i),
                        _ => {
                            errors.push(LintError::entry(
                                &c.span,
                                loc,
                                "exit codes should be an array of integers or an integer",
                            ));
                            return None;
                        }
                    }
                }
                Some(AllowFailure::ExitCodes(out))
            }
            None => {
                errors.push(LintError::entry(
                    &node.span,
                    loc,
                    "config missing required keys: exit_codes",
                ));
                None
            }
        },
        _ => {
            errors.push(LintError::entry(
                &node.span,
                loc,
                "config should be a hash or a boolean value",
            ));
            None
        }
    }
}

fn inherit(node: &Node, loc: &str, errors: &mut Vec<LintError>) -> Inherit {
    let mut out = Inherit::default();
    let Some(map) = node.as_map() else {
        errors.push(LintError::entry(&node.span, loc, "config should be a hash"));
        return out;
    };
    for (k, v) in map {
        let list = match &v.value {
            Value::Bool(true) => InheritList::All,
            Value::Bool(false) => InheritList::None,
            Value::Seq(_) => InheritList::Only(parse::string_list(
                v,
                &format!("{loc}:{}", k.name),
                "config should be a boolean value or an array of strings",
                errors,
            )),
            _ => {
                errors.push(LintError::entry(
                    &v.span,
                    &format!("{loc}:{}", k.name),
                    "config should be a boolean value or an array of strings",
                ));
                continue;
            }
        };
        match k.name.as_str() {
            "default" => {
                if let InheritList::Only(names) = &list {
                    let bad: Vec<&str> = names
                        .iter()
                        .map(String::as_str)
                        .filter(|n| !crate::config::keywords::DEFAULT_KEYS.contains(n))
                        .collect();
                    if !bad.is_empty() {
                        errors.push(LintError::entry(
                            &v.span,
                            &format!("{loc}:default"),
                            &format!("config contains unknown values: {}", bad.join(", ")),
                        ));
                    }
                }
                out.default = list;
            }
            "variables" => out.variables = list,
            other => errors.push(LintError::entry(
                &k.span,
                loc,
                &format!("config contains unknown keys: {other}"),
            )),
        }
    }
    out
}
