//! In-memory adapters of every port, for unit tests and benchmarks. They obey
//! the same contracts as the AWS ones (conditional writes, missing streams).

use crate::core::batch::{Batch, LogEvent};
use crate::ports::{
    CheckpointStore, LogSink, Object, ObjectStore, PortError, Precondition, Rejected,
};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Objects and checkpoint documents by (bucket, key).
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<(String, String), (Bytes, u64)>>,
    versions: AtomicU64,
    /// Size of the pieces `get` streams the body in.
    pub read_size: usize,
}

impl MemoryStore {
    pub fn insert(&self, bucket: &str, key: &str, body: impl Into<Bytes>) {
        let v = self.versions.fetch_add(1, Ordering::Relaxed);
        lock(&self.objects).insert((bucket.into(), key.into()), (body.into(), v));
    }

    pub fn body(&self, bucket: &str, key: &str) -> Option<Bytes> {
        lock(&self.objects)
            .get(&(bucket.into(), key.into()))
            .map(|(b, _)| b.clone())
    }
}

impl ObjectStore for MemoryStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        let body = self
            .body(bucket, key)
            .ok_or_else(|| PortError::NotFound(format!("s3://{bucket}/{key}").into()))?;
        let step = self.read_size.max(1);
        let pieces: Vec<Result<Bytes, PortError>> = (0..body.len())
            .step_by(step)
            .map(|i| Ok(body.slice(i..(i + step).min(body.len()))))
            .collect();
        Ok(Object {
            last_modified_ms: Some(0),
            body: Box::pin(futures::stream::iter(pieces)),
        })
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), PortError> {
        self.insert(bucket, key, body);
        Ok(())
    }
}

impl CheckpointStore for MemoryStore {
    async fn load(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>, PortError> {
        Ok(lock(&self.objects)
            .get(&(bucket.into(), key.into()))
            .map(|(b, v)| (b.to_vec(), v.to_string())))
    }

    async fn save(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        cond: Precondition,
    ) -> Result<String, PortError> {
        let mut objects = lock(&self.objects);
        let current = objects
            .get(&(bucket.into(), key.into()))
            .map(|(_, v)| v.to_string());
        let holds = match (&cond, &current) {
            (Precondition::Absent, None) => true,
            (Precondition::Matches(want), Some(have)) => want == have,
            _ => false,
        };
        if !holds {
            return Err(PortError::Conflict(
                format!("{cond:?} does not hold for {key}").into(),
            ));
        }
        let v = self.versions.fetch_add(1, Ordering::Relaxed);
        objects.insert((bucket.into(), key.into()), (body.into(), v));
        Ok(v.to_string())
    }
}

/// Log groups -> streams -> events, in the order they were put.
#[derive(Default)]
pub struct MemorySink {
    groups: Mutex<HashMap<String, HashMap<String, Vec<LogEvent>>>>,
    pub calls: AtomicU64,
    window: Mutex<Option<Refusals>>,
}

/// The times outside which the sink refuses events, as the service does
/// with events older than 14 days or the retention (`too_old`, `expired`)
/// and more than 2 hours ahead (`too_new`).
#[derive(Debug, Clone, Copy)]
pub struct Refusals {
    pub expired_before_ms: i64,
    pub too_old_before_ms: i64,
    pub too_new_after_ms: i64,
}

impl MemorySink {
    /// From now on, refuse events outside these times (stored: the others);
    /// `None` accepts every event again.
    pub fn refuse(&self, r: Option<Refusals>) {
        *lock(&self.window) = r;
    }

    pub fn events(&self, group: &str, stream: &str) -> Vec<LogEvent> {
        lock(&self.groups)
            .get(group)
            .and_then(|g| g.get(stream))
            .cloned()
            .unwrap_or_default()
    }
}

impl LogSink for MemorySink {
    async fn put(&self, group: &str, stream: &str, batch: &Batch) -> Result<Rejected, PortError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut groups = lock(&self.groups);
        let g = groups
            .get_mut(group)
            .ok_or_else(|| PortError::NotFound(format!("log group {group}").into()))?;
        let s = g
            .get_mut(stream)
            .ok_or_else(|| PortError::NotFound(format!("log stream {stream}").into()))?;
        let events = batch.to_owned_events();
        let Some(r) = *lock(&self.window) else {
            s.extend(events);
            return Ok(Rejected::default());
        };
        // A batch is in time order, so refusals are a prefix and a suffix.
        let count =
            |pred: &dyn Fn(i64) -> bool| events.iter().filter(|e| pred(e.timestamp)).count();
        let expired = count(&|t| t < r.expired_before_ms);
        let too_old = count(&|t| t < r.too_old_before_ms);
        let too_new = count(&|t| t > r.too_new_after_ms);
        let rejected = Rejected {
            expired_end: (expired > 0).then_some(expired),
            too_old_end: (too_old > 0).then_some(too_old),
            too_new_start: (too_new > 0).then(|| events.len() - too_new),
        };
        s.extend(
            events
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !rejected.contains(*i))
                .map(|(_, e)| e),
        );
        Ok(rejected)
    }

    async fn create_group(
        &self,
        group: &str,
        _retention_days: Option<u32>,
    ) -> Result<(), PortError> {
        lock(&self.groups).entry(group.into()).or_default();
        Ok(())
    }

    async fn create_stream(&self, group: &str, stream: &str) -> Result<(), PortError> {
        let mut groups = lock(&self.groups);
        let g = groups
            .get_mut(group)
            .ok_or_else(|| PortError::NotFound(format!("log group {group}").into()))?;
        g.entry(stream.into()).or_default();
        Ok(())
    }

    async fn events_between(
        &self,
        group: &str,
        stream: &str,
        from_ms: i64,
        to_ms: i64,
        // Kept events carry no ingestion time: every one counts.
        _ingested: (i64, i64),
    ) -> Result<Vec<(i64, String)>, PortError> {
        let mut found: Vec<(i64, String)> = self
            .events(group, stream)
            .into_iter()
            .filter(|e| (from_ms..=to_ms).contains(&e.timestamp))
            .map(|e| (e.timestamp, e.message))
            .collect();
        // The service's order: by time, ties in arrival order.
        found.sort_by_key(|e| e.0);
        Ok(found)
    }
}
