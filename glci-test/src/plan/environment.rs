//! `environment:` for a planned job: `CI_ENVIRONMENT_*` values, GitLab's environment slug
//! (`Gitlab::Slug::Environment`) and tier guess (`Environment#guess_tier`).

use std::sync::OnceLock;

use regex::Regex;
use sha2::{Digest, Sha256};

/// `CI_ENVIRONMENT_SLUG`: lower-case, non-alphanumerics → `-`, must start with a letter,
/// dashes squeezed, ≤ 24 characters; when shortened or changed, a 6-character suffix
/// derived from the SHA-256 of the name keeps it unique.
pub fn slug(name: &str) -> String {
    let mut s: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s = format!("env-{s}");
    }
    let mut squeezed = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '-' && squeezed.ends_with('-')) {
            squeezed.push(c);
        }
    }
    if squeezed.len() > 24 || squeezed != name {
        let mut short: String = squeezed.chars().take(17).collect();
        if !short.ends_with('-') {
            short.push('-');
        }
        short.push_str(&suffix(name));
        short
    } else {
        squeezed.trim_end_matches('-').to_string()
    }
}

/// `Digest::SHA2.hexdigest(name).to_i(16).to_s(36).last(6)`: the SHA-256 as a number, its
/// last six base-36 digits.
fn suffix(name: &str) -> String {
    const MODULUS: u64 = 36u64.pow(6);
    let digest = Sha256::digest(name.as_bytes());
    let rem = digest
        .iter()
        .fold(0u64, |acc, &b| (acc * 256 + u64::from(b)) % MODULUS);
    let mut digits = [b'0'; 6];
    let mut n = rem;
    for d in digits.iter_mut().rev() {
        let v = u8::try_from(n % 36).unwrap_or(0);
        *d = if v < 10 { b'0' + v } else { b'a' + v - 10 };
        n /= 36;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// The tier GitLab guesses from an environment name when `deployment_tier` is absent.
pub fn guess_tier(name: &str) -> &'static str {
    static TIERS: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let tiers = TIERS.get_or_init(|| {
        [
            (r"(?i)(dev|review|trunk)", "development"),
            (
                r"(?i)(test|tst|int|ac(ce|)pt|qa|qc|control|quality)",
                "testing",
            ),
            (r"(?i)(st(a|)g|mod(e|)l|pre|demo|non)", "staging"),
            (r"(?i)(pr(o|)d|live)", "production"),
        ]
        .into_iter()
        .filter_map(|(re, tier)| Regex::new(re).ok().map(|r| (r, tier)))
        .collect()
    });
    tiers
        .iter()
        .find(|(re, _)| re.is_match(name))
        .map_or("other", |(_, tier)| tier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_names_keep_their_slug() {
        assert_eq!(slug("production"), "production");
        assert_eq!(slug("review-app"), "review-app");
    }

    #[test]
    fn changed_names_get_a_stable_suffix() {
        let s = slug("review/Feature_Branch");
        assert!(s.starts_with("review-feature-br-"), "{s}");
        assert_eq!(s.len(), 24);
        assert_eq!(s, slug("review/Feature_Branch"));
        assert!(slug("1abc").starts_with("env-1abc-"));
    }

    #[test]
    fn tiers() {
        assert_eq!(guess_tier("production"), "production");
        assert_eq!(guess_tier("review/x"), "development");
        assert_eq!(guess_tier("staging"), "staging");
        assert_eq!(guess_tier("qa"), "testing");
        assert_eq!(guess_tier("foo"), "other");
    }
}
