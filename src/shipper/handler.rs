//! The Lambda handler: trigger in, per-record results out.

use crate::core::keys::TaskRef;
use crate::ports::{CheckpointStore, LogSink, ObjectStore};
use crate::shipper::Config;
use crate::shipper::checkpoint::CheckpointError;
use crate::shipper::chunk::Deps;
use crate::shipper::invocation::{
    DEFAULT_DEADLINE_MARGIN_MS, Invocation, InvocationState, deadline_margin,
};
use crate::shipper::metrics::{self, Figures};
use crate::shipper::object::ObjectJob;
use crate::shipper::outcome::{ObjectError, ObjectOutcome};
use crate::shipper::prelease;
use crate::shipper::sink::Sender;
use crate::shipper::trigger::{self, Record, TriggerKind};
use crate::telemetry::Output;
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
    /// The failure's kind (`ObjectError::kind`, `unreadable_record`), for the metrics.
    #[serde(skip)]
    pub kind: Option<&'static str>,
    pub objects: Vec<ObjectOutcome>,
    /// The checkpoint documents (bucket, task) its objects use, each with
    /// the key of the object that uses it.
    #[serde(skip)]
    pub documents: Vec<(Document, String)>,
}

impl RecordReport {
    fn new(id: &str) -> Self {
        RecordReport {
            id: id.to_string(),
            ok: true,
            error: None,
            retryable: true,
            kind: None,
            objects: Vec::new(),
            documents: Vec::new(),
        }
    }

    fn fail(&mut self, error: String, retryable: bool, kind: &'static str) {
        self.ok = false;
        self.error = Some(error);
        self.retryable = retryable;
        self.kind = Some(kind);
    }
}

/// A checkpoint document: its bucket and its task.
pub type Document = (String, TaskRef);

/// Fails every record that succeeded so far but needed the write of `doc`
/// that failed, with the one line naming its objects that every failed
/// record gets: without it, Lambda's logs would only name the document.
fn fail_unrecorded(reports: &mut [RecordReport], doc: &Document, e: &CheckpointError) {
    for r in reports.iter_mut().filter(|r| r.ok) {
        let keys: Vec<&str> = (r.documents.iter())
            .filter(|(d, _)| d == doc)
            .map(|(_, key)| key.as_str())
            .collect();
        if keys.is_empty() {
            continue;
        }
        let key = keys.join(", ");
        tracing::error!(record = r.id, key, kind = "checkpoint", will_retry = e.is_retryable(), error = %e, "record failed");
        r.fail(e.to_string(), e.is_retryable(), "checkpoint");
    }
}

pub struct Shipper<O, C, L> {
    pub objects: O,
    pub checkpoints: C,
    pub sender: Sender<L>,
    pub config: Config,
    pub deadline_margin_ms: i64,
    /// Where the invocation's metrics lines go (EMF); `None` writes none.
    pub metrics: Option<Output>,
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
            metrics: None,
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
        let before = (
            self.sender.unknown_outcomes().0,
            self.sender.possible_duplicates(),
        );
        prelease::prelease(&trigger.records, &self.config, &state).await;
        let mut reports: Vec<RecordReport> =
            futures::stream::iter(trigger.records.iter().enumerate())
                .map(|(i, r)| record(&deps, &state, r, i))
                .buffered(self.config.object_concurrency)
                .collect()
                .await;
        // The completions of every object, one write per task document. A
        // record is only done once its objects' completions are written.
        for (doc, result) in state.flush().await {
            if let Err(e) = result {
                tracing::error!(checkpoint = doc.1.checkpoint_key(&self.config.checkpoint_prefix), error = %e, "could not record the invocation's progress; its leases expire by themselves");
                fail_unrecorded(&mut reports, &doc, &e);
            }
        }
        let after = (
            self.sender.unknown_outcomes().0,
            self.sender.possible_duplicates(),
        );
        let (calls, events) = (after.0 - before.0, after.1 - before.1);
        log_done(&reports, trigger.kind, calls, events);
        let figures = Figures {
            observed: self.sender.take_observed(),
            checkpoint_retries: state.checkpoint_retries().await,
            unknown_calls: calls,
        };
        if let Some(output) = self.metrics {
            let now = chrono::Utc::now().timestamp_millis();
            for line in metrics::lines(&self.config.function_name, now, &reports, &figures) {
                crate::metrics::emit(&line, output);
            }
        }
        answer(trigger.kind, reports)
    }
}

/// The invocation's summary line.
fn log_done(reports: &[RecordReport], kind: TriggerKind, unknown_calls: u64, resent: u64) {
    let missing = reports
        .iter()
        .flat_map(|r| &r.objects)
        .filter(|o| matches!(o, ObjectOutcome::Missing { .. }))
        .count();
    tracing::info!(
        records = reports.len(),
        failed = reports.iter().filter(|r| !r.ok).count(),
        missing,
        put_outcome_unknown_calls = unknown_calls,
        possible_duplicates = resent,
        kind = ?kind,
        "invocation done"
    );
}

/// For SQS a partial batch response naming the failed messages; otherwise
/// a summary, or an error when any record failed so the trigger retries.
fn answer(kind: TriggerKind, reports: Vec<RecordReport>) -> Result<Response, HandlerError> {
    let failed: Vec<&RecordReport> = reports.iter().filter(|r| !r.ok).collect();
    if kind == TriggerKind::Sqs {
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
    let mut report = RecordReport::new(&record.id);
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
            report.fail(why.to_string(), false, "unreadable_record");
            return report;
        }
    };
    for (j, obj) in objects.iter().enumerate() {
        let job = ObjectJob {
            obj,
            owner: prelease::owner(&state.inv.request_id, index, j),
        };
        match job.run(deps, state).await {
            Ok(outcome) => {
                if let Some(doc) = prelease::document_of(&obj.raw_key, &obj.bucket, deps.config) {
                    report.documents.push((doc, outcome.key().to_string()));
                }
                report.objects.push(outcome);
            }
            Err(e) => {
                let (key, kind, retryable) = (e.key(), e.kind(), e.is_retryable());
                // Another invocation at work on it is expected, not an error.
                if matches!(e, ObjectError::LeaseHeld { .. }) {
                    tracing::warn!(record = record.id, key, kind, will_retry = retryable, error = %e, "record failed");
                } else {
                    tracing::error!(record = record.id, key, kind, will_retry = retryable, error = %e, "record failed");
                }
                report.fail(e.to_string(), retryable, kind);
                return report;
            }
        }
    }
    report
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
