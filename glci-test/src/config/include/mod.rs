//! `include:` as GitLab's `External::Processor` does it, per file: read, interpolate inputs,
//! resolve that file's own includes (rules, variables, wildcards), then deep-merge the
//! included files in order and the including file last. `project` is read from a local
//! checkout the user maps; `remote` is fetched over HTTP; `template` and `component` are read
//! from a mapped directory when there is one, else fetched ([`fetched`]).

mod cache;
mod condition;
mod fetched;
pub mod files;
mod remote;
mod rules;

use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::expand::expand;
use super::inputs::{interpolate, ComponentInfo, Context};
use super::load_options::{LoadOptions, SourceFile, SourceLocation};
use super::merge::deep_merge;
use super::value::{Key, Mapping, Node, Span, Value};
use super::yaml::{parse_documents, Documents, TOO_BIG};

/// GitLab's `ci_max_includes` default: every included file counts, repeats too.
pub const MAX_INCLUDES: usize = 150;
/// GitLab's `max_yaml_size_bytes` default, per file.
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
/// GitLab's `ci_max_total_yaml_size_bytes` default.
pub const MAX_TOTAL_BYTES: usize = MAX_INCLUDES * MAX_FILE_BYTES;

const TYPES: &[&str] = &[
    "local",
    "project",
    "remote",
    "template",
    "artifact",
    "component",
];
const VALID_SUBKEYS: &str = "`local`, `project`, `remote`, `template`, `artifact`, `component`";

/// The project a file belongs to: `local` includes inside it are read from `root`.
#[derive(Debug, Clone)]
pub struct FileCtx {
    pub root: PathBuf,
    /// `None` for the pipeline's own project.
    pub project: Option<String>,
    pub component: Option<ComponentInfo>,
}

/// One file to read, found from an `include:` entry.
struct Found {
    name: String,
    text: String,
    location: SourceLocation,
    ctx: FileCtx,
}

/// Walks the include graph of one pipeline, counting files and bytes.
pub struct Includer<'a> {
    opts: &'a LoadOptions,
    pub files: Vec<SourceFile>,
    included: usize,
    bytes: usize,
}

impl<'a> Includer<'a> {
    pub fn new(opts: &'a LoadOptions) -> Self {
        Includer {
            opts,
            files: Vec::new(),
            included: 0,
            bytes: 0,
        }
    }

    /// Records a file that was read and checks the size limits.
    pub fn record(
        &mut self,
        name: &str,
        location: SourceLocation,
        text: &str,
        at: &Span,
    ) -> Result<(), ConfigError> {
        if text.len() > MAX_FILE_BYTES {
            return Err(ConfigError::at(at, format!("`{name}`: {TOO_BIG}")));
        }
        self.bytes = self.bytes.saturating_add(text.len());
        if self.bytes > MAX_TOTAL_BYTES {
            return Err(ConfigError::at(
                at,
                "Total size of combined CI/CD configuration is too big",
            ));
        }
        self.files.push(SourceFile {
            name: name.to_string(),
            location,
        });
        Ok(())
    }

    /// Parses, interpolates and composes one file with everything it includes.
    pub fn process(
        &mut self,
        text: &str,
        name: &str,
        ctx: &FileCtx,
        provided: &Mapping,
        given_at: &Span,
        not_a_hash: &str,
    ) -> Result<Node, ConfigError> {
        let docs = parse_documents(text, name)?;
        self.process_documents(docs, ctx, provided, given_at, not_a_hash)
    }

    /// [`Includer::process`] for a file already parsed.
    pub fn process_documents(
        &mut self,
        docs: Documents,
        ctx: &FileCtx,
        provided: &Mapping,
        given_at: &Span,
        not_a_hash: &str,
    ) -> Result<Node, ConfigError> {
        let context = Context {
            variables: &self.opts.variables,
            component: ctx.component.as_ref(),
            given_at,
        };
        let mut content = interpolate(docs.header.as_ref(), docs.content, provided, &context)?;
        let Value::Map(map) = &mut content.value else {
            return Err(ConfigError::at(&content.span, not_a_hash));
        };
        let Some((_, include)) = map.shift_remove_entry("include") else {
            return Ok(content);
        };
        let mut merged = Node::new(Value::Map(Mapping::default()), content.span.clone());
        for item in entries(&include)? {
            for found in self.resolve(item, ctx)? {
                self.included += 1;
                if self.included > MAX_INCLUDES {
                    return Err(ConfigError::at(
                        &item.span,
                        format!("Maximum of {MAX_INCLUDES} nested includes are allowed!"),
                    ));
                }
                self.record(&found.name, found.location.clone(), &found.text, &item.span)?;
                let provided = item_inputs(item)?;
                let node = self.process(
                    &found.text,
                    &found.name,
                    &found.ctx,
                    &provided,
                    &item.span,
                    &format!(
                        "Included file `{}` does not have valid YAML syntax!",
                        found.name
                    ),
                )?;
                deep_merge(&mut merged, node);
            }
        }
        deep_merge(&mut merged, content);
        Ok(merged)
    }

    /// The files one `include:` entry stands for (none when its rules exclude it).
    fn resolve(&self, item: &Node, ctx: &FileCtx) -> Result<Vec<Found>, ConfigError> {
        let vars = &self.opts.variables;
        let at = &item.span;
        let map =
            match &item.value {
                Value::String(s) => {
                    let location = expand(s, vars);
                    return if is_url(&location) {
                        self.remote(&location, None, ctx, at).map(|f| vec![f])
                    } else {
                        self.local(&location, ctx, at)
                    };
                }
                Value::Map(m) => m,
                _ => return Err(ConfigError::at(
                    at,
                    "include config should be a string, a hash, or an array of strings and hashes",
                )),
            };
        let types: Vec<&str> = TYPES
            .iter()
            .copied()
            .filter(|t| map.contains_key(*t))
            .collect();
        let kind = match types.as_slice() {
            [one] => *one,
            [] => {
                return Err(ConfigError::at(
                    at,
                    format!(
                        "`{}` does not have a valid subkey for include. Valid subkeys are: {VALID_SUBKEYS}",
                        super::inputs::to_s(item)
                    ),
                ))
            }
            _ => {
                return Err(ConfigError::at(
                    at,
                    format!("Each include must use only one of: {VALID_SUBKEYS}"),
                ))
            }
        };
        if let Some(rules) = item.get("rules") {
            let roots = Roots {
                includer: self,
                ctx,
            };
            if !rules::included(rules, vars, &roots, self.opts.changed_files.as_deref())? {
                return Ok(Vec::new());
            }
        }
        let string = |key: &str| -> Result<String, ConfigError> {
            let node = item.get(key).unwrap_or(item);
            node.as_str().map(|s| expand(s, vars)).ok_or_else(|| {
                ConfigError::at(&node.span, format!("include `{key}` should be a string"))
            })
        };
        match kind {
            "local" => self.local(&string("local")?, ctx, at),
            "remote" => {
                let integrity = item.get("integrity").and_then(Node::as_str);
                self.remote(&string("remote")?, integrity, ctx, at)
                    .map(|f| vec![f])
            }
            "project" => self.project(&string("project")?, item, at),
            "template" => self
                .template(&string("template")?, ctx, at)
                .map(|f| vec![f]),
            "component" => self
                .component(&string("component")?, ctx, at)
                .map(|f| vec![f]),
            _ => self
                .artifact(&string("artifact")?, item, at)
                .map(|f| vec![f]),
        }
    }

    fn local(&self, path: &str, ctx: &FileCtx, at: &Span) -> Result<Vec<Found>, ConfigError> {
        let path = path.trim_start_matches('/');
        if path.contains('*') {
            let Some(re) = files::wildcard_regex(path) else {
                return Err(ConfigError::at(
                    at,
                    format!("Local file `{path}` is not a valid wildcard path"),
                ));
            };
            return files::list(&ctx.root)
                .into_iter()
                .filter(|f| re.is_match(f))
                .map(|f| self.local_file(&f, ctx, at))
                .collect();
        }
        self.local_file(path, ctx, at).map(|f| vec![f])
    }

    fn local_file(&self, path: &str, ctx: &FileCtx, at: &Span) -> Result<Found, ConfigError> {
        check_extension(path, at)?;
        let missing = || match &ctx.project {
            None => format!("Local file `{path}` does not exist!"),
            Some(p) => format!("Project `{p}` file `{path}` does not exist!"),
        };
        let full = files::inside(&ctx.root, path)
            .filter(|p| p.is_file())
            .ok_or_else(|| ConfigError::at(at, missing()))?;
        let text = read(&ctx.root, &full, path, at)?;
        if text.trim().is_empty() {
            return Err(ConfigError::at(
                at,
                match &ctx.project {
                    None => format!("Local file `{path}` is empty!"),
                    Some(p) => format!("Project `{p}` file `{path}` is empty!"),
                },
            ));
        }
        Ok(Found {
            name: display_name(ctx.project.as_deref(), path),
            text,
            location: SourceLocation::Path(full),
            ctx: FileCtx {
                component: None,
                ..ctx.clone()
            },
        })
    }

    /// `include:artifact` + `job`: a file of an earlier job's artifacts of the parent pipeline
    /// (dynamic child pipelines), with GitLab's messages (`External::File::Artifact`,
    /// `Gitlab::Ci::ArtifactFileReader`).
    fn artifact(&self, path: &str, item: &Node, at: &Span) -> Result<Found, ConfigError> {
        let Some(parent) = &self.opts.parent_artifacts else {
            return Err(ConfigError::at(
                at,
                "Including configs from artifacts is only allowed when triggering child pipelines",
            ));
        };
        let Some(job) = item
            .get("job")
            .and_then(Node::as_str)
            .filter(|j| !j.is_empty())
        else {
            return Err(ConfigError::at(
                at,
                "Job must be provided when including configs from artifacts",
            ));
        };
        let Some(root) = parent.get(job) else {
            return Err(ConfigError::at(
                at,
                format!("Job `{job}` not found in parent pipeline or does not have artifacts!"),
            ));
        };
        let path = path.trim_start_matches('/');
        check_extension(path, at)?;
        let full = files::inside(root, path).ok_or_else(|| {
            ConfigError::at(
                at,
                format!("Path `{path}` does not exist inside the `{job}` artifacts archive!"),
            )
        })?;
        if full.is_dir() {
            return Err(ConfigError::at(
                at,
                format!("Path `{path}` was expected to be a file but it was a directory!"),
            ));
        }
        if !full.is_file() {
            return Err(ConfigError::at(
                at,
                format!("Path `{path}` does not exist inside the `{job}` artifacts archive!"),
            ));
        }
        let text = read(root, &full, path, at)?;
        if text.trim().is_empty() {
            return Err(ConfigError::at(at, format!("File `{path}` is empty!")));
        }
        Ok(Found {
            name: format!("{job}:{path}"),
            text,
            location: SourceLocation::Path(full),
            ctx: FileCtx {
                root: self.opts.project_dir.clone(),
                project: None,
                component: None,
            },
        })
    }

    fn project(&self, project: &str, item: &Node, at: &Span) -> Result<Vec<Found>, ConfigError> {
        let root = self.project_root(project, at)?;
        let files: Vec<String> = match item.get("file").map(|f| &f.value) {
            Some(Value::String(s)) => vec![expand(s, &self.opts.variables)],
            Some(Value::Seq(items)) => items
                .iter()
                .filter_map(Node::as_str)
                .map(|s| expand(s, &self.opts.variables))
                .collect(),
            _ => {
                return Err(ConfigError::at(
                    at,
                    format!("include `project: {project}` must specify the file where to fetch the config from"),
                ))
            }
        };
        let ctx = FileCtx {
            root,
            project: Some(project.to_string()),
            component: None,
        };
        files
            .iter()
            .map(|f| self.local_file(f.trim_start_matches('/'), &ctx, at))
            .collect()
    }

    fn project_root(&self, project: &str, at: &Span) -> Result<PathBuf, ConfigError> {
        self.opts.project_map.get(project).cloned().ok_or_else(|| {
            ConfigError::at(
                at,
                format!("project `{project}` is not available locally: map it to a checkout with `--project {project}=PATH`"),
            )
        })
    }

    fn remote(
        &self,
        url: &str,
        integrity: Option<&str>,
        ctx: &FileCtx,
        at: &Span,
    ) -> Result<Found, ConfigError> {
        check_extension(url, at)?;
        // GitLab fetches a remote file for every pipeline: the cache only serves `--offline`.
        let text = fetched::text(self.opts, url, false).map_err(|e| {
            ConfigError::at(
                at,
                match e {
                    fetched::Unavailable::NotCached => format!(
                        "Remote file `{url}` is not in glci's include cache and `--offline` is set: run once without `--offline` to fetch it"
                    ),
                    fetched::Unavailable::Fetch(e) => e.remote_message(url),
                },
            )
        })?;
        if let Some(integrity) = integrity {
            remote::check_integrity(url, &text, integrity)
                .map_err(|e| ConfigError::at(at, e.to_string()))?;
        }
        if text.trim().is_empty() {
            return Err(ConfigError::at(
                at,
                format!("Remote file `{url}` is empty!"),
            ));
        }
        Ok(Found {
            name: url.to_string(),
            text,
            location: SourceLocation::Url(url.to_string()),
            ctx: FileCtx {
                component: None,
                ..ctx.clone()
            },
        })
    }

    fn template(&self, name: &str, ctx: &FileCtx, at: &Span) -> Result<Found, ConfigError> {
        check_extension(name, at)?;
        let (text, location) = match &self.opts.template_dir {
            Some(dir) => {
                let full = files::inside(dir, name)
                    .filter(|p| p.is_file())
                    .ok_or_else(|| {
                        ConfigError::at(
                            at,
                            format!("Template file `{name}` is not a valid location! (no such file in `--template-dir` {})", dir.display()),
                        )
                    })?;
                (read(dir, &full, name, at)?, SourceLocation::Path(full))
            }
            None => {
                if files::inside(Path::new(""), name).is_none() {
                    return Err(ConfigError::at(
                        at,
                        format!("Template file `{name}` is not a valid location!"),
                    ));
                }
                let url = self.opts.sources.template(name);
                let text = fetched::text(self.opts, &url, true).map_err(|e| {
                    let hint = match e {
                        fetched::Unavailable::Fetch(remote::FetchError::Status(404)) => {
                            "no such template in that GitLab version: check the name, pick another version with `--template-ref`"
                        }
                        _ => "pass `--template-dir DIR` (a copy of GitLab's `lib/gitlab/ci/templates`) to read templates locally",
                    };
                    ConfigError::at(
                        at,
                        format!("Template file `{name}` could not be read from `{url}`: {e}; {hint}"),
                    )
                })?;
                (text, SourceLocation::Url(url))
            }
        };
        if text.trim().is_empty() {
            return Err(ConfigError::at(
                at,
                format!("Template file `{name}` is empty!"),
            ));
        }
        Ok(Found {
            name: format!("template:{name}"),
            text,
            location,
            ctx: FileCtx {
                component: None,
                ..ctx.clone()
            },
        })
    }

    fn component(&self, address: &str, ctx: &FileCtx, at: &Span) -> Result<Found, ConfigError> {
        let bad = || {
            ConfigError::at(
                at,
                format!("component `{address}` should be `<fqdn>/<project-path>/<component-name>@<version>`"),
            )
        };
        let (path, version) = address.rsplit_once('@').ok_or_else(bad)?;
        let (fqdn, rest) = path.split_once('/').ok_or_else(bad)?;
        let (project, name) = rest.rsplit_once('/').ok_or_else(bad)?;
        if project.is_empty() || name.is_empty() || version.is_empty() {
            return Err(bad());
        }
        let mapped = self
            .opts
            .project_map
            .get(path.rsplit_once('/').map_or(path, |(p, _)| p))
            .or_else(|| self.opts.project_map.get(project));
        let Some(root) = mapped.cloned() else {
            return self.fetched_component(address, fqdn, project, name, version, ctx, at);
        };
        let candidates = [
            format!("templates/{name}.yml"),
            format!("templates/{name}/template.yml"),
        ];
        let (rel, full) = candidates
            .iter()
            .find_map(|c| files::inside(&root, c).filter(|p| p.is_file()).map(|p| (c.clone(), p)))
            .ok_or_else(|| {
                ConfigError::at(
                    at,
                    format!(
                        "component `{address}` not found in {}: expected templates/{name}.yml or templates/{name}/template.yml",
                        root.display()
                    ),
                )
            })?;
        let text = read(&root, &full, &rel, at)?;
        if text.trim().is_empty() {
            return Err(ConfigError::at(
                at,
                format!("Component file `{rel}` of `{address}` is empty!"),
            ));
        }
        let info = ComponentInfo {
            name: name.to_string(),
            sha: head_sha(&root),
            version: version.to_string(),
            reference: version.to_string(),
        };
        Ok(Found {
            name: format!("{project}:{rel}"),
            text,
            location: SourceLocation::Path(full),
            ctx: FileCtx {
                root,
                project: Some(project.to_string()),
                component: Some(info),
            },
        })
    }

    /// A component of a project no `--project` maps: its `templates/<name>.yml`, else
    /// `templates/<name>/template.yml`, fetched at `version` from the project's host, as
    /// GitLab's `Components::InstancePath` reads them from the repository.
    #[allow(clippy::too_many_arguments)]
    fn fetched_component(
        &self,
        address: &str,
        fqdn: &str,
        project: &str,
        name: &str,
        version: &str,
        ctx: &FileCtx,
        at: &Span,
    ) -> Result<Found, ConfigError> {
        let unmapped = format!("or map the project to a checkout with `--project {project}=PATH`");
        if version.starts_with('~') {
            return Err(ConfigError::at(
                at,
                format!("component `{address}`: glci cannot ask the CI/CD catalog for `{version}`: pin a version (a tag or commit SHA) {unmapped}"),
            ));
        }
        let candidates = [
            format!("templates/{name}.yml"),
            format!("templates/{name}/template.yml"),
        ]
        .map(|rel| {
            let url = self
                .opts
                .sources
                .component_file(fqdn, project, version, &rel);
            (rel, url)
        });
        // A fixed version found in the cache under either layout is not asked for again.
        let reuse = fetched::is_fixed_version(version)
            && candidates
                .iter()
                .any(|(_, url)| fetched::cached(self.opts, url).is_some());
        let mut tried = Vec::new();
        for (rel, url) in candidates {
            let got = if reuse {
                fetched::cached(self.opts, &url).ok_or(fetched::Unavailable::NotCached)
            } else {
                fetched::text(self.opts, &url, false)
            };
            match got {
                Ok(text) => {
                    if text.trim().is_empty() {
                        return Err(ConfigError::at(
                            at,
                            format!("Component file `{rel}` of `{address}` is empty!"),
                        ));
                    }
                    let sha = if version.len() == 40 { version } else { "" };
                    return Ok(Found {
                        name: url.clone(),
                        text,
                        location: SourceLocation::Url(url),
                        ctx: FileCtx {
                            project: Some(project.to_string()),
                            component: Some(ComponentInfo {
                                name: name.to_string(),
                                sha: sha.to_string(),
                                version: version.to_string(),
                                reference: version.to_string(),
                            }),
                            ..ctx.clone()
                        },
                    });
                }
                // The first layout missing: try the second.
                Err(fetched::Unavailable::Fetch(remote::FetchError::Status(404)))
                | Err(fetched::Unavailable::NotCached) => tried.push(url),
                Err(e) => {
                    return Err(ConfigError::at(
                        at,
                        format!(
                            "component `{address}` could not be read from `{url}`: {e}; {unmapped}"
                        ),
                    ))
                }
            }
        }
        let why = if self.opts.offline {
            "not in glci's include cache and `--offline` is set"
        } else {
            "HTTP code `404`"
        };
        Err(ConfigError::at(
            at,
            format!(
                "component `{address}` not found: `{}` ({why}); check the name and version {unmapped}",
                tried.join("` and `")
            ),
        ))
    }
}

/// `include:rules:exists` looks in the including file's project, or a named mapped one.
struct Roots<'a, 'b> {
    includer: &'a Includer<'b>,
    ctx: &'a FileCtx,
}

impl rules::ExistsRoot for Roots<'_, '_> {
    fn root_for(&self, project: Option<&str>, at: &Node) -> Result<PathBuf, ConfigError> {
        match project {
            None => Ok(self.ctx.root.clone()),
            Some(p) => self.includer.project_root(p, &at.span),
        }
    }
}

/// `include:` as a list of entries (a single string or hash is a list of one).
fn entries(include: &Node) -> Result<Vec<&Node>, ConfigError> {
    match &include.value {
        Value::Null => Ok(Vec::new()),
        Value::String(_) | Value::Map(_) => Ok(vec![include]),
        // The mapper's `Array.wrap(...).compact`: null entries are dropped.
        Value::Seq(items) => Ok(items
            .iter()
            .filter(|i| !matches!(i.value, Value::Null))
            .collect()),
        _ => Err(ConfigError::at(
            &include.span,
            "include config should be a string, a hash, or an array of strings and hashes",
        )),
    }
}

fn item_inputs(item: &Node) -> Result<Mapping, ConfigError> {
    match item.get("inputs") {
        None => Ok(Mapping::default()),
        Some(n) => match &n.value {
            Value::Map(m) => Ok(m.clone()),
            Value::Null => Ok(Mapping::default()),
            _ => Err(ConfigError::at(&n.span, "include inputs should be a hash")),
        },
    }
}

/// GitLab's `UrlSanitizer.valid?` for the string form: an http(s) URL with a host.
fn is_url(s: &str) -> bool {
    ["http://", "https://"].iter().any(|p| {
        s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p))
            && s.len() > p.len()
            && !s.contains(char::is_whitespace)
    })
}

fn check_extension(location: &str, at: &Span) -> Result<(), ConfigError> {
    let lower = location.to_ascii_lowercase();
    let stem_ok = |ext: &str| lower.strip_suffix(ext).is_some_and(|s| !s.is_empty());
    if stem_ok(".yml") || stem_ok(".yaml") {
        Ok(())
    } else {
        Err(ConfigError::at(
            at,
            format!("Included file `{location}` does not have YAML extension!"),
        ))
    }
}

/// Reads an included file of the project at `root` ([`files::read_config_file`]); a file over
/// the size limit gets GitLab's error for it.
fn read(root: &Path, path: &Path, name: &str, at: &Span) -> Result<String, ConfigError> {
    files::read_config_file(root, path, MAX_FILE_BYTES).map_err(|e| match e {
        files::ReadError::TooBig { .. } => ConfigError::at(at, format!("`{name}`: {TOO_BIG}")),
        e => ConfigError::at(at, e.to_string()),
    })
}

fn display_name(project: Option<&str>, path: &str) -> String {
    match project {
        None => path.to_string(),
        Some(p) => format!("{p}:{path}"),
    }
}

/// The commit a mapped checkout is at, for `$[[ component.sha ]]` (empty when not a git repo).
fn head_sha(root: &Path) -> String {
    crate::git::Repo::discover(root)
        .and_then(|repo| repo.head_sha())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Pipeline inputs given as strings, as a mapping (typed inputs are JSON-read when checked).
pub fn string_inputs(inputs: &[(String, String)], at: &Span) -> Mapping {
    inputs
        .iter()
        .map(|(k, v)| {
            (
                Key::new(k.clone(), at.clone()),
                Node::new(Value::String(v.clone()), at.clone()),
            )
        })
        .collect()
}
