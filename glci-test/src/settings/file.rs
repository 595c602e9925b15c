//! Reading one settings file: TOML with spans, so every error and every warning about an
//! unknown key names the file and line. Keys glci refuses (nothing behind them yet) and keys
//! only the global file may set are errors here; security rules across the two files are in
//! `security.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::schema::{self, Kind, Support};
use super::secret::Secret;
use super::value::Value;
use super::SettingsError;

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `GLCI_HOME/config.toml`: the user's own.
    Global,
    /// `.glci.toml` at the repository's root: comes with the project, may not loosen security.
    Project,
}

impl Scope {
    pub fn word(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Project => "project",
        }
    }
}

/// One file's settings: each key it sets, with the line that sets it.
#[derive(Debug, Clone)]
pub struct FileSettings {
    pub path: PathBuf,
    pub scope: Scope,
    pub values: BTreeMap<&'static str, (Value, usize)>,
    /// `PATH:LINE: ...` for unknown keys and other things worth saying.
    pub warnings: Vec<String>,
}

impl FileSettings {
    /// The value of `key` and its line, when this file sets it.
    pub fn get(&self, key: &str) -> Option<&(Value, usize)> {
        self.values.get(key)
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn read(
        path: &Path,
        scope: Scope,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<FileSettings>, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SettingsError::Read {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
            }
        };
        FileSettings::parse(path, scope, &text, env).map(Some)
    }

    /// Parses `text`, read from `path`.
    pub fn parse(
        path: &Path,
        scope: Scope,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FileSettings, SettingsError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let document = DeTable::parse(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |span| {
                let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
                (line_of(span.start), span.start - line_start + 1)
            });
            SettingsError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let mut file = FileSettings {
            path: path.to_path_buf(),
            scope,
            values: BTreeMap::new(),
            warnings: Vec::new(),
        };
        let sections = schema::sections();
        for (section_name, section) in document.get_ref().iter() {
            let section_name: &str = section_name.get_ref();
            let line = line_of(section.span().start);
            let (Some(section_table), true) = (
                section.get_ref().as_table(),
                sections.contains(&section_name),
            ) else {
                file.unknown(line, section_name);
                continue;
            };
            for (key, value) in section_table.iter() {
                let name = format!("{section_name}.{}", key.get_ref());
                let line = line_of(key.span().start);
                match schema::key(&name) {
                    Some(spec) => file.take(spec, value.get_ref(), line, env)?,
                    None => file.unknown(line, &name),
                }
            }
        }
        Ok(file)
    }

    fn unknown(&mut self, line: usize, name: &str) {
        self.warnings.push(format!(
            "{}:{line}: unknown key `{name}` (ignored)",
            self.path.display()
        ));
    }

    fn take(
        &mut self,
        spec: &'static schema::Key,
        value: &DeValue<'_>,
        line: usize,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        let invalid = |message: String| SettingsError::Invalid {
            path: self.path.clone(),
            line,
            key: spec.name.to_string(),
            message,
        };
        match spec.support {
            Support::Refused(why) => return Err(invalid(why.to_string())),
            Support::GlobalOnly if self.scope == Scope::Project => {
                return Err(invalid(
                    "only the global settings file (GLCI_HOME/config.toml) or the environment may say this: a repository may not loosen security, or choose where its jobs run, on its own".to_string(),
                ))
            }
            _ => {}
        }
        if spec.kind == Kind::Secret && self.scope == Scope::Project {
            // Written out it would be committed with the repository; as a $NAME reference it
            // would let any repository read any of the user's environment variables into
            // its jobs. Secrets are the user's: global file or environment.
            return Err(invalid(
                "a project's settings file may not hold secrets, neither written out (they would be committed) nor as $NAME references (a repository could read any of your environment variables); set it in the global settings file (GLCI_HOME/config.toml) or the environment".to_string(),
            ));
        }
        let mut parsed = Value::from_toml(spec.kind, value).map_err(|e| invalid(e.to_string()))?;
        if let (Kind::Secret, Value::Secret(secret)) = (spec.kind, &parsed) {
            let resolved =
                Secret::from_file_text(&secret.value, env).map_err(|e| invalid(e.to_string()))?;
            parsed = Value::Secret(resolved);
        }
        self.values.insert(spec.name, (parsed, line));
        Ok(())
    }
}
