//! Where to cut the next chunk of a file, and its gzip body. Pure functions
//! over a reader: the file is read in small pieces, never held whole.

use crate::core::split::{Format, Splitter};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::Duration;

const READ_SIZE: usize = 64 * 1024;
/// An event longer than this may be cut inside a chunk (a forced cut); it
/// also bounds what the scan holds in memory.
const PART_LIMIT: usize = 1 << 20;

/// How hard to try for a boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Only whole events: the last one is held while it may still grow.
    WholeEvents,
    /// Everything available (hold time-out, shutdown, `--once`).
    Everything,
}

/// How a pass over the files treats data that is not yet due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The size and age rules decide.
    Follow,
    /// Ship everything now (shutdown, `--once`).
    Drain,
}

/// When a chunk is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Oldest unshipped byte's age that cuts at the last whole event.
    pub flush: Duration,
    /// How much longer after that an incomplete last event is held.
    pub hold: Duration,
    /// Unshipped bytes that cut a chunk whatever their age.
    pub chunk_bytes: u64,
}

/// Whether to cut now, and how hard to try for a boundary; `None` waits.
/// `age` is how long unshipped bytes have waited, `pending` how many there are.
pub fn decide(mode: Mode, due: Due, age: Duration, pending: u64) -> Option<Urgency> {
    if pending == 0 {
        return None;
    }
    match mode {
        Mode::Drain => Some(Urgency::Everything),
        Mode::Follow if age >= due.flush.saturating_add(due.hold) => Some(Urgency::Everything),
        Mode::Follow if age >= due.flush || pending >= due.chunk_bytes => {
            Some(Urgency::WholeEvents)
        }
        Mode::Follow => None,
    }
}

/// The end of the next chunk starting at `start`, or `None` to wait.
/// `available` is the file's current size; a chunk holds at most `max_bytes`.
pub fn find_cut<R: Read + Seek>(
    file: &mut R,
    format: Format,
    start: u64,
    available: u64,
    max_bytes: u64,
    urgency: Urgency,
) -> io::Result<Option<u64>> {
    if available <= start {
        return Ok(None);
    }
    let window_end = available.min(start.saturating_add(max_bytes));
    let capped = window_end < available;
    let mut splitter = Splitter::new(format, start, PART_LIMIT);
    let (mut last_event_end, mut last_part_end) = (start, start);
    let mut track = |p: crate::core::split::Piece<'_>| {
        if p.last {
            last_event_end = p.range.1;
        } else {
            last_part_end = p.range.1;
        }
    };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; READ_SIZE];
    let mut at = start;
    let mut ends_with_newline = false;
    while at < window_end {
        let want = usize::try_from(window_end - at)
            .unwrap_or(READ_SIZE)
            .min(READ_SIZE);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break; // truncated under us: the caller notices on its next look
        }
        splitter.push(&buf[..n], &mut track);
        ends_with_newline = buf[n - 1] == b'\n';
        at += n as u64;
    }
    if capped {
        // The size cap: whole events if any fit, else the huge event's part boundary.
        let cut = if last_event_end > start {
            last_event_end
        } else {
            last_part_end.max(start)
        };
        return Ok(Some(if cut > start { cut } else { window_end }));
    }
    let cut = match urgency {
        Urgency::Everything => at,
        // An access-log line is complete at its newline; other formats may
        // still add continuation lines to their last event.
        Urgency::WholeEvents if format == Format::Access && ends_with_newline => at,
        Urgency::WholeEvents => last_event_end,
    };
    Ok((cut > start).then_some(cut))
}

/// Gzip of the bytes `[start, end)`. Deterministic for the same bytes and
/// level, so a re-upload after a crash writes the same object.
pub fn gzip_range<R: Read + Seek>(
    file: &mut R,
    start: u64,
    end: u64,
    level: u32,
) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(start))?;
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(level));
    let mut buf = vec![0u8; READ_SIZE];
    let mut left = end - start;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(READ_SIZE).min(READ_SIZE);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended {left} bytes before offset {end}"),
            ));
        }
        enc.write_all(&buf[..n])?;
        left -= n as u64;
    }
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn cut(data: &[u8], format: Format, start: u64, max: u64, urgency: Urgency) -> Option<u64> {
        find_cut(
            &mut Cursor::new(data),
            format,
            start,
            data.len() as u64,
            max,
            urgency,
        )
        .unwrap()
    }

    const JULI: &[u8] =
        b"24-Nov-2026 22:10:58.757 INFO a\n\tat x\n24-Nov-2026 22:10:58.758 INFO b\n\tat y\n";

    #[test]
    fn what_is_due() {
        let s = Duration::from_secs;
        let due = Due {
            flush: s(5),
            hold: s(5),
            chunk_bytes: 100,
        };
        let table = [
            (Mode::Follow, s(0), 0, None),
            (Mode::Drain, s(0), 0, None),
            (Mode::Follow, s(1), 10, None),
            (Mode::Follow, s(1), 100, Some(Urgency::WholeEvents)),
            (Mode::Follow, s(5), 10, Some(Urgency::WholeEvents)),
            (Mode::Follow, s(10), 10, Some(Urgency::Everything)),
            (Mode::Drain, s(0), 1, Some(Urgency::Everything)),
        ];
        for (mode, age, pending, want) in table {
            assert_eq!(
                decide(mode, due, age, pending),
                want,
                "{mode:?} {age:?} {pending}"
            );
        }
        // flush + hold at the largest durations saturates instead of overflowing.
        let huge = Due {
            flush: Duration::MAX,
            hold: Duration::MAX,
            chunk_bytes: 100,
        };
        assert_eq!(decide(Mode::Follow, huge, s(1), 1), None);
    }

    #[test]
    fn access_cuts_after_the_last_complete_line() {
        let data = b"a 1\nb 2\nc 3 partial";
        assert_eq!(
            cut(data, Format::Access, 0, 100, Urgency::WholeEvents),
            Some(8)
        );
        assert_eq!(
            cut(&data[..8], Format::Access, 0, 100, Urgency::WholeEvents),
            Some(8)
        );
        assert_eq!(
            cut(data, Format::Access, 0, 100, Urgency::Everything),
            Some(data.len() as u64)
        );
        assert_eq!(
            cut(data, Format::Access, 0, 6, Urgency::WholeEvents),
            Some(4),
            "size cap at an event boundary"
        );
        assert_eq!(
            cut(data, Format::Access, 8, 100, Urgency::WholeEvents),
            None,
            "only a partial line"
        );
    }

    #[test]
    fn juli_holds_the_last_event() {
        assert_eq!(
            cut(JULI, Format::Juli, 0, 1000, Urgency::WholeEvents),
            Some(38)
        );
        assert_eq!(
            cut(JULI, Format::Juli, 0, 1000, Urgency::Everything),
            Some(JULI.len() as u64)
        );
        assert_eq!(
            cut(JULI, Format::Juli, 38, 1000, Urgency::WholeEvents),
            None
        );
    }

    #[test]
    fn a_huge_event_is_cut_at_the_cap() {
        let mut data = b"start".to_vec();
        data.extend(std::iter::repeat_n(b'x', 3 * PART_LIMIT));
        let c = cut(
            &data,
            Format::Lines,
            0,
            2 * PART_LIMIT as u64,
            Urgency::WholeEvents,
        )
        .unwrap();
        assert!(c > 0 && c <= 2 * PART_LIMIT as u64, "{c}");
    }

    #[test]
    fn gzip_is_deterministic_and_exact() {
        let data = crate::generate::access_log(
            300_000,
            3,
            chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
                .unwrap()
                .and_hms_opt(1, 0, 0)
                .unwrap(),
        );
        let a = gzip_range(&mut Cursor::new(&data), 1000, 200_000, 1).unwrap();
        let b = gzip_range(&mut Cursor::new(&data), 1000, 200_000, 1).unwrap();
        assert_eq!(a, b);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data[1000..200_000]);
        assert!(gzip_range(&mut Cursor::new(&data), 0, data.len() as u64 + 1, 1).is_err());
    }
}
