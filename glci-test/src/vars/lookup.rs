//! Read access to a set of variables, whatever container the caller keeps them in.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use indexmap::IndexMap;

/// A name → value lookup: the only thing expressions and expansion need from variables.
///
/// Implemented for the common maps and for ordered lists of pairs, where the *last*
/// definition of a name wins (GitLab's `Variables::Collection#[]` behaves that way, which is
/// how later sources such as YAML variables shadow earlier predefined ones).
pub trait VariableLookup {
    /// The value of `name`, or `None` when it is not defined.
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> VariableLookup for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl VariableLookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl<S: BuildHasher> VariableLookup for IndexMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        IndexMap::get(self, name).map(String::as_str)
    }
}

impl VariableLookup for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl VariableLookup for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        VariableLookup::get(self.as_slice(), name)
    }
}

impl<T: VariableLookup + ?Sized> VariableLookup for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// A lookup that defines nothing: for expressions evaluated without any variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVariables;

impl VariableLookup for NoVariables {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_pair_wins() {
        let v = vec![
            ("A".to_string(), "1".to_string()),
            ("A".to_string(), "2".to_string()),
        ];
        assert_eq!(VariableLookup::get(&v, "A"), Some("2"));
        assert_eq!(VariableLookup::get(&v, "B"), None);
    }

    #[test]
    fn maps_look_up() {
        let mut h = HashMap::new();
        h.insert("X".to_string(), "x".to_string());
        assert_eq!(VariableLookup::get(&h, "X"), Some("x"));
        let b: BTreeMap<String, String> = h.clone().into_iter().collect();
        assert_eq!(VariableLookup::get(&b, "X"), Some("x"));
        let i: IndexMap<String, String> = h.into_iter().collect();
        assert_eq!(VariableLookup::get(&i, "X"), Some("x"));
        assert_eq!(NoVariables.get("X"), None);
    }
}
