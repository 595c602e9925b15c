//! GitLab's human durations (`timeout: 1h 30m`, `start_in: 30 minutes`, `3600`), read as
//! Ruby's ChronicDuration reads them.

use std::time::Duration;

/// Parses a duration; `None` when it is not one.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim().to_lowercase();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut number: Option<f64> = None;
    let mut rest = text.as_str();
    let mut any_unit = false;
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len > 0 {
            number = Some(rest[..num_len].parse().ok()?);
            rest = &rest[num_len..];
            continue;
        }
        let word_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        if word_len == 0 {
            return None;
        }
        let word = &rest[..word_len];
        rest = &rest[word_len..];
        if word == "and" {
            continue;
        }
        let unit = match word {
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "wk" | "wks" | "week" | "weeks" => 604800.0,
            "mo" | "month" | "months" => 2_592_000.0,
            "y" | "yr" | "yrs" | "year" | "years" => 31_536_000.0,
            _ => return None,
        };
        total += number.take()? * unit;
        any_unit = true;
    }
    if let Some(n) = number {
        // A trailing bare number counts as seconds ("1h 30").
        total += n;
    }
    (any_unit || total > 0.0).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gitlab_durations() {
        let s = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(s("3600"), Some(3600));
        assert_eq!(s("1h 30m"), Some(5400));
        assert_eq!(s("30 minutes"), Some(1800));
        assert_eq!(s("2 hours and 10 minutes"), Some(7800));
        assert_eq!(s("1 day"), Some(86400));
        assert_eq!(s("10s"), Some(10));
        assert_eq!(s("soon"), None);
        assert_eq!(s(""), None);
    }
}
