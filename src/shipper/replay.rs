//! `shipper replay`: the objects an audit found unshipped, delivered again
//! through the handler the Lambda runs, as S3 notifications would deliver
//! them. Exact by design: the checkpoint makes a re-delivery skip every
//! byte already shipped, so replaying twice, or an object that shipped
//! meanwhile, puts nothing twice.

use crate::ports::{CheckpointStore, LogSink, ObjectStore};
use crate::shipper::handler::{HandlerError, Response, Summary};
use crate::shipper::outcome::ObjectOutcome;
use crate::shipper::{Invocation, Shipper};
use serde::Serialize;
use serde_json::{Value, json};

/// Objects per invocation: an SQS batch's default size. Records of one
/// invocation share its checkpoint writes and keep their order per task.
const BATCH: usize = 10;

/// What became of each replayed object.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    /// Events put into CloudWatch Logs.
    pub sent: u64,
    pub outcomes: Vec<ObjectOutcome>,
    /// Objects whose delivery failed, with the handler's error.
    pub failed: Vec<Failed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub key: String,
    pub error: String,
}

impl ReplayReport {
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// One line per object, then the totals.
    pub fn lines(&self) -> String {
        let mut out = String::new();
        for o in &self.outcomes {
            let line = match o {
                ObjectOutcome::Shipped { key, report } => {
                    format!("shipped          {key}: {} events sent", report.sent)
                }
                ObjectOutcome::AlreadyShipped { key } => format!("already shipped  {key}"),
                ObjectOutcome::Missing { key } => format!("missing          {key}"),
                ObjectOutcome::Skipped { key, reason } => {
                    format!("skipped          {key}: {reason}")
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        for f in &self.failed {
            out.push_str(&format!("failed           {}: {}\n", f.key, f.error));
        }
        out.push_str(&format!(
            "replay: {} objects, {} events sent, {} failed\n",
            self.outcomes.len() + self.failed.len(),
            self.sent,
            self.failed.len()
        ));
        out
    }
}

/// The S3 notification of `keys` in `bucket`, keys encoded as S3 encodes
/// them (the handler decodes once; a canonical key holds no space or `+`).
pub fn event(bucket: &str, keys: &[String]) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                   "s3": {"bucket": {"name": bucket}, "object": {"key": k.replace('%', "%25")}}})
        })
        .collect();
    json!({ "Records": records })
}

/// Delivers `keys` (in the order given: upload order per task) in batches,
/// each an invocation named `<request_id>-<n>` with `budget_ms` to run.
pub async fn replay<O, C, L>(
    shipper: &Shipper<O, C, L>,
    bucket: &str,
    keys: &[String],
    request_id: &str,
    budget_ms: i64,
) -> ReplayReport
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
{
    let mut report = ReplayReport::default();
    for (n, batch) in keys.chunks(BATCH).enumerate() {
        let inv = Invocation {
            request_id: format!("{request_id}-{n}"),
            deadline_ms: chrono::Utc::now().timestamp_millis() + budget_ms,
        };
        let summary = match shipper.handle(&event(bucket, batch), &inv).await {
            Ok(Response::Summary(s)) | Err(HandlerError::Records { response: s, .. }) => s,
            // An S3 notification is answered with a summary; anything else
            // fails the batch, each key named.
            Ok(Response::Sqs(_)) => fail_all(batch, "unexpected SQS response"),
            Err(e) => fail_all(batch, &e.to_string()),
        };
        for (key, r) in batch.iter().zip(summary.records) {
            for o in &r.objects {
                if let ObjectOutcome::Shipped { report: s, .. } = o {
                    report.sent += s.sent;
                }
            }
            report.outcomes.extend(r.objects);
            if let Some(error) = r.error.filter(|_| !r.ok) {
                report.failed.push(Failed {
                    key: key.clone(),
                    error,
                });
            }
        }
    }
    report
}

fn fail_all(batch: &[String], error: &str) -> Summary {
    let records = batch
        .iter()
        .map(|_| crate::shipper::handler::RecordReport {
            id: String::new(),
            ok: false,
            error: Some(error.to_string()),
            retryable: false,
            objects: Vec::new(),
            documents: Vec::new(),
        })
        .collect();
    Summary { records }
}
