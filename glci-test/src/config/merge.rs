//! ActiveSupport's `Hash#deep_merge!`, the one merge GitLab uses for includes and `extends`:
//! mappings merge key by key at any depth; anything else (arrays, scalars, null) on the right
//! replaces the left. A key already present keeps its position, as Ruby hashes do.

use super::value::{Node, Value};

/// Merges `right` into `left`.
pub fn deep_merge(left: &mut Node, right: Node) {
    match (&mut left.value, right.value) {
        (Value::Map(l), Value::Map(r)) => {
            for (key, value) in r {
                match l.get_mut(&key) {
                    Some(existing) if existing.as_map().is_some() && value.as_map().is_some() => {
                        deep_merge(existing, value)
                    }
                    Some(existing) => *existing = value,
                    None => {
                        l.insert(key, value);
                    }
                }
            }
        }
        (_, value) => {
            left.value = value;
            left.span = right.span;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, to_yaml};

    fn p(s: &str) -> Node {
        parse_yaml(s, "m.yml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn hashes_merge_arrays_replace() {
        let mut l = p("a: {x: 1, y: [1, 2]}\nb: 1\n");
        deep_merge(&mut l, p("a: {y: [3], z: 2}\nc: 3\n"));
        assert_eq!(to_yaml(&l), "a:\n  x: 1\n  y:\n  - 3\n  z: 2\nb: 1\nc: 3\n");
    }

    #[test]
    fn null_replaces_and_empty_hash_keeps() {
        let mut l = p("only: {variables: [$X]}\n");
        deep_merge(&mut l, p("only: {}\n"));
        assert_eq!(to_yaml(&l), "only:\n  variables:\n  - $X\n");
        deep_merge(&mut l, p("only: null\n"));
        assert_eq!(to_yaml(&l), "only: null\n");
    }
}
