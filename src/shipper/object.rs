//! One chunk object, in stages: classify its key, lease its range, pump its
//! events (`pump.rs`), settle the checkpoint. The decision after the pump is
//! the pure `settle`. Outcomes and errors are in `outcome.rs`.

use crate::core::checkpoint::LeaseOutcome;
use crate::core::keys::{ChunkKey, notification_key_candidates};
use crate::core::ranges::RangeSet;
use crate::core::segment::SegmentKey;
use crate::ports::{CheckpointStore, LogSink, Object, ObjectStore, PortError};
use crate::shipper::Config;
use crate::shipper::invocation::InvocationState;
pub use crate::shipper::outcome::{ObjectError, ObjectOutcome, ShipReport};
use crate::shipper::pump::{Pump, PumpEnd, Pumped};
use crate::shipper::segment::SegmentJob;
use crate::shipper::sink::Sender;
use crate::shipper::trigger::ObjectRef;
use chrono::{DateTime, Utc};

/// A lease outlives the invocation's deadline by this much, so a slow final
/// checkpoint write still holds it; after that a retry may take over.
const LEASE_MARGIN_MS: i64 = 60_000;

/// What the per-object work needs from the long-lived shipper.
pub struct Deps<'a, O, L> {
    pub objects: &'a O,
    pub sender: &'a Sender<L>,
    pub config: &'a Config,
}

/// What a notification's key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    Skip {
        key: String,
        reason: String,
    },
    /// A chunk, under one or (when the notification's encoding is ambiguous)
    /// two stored keys, most likely first.
    Chunk(Vec<(String, ChunkKey)>),
    /// A layout v2 task segment, under its stored key.
    Segment(String, SegmentKey),
}

/// Stage 1, pure: what the key is.
pub fn classify(raw_key: &str, config: &Config) -> Classified {
    let decoded = crate::core::keys::decode_notification_key(raw_key);
    if decoded.starts_with(&format!("{}/", config.checkpoint_prefix)) {
        return Classified::Skip {
            key: decoded,
            reason: "checkpoint object: checkpoints must not trigger the shipper".into(),
        };
    }
    // A segment key never parses as a v1 key (four components, not five).
    for k in [decoded.clone(), raw_key.to_string()] {
        if let Ok(seg) = SegmentKey::parse(&k, &config.key_prefix) {
            return Classified::Segment(k, seg);
        }
    }
    let candidates: Vec<(String, ChunkKey)> =
        notification_key_candidates(raw_key, &config.key_prefix)
            .into_iter()
            .filter_map(|k| Some((k.clone(), ChunkKey::parse(&k, &config.key_prefix).ok()?)))
            .collect();
    if candidates.is_empty() {
        let reason = match ChunkKey::parse(&decoded, &config.key_prefix) {
            Err(e) => format!("neither a layout v1 chunk nor a v2 segment key: {e}"),
            Ok(_) => "neither a layout v1 chunk nor a v2 segment key".into(),
        };
        return Classified::Skip {
            key: decoded,
            reason,
        };
    }
    Classified::Chunk(candidates)
}

/// What the pump's end means for the checkpoint and the record.
#[derive(Debug)]
pub struct Settlement {
    /// Ranges the release write records as shipped.
    pub record: RangeSet,
    pub result: Result<ObjectOutcome, ObjectError>,
}

/// Stage 4, pure: after the pump, what to record and what to answer. The
/// lease is always released in the same write, so a retry need not wait.
pub fn settle(key: &ChunkKey, key_str: &str, pumped: Pumped) -> Settlement {
    let Pumped {
        end,
        delivered,
        report,
    } = pumped;
    match end {
        PumpEnd::Complete => {
            // The whole range, blank lines and already shipped parts included.
            let mut record = RangeSet::from(vec![(key.start, key.end)]);
            record.union(&delivered);
            Settlement {
                record,
                result: Ok(ObjectOutcome::Shipped {
                    key: key_str.to_string(),
                    report,
                }),
            }
        }
        PumpEnd::Missing => Settlement {
            record: delivered,
            result: Ok(ObjectOutcome::Missing {
                key: key_str.to_string(),
            }),
        },
        // Only what is known to be stored: a batch whose outcome is unknown is
        // sent again by the retry rather than risk losing it.
        PumpEnd::Failed(e) => Settlement {
            record: delivered,
            result: Err(e),
        },
    }
}

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
        let candidates = match classify(&self.obj.raw_key, deps.config) {
            Classified::Skip { key, reason } => {
                tracing::warn!(
                    key,
                    reason,
                    kind = "skipped",
                    will_retry = false,
                    "skipping an object that is not a chunk"
                );
                return Ok(ObjectOutcome::Skipped { key, reason });
            }
            Classified::Chunk(c) => c,
            Classified::Segment(key_str, key) => {
                let job = SegmentJob {
                    obj: self.obj,
                    owner: &self.owner,
                    key_str,
                    key,
                };
                return job.run(deps, state).await;
            }
        };
        // Two valid readings of the key: the object that exists decides.
        let (key_str, key, prefetched) = match <[_; 1]>::try_from(candidates) {
            Ok([(k, key)]) => (k, key, None),
            Err(several) => match self.probe(deps, &several).await? {
                Some((k, key, o)) => (k, key, Some(o)),
                None => {
                    let first = several.first().map_or("", |c| c.0.as_str());
                    return Ok(self.missing(first, "under either reading of the key"));
                }
            },
        };
        let checkpoint_bucket = deps
            .config
            .checkpoint_bucket
            .as_deref()
            .unwrap_or(&self.obj.bucket);
        let stream = deps.config.stream_template.render(&key.task(), &key);
        let _turn = state.stream_turn(&stream).await;
        let cp = state.checkpointer(checkpoint_bucket, &key.task()).await;
        let checkpoint_error = |source| ObjectError::Checkpoint {
            key: key_str.clone(),
            source,
        };

        // Stage 2: the lease, taken already by the invocation's shared lease
        // write for this task, or now.
        let preleased = state.take_preleased(&self.owner).await;
        let (outcome, shipped) = match preleased {
            Some(p) => p,
            None => {
                let (now, expires) = (Utc::now(), lease_expiry(state.inv.deadline_ms));
                cp.update(|doc| {
                    let outcome = doc.try_lease(&key, &self.owner, now, expires);
                    let shipped = doc
                        .file(&key)
                        .map(|f| f.shipped.clone())
                        .unwrap_or_default();
                    let write = outcome == LeaseOutcome::Taken;
                    ((outcome, shipped), write)
                })
                .await
                .map_err(checkpoint_error)?
            }
        };
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

        // Stage 3: the pump.
        let pump = Pump {
            objects: deps.objects,
            sender: deps.sender,
            config: deps.config,
            cp: &cp,
            key: &key,
            key_str: &key_str,
            bucket: &self.obj.bucket,
            stream: &stream,
            deadline_ms: state.inv.deadline_ms,
            margin_ms: state.margin_ms,
        };
        let pumped = pump.run(prefetched, shipped).await;

        // Stage 4: settle. The record and the lease release are queued: the
        // next write of the task's document carries them, at the latest the
        // invocation's flush (whose failure fails this record).
        let Settlement { record, result } = settle(&key, &key_str, pumped);
        if let Ok(ObjectOutcome::Missing { key }) = &result {
            self.log_missing(key, "");
        }
        cp.queue_completion(&key, record, &self.owner).await;
        result
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

    fn missing(&self, key: &str, detail: &str) -> ObjectOutcome {
        self.log_missing(key, detail);
        ObjectOutcome::Missing {
            key: key.to_string(),
        }
    }

    fn log_missing(&self, key: &str, detail: &str) {
        tracing::error!(
            bucket = self.obj.bucket,
            key,
            detail,
            kind = "missing",
            will_retry = false,
            "object not found: nothing shipped, the range is not marked shipped"
        );
    }
}

pub(crate) fn lease_expiry(deadline_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(deadline_ms.saturating_add(LEASE_MARGIN_MS))
        .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn config() -> Config {
        Config::from_env(&Env::from_pairs([("LOGDROP_LOG_GROUP", "g")])).unwrap()
    }

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
        }
    }

    #[test]
    fn classifies_keys() {
        let c = config();
        assert!(matches!(
            classify("checkpoints/c/t.json", &c),
            Classified::Skip { .. }
        ));
        assert!(matches!(classify("logs/x.gz", &c), Classified::Skip { .. }));
        let k = key().to_string();
        assert_eq!(
            classify(&k, &c),
            Classified::Chunk(vec![(k.clone(), key())])
        );
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
