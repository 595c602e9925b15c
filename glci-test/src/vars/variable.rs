//! One CI/CD variable with the attributes expansion cares about.

use super::lookup::VariableLookup;

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
