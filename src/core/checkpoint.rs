//! The per-task checkpoint document (contract v2; v1 documents are read) and
//! its pure operations. Every change is a function of (latest stored
//! document, intent), so the store can re-read and re-apply after a lost
//! compare-and-swap race.

use crate::core::keys::ChunkKey;
use crate::core::ranges::{RangeSet, overlaps};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version written. Version 2 adds `unverified`; version 1 documents
/// (without it) are read as version 2 documents with nothing unverified.
pub const CHECKPOINT_VERSION: u32 = 2;
const READABLE_VERSIONS: [u32; 2] = [1, 2];

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
    /// Ranges whose events may be in CloudWatch Logs although `shipped` does
    /// not say so: a lease that expired unreleased (its owner died, or could
    /// not write), or a call whose outcome stayed unknown. Before anything
    /// in them is sent again it is read back from the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<Unverified>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unverified {
    pub range: (u64, u64),
    /// No call that may have stored events of the range was made later: a
    /// read-back that finds nothing is believed once the service's
    /// visibility bound has passed since.
    pub sent_before: DateTime<Utc>,
    /// No such call was made earlier: events ingested before are another
    /// range's (identical lines at the same second are common). `None`:
    /// not known, every ingestion time counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_after: Option<DateTime<Utc>>,
    /// `sent_before` also ends the ingestion window: the calls ended then
    /// (a call of unknown outcome). Not so for an expired lease: its owner
    /// may be stalled rather than dead, and put later.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
    /// Other ranges of the file were recorded shipped while the range was
    /// leased or unverified: their events may be in the read-back's window
    /// (identical lines at the same timestamps), so a count equal to the
    /// batch's is not taken for the batch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub others_stored: bool,
}

/// What the document says of a chunk's file when its lease is taken: the
/// events the pump skips, and the ranges it verifies before sending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub shipped: RangeSet,
    /// The file's unverified ranges overlapping the chunk.
    pub unverified: Vec<Unverified>,
    /// The latest time other ranges of the file may have been put, as far
    /// as the document knows: a lease of another range (held, or expired
    /// into an unverified range) may put at any time (`DateTime::MAX_UTC`),
    /// a call of unknown outcome until it ended. `None`: none of them.
    pub others_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub range: (u64, u64),
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    /// When it was taken: its owner put nothing of the range before, so a
    /// read-back after it expired looks at what was ingested since (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<DateTime<Utc>>,
    /// Other ranges of the file were recorded shipped while it was held
    /// (carried into its unverified range when it expires).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub others_stored: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("checkpoint is not valid JSON of the v1 or v2 shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("checkpoint version {0} is not supported (this build reads versions 1 and 2)")]
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
        if !READABLE_VERSIONS.contains(&probe.version) {
            return Err(DecodeError::Version(probe.version));
        }
        // A v1 document is a v2 one without `unverified` (serde's default);
        // it is written back as v2.
        let mut doc: Checkpoint = serde_json::from_slice(bytes)?;
        doc.version = CHECKPOINT_VERSION;
        Ok(doc)
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

    /// What the document records of `key`'s file, as the pump needs it.
    pub fn recorded(&self, key: &ChunkKey) -> Recorded {
        let Some(f) = self.file(key) else {
            return Recorded::default();
        };
        let chunk = (key.start, key.end);
        let unverified = (f.unverified.iter())
            .filter(|u| overlaps(u.range, chunk))
            .filter(|u| !f.shipped.covers(u.range.0, u.range.1))
            .cloned()
            .collect();
        let leases = (f.leases.iter())
            .filter(|l| !overlaps(l.range, chunk))
            .map(|_| DateTime::<Utc>::MAX_UTC);
        let calls = (f.unverified.iter())
            .filter(|u| !overlaps(u.range, chunk))
            .map(|u| match u.ended {
                true => u.sent_before,
                false => DateTime::<Utc>::MAX_UTC,
            });
        Recorded {
            shipped: f.shipped.clone(),
            unverified,
            others_until: leases.chain(calls).max(),
        }
    }

    /// Drops expired leases everywhere, so the document does not accumulate
    /// them. An expired lease was never released: its owner may have stored
    /// events it did not record, so its range becomes unverified.
    fn expire(&mut self, now: DateTime<Utc>) {
        for state in self.files.values_mut().flat_map(|g| g.values_mut()) {
            let (gone, kept): (Vec<Lease>, Vec<Lease>) =
                state.leases.drain(..).partition(|l| l.expires_at <= now);
            state.leases = kept;
            for l in gone {
                state.add_unverified(Unverified {
                    range: l.range,
                    sent_before: l.expires_at,
                    sent_after: l.taken_at,
                    ended: false,
                    others_stored: l.others_stored,
                });
            }
        }
    }

    /// Marks `range` of `key`'s file unverified: a call of unknown outcome,
    /// made between `sent_after` and `sent_before`, may have stored its events.
    pub fn mark_unverified(
        &mut self,
        key: &ChunkKey,
        range: (u64, u64),
        sent_after: DateTime<Utc>,
        sent_before: DateTime<Utc>,
    ) {
        self.file_mut(key).add_unverified(Unverified {
            range,
            sent_before,
            sent_after: Some(sent_after),
            ended: true,
            others_stored: false,
        });
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
        // Taken again by its owner (a retry within the invocation): since the first time.
        let again = state.leases.iter().find(|l| l.owner == owner);
        let taken_at = again.and_then(|l| l.taken_at).unwrap_or(now);
        let others_stored = again.is_some_and(|l| l.others_stored);
        state.leases.retain(|l| l.owner != owner);
        state.leases.push(Lease {
            range,
            owner: owner.to_string(),
            expires_at,
            taken_at: Some(taken_at),
            others_stored,
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
        // The other ranges leased or unverified now may be read back later
        // over a window that holds these events.
        let other = |r: (u64, u64)| {
            !shipped.is_empty() && !shipped.ranges().iter().any(|&s| overlaps(s, r))
        };
        for l in state.leases.iter_mut().filter(|l| other(l.range)) {
            l.others_stored = true;
        }
        for u in state.unverified.iter_mut().filter(|u| other(u.range)) {
            u.others_stored = true;
        }
        if let Some(owner) = release {
            state.leases.retain(|l| l.owner != owner);
        }
        // Verified (or sent) to the end: nothing left to read back.
        let done = &state.shipped;
        state
            .unverified
            .retain(|u| !done.covers(u.range.0, u.range.1));
        self.updated_at = now;
    }
}

impl FileState {
    /// One entry per range, spanning every call that may have stored it:
    /// the latest `sent_before` (the one a read-back must wait for), the
    /// earliest `sent_after`, ended only if all of them ended.
    fn add_unverified(&mut self, new: Unverified) {
        let range = new.range;
        if range.0 >= range.1 || self.shipped.covers(range.0, range.1) {
            return;
        }
        match self.unverified.iter_mut().find(|u| u.range == range) {
            Some(u) => {
                u.sent_before = u.sent_before.max(new.sent_before);
                u.sent_after = u.sent_after.zip(new.sent_after).map(|(a, b)| a.min(b));
                u.ended &= new.ended;
                u.others_stored |= new.others_stored;
            }
            None => self.unverified.push(new),
        }
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

    fn compact(pretty: &str) -> String {
        let joined: String = pretty
            .split('\n')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("");
        joined.replace("\": ", "\":").replace(", ", ",")
    }

    /// The contract's example: a shipped range and a lease.
    fn example() -> Checkpoint {
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
        c
    }

    #[test]
    fn golden_format_v2() {
        let mut c = example();
        c.mark_unverified(
            &key(0, 0),
            (6_291_456, 7_340_032),
            at("2026-11-24T09:57:59Z"),
            at("2026-11-24T09:58:00Z"),
        );
        // The fixture is pretty-printed; what is written is the same
        // document without the whitespace.
        let golden = include_str!("../../tests/fixtures/checkpoint_v2.json");
        assert_eq!(Checkpoint::decode(golden.as_bytes()).unwrap(), c);
        assert_eq!(String::from_utf8(c.encode()).unwrap(), compact(golden));
    }

    #[test]
    fn reads_v1_documents_and_writes_them_as_v2() {
        let v1 = include_str!("../../tests/fixtures/checkpoint_v1.json");
        let doc = Checkpoint::decode(v1.as_bytes()).unwrap();
        // A v1 lease does not say when it was taken.
        let mut want = example();
        for state in want.files.values_mut().flat_map(|g| g.values_mut()) {
            state.leases.iter_mut().for_each(|l| l.taken_at = None);
        }
        assert_eq!(doc, want);
        assert!(
            doc.files
                .values()
                .flat_map(|g| g.values())
                .all(|f| f.unverified.is_empty())
        );
        let written = String::from_utf8(doc.encode()).unwrap();
        assert_eq!(
            written,
            compact(v1).replace("\"version\":1", "\"version\":2")
        );
    }

    #[test]
    fn rejects_other_versions() {
        let doc = br#"{"version":3,"cluster":"a","task_id":"b","files":{},"updated_at":"2026-11-24T10:00:00Z"}"#;
        assert!(matches!(
            Checkpoint::decode(doc),
            Err(DecodeError::Version(3))
        ));
        assert!(Checkpoint::decode(b"{").is_err());
    }

    /// One invocation leases two ranges of a file and dies: each one's
    /// read-back window may hold the other's events, and a range recorded
    /// shipped while another is leased is noted on the other.
    #[test]
    fn other_ranges_of_the_file_put_since_a_lease_are_noted() {
        let t0 = at("2026-11-24T10:00:00Z");
        let t1 = at("2026-11-24T10:05:00Z");
        let later = t1 + chrono::Duration::minutes(1);
        let mut c = Checkpoint::new("prod", "t1", t0);
        assert_eq!(c.recorded(&key(0, 50)).others_until, None);
        for (k, owner) in [(key(0, 50), "a/0"), (key(50, 100), "a/1")] {
            assert_eq!(c.try_lease(&k, owner, t0, t1), LeaseOutcome::Taken);
        }
        let max = DateTime::<Utc>::MAX_UTC;
        assert_eq!(c.recorded(&key(0, 50)).others_until, Some(max), "held");
        // Expired, both unverified: each may still put (no end).
        assert_eq!(
            c.try_lease(&key(0, 50), "b/0", later, later),
            LeaseOutcome::Taken
        );
        let seen = c.recorded(&key(0, 50));
        assert_eq!(seen.others_until, Some(max));
        assert!(!seen.unverified[0].others_stored);
        // A call of unknown outcome of another range ends.
        let mut d = Checkpoint::new("prod", "t1", t0);
        d.mark_unverified(&key(0, 100), (50, 100), t0, t1);
        assert_eq!(d.recorded(&key(0, 50)).others_until, Some(t1));
        assert_eq!(d.recorded(&key(50, 100)).others_until, None, "its own");
        // 50..100 recorded shipped while 0..50 is leased: noted on the
        // lease, carried into its unverified range when it expires.
        let mut e = Checkpoint::new("prod", "t1", t0);
        e.try_lease(&key(0, 50), "a/0", t0, t1);
        e.try_lease(&key(50, 100), "a/1", t0, t1);
        e.record(&key(50, 100), &RangeSet::from(vec![(50, 100)]), None, t0);
        e.record(&key(0, 50), &RangeSet::default(), Some("a/1"), t0);
        assert!(e.files.values().flat_map(|g| g.values()).all(|f| {
            f.leases
                .iter()
                .all(|l| l.others_stored == (l.owner == "a/0"))
        }));
        e.try_lease(&key(0, 50), "b/0", later, later);
        let seen = e.recorded(&key(0, 50));
        assert!(seen.unverified[0].others_stored);
        assert_eq!(seen.others_until, None, "50..100 shipped, released");
    }

    #[test]
    fn an_expired_lease_becomes_unverified_until_shipped() {
        let t0 = at("2026-11-24T10:00:00Z");
        let t1 = at("2026-11-24T10:05:00Z");
        let mut c = Checkpoint::new("prod", "t1", t0);
        c.record(&key(0, 0), &RangeSet::from(vec![(0, 40)]), None, t0);
        assert_eq!(c.try_lease(&key(0, 100), "a", t0, t1), LeaseOutcome::Taken);
        // `a` died; `b` takes the range after the lease expired.
        let later = t1 + chrono::Duration::minutes(1);
        assert_eq!(
            c.try_lease(
                &key(0, 100),
                "b",
                later,
                later + chrono::Duration::minutes(5)
            ),
            LeaseOutcome::Taken
        );
        let seen = c.recorded(&key(0, 100));
        assert_eq!(seen.shipped.ranges(), &[(0, 40)]);
        assert_eq!(
            seen.unverified,
            [Unverified {
                range: (0, 100),
                sent_before: t1,
                sent_after: Some(t0),
                ended: false,
                others_stored: false,
            }]
        );
        // A released lease leaves nothing to verify.
        c.record(
            &key(0, 100),
            &RangeSet::from(vec![(40, 70)]),
            Some("b"),
            later,
        );
        assert_eq!(
            c.recorded(&key(0, 100)).unverified.len(),
            1,
            "70..100 still open"
        );
        c.mark_unverified(&key(0, 100), (0, 100), later, later);
        let u = &c.recorded(&key(0, 100)).unverified;
        assert_eq!(u.len(), 1, "one entry per range");
        assert_eq!(u[0].sent_before, later, "the later time is kept");
        assert_eq!(u[0].sent_after, Some(t0), "the earlier time is kept");
        assert!(!u[0].ended, "the lease's calls had no end");
        assert!(
            c.recorded(&key(100, 200)).unverified.is_empty(),
            "no overlap"
        );
        c.record(&key(0, 100), &RangeSet::from(vec![(70, 100)]), None, later);
        assert!(c.file(&key(0, 0)).unwrap().unverified.is_empty());
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
