//! Compare-and-swap updates of a task's checkpoint document.
//!
//! Writers in this process take turns on a mutex and reuse the last ETag they
//! wrote; writers elsewhere (concurrent invocations) are met with a 412/409, on
//! which the document is re-read and the same intent applied again. The intents
//! (take a lease, add shipped ranges) commute, so no update is ever lost.

use crate::core::checkpoint::{Checkpoint, DecodeError};
use crate::core::keys::{ChunkKey, TaskRef};
use crate::core::ranges::RangeSet;
use crate::ports::{CheckpointStore, PortError, Precondition};
use std::time::Duration;
use tokio::sync::Mutex;

/// Conflicts in a row before giving up; each round waits a little longer.
const MAX_ATTEMPTS: u32 = 12;
/// Tries of a load or write that failed for a transient reason (the SDK has
/// retried each already), within the invocation's deadline.
const TRANSIENT_ATTEMPTS: u32 = 5;
const TRANSIENT_BASE_MS: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint s3://{bucket}/{key}: {source}")]
    Store {
        bucket: String,
        key: String,
        #[source]
        source: PortError,
    },
    #[error("checkpoint s3://{bucket}/{key} cannot be read: {source}")]
    Corrupt {
        bucket: String,
        key: String,
        #[source]
        source: DecodeError,
    },
    #[error("checkpoint s3://{bucket}/{key}: still conflicting after {MAX_ATTEMPTS} attempts")]
    Contention { bucket: String, key: String },
}

impl CheckpointError {
    pub fn is_retryable(&self) -> bool {
        match self {
            CheckpointError::Store { source, .. } => source.is_retryable(),
            CheckpointError::Corrupt { .. } => false,
            CheckpointError::Contention { .. } => true,
        }
    }
}

pub struct Checkpointer<'a, C> {
    store: &'a C,
    bucket: String,
    key: String,
    task: TaskRef,
    /// Transient store failures are retried until this time (ms since the epoch).
    retry_until_ms: i64,
    state: Mutex<State>,
    /// Writes and loads tried again (a conflict, a transient failure), for the metrics line.
    retries: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct State {
    /// Last known document and its ETag (`None` ETag: it does not exist yet).
    cached: Option<(Checkpoint, Option<String>)>,
    /// Ranges in CloudWatch Logs that no successful write has recorded yet.
    /// Every later write of this document carries them, whichever object's
    /// write it is, so a failed progress write does not re-send the batch.
    unrecorded: Vec<Unrecorded>,
}

/// Ranges to record for one chunk, and with a completion, the lease owner it
/// releases and whether a call of unknown outcome leaves its range unverified
/// (and since when).
struct Unrecorded {
    key: ChunkKey,
    shipped: RangeSet,
    release: Option<String>,
    unverified: Option<Unsettled>,
}

/// A source range a call of unknown outcome may have stored, and between
/// which times it was made.
pub type Unsettled = (
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    (u64, u64),
);

impl Unrecorded {
    fn shipped(key: &ChunkKey, shipped: RangeSet) -> Self {
        Unrecorded {
            key: key.clone(),
            shipped,
            release: None,
            unverified: None,
        }
    }
}

/// Pause before transient retry `attempt` (1-based): exponential, jittered.
fn backoff(attempt: u32) -> Duration {
    let cap = (TRANSIENT_BASE_MS << attempt.min(6)).min(2_000);
    Duration::from_millis(cap / 2 + fastrand::u64(0..=cap / 2))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl<'a, C: CheckpointStore> Checkpointer<'a, C> {
    pub fn new(
        store: &'a C,
        bucket: String,
        key: String,
        task: TaskRef,
        retry_until_ms: i64,
    ) -> Self {
        Checkpointer {
            store,
            bucket,
            key,
            task,
            retry_until_ms,
            state: Mutex::new(State::default()),
            retries: Default::default(),
        }
    }

    /// Loads and writes of this document tried again so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_retry(&self) {
        (self.retries).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Applies `intent` to the latest document and writes it if the intent says
    /// so (its second result), or if delivered ranges wait to be recorded.
    /// Returns the intent's first result.
    pub async fn update<R>(
        &self,
        mut intent: impl FnMut(&mut Checkpoint) -> (R, bool),
    ) -> Result<R, CheckpointError> {
        let mut state = self.state.lock().await;
        let (mut conflicts, mut transient) = (0u32, 0u32);
        loop {
            let (mut doc, etag) = match state.cached.take() {
                Some(c) => c,
                None => match self.load().await {
                    Ok(c) => c,
                    Err(e) => {
                        self.pause_or_fail(&mut transient, e).await?;
                        continue;
                    }
                },
            };
            let now = chrono::Utc::now();
            for u in &state.unrecorded {
                doc.record(&u.key, &u.shipped, u.release.as_deref(), now);
                if let Some((sent_after, sent_before, range)) = u.unverified {
                    doc.mark_unverified(&u.key, range, sent_after, sent_before);
                }
            }
            let (result, write) = intent(&mut doc);
            if !write && state.unrecorded.is_empty() {
                state.cached = Some((doc, etag));
                return Ok(result);
            }
            let cond = etag.map_or(Precondition::Absent, Precondition::Matches);
            match self
                .store
                .save(&self.bucket, &self.key, doc.encode(), cond)
                .await
            {
                Ok(new_etag) => {
                    state.cached = Some((doc, Some(new_etag)));
                    state.unrecorded.clear();
                    return Ok(result);
                }
                Err(PortError::Conflict(_)) => {
                    // Someone else wrote: re-read next round, after a short jittered pause.
                    conflicts += 1;
                    if conflicts >= MAX_ATTEMPTS {
                        return Err(CheckpointError::Contention {
                            bucket: self.bucket.clone(),
                            key: self.key.clone(),
                        });
                    }
                    let ms = 5 * u64::from(conflicts) + fastrand::u64(0..20 * u64::from(conflicts));
                    self.count_retry();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                // A lost answer may hide a successful write: re-read, then
                // apply again (the intents are idempotent).
                Err(e) => {
                    self.pause_or_fail(&mut transient, self.store_error(e))
                        .await?
                }
            }
        }
    }

    /// Records ranges that are now in CloudWatch Logs. If the write fails, they
    /// stay queued and the next write of this document (the lease release,
    /// another object's progress) records them.
    pub async fn record_delivered(
        &self,
        key: &ChunkKey,
        ranges: RangeSet,
    ) -> Result<(), CheckpointError> {
        if ranges.is_empty() {
            return Ok(());
        }
        self.state
            .lock()
            .await
            .unrecorded
            .push(Unrecorded::shipped(key, ranges));
        self.update(|_| ((), true)).await
    }

    /// Queues ranges now in CloudWatch Logs without writing: the next write of
    /// this document (a progress write, the completion) records them.
    pub async fn queue_delivered(&self, key: &ChunkKey, ranges: RangeSet) {
        if !ranges.is_empty() {
            self.state
                .lock()
                .await
                .unrecorded
                .push(Unrecorded::shipped(key, ranges));
        }
    }

    /// Queues an object's completion: its shipped ranges and the release of
    /// its lease, written by the next write of the document (at the latest
    /// the invocation's `flush`), so objects of one task share one write.
    /// `unverified`: a call of unknown outcome, made before that time, may
    /// have stored the events of that range; they are not recorded.
    pub async fn queue_completion(
        &self,
        key: &ChunkKey,
        ranges: RangeSet,
        owner: &str,
        unverified: Option<Unsettled>,
    ) {
        self.state.lock().await.unrecorded.push(Unrecorded {
            key: key.clone(),
            shipped: ranges,
            release: Some(owner.to_string()),
            unverified,
        });
    }

    /// The invocation's last write of this document: every queued completion,
    /// and the release of every lease this invocation still holds (owners
    /// starting with `owner_prefix`: objects it leased but never pumped).
    pub async fn flush(&self, owner_prefix: &str) -> Result<(), CheckpointError> {
        self.update(|doc| {
            let mut dropped = false;
            for state in doc.files.values_mut().flat_map(|g| g.values_mut()) {
                let before = state.leases.len();
                state.leases.retain(|l| !l.owner.starts_with(owner_prefix));
                dropped |= state.leases.len() != before;
            }
            ((), dropped)
        })
        .await
    }

    /// Waits before the next try of a retryable failure while the deadline
    /// allows one, or returns the failure.
    async fn pause_or_fail(
        &self,
        attempt: &mut u32,
        e: CheckpointError,
    ) -> Result<(), CheckpointError> {
        *attempt += 1;
        let pause = backoff(*attempt);
        let retryable =
            matches!(&e, CheckpointError::Store { source, .. } if source.is_retryable());
        let fits = now_ms() + pause.as_millis() as i64 <= self.retry_until_ms;
        if !retryable || *attempt >= TRANSIENT_ATTEMPTS || !fits {
            return Err(e);
        }
        tracing::warn!(checkpoint = self.key, attempt = *attempt, error = %e, "checkpoint store failed; retrying");
        self.count_retry();
        tokio::time::sleep(pause).await;
        Ok(())
    }

    async fn load(&self) -> Result<(Checkpoint, Option<String>), CheckpointError> {
        match self.store.load(&self.bucket, &self.key).await {
            Ok(Some((bytes, etag))) => {
                let doc =
                    Checkpoint::decode(&bytes).map_err(|source| CheckpointError::Corrupt {
                        bucket: self.bucket.clone(),
                        key: self.key.clone(),
                        source,
                    })?;
                Ok((doc, Some(etag)))
            }
            Ok(None) => Ok((
                Checkpoint::new(&self.task.cluster, &self.task.task_id, chrono::Utc::now()),
                None,
            )),
            Err(source) => Err(self.store_error(source)),
        }
    }

    fn store_error(&self, source: PortError) -> CheckpointError {
        CheckpointError::Store {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[tokio::test]
    async fn concurrent_writers_never_lose_an_update() {
        let store = MemoryStore::default();
        let task = TaskRef {
            cluster: "c".into(),
            task_id: "t".into(),
        };
        let key =
            ChunkKey::parse("logs/c/t/f/0/000000000000000-000000000000001.gz", "logs").unwrap();
        // Separate checkpointers act like separate invocations: only CAS protects them.
        let writers: Vec<_> = (0..8)
            .map(|_| {
                Checkpointer::new(&store, "b".into(), "cp.json".into(), task.clone(), i64::MAX)
            })
            .collect();
        let futures = writers.iter().enumerate().map(|(i, cp)| {
            let key = key.clone();
            async move {
                for j in 0..5u64 {
                    let at = (i as u64 * 5 + j) * 10;
                    cp.update(|doc| {
                        doc.record(
                            &key,
                            &RangeSet::from(vec![(at, at + 10)]),
                            None,
                            chrono::Utc::now(),
                        );
                        ((), true)
                    })
                    .await
                    .unwrap();
                }
            }
        });
        futures::future::join_all(futures).await;
        let (bytes, _) = store.load("b", "cp.json").await.unwrap().unwrap();
        let doc = Checkpoint::decode(&bytes).unwrap();
        assert_eq!(doc.file(&key).unwrap().shipped.ranges(), &[(0, 400)]);
    }

    /// The memory store, failing every save while `failing` is set.
    struct Flaky {
        inner: MemoryStore,
        failing: std::sync::atomic::AtomicBool,
    }

    impl CheckpointStore for Flaky {
        async fn load(&self, b: &str, k: &str) -> Result<Option<(Vec<u8>, String)>, PortError> {
            self.inner.load(b, k).await
        }

        async fn save(
            &self,
            b: &str,
            k: &str,
            body: Vec<u8>,
            cond: Precondition,
        ) -> Result<String, PortError> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(PortError::Transient("down".into()));
            }
            self.inner.save(b, k, body, cond).await
        }
    }

    #[tokio::test]
    async fn delivered_ranges_ride_on_the_next_write() {
        let store = Flaky {
            inner: MemoryStore::default(),
            failing: true.into(),
        };
        let task = TaskRef {
            cluster: "c".into(),
            task_id: "t".into(),
        };
        let cp = Checkpointer::new(&store, "b".into(), "cp.json".into(), task, i64::MAX);
        let a = ChunkKey::parse("logs/c/t/a/0/000000000000000-000000000000100.gz", "logs").unwrap();
        let b = ChunkKey::parse("logs/c/t/b/0/000000000000000-000000000000100.gz", "logs").unwrap();
        let failed = cp.record_delivered(&a, RangeSet::from(vec![(0, 40)])).await;
        assert!(failed.is_err(), "every try of the write failed");
        store
            .failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        // Another object's write, even one that would write nothing itself.
        cp.update(|doc| {
            let shipped = doc.is_shipped(&b);
            (shipped, false)
        })
        .await
        .unwrap();
        let (bytes, _) = store.inner.load("b", "cp.json").await.unwrap().unwrap();
        let doc = Checkpoint::decode(&bytes).unwrap();
        assert_eq!(doc.file(&a).unwrap().shipped.ranges(), &[(0, 40)]);
    }
}
