//! Whether a batch is already in its stream, decided from what the stream
//! holds in the batch's time window. Pure: the reading is the caller's.
//!
//! CloudWatch Logs has no idempotency token, so a call whose answer was lost
//! may or may not have stored its events. The stream tells: a batch is a
//! contiguous range of one file, and its stream holds that file's events, so
//! within the batch's window `[first, last]` timestamp the stream holds the
//! batch's events (if stored) plus events of other ranges that share a
//! timestamp with it — an access log repeats one line hundreds of times in
//! one second, across many objects. The caller reads only what was ingested
//! while the calls that may have stored the batch were made, which leaves
//! out every other range stored before or after them; what it still holds
//! of other ranges (`Known`: the chunk's events stored by the same calls'
//! invocation before the batch) is subtracted. The count must then match
//! exactly: more copies than the batch means ranges the reader cannot tell
//! apart from it, and the batch is not taken as stored.

use std::collections::{BTreeMap, HashMap};

/// How far behind the newest timestamp seen `Known` keeps events. Events of
/// a file are in time order but for a few written late (an access log line
/// carries its request's start time and is written when it ends): a
/// neighbour older than this is not subtracted.
pub const KNOWN_SLACK_MS: i64 = 60_000;

/// Events known to be in the stream outside the batch being verified (the
/// chunk's events before it), counted by timestamp and message digest.
#[derive(Debug, Default, Clone)]
pub struct Known {
    by_time: BTreeMap<i64, HashMap<u64, u32>>,
    newest: i64,
}

/// FNV-1a, 64 bits: a digest of a message, to count equal messages without
/// keeping their text.
pub fn digest(message: &str) -> u64 {
    message.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Known {
    pub fn add(&mut self, timestamp: i64, message: &str) {
        self.add_digest(timestamp, digest(message));
    }

    pub fn add_digest(&mut self, timestamp: i64, digest: u64) {
        if self.by_time.is_empty() || timestamp > self.newest {
            self.newest = timestamp;
            // Forget what no later batch's window can still reach.
            let keep = self.by_time.split_off(&(timestamp - KNOWN_SLACK_MS));
            self.by_time = keep;
        }
        if timestamp >= self.newest - KNOWN_SLACK_MS {
            *self
                .by_time
                .entry(timestamp)
                .or_default()
                .entry(digest)
                .or_default() += 1;
        }
    }

    /// Adds everything `other` knows.
    pub fn merge(&mut self, other: &Known) {
        for (&t, counts) in &other.by_time {
            for (&d, &n) in counts {
                for _ in 0..n {
                    self.add_digest(t, d);
                }
            }
        }
    }

    pub fn count(&self, timestamp: i64, message: &str) -> u32 {
        (self.by_time.get(&timestamp))
            .and_then(|c| c.get(&digest(message)))
            .copied()
            .unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.by_time.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }
}

/// What the stream shows of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every event of the batch, beyond what its neighbours account for.
    Stored,
    /// None of its events beyond its neighbours'.
    Absent,
    /// Some but not all: events refused for their time while the rest was
    /// stored, or events still becoming visible.
    Partial,
    /// More copies of some of its events than the batch holds: identical
    /// events of another range in the window. Not decidable from the stream.
    Excess,
}

/// The time window to read for a batch, both ends included.
pub fn window<'a>(batch: impl Iterator<Item = (i64, &'a str)>) -> Option<(i64, i64)> {
    batch.fold(None, |w, (t, _)| match w {
        None => Some((t, t)),
        Some((a, b)) => Some((a.min(t), b.max(t))),
    })
}

/// Compares the batch's events with the stream's events of its window,
/// message by message (exact text and timestamp), after taking away the
/// copies `known` neighbours account for.
pub fn verdict<'a>(
    batch: impl Iterator<Item = (i64, &'a str)>,
    stream: &[(i64, String)],
    known: &Known,
) -> Verdict {
    let mut want: HashMap<(i64, &str), (u32, u32)> = HashMap::new();
    for (t, m) in batch {
        want.entry((t, m)).or_default().0 += 1;
    }
    for (t, m) in stream {
        if let Some(w) = want.get_mut(&(*t, m.as_str())) {
            w.1 += 1;
        }
    }
    let (mut full, mut none, mut excess) = (true, true, false);
    for (&(t, m), &(wanted, seen)) in &want {
        let ours = seen.saturating_sub(known.count(t, m));
        full &= ours == wanted;
        none &= ours == 0;
        excess |= ours > wanted;
    }
    match (excess, full, none) {
        (true, _, _) => Verdict::Excess,
        (false, true, _) => Verdict::Stored,
        (false, false, true) => Verdict::Absent,
        (false, false, false) => Verdict::Partial,
    }
}

/// Which of the batch's events the stream holds, event by event in batch
/// order, beyond the copies `known` neighbours account for (of equal
/// events, the first ones count as found).
pub fn found(batch: &[(i64, &str)], stream: &[(i64, String)], known: &Known) -> Vec<bool> {
    let mut left: HashMap<(i64, &str), u32> = HashMap::new();
    for &(t, m) in batch {
        left.entry((t, m)).or_default();
    }
    for (t, m) in stream {
        if let Some(n) = left.get_mut(&(*t, m.as_str())) {
            *n += 1;
        }
    }
    for (&(t, m), n) in left.iter_mut() {
        *n = n.saturating_sub(known.count(t, m));
    }
    batch
        .iter()
        .map(|&(t, m)| match left.get_mut(&(t, m)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .collect()
}

/// The one run of found events `[start, end)` of a partly stored batch:
/// what a partial acceptance leaves (the service refuses the oldest events
/// as too old or expired and the newest as too new, and stores the rest).
/// `None` when the found events are not one run, or there are none.
pub fn stored_run(found: &[bool]) -> Option<(usize, usize)> {
    let start = found.iter().position(|&f| f)?;
    let end = start + found[start..].iter().take_while(|&&f| f).count();
    (!found[end..].contains(&true)).then_some((start, end))
}

/// What to do with a batch after reading its window back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It is in the stream: record it, send nothing.
    Stored,
    /// Send it: not found, and the visibility bound has passed since the
    /// last call that may have stored it. Should the service have taken
    /// longer than the bound to show it, this stores a second copy: counted.
    Send,
    /// Not found yet, or the stream could not be read: decide later.
    Undecided,
}

/// `verdict` is `None` when the stream could not be read. Nothing is sent
/// again before `bound_ms` has passed since `sent_before_ms`, so a stored
/// event slow to become visible is not taken for a missing one.
pub fn decide(
    verdict: Option<Verdict>,
    now_ms: i64,
    sent_before_ms: i64,
    bound_ms: i64,
) -> Decision {
    match verdict {
        Some(Verdict::Stored) => Decision::Stored,
        Some(Verdict::Absent | Verdict::Partial | Verdict::Excess)
            if now_ms >= sent_before_ms.saturating_add(bound_ms) =>
        {
            Decision::Send
        }
        _ => Decision::Undecided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(list: &[(i64, &str)]) -> Vec<(i64, String)> {
        list.iter().map(|(t, m)| (*t, m.to_string())).collect()
    }

    #[test]
    fn stored_absent_or_partial_by_exact_messages() {
        let batch = [(1, "a"), (2, "b"), (2, "b"), (3, "c")];
        let k = Known::default();
        let all = events(&batch);
        assert_eq!(verdict(batch.into_iter(), &all, &k), Verdict::Stored);
        assert_eq!(verdict(batch.into_iter(), &[], &k), Verdict::Absent);
        let one_b = events(&[(1, "a"), (2, "b"), (3, "c")]);
        assert_eq!(verdict(batch.into_iter(), &one_b, &k), Verdict::Partial);
        // Same text, another time: not the batch's.
        let moved = events(&[(1, "a"), (2, "b"), (2, "b"), (4, "c")]);
        assert_eq!(verdict(batch.into_iter(), &moved, &k), Verdict::Partial);
        let other = events(&[(1, "A"), (2, "x")]);
        assert_eq!(verdict(batch.into_iter(), &other, &k), Verdict::Absent);
    }

    /// One-second access logs: the batch starts and ends inside a second
    /// whose identical lines its neighbours also hold.
    #[test]
    fn identical_neighbours_at_both_edges_are_not_the_batch() {
        let (x, y) = ("GET /health 200", "GET /health 200");
        // Before the batch: three `x` at 10 (stored). The batch: two `x` at
        // 10, one line at 11, two `y` at 12. After it: four `y` at 12.
        let batch = [(10, x), (10, x), (11, "GET /a"), (12, y), (12, y)];
        let mut known = Known::default();
        for _ in 0..3 {
            known.add(10, x);
        }
        // Absent: the stream holds the three before it only.
        let before = events(&[(10, x), (10, x), (10, x)]);
        assert_eq!(verdict(batch.into_iter(), &before, &known), Verdict::Absent);
        // Stored.
        let mut all = before.clone();
        all.extend(events(&batch));
        assert_eq!(verdict(batch.into_iter(), &all, &known), Verdict::Stored);
        // The batch after it, stored by a later call, is only read if the
        // ingestion window was too wide: then nothing can be told.
        all.extend(events(&[(12, y), (12, y), (12, y), (12, y)]));
        assert_eq!(verdict(batch.into_iter(), &all, &known), Verdict::Excess);
        let after_only = events(&[(12, y), (12, y)]);
        assert_eq!(
            verdict(batch.into_iter(), &after_only, &known),
            Verdict::Partial,
            "identical lines of another range are never the batch's"
        );
        // A batch of edge lines only, absent: the neighbours' copies do not count.
        let edge = [(10, x), (10, x)];
        assert_eq!(verdict(edge.into_iter(), &before, &known), Verdict::Absent);
        let mut with = before.clone();
        with.extend(events(&edge));
        assert_eq!(verdict(edge.into_iter(), &with, &known), Verdict::Stored);
    }

    #[test]
    fn found_event_by_event_and_the_stored_run() {
        let batch = [(1, "old"), (2, "a"), (2, "a"), (3, "b"), (9, "new")];
        let mut known = Known::default();
        known.add(2, "a");
        // The neighbour's `a` plus one of the batch's; `b`; not the edges.
        let stream = events(&[(2, "a"), (2, "a"), (3, "b")]);
        let f = found(&batch, &stream, &known);
        assert_eq!(f, [false, true, false, true, false]);
        assert_eq!(stored_run(&f), None, "a hole: not a partial acceptance");
        let stream = events(&[(2, "a"), (2, "a"), (2, "a"), (3, "b")]);
        let f = found(&batch, &stream, &known);
        assert_eq!(f, [false, true, true, true, false]);
        assert_eq!(stored_run(&f), Some((1, 4)));
        assert_eq!(stored_run(&[true, true]), Some((0, 2)));
        assert_eq!(stored_run(&[false, false]), None);
    }

    #[test]
    fn known_forgets_what_is_far_behind() {
        let mut k = Known::default();
        k.add(0, "old");
        k.add(KNOWN_SLACK_MS, "edge");
        assert_eq!(k.count(0, "old"), 1, "exactly the slack behind is kept");
        k.add(KNOWN_SLACK_MS + 1, "new");
        assert_eq!(k.count(0, "old"), 0);
        assert_eq!(k.count(KNOWN_SLACK_MS, "edge"), 1);
        k.add(0, "late");
        assert_eq!(k.count(0, "late"), 0, "older than the slack: not kept");
        let mut m = Known::default();
        m.merge(&k);
        assert_eq!(m.count(KNOWN_SLACK_MS + 1, "new"), 1);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn decides_by_verdict_and_bound() {
        use Decision::*;
        assert_eq!(decide(Some(Verdict::Stored), 0, 100, 60), Stored);
        assert_eq!(decide(Some(Verdict::Absent), 159, 100, 60), Undecided);
        assert_eq!(decide(Some(Verdict::Absent), 160, 100, 60), Send);
        assert_eq!(decide(Some(Verdict::Partial), 160, 100, 60), Send);
        assert_eq!(decide(Some(Verdict::Excess), 159, 100, 60), Undecided);
        assert_eq!(decide(Some(Verdict::Excess), 160, 100, 60), Send);
        assert_eq!(
            decide(None, i64::MAX, 100, 60),
            Undecided,
            "unread: never sent"
        );
        assert_eq!(decide(Some(Verdict::Absent), 100, 100, 0), Send);
    }

    #[test]
    fn window_spans_the_batch() {
        assert_eq!(
            window([(5, "a"), (3, "b"), (9, "c")].into_iter()),
            Some((3, 9))
        );
        assert_eq!(window(std::iter::empty()), None);
    }
}
