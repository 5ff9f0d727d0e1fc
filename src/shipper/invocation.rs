//! One invocation's state, shared by its records: what the runtime told us,
//! a checkpointer per task document and a turn per log stream.

use crate::core::keys::TaskRef;
use crate::ports::CheckpointStore;
use crate::shipper::checkpoint::{CheckpointError, Checkpointer};
use crate::shipper::lease::Found;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Stop starting new batches this long before the Lambda deadline, leaving
/// time for the calls in flight and the final checkpoint write...
pub const DEFAULT_DEADLINE_MARGIN_MS: i64 = 10_000;
/// ...but never more than a fifth of the invocation's time, nor less than
/// this: with Lambda's default 3-second timeout a fixed 10 s would ship nothing.
const MIN_DEADLINE_MARGIN_MS: i64 = 200;

/// What the runtime tells us about this invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// Milliseconds since the epoch.
    pub deadline_ms: i64,
}

/// The margin for an invocation with `budget_ms` left, at most `max_ms`.
pub fn deadline_margin(budget_ms: i64, max_ms: i64) -> i64 {
    (budget_ms / 5).min(max_ms).max(MIN_DEADLINE_MARGIN_MS)
}

type SharedCheckpointer<'a, C> = Arc<Checkpointer<'a, C>>;

pub struct InvocationState<'a, C> {
    pub inv: &'a Invocation,
    /// How long before the deadline no new batch starts, for this invocation.
    pub margin_ms: i64,
    store: &'a C,
    checkpoint_prefix: &'a str,
    /// One checkpointer per task document, so objects of one task processed
    /// concurrently take turns instead of racing each other.
    checkpointers: Mutex<HashMap<(String, TaskRef), SharedCheckpointer<'a, C>>>,
    /// One turn at a time per log stream, in record order, so chunks of a file
    /// delivered together land in file order even where timestamps tie.
    streams: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Leases taken for objects before their turn, by lease owner: what the
    /// shared lease write found for each (`handler::prelease`).
    preleased: Mutex<HashMap<String, Found>>,
}

type FlushResults = Vec<((String, TaskRef), Result<(), CheckpointError>)>;

impl<'a, C: CheckpointStore> InvocationState<'a, C> {
    pub fn new(
        inv: &'a Invocation,
        margin_ms: i64,
        store: &'a C,
        checkpoint_prefix: &'a str,
    ) -> Self {
        InvocationState {
            inv,
            margin_ms,
            store,
            checkpoint_prefix,
            checkpointers: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            preleased: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a batch may still start at `now_ms`.
    pub fn may_start(&self, now_ms: i64) -> bool {
        now_ms + self.margin_ms < self.inv.deadline_ms
    }

    pub async fn stream_turn(&self, stream: &str) -> OwnedMutexGuard<()> {
        let lock = self
            .streams
            .lock()
            .await
            .entry(stream.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Lease owners of this invocation all start with this.
    pub fn owner_prefix(&self) -> String {
        format!("{}/", self.inv.request_id)
    }

    pub async fn set_preleased(&self, owner: String, outcome: Found) {
        self.preleased.lock().await.insert(owner, outcome);
    }

    /// What the shared lease write found for this owner's object, if it had one.
    pub async fn take_preleased(&self, owner: &str) -> Option<Found> {
        self.preleased.lock().await.remove(owner)
    }

    /// The last write of every task document: queued completions recorded,
    /// every lease of this invocation released. One result per document.
    pub async fn flush(&self) -> FlushResults {
        let all: Vec<_> = self
            .checkpointers
            .lock()
            .await
            .iter()
            .map(|(k, cp)| (k.clone(), cp.clone()))
            .collect();
        let prefix = self.owner_prefix();
        let mut out = Vec::with_capacity(all.len());
        for (k, cp) in all {
            out.push((k, cp.flush(&prefix).await));
        }
        out
    }

    /// Checkpoint loads and writes this invocation tried again.
    pub async fn checkpoint_retries(&self) -> u64 {
        let map = self.checkpointers.lock().await;
        map.values().map(|cp| cp.retries()).sum()
    }

    pub async fn checkpointer(&self, bucket: &str, task: &TaskRef) -> Arc<Checkpointer<'a, C>> {
        let mut map = self.checkpointers.lock().await;
        map.entry((bucket.to_string(), task.clone()))
            .or_insert_with(|| {
                Arc::new(Checkpointer::new(
                    self.store,
                    bucket.to_string(),
                    task.checkpoint_key(self.checkpoint_prefix),
                    task.clone(),
                    // Checkpoint writes may use the whole margin.
                    self.inv.deadline_ms,
                ))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_scales_with_the_budget() {
        assert_eq!(deadline_margin(900_000, DEFAULT_DEADLINE_MARGIN_MS), 10_000);
        assert_eq!(deadline_margin(3_000, DEFAULT_DEADLINE_MARGIN_MS), 600);
        assert_eq!(deadline_margin(100, DEFAULT_DEADLINE_MARGIN_MS), 200);
    }
}
