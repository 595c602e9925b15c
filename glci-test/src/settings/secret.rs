//! Secrets in settings files: a value `"$NAME"` (or `"${NAME}"`) is the environment variable
//! `NAME`'s value, read once at start, so the file can be shared or committed without the
//! secret; `"$$..."` is a literal `$...`. Secrets are never printed (`[MASKED]`).

/// A secret's value and, when it came from a reference, the variable it named.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub value: String,
    /// `NAME` of a `$NAME` reference.
    pub reference: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even debug output shows a secret.
        f.write_str(&self.shown())
    }
}

/// A `$NAME` reference that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("refers to ${name}, which is not set in the environment")]
    Unset { name: String },
    #[error("`{text}` is not a $NAME reference (NAME: letters, digits and `_`; write `$$` for a literal `$`)")]
    BadReference { text: String },
}

impl Secret {
    /// A value taken as it is (from the environment, a flag or a default).
    pub fn literal(value: &str) -> Secret {
        Secret {
            value: value.to_string(),
            reference: None,
        }
    }

    /// A file's text: a reference is looked up in `env`, anything else is literal.
    pub fn from_file_text(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret, SecretError> {
        if let Some(rest) = text.strip_prefix("$$") {
            return Ok(Secret::literal(&format!("${rest}")));
        }
        let Some(rest) = text.strip_prefix('$') else {
            return Ok(Secret::literal(text));
        };
        let name = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or(rest);
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(SecretError::BadReference {
                text: text.to_string(),
            });
        }
        let value = env(name).ok_or_else(|| SecretError::Unset {
            name: name.to_string(),
        })?;
        Ok(Secret {
            value,
            reference: Some(name.to_string()),
        })
    }

    /// `[MASKED]`, saying which variable it came from.
    pub fn shown(&self) -> String {
        match &self.reference {
            Some(name) => format!("[MASKED] (${name})"),
            None if self.value.is_empty() => "\"\"".to_string(),
            None => "[MASKED]".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "REG_PASS").then(|| "hunter2".to_string())
    }

    #[test]
    fn references_read_the_environment_and_literals_stay() {
        let s = Secret::from_file_text("$REG_PASS", &env).unwrap();
        assert_eq!(s.value, "hunter2");
        assert_eq!(s.shown(), "[MASKED] ($REG_PASS)");
        assert_eq!(
            Secret::from_file_text("${REG_PASS}", &env).unwrap().value,
            "hunter2"
        );
        assert_eq!(
            Secret::from_file_text("$$dollar", &env).unwrap().value,
            "$dollar"
        );
        assert_eq!(
            Secret::from_file_text("plain", &env).unwrap().value,
            "plain"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            Secret::from_file_text("$MISSING", &env)
                .unwrap_err()
                .to_string(),
            "refers to $MISSING, which is not set in the environment"
        );
        assert!(Secret::from_file_text("$no-dash", &env).is_err());
    }
}
