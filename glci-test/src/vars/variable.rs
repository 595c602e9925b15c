//! One CI/CD variable with the attributes expansion cares about.

use super::lookup::VariableLookup;

/// Why GitLab would refuse to mask a value (`Ci::Maskable`: a masked, expanded variable's
/// value must match `\A[a-zA-Z0-9_+=/@:.~-]{8,}\z`). Masking a value GitLab refuses would hide
/// the wrong text: with `SHORT=e`, every `e` of the log. The value itself is never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskRefusal {
    #[error("masked variable `{key}`: GitLab masks only values of at least 8 characters (this one has {len})")]
    TooShort { key: String, len: usize },
    #[error("masked variable `{key}`: GitLab masks only values on a single line")]
    MultiLine { key: String },
    #[error(
        "masked variable `{key}`: GitLab masks only values made of letters, digits and \
         `_+=/@:.~-` (no spaces, `$` or other characters)"
    )]
    Characters { key: String },
}

/// Checks that GitLab would accept `value` for the masked variable `key` (see
/// [`MaskRefusal`]).
pub fn check_maskable(key: &str, value: &str) -> Result<(), MaskRefusal> {
    let key = key.to_string();
    if value.contains(['\n', '\r']) {
        return Err(MaskRefusal::MultiLine { key });
    }
    let len = value.chars().count();
    if len < 8 {
        return Err(MaskRefusal::TooShort { key, len });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=/@:.~-".contains(c);
    if !value.chars().all(allowed) {
        return Err(MaskRefusal::Characters { key });
    }
    Ok(())
}

/// A variable as GitLab's `Variables::Collection::Item` and the runner's `JobVariable` carry
/// it. `raw` (`expand: false`) and `file` change how references to it expand; `masked` and
/// `public` travel with it to the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub key: String,
    pub value: String,
    /// Visible in the job (predefined and YAML variables are public; secrets are not).
    pub public: bool,
    /// File-type variable: the job sees a path to a file holding `value`.
    pub file: bool,
    pub masked: bool,
    /// `expand: false`: neither GitLab nor the runner expands references inside `value`.
    pub raw: bool,
}

impl Variable {
    /// A plain public variable.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Variable {
            key: key.into(),
            value: value.into(),
            public: true,
            file: false,
            masked: false,
            raw: false,
        }
    }

    /// The same variable marked raw (`expand: false`).
    pub fn raw(mut self) -> Self {
        self.raw = true;
        self
    }

    /// The same variable marked file-type.
    pub fn file(mut self) -> Self {
        self.file = true;
        self
    }

    /// The same variable marked masked.
    pub fn masked(mut self) -> Self {
        self.masked = true;
        self
    }

    /// The same variable marked not public.
    pub fn private(mut self) -> Self {
        self.public = false;
        self
    }
}

/// The last variable named `key`: later definitions shadow earlier ones, as in GitLab's
/// `Collection#[]` and the runner's `JobVariables.Get`.
pub fn find<'a>(vars: &'a [Variable], key: &str) -> Option<&'a Variable> {
    vars.iter().rev().find(|v| v.key == key)
}

impl VariableLookup for [Variable] {
    fn get(&self, name: &str) -> Option<&str> {
        find(self, name).map(|v| v.value.as_str())
    }
}

impl VariableLookup for Vec<Variable> {
    fn get(&self, name: &str) -> Option<&str> {
        find(self, name).map(|v| v.value.as_str())
    }
}

#[cfg(test)]
mod maskable_tests {
    use super::*;

    #[test]
    fn values_gitlab_would_not_mask_are_refused() {
        assert_eq!(check_maskable("T", "Sup3rS3cretValue42"), Ok(()));
        assert_eq!(check_maskable("T", "a_+=/@:.~-Z9"), Ok(()));
        assert_eq!(
            check_maskable("SHORT", "e"),
            Err(MaskRefusal::TooShort {
                key: "SHORT".into(),
                len: 1
            })
        );
        assert!(matches!(
            check_maskable("T", "two\nlines-here"),
            Err(MaskRefusal::MultiLine { .. })
        ));
        for bad in ["hello world", "hello$VARIABLE", "tab\there-x", "ünïcödé-x"] {
            assert!(
                matches!(
                    check_maskable("T", bad),
                    Err(MaskRefusal::Characters { .. })
                ),
                "{bad:?}"
            );
        }
        let message = check_maskable("SHORT", "e").unwrap_err().to_string();
        assert_eq!(
            message,
            "masked variable `SHORT`: GitLab masks only values of at least 8 characters (this one has 1)"
        );
    }
}
