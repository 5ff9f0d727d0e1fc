//! The sidecar's metrics line (EMF, `crate::metrics`), with the `Cluster`
//! dimension only: bytes not yet in S3, the age of the oldest of them, and
//! what went wrong since the last line. Written every
//! `LOGDROP_SUMMARY_INTERVAL` beside the summary, and also while an upload
//! keeps failing, so a sidecar stuck on S3 still reports its growing age.

use crate::metrics::{Line, Unit};
use crate::sidecar::error::Totals;
use crate::telemetry::Output;
use std::time::{Duration, Instant};

/// How the files stood at the end of the last pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Bytes seen in the followed files and not yet in S3.
    pub pending_bytes: u64,
    /// Since when the oldest of them has waited (the age rule's clock).
    pub oldest_since: Option<Instant>,
    /// Files and names that cannot be read or looked at now.
    pub unreadable: u64,
}

/// Writes the lines: what the last one counted, and when it went.
#[derive(Debug, Default)]
pub(crate) struct Reporter {
    pub output: Option<Output>,
    pub standing: Standing,
    reported: Totals,
    last: Option<Instant>,
}

impl Reporter {
    /// The line as of `now` (the age rule's clock): counters as differences
    /// from the last line, which this one becomes.
    pub fn line(&mut self, cluster: &str, now: Instant, totals: &Totals) -> Line {
        let s = self.standing;
        let age = s
            .oldest_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let was = std::mem::replace(&mut self.reported, *totals);
        Line::new(chrono::Utc::now().timestamp_millis())
            .dimension("Cluster", cluster)
            .metric("PendingBytes", Unit::Bytes, s.pending_bytes as f64)
            .metric("OldestPendingAge", Unit::Seconds, age.as_secs_f64().floor())
            .count(
                "UploadRetries",
                totals.failed_attempts - was.failed_attempts,
            )
            .count("UnreadableFiles", s.unreadable)
            .count(
                "StateWriteFailures",
                totals.state_failures - was.state_failures,
            )
            .count("EarlyFlushes", totals.early_flushes - was.early_flushes)
            .count("SegmentsUploaded", totals.chunks - was.chunks)
            .property("message", "sidecar metrics")
    }

    /// Writes the line if `every` has passed since the last one (or `force`).
    pub fn report(
        &mut self,
        cluster: &str,
        now: Instant,
        totals: &Totals,
        every: Duration,
        force: bool,
    ) {
        let due = force || self.last.is_none_or(|t| t.elapsed() >= every);
        if let (true, Some(output)) = (due, self.output) {
            let line = self.line(cluster, now, totals);
            crate::metrics::emit(&line, output);
            self.last = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_bytes_their_age_and_counts_since_the_last_line() {
        let start = Instant::now();
        let mut r = Reporter::default();
        r.standing.pending_bytes = 750;
        r.standing.oldest_since = Some(start);
        let mut totals = Totals::default();
        let line = r.line("c", start + Duration::from_millis(30_900), &totals);
        assert_eq!(line.get("PendingBytes"), Some(&[750.0][..]));
        assert_eq!(line.get("OldestPendingAge"), Some(&[30.0][..]));
        totals.chunks = 3;
        totals.failed_attempts = 2;
        r.line("c", start, &totals);
        totals.chunks = 4;
        r.standing = Standing::default();
        let line = r.line("c", start + Duration::from_secs(60), &totals);
        assert_eq!(line.get("SegmentsUploaded"), Some(&[1.0][..]));
        assert_eq!(line.get("UploadRetries"), Some(&[0.0][..]));
        assert_eq!(line.get("OldestPendingAge"), Some(&[0.0][..]));
    }
}
