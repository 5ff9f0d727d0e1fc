//! What became of one object: its outcome when it went through, its error
//! when it did not, and the counts reported for it.

use crate::core::events::EventStats;
use crate::ports::PortError;
use crate::shipper::checkpoint::CheckpointError;
use crate::shipper::pipeline::Corrupt;
use crate::shipper::sink::PutError;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ObjectOutcome {
    /// The key is neither a v1 chunk nor a v2 segment (or is a checkpoint): nothing to ship.
    Skipped {
        key: String,
        reason: String,
    },
    /// Every byte of the range was already shipped (a duplicate delivery).
    AlreadyShipped {
        key: String,
    },
    /// The object (or its bucket) no longer exists: nothing to ship.
    Missing {
        key: String,
    },
    Shipped {
        key: String,
        report: ShipReport,
    },
}

impl ObjectOutcome {
    /// The object's key as stored.
    pub fn key(&self) -> &str {
        match self {
            ObjectOutcome::Skipped { key, .. }
            | ObjectOutcome::AlreadyShipped { key }
            | ObjectOutcome::Missing { key }
            | ObjectOutcome::Shipped { key, .. } => key,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ShipReport {
    #[serde(flatten)]
    pub stats: EventStats,
    /// Events put into CloudWatch Logs by this invocation.
    pub sent: u64,
    /// Events skipped because an earlier delivery had shipped them.
    pub duplicates: u64,
    pub put_calls: u64,
    pub restamped: u64,
    /// `PutLogEvents` calls whose outcome was unknown (reset, timeout, answer
    /// lost). Each is read back before anything is sent again.
    pub outcome_unknown_calls: u64,
    /// Events sent again because a read-back did not find them within the
    /// visibility bound: each a duplicate only if CloudWatch Logs had stored
    /// it and took longer than the bound to show it.
    pub possible_duplicates: u64,
    /// Events a read-back found already stored, so not sent again.
    pub verified: u64,
    /// `GetLogEvents` requests of the read-backs.
    pub readback_calls: u64,
}

impl ShipReport {
    /// Adds another chunk's counts: a segment reports the sum of its parts.
    pub fn add(&mut self, r: &ShipReport) {
        let (s, t) = (&mut self.stats, &r.stats);
        s.events += t.events;
        s.parts += t.parts;
        s.escaped_bytes += t.escaped_bytes;
        s.inherited_timestamps += t.inherited_timestamps;
        s.clamped_old += t.clamped_old;
        s.clamped_future += t.clamped_future;
        self.sent += r.sent;
        self.duplicates += r.duplicates;
        self.put_calls += r.put_calls;
        self.restamped += r.restamped;
        self.outcome_unknown_calls += r.outcome_unknown_calls;
        self.possible_duplicates += r.possible_duplicates;
        self.verified += r.verified;
        self.readback_calls += r.readback_calls;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "{key}: invocation {owner} holds a lease on this range until {until}; the retry will find it shipped"
    )]
    LeaseHeld {
        key: String,
        owner: String,
        until: DateTime<Utc>,
    },
    #[error("{key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: Corrupt,
    },
    /// A v2 segment whose manifest or layout is unusable.
    #[error("{key}: {source}")]
    Segment {
        key: String,
        #[source]
        source: crate::core::segment::SegmentError,
    },
    #[error("{key}: reading the object: {source}")]
    Read {
        key: String,
        #[source]
        source: PortError,
    },
    #[error("{key}: {source}")]
    Put {
        key: String,
        /// Boxed: the read-back's errors make it the largest by far.
        #[source]
        source: Box<PutError>,
    },
    #[error("{key}: stopped before the Lambda deadline with progress saved; a retry resumes")]
    Deadline { key: String },
    /// A range the checkpoint marks unverified (sent, perhaps stored, not
    /// recorded) whose next batch the read-back could not yet find nor rule
    /// out: nothing is sent; the retry reads again.
    #[error(
        "{key}: events {start}-{end} may be stored but are not recorded, and reading the stream back did not decide yet{}; a retry reads again",
        read.as_ref().map(|e| format!(" (read failed: {e})")).unwrap_or_default()
    )]
    Unverified {
        key: String,
        start: u64,
        end: u64,
        read: Option<Box<PortError>>,
    },
    #[error("{key}: {source}")]
    Checkpoint {
        key: String,
        #[source]
        source: CheckpointError,
    },
}

impl ObjectError {
    /// False for poison: retrying cannot succeed, so the record should end in
    /// the dead-letter queue or on-failure destination (after the trigger's retries).
    pub fn is_retryable(&self) -> bool {
        match self {
            ObjectError::LeaseHeld { .. } | ObjectError::Deadline { .. } => true,
            ObjectError::Unverified { read, .. } => read.as_ref().is_none_or(|e| e.is_retryable()),
            ObjectError::Corrupt { .. } | ObjectError::Segment { .. } => false,
            ObjectError::Read { source, .. } => source.is_retryable(),
            ObjectError::Put { source, .. } => source.is_retryable(),
            ObjectError::Checkpoint { source, .. } => source.is_retryable(),
        }
    }

    /// A short name for log fields and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectError::LeaseHeld { .. } => "lease_held",
            ObjectError::Corrupt { .. } => "corrupt",
            ObjectError::Segment { .. } => "bad_segment",
            ObjectError::Read { .. } => "read",
            ObjectError::Put { source, .. } if source.is_ambiguous() => "put_outcome_unknown",
            ObjectError::Put { .. } => "put",
            ObjectError::Deadline { .. } => "deadline",
            ObjectError::Unverified { .. } => "unverified",
            ObjectError::Checkpoint { .. } => "checkpoint",
        }
    }

    pub fn key(&self) -> &str {
        match self {
            ObjectError::LeaseHeld { key, .. }
            | ObjectError::Corrupt { key, .. }
            | ObjectError::Segment { key, .. }
            | ObjectError::Read { key, .. }
            | ObjectError::Put { key, .. }
            | ObjectError::Deadline { key }
            | ObjectError::Unverified { key, .. }
            | ObjectError::Checkpoint { key, .. } => key,
        }
    }
}
