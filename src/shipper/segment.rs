//! A layout v2 task segment adds one step to the way of a v1 chunk: read the
//! manifest from the head of the body, then hand over its parts, each the
//! chunk of its range (`Part::chunk_key`: same checkpoint entries, same
//! stream, same dedup, so v1 chunks and segments of one task mix freely).
//! The parts read their bytes from the one body in turn, one part decoding
//! at a time, so memory stays that of one chunk.

use crate::core::segment::{HeadReader, Manifest, SegmentError, SegmentKey};
use crate::ports::{Object, PortError};
use crate::shipper::chunk::Chunk;
use crate::shipper::outcome::ObjectError;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use tokio::sync::Mutex;

type Body = BoxStream<'static, Result<Bytes, PortError>>;

/// The rest of the body: bytes read but not yet handed to a part, and the stream.
struct Source {
    leftover: Bytes,
    body: Body,
}

/// What follows the last part: nothing, in a well-formed segment.
pub struct Rest(Arc<Mutex<Source>>);

/// Reads the manifest of the segment `key_str` and hands over its parts as
/// chunks, owned by `owner#<part>`, and what follows them.
pub async fn parts(
    object: Object,
    key_str: &str,
    key: &SegmentKey,
    owner: &str,
) -> Result<(Vec<Chunk>, Rest), ObjectError> {
    let Object {
        last_modified_ms,
        mut body,
    } = object;
    let (manifest, rest) = read_head(&mut body, key_str).await?;
    let source = Arc::new(Mutex::new(Source {
        leftover: rest,
        body,
    }));
    let chunks = (manifest.parts.iter().enumerate())
        .map(|(i, part)| {
            let key = part.chunk_key(key);
            Chunk {
                name: format!(
                    "{key_str} part {i} ({} {}-{})",
                    key.file, key.start, key.end
                ),
                owner: format!("{owner}#{i}"),
                body: Some(Object {
                    last_modified_ms,
                    body: part_body(source.clone(), part.bytes),
                }),
                key,
            }
        })
        .collect();
    Ok((chunks, Rest(source)))
}

impl Rest {
    /// Fails the segment if any byte follows its last part. One byte is
    /// enough: a hostile body of endless garbage must not be read to its end.
    pub async fn check_empty(self, key_str: &str) -> Result<(), ObjectError> {
        let mut s = self.0.lock().await;
        let mut extra = s.leftover.len() as u64;
        if extra == 0
            && let Some(Ok(b)) = s.body.next().await
        {
            extra = b.len() as u64;
        }
        if extra > 0 {
            return Err(ObjectError::Segment {
                key: key_str.to_string(),
                source: SegmentError::Trailing(extra),
            });
        }
        Ok(())
    }
}

/// The next `len` bytes of the body as a stream of their own, read when it
/// is polled (so parts must be read in order); it ends early if the body
/// does (the part's pipeline then reports the truncation).
fn part_body(src: Arc<Mutex<Source>>, len: u64) -> Body {
    futures::stream::unfold((src, len), |(src, left)| async move {
        if left == 0 {
            return None;
        }
        let mut s = src.lock().await;
        if s.leftover.is_empty() {
            match s.body.next().await {
                Some(Ok(b)) => s.leftover = b,
                Some(Err(e)) => return Some((Err(e), (src.clone(), 0))),
                None => return None,
            }
        }
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(s.leftover.len());
        let piece = s.leftover.split_to(n);
        drop(s);
        Some((Ok(piece), (src, left - n as u64)))
    })
    .boxed()
}

/// Reads the body until the manifest member is complete.
async fn read_head(body: &mut Body, key: &str) -> Result<(Manifest, Bytes), ObjectError> {
    let mut head = HeadReader::default();
    let bad = |source: SegmentError| ObjectError::Segment {
        key: key.to_string(),
        source,
    };
    loop {
        match body.next().await {
            Some(Ok(bytes)) => {
                if let Some((manifest, rest)) = head.push(&bytes).map_err(bad)? {
                    return Ok((manifest, Bytes::from(rest)));
                }
            }
            Some(Err(source)) => {
                return Err(ObjectError::Read {
                    key: key.to_string(),
                    source,
                });
            }
            None => return Err(bad(head.finish())),
        }
    }
}
