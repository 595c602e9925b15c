//! ISO 8601 timestamps exactly as GitLab prints them (Ruby `Time#xmlschema`), from the
//! `<seconds> <±hhmm>` pairs git stores. Hand-written because it is a dozen lines of the
//! proleptic-Gregorian calendar and the workspace has no date crate.

/// `2026-07-31T19:38:51+02:00`: a commit's time in its own offset, as GitLab renders
/// `CI_COMMIT_TIMESTAMP` (`Time.strptime("<s> <tz>", "%s %z").xmlschema`; a `+0000` commit
/// prints `+00:00`, not `Z`, because Ruby only treats `-0000`/`UTC`/`Z` as UTC).
pub fn xmlschema(secs: i64, offset_minutes: i32) -> String {
    // Saturating: a forged commit may carry any 64-bit time; it must not panic.
    let local = secs.saturating_add(i64::from(offset_minutes) * 60);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    format!(
        "{}{}{:02}:{:02}",
        date_time(local),
        sign,
        off / 60,
        off % 60
    )
}

/// `2026-07-31T17:38:52Z`: a UTC time (`CI_PIPELINE_CREATED_AT`, `CI_JOB_STARTED_AT`).
pub fn xmlschema_utc(secs: i64) -> String {
    format!("{}Z", date_time(secs))
}

/// Parses git's `+0200` / `-0530` into minutes east of UTC.
pub fn parse_git_offset(tz: &str) -> Option<i32> {
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

fn date_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_ruby_xmlschema() {
        // 2026-07-31T17:38:51Z, committed in +02:00 (the value seen on gitlab.com).
        assert_eq!(xmlschema(1_785_519_531, 120), "2026-07-31T19:38:51+02:00");
        assert_eq!(xmlschema_utc(1_785_519_532), "2026-07-31T17:38:52Z");
        assert_eq!(xmlschema(0, 0), "1970-01-01T00:00:00+00:00");
        assert_eq!(xmlschema(0, -330), "1969-12-31T18:30:00-05:30");
        // Leap day.
        assert_eq!(xmlschema_utc(951_782_400), "2000-02-29T00:00:00Z");
        // Absurd times from forged commits format without panicking.
        assert!(xmlschema(i64::MAX, 120).ends_with("+02:00"));
        assert!(xmlschema(i64::MIN, -120).ends_with("-02:00"));
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
