//! From split pieces to CloudWatch log events: timestamps, escaping, and the
//! policy for events outside the time window the service accepts.

use crate::core::batch::{MAX_AGE_MS, MAX_FUTURE_MS};
use crate::core::escape::{push_escaped, push_valid};
use crate::core::split::{Format, Piece, message_bytes};
use crate::core::timestamp::TimestampParser;
use serde::Serialize;

/// Margin kept inside the window, so an event stamped now is still accepted
/// when the call reaches the service a little later.
const WINDOW_MARGIN_MS: i64 = 3_600_000;

/// What happened to the events of one object; logged and returned per record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventStats {
    pub events: u64,
    /// Extra messages made by cutting oversized events.
    pub parts: u64,
    pub escaped_bytes: u64,
    /// Events with no timestamp of their own (took the previous one).
    pub inherited_timestamps: u64,
    /// Events older than the accepted window, stored at its oldest edge.
    pub clamped_old: u64,
    /// Events too far in the future, stored at the current time.
    pub clamped_future: u64,
}

/// The accepted time window, fixed when an object's processing starts.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub oldest_ms: i64,
    pub newest_ms: i64,
    pub now_ms: i64,
}

impl Window {
    /// `retention_days` narrows the window when the group keeps events for less than 14 days.
    pub fn at(now_ms: i64, retention_days: Option<u32>) -> Window {
        let age =
            retention_days.map_or(MAX_AGE_MS, |d| (i64::from(d) * 86_400_000).min(MAX_AGE_MS));
        Window {
            oldest_ms: now_ms - age + WINDOW_MARGIN_MS,
            newest_ms: now_ms + MAX_FUTURE_MS - WINDOW_MARGIN_MS,
            now_ms,
        }
    }
}

/// A piece ready to become a log event.
pub struct Prepared<'p> {
    pub timestamp: i64,
    pub bytes: std::borrow::Cow<'p, [u8]>,
    pub source: (u64, u64),
    /// Known valid UTF-8: no need to check again.
    pub utf8: bool,
}

pub struct EventBuilder {
    format: Format,
    parser: TimestampParser,
    last_ts: i64,
    window: Window,
    pub stats: EventStats,
}

impl EventBuilder {
    /// `fallback_ms` stamps events before the first timestamp: the object's upload time.
    pub fn new(format: Format, tz: chrono_tz::Tz, fallback_ms: i64, window: Window) -> Self {
        EventBuilder {
            format,
            parser: TimestampParser::new(tz),
            last_ts: fallback_ms,
            window,
            stats: EventStats::default(),
        }
    }

    /// The timestamp and message bytes of a piece, or `None` when its message
    /// is empty (the blank tail of an oversized event, nothing of its message),
    /// which CloudWatch would refuse.
    pub fn prepare<'p>(&mut self, piece: Piece<'p>) -> Option<Prepared<'p>> {
        let parsed = if piece.first {
            self.parse_timestamp(piece.raw)
        } else {
            Some(self.last_ts)
        };
        if piece.first {
            self.stats.events += 1;
            if parsed.is_none() {
                self.stats.inherited_timestamps += 1;
            }
        } else {
            self.stats.parts += 1;
        }
        let ts = parsed.unwrap_or(self.last_ts);
        self.last_ts = ts;
        let bytes = message_bytes(piece.raw, piece.multiline, piece.last);
        if bytes.is_empty() {
            return None;
        }
        Some(Prepared {
            timestamp: self.clamp(ts),
            bytes,
            source: piece.range,
            utf8: piece.utf8,
        })
    }

    /// Appends the message, escaping invalid UTF-8.
    pub fn write_message(&mut self, out: &mut String, prepared: &Prepared<'_>) {
        if prepared.utf8 {
            push_valid(out, &prepared.bytes);
        } else {
            self.stats.escaped_bytes += push_escaped(out, &prepared.bytes) as u64;
        }
    }

    fn parse_timestamp(&mut self, raw: &[u8]) -> Option<i64> {
        match self.format {
            Format::Access => self.parser.access(raw),
            Format::Juli => self.parser.juli(raw),
            Format::Lines => self
                .parser
                .juli(raw)
                .or_else(|| self.parser.access(first_line(raw))),
        }
    }

    /// Events outside the window keep their message (which holds the original
    /// time) and are stored at the nearest edge, instead of being rejected.
    fn clamp(&mut self, ts: i64) -> i64 {
        if ts < self.window.oldest_ms {
            self.stats.clamped_old += 1;
            self.window.oldest_ms
        } else if ts > self.window.newest_ms {
            self.stats.clamped_future += 1;
            self.window.now_ms
        } else {
            ts
        }
    }
}

fn first_line(raw: &[u8]) -> &[u8] {
    memchr::memchr(b'\n', raw).map_or(raw, |i| &raw[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    fn build(b: &mut EventBuilder, p: Piece<'_>) -> Option<(i64, String)> {
        let prepared = b.prepare(p)?;
        let mut s = String::new();
        b.write_message(&mut s, &prepared);
        Some((prepared.timestamp, s))
    }

    fn piece(raw: &[u8], first: bool) -> Piece<'_> {
        Piece {
            range: (0, raw.len() as u64),
            raw,
            first,
            last: true,
            multiline: true,
            utf8: false,
        }
    }

    #[test]
    fn inherits_and_clamps() {
        let w = Window::at(NOW, None);
        let mut b = EventBuilder::new(Format::Lines, chrono_tz::Tz::UTC, NOW - 5, w);
        let e = build(&mut b, piece(b"no time here\xff", true)).unwrap();
        assert_eq!((e.0, e.1.as_str()), (NOW - 5, "no time here\\xFF"));
        let old = build(&mut b, piece(b"01-Jan-2020 00:00:00.000 INFO old", true)).unwrap();
        assert_eq!(old.0, w.oldest_ms);
        let part = build(
            &mut b,
            piece(b"24-Nov-2099 00:00:00.000 looks like a time", false),
        )
        .unwrap();
        assert_eq!(part.0, w.oldest_ms, "a part keeps its event's time");
        let future = build(&mut b, piece(b"01-Jan-2099 00:00:00.000 INFO new", true)).unwrap();
        assert_eq!(future.0, NOW);
        assert!(build(&mut b, piece(b"\r\n\n", false)).is_none());
        assert_eq!(
            b.stats,
            EventStats {
                events: 3,
                parts: 2,
                escaped_bytes: 1,
                inherited_timestamps: 1,
                clamped_old: 2,
                clamped_future: 1
            }
        );
    }

    #[test]
    fn retention_narrows_the_window() {
        let w = Window::at(NOW, Some(1));
        assert_eq!(w.oldest_ms, NOW - 86_400_000 + WINDOW_MARGIN_MS);
        assert_eq!(
            Window::at(NOW, Some(3653)).oldest_ms,
            Window::at(NOW, None).oldest_ms
        );
    }
}
