//! A job log made comparable from run to run: what changes between two runs of the same job
//! (time, ids, random names, ports, temporary paths, runner identity) is replaced by a
//! placeholder, so a snapshot only changes when the job's behaviour does.
//!
//! Order of the steps (each sees the output of the previous one):
//! 1. raw masked values → `[MASKED]` (defence in depth: the runner masks them already);
//! 2. terminal rendering: ANSI escapes removed, `\r` overwrites applied, section markers
//!    dropped (their names and timestamps are runner bookkeeping, the section's title line
//!    stays);
//! 3. runner lines that depend on the host's state (image pulls, host names) dropped;
//! 4. the user's redactions (regex → replacement), on the rendered text;
//! 5. the built-in redactions below, in order.

use std::sync::OnceLock;

use regex::{Captures, Regex};

/// The placeholder masked values become (the runner's own mask text).
pub const MASKED: &str = "[MASKED]";

/// Turns a raw job log into the text a snapshot holds.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    redactions: Vec<(Regex, String)>,
    /// Longest first, so a secret containing another is replaced whole.
    masked: Vec<String>,
}

/// A user redaction whose pattern is not a valid regex.
#[derive(Debug, thiserror::Error)]
#[error("redaction pattern `{pattern}`: {source}")]
pub struct RedactionError {
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

impl Normalizer {
    pub fn new() -> Normalizer {
        Normalizer::default()
    }

    /// Adds a redaction: every match of `pattern` (a `regex` crate pattern) is replaced by
    /// `replacement` (`$1`, `${name}` refer to groups).
    pub fn redact(
        mut self,
        pattern: &str,
        replacement: &str,
    ) -> Result<Normalizer, RedactionError> {
        let re = Regex::new(pattern).map_err(|source| RedactionError {
            pattern: pattern.to_string(),
            source,
        })?;
        self.redactions.push((re, replacement.to_string()));
        Ok(self)
    }

    /// Values that must never appear (masked CI/CD variables); replaced by `[MASKED]` before
    /// anything else looks at the log.
    pub fn mask(mut self, values: impl IntoIterator<Item = String>) -> Normalizer {
        self.masked
            .extend(values.into_iter().filter(|v| !v.is_empty()));
        self.masked.sort_by_key(|v| std::cmp::Reverse(v.len()));
        self.masked.dedup();
        self
    }

    pub fn normalize(&self, log: &str) -> String {
        let mut text = log.to_string();
        for v in &self.masked {
            text = text.replace(v.as_str(), MASKED);
        }
        let text = render(&text);
        let mut text = drop_noise(&text);
        for (re, replacement) in &self.redactions {
            text = re.replace_all(&text, replacement.as_str()).into_owned();
        }
        let mut text = builtin(&text);
        // A snapshot does not care about trailing blanks; editors strip them anyway.
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        text = lines.join("\n");
        let trimmed = text.trim_end_matches('\n').len();
        text.truncate(trimmed);
        text.push('\n');
        text
    }
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    // The patterns are constants of this file, checked by the unit tests below.
    cell.get_or_init(|| Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")))
}

/// What a terminal shows: no escape sequences, no section markers, `\r` overwriting the
/// start of the line as it does on screen.
pub(crate) fn render(log: &str) -> String {
    static ANSI: OnceLock<Regex> = OnceLock::new();
    static SECTION: OnceLock<Regex> = OnceLock::new();
    let section = re(
        &SECTION,
        r"section_(?:start|end):\d+:[A-Za-z0-9_.\-]+(?:\[[^\]\r\n]*\])?\r?",
    );
    let ansi = re(&ANSI, r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07");
    let text = section.replace_all(log, "");
    let text = ansi.replace_all(&text, "");
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        // What follows the last carriage return is what stays visible.
        let visible = line.rsplit('\r').next().unwrap_or(line);
        out.push_str(visible);
        out.push('\n');
    }
    out.pop();
    // A section end marker sits alone on its line: the marker removed, an empty line stays.
    let mut cleaned = String::with_capacity(out.len());
    let mut previous_blank = false;
    for line in out.split('\n') {
        let blank = line.trim().is_empty();
        if blank && previous_blank {
            continue;
        }
        previous_blank = blank;
        cleaned.push_str(line);
        cleaned.push('\n');
    }
    cleaned.pop();
    cleaned.trim_start_matches('\n').to_string()
}

/// Runner lines that say more about the machine than about the job.
fn drop_noise(text: &str) -> String {
    const NOISE: &[&str] = &[
        "Pulling docker image ",
        "Using docker image sha256:",
        "Using effective pull policy",
        "Using locally found image",
        "WARNING: Failed to pull image",
    ];
    text.lines()
        .filter(|l| !NOISE.iter().any(|n| l.trim_start().starts_with(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The built-in redactions, in order: longer and more specific shapes first, so a SHA is not
/// half-eaten by an id rule.
fn builtin(text: &str) -> String {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        let table: &[(&str, &str)] = &[
            // Runner identity: version and revision change with glci (or gitlab-runner).
            (r"Running with (\S+) \S+ \([^)]*\)", "Running with $1 [VERSION]"),
            (r"(?m)^(\s*on \S+) \S+$", "$1 [RUNNER]"),
            (r"Running on (\S+) via \S+\.\.\.", "Running on $1 via [HOST]..."),
            // Times.
            (
                r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z| ?[+-]\d{2}:?\d{2}| ?UTC)?",
                "[TIMESTAMP]",
            ),
            (r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b", "[TIME]"),
            (r"\b1[5-9]\d{8}(?:\.\d+)?\b", "[UNIX_TIME]"),
            (r"\b\d+m\d+(?:\.\d+)?s\b", "[DURATION]"),
            (
                r"\b\d+\.\d+ ?(?:ns|µs|us|ms|s|sec|secs|seconds|m|min|minutes|h)\b",
                "[DURATION]",
            ),
            (r"\b\d+ ?(?:ns|µs|us|ms)\b", "[DURATION]"),
            // Digests and commits.
            (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
            (r"\b[0-9a-f]{64}\b", "[SHA256]"),
            (r"\b[0-9a-f]{40}\b", "[SHA]"),
            (
                r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
                "[UUID]",
            ),
            // GitLab tokens (job, runner, personal...) and random per-pipeline tokens.
            (
                r"\bgl(?:pat|rt|cbt|dt|ptt|ft|imt|agent|soat|oas|cst|ffct|rtr)-[A-Za-z0-9_\-.]+",
                "[TOKEN]",
            ),
            (r"\b(token|TOKEN)=[A-Za-z0-9_\-.]{8,}", "$1=[TOKEN]"),
            // Docker objects named after the owner and the job id.
            (r"\bglci-[a-z0-9]{12}\b", "glci-[OWNER]"),
            (r"-job-\d+\b", "-job-[ID]"),
            (
                r"\brunner-[0-9a-z]+-project-\d+-concurrent-\d+\b",
                "runner-[ID]-project-[ID]-concurrent-[ID]",
            ),
            // Addresses: the server listens on a random port of a host-dependent address.
            (r"\b(?:\d{1,3}\.){3}\d{1,3}:\d{1,5}\b", "[HOST]:[PORT]"),
            (r"\b(localhost|\[::1\]):\d{1,5}\b", "$1:[PORT]"),
            // Ids in runner lines and URLs.
            (r"\bid=\d+", "id=[ID]"),
            (r"/(pipelines|jobs|builds|artifacts)/\d+\b", "/$1/[ID]"),
            (r"(?i)\b(job|pipeline) #\d+", "$1 #[ID]"),
            // Temporary paths.
            (r"/tmp/[A-Za-z0-9._\-/]+", "[TMP]"),
            (r"/var/folders/[A-Za-z0-9._\-/]+", "[TMP]"),
        ];
        table
            .iter()
            .map(|(p, r)| (re_owned(p), *r))
            .collect::<Vec<_>>()
    });
    let mut text = text.to_string();
    for (re, replacement) in rules {
        text = re.replace_all(&text, *replacement).into_owned();
    }
    short_shas(&text)
}

fn re_owned(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

/// 8-digit hex words that mix digits and letters: GitLab's short SHA (`CI_COMMIT_SHORT_SHA`,
/// "Checking out 1a2b3c4d"). Words of only digits or only letters are left alone: they are
/// far more often numbers or words than commits — except the commit the runner says it
/// checked out, which is replaced wherever it appears even when it happens to be all digits
/// (one commit in 40 is), so a snapshot does not depend on the commit's luck.
fn short_shas(text: &str) -> String {
    static SHORT: OnceLock<Regex> = OnceLock::new();
    static CHECKED_OUT: OnceLock<Regex> = OnceLock::new();
    let checked_out = re(&CHECKED_OUT, r"Checking out ([0-9a-f]{8}) as detached HEAD")
        .captures(text)
        .map(|c| c[1].to_string());
    re(&SHORT, r"\b[0-9a-f]{8}\b")
        .replace_all(text, |c: &Captures<'_>| {
            let word = &c[0];
            let digits = word.bytes().any(|b| b.is_ascii_digit());
            let letters = word.bytes().any(|b| b.is_ascii_alphabetic());
            if (digits && letters) || checked_out.as_deref() == Some(word) {
                "[SHORT_SHA]".to_string()
            } else {
                word.to_string()
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_all_digit_checked_out_commit_is_still_a_short_sha() {
        assert_eq!(
            short_shas("Checking out 65481337 as detached HEAD (ref is main)...\nbuilt 65481337\nyear 20261123\n"),
            "Checking out [SHORT_SHA] as detached HEAD (ref is main)...\nbuilt [SHORT_SHA]\nyear 20261123\n"
        );
    }

    const ESC: &str = "\u{1b}";

    fn norm(s: &str) -> String {
        Normalizer::new().normalize(s)
    }

    #[test]
    fn section_markers_and_colours_are_rendered_away() {
        let log = format!(
            "{ESC}[0KRunning with glci 0.1.0 (glci){ESC}[0;m\n\
             {ESC}[0K  on glci glci00000{ESC}[0;m\n\
             section_start:1700000000:prepare_executor\r{ESC}[0K{ESC}[0K{ESC}[36;1mPreparing the \"docker\" executor{ESC}[0;m\n\
             {ESC}[0KUsing Docker executor with image glci-fixture/busybox:latest ...{ESC}[0;m\n\
             {ESC}[0KPulling docker image glci-fixture/busybox:latest ...{ESC}[0;m\n\
             section_end:1700000001:prepare_executor\r{ESC}[0K\n\
             hello\n\
             {ESC}[32;1mJob succeeded{ESC}[0;m\n"
        );
        assert_eq!(
            norm(&log),
            "Running with glci [VERSION]\n  on glci [RUNNER]\nPreparing the \"docker\" executor\n\
             Using Docker executor with image glci-fixture/busybox:latest ...\n\nhello\nJob succeeded\n"
        );
    }

    #[test]
    fn carriage_return_keeps_what_stays_visible() {
        assert_eq!(
            norm("progress 10%\rprogress 100%\r\ndone\n"),
            "progress 100%\ndone\n"
        );
    }

    #[test]
    fn times_and_durations_are_replaced() {
        let out = norm(
            "at 2026-11-23T09:44:47.123Z and 2026-11-23 09:44:47 +0100\n\
             clock 12:30:01\nepoch 1763891087\nreal 0m1.234s\ntook 1.5s, 300ms, 2.25 seconds\n",
        );
        assert_eq!(
            out,
            "at [TIMESTAMP] and [TIMESTAMP]\nclock [TIME]\nepoch [UNIX_TIME]\nreal [DURATION]\n\
             took [DURATION], [DURATION], [DURATION]\n"
        );
    }

    #[test]
    fn shas_digests_and_short_shas() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let out = norm(&format!(
            "commit {sha}\nimage sha256:{}\nChecking out 1a2b3c4d as detached HEAD (ref is main)...\nyear 20261123 word deadbeef\n",
            "a".repeat(64)
        ));
        assert_eq!(
            out,
            "commit [SHA]\nimage sha256:[DIGEST]\nChecking out [SHORT_SHA] as detached HEAD (ref is main)...\nyear 20261123 word deadbeef\n"
        );
    }

    #[test]
    fn tokens_names_ports_ids_and_paths() {
        let out = norm(
            "token glcbt-64_abcDEF123 and glrt-xyz\n\
             Running on glci-ab12cd34ef56-job-17-build via devbox...\n\
             net glci-ab12cd34ef56-job-17-network\n\
             Fetching from http://172.17.0.1:39123/glci/demo.git and localhost:8080\n\
             Downloading artifacts from coordinator... ok        id=42 responseStatus=200 OK\n\
             see /api/v4/jobs/17/artifacts and Job #17\n\
             wrote /tmp/.tmpAbC12/out.txt\n\
             uuid 123e4567-e89b-12d3-a456-426614174000\n",
        );
        assert_eq!(
            out,
            "token [TOKEN] and [TOKEN]\n\
             Running on glci-[OWNER]-job-[ID]-build via [HOST]...\n\
             net glci-[OWNER]-job-[ID]-network\n\
             Fetching from http://[HOST]:[PORT]/glci/demo.git and localhost:[PORT]\n\
             Downloading artifacts from coordinator... ok        id=[ID] responseStatus=200 OK\n\
             see /api/v4/jobs/[ID]/artifacts and Job #[ID]\n\
             wrote [TMP]\n\
             uuid [UUID]\n"
        );
    }

    #[test]
    fn masked_values_never_survive_even_if_the_runner_missed_them() {
        let n = Normalizer::new().mask(["s3cr3t".to_string(), "s3cr3t-longer".to_string()]);
        assert_eq!(
            n.normalize("a s3cr3t-longer b s3cr3t c\n"),
            "a [MASKED] b [MASKED] c\n"
        );
    }

    #[test]
    fn user_redactions_apply_with_groups_and_bad_patterns_are_named() {
        let n = Normalizer::new()
            .redact(r"build (\d+)", "build [N]")
            .and_then(|n| n.redact(r"user=(\w+)", "user=<$1>"));
        let n = match n {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(n.normalize("build 77 user=bob\n"), "build [N] user=<bob>\n");
        let err = Normalizer::new().redact("(unclosed", "x").err();
        assert!(err.is_some_and(|e| e.to_string().starts_with("redaction pattern `(unclosed`")),);
    }

    #[test]
    fn trailing_blanks_go_and_output_ends_with_one_newline() {
        assert_eq!(norm("a  \n\n\nb\n\n\n"), "a\n\nb\n");
        assert_eq!(norm(""), "\n");
    }

    #[test]
    fn the_same_job_twice_normalizes_identically() {
        let run = |ts: u64, id: u32, owner: &str, port: u16| {
            format!(
                "section_start:{ts}:step_script\r{ESC}[0K{ESC}[0K{ESC}[36;1mExecuting \"step_script\" stage of the job script{ESC}[0;m\n\
                 Running on glci-{owner}-job-{id}-build via h...\n\
                 $ echo hi\nhi\nsection_end:{}:step_script\r{ESC}[0K\n\
                 from http://10.0.0.1:{port}/x\n",
                ts + 3
            )
        };
        assert_eq!(
            norm(&run(1_700_000_000, 3, "aaaaaaaaaaaa", 1234)),
            norm(&run(1_763_000_000, 99, "bbbbbbbbbbbb", 40000))
        );
    }
}
