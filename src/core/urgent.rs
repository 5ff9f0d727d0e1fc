//! Which events should not wait for the flush interval: a JULI event at or
//! above a level (`SEVERE` by default), and optionally an access-log line
//! with a 5xx status. The sidecar watches the new lines of each file with
//! `Watch` and flushes early once such an event is whole (README, "Errors
//! within seconds"). Pure: bytes in, offsets out.

use crate::core::split::Format;
use crate::core::timestamp::starts_with_juli_timestamp;

/// JULI's levels, lowest first (`java.util.logging.Level`).
const JULI_LEVELS: [&str; 7] = [
    "FINEST", "FINER", "FINE", "CONFIG", "INFO", "WARNING", "SEVERE",
];
/// `dd-MMM-yyyy HH:mm:ss.SSS ` before a JULI line's level.
const JULI_STAMP: usize = 25;

/// The rule: what makes an event urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// JULI events at this level (an index into the levels) or above; `None`: never.
    pub juli_level: Option<usize>,
    /// Access-log lines whose status is 5xx.
    pub access_5xx: bool,
}

impl Rule {
    pub const OFF: Rule = Rule {
        juli_level: None,
        access_5xx: false,
    };

    /// `SEVERE`, `WARNING`, ... (case-insensitive) or `off`.
    pub fn parse_level(value: &str) -> Result<Option<usize>, String> {
        if value.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        (JULI_LEVELS.iter())
            .position(|l| l.eq_ignore_ascii_case(value))
            .map(Some)
            .ok_or_else(|| format!("`{value}` is not `off` or a JULI level {JULI_LEVELS:?}"))
    }

    pub fn is_off(&self) -> bool {
        self.juli_level.is_none() && !self.access_5xx
    }

    /// Whether this whole line (newline excluded) starts an urgent event.
    pub fn line_is_urgent(&self, format: Format, line: &[u8]) -> bool {
        match format {
            Format::Juli => self.juli_level.is_some_and(|min| {
                starts_with_juli_timestamp(line) && juli_level(line).is_some_and(|l| l >= min)
            }),
            Format::Access => self.access_5xx && access_status(line).is_some_and(|s| s / 100 == 5),
            Format::Lines => false,
        }
    }
}

fn juli_level(line: &[u8]) -> Option<usize> {
    let rest = line.get(JULI_STAMP..)?;
    let word = rest.split(|&b| b == b' ').next()?;
    JULI_LEVELS.iter().position(|l| l.as_bytes() == word)
}

/// The status of a Common/Combined Log Format line: the number after the
/// quoted request (`"GET / HTTP/1.1" 503 12`).
fn access_status(line: &[u8]) -> Option<u16> {
    let open = line.iter().position(|&b| b == b'"')?;
    // Tomcat writes a quote inside the request as `\"`.
    let close = (open + 1..line.len()).find(|&i| line[i] == b'"' && line[i - 1] != b'\\')?;
    let rest = line.get(close + 1..)?.strip_prefix(b" ")?;
    let digits = rest.get(..3)?;
    let after_ok = rest.get(3).is_none_or(|&b| b == b' ');
    (digits.iter().all(u8::is_ascii_digit) && after_ok)
        .then(|| std::str::from_utf8(digits).ok()?.parse().ok())?
}

/// One file's watch over its lines not yet shipped: how far it has looked
/// (always a line end) and where the first urgent event starts, and whether
/// that event is known to be whole (a later event has started, or the
/// format has one-line events).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watch {
    pub looked_to: u64,
    pub urgent_at: Option<u64>,
    pub whole: bool,
    /// Inside a line longer than `LONG_LINE`: its rest is not a line start.
    mid_line: bool,
}

/// A line longer than this is not looked at further (a level or a status
/// sits at its start).
pub const LONG_LINE: usize = 64 * 1024;

impl Watch {
    pub fn from(offset: u64) -> Watch {
        Watch {
            looked_to: offset,
            ..Watch::default()
        }
    }

    /// An urgent event was found and is known to be whole: nothing more to look for.
    pub fn found_whole(&self) -> bool {
        self.urgent_at.is_some() && self.whole
    }

    /// Forgets what a cut up to `offset` has shipped.
    pub fn shipped_to(&mut self, offset: u64) {
        // Past its urgent event: look again from the cut, since a second
        // urgent event may lie between the cut and where it had looked.
        if self.urgent_at.is_some_and(|at| at < offset) {
            *self = Watch::from(offset);
        }
        self.looked_to = self.looked_to.max(offset);
    }

    /// Looks at `bytes`, which start at `looked_to`; only whole lines count
    /// (the rest is looked at again with the next bytes). Returns how many
    /// bytes were taken.
    pub fn feed(&mut self, rule: &Rule, format: Format, bytes: &[u8]) -> usize {
        let mut taken = 0;
        if self.mid_line {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(nl) => (taken, self.mid_line) = (nl + 1, false),
                None => taken = bytes.len(),
            }
        }
        while let Some(nl) = bytes[taken..].iter().position(|&b| b == b'\n') {
            let line = &bytes[taken..taken + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let at = self.looked_to + taken as u64;
            match self.urgent_at {
                None if rule.line_is_urgent(format, line) => {
                    self.urgent_at = Some(at);
                    self.whole = format == Format::Access;
                }
                Some(_) if !self.whole && starts_with_juli_timestamp(line) => self.whole = true,
                _ => {}
            }
            taken += nl + 1;
        }
        if bytes.len() - taken >= LONG_LINE {
            self.mid_line = true;
            taken = bytes.len();
        }
        self.looked_to += taken as u64;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEVERE: &[u8] = b"24-Nov-2026 22:10:58.757 SEVERE [main] org.x.Y.z boom\n";
    const INFO: &[u8] = b"24-Nov-2026 22:10:58.758 INFO [main] org.x.Y.z fine\n";
    const TRACE: &[u8] = b"\tat org.x.Y.z(Y.java:1)\n";

    fn rule(level: &str, access_5xx: bool) -> Rule {
        Rule {
            juli_level: Rule::parse_level(level).unwrap(),
            access_5xx,
        }
    }

    #[test]
    fn levels_and_statuses() {
        let severe = rule("SEVERE", false);
        let line = |b: &[u8]| b.strip_suffix(b"\n").unwrap().to_vec();
        assert!(severe.line_is_urgent(Format::Juli, &line(SEVERE)));
        assert!(!severe.line_is_urgent(Format::Juli, &line(INFO)));
        assert!(!severe.line_is_urgent(Format::Juli, &line(TRACE)));
        assert!(rule("info", false).line_is_urgent(Format::Juli, &line(INFO)));
        assert!(!rule("off", true).line_is_urgent(Format::Juli, &line(SEVERE)));
        assert!(Rule::parse_level("LOUD").is_err());
        let a = |status: &str| {
            format!(
                "10.0.0.7 - - [24/Nov/2026:22:10:58 +0000] \"GET /a?b=\\\"c HTTP/1.1\" {status} 12"
            )
        };
        let with_5xx = rule("SEVERE", true);
        assert!(with_5xx.line_is_urgent(Format::Access, a("503").as_bytes()));
        assert!(!with_5xx.line_is_urgent(Format::Access, a("200").as_bytes()));
        assert!(!with_5xx.line_is_urgent(Format::Access, a("5000").as_bytes()));
        assert!(!severe.line_is_urgent(Format::Access, a("503").as_bytes()));
        assert!(!with_5xx.line_is_urgent(Format::Lines, &line(SEVERE)));
    }

    #[test]
    fn a_juli_event_is_whole_once_the_next_one_starts() {
        let r = rule("SEVERE", false);
        let mut w = Watch::from(100);
        let mut data = INFO.to_vec();
        data.extend_from_slice(SEVERE);
        data.extend_from_slice(TRACE);
        data.extend_from_slice(b"\tat partial");
        let taken = w.feed(&r, Format::Juli, &data);
        assert_eq!(taken, INFO.len() + SEVERE.len() + TRACE.len());
        assert_eq!(w.urgent_at, Some(100 + INFO.len() as u64));
        assert!(!w.whole, "its stack trace may still grow");
        w.feed(&r, Format::Juli, INFO);
        assert!(w.whole);
        // Shipped past it: the watch starts over from the cut.
        w.shipped_to(100 + data.len() as u64);
        assert_eq!(w.urgent_at, None);
        assert_eq!(w.looked_to, 100 + data.len() as u64);
        // Shipped before it: it stays.
        let mut w = Watch::from(0);
        w.feed(&r, Format::Juli, &[INFO, SEVERE].concat());
        w.shipped_to(INFO.len() as u64);
        assert_eq!(w.urgent_at, Some(INFO.len() as u64));
        // A line too long to hold is passed over, its rest included.
        let mut w = Watch::from(0);
        let long = vec![b'x'; LONG_LINE];
        assert_eq!(w.feed(&r, Format::Juli, &long), LONG_LINE);
        let mut rest = b"24-Nov-2026 22:10:58.757 SEVERE not a line start\n".to_vec();
        rest.extend_from_slice(SEVERE);
        w.feed(&r, Format::Juli, &rest);
        assert_eq!(
            w.urgent_at,
            Some((LONG_LINE + rest.len() - SEVERE.len()) as u64)
        );
    }
}
