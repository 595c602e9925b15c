//! The public entry point: read `.gitlab-ci.yml` from a project directory and run every step
//! GitLab runs before it validates entries, in GitLab's order: includes (each file
//! interpolated first), `extends`, `!reference`, `default:`/`inherit:`, hidden jobs dropped,
//! command lists and rules flattened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::defaults::apply_defaults;
use super::error::ConfigError;
use super::extends::apply_extends;
use super::flatten::flatten_lists;
use super::include::files::{self, ReadError};
use super::include::{string_inputs, FetchSources, FileCtx, Includer, MAX_FILE_BYTES};
use super::jobs::drop_hidden;
use super::reference::resolve_references;
use super::value::{Node, Span};
use super::yaml::{parse_documents, Documents, TOO_BIG};

/// What to load and how to reach what it includes.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The project's root directory (local includes are relative to it).
    pub project_dir: PathBuf,
    /// The configuration file, relative to `project_dir`.
    pub file: String,
    /// `group/project` → local checkout, for `include:project` and `include:component`.
    pub project_map: BTreeMap<String, PathBuf>,
    /// A directory holding GitLab's CI templates, for `include:template` (else they are
    /// fetched from `sources`).
    pub template_dir: Option<PathBuf>,
    /// Where `include:template` and unmapped `include:component` are fetched from.
    pub sources: FetchSources,
    /// Variables for include paths, `include:rules` and `| expand_vars` (predefined and
    /// CI/CD variables; YAML `variables:` never apply there).
    pub variables: Vec<(String, String)>,
    /// Pipeline inputs for the main file's `spec:inputs`, as strings (typed inputs are read
    /// as JSON, as GitLab does).
    pub inputs: Vec<(String, String)>,
    /// Files the pipeline's push changed, for `include:rules:changes`; `None` (no diff
    /// known) makes `changes` match, as GitLab does when it has no diff.
    pub changed_files: Option<Vec<String>>,
    /// Deadline for one `include:remote` fetch (GitLab: 30 s).
    pub remote_timeout: Duration,
    /// Let `include:remote` fetch from loopback, private and link-local addresses (GitLab's
    /// `allow_local_requests_from_web_hooks_and_services`, off by default).
    pub allow_private_remote: bool,
    /// Where fetched includes (remote, template, component) are kept (`GLCI_HOME/includes`);
    /// `None`: nowhere.
    pub include_cache: Option<PathBuf>,
    /// Read fetched includes only from `include_cache`, never from the network.
    pub offline: bool,
    /// The parent pipeline's jobs and their extracted artifacts, when the configuration is a
    /// child pipeline's (`include:artifact` reads from them); `None` for a pipeline of its own.
    pub parent_artifacts: Option<BTreeMap<String, PathBuf>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            project_dir: PathBuf::from("."),
            file: ".gitlab-ci.yml".into(),
            project_map: BTreeMap::new(),
            template_dir: None,
            sources: FetchSources::default(),
            variables: Vec::new(),
            inputs: Vec::new(),
            changed_files: None,
            remote_timeout: Duration::from_secs(30),
            allow_private_remote: false,
            include_cache: None,
            offline: false,
            parent_artifacts: None,
        }
    }
}

impl LoadOptions {
    /// Options for the project in `project_dir`, everything else at its default.
    pub fn new(project_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            project_dir: project_dir.into(),
            ..LoadOptions::default()
        }
    }
}

/// Where a file that was read came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    Path(PathBuf),
    Url(String),
}

/// A file that went into the configuration, under the name its spans use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub location: SourceLocation,
}

/// The resolved configuration and the files it was made from (main file first).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub tree: Node,
    pub files: Vec<SourceFile>,
}

/// The main configuration file, read and parsed. Neither needs variables, so a caller can
/// do it on another thread while it asks git for the repository facts ([`read_main`]).
#[derive(Debug)]
pub struct MainFile {
    name: String,
    path: PathBuf,
    text: Result<String, ConfigError>,
    /// `None` when the file is not parsed ahead (unreadable, empty or over the size limit:
    /// [`load_main`] reports that first, as GitLab does).
    docs: Option<Result<Documents, ConfigError>>,
}

/// Reads and parses `file` of `project_dir` (see [`MainFile`]).
pub fn read_main(project_dir: &Path, file: &str) -> MainFile {
    let name = file.trim_start_matches('/').to_string();
    let path = project_dir.join(&name);
    let text = files::read_config_file(project_dir, &path, MAX_FILE_BYTES).map_err(|e| match e {
        ReadError::TooBig { .. } => {
            let start = Span {
                file: Arc::from(name.as_str()),
                line: 1,
                col: 1,
            };
            ConfigError::at(&start, format!("`{name}`: {TOO_BIG}"))
        }
        e => ConfigError::bare(format!("{name}: {e}")),
    });
    let docs = text
        .as_ref()
        .ok()
        .filter(|t| !t.trim().is_empty() && t.len() <= MAX_FILE_BYTES)
        .map(|t| parse_documents(t, &name));
    MainFile {
        name,
        path,
        text,
        docs,
    }
}

/// Loads and resolves the pipeline configuration of `opts.project_dir`.
pub fn load(opts: &LoadOptions) -> Result<Resolved, ConfigError> {
    load_main(opts, read_main(&opts.project_dir, &opts.file))
}

/// [`load`] with the main file already read ([`read_main`] of the same `opts`).
pub fn load_main(opts: &LoadOptions, main: MainFile) -> Result<Resolved, ConfigError> {
    let MainFile {
        name,
        path,
        text,
        docs,
    } = main;
    let text = text?;
    let start = Span {
        file: Arc::from(name.as_str()),
        line: 1,
        col: 1,
    };
    if text.trim().is_empty() {
        return Err(ConfigError::at(
            &start,
            "Please provide content of .gitlab-ci.yml",
        ));
    }
    let mut includer = Includer::new(opts);
    includer.record(&name, SourceLocation::Path(path.clone()), &text, &start)?;
    let docs = match docs {
        Some(docs) => docs?,
        None => parse_documents(&text, &name)?,
    };
    let ctx = FileCtx {
        root: opts.project_dir.clone(),
        project: None,
        component: None,
    };
    let provided = string_inputs(&opts.inputs, &start);
    let tree = includer.process_documents(
        docs,
        &ctx,
        &provided,
        &start,
        "Invalid configuration format",
    )?;
    let tree = resolve_tree(tree)?;
    Ok(Resolved {
        tree,
        files: includer.files,
    })
}

/// The configuration of a child pipeline: as `Ci::Bridge#downstream_pipeline_params` gives
/// GitLab's pipeline creation a YAML holding only `include:` with the trigger's entries, the
/// tree starts as `{include: <entries>}` and goes through every step [`load_main`] takes.
/// `at` is where the trigger's `include` is written (errors without a file of their own point
/// there).
pub fn load_child(
    opts: &LoadOptions,
    include: &[Node],
    at: &Span,
) -> Result<Resolved, ConfigError> {
    let mut map = super::value::Mapping::default();
    map.insert(
        super::value::Key::new("include", at.clone()),
        Node::new(super::value::Value::Seq(include.to_vec()), at.clone()),
    );
    let docs = Documents {
        header: None,
        content: Node::new(super::value::Value::Map(map), at.clone()),
    };
    let mut includer = Includer::new(opts);
    let ctx = FileCtx {
        root: opts.project_dir.clone(),
        project: None,
        component: None,
    };
    let provided = string_inputs(&[], at);
    let tree =
        includer.process_documents(docs, &ctx, &provided, at, "Invalid configuration format")?;
    let tree = resolve_tree(tree)?;
    Ok(Resolved {
        tree,
        files: includer.files,
    })
}

/// The steps after include merging, for a tree already in memory.
pub fn resolve_tree(mut tree: Node) -> Result<Node, ConfigError> {
    apply_extends(&mut tree)?;
    resolve_references(&mut tree)?;
    apply_defaults(&mut tree)?;
    drop_hidden(&mut tree)?;
    flatten_lists(&mut tree)?;
    Ok(tree)
}
