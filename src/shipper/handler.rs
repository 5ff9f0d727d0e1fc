//! The Lambda handler: trigger in, per-record results out.

use crate::ports::{CheckpointStore, LogSink, ObjectStore};
use crate::shipper::Config;
use crate::shipper::invocation::{
    DEFAULT_DEADLINE_MARGIN_MS, Invocation, InvocationState, deadline_margin,
};
use crate::shipper::object::{Deps, ObjectJob};
use crate::shipper::outcome::{ObjectError, ObjectOutcome};
use crate::shipper::sink::Sender;
use crate::shipper::trigger::{self, Record, TriggerKind};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::StreamExt;
use serde::Serialize;

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
        response: Summary,
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

/// The handler's answer: a partial batch response for SQS, a summary otherwise.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Response {
    Sqs(SqsBatchResponse),
    Summary(Summary),
}

impl Response {
    /// Whether any record failed (only an SQS response can say so and succeed).
    pub fn has_failures(&self) -> bool {
        match self {
            Response::Sqs(r) => !r.batch_item_failures.is_empty(),
            Response::Summary(s) => s.records.iter().any(|r| !r.ok),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub records: Vec<RecordReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    pub id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether a retry of the record may succeed (false: poison).
    #[serde(skip)]
    pub retryable: bool,
    pub objects: Vec<ObjectOutcome>,
}

pub struct Shipper<O, C, L> {
    pub objects: O,
    pub checkpoints: C,
    pub sender: Sender<L>,
    pub config: Config,
    pub deadline_margin_ms: i64,
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
    pub async fn handle(
        &self,
        event: &serde_json::Value,
        inv: &Invocation,
    ) -> Result<Response, HandlerError> {
        let trigger = trigger::parse(event)?;
        let budget = inv.deadline_ms - chrono::Utc::now().timestamp_millis();
        tracing::info!(
            request_id = inv.request_id,
            budget_ms = budget,
            "invocation"
        );
        let state = InvocationState::new(
            inv,
            deadline_margin(budget, self.deadline_margin_ms),
            &self.checkpoints,
            &self.config.checkpoint_prefix,
        );
        let deps = Deps {
            objects: &self.objects,
            sender: &self.sender,
            config: &self.config,
        };
        let before = self.sender.unknown_outcomes();
        let reports: Vec<RecordReport> = futures::stream::iter(trigger.records.iter().enumerate())
            .map(|(i, r)| record(&deps, &state, r, i))
            .buffered(self.config.object_concurrency)
            .collect()
            .await;
        let failed: Vec<&RecordReport> = reports.iter().filter(|r| !r.ok).collect();
        let missing = reports
            .iter()
            .flat_map(|r| &r.objects)
            .filter(|o| matches!(o, ObjectOutcome::Missing { .. }))
            .count();
        let after = self.sender.unknown_outcomes();
        tracing::info!(
            records = reports.len(),
            failed = failed.len(),
            missing,
            put_outcome_unknown_calls = after.0 - before.0,
            possible_duplicates = after.1 - before.1,
            kind = ?trigger.kind,
            "invocation done"
        );
        if trigger.kind == TriggerKind::Sqs {
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failed
                .iter()
                .map(|r| {
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = r.id.clone();
                    f
                })
                .collect();
            return Ok(Response::Sqs(response));
        }
        let first = failed.first().map(|r| r.error.clone().unwrap_or_default());
        let (n_failed, retryable) = (failed.len(), failed.iter().all(|r| r.retryable));
        let summary = Summary { records: reports };
        match first {
            None => Ok(Response::Summary(summary)),
            Some(first) => Err(HandlerError::Records {
                failed: n_failed,
                total: summary.records.len(),
                first,
                retryable,
                response: summary,
            }),
        }
    }
}

/// A record's objects, one after another: a later chunk of a file is only
/// worth shipping once the earlier one is in. Every failure logs one line
/// naming the key, the kind and whether the trigger's retry may succeed.
async fn record<O, C, L>(
    deps: &Deps<'_, O, L>,
    state: &InvocationState<'_, C>,
    record: &Record,
    index: usize,
) -> RecordReport
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
{
    let mut report = RecordReport {
        id: record.id.clone(),
        ok: true,
        error: None,
        retryable: true,
        objects: Vec::new(),
    };
    let objects = match &record.objects {
        Ok(o) => o,
        Err(why) => {
            tracing::error!(
                record = record.id,
                kind = "unreadable_record",
                will_retry = false,
                error = %why,
                "record cannot be read; failing it so it stays visible"
            );
            report.ok = false;
            report.error = Some(why.to_string());
            report.retryable = false;
            return report;
        }
    };
    for (j, obj) in objects.iter().enumerate() {
        let job = ObjectJob {
            obj,
            owner: format!("{}/{index}.{j}", state.inv.request_id),
        };
        match job.run(deps, state).await {
            Ok(outcome) => report.objects.push(outcome),
            Err(e) => {
                let retryable = e.is_retryable();
                let (key, kind) = (e.key(), e.kind());
                if matches!(e, ObjectError::LeaseHeld { .. }) {
                    tracing::warn!(record = record.id, key, kind, will_retry = retryable, error = %e, "record failed");
                } else {
                    tracing::error!(record = record.id, key, kind, will_retry = retryable, error = %e, "record failed");
                }
                report.ok = false;
                report.error = Some(e.to_string());
                report.retryable = retryable;
                return report;
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;
    use crate::core::keys::ChunkKey;
    use crate::memory::{MemorySink, MemoryStore};
    use serde_json::Value;
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

    fn access_lines(n: i64, minutes_ago: i64) -> String {
        let t = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
        (0..n)
            .map(|i| {
                let at = (t + chrono::Duration::seconds(i)).format("%d/%b/%Y:%H:%M:%S +0000");
                format!("10.0.0.1 - - [{at}] \"GET /{minutes_ago}/{i} HTTP/1.1\" 200 2\n")
            })
            .collect()
    }

    fn access_key(len: usize) -> String {
        ChunkKey {
            prefix: "logs".into(),
            cluster: "c".into(),
            task_id: "t".into(),
            file: "localhost_access_log.x.txt".into(),
            generation: 0,
            start: 0,
            end: len as u64,
        }
        .to_string()
    }

    fn soon(now: i64) -> Invocation {
        Invocation {
            request_id: "r".into(),
            deadline_ms: now + 60_000,
        }
    }

    #[tokio::test]
    async fn events_refused_for_their_time_are_restamped_once() {
        let s = shipper();
        let now = chrono::Utc::now().timestamp_millis();
        // The group keeps less than we know: the first 30 events (2 hours old)
        // are refused (10 as expired, 20 as too old), the other 20 accepted.
        let text = access_lines(30, 120) + &access_lines(20, 10);
        let key = access_key(text.len());
        s.objects
            .insert("b", &key, crate::generate::gzip(text.as_bytes()));
        s.sender.sink.refuse(Some(crate::memory::Refusals {
            expired_before_ms: now - 7_190_000,
            too_old_before_ms: now - 3_600_000,
            too_new_after_ms: now + 7_200_000,
        }));
        let r = s
            .handle(&event(std::slice::from_ref(&key)), &soon(now))
            .await;
        let r = r.unwrap().to_json();
        assert_eq!(r["records"][0]["objects"][0]["report"]["restamped"], 30);
        let got = s.sender.sink.events("g", "localhost_access_log/t");
        let messages: Vec<&str> = got.iter().map(|e| e.message.as_str()).collect();
        let lines: Vec<&str> = text.lines().collect();
        // Each event once: the accepted with their time, then the refused
        // ones re-stamped with the current time, in file order.
        assert_eq!(messages[..20], lines[30..]);
        assert_eq!(messages[20..], lines[..30]);
        assert!(got[..20].iter().all(|e| e.timestamp < now));
        assert!(got[20..].iter().all(|e| e.timestamp >= now));
    }

    #[tokio::test]
    async fn refused_again_after_the_restamp_records_only_what_was_stored() {
        let s = shipper();
        let now = chrono::Utc::now().timestamp_millis();
        // Refused: 10 events of 10 minutes ago, even re-stamped with the
        // current time; accepted: 5 events half an hour ahead.
        let text = access_lines(10, 10) + &access_lines(5, -30);
        let key = access_key(text.len());
        s.objects
            .insert("b", &key, crate::generate::gzip(text.as_bytes()));
        s.sender.sink.refuse(Some(crate::memory::Refusals {
            expired_before_ms: i64::MIN,
            too_old_before_ms: now + 600_000,
            too_new_after_ms: now + 7_200_000,
        }));
        let e = s
            .handle(&event(std::slice::from_ref(&key)), &soon(now))
            .await;
        let e = e.unwrap_err();
        assert!(e.to_string().contains("rejected 10 events again"), "{e}");
        assert_eq!(e.error_type(), "Poison");
        assert_eq!(s.sender.sink.events("g", "localhost_access_log/t").len(), 5);
        // The retry, once the service accepts them, sends exactly the other 10.
        s.sender.sink.refuse(None);
        s.handle(&event(std::slice::from_ref(&key)), &soon(now))
            .await
            .unwrap();
        let got = s.sender.sink.events("g", "localhost_access_log/t");
        let mut messages: Vec<&str> = got.iter().map(|e| e.message.as_str()).collect();
        messages.sort();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert_eq!(messages, lines);
    }
}
