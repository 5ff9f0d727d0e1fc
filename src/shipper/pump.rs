//! Stage 3 of an object: stream its body through the pipeline into
//! CloudWatch Logs, one batch in flight. Progress is written every
//! `PROGRESS_EVERY_BATCHES` batches only (the completion write records the
//! rest), so a small object costs no progress write at all. What a crash
//! leaves sent but unrecorded is not sent again blindly: the lease written
//! before the first batch announces the chunk's range, and once it expires
//! unreleased the range is unverified; the batches are rebuilt exactly as
//! before from the recorded offset (same events, same cuts) and each one in
//! it is read back from the stream before it is sent. One batch in flight,
//! in file order, so the first batch not found ends the reading.

use crate::core::batch::Batch;
use crate::core::checkpoint::{Recorded, Unverified};
use crate::core::events::Window;
use crate::core::keys::ChunkKey;
use crate::core::ranges::{RangeSet, overlaps};
use crate::core::verify::{Decision, Known, Verdict};
use crate::ports::{CheckpointStore, LogSink, Object, ObjectStore, PortError, Rejected};
use crate::shipper::Config;
use crate::shipper::checkpoint::Checkpointer;
use crate::shipper::outcome::{ObjectError, ShipReport};
use crate::shipper::pipeline::{Corrupt, Pipeline};
use crate::shipper::sink::{Delivered, PutError, Sender, Undelivered, refused};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
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
    /// A call of unknown outcome left undecided: when (ms since the epoch),
    /// and the source range of its batch, which the checkpoint marks
    /// unverified (the batches after it were never sent).
    pub unverified_at: Option<UnsettledAt>,
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
    /// The chunk's events before the batch in hand that are in the stream
    /// (shipped before, or handled by this pump): the read-back of an
    /// expired lease's batch subtracts them.
    known: Known,
    /// The unverified ranges overlapping the chunk, while batches in them
    /// are still to be read back.
    unverified: Vec<Unverified>,
    /// The latest time other ranges of the file may have been put (ms):
    /// an expired lease's window reaching it may hold their identical lines.
    others_until: Option<i64>,
    unverified_at: Option<UnsettledAt>,
}

/// A batch a call of unknown outcome left undecided: when it was first
/// tried and when the call ended (ms since the epoch), and its source span.
pub type UnsettledAt = (i64, i64, (u64, u64));

/// How to read an unverified batch back: no call that may have stored it
/// was made after `sent_before` (ms), and its copies were ingested within
/// `ingested`; `known` is subtracted.
struct Pending {
    sent_before: i64,
    ingested: (i64, i64),
    subtract_known: bool,
    /// Other ranges of the file may have been put within `ingested`: a
    /// count equal to the batch's may be theirs, so it is not taken as
    /// stored (sent once past the bound instead: a counted duplicate if it was).
    ambiguous: bool,
}

/// What reading an unverified batch back found.
enum Seen {
    Stored,
    /// Not (all) there: send it, or with a partial acceptance found, only
    /// its refused events.
    Send(Option<Rejected>),
}

impl Flow<'_> {
    /// When the batch lies in unverified ranges: how to read it back, over
    /// every call that may have stored it. A call of unknown outcome bounds
    /// the ingestion window on both sides and left nothing else of the
    /// chunk in it; an expired lease only from when it was taken (its owner
    /// may have been stalled, not dead), and the chunk's events its owner
    /// stored before the batch are in the window too.
    fn unverified_for(&self, batch: &Batch) -> Option<Pending> {
        let mine: Vec<&Unverified> = (self.unverified.iter())
            .filter(|u| batch.events().any(|e| overlaps(u.range, e.source)))
            .collect();
        let sent_before = mine
            .iter()
            .map(|u| u.sent_before.timestamp_millis())
            .max()?;
        let since = (mine.iter())
            .map(|u| u.sent_after.map_or(i64::MIN, |t| t.timestamp_millis()))
            .min()
            .unwrap_or(i64::MIN);
        let ended = mine.iter().all(|u| u.ended);
        // An expired lease's window runs from when it was taken to now: what
        // its owner (or another) put of other ranges of the file meanwhile
        // is in it. The document says whether any may have been.
        let others =
            mine.iter().any(|u| u.others_stored) || self.others_until.is_some_and(|t| t >= since);
        Some(Pending {
            sent_before,
            ingested: (since, if ended { sent_before } else { i64::MAX }),
            subtract_known: !ended,
            ambiguous: !ended && others,
        })
    }

    fn absorb_skipped(&mut self, pipeline: &mut Pipeline) {
        for (t, d) in pipeline.take_skipped() {
            self.known.add_digest(t, d);
        }
    }
}

impl<'r, O, C, L> Pump<'r, O, C, L>
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
{
    /// `prefetched`: the object, if it is open already (a segment's part, a
    /// key resolved by opening it); `recorded`: what the checkpoint held of
    /// this file when the lease was taken.
    pub async fn run(&self, prefetched: Option<Object>, recorded: Recorded) -> Pumped {
        let Recorded {
            shipped,
            unverified,
            others_until,
        } = recorded;
        let mut flow = Flow {
            in_flight: None,
            delivered: RangeSet::default(),
            report: ShipReport::default(),
            spare: None,
            unwritten: 0,
            known: Known::default(),
            unverified,
            others_until: others_until.map(|t| t.timestamp_millis()),
            unverified_at: None,
        };
        let object = match self.open(prefetched).await {
            Ok(o) => o,
            Err(end) => return flow.end(end),
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
        let mut failure = self.read(&mut flow, &mut pipeline, object.body).await.err();
        if failure.is_none()
            && let Err(c) = pipeline.finish()
        {
            failure = Some(self.corrupt(c));
        }
        let failure = self.drain(&mut flow, &mut pipeline, failure).await;
        flow.report.stats = pipeline.stats();
        flow.report.duplicates = pipeline.duplicates();
        if flow.report.possible_duplicates > 0 {
            tracing::warn!(
                key = self.key_str,
                stream = self.stream,
                possible_duplicates = flow.report.possible_duplicates,
                "events sent again after reading the stream back did not find them within the visibility bound: duplicates if CloudWatch Logs had stored them"
            );
        }
        match failure {
            Some(e) => flow.end(PumpEnd::Failed(e)),
            None => {
                self.log_shipped(&flow.report);
                flow.end(PumpEnd::Complete)
            }
        }
    }

    async fn open(&self, prefetched: Option<Object>) -> Result<Object, PumpEnd> {
        let object = match prefetched {
            Some(o) => Ok(o),
            None => self.objects.get(self.bucket, self.key_str).await,
        };
        object.map_err(|e| match e {
            PortError::NotFound(_) => PumpEnd::Missing,
            source => PumpEnd::Failed(ObjectError::Read {
                key: self.key_str.to_string(),
                source,
            }),
        })
    }

    fn corrupt(&self, source: Corrupt) -> ObjectError {
        ObjectError::Corrupt {
            key: self.key_str.to_string(),
            source,
        }
    }

    /// Feeds the body to the pipeline, each batch sent as soon as it is full.
    async fn read(
        &self,
        flow: &mut Flow<'r>,
        pipeline: &mut Pipeline,
        mut body: BoxStream<'static, Result<Bytes, PortError>>,
    ) -> Result<(), ObjectError> {
        while let Some(piece) = body.next().await {
            let bytes = piece.map_err(|source| ObjectError::Read {
                key: self.key_str.to_string(),
                source,
            })?;
            pipeline.feed(bytes);
            while let Some(batch) = pipeline.next_batch().map_err(|c| self.corrupt(c))? {
                if let Some(b) = flow.spare.take() {
                    pipeline.recycle(b);
                }
                flow.absorb_skipped(pipeline);
                self.send(flow, batch).await?;
            }
        }
        Ok(())
    }

    /// After the body: its last batches (after damage, the events complete
    /// before it still ship; then the record fails), and the call in flight.
    async fn drain(
        &self,
        flow: &mut Flow<'r>,
        pipeline: &mut Pipeline,
        mut failure: Option<ObjectError>,
    ) -> Option<ObjectError> {
        let damaged = matches!(failure, Some(ObjectError::Corrupt { .. }));
        if damaged {
            pipeline.flush_complete();
        }
        if failure.is_none() || damaged {
            while let Ok(Some(batch)) = pipeline.next_batch() {
                flow.absorb_skipped(pipeline);
                if let Err(e) = self.send(flow, batch).await {
                    failure = failure.or(Some(e));
                    break;
                }
            }
        }
        if let Err(e) = self.wait(flow).await {
            failure = failure.or(Some(e));
        }
        failure
    }

    fn log_shipped(&self, r: &ShipReport) {
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
            verified = r.verified,
            readback_calls = r.readback_calls,
            "object shipped"
        );
    }

    async fn send(&self, flow: &mut Flow<'r>, batch: Batch) -> Result<(), ObjectError> {
        if now_ms() + self.margin_ms >= self.deadline_ms {
            return Err(ObjectError::Deadline {
                key: self.key_str.to_string(),
            });
        }
        self.wait(flow).await?;
        // Retries end where the margin begins: it is kept for the checkpoint.
        let until = self.deadline_ms - self.margin_ms;
        let mut refused = None;
        if let Some(pending) = flow.unverified_for(&batch) {
            match self.read_back(flow, &batch, pending, until).await? {
                Seen::Stored => {
                    let d = Delivered {
                        verified: batch.len() as u64,
                        stored: RangeSet::from(
                            batch.events().map(|e| e.source).collect::<Vec<_>>(),
                        ),
                        ..Delivered::default()
                    };
                    return self.settle(flow, Ok((d, batch))).await;
                }
                Seen::Send(r) => refused = r,
            }
        }
        let (sender, stream) = (self.sender, self.stream);
        let mut call = async move {
            match sender
                .deliver(stream, &batch, now_ms(), until, refused)
                .await
            {
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

    /// A batch in an unverified range, read back before it is sent. Once
    /// one is not found, the ones after it were never sent (one batch in
    /// flight, in file order) and are not read.
    async fn read_back(
        &self,
        flow: &mut Flow<'r>,
        batch: &Batch,
        pending: Pending,
        until: i64,
    ) -> Result<Seen, ObjectError> {
        let none = Known::default();
        let known = if pending.subtract_known {
            &flow.known
        } else {
            &none
        };
        let mut done = Delivered::default();
        let (sent_before, ingested) = (pending.sent_before, pending.ingested);
        let checked = (self.sender)
            .read_back(
                self.stream,
                batch,
                known,
                sent_before,
                ingested,
                pending.ambiguous,
                until,
                &mut done,
            )
            .await;
        flow.report.readback_calls += done.reads;
        flow.report.possible_duplicates += done.resent;
        match checked.decision {
            Decision::Stored => Ok(Seen::Stored),
            Decision::Send => {
                let refused = refused(&checked, batch.len());
                tracing::info!(key = self.key_str, stream = self.stream, verdict = ?checked.verdict, events = batch.len(), partly_accepted = refused.is_some(), "an unverified batch is not (all) in the stream; sending what is missing");
                if checked.verdict == Some(Verdict::Absent) {
                    flow.unverified.clear();
                }
                Ok(Seen::Send(refused))
            }
            Decision::Undecided => {
                let first = batch
                    .events()
                    .map(|e| e.source.0)
                    .min()
                    .unwrap_or(self.key.start);
                Err(ObjectError::Unverified {
                    key: self.key_str.to_string(),
                    start: first,
                    end: self.key.end,
                    read: checked.error.map(Box::new),
                })
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
        if let Some(PutError::Unverified { sent_after_ms, .. }) = &failure {
            let sources = batch.events().map(|e| e.source);
            let span = sources.fold((u64::MAX, 0), |(a, b), (s, e)| (a.min(s), b.max(e)));
            flow.unverified_at = Some((*sent_after_ms, now_ms(), span));
        }
        let r = &mut flow.report;
        let mut stored = 0u64;
        for e in batch
            .events()
            .filter(|e| d.stored.covers(e.source.0, e.source.1))
        {
            flow.known.add(e.timestamp, e.message);
            stored += 1;
        }
        r.sent += stored.saturating_sub(d.verified);
        r.put_calls += d.calls;
        r.restamped += d.restamped;
        r.outcome_unknown_calls += d.unknown_calls;
        r.possible_duplicates += d.resent;
        r.verified += d.verified;
        r.readback_calls += d.reads;
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
                source: Box::new(source),
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
            unverified_at: self.unverified_at,
        }
    }
}
