//! The one way every chunk goes, whether it is a v1 object or a part of a
//! segment (a part *is* the chunk of its range): stage 2 leases the object's
//! chunks in one write, stage 3 pumps each chunk's events (`pump.rs`), stage
//! 4 settles what the checkpoint records. The object (`object.rs`) only
//! finds its chunks and their bodies and hands them over.

use crate::core::checkpoint::LeaseOutcome;
use crate::core::keys::{ChunkKey, TaskRef};
use crate::core::ranges::RangeSet;
use crate::ports::{CheckpointStore, LogSink, Object, ObjectStore, PortError};
use crate::shipper::Config;
use crate::shipper::checkpoint::{Checkpointer, Unsettled};
use crate::shipper::invocation::InvocationState;
use crate::shipper::lease::{self, Found, Held};
use crate::shipper::outcome::{ObjectError, ObjectOutcome, ShipReport};
use crate::shipper::pump::{Pump, PumpEnd, Pumped};
use crate::shipper::sink::Sender;
use chrono::DateTime;
use futures::StreamExt;

/// What the per-object work needs from the long-lived shipper.
pub struct Deps<'a, O, L> {
    pub objects: &'a O,
    pub sender: &'a Sender<L>,
    pub config: &'a Config,
}

/// One chunk of an object, handed over with its body.
pub struct Chunk {
    pub key: ChunkKey,
    /// How logs and errors name it: the object's key as stored, followed for
    /// a segment's part by its place and range.
    pub name: String,
    /// Lease owner: the request id and the object's place in the event (and
    /// the part's place in the segment).
    pub owner: String,
    /// The body, when the object is open already (a segment's part, a v1
    /// object opened to resolve its key); otherwise the pump fetches `name`.
    pub body: Option<Object>,
}

/// Whose job a chunk's stream turn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turns {
    /// The caller took the stream's turn before the lease: a v1 chunk, so a
    /// second delivery of it in the same invocation waits for the first and
    /// then finds it shipped rather than leased.
    Held,
    /// Each chunk takes its stream's turn just before its events go out: a
    /// segment's parts, whose segment took its turn among its task's segments.
    PerChunk,
}

/// An object's chunks, in order, as one unit of work.
pub struct Handover {
    /// The object's key as stored.
    pub key: String,
    pub bucket: String,
    pub task: TaskRef,
    pub chunks: Vec<Chunk>,
    pub turns: Turns,
}

/// What the pump's end means for the checkpoint and the record.
#[derive(Debug)]
pub struct Settlement {
    /// Ranges the completion write records as shipped.
    pub record: RangeSet,
    /// Set when a call of unknown outcome stayed undecided: the completion
    /// write marks its batch's range unverified, as of then.
    pub unverified: Option<Unsettled>,
    pub result: Result<ObjectOutcome, ObjectError>,
}

/// Stage 4, pure: after the pump, what to record and what to answer. The
/// lease is always released in the same write, so a retry need not wait.
pub fn settle(key: &ChunkKey, name: &str, pumped: Pumped) -> Settlement {
    let Pumped {
        end,
        delivered,
        report,
        unverified_at,
    } = pumped;
    let at = DateTime::from_timestamp_millis;
    let unverified =
        unverified_at.and_then(|(after, before, range)| Some((at(after)?, at(before)?, range)));
    match end {
        PumpEnd::Complete => {
            // The whole range, blank lines and already shipped parts included.
            let mut record = RangeSet::from(vec![(key.start, key.end)]);
            record.union(&delivered);
            Settlement {
                record,
                unverified: None,
                result: Ok(ObjectOutcome::Shipped {
                    key: name.to_string(),
                    report,
                }),
            }
        }
        PumpEnd::Missing => Settlement {
            record: delivered,
            unverified: None,
            result: Ok(ObjectOutcome::Missing {
                key: name.to_string(),
            }),
        },
        // Only what is known to be stored: a batch whose outcome is unknown is
        // read back by the retry, its range marked unverified.
        PumpEnd::Failed(e) => Settlement {
            record: delivered,
            unverified,
            result: Err(e),
        },
    }
}

/// How an object's chunks went, chunk by chunk.
#[derive(Default)]
struct Tally {
    report: ShipReport,
    missing: bool,
    failure: Option<ObjectError>,
}

impl Tally {
    fn outcome(self, key: String) -> Result<ObjectOutcome, ObjectError> {
        match self {
            Tally {
                failure: Some(e), ..
            } => Err(e),
            Tally { missing: true, .. } => Ok(ObjectOutcome::Missing { key }),
            Tally { report, .. } => Ok(ObjectOutcome::Shipped { key, report }),
        }
    }
}

/// Ships an object's chunks: one lease write for all of them, then each in
/// turn; every chunk's completion (its record, its lease dropped) is queued
/// for the next write of the task's document, at the latest the
/// invocation's flush, whose failure fails the record.
pub async fn ship<O, C, L>(
    deps: &Deps<'_, O, L>,
    state: &InvocationState<'_, C>,
    object: Handover,
) -> Result<ObjectOutcome, ObjectError>
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
{
    let bucket = deps.config.checkpoint_bucket.as_deref();
    let cp = state
        .checkpointer(bucket.unwrap_or(&object.bucket), &object.task)
        .await;
    let found = lease(state, &cp, &object).await?;
    if found
        .iter()
        .all(|(o, _)| *o == LeaseOutcome::AlreadyShipped)
    {
        tracing::info!(key = object.key, "already shipped; nothing to do");
        return Ok(ObjectOutcome::AlreadyShipped { key: object.key });
    }
    let leased: Vec<(ChunkKey, String)> = (object.chunks.iter())
        .map(|c| (c.key.clone(), c.owner.clone()))
        .collect();
    let (records, tally) = pump_all(
        deps,
        state,
        &cp,
        &object.bucket,
        object.chunks,
        found,
        object.turns,
    )
    .await;
    // Chunks never pumped (already shipped, or after a failure) have their
    // leases dropped all the same.
    for ((key, owner), (record, unverified)) in leased.iter().zip(records) {
        cp.queue_completion(key, record, owner, unverified).await;
    }
    tally.outcome(object.key)
}

/// Stages 3 and 4 for each chunk in order, until one fails: what each one's
/// completion records, and how they went.
async fn pump_all<O, C, L>(
    deps: &Deps<'_, O, L>,
    state: &InvocationState<'_, C>,
    cp: &Checkpointer<'_, C>,
    bucket: &str,
    chunks: Vec<Chunk>,
    found: Vec<Found>,
    turns: Turns,
) -> (Vec<(RangeSet, Option<Unsettled>)>, Tally)
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
{
    let mut records = vec![(RangeSet::default(), None); chunks.len()];
    let mut tally = Tally::default();
    for (i, (chunk, found)) in chunks.into_iter().zip(found).enumerate() {
        let settled = pump_chunk(deps, state, cp, bucket, chunk, found, turns).await;
        let Settlement {
            record,
            unverified,
            result,
        } = match settled {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                tally.failure = Some(e);
                break;
            }
        };
        records[i] = (record, unverified);
        match result {
            Ok(ObjectOutcome::Shipped { report, .. }) => tally.report.add(&report),
            Ok(ObjectOutcome::Missing { key }) => {
                log_missing(bucket, &key, "");
                tally.missing = true;
            }
            Ok(_) => {}
            Err(e) => {
                tally.failure = Some(e);
                break;
            }
        }
    }
    (records, tally)
}

/// Stage 2: each chunk's lease, as the invocation's shared lease write
/// (`prelease.rs`) found it, the others taken now in one write.
async fn lease<C: CheckpointStore>(
    state: &InvocationState<'_, C>,
    cp: &Checkpointer<'_, C>,
    object: &Handover,
) -> Result<Vec<Found>, ObjectError> {
    let mut found = Vec::with_capacity(object.chunks.len());
    for c in &object.chunks {
        found.push(state.take_preleased(&c.owner).await);
    }
    let unleased: Vec<&Chunk> = (object.chunks.iter().zip(&found))
        .filter(|(_, f)| f.is_none())
        .map(|(c, _)| c)
        .collect();
    if !unleased.is_empty() {
        let wanted: Vec<(&ChunkKey, &str)> = (unleased.iter())
            .map(|c| (&c.key, c.owner.as_str()))
            .collect();
        let taken = lease::lease_all(cp, &wanted, state.inv.deadline_ms)
            .await
            .map_err(|source| ObjectError::Checkpoint {
                key: object.key.clone(),
                source,
            })?;
        let taken = taken.map_err(|held: Held| ObjectError::LeaseHeld {
            key: unleased[held.index].name.clone(),
            owner: held.owner,
            until: held.until,
        })?;
        // One answer per chunk asked, in their order.
        let mut taken = taken.into_iter();
        for f in found.iter_mut().filter(|f| f.is_none()) {
            *f = taken.next();
        }
    }
    let found: Vec<Found> = found.into_iter().flatten().collect();
    // A lease the shared write found held by another invocation.
    for (c, (outcome, _)) in object.chunks.iter().zip(&found) {
        if let LeaseOutcome::HeldBy { owner, expires_at } = outcome {
            return Err(ObjectError::LeaseHeld {
                key: c.name.clone(),
                owner: owner.clone(),
                until: *expires_at,
            });
        }
    }
    Ok(found)
}

/// Stages 3 and 4 for one chunk: its bytes passed over if it is shipped
/// already, else its events pumped and the outcome settled.
async fn pump_chunk<O, C, L>(
    deps: &Deps<'_, O, L>,
    state: &InvocationState<'_, C>,
    cp: &Checkpointer<'_, C>,
    bucket: &str,
    chunk: Chunk,
    (outcome, shipped): Found,
    turns: Turns,
) -> Result<Option<Settlement>, ObjectError>
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
{
    if outcome == LeaseOutcome::AlreadyShipped {
        // Read past without decoding: a segment's next part follows them.
        if let Some(object) = chunk.body {
            pass_over(object, &chunk.name).await?;
        }
        return Ok(None);
    }
    let stream = deps
        .config
        .stream_template
        .render(&chunk.key.task(), &chunk.key);
    let _turn = match turns {
        Turns::PerChunk => Some(state.stream_turn(&stream).await),
        Turns::Held => None,
    };
    let pump = Pump {
        objects: deps.objects,
        sender: deps.sender,
        config: deps.config,
        cp,
        key: &chunk.key,
        key_str: &chunk.name,
        bucket,
        stream: &stream,
        deadline_ms: state.inv.deadline_ms,
        margin_ms: state.margin_ms,
    };
    let pumped = pump.run(chunk.body, shipped).await;
    Ok(Some(settle(&chunk.key, &chunk.name, pumped)))
}

async fn pass_over(object: Object, name: &str) -> Result<(), ObjectError> {
    let mut body = object.body;
    while let Some(piece) = body.next().await {
        piece.map_err(|source: PortError| ObjectError::Read {
            key: name.to_string(),
            source,
        })?;
    }
    Ok(())
}

pub fn log_missing(bucket: &str, key: &str, detail: &str) {
    tracing::error!(
        bucket,
        key,
        detail,
        kind = "missing",
        will_retry = false,
        "object not found: nothing shipped, the range is not marked shipped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChunkKey {
        ChunkKey::parse(
            "logs/c/t/f.log/0/000000000000010-000000000000100.gz",
            "logs",
        )
        .unwrap()
    }

    fn pumped(end: PumpEnd, delivered: Vec<(u64, u64)>) -> Pumped {
        Pumped {
            end,
            delivered: RangeSet::from(delivered),
            report: ShipReport::default(),
            unverified_at: None,
        }
    }

    #[test]
    fn settles_by_how_the_pump_ended() {
        let k = key();
        let done = settle(&k, "k", pumped(PumpEnd::Complete, vec![(10, 20)]));
        assert_eq!(done.record.ranges(), &[(10, 100)]);
        assert!(matches!(done.result, Ok(ObjectOutcome::Shipped { .. })));
        let missing = settle(&k, "k", pumped(PumpEnd::Missing, vec![]));
        assert!(missing.record.is_empty());
        assert!(matches!(missing.result, Ok(ObjectOutcome::Missing { .. })));
        // A failure records exactly what was delivered, and fails the record.
        let deadline = ObjectError::Deadline { key: "k".into() };
        let failed = settle(
            &k,
            "k",
            pumped(PumpEnd::Failed(deadline), vec![(10, 20), (30, 40)]),
        );
        assert_eq!(failed.record.ranges(), &[(10, 20), (30, 40)]);
        let e = failed.result.unwrap_err();
        assert!(e.is_retryable() && e.kind() == "deadline");
    }
}
