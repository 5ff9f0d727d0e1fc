//! What the shipper and the sidecar need from the outside world, one trait per
//! port. Adapters: `crate::aws` (S3, CloudWatch Logs) and `crate::memory`.

use crate::core::batch::Batch;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// What a failed call was about, and the error that caused it, if any.
#[derive(Debug, Clone)]
pub struct Failure {
    pub what: String,
    /// The adapter's own error (an SDK error, an I/O error), kept for the log.
    pub source: Option<Cause>,
}

pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

impl Failure {
    pub fn new(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Failure {
            what: what.into(),
            source: Some(Arc::new(source)),
        }
    }
}

impl From<String> for Failure {
    fn from(what: String) -> Self {
        Failure { what, source: None }
    }
}

impl From<&str> for Failure {
    fn from(what: &str) -> Self {
        Failure::from(what.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// Why a call to an outside service failed, as far as the caller must know.
#[derive(Debug, Clone)]
pub enum PortError {
    /// The bucket, object, log group or stream does not exist.
    NotFound(Failure),
    /// A conditional write lost a race (HTTP 412 or 409).
    Conflict(Failure),
    /// Surely not done (throttling, a 5xx answer, connection refused): worth retrying.
    Transient(Failure),
    /// The request may or may not have been carried out: the connection broke
    /// or timed out after it was sent, or the answer could not be read.
    Unknown(Failure),
    /// Access denied, bad request, bad data: retrying will not help.
    Permanent(Failure),
}

impl PortError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, PortError::NotFound(_) | PortError::Permanent(_))
    }

    pub fn failure(&self) -> &Failure {
        match self {
            PortError::NotFound(f)
            | PortError::Conflict(f)
            | PortError::Transient(f)
            | PortError::Unknown(f)
            | PortError::Permanent(f) => f,
        }
    }

    /// A short name of the kind, for log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            PortError::NotFound(_) => "not_found",
            PortError::Conflict(_) => "conflict",
            PortError::Transient(_) => "transient",
            PortError::Unknown(_) => "outcome_unknown",
            PortError::Permanent(_) => "permanent",
        }
    }
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self {
            PortError::NotFound(_) => "not found",
            PortError::Conflict(_) => "precondition failed",
            PortError::Transient(_) => "transient failure",
            PortError::Unknown(_) => "outcome unknown",
            PortError::Permanent(_) => "permanent failure",
        };
        write!(f, "{label}: {}", self.failure())
    }
}

impl std::error::Error for PortError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failure()
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
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
    /// The stream's events with a timestamp in `[from_ms, to_ms]` (both
    /// included) that the service ingested within `ingested` (ms since the
    /// epoch, both included), oldest first, as `(timestamp, message)`: the
    /// read-back of a batch whose outcome is unknown. The ingestion window
    /// is what tells a batch from identical lines of other ranges of its
    /// file stored before or after it. Empty when the stream does not exist.
    fn events_between(
        &self,
        group: &str,
        stream: &str,
        from_ms: i64,
        to_ms: i64,
        ingested: (i64, i64),
    ) -> impl Future<Output = Result<Vec<(i64, String)>, PortError>> + Send;
}

/// An object as a bucket listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Upload time, milliseconds since the epoch.
    pub last_modified_ms: i64,
}

/// One page of a listing, and the token of the next page if there is one.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<Listed>,
    pub next: Option<String>,
}

/// When a lifecycle rule deletes the objects it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryAfter {
    /// This many days after upload, rounded up to the next midnight UTC.
    Days(u32),
    /// At this time (milliseconds since the epoch), whatever their age.
    Date(i64),
}

/// A lifecycle rule that deletes current objects, reduced to what can be
/// checked from a listing: prefix and object size. A rule that also filters
/// on tags is assumed to apply (reading tags costs a request per object, and
/// a needless warning is better than a missed one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryRule {
    /// The rule applies to keys starting with this (`""`: every key).
    pub prefix: String,
    /// Exclusive bounds on the object's size in bytes, as S3 states them.
    pub size_greater_than: Option<u64>,
    pub size_less_than: Option<u64>,
    pub after: ExpiryAfter,
}

/// What the audit reads of a bucket without reading whole objects: its keys
/// under a prefix, its expiry rules, and the first bytes of an object.
pub trait BucketIndex: Send + Sync {
    /// One page (up to 1,000 keys, one request) of the keys under `prefix`,
    /// in key order, starting after the page `token` ended.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<String>,
    ) -> impl Future<Output = Result<ListPage, PortError>> + Send;
    /// The bucket's enabled rules that expire current objects; none when it
    /// has no lifecycle configuration.
    fn expiry_rules(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Vec<ExpiryRule>, PortError>> + Send;
    /// Bytes `[start, start + len)` of an object (fewer at its end): one ranged GET.
    fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, PortError>> + Send;
}
