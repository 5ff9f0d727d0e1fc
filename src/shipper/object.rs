//! One chunk object: lease its range, stream and ship its events, record progress.

use crate::core::batch::Batch;
use crate::core::checkpoint::LeaseOutcome;
use crate::core::events::{EventStats, Window};
use crate::core::keys::{ChunkKey, decode_notification_key};
use crate::core::ranges::RangeSet;
use crate::ports::{CheckpointStore, LogSink, ObjectStore, PortError};
use crate::shipper::checkpoint::{CheckpointError, Checkpointer};
use crate::shipper::handler::{Invocation, Shipper};
use crate::shipper::pipeline::{Corrupt, Pipeline};
use crate::shipper::sink::{Delivered, PutError};
use crate::shipper::trigger::ObjectRef;
use chrono::{DateTime, Utc};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde::Serialize;

/// Batches of one object in flight at once. One, so that events with equal
/// timestamps keep their file order in the stream (the service orders ties by
/// arrival); decoding the next batch still overlaps the call in flight.
const IN_FLIGHT_PER_OBJECT: usize = 1;

/// A lease outlives the invocation's deadline by this much, so a slow final
/// checkpoint write still holds it; after that a retry may take over.
const LEASE_MARGIN_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ObjectOutcome {
    /// The key is not a v1 chunk key (or is a checkpoint): nothing to ship.
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
            ObjectError::Corrupt { .. } => false,
            ObjectError::Read { source, .. } => source.is_retryable(),
            ObjectError::Put { source, .. } => source.is_retryable(),
            ObjectError::Checkpoint { source, .. } => source.is_retryable(),
        }
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl<O: ObjectStore, C: CheckpointStore, L: LogSink> Shipper<O, C, L> {
    pub(crate) async fn ship_object<'a>(
        &'a self,
        obj: &ObjectRef,
        inv: &Invocation,
        owner: &str,
        shared: &crate::shipper::handler::InvocationShared<'a, C>,
    ) -> Result<ObjectOutcome, ObjectError> {
        let key_str = decode_notification_key(&obj.raw_key, &self.config.key_prefix);
        if key_str.starts_with(&format!("{}/", self.config.checkpoint_prefix)) {
            tracing::warn!(
                key = key_str,
                "skipping a checkpoint object: checkpoints must not trigger the shipper"
            );
            return Ok(ObjectOutcome::Skipped {
                key: key_str,
                reason: "checkpoint object".into(),
            });
        }
        let key = match ChunkKey::parse(&key_str, &self.config.key_prefix) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(key = key_str, error = %e, "skipping an object whose key is not layout v1");
                return Ok(ObjectOutcome::Skipped {
                    key: key_str,
                    reason: e.to_string(),
                });
            }
        };
        let bucket = self
            .config
            .checkpoint_bucket
            .clone()
            .unwrap_or_else(|| obj.bucket.clone());
        let _turn = shared
            .stream_turn(&self.config.stream_template.render(&key.task(), &key))
            .await;
        let cp = shared.get(self, &bucket, &key).await;
        let checkpoint_error = |source| ObjectError::Checkpoint {
            key: key_str.clone(),
            source,
        };

        let (now, expires) = (Utc::now(), lease_expiry(inv.deadline_ms));
        let (outcome, shipped) = cp
            .update(|doc| {
                let outcome = doc.try_lease(&key, owner, now, expires);
                let shipped = doc
                    .file(&key)
                    .map(|f| f.shipped.clone())
                    .unwrap_or_default();
                let write = outcome == LeaseOutcome::Taken;
                ((outcome, shipped), write)
            })
            .await
            .map_err(checkpoint_error)?;
        match outcome {
            LeaseOutcome::AlreadyShipped => {
                tracing::info!(key = key_str, "already shipped; nothing to do");
                return Ok(ObjectOutcome::AlreadyShipped { key: key_str });
            }
            LeaseOutcome::HeldBy { owner, expires_at } => {
                return Err(ObjectError::LeaseHeld {
                    key: key_str,
                    owner,
                    until: expires_at,
                });
            }
            LeaseOutcome::Taken => {}
        }

        let result = self
            .stream_object(obj, &key, shipped, inv, &cp, shared.margin_ms)
            .await;
        // Finish or hand back the range in one write: shipped on success; on
        // failure the lease is released so the retry need not wait for expiry.
        let done = match &result {
            Ok(ObjectOutcome::Shipped { .. }) => RangeSet::from(vec![(key.start, key.end)]),
            _ => RangeSet::default(),
        };
        let released = cp
            .update(|doc| {
                doc.record(&key, &done, Some(owner), Utc::now());
                ((), true)
            })
            .await;
        match (result, released) {
            (Ok(outcome), Ok(())) => Ok(outcome),
            (Ok(_), Err(e)) => Err(checkpoint_error(e)),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(release)) => {
                tracing::error!(key = key_str, error = %release, "could not release the lease; it expires by itself");
                Err(e)
            }
        }
    }

    async fn stream_object(
        &self,
        obj: &ObjectRef,
        key: &ChunkKey,
        shipped: RangeSet,
        inv: &Invocation,
        cp: &Checkpointer<'_, C>,
        margin_ms: i64,
    ) -> Result<ObjectOutcome, ObjectError> {
        // Only canonical keys parse, so this is the key as stored.
        let key_str = &key.to_string();
        let object = match self.objects.get(&obj.bucket, key_str).await {
            Ok(o) => o,
            Err(PortError::NotFound(detail)) => {
                tracing::warn!(
                    bucket = obj.bucket,
                    key = key_str,
                    detail,
                    "object no longer exists; nothing to ship"
                );
                return Ok(ObjectOutcome::Missing {
                    key: key_str.to_string(),
                });
            }
            Err(source) => {
                return Err(ObjectError::Read {
                    key: key_str.to_string(),
                    source,
                });
            }
        };
        let window = Window::at(now_ms(), self.config.retention_days);
        let fallback = object.last_modified_ms.unwrap_or_else(now_ms);
        let mut pipeline = Pipeline::new(
            key,
            self.config.timezone,
            self.config.max_event_bytes,
            fallback,
            window,
            shipped,
        );
        let stream = self.config.stream_template.render(&key.task(), key);
        let mut run = Run {
            shipper: self,
            key,
            key_str,
            stream: &stream,
            inv,
            cp,
            in_flight: FuturesUnordered::new(),
            report: ShipReport::default(),
            spare: None,
            margin_ms,
        };

        let mut body = object.body;
        let mut failure: Option<ObjectError> = None;
        while let Some(piece) = body.next().await {
            let bytes = match piece {
                Ok(b) => b,
                Err(source) => {
                    failure = Some(ObjectError::Read {
                        key: key_str.to_string(),
                        source,
                    });
                    break;
                }
            };
            let pushed = pipeline.push(&bytes);
            if let Some(b) = run.spare.take() {
                pipeline.recycle(b);
            }
            if let Err(e) = run.send_all(pipeline.take_ready()).await {
                failure = Some(e);
                break;
            }
            if let Err(source) = pushed {
                failure = Some(ObjectError::Corrupt {
                    key: key_str.to_string(),
                    source,
                });
                break;
            }
        }
        if failure.is_none()
            && let Err(source) = pipeline.finish()
        {
            failure = Some(ObjectError::Corrupt {
                key: key_str.to_string(),
                source,
            });
        }
        if matches!(failure, Some(ObjectError::Corrupt { .. })) {
            // Ship what was complete before the damage, then fail the record.
            pipeline.flush_complete();
        }
        let tail = if failure
            .as_ref()
            .is_none_or(|f| matches!(f, ObjectError::Corrupt { .. }))
        {
            run.send_all(pipeline.take_ready()).await
        } else {
            Ok(())
        };
        let drained = run.drain().await;
        let mut report = run.report;
        report.stats = pipeline.stats();
        report.duplicates = pipeline.duplicates();
        if let Some(e) = failure.or(tail.err()).or(drained.err()) {
            tracing::error!(key = key_str, error = %e, sent = report.sent, "record failed; progress is saved");
            return Err(e);
        }
        tracing::info!(key = key_str, stream, report = ?report, "object shipped");
        Ok(ObjectOutcome::Shipped {
            key: key_str.to_string(),
            report,
        })
    }
}

fn lease_expiry(deadline_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(deadline_ms.saturating_add(LEASE_MARGIN_MS))
        .unwrap_or_else(Utc::now)
}

type Sent = Result<(RangeSet, Delivered, Batch), PutError>;

/// The sending side of one object: batches in flight and progress records.
struct Run<'a, O, C, L, F> {
    shipper: &'a Shipper<O, C, L>,
    key: &'a ChunkKey,
    key_str: &'a str,
    stream: &'a str,
    inv: &'a Invocation,
    cp: &'a Checkpointer<'a, C>,
    in_flight: FuturesUnordered<F>,
    report: ShipReport,
    /// A delivered batch, to hand back to the pipeline for reuse.
    spare: Option<Batch>,
    margin_ms: i64,
}

impl<'a, O, C, L> Run<'a, O, C, L, futures::future::BoxFuture<'a, Sent>>
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
{
    async fn send_all(&mut self, batches: Vec<Batch>) -> Result<(), ObjectError> {
        for batch in batches {
            if now_ms() + self.margin_ms >= self.inv.deadline_ms {
                return Err(ObjectError::Deadline {
                    key: self.key_str.to_string(),
                });
            }
            while self.in_flight.len() >= IN_FLIGHT_PER_OBJECT {
                self.settle_one().await?;
            }
            let (sender, stream) = (&self.shipper.sender, self.stream);
            self.in_flight.push(
                async move {
                    let ranges =
                        RangeSet::from(batch.events().map(|e| e.source).collect::<Vec<_>>());
                    let delivered = sender.deliver(stream, &batch, now_ms()).await?;
                    Ok((ranges, delivered, batch))
                }
                .boxed(),
            );
            // Collect whatever has finished meanwhile, without waiting.
            while let Some(Some(done)) = self.in_flight.next().now_or_never() {
                self.settle(vec![done]).await?;
            }
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), ObjectError> {
        let Some(first) = self.in_flight.next().await else {
            return Ok(());
        };
        let mut done = vec![first];
        while let Some(Some(more)) = self.in_flight.next().now_or_never() {
            done.push(more);
        }
        self.settle(done).await
    }

    /// Records the ranges of every batch that landed (in one write), then
    /// reports the first failure, if any.
    async fn settle(&mut self, done: Vec<Sent>) -> Result<(), ObjectError> {
        let mut ranges = RangeSet::default();
        let mut failure = None;
        for d in done {
            match d {
                Ok((r, delivered, batch)) => {
                    ranges.union(&r);
                    self.report.sent += batch.len() as u64;
                    self.spare = Some(batch);
                    self.report.put_calls += delivered.calls;
                    self.report.restamped += delivered.restamped;
                }
                Err(source) => {
                    failure = failure.or(Some(ObjectError::Put {
                        key: self.key_str.to_string(),
                        source,
                    }))
                }
            }
        }
        if !ranges.is_empty() {
            let key = self.key;
            self.cp
                .update(|doc| {
                    doc.record(key, &ranges, None, Utc::now());
                    ((), true)
                })
                .await
                .map_err(|source| ObjectError::Checkpoint {
                    key: self.key_str.to_string(),
                    source,
                })?;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Waits for every batch in flight, recording each success.
    async fn drain(&mut self) -> Result<(), ObjectError> {
        let mut first_error = None;
        while !self.in_flight.is_empty() {
            if let Err(e) = self.settle_one().await {
                first_error = first_error.or(Some(e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
