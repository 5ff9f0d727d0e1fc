//! The invocation's metrics line (EMF, `crate::metrics`): what its records
//! became, what CloudWatch Logs stored and how late, what had to be tried
//! again. One line per invocation with the `Function` dimension, plus one
//! per kind of failure that occurred (`Function`, `Kind`), so the kinds cost
//! a metric only in the hours they happen.

use crate::metrics::{Line, MAX_VALUES, Unit};
use crate::shipper::handler::RecordReport;
use crate::shipper::outcome::ObjectOutcome;
use crate::shipper::sink::Observed;
use std::collections::BTreeMap;

/// What an invocation did beyond its records' outcomes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Figures {
    /// Stored events, their bytes and lags, re-stamped events (`Sender`).
    pub observed: Observed,
    /// Checkpoint loads and writes tried again (conflicts, transient failures).
    pub checkpoint_retries: u64,
    /// `PutLogEvents` calls whose outcome was unknown.
    pub unknown_calls: u64,
}

/// The read-back's counts, only in an invocation that read a stream back:
/// like the `Kind` lines, they cost a metric only in the hours they occur.
fn read_backs(line: Line, o: &Observed) -> Line {
    if o.reads == 0 {
        return line;
    }
    line.count("EventsVerified", o.verified)
        .count("EventsResent", o.resent)
        .count("ReadBacks", o.reads)
}

/// The invocation's lines: the summary, then one per failure kind.
pub fn lines(function: &str, now_ms: i64, reports: &[RecordReport], f: &Figures) -> Vec<Line> {
    let objects = || reports.iter().flat_map(|r| &r.objects);
    let (mut already_events, mut clamped, mut whole, mut missing) = (0, 0, 0, 0);
    for o in objects() {
        match o {
            ObjectOutcome::Shipped { report, .. } => {
                already_events += report.duplicates;
                clamped += report.stats.clamped_old + report.stats.clamped_future;
            }
            ObjectOutcome::AlreadyShipped { .. } => whole += 1,
            ObjectOutcome::Missing { .. } => missing += 1,
            ObjectOutcome::Skipped { .. } => {}
        }
    }
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in reports.iter().filter(|r| !r.ok) {
        *kinds.entry(r.kind.unwrap_or("unknown")).or_default() += 1;
    }
    let failed: u64 = kinds.values().sum();
    let summary = Line::new(now_ms)
        .dimension("Function", function)
        .count("Records", reports.len() as u64)
        .count("RecordsFailed", failed)
        .count("EventsShipped", f.observed.events)
        .metric("BytesShipped", Unit::Bytes, f.observed.bytes as f64)
        .count("EventsAlreadyShipped", already_events)
        .count("ObjectsAlreadyShipped", whole)
        .count("ObjectsMissing", missing)
        .count("EventsRestamped", f.observed.restamped)
        .count("EventsClamped", clamped)
        .count(
            "LeaseConflicts",
            kinds.get("lease_held").copied().unwrap_or(0),
        )
        .count("CheckpointRetries", f.checkpoint_retries)
        .count("PutOutcomeUnknown", f.unknown_calls)
        .values(
            "Lag",
            Unit::Milliseconds,
            f.observed.lag_ms.values(MAX_VALUES),
        )
        .property("message", "invocation metrics");
    let summary = read_backs(summary, &f.observed);
    let by_kind = kinds.into_iter().map(|(kind, n)| {
        Line::new(now_ms)
            .dimension("Function", function)
            .dimension("Kind", kind)
            .count("RecordsFailed", n)
            .property("message", "failed records by kind")
    });
    std::iter::once(summary).chain(by_kind).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_back_counts_only_when_a_stream_was_read() {
        let quiet = lines("f", 0, &[], &Figures::default());
        assert!(quiet[0].get("ReadBacks").is_none());
        assert!(quiet[0].get("EventsResent").is_none());
        let mut f = Figures::default();
        (f.observed.verified, f.observed.resent, f.observed.reads) = (7, 3, 2);
        let read = lines("f", 0, &[], &f);
        assert_eq!(read[0].get("EventsVerified"), Some(&[7.0][..]));
        assert_eq!(read[0].get("EventsResent"), Some(&[3.0][..]));
        assert_eq!(read[0].get("ReadBacks"), Some(&[2.0][..]));
    }
}
