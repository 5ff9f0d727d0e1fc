//! Leases on chunk ranges in a task's checkpoint: how long one lasts, and an
//! object's chunks leased in one write.

use crate::core::checkpoint::{LeaseOutcome, Recorded};
use crate::core::keys::ChunkKey;
use crate::ports::CheckpointStore;
use crate::shipper::checkpoint::{CheckpointError, Checkpointer};
use chrono::{DateTime, Utc};

/// A lease outlives the invocation's deadline by this much, so a slow final
/// checkpoint write still holds it; after that a retry may take over.
const LEASE_MARGIN_MS: i64 = 60_000;

pub fn expiry(deadline_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(deadline_ms.saturating_add(LEASE_MARGIN_MS))
        .unwrap_or_else(Utc::now)
}

/// What leasing found for one chunk: the outcome, and what the document
/// recorded of its file at that moment (the shipped events the pump skips,
/// the unverified ranges it reads back before sending).
pub type Found = (LeaseOutcome, Recorded);

/// Another owner's unexpired lease on the chunk at `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub index: usize,
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// Leases every chunk `(key, owner)` in one write, or none: if any range is
/// leased by another owner, nothing is written and the object is retried
/// later. Written only if a lease was taken (all shipped: nothing to write).
pub async fn lease_all<C: CheckpointStore>(
    cp: &Checkpointer<'_, C>,
    chunks: &[(&ChunkKey, &str)],
    deadline_ms: i64,
) -> Result<Result<Vec<Found>, Held>, CheckpointError> {
    let (now, expires) = (Utc::now(), expiry(deadline_ms));
    cp.update(|doc| {
        // On a copy, so a lease held elsewhere leaves the document untouched.
        let mut trial = doc.clone();
        let mut found = Vec::with_capacity(chunks.len());
        for (index, (key, owner)) in chunks.iter().enumerate() {
            match trial.try_lease(key, owner, now, expires) {
                LeaseOutcome::HeldBy { owner, expires_at } => {
                    let held = Held {
                        index,
                        owner,
                        until: expires_at,
                    };
                    return (Err(held), false);
                }
                outcome => found.push((outcome, trial.recorded(key))),
            }
        }
        let write = found.iter().any(|(o, _)| *o == LeaseOutcome::Taken);
        *doc = trial;
        (Ok(found), write)
    })
    .await
}
