//! The per-task checkpoint document (contract v1) and its pure operations.
//! Every change is a function of (latest stored document, intent), so the
//! store can re-read and re-apply after a lost compare-and-swap race.

use crate::core::keys::ChunkKey;
use crate::core::ranges::{RangeSet, overlaps};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub cluster: String,
    pub task_id: String,
    /// file name -> generation (as a decimal string) -> state.
    pub files: BTreeMap<String, BTreeMap<String, FileState>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub shipped: RangeSet,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub range: (u64, u64),
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("checkpoint is not valid JSON of the v1 shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "checkpoint version {0} is not supported (this build reads version {CHECKPOINT_VERSION})"
    )]
    Version(u32),
}

/// The outcome of asking for a lease on a chunk's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Every byte is already shipped: nothing to do, nothing to write.
    AlreadyShipped,
    /// The lease is recorded (write the document).
    Taken,
    /// Another invocation holds an unexpired, overlapping lease.
    HeldBy {
        owner: String,
        expires_at: DateTime<Utc>,
    },
}

impl Checkpoint {
    pub fn new(cluster: &str, task_id: &str, now: DateTime<Utc>) -> Self {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            cluster: cluster.to_string(),
            task_id: task_id.to_string(),
            files: BTreeMap::new(),
            updated_at: now,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Probe {
            version: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes)?;
        if probe.version != CHECKPOINT_VERSION {
            return Err(DecodeError::Version(probe.version));
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Compact: the document is rewritten on every checkpoint write, and a
        // DynamoDB write costs a unit per KB (items at most 400 KB).
        // Serialising plain maps, strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn file(&self, key: &ChunkKey) -> Option<&FileState> {
        self.files.get(&key.file)?.get(&key.generation.to_string())
    }

    fn file_mut(&mut self, key: &ChunkKey) -> &mut FileState {
        self.files
            .entry(key.file.clone())
            .or_default()
            .entry(key.generation.to_string())
            .or_default()
    }

    pub fn is_shipped(&self, key: &ChunkKey) -> bool {
        key.start >= key.end
            || self
                .file(key)
                .is_some_and(|f| f.shipped.covers(key.start, key.end))
    }

    /// Drops expired leases everywhere, so the document does not accumulate them.
    fn expire(&mut self, now: DateTime<Utc>) {
        for gens in self.files.values_mut() {
            for state in gens.values_mut() {
                state.leases.retain(|l| l.expires_at > now);
            }
        }
    }

    pub fn try_lease(
        &mut self,
        key: &ChunkKey,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> LeaseOutcome {
        if self.is_shipped(key) {
            return LeaseOutcome::AlreadyShipped;
        }
        self.expire(now);
        let range = (key.start, key.end);
        let state = self.file_mut(key);
        if let Some(l) = state
            .leases
            .iter()
            .find(|l| l.owner != owner && overlaps(l.range, range))
        {
            return LeaseOutcome::HeldBy {
                owner: l.owner.clone(),
                expires_at: l.expires_at,
            };
        }
        state.leases.retain(|l| l.owner != owner);
        state.leases.push(Lease {
            range,
            owner: owner.to_string(),
            expires_at,
        });
        self.updated_at = now;
        LeaseOutcome::Taken
    }

    /// Adds shipped ranges; with `release`, also drops that owner's lease.
    pub fn record(
        &mut self,
        key: &ChunkKey,
        shipped: &RangeSet,
        release: Option<&str>,
        now: DateTime<Utc>,
    ) {
        self.expire(now);
        let state = self.file_mut(key);
        state.shipped.union(shipped);
        if let Some(owner) = release {
            state.leases.retain(|l| l.owner != owner);
        }
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(start: u64, end: u64) -> ChunkKey {
        ChunkKey {
            prefix: "logs".into(),
            cluster: "prod".into(),
            task_id: "t1".into(),
            file: "localhost_access_log.2026-11-24.txt".into(),
            generation: 0,
            start,
            end,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn golden_format() {
        let mut c = Checkpoint::new("prod", "t1", at("2026-11-24T10:00:00Z"));
        c.record(
            &key(0, 0),
            &RangeSet::from(vec![(0, 5_242_880)]),
            None,
            at("2026-11-24T10:00:00Z"),
        );
        let k = key(5_242_880, 6_291_456);
        assert_eq!(
            c.try_lease(
                &k,
                "req-1",
                at("2026-11-24T10:00:00Z"),
                at("2026-11-24T10:05:00Z")
            ),
            LeaseOutcome::Taken
        );
        // The fixture is the contract's example, pretty-printed; what is
        // written is the same document without the whitespace.
        let golden = include_str!("../../tests/fixtures/checkpoint_v1.json");
        assert_eq!(Checkpoint::decode(golden.as_bytes()).unwrap(), c);
        let compact: String = golden
            .split('\n')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("");
        let compact = compact.replace("\": ", "\":").replace(", ", ",");
        assert_eq!(String::from_utf8(c.encode()).unwrap(), compact);
    }

    #[test]
    fn rejects_other_versions() {
        let doc = br#"{"version":2,"cluster":"a","task_id":"b","files":{},"updated_at":"2026-11-24T10:00:00Z"}"#;
        assert!(matches!(
            Checkpoint::decode(doc),
            Err(DecodeError::Version(2))
        ));
        assert!(Checkpoint::decode(b"{").is_err());
    }

    #[test]
    fn leases_exclude_other_owners_until_expiry_or_release() {
        let t0 = at("2026-11-24T10:00:00Z");
        let t1 = at("2026-11-24T10:05:00Z");
        let mut c = Checkpoint::new("prod", "t1", t0);
        assert_eq!(c.try_lease(&key(0, 100), "a", t0, t1), LeaseOutcome::Taken);
        assert_eq!(
            c.try_lease(&key(0, 100), "a", t0, t1),
            LeaseOutcome::Taken,
            "re-entrant"
        );
        assert_eq!(
            c.try_lease(&key(50, 150), "b", t0, t1),
            LeaseOutcome::HeldBy {
                owner: "a".into(),
                expires_at: t1
            }
        );
        let later = t1 + chrono::Duration::minutes(5);
        assert_eq!(
            c.try_lease(&key(100, 200), "b", t0, later),
            LeaseOutcome::Taken,
            "adjacent ranges do not conflict"
        );
        assert_eq!(
            c.try_lease(&key(0, 100), "c", t1, t1),
            LeaseOutcome::Taken,
            "expired lease is ignored"
        );
        c.record(&key(0, 100), &RangeSet::from(vec![(0, 100)]), Some("c"), t0);
        assert_eq!(
            c.try_lease(&key(0, 100), "d", t0, t1),
            LeaseOutcome::AlreadyShipped
        );
        assert_eq!(
            c.file(&key(0, 0))
                .unwrap()
                .leases
                .iter()
                .map(|l| l.owner.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn empty_chunk_needs_no_lease() {
        let t0 = at("2026-11-24T10:00:00Z");
        let mut c = Checkpoint::new("prod", "t1", t0);
        assert_eq!(
            c.try_lease(&key(7, 7), "a", t0, t0 + chrono::Duration::minutes(5)),
            LeaseOutcome::AlreadyShipped
        );
    }
}
