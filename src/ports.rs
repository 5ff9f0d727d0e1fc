//! What the shipper and the sidecar need from the outside world, one trait per
//! port. Adapters: `crate::aws` (S3, CloudWatch Logs) and `crate::memory`.

use crate::core::batch::Batch;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::future::Future;

/// Why a call to an outside service failed, as far as the caller must know.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PortError {
    /// The bucket, object, log group or stream does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A conditional write lost a race (HTTP 412 or 409).
    #[error("precondition failed: {0}")]
    Conflict(String),
    /// Throttling, 5xx, timeouts: worth retrying later.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Access denied, bad request, bad data: retrying will not help.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl PortError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Transient(_) | PortError::Conflict(_))
    }
}

pub struct Object {
    /// Upload time, the timestamp of events before the first parsed one.
    pub last_modified_ms: Option<i64>,
    pub body: BoxStream<'static, Result<Bytes, PortError>>,
}

/// Precondition of a compare-and-swap write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Create only: `If-None-Match: *`.
    Absent,
    /// Replace only this version: `If-Match: <etag>`.
    Matches(String),
}

pub trait ObjectStore: Send + Sync {
    /// Streams an object's body.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Object, PortError>> + Send;
    /// Writes an object with `logdrop-version` metadata (sidecar chunks).
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A small JSON document per key with compare-and-swap writes.
pub trait CheckpointStore: Send + Sync {
    /// The document and its ETag, or `None` when it does not exist yet.
    fn load(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, String)>, PortError>> + Send;
    /// Writes under `cond`; `Err(PortError::Conflict)` when it does not hold. Returns the new ETag.
    fn save(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        cond: Precondition,
    ) -> impl Future<Output = Result<String, PortError>> + Send;
}

/// Events the service refused, as indices into the call's events (AWS semantics:
/// too-old and expired end indices are exclusive, the too-new start is inclusive).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub too_new_start: Option<usize>,
    pub too_old_end: Option<usize>,
    pub expired_end: Option<usize>,
}

impl Rejected {
    /// Whether the event at `i` (of `n`) was refused.
    pub fn contains(&self, i: usize) -> bool {
        self.too_new_start.is_some_and(|s| i >= s)
            || self.too_old_end.is_some_and(|e| i < e)
            || self.expired_end.is_some_and(|e| i < e)
    }

    pub fn is_empty(&self) -> bool {
        *self == Rejected::default()
    }
}

pub trait LogSink: Send + Sync {
    /// One `PutLogEvents` call; the events obey every batch rule.
    fn put(
        &self,
        group: &str,
        stream: &str,
        batch: &Batch,
    ) -> impl Future<Output = Result<Rejected, PortError>> + Send;
    /// Creates the group (and sets retention); an existing group is fine.
    fn create_group(
        &self,
        group: &str,
        retention_days: Option<u32>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Creates the stream; an existing stream is fine. `NotFound` when the group is missing.
    fn create_stream(
        &self,
        group: &str,
        stream: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}
