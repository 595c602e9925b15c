//! GitLab's variable expansion: `$X`, `${X}`, `%X%`, `$$`, no nested expansion, cycles.
