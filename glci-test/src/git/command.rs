//! Running the real `git` binary with an environment that can neither prompt, nor localise
//! its output, nor be redirected at another repository by variables inherited from a hook.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::GitError;

/// Variables that make git act on some other repository, index or object store. glci may be
/// started from a git hook (which exports `GIT_DIR`, `GIT_INDEX_FILE`, ...): inheriting them
/// would make every command below read or write the wrong place.
const LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
];

/// Exit code (`None` when killed by a signal), stdout, stderr.
type RawOutput = (Option<i32>, Vec<u8>, Vec<u8>);

/// One git invocation, built up and then run with [`GitCmd::run`] or a variant.
pub(crate) struct GitCmd {
    dir: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    /// Bytes written to the command's stdin (`None`: stdin is `/dev/null`).
    input: Option<Vec<u8>>,
}

/// `git -C dir ...`.
pub(crate) fn git(dir: &Path) -> GitCmd {
    GitCmd {
        dir: dir.to_path_buf(),
        args: Vec::new(),
        envs: Vec::new(),
        input: None,
    }
}

impl GitCmd {
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Feeds `input` to the command's stdin (`cat-file --batch` questions). Meant for small
    /// inputs: it is written in full before the output is read.
    pub(crate) fn input(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.input = Some(input.into());
        self
    }

    fn display_args(&self) -> String {
        self.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command; `Ok((code, stdout))` whatever the exit code, so callers can treat
    /// "exit 1 = not found" (`rev-parse --verify -q`, `symbolic-ref -q`) as an answer.
    fn raw(&self) -> Result<RawOutput, GitError> {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&self.dir).args(&self.args);
        for var in LOCATION_VARS {
            cmd.env_remove(var);
        }
        // C locale: output we parse is never translated. No prompt: a run must never hang on a
        // credential question. No optional locks: read-only commands such as `status` must not
        // refresh (rewrite) the user's index behind their back.
        cmd.env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let out = match &self.input {
            None => cmd
                .stdin(Stdio::null())
                .output()
                .map_err(|source| GitError::Spawn { source })?,
            Some(input) => {
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().map_err(|source| GitError::Spawn { source })?;
                if let Some(mut stdin) = child.stdin.take() {
                    // A few lines: they fit the pipe, so writing before reading cannot
                    // deadlock. A write error means git exited early; its status says why.
                    let _ = std::io::Write::write_all(&mut stdin, input);
                }
                child
                    .wait_with_output()
                    .map_err(|source| GitError::Spawn { source })?
            }
        };
        Ok((out.status.code(), out.stdout, out.stderr))
    }

    fn failure(&self, code: Option<i32>, stderr: &[u8]) -> GitError {
        GitError::Command {
            dir: self.dir.clone(),
            args: self.display_args(),
            status: code.map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}")),
            stderr: String::from_utf8_lossy(stderr).trim().to_string(),
        }
    }

    /// Stdout of a command that must succeed.
    pub(crate) fn run(&self) -> Result<Vec<u8>, GitError> {
        let (code, stdout, stderr) = self.raw()?;
        if code == Some(0) {
            Ok(stdout)
        } else {
            Err(self.failure(code, &stderr))
        }
    }

    /// Stdout of a command where exit code 1 means "no such thing" (`None`).
    pub(crate) fn run_opt(&self) -> Result<Option<Vec<u8>>, GitError> {
        let (code, stdout, stderr) = self.raw()?;
        match code {
            Some(0) => Ok(Some(stdout)),
            Some(1) => Ok(None),
            _ => Err(self.failure(code, &stderr)),
        }
    }

    /// Trimmed stdout as text (one-line answers: SHAs, ref names, config values).
    pub(crate) fn text(&self) -> Result<String, GitError> {
        Ok(String::from_utf8_lossy(&self.run()?).trim().to_string())
    }

    /// Like [`GitCmd::text`], `None` on exit code 1 or empty output.
    pub(crate) fn text_opt(&self) -> Result<Option<String>, GitError> {
        Ok(self
            .run_opt()?
            .map(|o| String::from_utf8_lossy(&o).trim().to_string())
            .filter(|s| !s.is_empty()))
    }

    pub(crate) fn parse_error(&self, detail: impl Into<String>) -> GitError {
        GitError::Parse {
            dir: self.dir.clone(),
            args: self.display_args(),
            detail: detail.into(),
        }
    }
}

/// Splits NUL-terminated output (`-z`) into paths. Git prints paths verbatim with `-z`;
/// non-UTF-8 bytes are replaced rather than failing the whole listing.
pub(crate) fn split_nul(out: &[u8]) -> Vec<String> {
    out.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}
