//! The Docker engine connection, labels on everything glci creates, and cleanup.
