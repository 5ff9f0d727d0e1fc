//! What identifies a file across looks and restarts: device and inode, and
//! checksums of bytes already shipped (its first bytes, the bytes before the
//! offset), which a rewrite in place or a recreated file with a reused inode
//! changes.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Which file (not which name): device and inode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Not recorded on a shared file system (each NFS client reports its own).
    pub dev: Option<u64>,
    pub inode: u64,
}

impl Identity {
    /// Whether `dev`/`inode` name this file (an unknown device matches any).
    pub fn matches(&self, dev: u64, inode: u64) -> bool {
        self.inode == inode && self.dev.is_none_or(|d| d == dev)
    }
}

/// How many of a file's first bytes the head checksum covers.
pub const HEAD_BYTES: u64 = 1024;
/// How many bytes before the offset the tail checksum covers.
pub const TAIL_BYTES: u64 = 32;

/// Checksums of shipped bytes that a rewrite in place or a recreated file with
/// a reused inode changes: the first bytes (as Vector fingerprints files) and
/// the bytes just before the offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many first bytes `head` covers: `min(HEAD_BYTES, offset)`.
    pub head_len: u64,
    #[serde(with = "hex64")]
    pub head: u64,
    /// Of the `min(TAIL_BYTES, offset)` bytes before the offset.
    #[serde(with = "hex64")]
    pub tail: u64,
}

/// Checksums as 16 hex digits: JSON readers that hold numbers as doubles
/// would round a u64.
mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        u64::from_str_radix(&text, 16).map_err(D::Error::custom)
    }
}

/// FNV-1a, 64 bits: tiny, stable across versions and platforms.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn read_at(file: &File, start: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut buf, start)?;
    Ok(buf)
}

impl Fingerprint {
    /// The fingerprint of `file` shipped up to `offset`.
    pub fn of(file: &File, offset: u64) -> io::Result<Fingerprint> {
        let head_len = offset.min(HEAD_BYTES);
        let tail_len = offset.min(TAIL_BYTES);
        Ok(Fingerprint {
            head_len,
            head: fnv1a(&read_at(file, 0, head_len)?),
            tail: fnv1a(&read_at(file, offset - tail_len, tail_len)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn covers_the_head_and_the_bytes_before_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let f = File::open(&p).unwrap();
        let fp = Fingerprint::of(&f, 4).unwrap();
        assert_eq!(
            (fp.head_len, fp.head, fp.tail),
            (4, fnv1a(b"0123"), fnv1a(b"0123"))
        );
        assert_eq!(Fingerprint::of(&f, 0).unwrap().head, fnv1a(b""));
        assert!(Fingerprint::of(&f, 11).is_err(), "past the end");
    }
}
