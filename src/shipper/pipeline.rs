//! The synchronous heart of the shipper: gzip bytes in, full batches out.
//! No I/O here, so the benchmark and the unit tests drive exactly this code.

use crate::core::batch::{Batch, Batcher, message_limit};
use crate::core::events::{EventBuilder, EventStats, Window};
use crate::core::keys::ChunkKey;
use crate::core::ranges::RangeSet;
use crate::core::split::{Format, Piece, Splitter};
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

/// Compressed bytes decoded per step (about ten times that once decoded).
const DECODE_STEP: usize = 8 * 1024;

pub struct Pipeline {
    key_start: u64,
    key_end: u64,
    decoder: MultiGzDecoder<Vec<u8>>,
    compressed_in: u64,
    decoded: u64,
    splitter: Splitter,
    assembler: Assembler,
}

/// Pieces to events to batches, leaving out what the checkpoint already has.
struct Assembler {
    builder: EventBuilder,
    batcher: Batcher,
    shipped: RangeSet,
    ready: Vec<Batch>,
    duplicates: u64,
}

impl Assembler {
    fn accept(&mut self, piece: Piece<'_>) {
        let Some(e) = self.builder.prepare(piece) else {
            return;
        };
        if !self.shipped.is_empty() && self.shipped.covers(e.source.0, e.source.1) {
            self.duplicates += 1;
            return;
        }
        let builder = &mut self.builder;
        let write = |text: &mut String| builder.write_message(text, &e);
        if let Some(full) = self.batcher.push_with(e.timestamp, e.source, write) {
            self.ready.push(full);
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
                ready: Vec::new(),
                duplicates: 0,
            },
        }
    }

    pub fn stats(&self) -> EventStats {
        self.assembler.builder.stats
    }

    /// Events skipped because the checkpoint already had their range.
    pub fn duplicates(&self) -> u64 {
        self.assembler.duplicates
    }

    /// Feeds compressed bytes; complete batches collect in `take_ready`.
    pub fn push(&mut self, compressed: &[u8]) -> Result<(), Corrupt> {
        // Small steps keep the decoded bytes in cache for the passes that follow.
        for step in compressed.chunks(DECODE_STEP) {
            self.compressed_in += step.len() as u64;
            std::mem::swap(self.decoder.get_mut(), self.splitter.buffer_mut());
            let written = self.decoder.write_all(step);
            std::mem::swap(self.decoder.get_mut(), self.splitter.buffer_mut());
            self.drain_decoded()?;
            written.map_err(|e| self.corrupt(e.to_string()))?;
        }
        Ok(())
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

    /// After a decoding error: what was complete before the damage, as batches.
    pub fn flush_complete(&mut self) {
        let last = self.assembler.batcher.finish();
        self.assembler.ready.extend(last);
    }

    /// Returns a sent batch's buffers for reuse.
    pub fn recycle(&mut self, batch: Batch) {
        self.assembler.batcher.recycle(batch);
    }

    pub fn take_ready(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.assembler.ready)
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
