//! The `Retry-After` header of an HTTP answer (RFC 9110 §10.2.3), for the sinks that POST over
//! HTTP (Kafka REST Proxy, Backstop), read on their worker threads: a number of seconds, or an
//! HTTP-date (the IMF-fixdate form `Sun, 06 Nov 1994 08:49:37 GMT`, and the two obsolete forms
//! the RFC asks recipients to accept: RFC 850's `Sunday, 06-Nov-94 08:49:37 GMT` and asctime's
//! `Sun Nov  6 08:49:37 1994`). A date in the past means "now".

use std::time::{Duration, SystemTime};

/// How long `value` asks to wait, seen at `now`; `None` when it is neither form.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(http_date(value)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Seconds since the Unix epoch of an HTTP-date in any of its three forms.
fn http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split([' ', ',', '-']).filter(|p| !p.is_empty()).collect();
    let (day, month, year, time) = match parts[..] {
        // IMF-fixdate and RFC 850: weekday, day, month, year, time, GMT.
        [_, day, month, year, time, "GMT"] => (day, month, year, time),
        // asctime: weekday, month, day, time, year.
        [_, month, day, time, year] => (day, month, year, time),
        _ => return None,
    };
    let day: u64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let year: u64 = match year.len() {
        4 => year.parse().ok()?,
        // RFC 850's two-digit year: this century up to 69, the last one from 70 (HTTP dates
        // before 1970 do not occur).
        2 => year.parse::<u64>().ok().map(|y| if y < 70 { 2000 + y } else { 1900 + y })?,
        _ => return None,
    };
    let mut hms = time.split(':').map(|t| t.parse::<u64>().ok().filter(|_| t.len() == 2));
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || year < 1970 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_since_epoch(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (year ≥ 1970):
/// whole years, then whole months of this one, then the day.
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let leap = |y: u64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let years: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    const BEFORE: [u64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let feb29 = u64::from(month > 2 && leap(year));
    years + BEFORE[month as usize - 1] + feb29 + day - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06 08:49:37 UTC, the RFC's example date.
    const EXAMPLE: u64 = 784_111_777;

    #[test]
    fn the_three_date_forms_agree_with_the_rfc_example() {
        for s in
            ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"]
        {
            assert_eq!(http_date(s), Some(EXAMPLE), "{s}");
        }
        // Leap days and the turn of a century.
        assert_eq!(http_date("Thu, 29 Feb 2024 00:00:00 GMT"), Some(1_709_164_800));
        assert_eq!(http_date("Wed, 01 Mar 2000 00:00:00 GMT"), Some(951_868_800));
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    }

    #[test]
    fn seconds_a_date_ahead_a_date_past_and_nonsense() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(EXAMPLE);
        assert_eq!(parse(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(bad, now), None, "{bad:?}");
        }
    }
}
