//! `artifacts:reports:dotenv` parsing with GitLab's rules (`ParseDotenvArtifactService`):
//! every line must be `KEY=VALUE` (no blank lines, no comments), key and value are trimmed,
//! values are taken literally (no quote removal), the last duplicate wins, keys follow
//! GitLab's variable-name format, the stored file must be smaller than the size limit, and
//! at most `max_variables` distinct keys are accepted.

use std::io::Read;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DotenvError {
    #[error("Dotenv Artifact Too Big. Maximum Allowable Size: {0}")]
    TooBig(u64),
    #[error("Dotenv files cannot have more than {0} variables")]
    TooManyVariables(usize),
    #[error("Invalid Format at line {0}")]
    InvalidFormat(usize),
    #[error("line {0}: variable name {1:?} may only contain letters, digits and '_'")]
    InvalidKey(usize, String),
    #[error("the dotenv report is not a valid gzip stream: {0}")]
    Gzip(String),
}

/// Parses a gzip'd dotenv report as uploaded (one gzip member per file).
pub(crate) fn parse_gzip(
    compressed: &[u8],
    max_bytes: u64,
    max_variables: usize,
) -> Result<Vec<(String, String)>, DotenvError> {
    // GitLab checks the stored (compressed) file size.
    if compressed.len() as u64 >= max_bytes {
        return Err(DotenvError::TooBig(max_bytes));
    }
    let mut text = Vec::new();
    // Bounded so a gzip bomb cannot exhaust memory.
    flate2::read::MultiGzDecoder::new(compressed)
        .take(max_bytes.saturating_mul(1024))
        .read_to_end(&mut text)
        .map_err(|e| DotenvError::Gzip(e.to_string()))?;
    parse(&String::from_utf8_lossy(&text), max_variables)
}

pub(crate) fn parse(
    text: &str,
    max_variables: usize,
) -> Result<Vec<(String, String)>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars: Vec<(String, String)> = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(DotenvError::InvalidFormat(line_no));
        };
        let key = key.trim();
        let value = value.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(DotenvError::InvalidKey(line_no, key.to_string()));
        }
        match vars.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => vars.push((key.to_string(), value.to_string())),
        }
    }
    if vars.len() > max_variables {
        return Err(DotenvError::TooManyVariables(max_variables));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_like_gitlab() {
        let vars = parse("A=1\n B = two words \nA=3\nQ=\"quoted\"\nE=\n", 20).expect("valid");
        assert_eq!(
            vars,
            vec![
                ("A".to_string(), "3".to_string()),
                ("B".to_string(), "two words".to_string()),
                ("Q".to_string(), "\"quoted\"".to_string()),
                ("E".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn refuses_blank_lines_comments_bad_keys_and_too_many() {
        assert_eq!(
            parse("A=1\n\nB=2\n", 20),
            Err(DotenvError::InvalidFormat(2))
        );
        assert_eq!(parse("# note\n", 20), Err(DotenvError::InvalidFormat(1)));
        assert!(matches!(
            parse("MY-VAR=1\n", 20),
            Err(DotenvError::InvalidKey(1, _))
        ));
        let many: String = (0..21).map(|i| format!("V{i}=x\n")).collect();
        assert_eq!(parse(&many, 20), Err(DotenvError::TooManyVariables(20)));
    }

    #[test]
    fn gzip_size_limit_is_on_the_stored_file() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"A=1\n").expect("in-memory write");
        let gz = enc.finish().expect("in-memory gzip");
        assert_eq!(parse_gzip(&gz, 5 * 1024, 20).map(|v| v.len()), Ok(1));
        assert_eq!(
            parse_gzip(&gz, gz.len() as u64, 20),
            Err(DotenvError::TooBig(gz.len() as u64))
        );
        assert!(matches!(
            parse_gzip(b"not gzip", 5 * 1024, 20),
            Err(DotenvError::Gzip(_))
        ));
    }
}
