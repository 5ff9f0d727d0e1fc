//! `shipper poll --queue-url`: the real binary consuming moto's SQS, with a
//! redrive policy as template.yaml sets one up.

use crate::moto::moto;
use crate::rig::*;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use std::process::Command;

const MAX_RECEIVES: u64 = 3;

struct Queues {
    sqs: aws_sdk_sqs::Client,
    url: String,
    dlq_url: String,
}

async fn queues(name: &str) -> Queues {
    let sqs = aws_sdk_sqs::Client::new(&moto().sdk_config());
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create dlq")
        .queue_url
        .expect("dlq url");
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq attributes")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("dlq arn");
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES});
    let url = sqs
        .create_queue()
        .queue_name(name)
        // Short, so a failed message comes back within the poll's wait.
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    Queues { sqs, url, dlq_url }
}

impl Queues {
    async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    /// Every message a queue still holds, visible or not.
    async fn count(&self, url: &str) -> u64 {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("attributes")
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| {
            attrs
                .get(a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}

/// Runs `shipper poll --until-empty` until `done` holds (each run ends at an
/// empty receive); returns the summaries of the runs. The bound only guards
/// against a hang.
async fn poll_until(rig: &Rig, q: &Queues, done: impl AsyncFn() -> bool) -> Vec<Value> {
    let mut summaries = Vec::new();
    for _ in 0..50 {
        let out = Command::new(env!("CARGO_BIN_EXE_shipper"))
            .args([
                "poll",
                "--queue-url",
                &q.url,
                "--until-empty",
                "--wait-seconds",
                "5",
            ])
            .env_clear()
            .envs(moto().env())
            .env("LOGDROP_LOG_GROUP", &rig.group)
            .output()
            .expect("run shipper poll");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "summary ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        // Exit 1 exactly when a message failed.
        assert_eq!(
            out.status.code(),
            Some(if summary["failed"] == 0 { 0 } else { 1 }),
            "{summary}"
        );
        summaries.push(summary);
        if done().await {
            return summaries;
        }
    }
    panic!("the queue did not settle: {summaries:?}");
}

fn total(summaries: &[Value], field: &str) -> u64 {
    summaries
        .iter()
        .map(|s| s[field].as_u64().unwrap_or(0))
        .sum()
}

fn s3_body(rig: &Rig, key: &str) -> String {
    json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": rig.bucket}, "object": {"key": form_encode(key)}}}]})
    .to_string()
}

#[tokio::test]
async fn poison_goes_to_the_dead_letter_queue_good_ones_ship_once() {
    let rig = Rig::new("poll").await;
    let q = queues(&format!("poll-{}", std::process::id())).await;
    let file = "catalina.2026-11-24.log";
    let content = corpus(file);
    let mut keys = Vec::new();
    for (a, b) in chunk_bounds(file, &content, 4) {
        keys.push(rig.upload_chunk(file, &content, a, b).await);
    }
    // Three chunks as S3 notifications, the last as EventBridge puts it on the
    // queue (the template's EventBridge trigger), and a corrupt chunk.
    for key in &keys[..3] {
        q.send(&s3_body(&rig, key)).await;
    }
    q.send(&rig.eventbridge_event(&keys[3]).to_string()).await;
    let poison_key = rig.key(file, content.len() as u64, content.len() as u64 + 100);
    rig.put_raw(&poison_key.to_string(), b"not gzip at all".to_vec())
        .await;
    let poison = s3_body(&rig, &poison_key.to_string());
    q.send(&poison).await;

    let summaries = poll_until(&rig, &q, async || q.count(&q.dlq_url).await == 1).await;
    assert_eq!(total(&summaries, "deleted"), 4, "{summaries:?}");
    assert_eq!(total(&summaries, "failed"), MAX_RECEIVES, "{summaries:?}");
    assert_eq!(q.count(&q.url).await, 0, "the queue is empty");
    let dlq = q
        .sqs
        .receive_message()
        .queue_url(&q.dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive dlq");
    let bodies: Vec<&str> = dlq.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec![poison.as_str()]);
    let want = expected_events(file, &content);
    assert_eq!(rig.events(&rig.stream("catalina")).await, want);

    // Delivered again (a redrive, an SQS duplicate): deleted, nothing added.
    for key in &keys {
        q.send(&s3_body(&rig, key)).await;
    }
    let again = poll_until(&rig, &q, async || q.count(&q.url).await == 0).await;
    assert_eq!(total(&again, "deleted"), keys.len() as u64, "{again:?}");
    assert_eq!(total(&again, "failed"), 0);
    assert_eq!(rig.events(&rig.stream("catalina")).await, want);
}

#[test]
fn poll_needs_a_queue_url() {
    for args in [
        &["poll"][..],
        &["poll", "--queue-url"],
        &["poll", "--queue-url", "u", "--wait-seconds", "21"],
        &["poll", "--queue-url", "u", "--bogus"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shipper"))
            .args(args)
            .env_clear()
            .env("LOGDROP_LOG_GROUP", "g")
            .output()
            .expect("run shipper");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    }
}
