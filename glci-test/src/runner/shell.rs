//! Stage scripts composed as the official runner's bash shell composes them, so a job's log
//! reads as it would on GitLab: every command echoed as `$ cmd` in bold green, the stage stops
//! at the first failing command, variables exported first.
//!
//! Scripts are fed on stdin to the first shell the image has (bash, else sh), so they stay
//! POSIX: no `$'…'` quoting, escapes written as literal bytes inside single quotes.

/// `sh -c` program that execs the first shell found, which then reads the stage script from
/// stdin (the official runner's detector, same order of candidates).
pub const SHELL_DETECTOR: &str = "if [ -x /usr/local/bin/bash ]; then\n\texec /usr/local/bin/bash \n\
elif [ -x /usr/bin/bash ]; then\n\texec /usr/bin/bash \nelif [ -x /bin/bash ]; then\n\texec /bin/bash \n\
elif [ -x /usr/local/bin/sh ]; then\n\texec /usr/local/bin/sh \nelif [ -x /usr/bin/sh ]; then\n\texec /usr/bin/sh \n\
elif [ -x /bin/sh ]; then\n\texec /bin/sh \nelif [ -x /busybox/sh ]; then\n\texec /busybox/sh \n\
else\n\techo shell not found\n\texit 1\nfi\n";

const ESC: char = '\u{1b}';

/// A variable as the stage script exports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptVariable {
    pub key: String,
    pub value: String,
    /// File-type variable: the value goes to a file, the variable holds its path.
    pub file: bool,
}

/// Everything a user stage (step_script, after_script) needs.
#[derive(Debug, Clone)]
pub struct StageScript<'a> {
    pub project_dir: &'a str,
    pub variables: &'a [ScriptVariable],
    pub commands: &'a [String],
    /// `CI_DEBUG_TRACE`: run with `set -o xtrace`.
    pub debug_trace: bool,
}

/// Quotes `s` for a POSIX shell: one single-quoted word.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// `<project_dir>.tmp`: where file variables and the GITLAB_ENV file live.
pub fn tmp_dir(project_dir: &str) -> String {
    format!("{project_dir}.tmp")
}

/// A line the script prints in bold green: how commands are echoed.
fn echo_green(text: &str) -> String {
    format!(
        "printf '%s\\n' {}\n",
        shell_quote(&format!("{ESC}[32;1m{text}{ESC}[0;m"))
    )
}

/// The text a command is echoed as: multi-line commands show their first line only.
pub fn command_echo(command: &str) -> String {
    let trimmed = command.trim_end_matches('\n');
    match trimmed.split_once('\n') {
        Some((first, _)) => format!("$ {first} # collapsed multi-line command"),
        None => format!("$ {trimmed}"),
    }
}

impl StageScript<'_> {
    /// The stage body: exports, cd to the project, then each command echoed and run.
    fn body(&self) -> String {
        let mut body = String::new();
        let tmp = tmp_dir(self.project_dir);
        if self.variables.iter().any(|v| v.file) {
            body.push_str(&format!("mkdir -p {}\n", shell_quote(&tmp)));
        }
        for v in self.variables {
            if !is_shell_name(&v.key) {
                // Not exportable by a shell; it still reaches the job as container environment.
                continue;
            }
            if v.file {
                let path = format!("{tmp}/{}", v.key);
                body.push_str(&format!(
                    "printf '%s' {} > {}\nexport {}={}\n",
                    shell_quote(&v.value),
                    shell_quote(&path),
                    v.key,
                    shell_quote(&path)
                ));
            } else {
                body.push_str(&format!("export {}={}\n", v.key, shell_quote(&v.value)));
            }
        }
        // GITLAB_ENV: KEY=VALUE lines a stage writes are exported in every later stage.
        let env_file = format!("{tmp}/gitlab_runner_env");
        body.push_str(&format!(
            "mkdir -p {tmp_q}\nexport GITLAB_ENV={env_q}\n[ -f \"$GITLAB_ENV\" ] || : > \"$GITLAB_ENV\"\n\
             set -a\n. \"$GITLAB_ENV\"\nset +a\n",
            tmp_q = shell_quote(&tmp),
            env_q = shell_quote(&env_file)
        ));
        body.push_str(&format!("cd {}\n", shell_quote(self.project_dir)));
        for command in self.commands {
            body.push_str(&echo_green(&command_echo(command)));
            body.push_str(command);
            body.push('\n');
        }
        body
    }

    /// The whole script fed to the shell's stdin.
    pub fn render(&self) -> String {
        let mut script = String::new();
        script.push_str("trap 'exit 1' TERM\n");
        if self.debug_trace {
            script.push_str("set -o xtrace\n");
        }
        script.push_str(
            "if set -o | grep pipefail > /dev/null; then set -o pipefail; fi; set -o errexit\n",
        );
        script.push_str("set +o noclobber\n");
        script.push_str(&format!(
            "( trap 'exit 1' TERM; eval {} ) < /dev/null\n",
            shell_quote(&self.body())
        ));
        script.push_str("exit 0\n");
        script
    }
}

/// Whether `name` can be exported by a POSIX shell.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run_sh(script: &str) -> (i32, String) {
        let dir = tempfile::tempdir().unwrap();
        let script = script.replace("/builds/p", dir.path().to_str().unwrap());
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("sh <<'GLCI_EOF'\n{script}\nGLCI_EOF"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn quoting_survives_every_awkward_character() {
        let nasty = "it's \"quoted\" $HOME `x` \\ \n\ttab";
        let (code, out) = run_sh(&format!("printf '%s' {}", shell_quote(nasty)));
        assert_eq!(code, 0);
        assert_eq!(out, nasty);
    }

    #[test]
    fn echoes_commands_stops_at_first_failure_and_exports_variables() {
        let vars = vec![
            ScriptVariable {
                key: "GREETING".into(),
                value: "hi 'there'".into(),
                file: false,
            },
            ScriptVariable {
                key: "CONF".into(),
                value: "a=1\n".into(),
                file: true,
            },
            ScriptVariable {
                key: "not-a-name".into(),
                value: "x".into(),
                file: false,
            },
        ];
        let commands = vec![
            "echo \"$GREETING\"".to_string(),
            "cat \"$CONF\"".to_string(),
            "echo one\necho two".to_string(),
            "false".to_string(),
            "echo never".to_string(),
        ];
        let script = StageScript {
            project_dir: "/builds/p",
            variables: &vars,
            commands: &commands,
            debug_trace: false,
        };
        let (code, out) = run_sh(&script.render());
        assert_eq!(code, 1, "{out}");
        let expected = format!(
            "{ESC}[32;1m$ echo \"$GREETING\"{ESC}[0;m\nhi 'there'\n\
             {ESC}[32;1m$ cat \"$CONF\"{ESC}[0;m\na=1\n\
             {ESC}[32;1m$ echo one # collapsed multi-line command{ESC}[0;m\none\ntwo\n\
             {ESC}[32;1m$ false{ESC}[0;m\n"
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn gitlab_env_carries_variables_to_later_stages() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("proj");
        std::fs::create_dir_all(&project).unwrap();
        let project = project.to_str().unwrap().to_string();
        let first = vec!["echo FROM_FIRST=yes >> \"$GITLAB_ENV\"".to_string()];
        let second = vec!["echo \"got $FROM_FIRST\"".to_string()];
        for (commands, expect) in [(&first, ""), (&second, "got yes\n")] {
            let s = StageScript {
                project_dir: &project,
                variables: &[],
                commands,
                debug_trace: false,
            };
            let out = Command::new("sh")
                .arg("-c")
                .arg(s.render())
                .output()
                .unwrap();
            assert!(out.status.success());
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.ends_with(expect), "{stdout}");
        }
    }
}
