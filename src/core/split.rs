//! Event boundaries: one implementation for the sidecar (where to cut a chunk)
//! and the shipper (what one CloudWatch event is).
//!
//! An event runs from the line that starts it up to the line that starts the
//! next one. The splitter is incremental and deterministic: however the bytes
//! are pushed, the same input yields the same pieces with the same source ranges,
//! which is what lets the shipper deduplicate by range after a retry.

use crate::core::escape::cut_point;
use crate::core::timestamp::starts_with_juli_timestamp;

/// How a file's lines group into events, chosen by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `localhost_access_log.*`: one line, one event.
    Access,
    /// Tomcat JULI logs: an event starts at a `dd-MMM-yyyy HH:mm:ss.SSS` line.
    Juli,
    /// Anything else: a line starting with whitespace continues the event.
    Lines,
}

impl Format {
    pub fn for_file(name: &str) -> Format {
        const JULI: [&str; 4] = ["catalina.", "localhost.", "manager.", "host-manager."];
        if name.starts_with("localhost_access_log.") {
            Format::Access
        } else if JULI.iter().any(|p| name.starts_with(p)) {
            Format::Juli
        } else {
            Format::Lines
        }
    }

    /// Whether a line whose first bytes are `prefix` starts an event: `None`
    /// while `prefix` is too short to tell. `complete` says the line is whole.
    fn starts_event(self, prefix: &[u8], complete: bool) -> Option<bool> {
        let content = prefix.strip_suffix(b"\n").unwrap_or(prefix);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        let blank = content.is_empty();
        match self {
            Format::Access => match (blank, complete) {
                (false, _) => Some(true),
                (true, true) => Some(false),
                // Only a lone `\r` so far: could still become a blank line.
                (true, false) => None,
            },
            Format::Lines => match content.first() {
                Some(b' ' | b'\t') => Some(false),
                Some(_) => Some(true),
                None if complete => Some(false),
                None => None,
            },
            Format::Juli => {
                if content.len() >= 24 || complete {
                    return Some(starts_with_juli_timestamp(content));
                }
                (!could_become_juli_timestamp(content)).then_some(false)
            }
        }
    }
}

fn could_become_juli_timestamp(p: &[u8]) -> bool {
    const PATTERN: &[u8; 24] = b"00-Aaa-0000 00:00:00.000";
    p.iter().zip(PATTERN).all(|(&c, &want)| match want {
        b'0' => c.is_ascii_digit(),
        b'A' => c.is_ascii_uppercase(),
        b'a' => c.is_ascii_lowercase(),
        sep => c == sep,
    })
}

/// One piece of output: a whole event, or one part of an event too large for
/// one message. `range` tiles the input: the pieces' ranges plus the blank
/// lines they skip cover every byte once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// Half-open source byte range this piece accounts for.
    pub range: (u64, u64),
    /// The raw bytes of the message (before `message_bytes` trimming and escaping).
    pub raw: &'a [u8],
    /// True for the piece that begins at the event's first line.
    pub first: bool,
    /// True for the piece that ends its event: `range.1` is an event boundary.
    pub last: bool,
    /// False when the piece is a single line, so no inner line end needs rewriting.
    pub multiline: bool,
    /// True when `raw` is known to be valid UTF-8 (checked in bulk as it arrived).
    pub utf8: bool,
}

/// Incremental event splitter. Feed bytes with `push`, end with `finish`.
#[derive(Debug)]
pub struct Splitter {
    format: Format,
    /// Escaped-byte budget of one piece's message.
    limit: usize,
    buf: Vec<u8>,
    /// Absolute source offset of `buf[0]`.
    base: u64,
    /// Absolute offset where the next piece's range starts.
    range_start: u64,
    /// Start in `buf` of the open event's not yet emitted bytes.
    open: Option<usize>,
    /// Whether the open event has already emitted a part.
    open_parted: bool,
    /// Start in `buf` of the last, possibly incomplete, line.
    scan: usize,
    /// Whether the line at `scan` was classified while still incomplete.
    tail_classified: bool,
    /// Whether the open event has more than one line.
    open_multiline: bool,
    /// Scratch space for `push`.
    line_ends: Vec<usize>,
    /// `buf[..processed]` has been split.
    processed: usize,
    /// `buf[..valid_until]` is valid UTF-8, checked once per push in bulk.
    valid_until: usize,
    /// An invalid byte at this index stops the bulk check until it is behind us.
    invalid_at: Option<usize>,
}

impl Splitter {
    pub fn new(format: Format, start_offset: u64, limit: usize) -> Self {
        Splitter {
            format,
            limit: limit.max(8),
            buf: Vec::new(),
            base: start_offset,
            range_start: start_offset,
            open: None,
            open_parted: false,
            scan: 0,
            tail_classified: false,
            open_multiline: false,
            line_ends: Vec::new(),
            processed: 0,
            valid_until: 0,
            invalid_at: None,
        }
    }

    /// Bytes buffered but not yet emitted.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.open.unwrap_or(self.scan).min(self.buf.len())
    }

    pub fn push(&mut self, data: &[u8], emit: &mut impl FnMut(Piece<'_>)) {
        self.buf.extend_from_slice(data);
        self.process(emit);
    }

    /// The buffer, for a producer that appends to it in place (a decoder
    /// writing straight into it saves a copy); call `process` afterwards.
    pub fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Splits what was appended since the last call.
    pub fn process(&mut self, emit: &mut impl FnMut(Piece<'_>)) {
        let old_len = self.processed;
        self.check_utf8();
        // One pass for all line ends: much cheaper than a search per line.
        let mut ends = std::mem::take(&mut self.line_ends);
        ends.clear();
        ends.extend(memchr::memchr_iter(b'\n', &self.buf[old_len..]).map(|i| old_len + i + 1));
        for &end in &ends {
            if !self.tail_classified {
                let starts = self.format.starts_event(&self.buf[self.scan..end], true);
                self.classified_line(starts == Some(true), end, emit);
            }
            self.scan = end;
            self.tail_classified = false;
            if self.open.is_some_and(|o| self.scan - o >= self.limit + 4) {
                self.cut_oversized(self.scan, emit);
            }
        }
        self.line_ends = ends;
        self.classify_tail(false, emit);
        self.compact();
    }

    /// Bytes appended to the buffer and not yet processed.
    pub fn unprocessed(&self) -> usize {
        self.buf.len() - self.processed
    }

    /// Emits everything left, treating a final line without `\n` as complete.
    pub fn finish(&mut self, emit: &mut impl FnMut(Piece<'_>)) {
        self.classify_tail(true, emit);
        let end = self.buf.len();
        self.emit_open(end, emit);
        self.scan = end;
        self.tail_classified = false;
        self.range_start = self.base + end as u64;
        self.compact();
    }

    /// Classifies the incomplete last line as soon as its first bytes tell,
    /// so a huge line can be cut into parts before its end arrives.
    fn classify_tail(&mut self, complete: bool, emit: &mut impl FnMut(Piece<'_>)) {
        let tail = &self.buf[self.scan..];
        if tail.is_empty() || self.tail_classified {
            if self.tail_classified {
                self.cut_oversized(self.buf.len(), emit);
            }
            return;
        }
        if let Some(starts) = self.format.starts_event(tail, complete) {
            self.classified_line(starts, self.buf.len(), emit);
            self.tail_classified = true;
            self.cut_oversized(self.buf.len(), emit);
        }
    }

    /// Acts on the line at `self.scan` (ending at `end`) once its class is known.
    fn classified_line(&mut self, starts: bool, end: usize, emit: &mut impl FnMut(Piece<'_>)) {
        if starts {
            self.emit_open(self.scan, emit);
            self.open = Some(self.scan);
            self.open_parted = false;
            self.open_multiline = false;
        } else if self.open.is_some() {
            self.open_multiline = true;
        } else {
            let line = &self.buf[self.scan..end];
            if !line.iter().all(|&b| b == b'\n' || b == b'\r') {
                // A continuation with nothing before it in this chunk: its own event.
                self.open = Some(self.scan);
                self.open_parted = false;
                self.open_multiline = false;
            }
        }
    }

    fn emit_open(&mut self, end: usize, emit: &mut impl FnMut(Piece<'_>)) {
        let Some(mut start) = self.open.take() else {
            return;
        };
        let mut first = !self.open_parted;
        while start < end {
            let n = if end - start <= self.limit / 4 {
                end - start
            } else {
                let n = cut_point(&self.buf[start..end], self.limit);
                if start + n < end {
                    part_end(&self.buf[start..end], n)
                } else {
                    n
                }
            };
            let range = (self.range_start, self.base + (start + n) as u64);
            emit(Piece {
                range,
                raw: &self.buf[start..start + n],
                first,
                last: start + n == end,
                multiline: self.open_multiline,
                utf8: start + n <= self.valid_until,
            });
            self.range_start = range.1;
            first = false;
            start += n;
        }
        self.open_parted = false;
    }

    /// Emits leading parts of the open event while more than a part's worth of
    /// it is known, so one huge line never has to be held whole.
    fn cut_oversized(&mut self, known_end: usize, emit: &mut impl FnMut(Piece<'_>)) {
        let Some(mut start) = self.open else { return };
        // `limit + 4` raw bytes always escape to more than `limit`, and the cut
        // never needs to see past them: the result does not depend on chunking.
        while known_end - start >= self.limit + 4 {
            let n = cut_point(&self.buf[start..start + self.limit + 4], self.limit);
            let n = part_end(&self.buf[start..start + self.limit + 4], n);
            let range = (self.range_start, self.base + (start + n) as u64);
            emit(Piece {
                range,
                raw: &self.buf[start..start + n],
                first: !self.open_parted,
                last: false,
                multiline: self.open_multiline,
                utf8: start + n <= self.valid_until,
            });
            self.range_start = range.1;
            self.open_parted = true;
            start += n;
        }
        self.open = Some(start);
    }

    /// Extends the known-valid prefix; a character split across pushes is
    /// checked again once its remaining bytes arrive.
    fn check_utf8(&mut self) {
        if self.invalid_at.is_some() {
            return;
        }
        let fresh = &self.buf[self.valid_until..];
        // SIMD validation of whole blocks; the exact error only when there is one.
        if simdutf8::basic::from_utf8(fresh).is_ok() {
            self.valid_until = self.buf.len();
            return;
        }
        match simdutf8::compat::from_utf8(fresh) {
            Ok(_) => self.valid_until = self.buf.len(),
            Err(e) => {
                self.valid_until += e.valid_up_to();
                if e.error_len().is_some() {
                    self.invalid_at = Some(self.valid_until);
                }
            }
        }
    }

    fn compact(&mut self) {
        let keep_from = self.open.unwrap_or(self.scan);
        if keep_from == 0 {
            self.processed = self.buf.len();
            return;
        }
        self.buf.drain(..keep_from);
        self.base += keep_from as u64;
        // Parts of a huge, still incomplete line may already be emitted past its
        // start; that line is classified and holds no `\n`, so scanning resumes there.
        self.scan = self.scan.saturating_sub(keep_from);
        self.open = self.open.map(|o| o - keep_from);
        self.valid_until = self.valid_until.saturating_sub(keep_from);
        self.processed = self.buf.len();
        self.invalid_at = self.invalid_at.and_then(|i| i.checked_sub(keep_from));
        self.check_utf8();
    }
}

/// Where a part that does not end its event should end, given the longest
/// cut `n` that fits: before the line ends it would finish with, so they
/// travel with the next part. Then the parts rejoin to the event's message
/// (whose trailing line ends are dropped) and a `\r\n` is never split. A
/// part made only of line ends (a long run of blank lines inside an event)
/// stays whole, less a `\r` whose `\n` is in the next part. `bytes` must
/// reach past `n`.
fn part_end(bytes: &[u8], n: usize) -> usize {
    let content = bytes[..n]
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    if content > 0 {
        content
    } else if n > 1 && bytes[n - 1] == b'\r' && bytes.get(n) == Some(&b'\n') {
        n - 1
    } else {
        n
    }
}

/// The message bytes of a piece: line ends as `\n` (a `\r` before `\n` dropped);
/// the trailing line ends of an event (`last`) removed, those inside kept.
/// Borrowed when nothing changes, the common case.
pub fn message_bytes(raw: &[u8], multiline: bool, last: bool) -> std::borrow::Cow<'_, [u8]> {
    let mut end = raw.len();
    while last && end > 0 && matches!(raw[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let body = &raw[..end];
    // Only a line end inside the message can need rewriting.
    if !multiline
        || memchr::memchr(b'\r', body).is_none()
        || memchr::memmem::find(body, b"\r\n").is_none()
    {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
        out.extend_from_slice(&rest[..i]);
        out.push(b'\n');
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
