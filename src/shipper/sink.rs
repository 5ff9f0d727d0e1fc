//! Putting batches into CloudWatch Logs: stream and group set-up on first use,
//! a bounded number of calls in flight, retries decided by each call's outcome
//! (a call of unknown outcome is read back before it is sent again), and the
//! rejected-events policy.

use crate::core::batch::{Batch, batches_of};
use crate::core::ranges::RangeSet;
use crate::core::verify::{Decision, Known};
use crate::ports::{LogSink, PortError, Rejected};
use crate::shipper::Config;
use crate::shipper::verify::{Checked, Readback};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Tries of one call that surely did not store anything (throttled, a 5xx
/// answer, no connection).
const MAX_ATTEMPTS: u32 = 6;
const BACKOFF_BASE_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("log group `{0}` does not exist and LOGDROP_CREATE_LOG_GROUP is false")]
    GroupMissing(String),
    #[error("PutLogEvents to {group}/{stream}: {source}")]
    Port {
        group: String,
        stream: String,
        #[source]
        source: PortError,
    },
    #[error(
        "CloudWatch Logs rejected {0} events again after they were re-stamped with the current time"
    )]
    RejectedTwice(usize),
    /// A call of unknown outcome that the read-back could not yet find nor
    /// rule out (not visible yet, or the stream could not be read): not
    /// sent again; the range is marked unverified for the retry.
    #[error(
        "PutLogEvents to {group}/{stream}: outcome unknown ({source}) and not decided by reading the stream back{}",
        read.as_ref().map(|e| format!(" (read failed: {e})")).unwrap_or_default()
    )]
    Unverified {
        group: String,
        stream: String,
        #[source]
        source: PortError,
        read: Option<Box<PortError>>,
        /// When the batch was first tried (ms since the epoch).
        sent_after_ms: i64,
    },
}

impl PutError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PutError::Port { source, .. } => source.is_retryable(),
            PutError::Unverified { read, .. } => read.as_ref().is_none_or(|e| e.is_retryable()),
            PutError::GroupMissing(_) | PutError::RejectedTwice(_) => false,
        }
    }

    /// Whether the failed call may have stored its events.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            PutError::Unverified { .. }
                | PutError::Port {
                    source: PortError::Unknown(_),
                    ..
                }
        )
    }
}

/// What to do after a failed `PutLogEvents` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Surely not stored: send again after this pause.
    Retry(Duration),
    /// Perhaps stored: read the stream back before anything else.
    ReadBack,
    GiveUp,
}

/// The retry rule, pure: `attempt` is the 1-based number of the failed try.
/// An unknown outcome is always read back, even on the last try, so that
/// the failure it ends in says whether the batch may be stored.
pub fn after_failure(err: &PortError, attempt: u32) -> Next {
    let pause = Duration::from_millis((BACKOFF_BASE_MS << attempt.min(8)).min(BACKOFF_MAX_MS));
    match err {
        PortError::Unknown(_) => Next::ReadBack,
        _ if attempt >= MAX_ATTEMPTS => Next::GiveUp,
        PortError::Transient(_) => Next::Retry(pause),
        _ => Next::GiveUp,
    }
}

/// A batch found partly stored, as one run: the call was accepted but for
/// the events before the run (too old, or expired) and after it (too new),
/// which the service refused. Those are what is left to send, as after any
/// partial acceptance (re-stamped), rather than the whole batch again.
pub fn refused(checked: &Checked, len: usize) -> Option<Rejected> {
    let (start, end) = checked.stored_run?;
    let partial = checked.verdict == Some(crate::core::verify::Verdict::Partial);
    (partial && checked.decision == Decision::Send).then_some(Rejected {
        too_old_end: (start > 0).then_some(start),
        too_new_start: (end < len).then_some(end),
        expired_end: None,
    })
}

/// Full jitter: a pause anywhere up to the rule's, so retries spread out.
fn jitter(d: Duration) -> Duration {
    Duration::from_millis(fastrand::u64(
        d.as_millis() as u64 / 4..=d.as_millis() as u64,
    ))
}

pub struct Sender<L> {
    pub sink: L,
    group: String,
    create_group: bool,
    retention_days: Option<u32>,
    /// Streams known to exist, kept across invocations of a warm container.
    ready_streams: Mutex<HashSet<String>>,
    slots: Semaphore,
    visibility_bound_ms: i64,
    /// Calls whose outcome was unknown, and their events, since start-up.
    unknown_calls: AtomicU64,
    unknown_events: AtomicU64,
    /// Events sent again after a read-back did not find them: the upper
    /// bound of duplicates this process may have caused.
    resent_events: AtomicU64,
    /// What was stored since the last `take_observed`, for the metrics line.
    observed: Mutex<Observed>,
}

/// Events stored in CloudWatch Logs, their message bytes, and the lag from
/// each event's timestamp to the answer of the call that stored it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    pub events: u64,
    pub bytes: u64,
    /// Events the service refused for their time, sent again re-stamped.
    pub restamped: u64,
    pub lag_ms: crate::metrics::Histogram,
    /// Read-backs (`verify.rs`): events found already stored, so not sent;
    /// events sent again because they were not found within the visibility
    /// bound (each a duplicate only if the service had stored it and took
    /// longer to show it); `GetLogEvents` requests made.
    pub verified: u64,
    pub resent: u64,
    pub reads: u64,
}

/// What one batch's delivery did, beyond storing its events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub calls: u64,
    /// Events the service refused as too old, too new or expired, re-sent with the current time.
    pub restamped: u64,
    /// Calls whose outcome was unknown.
    pub unknown_calls: u64,
    /// Events in those calls.
    pub unknown_events: u64,
    /// Events a read-back found stored, so not sent again.
    pub verified: u64,
    /// Events sent again after a read-back did not find them within the
    /// visibility bound: each a duplicate only if the service took longer.
    pub resent: u64,
    /// `GetLogEvents` requests of the read-backs.
    pub reads: u64,
    /// Source ranges of the events now stored.
    pub stored: RangeSet,
}

/// A delivery that failed, with what it stored before failing.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Undelivered {
    pub done: Delivered,
    #[source]
    pub error: PutError,
}

fn ranges_of<'a>(events: impl Iterator<Item = crate::core::batch::Event<'a>>) -> RangeSet {
    RangeSet::from(events.map(|e| e.source).collect::<Vec<_>>())
}

impl<L: LogSink> Sender<L> {
    pub fn new(sink: L, config: &Config) -> Self {
        Sender {
            sink,
            group: config.log_group.clone(),
            create_group: config.create_log_group,
            retention_days: config.retention_days,
            ready_streams: Mutex::new(HashSet::new()),
            slots: Semaphore::new(config.put_concurrency),
            visibility_bound_ms: i64::try_from(config.visibility_bound.as_millis())
                .unwrap_or(i64::MAX),
            unknown_calls: AtomicU64::new(0),
            unknown_events: AtomicU64::new(0),
            resent_events: AtomicU64::new(0),
            observed: Mutex::new(Observed::default()),
        }
    }

    /// What was stored since the last call (Lambda runs one invocation at a
    /// time per process, so for the handler: this invocation's).
    pub fn take_observed(&self) -> Observed {
        std::mem::take(&mut *self.observed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn observe<'a>(&self, stored: impl Iterator<Item = crate::core::batch::Event<'a>>) {
        let now = chrono::Utc::now().timestamp_millis();
        let mut o = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        for e in stored {
            o.events += 1;
            o.bytes += e.message.len() as u64;
            o.lag_ms.record(now - e.timestamp, 1);
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// `(calls, events)` whose outcome was unknown since this sender was made.
    pub fn unknown_outcomes(&self) -> (u64, u64) {
        (
            self.unknown_calls.load(Ordering::Relaxed),
            self.unknown_events.load(Ordering::Relaxed),
        )
    }

    /// Events sent again after a read-back did not find them, since this
    /// sender was made: the most it can have duplicated.
    pub fn possible_duplicates(&self) -> u64 {
        self.resent_events.load(Ordering::Relaxed)
    }

    /// Reads `batch` back from `stream` (see `verify.rs`) among what was
    /// ingested within `ingested`; the reads are counted in `done`.
    /// `until_ms`: no read starts later.
    #[allow(clippy::too_many_arguments)]
    pub async fn read_back(
        &self,
        stream: &str,
        batch: &Batch,
        known: &Known,
        sent_before_ms: i64,
        ingested: (i64, i64),
        ambiguous: bool,
        until_ms: i64,
        done: &mut Delivered,
    ) -> Checked {
        let readback = Readback {
            sink: &self.sink,
            group: &self.group,
            stream,
            bound_ms: self.visibility_bound_ms,
            until_ms,
        };
        let checked = readback
            .check(batch, known, sent_before_ms, ingested, ambiguous)
            .await;
        done.reads += checked.reads;
        let n = batch.len() as u64;
        let mut o = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        o.reads += checked.reads;
        match checked.decision {
            Decision::Stored => {
                done.verified += n;
                o.verified += n;
            }
            Decision::Send => {
                let found = refused(&checked, batch.len())
                    .and(checked.stored_run)
                    .map_or(0, |(a, b)| (b - a) as u64);
                let resent = n - found;
                done.verified += found;
                o.verified += found;
                done.resent += resent;
                o.resent += resent;
                self.resent_events.fetch_add(resent, Ordering::Relaxed);
            }
            Decision::Undecided => {}
        }
        drop(o);
        checked
    }

    /// Delivers one batch; no retry starts after `until_ms`. Events the service
    /// rejects for their time are sent once more stamped with the current time
    /// (their text keeps the original). On failure, what was stored is reported.
    /// `refused`: the batch was
    /// sent before and a read-back found it partly accepted; only the
    /// refused events are sent, re-stamped.
    pub async fn deliver(
        &self,
        stream: &str,
        batch: &Batch,
        now_ms: i64,
        until_ms: i64,
        refused: Option<Rejected>,
    ) -> Result<Delivered, Undelivered> {
        let mut done = Delivered::default();
        let earlier = refused.is_some();
        let rejected = match refused {
            Some(r) => r,
            None => match self.put(stream, batch, &mut done, until_ms).await {
                Ok(r) => r,
                Err(error) => return Err(Undelivered { done, error }),
            },
        };
        let kept = || {
            (batch.events().enumerate())
                .filter(|(i, _)| !rejected.contains(*i))
                .map(|(_, e)| e)
        };
        done.stored = ranges_of(kept());
        if earlier {
            // Stored by an earlier invocation, found by its read-back.
            done.verified += kept().count() as u64;
        } else {
            self.observe(kept());
        }
        if rejected.is_empty() {
            return Ok(done);
        }
        let again = batches_of(
            batch
                .events()
                .enumerate()
                .filter(|(i, _)| rejected.contains(*i))
                .map(|(_, e)| (now_ms, e.message, e.source)),
        );
        let count: usize = again.iter().map(Batch::len).sum();
        tracing::warn!(
            stream,
            rejected = count,
            too_new_start = rejected.too_new_start,
            too_old_end = rejected.too_old_end,
            expired_end = rejected.expired_end,
            "CloudWatch Logs rejected events for their timestamps; re-sending them stamped with the current time"
        );
        done.restamped += count as u64;
        (self.observed.lock().unwrap_or_else(|p| p.into_inner())).restamped += count as u64;
        for b in again {
            match self.put(stream, &b, &mut done, until_ms).await {
                Ok(r) if r.is_empty() => {
                    done.stored.union(&ranges_of(b.events()));
                    self.observe(b.events());
                }
                Ok(r) => {
                    let kept = || b.events().enumerate().filter(|(i, _)| !r.contains(*i));
                    done.stored.union(&ranges_of(kept().map(|(_, e)| e)));
                    self.observe(kept().map(|(_, e)| e));
                    let error = PutError::RejectedTwice(b.len());
                    return Err(Undelivered { done, error });
                }
                Err(error) => return Err(Undelivered { done, error }),
            }
        }
        Ok(done)
    }

    /// One call, retried by its outcome: freely while surely not stored;
    /// when perhaps stored, only after a read-back did not find it.
    async fn put(
        &self,
        stream: &str,
        batch: &Batch,
        done: &mut Delivered,
        until_ms: i64,
    ) -> Result<Rejected, PutError> {
        let mut attempt = 0;
        // Nothing of the batch was ingested before its first try.
        let first_sent = chrono::Utc::now().timestamp_millis();
        loop {
            attempt += 1;
            let err = match self.put_once(stream, batch, done).await {
                Ok(r) => return Ok(r),
                Err(PutError::Port { source, .. }) => source,
                Err(other) => return Err(other),
            };
            let pause = match after_failure(&err, attempt) {
                Next::Retry(p) => jitter(p),
                Next::GiveUp => return Err(self.port_error(stream, err)),
                Next::ReadBack => {
                    let checked =
                        self.after_unknown(stream, batch, done, until_ms, first_sent, &err);
                    let checked = checked.await;
                    if let Some(r) = refused(&checked, batch.len()) {
                        return Ok(r);
                    }
                    match checked.decision {
                        Decision::Stored => return Ok(Rejected::default()),
                        Decision::Send if attempt < MAX_ATTEMPTS => Duration::ZERO,
                        Decision::Send => return Err(self.port_error(stream, err)),
                        Decision::Undecided => {
                            let read = checked.error;
                            return Err(self.unverified(stream, err, read, first_sent, done));
                        }
                    }
                }
            };
            if chrono::Utc::now().timestamp_millis() + pause.as_millis() as i64 > until_ms {
                return Err(self.port_error(stream, err));
            }
            tracing::info!(stream, attempt, error = %err, "PutLogEvents not stored; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    /// A call of unknown outcome: counted, then read back among what was
    /// ingested since the batch's first try. The stream's calls take turns
    /// (one batch in flight per stream and invocation), so that holds this
    /// batch's copies and nothing of the ranges stored before it.
    async fn after_unknown(
        &self,
        stream: &str,
        batch: &Batch,
        done: &mut Delivered,
        until_ms: i64,
        first_sent: i64,
        err: &PortError,
    ) -> Checked {
        let n = batch.len() as u64;
        done.unknown_calls += 1;
        done.unknown_events += n;
        self.unknown_calls.fetch_add(1, Ordering::Relaxed);
        self.unknown_events.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(group = self.group, stream, events = n, error = %err, "PutLogEvents outcome unknown; reading the stream back before sending again");
        let sent_before = chrono::Utc::now().timestamp_millis();
        let (none, ingested) = (Known::default(), (first_sent, i64::MAX));
        let checked = self.read_back(
            stream,
            batch,
            &none,
            sent_before,
            ingested,
            false,
            until_ms,
            done,
        );
        let checked = checked.await;
        if checked.decision == Decision::Send {
            tracing::warn!(group = self.group, stream, events = n, verdict = ?checked.verdict, "not found in the stream within the visibility bound; sending again (a duplicate only if CloudWatch Logs had stored it and takes longer than the bound to show it)");
        }
        checked
    }

    fn unverified(
        &self,
        stream: &str,
        source: PortError,
        read: Option<PortError>,
        sent_after_ms: i64,
        done: &Delivered,
    ) -> PutError {
        tracing::warn!(
            group = self.group,
            stream,
            reads = done.reads,
            "PutLogEvents outcome still unknown after reading the stream back; not sending again: the retry reads again"
        );
        PutError::Unverified {
            group: self.group.clone(),
            stream: stream.to_string(),
            source,
            read: read.map(Box::new),
            sent_after_ms,
        }
    }

    async fn put_once(
        &self,
        stream: &str,
        batch: &Batch,
        done: &mut Delivered,
    ) -> Result<Rejected, PutError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| self.port_error(stream, PortError::Permanent("closed".into())))?;
        if !self.stream_ready(stream) {
            self.create_stream(stream).await?;
        }
        done.calls += 1;
        match self.sink.put(&self.group, stream, batch).await {
            Err(PortError::NotFound(_)) => {
                // Deleted behind our back (or the cache is stale): create once, then retry once.
                self.forget_stream(stream);
                self.create_stream(stream).await?;
                done.calls += 1;
                self.sink
                    .put(&self.group, stream, batch)
                    .await
                    .map_err(|e| self.port_error(stream, e))
            }
            other => other.map_err(|e| self.port_error(stream, e)),
        }
    }

    async fn create_stream(&self, stream: &str) -> Result<(), PutError> {
        match self.sink.create_stream(&self.group, stream).await {
            Ok(()) => {}
            Err(PortError::NotFound(_)) if self.create_group => {
                tracing::info!(group = self.group, "creating the log group");
                self.sink
                    .create_group(&self.group, self.retention_days)
                    .await
                    .map_err(|e| self.port_error(stream, e))?;
                self.sink
                    .create_stream(&self.group, stream)
                    .await
                    .map_err(|e| self.port_error(stream, e))?;
            }
            Err(PortError::NotFound(_)) => return Err(PutError::GroupMissing(self.group.clone())),
            Err(e) => return Err(self.port_error(stream, e)),
        }
        self.ready_streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stream.to_string());
        Ok(())
    }

    fn stream_ready(&self, stream: &str) -> bool {
        self.ready_streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(stream)
    }

    fn forget_stream(&self, stream: &str) {
        self.ready_streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stream);
    }

    fn port_error(&self, stream: &str, source: PortError) -> PutError {
        PutError::Port {
            group: self.group.clone(),
            stream: stream.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_by_outcome() {
        let t = PortError::Transient("throttled".into());
        let u = PortError::Unknown("reset".into());
        let p = PortError::Permanent("denied".into());
        assert!(matches!(after_failure(&t, 1), Next::Retry(_)));
        assert!(matches!(after_failure(&t, 5), Next::Retry(_)));
        assert_eq!(after_failure(&t, MAX_ATTEMPTS), Next::GiveUp);
        assert_eq!(after_failure(&u, 1), Next::ReadBack, "never sent blindly");
        assert_eq!(
            after_failure(&u, MAX_ATTEMPTS),
            Next::ReadBack,
            "read even last"
        );
        assert_eq!(after_failure(&p, 1), Next::GiveUp);
        let Next::Retry(long) = after_failure(&t, 5) else {
            panic!()
        };
        assert!(long <= Duration::from_millis(BACKOFF_MAX_MS));
    }
}
