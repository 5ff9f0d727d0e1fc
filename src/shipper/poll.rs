//! `shipper poll --queue-url URL`: the shipper as an SQS consumer outside
//! Lambda (a service, the demo, or draining the dead-letter queue after a
//! fix). Each receive is handed to the same `Shipper::handle` as the Lambda
//! event source mapping would hand it, and only the messages that succeeded
//! are deleted: the others come back after the queue's visibility timeout
//! and, after its `maxReceiveCount`, move to its dead-letter queue.

use crate::ports::{CheckpointStore, LogSink, ObjectStore};
use crate::shipper::{Invocation, Response, Shipper};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;

/// A batch's deadline is the queue's visibility timeout, but at least this:
/// with a shorter visibility a message may come back while it is shipped,
/// which the checkpoint's lease makes harmless.
const MIN_DEADLINE: Duration = Duration::from_secs(30);
/// Backoff between failed receives in service mode.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct PollOptions {
    pub queue_url: String,
    /// Long-poll wait of one receive (SQS allows 0 to 20 s).
    pub wait_seconds: i32,
    /// Stop after the first receive that returns nothing (draining), instead
    /// of running until the shutdown future completes.
    pub until_empty: bool,
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub receipt_handle: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{queue}: {operation} failed: {source}")]
    Call {
        queue: String,
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{queue}: the queue has no {attribute} attribute")]
    Attribute {
        queue: String,
        attribute: &'static str,
    },
}

/// The queue port: what polling needs of SQS.
pub trait Queue: Send + Sync {
    /// The queue's ARN (`eventSourceARN` of the records) and visibility timeout.
    fn describe(&self) -> impl Future<Output = Result<(String, Duration), QueueError>> + Send;
    fn receive(
        &self,
        wait_seconds: i32,
    ) -> impl Future<Output = Result<Vec<Message>, QueueError>> + Send;
    /// Deletes these messages; returns the ids whose delete failed.
    fn delete(
        &self,
        messages: &[&Message],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;
}

/// What a poll run did, printed as JSON when it ends.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PollSummary {
    pub batches: u64,
    pub messages: u64,
    pub deleted: u64,
    /// Messages the handler failed (left for the queue to redeliver).
    pub failed: u64,
    /// Receives or deletes that failed.
    pub queue_errors: u64,
}

/// Receives and ships until the queue is empty (`until_empty`) or `shutdown`
/// completes. In draining mode a failing receive ends the run with the error;
/// as a service it is logged and retried with backoff.
pub async fn run<O, C, L, Q>(
    shipper: &Shipper<O, C, L>,
    queue: &Q,
    options: &PollOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<PollSummary, QueueError>
where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
    Q: Queue,
{
    let (arn, visibility) = queue.describe().await?;
    let deadline = visibility.max(MIN_DEADLINE);
    let mut summary = PollSummary::default();
    let mut backoff = Duration::from_secs(1);
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = queue.receive(options.wait_seconds) => r,
        };
        let messages = match received {
            Ok(m) => {
                backoff = Duration::from_secs(1);
                m
            }
            Err(e) if options.until_empty => return Err(e),
            Err(e) => {
                summary.queue_errors += 1;
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "receive failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if messages.is_empty() {
            if options.until_empty {
                break;
            }
            continue;
        }
        // The batch is finished even when shutdown comes meanwhile: what it
        // shipped must be deleted, or it comes (harmlessly) again.
        let (inv, span) = invocation(&messages[0], deadline);
        ship_batch(shipper, queue, &arn, &inv, &messages, &mut summary)
            .instrument(span)
            .await;
    }
    Ok(summary)
}

/// A receive's invocation, and the same span the Lambda runtime opens, so
/// each line names its batch. The request id is unique per receive: a
/// redelivered message keeps its id, and two pollers must never share a
/// lease owner.
fn invocation(first: &Message, deadline: Duration) -> (Invocation, tracing::Span) {
    let request_id = format!("poll-{}-{:016x}", first.id, fastrand::u64(..));
    let span = tracing::info_span!("poll", requestId = request_id.as_str());
    let inv = Invocation {
        request_id,
        deadline_ms: chrono::Utc::now().timestamp_millis() + deadline.as_millis() as i64,
    };
    (inv, span)
}

async fn ship_batch<O, C, L, Q>(
    shipper: &Shipper<O, C, L>,
    queue: &Q,
    arn: &str,
    inv: &Invocation,
    messages: &[Message],
    summary: &mut PollSummary,
) where
    O: ObjectStore,
    C: CheckpointStore,
    L: LogSink,
    Q: Queue,
{
    summary.batches += 1;
    summary.messages += messages.len() as u64;
    let failed: HashSet<String> = match shipper.handle(&sqs_event(arn, messages), inv).await {
        Ok(response) => failed_ids(&response),
        // An SQS-shaped event only fails whole if it is not one, which would
        // be a bug here: keep every message, so nothing is lost.
        Err(e) => {
            tracing::error!(error = %e, "the batch failed as a whole; no message is deleted");
            messages.iter().map(|m| m.id.clone()).collect()
        }
    };
    for m in messages.iter().filter(|m| failed.contains(&m.id)) {
        tracing::warn!(
            message_id = m.id,
            receive_count = attribute(m, "ApproximateReceiveCount"),
            "message failed; the queue delivers it again (or moves it to its dead-letter queue)"
        );
    }
    summary.failed += failed.len() as u64;
    let done: Vec<&Message> = messages
        .iter()
        .filter(|m| !failed.contains(&m.id))
        .collect();
    if done.is_empty() {
        return;
    }
    match queue.delete(&done).await {
        Ok(not_deleted) => {
            for id in &not_deleted {
                tracing::warn!(
                    message_id = id,
                    "shipped but not deleted; its redelivery will find it shipped"
                );
            }
            summary.queue_errors += not_deleted.len() as u64;
            summary.deleted += (done.len() - not_deleted.len()) as u64;
        }
        Err(e) => {
            summary.queue_errors += 1;
            tracing::error!(error = %e, "delete failed; the redelivery will find the messages shipped");
        }
    }
}

fn attribute<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The event the Lambda SQS event source mapping would deliver for these messages.
pub fn sqs_event(arn: &str, messages: &[Message]) -> Value {
    let region = arn.split(':').nth(3).unwrap_or_default();
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({
                "messageId": m.id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The ids of a partial batch response's failures.
fn failed_ids(response: &Response) -> HashSet<String> {
    match response {
        Response::Sqs(r) => r
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect(),
        // Not an SQS answer: nothing tells which message failed, so keep them all.
        Response::Summary(s) => s.records.iter().map(|r| r.id.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;
    use crate::memory::{MemorySink, MemoryStore};
    use crate::shipper::Config;
    use std::sync::Mutex;

    /// Hands out its batches, then nothing; records what was deleted.
    #[derive(Default)]
    struct MemoryQueue {
        batches: Mutex<Vec<Vec<Message>>>,
        deleted: Mutex<Vec<String>>,
    }

    impl Queue for MemoryQueue {
        async fn describe(&self) -> Result<(String, Duration), QueueError> {
            Ok(("arn:aws:sqs:us-east-1:1:q".into(), Duration::from_secs(60)))
        }
        async fn receive(&self, _wait: i32) -> Result<Vec<Message>, QueueError> {
            Ok(self.batches.lock().unwrap().pop().unwrap_or_default())
        }
        async fn delete(&self, messages: &[&Message]) -> Result<Vec<String>, QueueError> {
            let mut deleted = self.deleted.lock().unwrap();
            deleted.extend(messages.iter().map(|m| m.id.clone()));
            Ok(Vec::new())
        }
    }

    fn message(id: &str, body: String) -> Message {
        Message {
            id: id.into(),
            receipt_handle: format!("r-{id}"),
            body,
            attributes: Vec::new(),
        }
    }

    #[tokio::test]
    async fn deletes_only_what_succeeded() {
        let config = Config::from_env(&Env::from_pairs([("LOGDROP_LOG_GROUP", "g")])).unwrap();
        let shipper = Shipper::new(
            MemoryStore::default(),
            MemoryStore::default(),
            MemorySink::default(),
            config,
        );
        let key = "logs/c/t/catalina.2026-11-24.log/0/000000000000000-000000000000000.gz";
        shipper.objects.insert("b", key, crate::generate::gzip(b""));
        let good = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": key}}}]});
        let queue = MemoryQueue::default();
        queue.batches.lock().unwrap().push(vec![
            message("good", good.to_string()),
            message("poison", "not json".into()),
        ]);
        let options = PollOptions {
            queue_url: "q".into(),
            wait_seconds: 0,
            until_empty: true,
        };
        let summary = run(&shipper, &queue, &options, std::future::pending())
            .await
            .unwrap();
        assert_eq!(
            summary,
            PollSummary {
                batches: 1,
                messages: 2,
                deleted: 1,
                failed: 1,
                queue_errors: 0
            }
        );
        assert_eq!(*queue.deleted.lock().unwrap(), vec!["good".to_string()]);
    }

    #[tokio::test]
    async fn shutdown_stops_a_service() {
        let config = Config::from_env(&Env::from_pairs([("LOGDROP_LOG_GROUP", "g")])).unwrap();
        let shipper = Shipper::new(
            MemoryStore::default(),
            MemoryStore::default(),
            MemorySink::default(),
            config,
        );
        let options = PollOptions {
            queue_url: "q".into(),
            wait_seconds: 0,
            until_empty: false,
        };
        // An empty queue as a service polls on until shutdown completes.
        let summary = run(&shipper, &MemoryQueue::default(), &options, async {})
            .await
            .unwrap();
        assert_eq!(summary, PollSummary::default());
    }

    #[test]
    fn event_has_the_lambda_shape() {
        let m = Message {
            id: "m1".into(),
            receipt_handle: "r1".into(),
            body: "{}".into(),
            attributes: vec![("ApproximateReceiveCount".into(), "2".into())],
        };
        let event = sqs_event("arn:aws:sqs:eu-west-1:123456789012:q", &[m]);
        let parsed: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_value(event.clone()).unwrap();
        assert_eq!(parsed.records[0].message_id.as_deref(), Some("m1"));
        assert_eq!(parsed.records[0].aws_region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            event["Records"][0]["attributes"]["ApproximateReceiveCount"],
            "2"
        );
        let mut failure = aws_lambda_events::sqs::BatchItemFailure::default();
        failure.item_identifier = "m2".into();
        let mut response = aws_lambda_events::sqs::SqsBatchResponse::default();
        response.batch_item_failures = vec![failure];
        assert_eq!(
            failed_ids(&Response::Sqs(response)),
            HashSet::from(["m2".to_string()])
        );
        let none = Response::Sqs(aws_lambda_events::sqs::SqsBatchResponse::default());
        assert!(failed_ids(&none).is_empty());
    }
}
