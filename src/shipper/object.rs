//! One object named by a notification: what its key names (`classify.rs`),
//! then its chunks handed over to the one way every chunk goes (`chunk.rs`).
//! A v1 chunk is its own only chunk; a segment hands over the parts its
//! manifest lists (`segment.rs`).

use crate::core::keys::ChunkKey;
use crate::core::segment::SegmentKey;
use crate::ports::{CheckpointStore, LogSink, Object, ObjectStore, PortError};
use crate::shipper::chunk::{self, Chunk, Deps, Handover, Turns, log_missing};
use crate::shipper::classify::{Classified, classify};
use crate::shipper::invocation::InvocationState;
use crate::shipper::outcome::{ObjectError, ObjectOutcome};
use crate::shipper::segment;
use crate::shipper::trigger::ObjectRef;

/// The work on one object of a record.
pub struct ObjectJob<'j> {
    pub obj: &'j ObjectRef,
    /// Lease owner: the request id and the object's place in the event.
    pub owner: String,
}

impl ObjectJob<'_> {
    pub async fn run<O, C, L>(
        &self,
        deps: &Deps<'_, O, L>,
        state: &InvocationState<'_, C>,
    ) -> Result<ObjectOutcome, ObjectError>
    where
        O: ObjectStore,
        C: CheckpointStore,
        L: LogSink,
    {
        match classify(&self.obj.raw_key, deps.config) {
            Classified::Skip { key, reason } => {
                tracing::warn!(
                    key,
                    reason,
                    kind = "skipped",
                    will_retry = false,
                    "skipping an object that is not a chunk"
                );
                Ok(ObjectOutcome::Skipped { key, reason })
            }
            Classified::Chunk(candidates) => self.chunk(deps, state, candidates).await,
            Classified::Segment(key_str, key) => self.segment(deps, state, key_str, key).await,
        }
    }

    /// A v1 chunk: the reading of its key that exists, its stream's turn,
    /// then the one way, with itself as its only chunk.
    async fn chunk<O, C, L>(
        &self,
        deps: &Deps<'_, O, L>,
        state: &InvocationState<'_, C>,
        candidates: Vec<(String, ChunkKey)>,
    ) -> Result<ObjectOutcome, ObjectError>
    where
        O: ObjectStore,
        C: CheckpointStore,
        L: LogSink,
    {
        // Two valid readings of the key: the object that exists decides.
        let (key_str, key, body) = match <[_; 1]>::try_from(candidates) {
            Ok([(k, key)]) => (k, key, None),
            Err(several) => match self.probe(deps, &several).await? {
                Some((k, key, o)) => (k, key, Some(o)),
                None => {
                    let first = several.first().map_or("", |c| c.0.as_str());
                    log_missing(&self.obj.bucket, first, "under either reading of the key");
                    return Ok(ObjectOutcome::Missing {
                        key: first.to_string(),
                    });
                }
            },
        };
        let stream = deps.config.stream_template.render(&key.task(), &key);
        let _turn = state.stream_turn(&stream).await;
        let handover = Handover {
            key: key_str.clone(),
            bucket: self.obj.bucket.clone(),
            task: key.task(),
            turns: Turns::Held,
            chunks: vec![Chunk {
                key,
                name: key_str,
                owner: self.owner.clone(),
                body,
            }],
        };
        chunk::ship(deps, state, handover).await
    }

    /// A segment: its turn among its task's segments, then its parts.
    async fn segment<O, C, L>(
        &self,
        deps: &Deps<'_, O, L>,
        state: &InvocationState<'_, C>,
        key_str: String,
        key: SegmentKey,
    ) -> Result<ObjectOutcome, ObjectError>
    where
        O: ObjectStore,
        C: CheckpointStore,
        L: LogSink,
    {
        // Segments of one task take turns in record order (held through the
        // GET and the manifest, before any stream turn), so parts of one file
        // reach its stream in file order even where timestamps tie.
        let task = key.task();
        let turn_name = format!("\0segments\0{}\0{}", task.cluster, task.task_id);
        let _task_turn = state.stream_turn(&turn_name).await;
        let object = match deps.objects.get(&self.obj.bucket, &key_str).await {
            Ok(o) => o,
            Err(PortError::NotFound(_)) => {
                log_missing(&self.obj.bucket, &key_str, "");
                return Ok(ObjectOutcome::Missing { key: key_str });
            }
            Err(source) => {
                return Err(ObjectError::Read {
                    key: key_str,
                    source,
                });
            }
        };
        let (chunks, rest) = segment::parts(object, &key_str, &key, &self.owner).await?;
        let handover = Handover {
            key: key_str.clone(),
            bucket: self.obj.bucket.clone(),
            task,
            turns: Turns::PerChunk,
            chunks,
        };
        let outcome = chunk::ship(deps, state, handover).await?;
        if let ObjectOutcome::Shipped { .. } = outcome {
            rest.check_empty(&key_str).await?;
        }
        Ok(outcome)
    }

    /// Opens the first candidate that exists.
    async fn probe<O: ObjectStore, L>(
        &self,
        deps: &Deps<'_, O, L>,
        candidates: &[(String, ChunkKey)],
    ) -> Result<Option<(String, ChunkKey, Object)>, ObjectError> {
        for (k, key) in candidates {
            match deps.objects.get(&self.obj.bucket, k).await {
                Ok(o) => return Ok(Some((k.clone(), key.clone(), o))),
                Err(PortError::NotFound(_)) => continue,
                Err(source) => {
                    return Err(ObjectError::Read {
                        key: k.clone(),
                        source,
                    });
                }
            }
        }
        Ok(None)
    }
}
