//! Event timestamps, in milliseconds since the Unix epoch.
//!
//! Parsing is hand-rolled for the two fixed Tomcat layouts: it runs once per
//! event on the hot path, and a cache of the last seen second (or minute, for
//! time-zone offsets) makes the common case a 20-byte comparison.

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn month(b: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m[..] == *b)
        .map(|i| i as u32 + 1)
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn epoch_seconds(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    let date = NaiveDate::from_ymd_opt(y as i32, mo, d)?;
    let t = date.and_hms_opt(h, mi, s)?;
    Some(t.and_utc().timestamp())
}

/// Whether `line` starts with JULI's `dd-MMM-yyyy HH:mm:ss.SSS` (Tomcat's
/// OneLineFormatter), which is how a JULI event begins.
pub fn starts_with_juli_timestamp(line: &[u8]) -> bool {
    let Some(b) = line.get(..24) else {
        return false;
    };
    let d = |i: usize| b[i].is_ascii_digit();
    d(0) && d(1)
        && b[2] == b'-'
        && b[3].is_ascii_uppercase()
        && b[4].is_ascii_lowercase()
        && b[5].is_ascii_lowercase()
        && b[6] == b'-'
        && d(7)
        && d(8)
        && d(9)
        && d(10)
        && b[11] == b' '
        && d(12)
        && d(13)
        && b[14] == b':'
        && d(15)
        && d(16)
        && b[17] == b':'
        && d(18)
        && d(19)
        && b[20] == b'.'
        && d(21)
        && d(22)
        && d(23)
}

/// Parses timestamps of one object's events, remembering the last result.
#[derive(Debug)]
pub struct TimestampParser {
    tz: Tz,
    last_access: Option<([u8; 27], i64)>,
    last_juli: Option<([u8; 17], i64)>,
}

impl TimestampParser {
    pub fn new(tz: Tz) -> Self {
        TimestampParser {
            tz,
            last_access: None,
            last_juli: None,
        }
    }

    /// `[24/Nov/2026:10:00:00 +0900]` anywhere in an access-log line (the first `[`).
    pub fn access(&mut self, line: &[u8]) -> Option<i64> {
        let open = memchr::memchr(b'[', line)?;
        let b: &[u8; 27] = line.get(open + 1..open + 28)?.try_into().ok()?;
        if b[26] != b']' {
            return None;
        }
        if let Some((prev, ms)) = &self.last_access
            && prev == b
        {
            return Some(*ms);
        }
        let ms = parse_access(b)?;
        self.last_access = Some((*b, ms));
        Some(ms)
    }

    /// `24-Nov-2026 10:00:00.123` at the start of the line, in the configured zone.
    pub fn juli(&mut self, line: &[u8]) -> Option<i64> {
        if !starts_with_juli_timestamp(line) {
            return None;
        }
        let minute: &[u8; 17] = line[..17].try_into().ok()?;
        let tail = digits(&line[18..20])? * 1000 + digits(&line[21..24])?;
        if let Some((prev, base)) = &self.last_juli
            && prev == minute
        {
            return Some(base + i64::from(tail));
        }
        let base = self.juli_minute(minute)?;
        self.last_juli = Some((*minute, base));
        Some(base + i64::from(tail))
    }

    fn juli_minute(&self, b: &[u8; 17]) -> Option<i64> {
        let date = NaiveDate::from_ymd_opt(
            digits(&b[7..11])? as i32,
            month(&b[3..6])?,
            digits(&b[0..2])?,
        )?;
        let local: NaiveDateTime = date.and_hms_opt(digits(&b[12..14])?, digits(&b[15..17])?, 0)?;
        let utc = match self.tz.from_local_datetime(&local) {
            // Ambiguous (clocks going back): the earlier instant, as JULI wrote first.
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.timestamp(),
            // A local time in a spring-forward gap cannot be written by a correct
            // clock; read it with the offset in force just before the gap.
            chrono::LocalResult::None => {
                let before = self
                    .tz
                    .from_local_datetime(&(local - chrono::Duration::hours(1)));
                before.earliest()?.timestamp() + 3600
            }
        };
        Some(utc * 1000)
    }
}

fn parse_access(b: &[u8; 27]) -> Option<i64> {
    // dd/Mon/yyyy:HH:MM:SS +zzzz]
    let sep_ok = b[2] == b'/'
        && b[6] == b'/'
        && b[11] == b':'
        && b[14] == b':'
        && b[17] == b':'
        && b[20] == b' ';
    if !sep_ok {
        return None;
    }
    let secs = epoch_seconds(
        digits(&b[7..11])?,
        month(&b[3..6])?,
        digits(&b[0..2])?,
        digits(&b[12..14])?,
        digits(&b[15..17])?,
        digits(&b[18..20])?,
    )?;
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = i64::from(digits(&b[22..24])? * 3600 + digits(&b[24..26])? * 60);
    Some((secs - sign * offset) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc_ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn access_honours_the_offset() {
        let mut p = TimestampParser::new(Tz::UTC);
        let cases = [
            (
                "1.2.3.4 - - [24/Nov/2026:10:00:00 +0900] \"GET / HTTP/1.1\" 200 6",
                "2026-11-24T01:00:00Z",
            ),
            (
                "1.2.3.4 - - [24/Nov/2026:10:00:00 +0000] \"GET /\" 200 6",
                "2026-11-24T10:00:00Z",
            ),
            ("x [01/Jan/2027:00:30:00 -0130] y", "2027-01-01T02:00:00Z"),
            ("x [29/Feb/2028:23:59:59 +0000] y", "2028-02-29T23:59:59Z"),
        ];
        for (line, want) in cases {
            assert_eq!(p.access(line.as_bytes()), Some(utc_ms(want)), "{line}");
            assert_eq!(
                p.access(line.as_bytes()),
                Some(utc_ms(want)),
                "cached {line}"
            );
        }
        for bad in [
            "no bracket",
            "[24/Nov/2026:10:00:00 +0900",
            "[30/Feb/2026:10:00:00 +0000]",
            "[24/Foo/2026:10:00:00 +0000]",
            "[24/Nov/2026:10:00:00 09000]",
        ] {
            assert_eq!(p.access(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn juli_uses_the_configured_zone() {
        let line = b"24-Nov-2026 22:10:58.757 INFO [main] x";
        assert_eq!(
            TimestampParser::new(Tz::UTC).juli(line),
            Some(utc_ms("2026-11-24T22:10:58.757Z"))
        );
        let mut tokyo = TimestampParser::new(chrono_tz::Asia::Tokyo);
        assert_eq!(tokyo.juli(line), Some(utc_ms("2026-11-24T13:10:58.757Z")));
        assert_eq!(
            tokyo.juli(b"24-Nov-2026 22:10:59.001 y"),
            Some(utc_ms("2026-11-24T13:10:59.001Z"))
        );
        assert_eq!(tokyo.juli(b"\tat x"), None);
        assert_eq!(tokyo.juli(b"24-Nov-2026 22:10:5"), None);
    }

    #[test]
    fn juli_across_daylight_saving_changes() {
        let mut ny = TimestampParser::new(chrono_tz::America::New_York);
        // 2026-11-01 01:30 happens twice in New York: the first (EDT) is taken.
        assert_eq!(
            ny.juli(b"01-Nov-2026 01:30:00.000 a"),
            Some(utc_ms("2026-11-01T05:30:00Z"))
        );
        // 2026-03-08 02:30 does not exist: read with EST, the offset before the gap.
        assert_eq!(
            ny.juli(b"08-Mar-2026 02:30:00.000 a"),
            Some(utc_ms("2026-03-08T07:30:00Z"))
        );
    }

    #[test]
    fn recognises_juli_starts() {
        assert!(starts_with_juli_timestamp(b"24-Nov-2026 22:10:58.757 INFO"));
        assert!(!starts_with_juli_timestamp(b"\tat org.apache.Foo"));
        assert!(!starts_with_juli_timestamp(b"Caused by: x"));
        assert!(!starts_with_juli_timestamp(b"2026-11-24 22:10:58.757 INFO"));
    }
}
