//! The local stand-in for GitLab: runner API, git over HTTP, S3 cache and OCI registry on
//! one port.
