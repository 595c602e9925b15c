//! Variable lookup for rules: layers of name → value, later layers winning, as GitLab's
//! variables collection returns the last value appended (`Variables::Builder#scoped_variables`).

use crate::plan::StrMap;

/// Ordered layers, lowest precedence first. Borrowed, so building one per job is cheap.
#[derive(Default)]
pub struct Scope<'a> {
    layers: Vec<&'a StrMap<String>>,
}

impl<'a> Scope<'a> {
    pub fn new() -> Self {
        Scope {
            layers: Vec::with_capacity(6),
        }
    }

    /// Adds a layer that overrides every earlier one.
    pub fn push(&mut self, layer: &'a StrMap<String>) -> &mut Self {
        self.layers.push(layer);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.get(name).map(String::as_str))
    }
}

/// A list of pairs as a map where the last occurrence of a name wins.
pub fn last_wins(pairs: &[(String, String)]) -> StrMap<String> {
    let mut map = StrMap::with_capacity_and_hasher(pairs.len(), Default::default());
    for (k, v) in pairs {
        map.insert(k.clone(), v.clone());
    }
    map
}
