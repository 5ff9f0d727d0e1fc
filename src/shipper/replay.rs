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
    /// A batch's records, one per key in order.
    fn add(&mut self, batch: &[String], summary: Summary) {
        for (key, r) in batch.iter().zip(summary.records) {
            for o in &r.objects {
                if let ObjectOutcome::Shipped { report: s, .. } = o {
                    self.sent += s.sent;
                }
            }
            self.outcomes.extend(r.objects);
            if let Some(error) = r.error.filter(|_| !r.ok) {
                self.failed.push(Failed {
                    key: key.clone(),
                    error,
                });
            }
        }
    }

    fn fail_all(&mut self, batch: &[String], error: &str) {
        for key in batch {
            tracing::error!(key, error, "replay failed");
            self.failed.push(Failed {
                key: key.clone(),
                error: error.to_string(),
            });
        }
    }

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
            Ok(Response::Sqs(_)) => {
                report.fail_all(batch, "unexpected SQS response");
                continue;
            }
            Err(e) => {
                report.fail_all(batch, &e.to_string());
                continue;
            }
        };
        report.add(batch, summary);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::decode_notification_key;
    use crate::shipper::trigger::{self, TriggerKind};

    #[test]
    fn the_event_names_each_stored_key_exactly() {
        // Encoded components (`%20`, a literal `%` as `%25`) must reach the
        // handler as the stored key, not decoded once more.
        let keys = [
            "logs/my%20cluster/t1/segment/000000000000001.gz".to_string(),
            "logs/c/t1/a%2520b.log/0/000000000000000-000000000000010.gz".to_string(),
        ];
        let parsed = trigger::parse(&event("b", &keys)).unwrap();
        assert_eq!(parsed.kind, TriggerKind::S3);
        let got: Vec<String> = (parsed.records.iter())
            .flat_map(|r| r.objects.as_ref().unwrap())
            .map(|o| {
                assert_eq!(o.bucket, "b");
                decode_notification_key(&o.raw_key)
            })
            .collect();
        assert_eq!(got, keys);
    }
}
