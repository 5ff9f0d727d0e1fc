//! Putting batches into CloudWatch Logs: stream and group set-up on first use,
//! a bounded number of calls in flight, and the rejected-events policy.

use crate::core::batch::{Batch, batches_of};
use crate::ports::{LogSink, PortError, Rejected};
use crate::shipper::Config;
use std::collections::HashSet;
use std::sync::Mutex;
use tokio::sync::Semaphore;

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
}

pub struct Sender<L> {
    pub sink: L,
    group: String,
    create_group: bool,
    retention_days: Option<u32>,
    /// Streams known to exist, kept across invocations of a warm container.
    ready_streams: Mutex<HashSet<String>>,
    slots: Semaphore,
}

/// What one batch's delivery did, beyond storing its events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub calls: u64,
    /// Events the service refused as too old, too new or expired, re-sent with the current time.
    pub restamped: u64,
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
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Delivers one batch. Events the service rejects for their time are sent
    /// once more stamped with the current time (their text keeps the original).
    pub async fn deliver(
        &self,
        stream: &str,
        batch: &Batch,
        now_ms: i64,
    ) -> Result<Delivered, PutError> {
        let mut done = Delivered::default();
        let rejected = self.put(stream, batch, &mut done).await?;
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
        for b in again {
            let r = self.put(stream, &b, &mut done).await?;
            if !r.is_empty() {
                return Err(PutError::RejectedTwice(b.len()));
            }
        }
        Ok(done)
    }

    async fn put(
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
