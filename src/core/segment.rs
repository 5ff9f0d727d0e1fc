//! Object layout v2, the "task segment" (DESIGN.md): every file's new bytes of
//! one flush of one task in one object, so a task pays one upload per flush
//! instead of one per file.
//!
//! Key: `<prefix>/<cluster>/<task_id>/segment/<seq>.gz`, `seq` a 15-digit
//! counter the sidecar keeps in its state. Body: a sequence of gzip members.
//! The first holds the manifest (JSON); each further member holds exactly the
//! bytes `[start, end)` of one file generation, in manifest order, and its
//! compressed length is in the manifest, so a reader can find every part
//! without decompressing the others. `zcat` of the whole object prints the
//! manifest followed by the parts; one file's bytes come out of
//! `curl -r`/`aws s3api get-object --range` at the offsets the manifest gives.
//!
//! A re-upload after a crash rebuilds the same bytes: gzip members are written
//! with mtime 0 and a recorded level, and the manifest is serialised in a fixed
//! field order.

use crate::core::keys::{
    ChunkKey, KeyError, MAX_OFFSET, TaskRef, components, decode_component, encode_component,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{Read, Write};

pub const LAYOUT_VERSION: u32 = 2;
/// The key component that tells a segment from a v1 chunk (which has five
/// components after the prefix; a segment has four).
pub const SEGMENT_DIR: &str = "segment";
const SEQ_DIGITS: usize = 15;
/// The manifest is small (a few hundred bytes per part); a bigger one is
/// hostile or broken and is refused before it costs memory.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Parts per segment: the sidecar never writes more (one per followed file).
pub const MAX_PARTS: usize = 10_000;
/// Level of the manifest member; the parts use the sidecar's configured level.
const MANIFEST_LEVEL: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentKey {
    pub prefix: String,
    pub cluster: String,
    pub task_id: String,
    pub seq: u64,
}

impl SegmentKey {
    /// Parses a key as stored in S3; `Err(KeyError::Shape)` for anything that
    /// is not a segment (a v1 chunk key included), so callers can try v1 next.
    pub fn parse(key: &str, prefix: &str) -> Result<Self, KeyError> {
        let parts = components(key, prefix)?;
        let [cluster, task_id, SEGMENT_DIR, name] = parts[..] else {
            return Err(KeyError::Shape);
        };
        let seq = name
            .strip_suffix(".gz")
            .filter(|s| s.len() == SEQ_DIGITS && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(KeyError::Shape)?;
        Ok(SegmentKey {
            prefix: prefix.to_string(),
            cluster: decode_component(cluster)?,
            task_id: decode_component(task_id)?,
            seq,
        })
    }

    pub fn task(&self) -> TaskRef {
        TaskRef {
            cluster: self.cluster.clone(),
            task_id: self.task_id.clone(),
        }
    }
}

impl fmt::Display for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{SEGMENT_DIR}/{:0w$}.gz",
            self.prefix,
            encode_component(&self.cluster),
            encode_component(&self.task_id),
            self.seq,
            w = SEQ_DIGITS
        )
    }
}

/// One file range inside a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The file's name in the log directory (not encoded).
    pub file: String,
    pub generation: u64,
    pub start: u64,
    pub end: u64,
    /// Compressed length of this part's gzip member in the object.
    pub bytes: u64,
}

impl Part {
    /// The v1 key this part would have had: every per-range rule (checkpoint
    /// entries, stream names, dedup) applies to a part exactly as to a chunk.
    pub fn chunk_key(&self, seg: &SegmentKey) -> ChunkKey {
        ChunkKey {
            prefix: seg.prefix.clone(),
            cluster: seg.cluster.clone(),
            task_id: seg.task_id.clone(),
            file: self.file.clone(),
            generation: self.generation,
            start: self.start,
            end: self.end,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub parts: Vec<Part>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("segment manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    ManifestTooLarge,
    #[error("segment manifest is not valid gzip: {0}")]
    ManifestGzip(String),
    #[error("segment manifest is not valid JSON: {0}")]
    ManifestJson(String),
    #[error("segment manifest: {0}")]
    Invalid(String),
    #[error("segment body ended inside part {part} ({missing} compressed bytes missing)")]
    Truncated { part: usize, missing: u64 },
    #[error("segment body has bytes after its last part (at least {0})")]
    Trailing(u64),
}

impl Manifest {
    /// The rules a reader relies on: version 2, a sane number of parts, each a
    /// non-empty range of a valid file name, no two overlapping in one file generation.
    pub fn validate(&self) -> Result<(), SegmentError> {
        let bad = |why: String| Err(SegmentError::Invalid(why));
        if self.version != LAYOUT_VERSION {
            return bad(format!("version {} is not {LAYOUT_VERSION}", self.version));
        }
        if self.parts.len() > MAX_PARTS {
            return bad(format!("{} parts (at most {MAX_PARTS})", self.parts.len()));
        }
        let mut seen: Vec<(&str, u64, u64, u64)> = Vec::with_capacity(self.parts.len());
        for (i, p) in self.parts.iter().enumerate() {
            if p.file.is_empty() || p.file.contains('/') || p.file == "." || p.file == ".." {
                return bad(format!("part {i}: `{}` is not a file name", p.file));
            }
            if p.start >= p.end || p.end > MAX_OFFSET || p.bytes == 0 {
                return bad(format!(
                    "part {i}: range {}-{} with {} bytes",
                    p.start, p.end, p.bytes
                ));
            }
            seen.push((&p.file, p.generation, p.start, p.end));
        }
        seen.sort_unstable();
        for w in seen.windows(2) {
            if w[0].0 == w[1].0 && w[0].1 == w[1].1 && w[1].2 < w[0].3 {
                return bad(format!("parts of {} generation {} overlap", w[0].0, w[0].1));
            }
        }
        Ok(())
    }
}

/// A part to write: its range and the gzip member of exactly those bytes.
pub struct PartBody {
    pub file: String,
    pub generation: u64,
    pub start: u64,
    pub end: u64,
    pub gzip: Vec<u8>,
}

/// The whole object from parts already compressed: manifest member, then the
/// parts' members in order (other producers and tests; the sidecar streams
/// its parts into a [`SegmentWriter`]).
pub fn encode(parts: &[PartBody]) -> Vec<u8> {
    let mut w = SegmentWriter::new(0);
    for p in parts {
        w.push_member(&p.file, p.generation, (p.start, p.end), &p.gzip);
    }
    w.finish().to_vec()
}

/// Room kept in front of the parts for the manifest member, so the finished
/// body is the one buffer the parts were compressed into (no second copy of a
/// segment in memory). A manifest that does not fit (thousands of parts) is
/// put in front by moving the parts once.
const HEAD_ROOM: usize = 4096;

/// Feeds the encoder in reads of up to 64 KiB, as every earlier version did:
/// a segment re-uploaded after a crash, perhaps by a newer build, must have the
/// same bytes, and stored blocks (level 0) follow how the input was fed.
fn copy_in_blocks<R: Read, W: Write>(src: &mut R, dst: &mut W) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match src.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                dst.write_all(&buf[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Builds a segment body in one buffer: each part's gzip member is written
/// straight into it as the part is read, and the manifest member goes in
/// front at the end.
pub struct SegmentWriter {
    buf: Vec<u8>,
    parts: Vec<Part>,
}

impl SegmentWriter {
    /// `capacity` is a guess of the compressed size (address space only until
    /// written), sparing the reallocations of a growing buffer.
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEAD_ROOM + capacity);
        buf.resize(HEAD_ROOM, 0);
        SegmentWriter {
            buf,
            parts: Vec::new(),
        }
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Uncompressed bytes of the parts so far.
    pub fn plain_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.end - p.start).sum()
    }

    /// Compresses `[start, end)` of `file` (read from `src`, which must yield
    /// exactly `end - start` bytes) at `level` as the next part. On an error
    /// nothing of the part stays in the body.
    pub fn push<R: Read>(
        &mut self,
        file: &str,
        generation: u64,
        (start, end): (u64, u64),
        level: u32,
        mut src: R,
    ) -> std::io::Result<()> {
        let at = self.buf.len();
        let mut enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(&mut self.buf, flate2::Compression::new(level));
        let copied = copy_in_blocks(&mut src, &mut enc).and_then(|n| enc.try_finish().map(|()| n));
        drop(enc);
        match copied {
            Ok(n) if n == end - start => {}
            Ok(n) => {
                self.buf.truncate(at);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{file}: read {n} bytes of the range {start}-{end}"),
                ));
            }
            Err(e) => {
                self.buf.truncate(at);
                return Err(e);
            }
        }
        self.parts.push(Part {
            file: file.to_string(),
            generation,
            start,
            end,
            bytes: (self.buf.len() - at) as u64,
        });
        Ok(())
    }

    /// Adds a part whose gzip member is already built.
    pub fn push_member(
        &mut self,
        file: &str,
        generation: u64,
        (start, end): (u64, u64),
        gzip: &[u8],
    ) {
        self.buf.extend_from_slice(gzip);
        self.parts.push(Part {
            file: file.to_string(),
            generation,
            start,
            end,
            bytes: gzip.len() as u64,
        });
    }

    /// The object's body: the manifest member, then the parts.
    pub fn finish(self) -> bytes::Bytes {
        let manifest = Manifest {
            version: LAYOUT_VERSION,
            parts: self.parts,
        };
        // Serialising a plain struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&manifest).unwrap_or_default();
        let mut enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::new(MANIFEST_LEVEL));
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&json);
        let head = enc.finish().unwrap_or_default();
        let mut buf = self.buf;
        if head.len() <= HEAD_ROOM {
            let from = HEAD_ROOM - head.len();
            buf[from..HEAD_ROOM].copy_from_slice(&head);
            bytes::Bytes::from(buf).slice(from..)
        } else {
            buf.splice(..HEAD_ROOM, head);
            bytes::Bytes::from(buf)
        }
    }
}

/// Collects the head of a segment body until the manifest member is complete.
#[derive(Default)]
pub struct HeadReader {
    buf: Vec<u8>,
}

impl HeadReader {
    /// Feeds the next bytes of the body. `Ok(Some((manifest, rest)))` once the
    /// manifest is complete, `rest` being the bytes after it (the first parts);
    /// `Ok(None)` while more bytes are needed.
    pub fn push(&mut self, input: &[u8]) -> Result<Option<(Manifest, Vec<u8>)>, SegmentError> {
        self.buf.extend_from_slice(input);
        match decode_member(&self.buf)? {
            None if self.buf.len() > MAX_MANIFEST_BYTES => Err(SegmentError::ManifestTooLarge),
            None => Ok(None),
            Some((json, used)) => {
                let manifest: Manifest = serde_json::from_slice(&json)
                    .map_err(|e| SegmentError::ManifestJson(e.to_string()))?;
                manifest.validate()?;
                let rest = self.buf.split_off(used);
                self.buf = Vec::new();
                Ok(Some((manifest, rest)))
            }
        }
    }

    /// The body ended: a head that never completed is a truncated manifest.
    pub fn finish(&self) -> SegmentError {
        SegmentError::ManifestGzip(format!(
            "the body ended after {} bytes, inside the manifest",
            self.buf.len()
        ))
    }
}

/// Decodes the first gzip member of `buf`: its content and how many bytes of
/// `buf` it used, or `None` when `buf` ends before the member does.
fn decode_member(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, SegmentError> {
    let mut rest = buf;
    let mut decoder = flate2::bufread::GzDecoder::new(&mut rest);
    let mut out = Vec::new();
    let limit = MAX_MANIFEST_BYTES as u64 + 1;
    match (&mut decoder).take(limit).read_to_end(&mut out) {
        Ok(_) if out.len() > MAX_MANIFEST_BYTES => Err(SegmentError::ManifestTooLarge),
        // A member cut anywhere (header, data, trailer) reads as an early end.
        Ok(_) if buf.is_empty() => Ok(None),
        Ok(_) => {
            drop(decoder);
            Ok(Some((out, buf.len() - rest.len())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(SegmentError::ManifestGzip(e.to_string())),
    }
}

/// Routes the bytes after the manifest to the parts, by their compressed lengths.
pub struct PartSplitter {
    lengths: Vec<u64>,
    part: usize,
    left: u64,
}

impl PartSplitter {
    pub fn new(manifest: &Manifest) -> Self {
        let lengths: Vec<u64> = manifest.parts.iter().map(|p| p.bytes).collect();
        let left = lengths.first().copied().unwrap_or(0);
        PartSplitter {
            lengths,
            part: 0,
            left,
        }
    }

    /// Calls `each(part index, bytes)` for the pieces of `input`, in order;
    /// bytes past the last part are an error.
    pub fn split<E: From<SegmentError>>(
        &mut self,
        mut input: &[u8],
        mut each: impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while !input.is_empty() {
            if self.part >= self.lengths.len() {
                return Err(SegmentError::Trailing(input.len() as u64).into());
            }
            let n = usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let (piece, after) = input.split_at(n);
            each(self.part, piece)?;
            self.left -= n as u64;
            input = after;
            if self.left == 0 {
                self.part += 1;
                self.left = self.lengths.get(self.part).copied().unwrap_or(0);
            }
        }
        Ok(())
    }

    /// Whether part `i` has received all its bytes.
    pub fn is_complete(&self, i: usize) -> bool {
        i < self.part
    }

    /// The body ended: every part must have been complete.
    pub fn finish(&self) -> Result<(), SegmentError> {
        match self.part < self.lengths.len() {
            true => Err(SegmentError::Truncated {
                part: self.part,
                missing: self.left,
            }),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::new(1));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn part(file: &str, start: u64, data: &[u8]) -> PartBody {
        PartBody {
            file: file.into(),
            generation: 0,
            start,
            end: start + data.len() as u64,
            gzip: gz(data),
        }
    }

    fn sample_key() -> SegmentKey {
        SegmentKey {
            prefix: "logs".into(),
            cluster: "prod".into(),
            task_id: "0f1e".into(),
            seq: 42,
        }
    }

    /// Reads a whole body in pieces of `step` bytes, as the shipper does.
    fn read_all(body: &[u8], step: usize) -> Result<(Manifest, Vec<Vec<u8>>), SegmentError> {
        let mut head = HeadReader::default();
        let mut pieces = body.chunks(step);
        let (manifest, rest) = loop {
            match pieces.next() {
                Some(p) => {
                    if let Some(done) = head.push(p)? {
                        break done;
                    }
                }
                None => return Err(head.finish()),
            }
        };
        let mut split = PartSplitter::new(&manifest);
        let mut gz_parts = vec![Vec::new(); manifest.parts.len()];
        let mut feed = |i: usize, b: &[u8]| -> Result<(), SegmentError> {
            gz_parts[i].extend_from_slice(b);
            Ok(())
        };
        split.split(&rest, &mut feed)?;
        for p in pieces {
            split.split(p, &mut feed)?;
        }
        split.finish()?;
        let plain = gz_parts
            .iter()
            .map(|g| {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&g[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            })
            .collect();
        Ok((manifest, plain))
    }

    #[test]
    fn key_formats_and_parses() {
        let k = sample_key();
        let s = k.to_string();
        assert_eq!(s, "logs/prod/0f1e/segment/000000000000042.gz");
        assert_eq!(SegmentKey::parse(&s, "logs"), Ok(k));
        let mut odd = sample_key();
        odd.cluster = "a b/ü".into();
        assert_eq!(SegmentKey::parse(&odd.to_string(), "logs"), Ok(odd));
    }

    #[test]
    fn v1_keys_and_near_misses_are_not_segments() {
        for key in [
            "logs/prod/t/f/0/000000000000000-000000000000001.gz",
            "logs/prod/t/segment/42.gz",
            "logs/prod/t/segmentx/000000000000042.gz",
            "logs/prod/t/segment/000000000000042",
            "logs/prod/%41/segment/000000000000042.gz",
            "other/prod/t/segment/000000000000042.gz",
        ] {
            assert!(SegmentKey::parse(key, "logs").is_err(), "{key}");
        }
        // And a segment key is not a v1 key.
        assert!(ChunkKey::parse(&sample_key().to_string(), "logs").is_err());
    }

    #[test]
    fn round_trips_in_any_read_size() {
        let a = b"line one\nline two\n".repeat(50);
        let b = b"01-Dec-2026 10:00:00.000 INFO x\n\tat y\n".to_vec();
        let body = encode(&[part("access.txt", 100, &a), part("catalina.log", 0, &b)]);
        for step in [1, 7, 64, 4096, body.len()] {
            let (m, plain) = read_all(&body, step).unwrap();
            assert_eq!(m.parts.len(), 2);
            assert_eq!(m.parts[0].start, 100);
            assert_eq!(m.parts[0].end, 100 + a.len() as u64);
            assert_eq!(plain, vec![a.clone(), b.clone()], "step {step}");
        }
    }

    #[test]
    fn a_writer_compresses_parts_in_place_exactly_and_deterministically() {
        let data =
            b"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5\n".repeat(5000);
        let build = || {
            let mut w = SegmentWriter::new(1 << 16);
            w.push("a.txt", 3, (1000, 200_000), 1, &data[1000..200_000])
                .unwrap();
            let short = w.push("b.txt", 0, (0, 10), 1, &b"12345"[..]);
            assert!(short.is_err(), "a short read is an error");
            assert_eq!(w.parts().len(), 1, "and leaves nothing behind");
            w.push("c.log", 0, (7, 9), 6, &b"x\n"[..]).unwrap();
            w.finish()
        };
        let body = build();
        assert_eq!(body, build());
        let (m, plain) = read_all(&body, 4096).unwrap();
        assert_eq!(plain, vec![data[1000..200_000].to_vec(), b"x\n".to_vec()]);
        assert_eq!((m.parts[0].generation, m.parts[1].start), (3, 7));
        // The same parts through `encode`: one layout, byte for byte.
        let members: Vec<PartBody> = m
            .parts
            .iter()
            .zip(&plain)
            .map(|(p, b)| {
                let mut e = flate2::GzBuilder::new().mtime(0).write(
                    Vec::new(),
                    flate2::Compression::new(if p.file == "c.log" { 6 } else { 1 }),
                );
                e.write_all(b).unwrap();
                PartBody {
                    file: p.file.clone(),
                    generation: p.generation,
                    start: p.start,
                    end: p.end,
                    gzip: e.finish().unwrap(),
                }
            })
            .collect();
        assert_eq!(encode(&members), body.to_vec());
    }

    #[test]
    fn a_part_has_the_bytes_earlier_versions_wrote_at_every_level() {
        // How the chunk and segment writers before `SegmentWriter` fed gzip:
        // reads of up to 64 KiB from the file, each written whole.
        fn earlier(data: &[u8], level: u32) -> Vec<u8> {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::new(level));
            for block in data.chunks(64 * 1024) {
                enc.write_all(block).unwrap();
            }
            enc.finish().unwrap()
        }
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("{i} {}\n", i.wrapping_mul(2_654_435_761)).into_bytes())
            .take(700_001)
            .collect();
        for level in [0, 1, 6, 9] {
            let mut w = SegmentWriter::new(0);
            let len = data.len() as u64;
            w.push("f", 0, (0, len), level, std::io::Cursor::new(&data))
                .unwrap();
            let body = w.finish();
            let member = &body[body.len() - w_len(&body)..];
            assert!(member == earlier(&data, level), "level {level}");
        }
    }

    /// The length of the last part's member, from the manifest.
    fn w_len(body: &[u8]) -> usize {
        let (m, _) = HeadReader::default().push(body).unwrap().unwrap();
        m.parts.last().unwrap().bytes as usize
    }

    #[test]
    fn a_manifest_larger_than_the_head_room_still_leads() {
        let mut w = SegmentWriter::new(0);
        for i in 0..2000u64 {
            let name = format!("{:016x}.log", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            w.push(&name, i, (0, 2), 1, &b"a\n"[..]).unwrap();
        }
        let body = w.finish();
        let (m, plain) = read_all(&body, 999).unwrap();
        assert_eq!((m.parts.len(), plain.len()), (2000, 2000));
        assert!(plain.iter().all(|p| p == b"a\n"));
    }

    #[test]
    fn encoding_is_deterministic_and_zcat_sees_everything() {
        let parts = || vec![part("f.log", 0, b"abc\n"), part("g.log", 5, b"de\n")];
        let body = encode(&parts());
        assert_eq!(body, encode(&parts()));
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut all)
            .unwrap();
        let text = String::from_utf8(all).unwrap();
        assert!(text.starts_with("{\"version\":2,\"parts\":["), "{text}");
        assert!(text.ends_with("}abc\nde\n"), "{text}");
    }

    #[test]
    fn part_maps_to_its_v1_key() {
        let p = Part {
            file: "catalina.2026-11-24.log".into(),
            generation: 1,
            start: 10,
            end: 20,
            bytes: 9,
        };
        assert_eq!(
            p.chunk_key(&sample_key()).to_string(),
            "logs/prod/0f1e/catalina.2026-11-24.log/1/000000000000010-000000000000020.gz"
        );
    }

    #[test]
    fn damaged_bodies_are_errors_not_panics() {
        let body = encode(&[part("f.log", 0, b"abc\n"), part("g.log", 0, b"xyz\n")]);
        // Cut anywhere: inside the manifest, or inside a part.
        for cut in 0..body.len() {
            assert!(read_all(&body[..cut], 3).is_err(), "cut at {cut}");
        }
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(read_all(&trailing, 5), Err(SegmentError::Trailing(1)));
        assert!(matches!(
            read_all(b"not gzip at all", 4),
            Err(SegmentError::ManifestGzip(_))
        ));
        assert!(matches!(
            read_all(&gz(b"{\"version\":2"), 4),
            Err(SegmentError::ManifestJson(_))
        ));
    }

    #[test]
    fn manifest_rules() {
        let ok = |parts: Vec<Part>| Manifest { version: 2, parts }.validate();
        let p = |file: &str, start, end| Part {
            file: file.into(),
            generation: 0,
            start,
            end,
            bytes: 1,
        };
        assert_eq!(ok(vec![p("a", 0, 5), p("a", 5, 9), p("b", 0, 5)]), Ok(()));
        assert!(ok(vec![p("a", 0, 5), p("a", 4, 9)]).is_err(), "overlap");
        assert!(ok(vec![p("a", 5, 5)]).is_err(), "empty range");
        assert!(ok(vec![p("a/b", 0, 5)]).is_err(), "slash");
        assert!(ok(vec![p("..", 0, 5)]).is_err(), "dot-dot");
        assert!(ok(vec![p("a", 0, MAX_OFFSET + 1)]).is_err(), "too far");
        assert!(
            Manifest {
                version: 3,
                parts: vec![]
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn a_huge_manifest_is_refused_early() {
        // Highly compressible: a small gzip that inflates past the limit.
        let json = format!(
            "{{\"version\":2,\"parts\":[],\"pad\":\"{}\"}}",
            "x".repeat(MAX_MANIFEST_BYTES)
        );
        assert_eq!(
            read_all(&gz(json.as_bytes()), 4096).map(|_| ()),
            Err(SegmentError::ManifestTooLarge)
        );
        // An endless header that never completes is refused once it is too long.
        let mut head = HeadReader::default();
        let start = gz(b"x");
        assert_eq!(head.push(&start[..5]), Ok(None));
        let junk = vec![0u8; MAX_MANIFEST_BYTES + 1];
        assert!(head.push(&junk).is_err());
    }
}
