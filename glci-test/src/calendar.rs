//! Calendar arithmetic, once for the whole crate: Unix seconds to and from proleptic-Gregorian
//! UTC dates, and the timestamp formats GitLab and S3 use (Ruby's `Time#xmlschema` for
//! `CI_*_AT`/`CI_COMMIT_TIMESTAMP` and the API's times, SigV4's `yyyymmddThhmmssZ`).
//! Hand-written because it is Howard Hinnant's two short `civil` algorithms and the workspace
//! has no date crate; HTTP dates go through `httpdate`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
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

/// (year, month, day) → days since 1970-01-01; Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A UTC date and time of day, to the second.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
}

impl Civil {
    fn from_unix(secs: i64) -> Civil {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// `2026-07-31T17:38:52`, without a zone.
    fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Whole seconds since the epoch; a time before it counts as the epoch (clocks here are
/// never that wrong, and a timestamp must not panic).
fn unix_secs(t: SystemTime) -> i64 {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// `2026-07-31T19:38:51+02:00`: a time in a given offset, as Ruby's `Time#xmlschema` prints
/// it — which is how GitLab renders `CI_COMMIT_TIMESTAMP`
/// (`Time.strptime("<s> <tz>", "%s %z").xmlschema`; a `+0000` commit prints `+00:00`, not
/// `Z`, because Ruby only treats `-0000`/`UTC`/`Z` as UTC).
pub(crate) fn xmlschema(secs: i64, offset_minutes: i32) -> String {
    // Saturating: a forged commit may carry any 64-bit time; it must not panic.
    let local = secs.saturating_add(i64::from(offset_minutes) * 60);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    format!(
        "{}{}{:02}:{:02}",
        Civil::from_unix(local).iso(),
        sign,
        off / 60,
        off % 60
    )
}

/// `2026-07-31T17:38:52Z`: a UTC time (`CI_PIPELINE_CREATED_AT`, `CI_JOB_STARTED_AT`).
pub(crate) fn xmlschema_utc(secs: i64) -> String {
    format!("{}Z", Civil::from_unix(secs).iso())
}

/// [`xmlschema_utc`] of a `SystemTime`: the API's and predefined variables' times.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    xmlschema_utc(unix_secs(t))
}

/// SigV4's `X-Amz-Date`, `yyyymmddThhmmssZ` (UTC).
pub(crate) fn amz_date(t: SystemTime) -> String {
    let c = Civil::from_unix(unix_secs(t));
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Parses SigV4's `yyyymmddThhmmssZ`.
pub(crate) fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
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
    fn amz_dates_are_utc_calendar_dates() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        // 2013-05-24T00:00:00Z, the date of AWS's presigning example.
        let t = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        assert_eq!(amz_date(t), "20130524T000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(amz_date(leap), "20000229T010101Z");
    }

    #[test]
    fn amz_date_round_trips_through_rfc3339() {
        let t = parse_amz_date("20261123T084159Z").expect("valid date");
        assert_eq!(rfc3339(t), "2026-11-23T08:41:59Z");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok(),
            Some(1_795_423_319)
        );
    }

    #[test]
    fn malformed_amz_dates_are_refused() {
        for bad in [
            "",
            "20261123T084159",
            "2026-11-23T08:41Z",
            "20261323T084159Z",
            "2026112xT084159Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn days_and_civil_dates_are_inverse() {
        // Every day from 1600 (before the epoch, across the 1700/1800/1900 non-leap
        // centuries and the 2000 leap one) to 2400.
        for days in -135_140..157_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(
            days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28),
            1
        );
    }
}
