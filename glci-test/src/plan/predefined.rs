//! Predefined variables (`CI_*`, `GITLAB_*`) for an event, from the real repository.
