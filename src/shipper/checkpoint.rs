//! Compare-and-swap updates of a task's checkpoint document.
//!
//! Writers in this process take turns on a mutex and reuse the last ETag they
//! wrote; writers elsewhere (concurrent invocations) are met with a 412/409, on
//! which the document is re-read and the same intent applied again. The intents
//! (take a lease, add shipped ranges) commute, so no update is ever lost.

use crate::core::checkpoint::{Checkpoint, DecodeError};
use crate::core::keys::TaskRef;
use crate::ports::{CheckpointStore, PortError, Precondition};
use std::time::Duration;
use tokio::sync::Mutex;

/// Conflicts in a row before giving up; each round waits a little longer.
const MAX_ATTEMPTS: u32 = 12;

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
    /// Last known document and its ETag (`None` ETag: it does not exist yet).
    cached: Mutex<Option<(Checkpoint, Option<String>)>>,
}

impl<'a, C: CheckpointStore> Checkpointer<'a, C> {
    pub fn new(store: &'a C, bucket: String, key: String, task: TaskRef) -> Self {
        Checkpointer {
            store,
            bucket,
            key,
            task,
            cached: Mutex::new(None),
        }
    }

    /// Applies `intent` to the latest document and writes it if the intent says
    /// so (its second result). Returns the intent's first result.
    pub async fn update<R>(
        &self,
        mut intent: impl FnMut(&mut Checkpoint) -> (R, bool),
    ) -> Result<R, CheckpointError> {
        let mut cached = self.cached.lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            let (mut doc, etag) = match cached.take() {
                Some(c) => c,
                None => self.load().await?,
            };
            let (result, write) = intent(&mut doc);
            if !write {
                *cached = Some((doc, etag));
                return Ok(result);
            }
            let cond = etag.map_or(Precondition::Absent, Precondition::Matches);
            match self
                .store
                .save(&self.bucket, &self.key, doc.encode(), cond)
                .await
            {
                Ok(new_etag) => {
                    *cached = Some((doc, Some(new_etag)));
                    return Ok(result);
                }
                Err(PortError::Conflict(_)) => {
                    // Someone else wrote: re-read next round, after a short jittered pause.
                    let ms =
                        5 * u64::from(attempt + 1) + fastrand::u64(0..20 * u64::from(attempt + 1));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(source) => return Err(self.store_error(source)),
            }
        }
        Err(CheckpointError::Contention {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
        })
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
    use crate::core::keys::ChunkKey;
    use crate::core::ranges::RangeSet;
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
            .map(|_| Checkpointer::new(&store, "b".into(), "cp.json".into(), task.clone()))
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
}
