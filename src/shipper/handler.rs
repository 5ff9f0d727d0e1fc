//! The Lambda handler: trigger in, per-record results out.

use crate::core::keys::{ChunkKey, TaskRef};
use crate::ports::{CheckpointStore, LogSink, ObjectStore};
use crate::shipper::Config;
use crate::shipper::checkpoint::Checkpointer;
use crate::shipper::object::ObjectOutcome;
use crate::shipper::sink::Sender;
use crate::shipper::trigger::{self, Record, TriggerKind};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Stop starting new batches this long before the Lambda deadline, leaving
/// time for the calls in flight and the final checkpoint write...
pub const DEFAULT_DEADLINE_MARGIN_MS: i64 = 10_000;
/// ...but never more than a fifth of the invocation's time, nor less than
/// this: with Lambda's default 3-second timeout a fixed 10 s would ship nothing.
const MIN_DEADLINE_MARGIN_MS: i64 = 200;

/// What the runtime tells us about this invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// Milliseconds since the epoch.
    pub deadline_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Trigger(#[from] trigger::TriggerError),
    /// Some records failed; the trigger retries the event (direct S3, EventBridge).
    #[error("{failed} of {total} records failed: {first}")]
    Records {
        failed: usize,
        total: usize,
        first: String,
        retryable: bool,
        response: Value,
    },
}

impl HandlerError {
    /// `Retryable` when every failure may pass on a retry, `Poison` otherwise.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Trigger(_) => "Poison",
            HandlerError::Records {
                retryable: true, ..
            } => "Retryable",
            HandlerError::Records { .. } => "Poison",
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

pub struct Shipper<O, C, L> {
    pub objects: O,
    pub checkpoints: C,
    pub sender: Sender<L>,
    pub config: Config,
    pub deadline_margin_ms: i64,
}

#[derive(Debug, Serialize)]
struct RecordReport {
    id: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    objects: Vec<ObjectOutcome>,
}

type SharedCheckpointer<'a, C> = Arc<Checkpointer<'a, C>>;

/// What the records of one invocation share.
pub struct InvocationShared<'a, C> {
    /// One checkpointer per task document, so objects of one task processed
    /// concurrently take turns instead of racing each other.
    map: Mutex<HashMap<(String, TaskRef), SharedCheckpointer<'a, C>>>,
    /// One turn at a time per log stream, in record order, so chunks of a file
    /// delivered together land in file order even where timestamps tie.
    streams: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// How long before the deadline no new batch starts, for this invocation.
    pub(crate) margin_ms: i64,
}

impl<'a, C: CheckpointStore> InvocationShared<'a, C> {
    pub(crate) async fn stream_turn(&self, stream: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .streams
            .lock()
            .await
            .entry(stream.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    pub(crate) async fn get<O, L>(
        &self,
        shipper: &'a Shipper<O, C, L>,
        bucket: &str,
        key: &ChunkKey,
    ) -> Arc<Checkpointer<'a, C>> {
        let task = key.task();
        let mut map = self.map.lock().await;
        map.entry((bucket.to_string(), task.clone()))
            .or_insert_with(|| {
                let doc_key = task.checkpoint_key(&shipper.config.checkpoint_prefix);
                Arc::new(Checkpointer::new(
                    &shipper.checkpoints,
                    bucket.to_string(),
                    doc_key,
                    task,
                ))
            })
            .clone()
    }
}

impl<O: ObjectStore, C: CheckpointStore, L: LogSink> Shipper<O, C, L> {
    pub fn new(objects: O, checkpoints: C, sink: L, config: Config) -> Self {
        let sender = Sender::new(sink, &config);
        Shipper {
            objects,
            checkpoints,
            sender,
            config,
            deadline_margin_ms: DEFAULT_DEADLINE_MARGIN_MS,
        }
    }

    /// Handles one invocation. For SQS the answer is a partial batch response;
    /// for S3 and EventBridge a summary, or an error when any record failed.
    pub async fn handle(&self, event: &Value, inv: &Invocation) -> Result<Value, HandlerError> {
        let trigger = trigger::parse(event)?;
        let budget = inv.deadline_ms - chrono::Utc::now().timestamp_millis();
        tracing::info!(
            request_id = inv.request_id,
            budget_ms = budget,
            "invocation"
        );
        let shared = InvocationShared {
            map: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            margin_ms: (budget / 5)
                .min(self.deadline_margin_ms)
                .max(MIN_DEADLINE_MARGIN_MS),
        };
        let reports: Vec<(RecordReport, bool)> =
            futures::stream::iter(trigger.records.iter().enumerate())
                .map(|(i, r)| self.record(r, i, inv, &shared))
                .buffered(self.config.object_concurrency)
                .collect()
                .await;
        let failed: Vec<&(RecordReport, bool)> = reports.iter().filter(|(r, _)| !r.ok).collect();
        tracing::info!(records = reports.len(), failed = failed.len(), kind = ?trigger.kind, "invocation done");
        if trigger.kind == TriggerKind::Sqs {
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failed
                .iter()
                .map(|(r, _)| {
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = r.id.clone();
                    f
                })
                .collect();
            return Ok(serde_json::to_value(response).unwrap_or_default());
        }
        let summary =
            serde_json::json!({ "records": reports.iter().map(|(r, _)| r).collect::<Vec<_>>() });
        match failed.first() {
            None => Ok(summary),
            Some((first, _)) => Err(HandlerError::Records {
                failed: failed.len(),
                total: reports.len(),
                first: first.error.clone().unwrap_or_default(),
                retryable: failed.iter().all(|(_, retryable)| *retryable),
                response: summary,
            }),
        }
    }

    /// A record's objects, one after another: a later chunk of a file is only
    /// worth shipping once the earlier one is in.
    async fn record<'a>(
        &'a self,
        record: &Record,
        index: usize,
        inv: &Invocation,
        shared: &InvocationShared<'a, C>,
    ) -> (RecordReport, bool) {
        let mut report = RecordReport {
            id: record.id.clone(),
            ok: true,
            error: None,
            objects: Vec::new(),
        };
        let objects = match &record.objects {
            Ok(o) => o,
            Err(why) => {
                tracing::error!(
                    record = record.id,
                    error = why,
                    "record cannot be read; failing it so it stays visible"
                );
                report.ok = false;
                report.error = Some(why.clone());
                return (report, false);
            }
        };
        for (j, obj) in objects.iter().enumerate() {
            let owner = format!("{}/{index}.{j}", inv.request_id);
            match self.ship_object(obj, inv, &owner, shared).await {
                Ok(outcome) => report.objects.push(outcome),
                Err(e) => {
                    let retryable = e.is_retryable();
                    report.ok = false;
                    report.error = Some(e.to_string());
                    return (report, retryable);
                }
            }
        }
        (report, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;
    use crate::core::keys::ChunkKey;
    use crate::memory::{MemorySink, MemoryStore};
    use std::sync::atomic::Ordering;

    fn shipper() -> Shipper<MemoryStore, MemoryStore, MemorySink> {
        let config = Config::from_env(&Env::from_pairs([("LOGDROP_LOG_GROUP", "g")])).unwrap();
        let mut objects = MemoryStore::default();
        objects.read_size = 1000;
        Shipper::new(
            objects,
            MemoryStore::default(),
            MemorySink::default(),
            config,
        )
    }

    fn key(start: u64, end: u64) -> String {
        ChunkKey {
            prefix: "logs".into(),
            cluster: "c".into(),
            task_id: "t".into(),
            file: "catalina.2026-11-24.log".into(),
            generation: 0,
            start,
            end,
        }
        .to_string()
    }

    fn event(keys: &[String]) -> Value {
        let records: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::json!({"s3": {"bucket": {"name": "b"}, "object": {"key": k}}}))
            .collect();
        serde_json::json!({ "Records": records })
    }

    #[tokio::test]
    async fn ships_through_the_ports_once() {
        let s = shipper();
        let now = chrono::Utc::now();
        let line = |i: i64| {
            format!(
                "{} INFO [main] event {i}\n\tat frame\n",
                crate::generate::juli_time((now - chrono::Duration::minutes(60 - i)).naive_utc())
            )
        };
        let text: String = (0..50).map(line).collect();
        let cut = text.match_indices(&line(25)).next().unwrap().0;
        let (k1, k2) = (key(0, cut as u64), key(cut as u64, text.len() as u64));
        s.objects
            .insert("b", &k1, crate::generate::gzip(&text.as_bytes()[..cut]));
        s.objects
            .insert("b", &k2, crate::generate::gzip(&text.as_bytes()[cut..]));
        let inv = Invocation {
            request_id: "r".into(),
            deadline_ms: now.timestamp_millis() + 60_000,
        };
        // Out of order, then everything again: each event lands once.
        s.handle(&event(std::slice::from_ref(&k2)), &inv)
            .await
            .unwrap();
        s.handle(&event(&[k1.clone(), k2.clone()]), &inv)
            .await
            .unwrap();
        let got = s.sender.sink.events("g", "catalina/t");
        assert_eq!(got.len(), 50);
        let mut messages: Vec<&str> = got.iter().map(|e| e.message.as_str()).collect();
        messages.sort_by_key(|m| m.split(' ').nth(1).map(str::to_string));
        let want: Vec<String> = (0..50).map(|i| line(i).trim_end().to_string()).collect();
        assert_eq!(messages, want);
        assert_eq!(s.sender.sink.calls.load(Ordering::Relaxed), 2);
    }
}
