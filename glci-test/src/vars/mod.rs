//! GitLab's variable expansion: `$X`, `${X}`, `%X%`, `$$`, no nested expansion, cycles.

mod lookup;

pub use lookup::{NoVariables, VariableLookup};
