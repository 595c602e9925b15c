//! The public entry point: read `.gitlab-ci.yml` from a project directory and run every step
//! GitLab runs before it validates entries, in GitLab's order: includes (each file
//! interpolated first), `extends`, `!reference`, `default:`/`inherit:`, hidden jobs dropped,
//! command lists and rules flattened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::defaults::apply_defaults;
use super::error::ConfigError;
use super::extends::apply_extends;
use super::flatten::flatten_lists;
use super::include::files::{self, ReadError};
use super::include::{string_inputs, FileCtx, Includer, MAX_FILE_BYTES};
use super::jobs::drop_hidden;
use super::load_options::{LoadOptions, SourceFile, SourceLocation};
use super::reference::resolve_references;
use super::value::{Node, Span};
use super::yaml::{parse_documents, Documents, TOO_BIG};

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
