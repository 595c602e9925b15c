//! Environment files: `--env-file PATH` and the project's optional `.glci.env`, the local
//! stand-in for a project's CI/CD settings variables.
//!
//! One `KEY=VALUE` per line; blank lines and lines starting with `#` are skipped; an
//! `export ` in front of the key is allowed. The value is everything after the first `=`,
//! taken literally (no quotes removed, nothing expanded), as `docker run --env-file` reads it.
//! A line ending in whitespace and `# masked` defines a masked variable; GitLab's masking
//! rules apply to it (see [`crate::vars::check_maskable`]), so a value GitLab would refuse to
//! mask is an error naming the file and line. (A masked value never holds whitespace or `#`,
//! so the marker cannot be part of it.)

use std::path::{Path, PathBuf};

use crate::vars::{check_maskable, MaskRefusal};

use super::SettingsVariable;

/// The project's own environment file, at the top of the repository. glci never adds it to
/// `.gitignore`: ignoring it is the user's call.
pub const PROJECT_ENV_FILE: &str = ".glci.env";

/// One variable of an environment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    pub masked: bool,
    /// 1-based line number.
    pub line: usize,
}

impl EnvEntry {
    /// As a CI/CD settings variable.
    pub fn to_settings(&self) -> SettingsVariable {
        SettingsVariable {
            key: self.key.clone(),
            value: self.value.clone(),
            masked: self.masked,
            file: false,
        }
    }
}

/// Why an environment file cannot be used; names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: {refusal}", path.display())]
    Masked {
        path: PathBuf,
        line: usize,
        refusal: MaskRefusal,
    },
}

/// Reads and checks the environment file at `path`.
pub fn read(path: &Path) -> Result<Vec<EnvEntry>, EnvFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnvFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// The entries of `text`, read from `path` (for messages).
pub fn parse(text: &str, path: &Path) -> Result<Vec<EnvEntry>, EnvFileError> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let syntax = |message: String| EnvFileError::Syntax {
            path: path.to_path_buf(),
            line,
            message,
        };
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = text.trim_start();
        if trimmed.trim_end().is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let (key, value) = trimmed
            .split_once('=')
            .ok_or_else(|| syntax("expected KEY=VALUE".to_string()))?;
        let key = key.trim();
        let valid = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(syntax(format!(
                "`{key}` is not a variable name (letters, digits and `_`)"
            )));
        }
        let (value, masked) = match masked_marker(value) {
            Some(v) => (v, true),
            None => (value, false),
        };
        if masked {
            check_maskable(key, value).map_err(|refusal| EnvFileError::Masked {
                path: path.to_path_buf(),
                line,
                refusal,
            })?;
        }
        entries.push(EnvEntry {
            key: key.to_string(),
            value: value.to_string(),
            masked,
            line,
        });
    }
    Ok(entries)
}

/// The value before a trailing `# masked` (after whitespace), if the line has one.
fn masked_marker(value: &str) -> Option<&str> {
    let rest = value.trim_end().strip_suffix("masked")?.trim_end();
    let rest = rest.strip_suffix('#')?;
    (rest.ends_with(char::is_whitespace)).then(|| rest.trim_end())
}

/// The project's `.glci.env`: at the top of the repository containing `dir` (the first
/// ancestor holding `.git`), if it exists.
pub fn project_env_file(dir: &Path) -> Option<PathBuf> {
    let dir = std::path::absolute(dir).ok()?;
    let top = dir.ancestors().find(|d| d.join(".git").exists())?;
    let file = top.join(PROJECT_ENV_FILE);
    file.is_file().then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_export_and_the_masked_marker() {
        let text =
            "# settings\n\nA=1\nexport B = x=y \nTOKEN=abcdefgh1234 # masked\r\nC=a # not masked\n";
        let got = parse(text, Path::new(".glci.env")).unwrap();
        let pairs: Vec<(&str, &str, bool, usize)> = got
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.masked, e.line))
            .collect();
        assert_eq!(
            pairs,
            [
                ("A", "1", false, 3),
                ("B", " x=y ", false, 4),
                ("TOKEN", "abcdefgh1234", true, 5),
                ("C", "a # not masked", false, 6),
            ]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let p = Path::new("dev.env");
        let e = parse("A=1\nnot a pair\n", p).unwrap_err();
        assert_eq!(e.to_string(), "dev.env:2: expected KEY=VALUE");
        let e = parse("BAD-KEY=1\n", p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dev.env:1: `BAD-KEY` is not a variable name (letters, digits and `_`)"
        );
        let e = parse("\nSHORT=abc # masked\n", p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dev.env:2: masked variable `SHORT`: GitLab masks only values of at least 8 characters (this one has 3)"
        );
    }
}
