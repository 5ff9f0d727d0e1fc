//! CloudWatch Logs `PutLogEvents` rules, as constants and a pure batcher.

/// At most this many events in one call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// At most this many bytes in one call, counted as message UTF-8 bytes + overhead.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Per-event overhead the service adds to the message length.
pub const EVENT_OVERHEAD: usize = 26;
/// One event (message + overhead) at most; 1 MiB since April 2025.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1_048_576;
/// The events of one call must span less than 24 hours.
pub const MAX_SPAN_MS: i64 = 24 * 3_600_000;
/// Oldest accepted event: 14 days (or the group's retention, if shorter).
pub const MAX_AGE_MS: i64 = 14 * 24 * 3_600_000;
/// Newest accepted event: 2 hours ahead of the service's clock.
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;

/// The message budget for a configured maximum event size.
pub fn message_limit(max_event_bytes: usize) -> usize {
    max_event_bytes
        .saturating_sub(EVENT_OVERHEAD)
        .min(MAX_BATCH_BYTES - EVENT_OVERHEAD)
}

/// An owned event, for sinks that keep what they receive (tests, the in-memory sink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub timestamp: i64,
    pub message: String,
    /// Source byte range this event accounts for; the checkpoint's unit.
    pub source: (u64, u64),
}

/// One event of a batch, borrowed from its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub timestamp: i64,
    pub message: &'a str,
    pub source: (u64, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    timestamp: i64,
    source: (u64, u64),
    start: usize,
    end: usize,
}

/// The events of one `PutLogEvents` call. Messages share one buffer, so a
/// batch costs two allocations however many events it holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    text: String,
    meta: Vec<Meta>,
    bytes: usize,
    min_ts: i64,
    max_ts: i64,
}

impl Batch {
    fn with_capacity() -> Batch {
        Batch {
            text: String::with_capacity(MAX_BATCH_BYTES),
            ..Batch::default()
        }
    }

    /// Payload size as the service counts it.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The events, in the order they must be sent.
    pub fn events(&self) -> impl ExactSizeIterator<Item = Event<'_>> + '_ {
        self.meta.iter().map(|m| Event {
            timestamp: m.timestamp,
            message: &self.text[m.start..m.end],
            source: m.source,
        })
    }

    pub fn to_owned_events(&self) -> Vec<LogEvent> {
        self.events()
            .map(|e| LogEvent {
                timestamp: e.timestamp,
                message: e.message.to_string(),
                source: e.source,
            })
            .collect()
    }

    fn fits(&self, timestamp: i64, len: usize) -> bool {
        if self.meta.is_empty() {
            return true;
        }
        let span = self.max_ts.max(timestamp) - self.min_ts.min(timestamp);
        self.meta.len() < MAX_BATCH_EVENTS
            && self.bytes + len + EVENT_OVERHEAD <= MAX_BATCH_BYTES
            && span < MAX_SPAN_MS
    }

    fn add(&mut self, timestamp: i64, source: (u64, u64), start: usize) {
        if self.meta.is_empty() {
            (self.min_ts, self.max_ts) = (timestamp, timestamp);
        }
        self.min_ts = self.min_ts.min(timestamp);
        self.max_ts = self.max_ts.max(timestamp);
        let end = self.text.len();
        self.bytes += end - start + EVENT_OVERHEAD;
        self.meta.push(Meta {
            timestamp,
            source,
            start,
            end,
        });
    }

    /// Puts the events in the chronological order the service requires; stable,
    /// so events with equal timestamps keep their file order.
    fn seal(mut self) -> Batch {
        if !self.meta.is_sorted_by_key(|m| m.timestamp) {
            self.meta.sort_by_key(|m| m.timestamp);
        }
        self
    }
}

/// Batches for a list of events (rejected events being re-sent, tests).
pub fn batches_of<'a>(events: impl IntoIterator<Item = (i64, &'a str, (u64, u64))>) -> Vec<Batch> {
    let mut b = Batcher::default();
    let mut out: Vec<Batch> = events
        .into_iter()
        .filter_map(|(t, m, s)| b.push(t, m, s))
        .collect();
    out.extend(b.finish());
    out
}

/// Fills batches in arrival order, closing one as soon as the next event would
/// break a rule. The caller guarantees each message is within the event limit.
#[derive(Debug, Default)]
pub struct Batcher {
    current: Batch,
    /// An emptied batch whose buffers are reused, sparing an allocation and
    /// the page faults of touching fresh memory.
    spare: Option<Batch>,
}

impl Batcher {
    /// Adds an event whose message `write` appends to the buffer it is given;
    /// returns the previous batch when this event did not fit in it.
    pub fn push_with(
        &mut self,
        timestamp: i64,
        source: (u64, u64),
        write: impl FnOnce(&mut String),
    ) -> Option<Batch> {
        if self.current.text.capacity() == 0 {
            self.current = Batch::with_capacity();
        }
        let start = self.current.text.len();
        write(&mut self.current.text);
        let len = self.current.text.len() - start;
        if self.current.fits(timestamp, len) {
            self.current.add(timestamp, source, start);
            return None;
        }
        let mut next = self.fresh();
        next.text.push_str(&self.current.text[start..]);
        self.current.text.truncate(start);
        next.add(timestamp, source, 0);
        Some(std::mem::replace(&mut self.current, next).seal())
    }

    pub fn push(&mut self, timestamp: i64, message: &str, source: (u64, u64)) -> Option<Batch> {
        self.push_with(timestamp, source, |text| text.push_str(message))
    }

    pub fn finish(&mut self) -> Option<Batch> {
        (!self.current.is_empty()).then(|| std::mem::take(&mut self.current).seal())
    }

    /// Hands back a batch that was sent, to reuse its buffers.
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.text.clear();
        batch.meta.clear();
        batch.bytes = 0;
        self.spare = Some(batch);
    }

    fn fresh(&mut self) -> Batch {
        self.spare.take().unwrap_or_else(Batch::with_capacity)
    }
}

/// Checks one call against every rule; used by tests on what was really sent,
/// since the local emulator does not enforce these limits.
pub fn check_batch(events: &[(i64, &str)], max_event_bytes: usize) -> Result<(), String> {
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(format!("{} events", events.len()));
    }
    let bytes: usize = events.iter().map(|(_, m)| m.len() + EVENT_OVERHEAD).sum();
    if bytes > MAX_BATCH_BYTES {
        return Err(format!("{bytes} bytes"));
    }
    if let Some((_, m)) = events
        .iter()
        .find(|(_, m)| m.is_empty() || m.len() + EVENT_OVERHEAD > max_event_bytes)
    {
        return Err(format!("event of {} bytes", m.len()));
    }
    if !events.is_sorted_by_key(|(t, _)| *t) {
        return Err("not in chronological order".into());
    }
    let span = events[events.len() - 1].0 - events[0].0;
    if span >= MAX_SPAN_MS {
        return Err(format!("spans {span} ms"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64, len: usize) -> LogEvent {
        LogEvent {
            timestamp: ts,
            message: "m".repeat(len),
            source: (0, 1),
        }
    }

    fn run(events: Vec<LogEvent>) -> Vec<Batch> {
        batches_of(
            events
                .iter()
                .map(|e| (e.timestamp, e.message.as_str(), e.source)),
        )
    }

    fn check(batches: &[Batch]) {
        for b in batches {
            let evs: Vec<(i64, &str)> = b.events().map(|e| (e.timestamp, e.message)).collect();
            check_batch(&evs, DEFAULT_MAX_EVENT_BYTES).unwrap();
        }
    }

    #[test]
    fn count_limit() {
        let b = run((0..25_000).map(|i| ev(i, 1)).collect());
        assert_eq!(
            b.iter().map(Batch::len).collect::<Vec<_>>(),
            [10_000, 10_000, 5_000]
        );
        check(&b);
    }

    #[test]
    fn byte_limit_counts_overhead() {
        // 1,048,576 / (998 + 26) = 1024 events exactly.
        let b = run((0..2049).map(|i| ev(i, 998)).collect());
        assert_eq!(
            b.iter().map(Batch::len).collect::<Vec<_>>(),
            [1024, 1024, 1]
        );
        assert_eq!(b[0].bytes(), MAX_BATCH_BYTES);
        check(&b);
    }

    #[test]
    fn largest_event_fills_a_batch_alone() {
        let max = message_limit(DEFAULT_MAX_EVENT_BYTES);
        assert_eq!(max + EVENT_OVERHEAD, MAX_BATCH_BYTES);
        let b = run(vec![ev(0, 1), ev(1, max), ev(2, 1)]);
        assert_eq!(b.iter().map(Batch::len).collect::<Vec<_>>(), [1, 1, 1]);
        check(&b);
        assert_eq!(message_limit(262_144), 262_118);
    }

    #[test]
    fn span_limit_and_order() {
        let day = MAX_SPAN_MS;
        let b = run(vec![
            ev(5, 1),
            ev(1, 1),
            ev(day + 1, 1),
            ev(day + 2, 1),
            ev(0, 1),
        ]);
        let ts: Vec<Vec<i64>> = b
            .iter()
            .map(|b| b.events().map(|e| e.timestamp).collect())
            .collect();
        assert_eq!(ts, vec![vec![1, 5], vec![day + 1, day + 2], vec![0]]);
        check(&b);
    }

    #[test]
    fn sorting_is_stable() {
        let mut e = vec![ev(2, 1), ev(1, 2), ev(2, 3), ev(1, 4)];
        e.iter_mut()
            .enumerate()
            .for_each(|(i, e)| e.source = (i as u64, i as u64 + 1));
        let b = run(e);
        let src: Vec<u64> = b[0].events().map(|e| e.source.0).collect();
        assert_eq!(src, [1, 3, 0, 2]);
    }

    #[test]
    fn checker_rejects_each_rule() {
        assert!(check_batch(&[], DEFAULT_MAX_EVENT_BYTES).is_err());
        assert!(check_batch(&[(2, "a"), (1, "b")], DEFAULT_MAX_EVENT_BYTES).is_err());
        assert!(check_batch(&[(0, "a"), (MAX_SPAN_MS, "b")], DEFAULT_MAX_EVENT_BYTES).is_err());
        assert!(check_batch(&[(0, "")], DEFAULT_MAX_EVENT_BYTES).is_err());
        assert!(check_batch(&[(0, "abc")], 28).is_err());
    }
}
