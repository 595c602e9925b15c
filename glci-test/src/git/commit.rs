//! One commit as GitLab sees it: parsed from the raw object (`git cat-file commit`) so the
//! message is byte-for-byte what GitLab's Gitaly would return, with GitLab's title and
//! description rules (`app/models/commit.rb`).

use crate::calendar;

/// GitLab's placeholder for an empty message (`Commit#no_commit_message`).
pub const NO_COMMIT_MESSAGE: &str = "No commit message";

/// A commit's author or committer time as git stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitDate {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Offset east of UTC in minutes (`+0200` → 120).
    pub offset_minutes: i32,
    /// The offset as written in the object (`+0200`), kept to recreate the date exactly.
    pub raw_offset: String,
}

impl GitDate {
    /// `<secs> <±hhmm>`: git's internal date format, accepted by `GIT_*_DATE`.
    pub fn to_git(&self) -> String {
        format!("{} {}", self.secs, self.raw_offset)
    }

    /// ISO 8601 in the commit's own offset, as GitLab prints `CI_COMMIT_TIMESTAMP`.
    pub fn xmlschema(&self) -> String {
        calendar::xmlschema(self.secs, self.offset_minutes)
    }
}

/// A name, e-mail and time (an `author` or `committer` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub email: String,
    pub date: GitDate,
}

/// The facts of one commit that predefined variables and snapshots need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub sha: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub author: Signature,
    pub committer: Signature,
    /// The raw message: everything after the headers, trailing newline included, as GitLab
    /// puts it in `CI_COMMIT_MESSAGE`.
    pub message: String,
}

impl CommitInfo {
    /// Parses the output of `git cat-file commit <sha>`; `None` when it is not a commit.
    pub fn parse(sha: &str, raw: &[u8]) -> Option<CommitInfo> {
        let text = String::from_utf8_lossy(raw);
        let (headers, message) = match text.split_once("\n\n") {
            Some((h, m)) => (h, m),
            None => (text.trim_end_matches('\n'), ""),
        };
        let mut tree = None;
        let mut parents = Vec::new();
        let mut author = None;
        let mut committer = None;
        for line in headers.lines() {
            // Continuation lines of multi-line headers (gpgsig, mergetag) start with a space.
            if line.starts_with(' ') {
                continue;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "tree" => tree = Some(value.to_string()),
                "parent" => parents.push(value.to_string()),
                "author" => author = parse_signature(value),
                "committer" => committer = parse_signature(value),
                _ => {}
            }
        }
        Some(CommitInfo {
            sha: sha.to_string(),
            tree: tree?,
            parents,
            author: author?,
            committer: committer?,
            message: message.to_string(),
        })
    }

    /// First 8 characters (`CI_COMMIT_SHORT_SHA`).
    pub fn short_sha(&self) -> &str {
        self.sha.get(..8).unwrap_or(&self.sha)
    }

    /// `Commit#full_title`: the first line (split at `\r` or `\n`), or "No commit message"
    /// when the message is blank (`CI_COMMIT_TITLE`).
    pub fn full_title(&self) -> String {
        if is_blank(&self.message) {
            return NO_COMMIT_MESSAGE.to_string();
        }
        self.message
            .split(['\r', '\n'])
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// `Commit#description` (`CI_COMMIT_DESCRIPTION`): the whole message when the title is
    /// 100 characters or more, otherwise everything after the first `\n`, one trailing line
    /// break removed (so `"t\n\nbody\n"` gives `"\nbody"`).
    pub fn description(&self) -> String {
        if self.full_title().chars().count() >= 100 {
            return self.message.clone();
        }
        if is_blank(&self.message) {
            return NO_COMMIT_MESSAGE.to_string();
        }
        match self.message.split_once('\n') {
            Some((_, rest)) => chomp(rest).to_string(),
            None => String::new(),
        }
    }

    /// `Name <email>` (`CI_COMMIT_AUTHOR`).
    pub fn author_full_text(&self) -> String {
        format!("{} <{}>", self.author.name, self.author.email)
    }

    /// Committer time in ISO 8601 (`CI_COMMIT_TIMESTAMP`; GitLab's `Commit#timestamp` is the
    /// committed date).
    pub fn timestamp(&self) -> String {
        self.committer.date.xmlschema()
    }
}

/// `Name <email> 1234567890 +0200`.
fn parse_signature(value: &str) -> Option<Signature> {
    let (ident, date) = value.rsplit_once('>')?;
    let (name, email) = ident.split_once('<')?;
    let mut parts = date.split_whitespace();
    let secs: i64 = parts.next()?.parse().ok()?;
    let raw_offset = parts.next().unwrap_or("+0000").to_string();
    let offset_minutes = parse_git_offset(&raw_offset).unwrap_or(0);
    Some(Signature {
        name: name.trim().to_string(),
        email: email.to_string(),
        date: GitDate {
            secs,
            offset_minutes,
            raw_offset,
        },
    })
}

/// Parses git's `+0200` / `-0530` into minutes east of UTC.
fn parse_git_offset(tz: &str) -> Option<i32> {
    let (sign, digits) = match tz.as_bytes().first()? {
        b'+' => (1, &tz[1..]),
        b'-' => (-1, &tz[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    Some(sign * (hours * 60 + minutes))
}

/// Ruby's `String#blank?`: empty or whitespace only.
fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Ruby's `String#chomp`: one trailing `\r\n`, `\n` or `\r` removed.
fn chomp(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .or_else(|| s.strip_suffix('\r'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
parent 1111111111111111111111111111111111111111\n\
author Ada Lovelace <ada@example.com> 1785519531 +0200\n\
committer Bob <bob@example.com> 1785519600 -0530\n\
gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\
\n\
Fix the thing\n\nLonger body\nsecond line\n";

    fn commit(message: &str) -> CommitInfo {
        let mut c = CommitInfo::parse("0123456789abcdef0123456789abcdef01234567", RAW.as_bytes())
            .expect("fixture parses");
        c.message = message.to_string();
        c
    }

    #[test]
    fn parses_headers_and_raw_message() {
        let c = CommitInfo::parse("0123456789abcdef0123456789abcdef01234567", RAW.as_bytes())
            .expect("parses");
        assert_eq!(c.tree, "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        assert_eq!(c.parents, vec!["1111111111111111111111111111111111111111"]);
        assert_eq!(c.author.name, "Ada Lovelace");
        assert_eq!(c.author.email, "ada@example.com");
        assert_eq!(c.author_full_text(), "Ada Lovelace <ada@example.com>");
        assert_eq!(c.committer.date.offset_minutes, -330);
        assert_eq!(c.committer.date.to_git(), "1785519600 -0530");
        assert_eq!(c.message, "Fix the thing\n\nLonger body\nsecond line\n");
        assert_eq!(c.short_sha(), "01234567");
        assert_eq!(c.timestamp(), "2026-07-31T12:10:00-05:30");
    }

    #[test]
    fn title_and_description_follow_gitlab() {
        let c = commit("Fix the thing\n\nLonger body\nsecond line\n");
        assert_eq!(c.full_title(), "Fix the thing");
        assert_eq!(c.description(), "\nLonger body\nsecond line");

        let one_line = commit("Only a title\n");
        assert_eq!(one_line.full_title(), "Only a title");
        assert_eq!(one_line.description(), "");

        let no_newline = commit("No newline");
        assert_eq!(no_newline.description(), "");

        let cr = commit("Title\r\nbody\r\n");
        assert_eq!(cr.full_title(), "Title");
        assert_eq!(cr.description(), "body");

        let blank = commit("  \n");
        assert_eq!(blank.full_title(), NO_COMMIT_MESSAGE);
        assert_eq!(blank.description(), NO_COMMIT_MESSAGE);

        let long_title = format!("{}\nbody\n", "x".repeat(100));
        let long = commit(&long_title);
        assert_eq!(long.full_title(), "x".repeat(100));
        assert_eq!(long.description(), long_title);
    }

    #[test]
    fn rejects_non_commits() {
        assert!(CommitInfo::parse("x", b"garbage").is_none());
        assert!(CommitInfo::parse("x", b"tree abc\n\nmsg").is_none());
    }

    #[test]
    fn parses_git_offsets() {
        assert_eq!(parse_git_offset("+0200"), Some(120));
        assert_eq!(parse_git_offset("-0530"), Some(-330));
        assert_eq!(parse_git_offset("+0000"), Some(0));
        assert_eq!(parse_git_offset("0200"), None);
        assert_eq!(parse_git_offset("+02"), None);
        assert_eq!(parse_git_offset(""), None);
    }
}
