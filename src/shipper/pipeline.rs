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
        let Some(e) = self.builder.build(piece) else {
            return;
        };
        if self.shipped.covers(e.source.0, e.source.1) {
            self.duplicates += 1;
        } else if let Some(full) = self.batcher.push(e) {
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
            decoder: MultiGzDecoder::new(Vec::with_capacity(256 * 1024)),
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
        self.compressed_in += compressed.len() as u64;
        let written = self.decoder.write_all(compressed);
        self.drain_decoded()?;
        written.map_err(|e| self.corrupt(e.to_string()))
    }

    /// Ends the object: the body must have decoded to exactly `[start, end)`.
    pub fn finish(&mut self) -> Result<(), Corrupt> {
        // An empty body is an empty chunk; anything else must be complete gzip.
        if self.compressed_in > 0 {
            let finished = self.decoder.try_finish();
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

    pub fn take_ready(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.assembler.ready)
    }

    fn drain_decoded(&mut self) -> Result<(), Corrupt> {
        let mut out = std::mem::take(self.decoder.get_mut());
        let room = self.key_end - self.key_start - self.decoded;
        let take = out.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.decoded += take as u64;
        let assembler = &mut self.assembler;
        self.splitter
            .push(&out[..take], &mut |piece| assembler.accept(piece));
        let overflow = out.len() > take;
        // Hand the buffer back so its capacity is reused.
        out.clear();
        *self.decoder.get_mut() = out;
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
