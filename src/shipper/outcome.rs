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
    /// lost), and their events: each such call may have stored one extra copy.
    pub outcome_unknown_calls: u64,
    pub possible_duplicates: u64,
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
        #[source]
        source: PutError,
    },
    #[error("{key}: stopped before the Lambda deadline with progress saved; a retry resumes")]
    Deadline { key: String },
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
            | ObjectError::Checkpoint { key, .. } => key,
        }
    }
}
