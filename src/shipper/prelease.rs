//! The invocation's shared lease write: every v1 chunk of one task named by
//! the event is leased in one checkpoint write before any object's turn, so
//! an SQS batch of a task's chunks costs one lease write, not one per chunk.
//! The compare-and-swap write keeps concurrent invocations exact, as for a
//! single lease: each range is leased by at most one owner.
//!
//! Segments are not leased here: their ranges are in the manifest, which is
//! only known once the object is read (they lease all their parts in one
//! write of their own).

use crate::core::checkpoint::LeaseOutcome;
use crate::core::keys::{ChunkKey, TaskRef};
use crate::ports::CheckpointStore;
use crate::shipper::Config;
use crate::shipper::classify::{Classified, classify};
use crate::shipper::invocation::InvocationState;
use crate::shipper::lease;
use crate::shipper::trigger::Record;
use std::collections::BTreeMap;

/// The lease owner of object `j` of record `index`.
pub fn owner(request_id: &str, index: usize, j: usize) -> String {
    format!("{request_id}/{index}.{j}")
}

/// The checkpoint document (bucket, task) object `raw_key` in `bucket` uses,
/// if it is a chunk or a segment.
pub fn document_of(raw_key: &str, bucket: &str, config: &Config) -> Option<(String, TaskRef)> {
    let task = match classify(raw_key, config) {
        Classified::Chunk(c) => c.first()?.1.task(),
        Classified::Segment(_, s) => s.task(),
        Classified::Skip { .. } => return None,
    };
    let bucket = config.checkpoint_bucket.as_deref().unwrap_or(bucket);
    Some((bucket.to_string(), task))
}

/// Leases every unambiguous v1 chunk of the event, one write per task
/// document, and leaves each result for its object's job. A failed write is
/// logged and skipped: each object then leases itself as before.
pub async fn prelease<C: CheckpointStore>(
    records: &[Record],
    config: &Config,
    state: &InvocationState<'_, C>,
) {
    let mut groups: BTreeMap<(String, String, String), Vec<(String, ChunkKey)>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let Ok(objects) = &r.objects else { continue };
        for (j, obj) in objects.iter().enumerate() {
            // An ambiguous key is resolved by reading the object: not here.
            let Classified::Chunk(c) = classify(&obj.raw_key, config) else {
                continue;
            };
            let [(_, key)] = &c[..] else { continue };
            let bucket = config.checkpoint_bucket.as_deref().unwrap_or(&obj.bucket);
            groups
                .entry((bucket.to_string(), key.cluster.clone(), key.task_id.clone()))
                .or_default()
                .push((owner(&state.inv.request_id, i, j), key.clone()));
        }
    }
    let own = state.owner_prefix();
    for ((bucket, cluster, task_id), chunks) in groups {
        let task = TaskRef { cluster, task_id };
        let cp = state.checkpointer(&bucket, &task).await;
        let (now, expires) = (chrono::Utc::now(), lease::expiry(state.inv.deadline_ms));
        let found = cp
            .update(|doc| {
                let mut found = Vec::with_capacity(chunks.len());
                for (owner, key) in &chunks {
                    let outcome = doc.try_lease(key, owner, now, expires);
                    // A duplicate of another object of this event: its own
                    // turn decides (by then that one may have shipped it).
                    if matches!(&outcome, LeaseOutcome::HeldBy { owner, .. } if owner.starts_with(&own))
                    {
                        continue;
                    }
                    found.push((owner.clone(), (outcome, doc.recorded(key))));
                }
                let write = found.iter().any(|(_, (o, _))| *o == LeaseOutcome::Taken);
                (found, write)
            })
            .await;
        match found {
            Ok(found) => {
                for (owner, outcome) in found {
                    state.set_preleased(owner, outcome).await;
                }
            }
            Err(e) => {
                tracing::warn!(checkpoint = task.checkpoint_key(&config.checkpoint_prefix), error = %e, "shared lease write failed; each object leases itself");
            }
        }
    }
}
