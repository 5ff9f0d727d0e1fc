//! The synchronous heart of the shipper: gzip bytes in, full batches out.
//! No I/O here, so the benchmark and the unit tests drive exactly this code.
//!
//! Memory stays flat whatever the object holds: compressed input is decoded
//! a step at a time (the decoder produces at most its 32 KiB buffer per
//! step), and decoding pauses as soon as a batch is ready, until the caller
//! has taken it. Over-long events are cut into parts by the splitter as the
//! bytes arrive, so neither a huge line nor a body that compresses a
//! thousandfold is ever held whole.

use crate::core::batch::{Batch, Batcher, message_limit};
use crate::core::events::{EventBuilder, EventStats, Window};
use crate::core::keys::ChunkKey;
use crate::core::ranges::RangeSet;
use crate::core::split::{Format, Piece, Splitter};
use crate::core::verify::digest;
use flate2::write::MultiGzDecoder;
use std::io::Write;

/// The object's bytes do not decode to exactly the key's range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("body is corrupt or truncated at source offset {offset}: {detail}")]
pub struct Corrupt {
    /// Source-file offset of the first byte that could not be decoded.
    pub offset: u64,
    pub detail: String,
}

/// Compressed bytes offered to the decoder per step; it takes what fits its
/// output buffer (32 KiB decoded) and leaves the rest for the next step.
const DECODE_STEP: usize = 8 * 1024;

pub struct Pipeline {
    key_start: u64,
    key_end: u64,
    decoder: MultiGzDecoder<Vec<u8>>,
    compressed_in: u64,
    decoded: u64,
    splitter: Splitter,
    assembler: Assembler,
    /// Compressed bytes not yet decoded, and how far decoding got in them.
    input: bytes::Bytes,
    input_at: usize,
    /// Set once the body proved corrupt: nothing more is decoded.
    broken: bool,
}

/// Pieces to events to batches, leaving out what the checkpoint already has.
struct Assembler {
    builder: EventBuilder,
    batcher: Batcher,
    shipped: RangeSet,
    ready: std::collections::VecDeque<Batch>,
    duplicates: u64,
    /// Skipped events as `(timestamp, message digest)`: they are in the
    /// stream, and a read-back must not take them for a batch's.
    skipped: Vec<(i64, u64)>,
    scratch: String,
}

impl Assembler {
    fn accept(&mut self, piece: Piece<'_>) {
        let Some(e) = self.builder.prepare(piece) else {
            return;
        };
        if !self.shipped.is_empty() && self.shipped.covers(e.source.0, e.source.1) {
            self.duplicates += 1;
            self.scratch.clear();
            // Counted when it was shipped, not again.
            let escaped = self.builder.stats.escaped_bytes;
            self.builder.write_message(&mut self.scratch, &e);
            self.builder.stats.escaped_bytes = escaped;
            self.skipped.push((e.timestamp, digest(&self.scratch)));
            return;
        }
        let builder = &mut self.builder;
        let write = |text: &mut String| builder.write_message(text, &e);
        if let Some(full) = self.batcher.push_with(e.timestamp, e.source, write) {
            self.ready.push_back(full);
        }
    }
}

impl Pipeline {
    /// `shipped` is the checkpoint's view of this file generation when the lease was taken.
    pub fn new(
        key: &ChunkKey,
        tz: chrono_tz::Tz,
        max_event_bytes: usize,
        fallback_ms: i64,
        window: Window,
        shipped: RangeSet,
    ) -> Self {
        let format = Format::for_file(&key.file);
        Pipeline {
            key_start: key.start,
            key_end: key.end,
            decoder: MultiGzDecoder::new(Vec::new()),
            compressed_in: 0,
            decoded: 0,
            splitter: Splitter::new(format, key.start, message_limit(max_event_bytes)),
            assembler: Assembler {
                builder: EventBuilder::new(format, tz, fallback_ms, window),
                batcher: Batcher::default(),
                shipped,
                ready: std::collections::VecDeque::new(),
                duplicates: 0,
                skipped: Vec::new(),
                scratch: String::new(),
            },
            input: bytes::Bytes::new(),
            input_at: 0,
            broken: false,
        }
    }

    pub fn stats(&self) -> EventStats {
        self.assembler.builder.stats
    }

    /// Events skipped because the checkpoint already had their range.
    pub fn duplicates(&self) -> u64 {
        self.assembler.duplicates
    }

    /// The events skipped since the last call, as `(timestamp, digest)`.
    pub fn take_skipped(&mut self) -> Vec<(i64, u64)> {
        std::mem::take(&mut self.assembler.skipped)
    }

    /// Hands over the next compressed bytes of the body; call `next_batch`
    /// until it returns `None` before feeding more.
    pub fn feed(&mut self, compressed: bytes::Bytes) {
        debug_assert!(self.input_at >= self.input.len(), "input not consumed");
        self.input = compressed;
        self.input_at = 0;
    }

    /// The next full batch, decoding only as much as it takes: `None` once
    /// the fed bytes are used up (or, after a failure, the ready batches are).
    pub fn next_batch(&mut self) -> Result<Option<Batch>, Corrupt> {
        loop {
            if let Some(b) = self.assembler.ready.pop_front() {
                return Ok(Some(b));
            }
            if self.broken || self.input_at >= self.input.len() {
                return Ok(None);
            }
            let end = (self.input_at + DECODE_STEP).min(self.input.len());
            std::mem::swap(self.decoder.get_mut(), self.splitter.buffer_mut());
            let written = self.decoder.write(&self.input[self.input_at..end]);
            std::mem::swap(self.decoder.get_mut(), self.splitter.buffer_mut());
            let drained = self.drain_decoded();
            let step = match written {
                Ok(0) => Err(self.corrupt("the decoder takes no more input".into())),
                Ok(n) => Ok(n),
                Err(e) => Err(self.corrupt(e.to_string())),
            };
            match drained.and(step) {
                Ok(n) => {
                    self.input_at += n;
                    self.compressed_in += n as u64;
                }
                Err(c) => {
                    self.broken = true;
                    return Err(c);
                }
            }
        }
    }

    /// Ends the object: the body must have decoded to exactly `[start, end)`.
    pub fn finish(&mut self) -> Result<(), Corrupt> {
        // An empty body is an empty chunk; anything else must be complete gzip.
        if self.compressed_in > 0 {
            std::mem::swap(self.decoder.get_mut(), self.splitter.buffer_mut());
            let finished = self.decoder.try_finish();
            std::mem::swap(self.decoder.get_mut(), self.splitter.buffer_mut());
            self.drain_decoded()?;
            finished.map_err(|e| self.corrupt(e.to_string()))?;
        }
        let expected = self.key_end - self.key_start;
        if self.decoded != expected {
            return Err(self.corrupt(format!(
                "decoded {} bytes, the key names {expected}",
                self.decoded
            )));
        }
        let assembler = &mut self.assembler;
        self.splitter.finish(&mut |piece| assembler.accept(piece));
        self.flush_complete();
        Ok(())
    }

    /// After a decoding error: what was complete before the damage, as
    /// batches for `next_batch`.
    pub fn flush_complete(&mut self) {
        self.broken = true;
        let last = self.assembler.batcher.finish();
        self.assembler.ready.extend(last);
    }

    /// Returns a sent batch's buffers for reuse.
    pub fn recycle(&mut self, batch: Batch) {
        self.assembler.batcher.recycle(batch);
    }

    /// Splits what the decoder wrote. The decoder writes straight into the
    /// splitter's buffer (swapped in for the write), saving a copy of every byte.
    fn drain_decoded(&mut self) -> Result<(), Corrupt> {
        let fresh = self.splitter.unprocessed();
        let room =
            usize::try_from(self.key_end - self.key_start - self.decoded).unwrap_or(usize::MAX);
        let overflow = fresh > room;
        if overflow {
            let keep = self.splitter.buffer_mut().len() - (fresh - room);
            self.splitter.buffer_mut().truncate(keep);
        }
        self.decoded += fresh.min(room) as u64;
        let assembler = &mut self.assembler;
        self.splitter.process(&mut |piece| assembler.accept(piece));
        if overflow {
            return Err(self.corrupt("the body holds more bytes than the key's range".into()));
        }
        Ok(())
    }

    fn corrupt(&self, detail: String) -> Corrupt {
        Corrupt {
            offset: self.key_start + self.decoded,
            detail,
        }
    }
}
