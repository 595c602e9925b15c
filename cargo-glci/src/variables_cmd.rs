//! `cargo glci variables JOB`: every variable the job would get, with its value (masked ones
//! as `[MASKED]`) and where it comes from, grouped by origin in GitLab's order of precedence
//! (lowest first; the last definition of a name wins). No Docker.

use std::fmt::Write;
use std::process::ExitCode;

use glci_test::pipeline::variable_trace::{self, Definition, JobVariables, Origin};
use glci_test::pipeline::{self, home};
use glci_test::printable::{printable, printable_lines};
use serde_json::json;

use crate::args::VariablesArgs;

/// Variables the server and the runner add when the job starts: not known before.
const SET_AT_START: &str = "CI_JOB_ID, CI_JOB_URL, CI_JOB_TOKEN, CI_JOB_STARTED_AT, \
    CI_REPOSITORY_URL, CI_PROJECT_DIR, CI_BUILDS_DIR, CI_RUNNER_*; in a run, ids, times and \
    the server's URLs are the run's";

pub fn run(args: &VariablesArgs) -> ExitCode {
    let opts = match crate::exit::options(&args.event) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let sources = match args.event.settings_sources() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let planned = match pipeline::plan(&opts) {
        Ok(p) => p,
        Err(e) => return crate::exit::config_failure(&e, false),
    };
    let home = home::glci_home_path().ok();
    let vars = match variable_trace::trace(&opts, &planned, &args.job, home.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {}", printable(&e.to_string()));
            return ExitCode::from(1);
        }
    };
    let source_of = |d: &Definition| -> Option<&str> {
        (d.origin == Origin::Settings)
            .then(|| sources.get(&d.variable.key).map(String::as_str))
            .flatten()
    };
    if args.json {
        println!("{}", to_json(&vars, args.all, &source_of));
    } else {
        print!("{}", printable_lines(&to_text(&vars, args.all, &source_of)));
    }
    ExitCode::SUCCESS
}

/// How a definition's value is shown: `[MASKED]` for masked ones (and masked values inside
/// others), control characters escaped.
fn shown(vars: &JobVariables, d: &Definition) -> String {
    if d.variable.masked {
        return "[MASKED]".to_string();
    }
    printable(&vars.masked(&d.variable.value)).into_owned()
}

fn to_text<'a>(
    vars: &'a JobVariables,
    all: bool,
    source_of: &dyn Fn(&'a Definition) -> Option<&'a str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Variables of job `{}`, lowest precedence first (the last definition of a name wins):",
        vars.job
    );
    let expanded = vars.expanded();
    let mut group: Option<&Origin> = None;
    for (d, overridden_by) in vars.with_overrides() {
        if overridden_by.is_some() && !all {
            continue;
        }
        if group != Some(&d.origin) {
            let _ = writeln!(out, "\n{}", d.origin);
            group = Some(&d.origin);
        }
        let key = &d.variable.key;
        let mut line = format!("  {key}={}", shown(vars, d));
        if let Some(by) = overridden_by {
            let _ = write!(line, "  (overridden by {})", by.origin);
        } else if let Some(value) = expanded.get(key).filter(|v| **v != d.variable.value) {
            if !d.variable.masked {
                let _ = write!(line, "  → {}", printable(&vars.masked(value)));
            }
        }
        let mut notes = Vec::new();
        if d.variable.file {
            notes.push("file".to_string());
        }
        if d.variable.raw {
            notes.push("expand: false".to_string());
        }
        if let Some(source) = source_of(d) {
            notes.push(format!("from {source}"));
        }
        if !notes.is_empty() {
            let _ = write!(line, "  ({})", notes.join(", "));
        }
        let _ = writeln!(out, "{line}");
    }
    for job in &vars.dotenv_unknown {
        let _ = writeln!(
            out,
            "\ndotenv of `{job}`: not known (no finished run of `{job}` kept in GLCI_HOME)"
        );
    }
    let _ = writeln!(out, "\nset when the job starts: {SET_AT_START}");
    out
}

fn to_json<'a>(
    vars: &'a JobVariables,
    all: bool,
    source_of: &dyn Fn(&'a Definition) -> Option<&'a str>,
) -> serde_json::Value {
    let expanded = vars.expanded();
    let entry = |d: &'a Definition| {
        let mut v = json!({
            "key": d.variable.key,
            "value": if d.variable.masked { "[MASKED]".to_string() } else { vars.masked(&d.variable.value) },
            "origin": d.origin.to_string(),
            "masked": d.variable.masked,
            "file": d.variable.file,
            "raw": d.variable.raw,
        });
        if let Some(source) = source_of(d) {
            v["source"] = json!(source);
        }
        v
    };
    let mut variables = Vec::new();
    let mut overridden = Vec::new();
    for (d, by) in vars.with_overrides() {
        let mut e = entry(d);
        match by {
            None => {
                if !d.variable.masked {
                    if let Some(x) = expanded.get(&d.variable.key) {
                        e["expanded"] = json!(vars.masked(x));
                    }
                }
                variables.push(e);
            }
            Some(by) => {
                e["overridden_by"] = json!(by.origin.to_string());
                overridden.push(e);
            }
        }
    }
    let mut out =
        json!({"job": vars.job, "variables": variables, "dotenv_unknown": vars.dotenv_unknown});
    if all {
        out["overridden"] = json!(overridden);
    }
    out
}
