//! Stage 3 of an object: stream its body through the pipeline into
//! CloudWatch Logs, one batch in flight. Progress is written every
//! `PROGRESS_EVERY_BATCHES` batches only (the completion write records the
//! rest), so a small object costs no progress write at all; a crash between
//! two progress writes re-sends at most that many batches.

use crate::core::batch::Batch;
use crate::core::events::Window;
use crate::core::keys::ChunkKey;
use crate::core::ranges::RangeSet;
use crate::ports::{CheckpointStore, LogSink, Object, ObjectStore, PortError};
use crate::shipper::Config;
use crate::shipper::checkpoint::Checkpointer;
use crate::shipper::outcome::{ObjectError, ShipReport};
use crate::shipper::pipeline::Pipeline;
use crate::shipper::sink::{Delivered, Sender, Undelivered};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

/// How the pump ended.
#[derive(Debug)]
pub enum PumpEnd {
    /// Every event of the object is in CloudWatch Logs (now or before).
    Complete,
    /// The object does not exist.
    Missing,
    Failed(ObjectError),
}

#[derive(Debug)]
pub struct Pumped {
    pub end: PumpEnd,
    /// Source ranges stored by this invocation, whether recorded yet or not.
    pub delivered: RangeSet,
    pub report: ShipReport,
}

pub struct Pump<'r, O, C, L> {
    pub objects: &'r O,
    pub sender: &'r Sender<L>,
    pub config: &'r Config,
    pub cp: &'r Checkpointer<'r, C>,
    pub key: &'r ChunkKey,
    /// The key as stored.
    pub key_str: &'r str,
    pub bucket: &'r str,
    pub stream: &'r str,
    pub deadline_ms: i64,
    pub margin_ms: i64,
}

/// Delivered batches between two progress writes of one object: it bounds what
/// a crash (Lambda killed, no completion write) re-sends, at most 8 batches of
/// at most 1 MiB each, and keeps a typical chunk (one or two batches) to the
/// lease and completion writes only.
pub const PROGRESS_EVERY_BATCHES: u32 = 8;

type Sent = Result<(Delivered, Batch), (Undelivered, Batch)>;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The sending side: the batch in flight and what has landed.
struct Flow<'r> {
    /// One batch at a time, so that events with equal timestamps keep their
    /// file order (the service orders ties by arrival); decoding the next
    /// batch still overlaps the call in flight.
    in_flight: Option<BoxFuture<'r, Sent>>,
    delivered: RangeSet,
    report: ShipReport,
    /// A delivered batch, to hand back to the pipeline for reuse.
    spare: Option<Batch>,
    /// Batches delivered since the last progress write.
    unwritten: u32,
}

impl<'r, O, C, L> Pump<'r, O, C, L>
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
{
    /// `prefetched`: the object, if it was opened to resolve its key;
    /// `shipped`: the checkpoint's ranges of this file when the lease was taken.
    pub async fn run(&self, prefetched: Option<Object>, shipped: RangeSet) -> Pumped {
        let mut flow = Flow {
            in_flight: None,
            delivered: RangeSet::default(),
            report: ShipReport::default(),
            spare: None,
            unwritten: 0,
        };
        let object = match prefetched {
            Some(o) => Ok(o),
            None => self.objects.get(self.bucket, self.key_str).await,
        };
        let object = match object {
            Ok(o) => o,
            Err(PortError::NotFound(_)) => return flow.end(PumpEnd::Missing),
            Err(source) => {
                let e = ObjectError::Read {
                    key: self.key_str.to_string(),
                    source,
                };
                return flow.end(PumpEnd::Failed(e));
            }
        };
        let window = Window::at(now_ms(), self.config.retention_days);
        let fallback = object.last_modified_ms.unwrap_or_else(now_ms);
        let mut pipeline = Pipeline::new(
            self.key,
            self.config.timezone,
            self.config.max_event_bytes,
            fallback,
            window,
            shipped,
        );
        let corrupt = |source| ObjectError::Corrupt {
            key: self.key_str.to_string(),
            source,
        };
        let mut body = object.body;
        let mut failure: Option<ObjectError> = None;
        'read: while let Some(piece) = body.next().await {
            match piece {
                Ok(bytes) => pipeline.feed(bytes),
                Err(source) => {
                    failure = Some(ObjectError::Read {
                        key: self.key_str.to_string(),
                        source,
                    });
                    break;
                }
            }
            loop {
                match pipeline.next_batch() {
                    Ok(Some(batch)) => {
                        if let Some(b) = flow.spare.take() {
                            pipeline.recycle(b);
                        }
                        if let Err(e) = self.send(&mut flow, batch).await {
                            failure = Some(e);
                            break 'read;
                        }
                    }
                    Ok(None) => break,
                    Err(c) => {
                        failure = Some(corrupt(c));
                        break 'read;
                    }
                }
            }
        }
        if failure.is_none()
            && let Err(c) = pipeline.finish()
        {
            failure = Some(corrupt(c));
        }
        // After damage, what was complete before it still ships; then the record fails.
        let damaged = matches!(failure, Some(ObjectError::Corrupt { .. }));
        if damaged {
            pipeline.flush_complete();
        }
        if failure.is_none() || damaged {
            while let Ok(Some(batch)) = pipeline.next_batch() {
                if let Err(e) = self.send(&mut flow, batch).await {
                    failure = failure.or(Some(e));
                    break;
                }
            }
        }
        if let Err(e) = self.wait(&mut flow).await {
            failure = failure.or(Some(e));
        }
        flow.report.stats = pipeline.stats();
        flow.report.duplicates = pipeline.duplicates();
        match failure {
            Some(e) => flow.end(PumpEnd::Failed(e)),
            None => {
                let r = &flow.report;
                tracing::info!(
                    key = self.key_str,
                    stream = self.stream,
                    events = r.stats.events,
                    parts = r.stats.parts,
                    sent = r.sent,
                    duplicates = r.duplicates,
                    put_calls = r.put_calls,
                    restamped = r.restamped,
                    escaped_bytes = r.stats.escaped_bytes,
                    inherited_timestamps = r.stats.inherited_timestamps,
                    clamped_old = r.stats.clamped_old,
                    clamped_future = r.stats.clamped_future,
                    outcome_unknown_calls = r.outcome_unknown_calls,
                    possible_duplicates = r.possible_duplicates,
                    "object shipped"
                );
                flow.end(PumpEnd::Complete)
            }
        }
    }

    async fn send(&self, flow: &mut Flow<'r>, batch: Batch) -> Result<(), ObjectError> {
        if now_ms() + self.margin_ms >= self.deadline_ms {
            return Err(ObjectError::Deadline {
                key: self.key_str.to_string(),
            });
        }
        self.wait(flow).await?;
        let (sender, stream) = (self.sender, self.stream);
        // Retries end where the margin begins: it is kept for the checkpoint.
        let until = self.deadline_ms - self.margin_ms;
        let mut call = async move {
            match sender.deliver(stream, &batch, now_ms(), until).await {
                Ok(d) => Ok((d, batch)),
                Err(u) => Err((u, batch)),
            }
        }
        .boxed();
        // Start the call now; it proceeds while the next batch is decoded.
        match (&mut call).now_or_never() {
            Some(done) => self.settle(flow, done).await,
            None => {
                flow.in_flight = Some(call);
                Ok(())
            }
        }
    }

    async fn wait(&self, flow: &mut Flow<'r>) -> Result<(), ObjectError> {
        match flow.in_flight.take() {
            Some(call) => {
                let done = call.await;
                self.settle(flow, done).await
            }
            None => Ok(()),
        }
    }

    /// Counts what a call stored and records it; a failed progress write
    /// stops the object, its ranges still queued for the release write.
    async fn settle(&self, flow: &mut Flow<'r>, done: Sent) -> Result<(), ObjectError> {
        let (d, failure, batch) = match done {
            Ok((d, b)) => (d, None, b),
            Err((u, b)) => (u.done, Some(u.error), b),
        };
        let r = &mut flow.report;
        r.sent += batch
            .events()
            .filter(|e| d.stored.covers(e.source.0, e.source.1))
            .count() as u64;
        r.put_calls += d.calls;
        r.restamped += d.restamped;
        r.outcome_unknown_calls += d.unknown_calls;
        r.possible_duplicates += d.unknown_events;
        flow.delivered.union(&d.stored);
        flow.spare = Some(batch);
        // Queued at once, so any later write of the document carries it.
        self.cp.queue_delivered(self.key, d.stored).await;
        flow.unwritten += 1;
        let recorded = match flow.unwritten >= PROGRESS_EVERY_BATCHES {
            true => {
                flow.unwritten = 0;
                self.cp.update(|_| ((), false)).await
            }
            false => Ok(()),
        };
        if let Some(source) = failure {
            return Err(ObjectError::Put {
                key: self.key_str.to_string(),
                source,
            });
        }
        recorded.map_err(|source| {
            tracing::warn!(key = self.key_str, error = %source, "progress write failed; the delivered ranges go into the release write");
            ObjectError::Checkpoint {
                key: self.key_str.to_string(),
                source,
            }
        })
    }
}

impl Flow<'_> {
    fn end(self, end: PumpEnd) -> Pumped {
        Pumped {
            end,
            delivered: self.delivered,
            report: self.report,
        }
    }
}
