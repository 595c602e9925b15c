//! The event, variables and snapshot choice from `GLCI_*` environment variables, so CI can
//! run one test target for several events without code changes. The environment wins over
//! what the `main!` macro or `cargo glci test` set.
//!
//! | variable | meaning |
//! |---|---|
//! | `GLCI_FILE` | CI file, relative to the repository root |
//! | `GLCI_SOURCE` | `CI_PIPELINE_SOURCE` (`push`, `merge_request_event`, `schedule`...) |
//! | `GLCI_BRANCH` / `GLCI_TAG` | the ref pushed (one replaces the other) |
//! | `GLCI_TARGET_BRANCH` | a merge request's target branch |
//! | `GLCI_DEFAULT_BRANCH` | the project's default branch |
//! | `GLCI_CHANGED` | changed paths for `rules:changes`, comma-separated |
//! | `GLCI_VAR_<KEY>` | pipeline variable `<KEY>` |
//! | `GLCI_MASKED_VAR_<KEY>` | masked CI/CD settings variable `<KEY>` |
//! | `GLCI_SNAPSHOTS` | jobs whose log is snapshotted, comma-separated, `*` for all |
//! | `GLCI_SNAPSHOT_DIR` | where snapshots live (relative to the project directory) |

use std::path::PathBuf;

use crate::pipeline::PipelineOptions;

use super::snapshot::Selection;

/// What the environment changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnvSettings {
    pub snapshots: Selection,
    pub snapshot_dir: Option<PathBuf>,
}

/// A `GLCI_*` variable that cannot be applied; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `GLCI_SOURCE` names no pipeline source (the reason is the source parser's).
    #[error("GLCI_SOURCE: {0}")]
    Source(String),
    #[error("{var}: `{name}` is not a CI/CD variable name (letters, digits and `_`)")]
    VariableName { var: String, name: String },
    #[error("GLCI_BRANCH and GLCI_TAG are both set; a pipeline runs for one ref")]
    BranchAndTag,
}

/// Applies `vars` (normally `std::env::vars()`) to `opts`. `Err` names the variable at fault.
pub fn apply<I>(opts: &mut PipelineOptions, vars: I) -> Result<EnvSettings, EnvError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut settings = EnvSettings::default();
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with("GLCI_"))
        .collect();
    // Deterministic order whatever the environment's, so `GLCI_VAR_*` keep a stable precedence.
    vars.sort();
    for (key, value) in vars {
        match key.as_str() {
            "GLCI_FILE" => opts.file = value,
            "GLCI_SOURCE" => {
                opts.event.source = value.parse().map_err(EnvError::Source)?;
            }
            "GLCI_BRANCH" => {
                opts.event.branch = Some(value);
                opts.event.tag = None;
            }
            "GLCI_TAG" => {
                opts.event.tag = Some(value);
                opts.event.branch = None;
            }
            "GLCI_TARGET_BRANCH" => opts.event.target_branch = Some(value),
            "GLCI_DEFAULT_BRANCH" => opts.event.default_branch = Some(value),
            "GLCI_CHANGED" => {
                opts.event.changed_files = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
            }
            "GLCI_SNAPSHOTS" => settings.snapshots = Selection::parse_list(&value),
            "GLCI_SNAPSHOT_DIR" => settings.snapshot_dir = Some(PathBuf::from(value)),
            _ => {
                if let Some(name) = key.strip_prefix(MASKED_VAR_PREFIX) {
                    check_name(&key, name)?;
                    opts.settings_variables.retain(|v| v.key != name);
                    opts.add_masked_var(name, &value);
                } else if let Some(name) = key.strip_prefix("GLCI_VAR_") {
                    check_name(&key, name)?;
                    opts.event.variables.retain(|(k, _)| k != name);
                    opts.add_var(name, &value);
                }
                // Other GLCI_* (GLCI_HOME, GLCI_DEFAULT_IMAGE...) belong to the engine.
            }
        }
    }
    if opts.event.tag.is_some() && opts.event.branch.is_some() {
        return Err(EnvError::BranchAndTag);
    }
    Ok(settings)
}

/// The prefix of masked CI/CD settings variables given through the environment, read by the
/// harness ([`apply`]) and by every `cargo glci` command ([`masked_vars`]): one spelling,
/// and the values stay out of the command line (`ps` shows arguments to every user).
pub const MASKED_VAR_PREFIX: &str = "GLCI_MASKED_VAR_";

/// The `GLCI_MASKED_VAR_<KEY>` variables of `vars` (normally `std::env::vars()`) as
/// (key, value), sorted by key. `Err` names a variable whose key is no variable name.
pub fn masked_vars<I>(vars: I) -> Result<Vec<(String, String)>, EnvError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut out: Vec<(String, String)> = Vec::new();
    for (var, value) in vars {
        if let Some(name) = var.strip_prefix(MASKED_VAR_PREFIX) {
            check_name(&var, name)?;
            out.push((name.to_string(), value));
        }
    }
    out.sort();
    Ok(out)
}

fn check_name(var: &str, name: &str) -> Result<(), EnvError> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(EnvError::VariableName {
            var: var.to_string(),
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PipelineSource;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn event_variables_and_snapshots_from_the_environment() {
        let mut opts = PipelineOptions::new(".");
        opts.event.branch = Some("from-macro".into());
        let s = apply(
            &mut opts,
            env(&[
                ("GLCI_TAG", "v1.2.0"),
                ("GLCI_SOURCE", "web"),
                ("GLCI_VAR_DEPLOY", "yes"),
                ("GLCI_MASKED_VAR_TOKEN", "s3cr3t"),
                ("GLCI_SNAPSHOTS", "build,test"),
                ("GLCI_CHANGED", "src/a.rs, README.md"),
                ("GLCI_HOME", "/elsewhere"),
                ("PATH", "/bin"),
            ]),
        );
        let s = s.unwrap_or_default();
        assert_eq!(opts.event.tag.as_deref(), Some("v1.2.0"));
        assert_eq!(opts.event.branch, None);
        assert_eq!(opts.event.source, PipelineSource::Web);
        assert_eq!(opts.event.variables, vec![("DEPLOY".into(), "yes".into())]);
        assert_eq!(opts.settings_variables.len(), 1);
        assert!(opts.settings_variables[0].masked);
        assert_eq!(
            opts.event.changed_files,
            Some(vec!["src/a.rs".into(), "README.md".into()])
        );
        assert_eq!(
            s.snapshots,
            Selection::Jobs(vec!["build".into(), "test".into()])
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let message = |vars: &[(&str, &str)]| {
            let mut opts = PipelineOptions::new(".");
            apply(&mut opts, env(vars)).err().map(|e| e.to_string())
        };
        let e = message(&[("GLCI_SOURCE", "nope")]);
        assert!(e.is_some_and(|e| e.starts_with("GLCI_SOURCE: unknown pipeline source `nope`")));
        let e = message(&[("GLCI_VAR_", "x")]);
        assert!(e.is_some_and(|e| e.starts_with("GLCI_VAR_: ``")));
        let e = message(&[("GLCI_VAR_A-B", "x")]);
        assert!(e.is_some_and(|e| e.contains("`A-B`")));
    }
}
