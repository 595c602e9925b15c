//! The built-in runner: takes jobs over the runner API and runs them with the Docker engine.
