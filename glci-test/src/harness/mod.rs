//! Jobs as libtest trials: plan → trials, DAG-aware scheduling, snapshot assertions.

pub mod normalize;
