//! A layout v2 task segment: read the manifest from the head of the body,
//! lease every part in one checkpoint write, pump each part through its own
//! pipeline (one part decoding at a time, so memory stays that of one chunk),
//! then record every part and drop the leases in one write.
//!
//! Each part is handled exactly as the v1 chunk it stands for
//! (`Part::chunk_key`): same checkpoint entries, same stream, same dedup, so
//! v1 chunks and v2 segments of one task mix freely.

use crate::core::checkpoint::LeaseOutcome;
use crate::core::keys::ChunkKey;
use crate::core::ranges::RangeSet;
use crate::core::segment::{HeadReader, Manifest, SegmentError, SegmentKey};
use crate::ports::{CheckpointStore, LogSink, Object, ObjectStore, PortError};
use crate::shipper::invocation::InvocationState;
use crate::shipper::object::{Deps, Settlement, lease_expiry, settle};
use crate::shipper::outcome::{ObjectError, ObjectOutcome, ShipReport};
use crate::shipper::pump::Pump;
use crate::shipper::trigger::ObjectRef;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use tokio::sync::Mutex;

pub struct SegmentJob<'j> {
    pub obj: &'j ObjectRef,
    pub owner: &'j str,
    pub key_str: String,
    pub key: SegmentKey,
}

/// The rest of the body: bytes read but not yet handed to a part, and the stream.
struct Source {
    leftover: Bytes,
    body: BoxStream<'static, Result<Bytes, PortError>>,
}

type Shared = Arc<Mutex<Source>>;

/// The next `len` bytes of the body as a stream of their own; it ends early
/// if the body does (the part's pipeline then reports the truncation).
fn part_stream(src: Shared, len: u64) -> BoxStream<'static, Result<Bytes, PortError>> {
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
async fn read_head(
    body: &mut BoxStream<'static, Result<Bytes, PortError>>,
    key: &str,
) -> Result<(Manifest, Bytes), ObjectError> {
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

impl SegmentJob<'_> {
    fn part_owner(&self, i: usize) -> String {
        format!("{}#{i}", self.owner)
    }

    pub async fn run<O, C, L>(
        &self,
        deps: &Deps<'_, O, L>,
        state: &InvocationState<'_, C>,
    ) -> Result<ObjectOutcome, ObjectError>
    where
        O: ObjectStore,
        C: CheckpointStore,
        L: LogSink,
    {
        let key_str = self.key_str.as_str();
        // Segments of one task take turns in record order (held through the
        // GET and the manifest, before any stream turn), so parts of one file
        // reach its stream in file order even where timestamps tie.
        let task = self.key.task();
        let turn_name = format!("\0segments\0{}\0{}", task.cluster, task.task_id);
        let _task_turn = state.stream_turn(&turn_name).await;
        let object = match deps.objects.get(&self.obj.bucket, key_str).await {
            Ok(o) => o,
            Err(PortError::NotFound(_)) => {
                tracing::error!(
                    bucket = self.obj.bucket,
                    key = key_str,
                    kind = "missing",
                    will_retry = false,
                    "object not found: nothing shipped, the range is not marked shipped"
                );
                return Ok(ObjectOutcome::Missing {
                    key: key_str.to_string(),
                });
            }
            Err(source) => {
                return Err(ObjectError::Read {
                    key: key_str.to_string(),
                    source,
                });
            }
        };
        let Object {
            last_modified_ms,
            mut body,
        } = object;
        let (manifest, rest) = read_head(&mut body, key_str).await?;
        let parts: Vec<ChunkKey> = manifest
            .parts
            .iter()
            .map(|p| p.chunk_key(&self.key))
            .collect();
        let checkpoint_bucket = deps
            .config
            .checkpoint_bucket
            .as_deref()
            .unwrap_or(&self.obj.bucket);
        let cp = state
            .checkpointer(checkpoint_bucket, &self.key.task())
            .await;
        let checkpoint_error = |source| ObjectError::Checkpoint {
            key: key_str.to_string(),
            source,
        };

        // One write leases every part; if any part is leased elsewhere,
        // nothing is written and the record is retried later.
        let (now, expires) = (chrono::Utc::now(), lease_expiry(state.inv.deadline_ms));
        let leased = cp
            .update(|doc| {
                let mut trial = doc.clone();
                let mut outcomes = Vec::with_capacity(parts.len());
                for (i, k) in parts.iter().enumerate() {
                    match trial.try_lease(k, &self.part_owner(i), now, expires) {
                        LeaseOutcome::HeldBy { owner, expires_at } => {
                            return (Err((i, owner, expires_at)), false);
                        }
                        o => {
                            let shipped = trial.file(k).map(|f| f.shipped.clone());
                            outcomes.push((o, shipped.unwrap_or_default()));
                        }
                    }
                }
                let write = outcomes.iter().any(|(o, _)| *o == LeaseOutcome::Taken);
                *doc = trial;
                (Ok(outcomes), write)
            })
            .await
            .map_err(checkpoint_error)?;
        let outcomes = leased.map_err(|(i, owner, until)| ObjectError::LeaseHeld {
            key: format!("{key_str} part {i}"),
            owner,
            until,
        })?;
        if outcomes
            .iter()
            .all(|(o, _)| *o == LeaseOutcome::AlreadyShipped)
        {
            tracing::info!(key = key_str, "already shipped; nothing to do");
            return Ok(ObjectOutcome::AlreadyShipped {
                key: key_str.to_string(),
            });
        }

        let src: Shared = Arc::new(Mutex::new(Source {
            leftover: rest,
            body,
        }));
        let mut total = ShipReport::default();
        let mut records: Vec<(usize, RangeSet)> = Vec::new();
        let mut failure: Option<ObjectError> = None;
        for (i, ((outcome, shipped), (part, key))) in outcomes
            .into_iter()
            .zip(manifest.parts.iter().zip(&parts))
            .enumerate()
        {
            let stream_body = part_stream(src.clone(), part.bytes);
            if outcome == LeaseOutcome::AlreadyShipped {
                // Skip its bytes without decoding them.
                let mut skip = stream_body;
                while let Some(piece) = skip.next().await {
                    if let Err(source) = piece {
                        failure = Some(ObjectError::Read {
                            key: key_str.to_string(),
                            source,
                        });
                        break;
                    }
                }
                if failure.is_some() {
                    break;
                }
                continue;
            }
            let part_name = format!(
                "{key_str} part {i} ({} {}-{})",
                key.file, key.start, key.end
            );
            let stream = deps.config.stream_template.render(&key.task(), key);
            let _turn = state.stream_turn(&stream).await;
            let pump = Pump {
                objects: deps.objects,
                sender: deps.sender,
                config: deps.config,
                cp: &cp,
                key,
                key_str: &part_name,
                bucket: &self.obj.bucket,
                stream: &stream,
                deadline_ms: state.inv.deadline_ms,
                margin_ms: state.margin_ms,
            };
            let prefetched = Object {
                last_modified_ms,
                body: stream_body,
            };
            let pumped = pump.run(Some(prefetched), shipped).await;
            let Settlement { record, result } = settle(key, &part_name, pumped);
            records.push((i, record));
            match result {
                Ok(ObjectOutcome::Shipped { report, .. }) => add(&mut total, &report),
                Ok(_) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            let mut s = src.lock().await;
            // One trailing byte is enough to fail: a hostile body of endless
            // garbage after the last part must not be read to its end.
            let mut extra = s.leftover.len() as u64;
            if extra == 0
                && let Some(Ok(b)) = s.body.next().await
            {
                extra = b.len() as u64;
            }
            if extra > 0 {
                failure = Some(ObjectError::Segment {
                    key: key_str.to_string(),
                    source: SegmentError::Trailing(extra),
                });
            }
        }

        // Every part recorded and every lease of this segment dropped, queued
        // for the next write of the document (at the latest the invocation's
        // flush): segments and chunks of one task share that write.
        for (i, k) in parts.iter().enumerate() {
            let record = records
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            cp.queue_completion(k, record, &self.part_owner(i)).await;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(ObjectOutcome::Shipped {
                key: key_str.to_string(),
                report: total,
            }),
        }
    }
}

fn add(total: &mut ShipReport, r: &ShipReport) {
    total.stats.events += r.stats.events;
    total.stats.parts += r.stats.parts;
    total.stats.escaped_bytes += r.stats.escaped_bytes;
    total.stats.inherited_timestamps += r.stats.inherited_timestamps;
    total.stats.clamped_old += r.stats.clamped_old;
    total.stats.clamped_future += r.stats.clamped_future;
    total.sent += r.sent;
    total.duplicates += r.duplicates;
    total.put_calls += r.put_calls;
    total.restamped += r.restamped;
    total.outcome_unknown_calls += r.outcome_unknown_calls;
    total.possible_duplicates += r.possible_duplicates;
}
