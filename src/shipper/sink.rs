//! Putting batches into CloudWatch Logs: stream and group set-up on first use,
//! a bounded number of calls in flight, retries decided by each call's outcome,
//! and the rejected-events policy.

use crate::core::batch::{Batch, batches_of};
use crate::core::ranges::RangeSet;
use crate::ports::{LogSink, PortError, Rejected};
use crate::shipper::Config;
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
}

impl PutError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PutError::Port { source, .. } => source.is_retryable(),
            PutError::GroupMissing(_) | PutError::RejectedTwice(_) => false,
        }
    }

    /// Whether the failed call may have stored its events.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            PutError::Port {
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
    /// Perhaps stored: send again once (one extra copy at most), after this pause.
    RetryUnknown(Duration),
    GiveUp,
}

/// The retry rule, pure: `attempt` is the 1-based number of the failed try,
/// `unknown_retried` whether this batch was already re-sent after an unknown outcome.
pub fn after_failure(err: &PortError, attempt: u32, unknown_retried: bool) -> Next {
    let pause = Duration::from_millis((BACKOFF_BASE_MS << attempt.min(8)).min(BACKOFF_MAX_MS));
    match err {
        _ if attempt >= MAX_ATTEMPTS => Next::GiveUp,
        PortError::Transient(_) => Next::Retry(pause),
        PortError::Unknown(_) if !unknown_retried => Next::RetryUnknown(pause),
        _ => Next::GiveUp,
    }
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
    /// Calls whose outcome was unknown, and their events, since start-up:
    /// the upper bound of duplicates this process may have caused.
    unknown_calls: AtomicU64,
    unknown_events: AtomicU64,
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
}

/// What one batch's delivery did, beyond storing its events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub calls: u64,
    /// Events the service refused as too old, too new or expired, re-sent with the current time.
    pub restamped: u64,
    /// Calls whose outcome was unknown (each may have stored one extra copy).
    pub unknown_calls: u64,
    /// Events in those calls.
    pub unknown_events: u64,
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
            unknown_calls: AtomicU64::new(0),
            unknown_events: AtomicU64::new(0),
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

    /// Delivers one batch; no retry starts after `until_ms`. Events the service
    /// rejects for their time are sent once more stamped with the current time
    /// (their text keeps the original). On failure, what was stored is reported.
    pub async fn deliver(
        &self,
        stream: &str,
        batch: &Batch,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Delivered, Undelivered> {
        let mut done = Delivered::default();
        let rejected = match self.put(stream, batch, &mut done, until_ms).await {
            Ok(r) => r,
            Err(error) => return Err(Undelivered { done, error }),
        };
        let kept = || {
            (batch.events().enumerate())
                .filter(|(i, _)| !rejected.contains(*i))
                .map(|(_, e)| e)
        };
        done.stored = ranges_of(kept());
        self.observe(kept());
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

    /// One call, retried by its outcome: freely while surely not stored, once
    /// when perhaps stored (counted and logged, as it may duplicate).
    async fn put(
        &self,
        stream: &str,
        batch: &Batch,
        done: &mut Delivered,
        until_ms: i64,
    ) -> Result<Rejected, PutError> {
        let mut unknown_retried = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.put_once(stream, batch, done).await {
                Ok(r) => return Ok(r),
                Err(PutError::Port { source, .. }) => source,
                Err(other) => return Err(other),
            };
            if matches!(err, PortError::Unknown(_)) {
                done.unknown_calls += 1;
                done.unknown_events += batch.len() as u64;
                self.unknown_calls.fetch_add(1, Ordering::Relaxed);
                self.unknown_events
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            let next = after_failure(&err, attempt, unknown_retried);
            let pause = match next {
                Next::Retry(p) | Next::RetryUnknown(p) => jitter(p),
                Next::GiveUp => Duration::ZERO,
            };
            let late = chrono::Utc::now().timestamp_millis() + pause.as_millis() as i64 > until_ms;
            if next == Next::GiveUp || late {
                return Err(self.port_error(stream, err));
            }
            if let Next::RetryUnknown(_) = next {
                unknown_retried = true;
                tracing::warn!(
                    group = self.group,
                    stream,
                    events = batch.len(),
                    error = %err,
                    "PutLogEvents outcome unknown; sending once more, which duplicates these events if the first call was stored"
                );
            } else {
                tracing::info!(stream, attempt, error = %err, "PutLogEvents not stored; retrying");
            }
            tokio::time::sleep(pause).await;
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
        assert!(matches!(after_failure(&t, 1, false), Next::Retry(_)));
        assert!(matches!(after_failure(&t, 5, true), Next::Retry(_)));
        assert_eq!(after_failure(&t, MAX_ATTEMPTS, false), Next::GiveUp);
        assert!(matches!(after_failure(&u, 1, false), Next::RetryUnknown(_)));
        assert_eq!(after_failure(&u, 2, true), Next::GiveUp, "once at most");
        assert_eq!(after_failure(&p, 1, false), Next::GiveUp);
        let Next::Retry(long) = after_failure(&t, 5, false) else {
            panic!()
        };
        assert!(long <= Duration::from_millis(BACKOFF_MAX_MS));
    }
}
