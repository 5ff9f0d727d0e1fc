//! Cutting a task segment: when a flush is due, where each file is cut, and
//! the segment built from the cuts. The rules (`due_now`, `urgency`,
//! `find_cut`) are pure; `cut_segment` reads the files in small pieces and
//! compresses each part straight into the segment's one buffer.
//!
//! A cut never ends inside a line while its writer may still finish it:
//! Tomcat's buffered access log leaves its file ending mid-line for up to its
//! background flush (`config::DEFAULT_LINE_TIMEOUT` has the evidence). Such a
//! line ships as is only when the sidecar drains (shutdown, `--once`, a
//! replaced or deleted file), when a newer file of its series exists, or
//! after the line time-out; each such cut is counted and logged.

use crate::core::segment::SegmentWriter;
use crate::core::split::{Format, Splitter};
use crate::sidecar::config::Config;
use crate::sidecar::context::{Budget, Ctx};
use crate::sidecar::followed::Followed;
use std::io::{self, Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

const READ_SIZE: usize = 64 * 1024;
/// An event longer than this may be cut inside a chunk (a forced cut); it
/// also bounds what the scan holds in memory.
const PART_LIMIT: usize = 1 << 20;

/// How much of a file a cut takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Only whole events: the last one is held while it may still grow.
    WholeEvents,
    /// Every complete line, the last event's included (the file is quiet).
    WholeLines,
    /// Everything, a last line without its newline included (a forced cut).
    Everything,
}

/// How a pass treats data that is not yet due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The age, size and quiet rules decide.
    Follow,
    /// Ship everything now (shutdown, `--once`, a replaced file's old handle).
    Drain,
    /// A sweeper's one look at a directory no live sidecar ships: every file
    /// gives what the quiet rules allow now, its quiet time read from its
    /// modification time (no earlier look to compare with).
    Sweep,
}

/// The configured rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Oldest unshipped byte's age that makes a flush due.
    pub flush: Duration,
    /// Quiet time after which a flush takes a file's last event.
    pub hold: Duration,
    /// Quiet time after which a flush takes a last line without its newline.
    pub line: Duration,
    /// Unshipped bytes that make a flush due whatever their age; also the
    /// largest segment (uncompressed).
    pub chunk_bytes: u64,
    /// An urgent event may make a flush due now (the early flush is on and
    /// its rate limit allows one).
    pub early: bool,
}

impl Due {
    pub fn of(c: &Config) -> Due {
        Due {
            flush: c.flush_interval,
            hold: c.hold_timeout,
            line: c.line_timeout,
            chunk_bytes: c.chunk_bytes,
            early: !c.early_flush.is_off(),
        }
    }
}

/// How one file stands at a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Bytes not yet shipped.
    pub pending: u64,
    /// How long the oldest of them has waited.
    pub age: Duration,
    /// How long the file has kept its size.
    pub quiet: Duration,
    /// A newer file of its series exists: its writer has moved on.
    pub rotated: bool,
    /// Its unshipped bytes hold a whole urgent event (`core::urgent`).
    pub urgent: bool,
}

/// Whether this file makes a flush due now.
pub fn due_now(mode: Mode, due: Due, look: Look) -> bool {
    look.pending > 0
        && (mode != Mode::Follow
            || look.age >= due.flush
            || look.pending >= due.chunk_bytes
            || (look.urgent && due.early))
}

/// How much of this file a due flush takes.
pub fn urgency(mode: Mode, due: Due, look: Look) -> Urgency {
    match mode {
        Mode::Drain => Urgency::Everything,
        _ if look.rotated || look.quiet >= due.line => Urgency::Everything,
        // A file not growing has no event left to grow. (One that never
        // pauses for the hold time-out gives its last event when the next
        // one starts, or at the size cap.)
        _ if look.quiet >= due.hold => Urgency::WholeLines,
        _ => Urgency::WholeEvents,
    }
}

/// Where a cut ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub end: u64,
    /// The cut ends inside a line (forced: drain, time-out, a huge event).
    pub inside_line: bool,
}

/// The end of the next cut of a file from `start`, or `None` to wait.
/// `available` is the file's size; a cut holds at most `max_bytes`.
pub fn find_cut<R: Read + Seek>(
    file: &mut R,
    format: Format,
    start: u64,
    available: u64,
    max_bytes: u64,
    urgency: Urgency,
) -> io::Result<Option<Cut>> {
    if available <= start {
        return Ok(None);
    }
    let window_end = available.min(start.saturating_add(max_bytes));
    let capped = window_end < available;
    let seen = scan(file, format, start, window_end)?;
    let Scanned {
        at,
        last_line_end,
        last_event_end,
        last_part_end,
    } = seen;
    let end = if capped {
        // The size cap: whole events if any fit, else the huge event's part boundary.
        [last_event_end, last_part_end, window_end]
            .into_iter()
            .find(|&e| e > start)
            .unwrap_or(window_end)
    } else {
        match urgency {
            Urgency::Everything => at,
            Urgency::WholeLines => last_line_end,
            // An access-log line is complete at its newline; other formats
            // may still add continuation lines to their last event.
            Urgency::WholeEvents if format == Format::Access => last_line_end,
            Urgency::WholeEvents => last_event_end,
        }
    };
    Ok((end > start).then_some(Cut {
        end,
        inside_line: end > last_line_end,
    }))
}

/// What a scan of `[start, window_end)` found: where it stopped, and the
/// ends of the last whole line, event and over-long event's part.
struct Scanned {
    at: u64,
    last_line_end: u64,
    last_event_end: u64,
    last_part_end: u64,
}

fn scan<R: Read + Seek>(
    file: &mut R,
    format: Format,
    start: u64,
    window_end: u64,
) -> io::Result<Scanned> {
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
    let mut last_line_end = start;
    while at < window_end {
        let want = usize::try_from(window_end - at)
            .unwrap_or(READ_SIZE)
            .min(READ_SIZE);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break; // truncated under us: the caller notices on its next look
        }
        splitter.push(&buf[..n], &mut track);
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            last_line_end = at + i as u64 + 1;
        }
        at += n as u64;
    }
    Ok(Scanned {
        at,
        last_line_end,
        last_event_end,
        last_part_end,
    })
}

/// One file's place in a flush: how much of it this flush takes.
pub(crate) struct Planned {
    pub file: usize,
    pub urgency: Urgency,
    /// Its size when the flush began: a file written faster than it is
    /// shipped does not keep one flush going.
    pub until: u64,
    /// Nothing more of it goes in this flush.
    pub done: bool,
    /// A cut found from this offset that did not fit in the segment being
    /// cut: the next segment takes it without scanning the file again.
    pub found: Option<(u64, Cut)>,
}

/// A segment cut and compressed, ready to be recorded and uploaded.
pub(crate) struct Segment {
    pub body: SegmentWriter,
    /// The index of each part's file, in part order.
    pub files: Vec<usize>,
}

/// Which files a flush takes now and how much of each; empty when no file
/// makes a flush due. The last result says the flush is early: only an
/// urgent event made it due.
pub(crate) fn plan<S>(
    ctx: &Ctx<S>,
    files: &mut [&mut Followed],
    mode: Mode,
    now: Instant,
) -> (Vec<Planned>, bool, bool) {
    let mut due = Due::of(&ctx.config);
    due.early &= mode == Mode::Follow
        && ctx.last_early.is_none_or(|t| {
            now.saturating_duration_since(t) >= ctx.config.early_flush_min_interval
        });
    let mut planned = Vec::new();
    let (mut any_due, mut early, mut left) = (false, false, false);
    for (i, f) in files.iter_mut().enumerate() {
        if f.failing.is_some() {
            left = true;
            continue;
        }
        let (look, until) = match look(ctx, f, mode, now, due) {
            Ok(Some(look)) => look,
            Ok(None) => continue,
            Err(e) => {
                f.note_failure(&e);
                left = true;
                continue;
            }
        };
        // A range left over from a segment that could not be read again is
        // due by the same rules: if its file still fails, it is tried again
        // at the next flush, not at every poll.
        let normal = due_now(
            mode,
            Due {
                early: false,
                ..due
            },
            look,
        );
        any_due |= normal;
        early |= !normal && due_now(mode, due, look);
        planned.push(Planned {
            file: i,
            urgency: urgency(mode, due, look),
            until,
            done: false,
            found: None,
        });
    }
    if !any_due && !early {
        return (Vec::new(), left || !planned.is_empty(), false);
    }
    (planned, left, !any_due)
}

/// How `f` stands as of `now`, and its size (`None`: nothing to ship). Notes
/// its quiet time and age, and looks at its new lines for an urgent event.
fn look<S>(
    ctx: &Ctx<S>,
    f: &mut Followed,
    mode: Mode,
    now: Instant,
    due: Due,
) -> io::Result<Option<(Look, u64)>> {
    // A sweep opens each file first: on NFS an open revalidates the size
    // and time that a path's stat may serve from the client's cache, and a
    // file that only looks quiet would have its last line cut.
    if mode == Mode::Sweep {
        f.handle(&ctx.config.log_dir)?;
    }
    let len = ctx.limit(f, f.size()?);
    let quiet = match mode {
        Mode::Sweep => f.quiet_since_modified(ctx.clock_ahead),
        _ => f.quiet_for(len, now),
    };
    let pending = len.saturating_sub(f.record.offset);
    if pending == 0 && f.record.uploading.is_none() {
        f.pending_since = None;
        return Ok(None);
    }
    let since = *f.pending_since.get_or_insert(now);
    let urgent = due.early && {
        f.watch_urgent(&ctx.config.log_dir, &ctx.config.early_flush, len)?;
        // Whole, or quiet long enough for a flush to take it whole.
        f.watch.urgent_at.is_some() && (f.watch.whole || quiet >= due.hold)
    };
    let look = Look {
        pending,
        age: now.saturating_duration_since(since),
        quiet,
        rotated: f.rotated,
        urgent,
    };
    Ok(Some((look, len)))
}

/// Cuts the next segment of a flush: one part per planned file that has
/// something to give, up to `chunk_bytes` uncompressed (a file that does not
/// fit goes into the next segment). `None` when the flush is over; `left` is
/// set when a file keeps bytes back.
pub(crate) fn cut_segment<S>(
    ctx: &mut Ctx<S>,
    files: &mut [&mut Followed],
    plan: &mut [Planned],
    left: &mut bool,
) -> Option<Segment> {
    let cap = ctx.config.chunk_bytes;
    // Level 1 shrinks logs about 4-5x: address space for that, touched only when written.
    let mut body = SegmentWriter::new(usize::try_from(cap / 4).unwrap_or(0));
    let mut in_segment = Vec::new();
    let mut budget = Budget::new(files.iter().map(|f| f.is_open()), ctx.max_open);
    for p in plan.iter_mut().filter(|p| !p.done) {
        let f = &mut *files[p.file];
        let was_open = f.is_open();
        match cut_part(ctx, f, p, cap - body.plain_bytes().min(cap), &mut body) {
            Ok(Some(true)) => in_segment.push(p.file),
            Ok(Some(false)) => {} // does not fit: the next segment
            Ok(None) => {
                p.done = true;
                *left |= f.record.offset < p.until;
            }
            Err(e) => {
                f.note_failure(&e);
                p.done = true;
                *left = true;
            }
        }
        budget.after(f, was_open);
    }
    (!in_segment.is_empty()).then_some(Segment {
        body,
        files: in_segment,
    })
}

/// Cuts `f` from its offset into `body` if the part fits in `room`:
/// `Some(true)` added, `Some(false)` does not fit now, `None` nothing to cut.
fn cut_part<S>(
    ctx: &mut Ctx<S>,
    f: &mut Followed,
    p: &mut Planned,
    room: u64,
    body: &mut SegmentWriter,
) -> io::Result<Option<bool>> {
    let dir = ctx.config.log_dir.clone();
    let start = f.record.offset;
    let found = p
        .found
        .take()
        .filter(|(at, _)| *at == start)
        .map(|(_, c)| c);
    let pinned = f.record.uploading.filter(|u| u.0 == start);
    let (format, generation, name) = (f.format, f.record.generation, f.name().to_string());
    let Some(h) = f.handle(&dir)? else {
        return Ok(None); // replaced since the look: the next pass finishes it
    };
    let cut = match (pinned, found) {
        (Some((_, end)), _) => Some(Cut {
            end,
            inside_line: false,
        }),
        (None, Some(cut)) => Some(cut),
        (None, None) => find_cut(h, format, start, p.until, ctx.config.chunk_bytes, p.urgency)?,
    };
    let Some(cut) = cut else {
        return Ok(None);
    };
    if cut.end - start > room && !body.parts().is_empty() {
        p.found = Some((start, cut));
        return Ok(Some(false));
    }
    h.seek(SeekFrom::Start(start))?;
    let level = ctx.config.gzip_level;
    body.push(
        &name,
        generation,
        (start, cut.end),
        level,
        h.take(cut.end - start),
    )?;
    if cut.inside_line {
        ctx.totals.forced_cuts += 1;
        tracing::warn!(
            file = name,
            generation,
            offset = cut.end,
            urgency = ?p.urgency,
            "cut inside a line: its end ships as the start of the next event"
        );
    }
    Ok(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn cut_at(data: &[u8], format: Format, start: u64, max: u64, urgency: Urgency) -> Option<Cut> {
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

    fn cut(data: &[u8], format: Format, start: u64, max: u64, urgency: Urgency) -> Option<u64> {
        cut_at(data, format, start, max, urgency).map(|c| c.end)
    }

    const JULI: &[u8] =
        b"24-Nov-2026 22:10:58.757 INFO a\n\tat x\n24-Nov-2026 22:10:58.758 INFO b\n\tat y\n";

    #[test]
    fn what_is_due_and_how_much_goes() {
        use Urgency::*;
        let s = Duration::from_secs;
        let due = Due {
            flush: s(60),
            hold: s(5),
            line: s(60),
            chunk_bytes: 100,
            early: false,
        };
        let look = |pending, age, quiet, rotated| Look {
            pending,
            age: s(age),
            quiet: s(quiet),
            rotated,
            urgent: false,
        };
        // (mode, look, due now, urgency)
        let table = [
            (Mode::Follow, look(0, 99, 99, false), false, Everything),
            (Mode::Drain, look(0, 0, 0, false), false, Everything),
            (Mode::Follow, look(10, 1, 0, false), false, WholeEvents),
            (Mode::Follow, look(100, 1, 0, false), true, WholeEvents),
            (Mode::Follow, look(10, 60, 0, false), true, WholeEvents),
            (Mode::Follow, look(10, 60, 5, false), true, WholeLines),
            (Mode::Follow, look(10, 600, 4, false), true, WholeEvents),
            // A line without its newline waits for its writer: only a
            // minute of quiet, a newer file of the series or a drain takes it.
            (Mode::Follow, look(10, 600, 59, false), true, WholeLines),
            (Mode::Follow, look(10, 600, 60, false), true, Everything),
            (Mode::Follow, look(10, 1, 0, true), false, Everything),
            (Mode::Drain, look(1, 0, 0, false), true, Everything),
            // A sweeper's look is always a flush, with the same quiet rules.
            (Mode::Sweep, look(0, 0, 99, false), false, Everything),
            (Mode::Sweep, look(10, 0, 0, false), true, WholeEvents),
            (Mode::Sweep, look(10, 0, 5, false), true, WholeLines),
            (Mode::Sweep, look(10, 0, 60, false), true, Everything),
            (Mode::Sweep, look(10, 0, 0, true), true, Everything),
        ];
        for (mode, look, now, want) in table {
            assert_eq!(due_now(mode, due, look), now, "{mode:?} {look:?}");
            assert_eq!(urgency(mode, due, look), want, "{mode:?} {look:?}");
        }
        // The largest durations never come due.
        let huge = Due {
            flush: Duration::MAX,
            hold: Duration::MAX,
            line: Duration::MAX,
            chunk_bytes: 100,
            early: true,
        };
        assert!(!due_now(Mode::Follow, huge, look(1, 1, 1, false)));
        assert_eq!(
            urgency(Mode::Follow, huge, look(1, 1, 1, false)),
            WholeEvents
        );
        // An urgent event is due at once while the rate limit allows an
        // early flush, and takes no more of its file than any flush would.
        let urgent = Look {
            urgent: true,
            ..look(10, 1, 0, false)
        };
        assert!(due_now(Mode::Follow, huge, urgent));
        assert!(!due_now(
            Mode::Follow,
            Due {
                early: false,
                ..huge
            },
            urgent
        ));
        assert!(!due_now(
            Mode::Follow,
            huge,
            Look {
                pending: 0,
                ..urgent
            }
        ));
        assert_eq!(urgency(Mode::Follow, huge, urgent), WholeEvents);
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
            cut(data, Format::Access, 0, 100, Urgency::WholeLines),
            Some(8),
            "a quiet file still keeps its line without a newline"
        );
        assert_eq!(
            cut_at(data, Format::Access, 0, 100, Urgency::Everything),
            Some(Cut {
                end: data.len() as u64,
                inside_line: true
            })
        );
        assert_eq!(
            cut(data, Format::Access, 0, 6, Urgency::WholeEvents),
            Some(4),
            "size cap at an event boundary"
        );
        assert_eq!(
            cut(data, Format::Access, 8, 100, Urgency::WholeLines),
            None,
            "only a partial line"
        );
    }

    #[test]
    fn juli_holds_the_last_event_until_quiet() {
        assert_eq!(
            cut(JULI, Format::Juli, 0, 1000, Urgency::WholeEvents),
            Some(38)
        );
        assert_eq!(
            cut_at(JULI, Format::Juli, 0, 1000, Urgency::WholeLines),
            Some(Cut {
                end: JULI.len() as u64,
                inside_line: false
            })
        );
        assert_eq!(
            cut(JULI, Format::Juli, 38, 1000, Urgency::WholeEvents),
            None
        );
        let unfinished = &JULI[..JULI.len() - 3];
        assert_eq!(
            cut(unfinished, Format::Juli, 0, 1000, Urgency::WholeLines),
            Some(70),
            "the continuation line without its newline stays"
        );
    }

    #[test]
    fn a_huge_event_is_cut_at_the_cap() {
        let mut data = b"start".to_vec();
        data.extend(std::iter::repeat_n(b'x', 3 * PART_LIMIT));
        let c = cut_at(
            &data,
            Format::Lines,
            0,
            2 * PART_LIMIT as u64,
            Urgency::WholeEvents,
        )
        .unwrap();
        assert!(c.end > 0 && c.end <= 2 * PART_LIMIT as u64, "{c:?}");
        assert!(c.inside_line);
    }
}
