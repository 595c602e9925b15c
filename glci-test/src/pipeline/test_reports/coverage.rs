//! The `coverage:` figure, taken from the job log as GitLab takes it
//! (`Gitlab::Ci::Trace::Stream#extract_coverage`): the regex (RE2, `Gitlab::UntrustedRegexp`)
//! is matched against each line of the raw log from the last line backwards; on the first
//! line with a match, the last capture of the last match (the whole match when the regex has
//! no group) is searched for a number `\d+(\.\d+)?`, and that number is the figure. A line
//! whose match holds no number is passed over.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

/// Why the figure could not be looked for.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    #[error("the regex {regex:?} is not valid RE2: {source}")]
    Regex {
        regex: String,
        source: crate::expr::Re2Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The regex of a `coverage:` value: GitLab's entry takes `/…/` and drops the slashes.
pub fn compile(value: &str) -> Result<Regex, CoverageError> {
    let body = value.strip_prefix('/').unwrap_or(value);
    let body = body.strip_suffix('/').unwrap_or(body);
    crate::expr::re2_regex(body, "").map_err(|source| CoverageError::Regex {
        regex: value.to_string(),
        source,
    })
}

/// The figure in the log at `log`, read as a stream (lines are kept only while they might be
/// the last match).
pub fn from_log(value: &str, log: &Path) -> Result<Option<String>, CoverageError> {
    let regex = compile(value)?;
    let io = |source| CoverageError::Io {
        path: log.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(log).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut last = None;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            return Ok(last);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(figure) = in_line(&regex, text) {
            last = Some(figure);
        }
    }
}

/// The figure one line gives, if it gives one.
pub fn in_line(regex: &Regex, line: &str) -> Option<String> {
    static NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\d+(\.\d+)?").expect("a valid regex"));
    let caps = regex.captures_iter(line).last()?;
    // Ruby's `scan(...).flatten.last`: the last group, or the whole match without groups.
    let matched = if caps.len() > 1 {
        caps.get(caps.len() - 1)?
    } else {
        caps.get(0)?
    };
    NUMBER
        .find(matched.as_str())
        .map(|m| m.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_with_a_number_wins_and_the_last_group_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("job.log");
        std::fs::write(
            &log,
            "TOTAL 10 2 80%\nsomething\nTOTAL 12 1 91.67%\r\nTOTAL - -  n/a%\ndone\n",
        )
        .expect("write");
        assert_eq!(
            from_log(r"/TOTAL.*\s+(\S+)%/", &log)
                .expect("reads")
                .as_deref(),
            Some("91.67"),
            "the line whose match has no number is passed over"
        );
        assert_eq!(
            from_log(r"/^TOTAL\s.*\s(\d+)%$/", &log)
                .expect("reads")
                .as_deref(),
            Some("80"),
            "the last line that matches, whatever follows"
        );
        assert_eq!(from_log("/nothing here/", &log).expect("reads"), None);
        assert!(matches!(
            from_log("/(unclosed/", &log),
            Err(CoverageError::Regex { .. })
        ));
    }

    #[test]
    fn without_groups_the_whole_match_and_its_first_number() {
        let re = compile(r"/Lines:\s*\d+\.\d+%/").expect("compiles");
        assert_eq!(
            in_line(&re, "  Lines: 73.4% (147 of 200)").as_deref(),
            Some("73.4")
        );
        // RE2: \d is ASCII only.
        let re = compile(r"/cov (\d+)/").expect("compiles");
        assert_eq!(in_line(&re, "cov ٣٤"), None);
    }
}
