//! Exactly-once delivery through every trigger shape, redelivery, failures and concurrency.

use crate::rig::*;
use logdrop::core::batch::{Batch, DEFAULT_MAX_EVENT_BYTES, check_batch};
use logdrop::core::keys::TaskRef;
use logdrop::ports::{LogSink, PortError, Rejected};
use serde_json::Value;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const FILES: [(&str, &str); 3] = [
    (
        "localhost_access_log.2026-11-24.txt",
        "localhost_access_log",
    ),
    ("catalina.2026-11-24.log", "catalina"),
    ("localhost.2026-11-24.log", "localhost"),
];

/// Uploads every corpus file in `n` chunks; returns the keys in file order.
async fn upload_corpus(rig: &Rig, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for (file, _) in FILES {
        let content = corpus(file);
        for (a, b) in chunk_bounds(file, &content, n) {
            keys.push(rig.upload_chunk(file, &content, a, b).await);
        }
    }
    keys
}

/// Chunks delivered concurrently or out of order may interleave events with
/// the very same timestamp at chunk boundaries (the service orders ties by
/// arrival); everything else must match exactly.
fn tie_order(mut events: Events) -> Events {
    events.sort();
    events
}

async fn assert_corpus_exactly_once(rig: &Rig) {
    assert_corpus(rig, |e| e).await
}

type Events = Vec<(i64, String)>;

async fn assert_corpus(rig: &Rig, normalise: fn(Events) -> Events) {
    for (file, stem) in FILES {
        let got = normalise(rig.events(&rig.stream(stem)).await);
        let want = normalise(expected_events(file, &corpus(file)));
        assert_eq!(got.len(), want.len(), "{file}: event count");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{file}: event {i}");
        }
    }
}

#[tokio::test]
async fn s3_notification_ships_the_corpus_exactly_once() {
    let rig = Rig::new("s3-corpus").await;
    let keys = upload_corpus(&rig, 3).await;
    let shipper = rig.shipper();
    let response = shipper
        .handle(&rig.s3_event(&keys), &inv("r1"))
        .await
        .expect("handled")
        .to_json();
    assert_eq!(
        response["records"].as_array().map(Vec::len),
        Some(keys.len())
    );
    assert_corpus_exactly_once(&rig).await;
    // Every chunk's range is shipped, no lease is left behind.
    let cp = rig.checkpoint().await;
    for (file, _) in FILES {
        let state = &cp.files[file]["0"];
        assert_eq!(
            state.shipped.ranges(),
            &[(0, corpus(file).len() as u64)],
            "{file}"
        );
        assert!(state.leases.is_empty());
    }
}

#[tokio::test]
async fn redelivery_in_reverse_order_adds_nothing() {
    let rig = Rig::new("redeliver").await;
    let keys = upload_corpus(&rig, 4).await;
    let shipper = rig.shipper();
    shipper
        .handle(&rig.s3_event(&keys), &inv("first"))
        .await
        .expect("first");
    let mut reversed = keys.clone();
    reversed.reverse();
    for k in &reversed {
        let r = rig
            .shipper()
            .handle(&rig.s3_event(std::slice::from_ref(k)), &inv("again"))
            .await
            .expect("again")
            .to_json();
        assert_eq!(
            r["records"][0]["objects"][0]["result"], "already_shipped",
            "{k}"
        );
    }
    assert_corpus_exactly_once(&rig).await;
}

#[tokio::test]
async fn out_of_order_chunks_still_arrive_once() {
    let rig = Rig::new("reverse-first").await;
    let mut keys = upload_corpus(&rig, 5).await;
    keys.reverse();
    rig.shipper()
        .handle(&rig.s3_event(&keys), &inv("rev"))
        .await
        .expect("handled");
    assert_corpus(&rig, tie_order).await;
}

#[tokio::test]
async fn eventbridge_keys_plain_and_encoded() {
    let rig = Rig::new("eventbridge").await;
    let file = "app log.2026-11-24.log"; // a space: `%20` in the key, `%2520` encoded
    let content = b"first line\n  continued\nsecond\n".to_vec();
    let key = rig.upload_chunk(file, &content, 0, 13 + 10).await;
    assert!(key.contains("app%20log"), "{key}");
    let shipper = rig.shipper();
    let plain = shipper
        .handle(&rig.eventbridge_event(&key), &inv("eb1"))
        .await
        .expect("plain")
        .to_json();
    assert_eq!(plain["records"][0]["objects"][0]["result"], "shipped");
    let key2 = rig.upload_chunk(file, &content, 23, content.len()).await;
    let encoded = shipper
        .handle(&rig.eventbridge_event(&form_encode(&key2)), &inv("eb2"))
        .await
        .expect("encoded")
        .to_json();
    assert_eq!(encoded["records"][0]["objects"][0]["result"], "shipped");
    let got: Vec<String> = rig
        .events(&rig.stream("app log"))
        .await
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(got, ["first line\n  continued", "second"]);
}

#[tokio::test]
async fn sqs_batch_from_real_s3_notifications() {
    let rig = Rig::new("sqs").await;
    let sqs = aws_sdk_sqs::Client::new(&crate::moto::moto().sdk_config());
    let queue = sqs
        .create_queue()
        .queue_name(&rig.bucket)
        .send()
        .await
        .expect("queue");
    let url = queue.queue_url().expect("url").to_string();
    let arn = format!("arn:aws:sqs:us-east-1:123456789012:{}", rig.bucket);
    let filter = aws_sdk_s3::types::NotificationConfigurationFilter::builder()
        .key(
            aws_sdk_s3::types::S3KeyFilter::builder()
                .filter_rules(
                    aws_sdk_s3::types::FilterRule::builder()
                        .name("prefix".into())
                        .value("logs/")
                        .build(),
                )
                .filter_rules(
                    aws_sdk_s3::types::FilterRule::builder()
                        .name("suffix".into())
                        .value(".gz")
                        .build(),
                )
                .build(),
        )
        .build();
    let queue_conf = aws_sdk_s3::types::QueueConfiguration::builder()
        .queue_arn(arn)
        .events(aws_sdk_s3::types::Event::S3ObjectCreated)
        .filter(filter)
        .build()
        .expect("queue config");
    rig.s3
        .client()
        .put_bucket_notification_configuration()
        .bucket(&rig.bucket)
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .queue_configurations(queue_conf)
                .build(),
        )
        .send()
        .await
        .expect("notification config");
    let keys = upload_corpus(&rig, 2).await;
    // A checkpoint-like object outside the filter never reaches the queue.
    rig.put_raw("checkpoints/elsewhere.json", b"{}".to_vec())
        .await;
    let mut bodies = Vec::new();
    for _ in 0..20 {
        let msgs = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let batch = msgs.messages();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            bodies.push((
                m.message_id().unwrap_or_default().to_string(),
                m.body().unwrap_or_default().to_string(),
            ));
        }
    }
    assert!(
        bodies.iter().any(|(_, b)| b.contains("s3:TestEvent")),
        "moto sends a test event first"
    );
    assert_eq!(bodies.len(), keys.len() + 1);
    // A poison message in the same batch fails alone.
    bodies.push(("poison".into(), "not json".into()));
    let response = rig
        .shipper()
        .handle(&rig.sqs_event(&bodies), &inv("sqs"))
        .await
        .expect("handled")
        .to_json();
    let failures: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .expect("failures")
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    assert_eq!(failures, ["poison"]);
    // A standard queue does not promise order: ties may interleave.
    assert_corpus(&rig, tie_order).await;
}

/// Fails the listed `PutLogEvents` calls (1-based) as if their outcome were
/// unknown, without storing them; passes everything else through and records
/// every batch sent so the batch rules can be checked.
struct FailingSink<L> {
    inner: L,
    fail_on: Vec<u64>,
    calls: AtomicU64,
    sent: Mutex<Vec<Vec<(i64, String)>>>,
}

impl<L: LogSink> LogSink for FailingSink<L> {
    async fn put(&self, group: &str, stream: &str, batch: &Batch) -> Result<Rejected, PortError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_on.contains(&n) {
            return Err(PortError::Unknown("injected failure".into()));
        }
        let r = self.inner.put(group, stream, batch).await?;
        self.sent.lock().unwrap().push(
            batch
                .events()
                .map(|e| (e.timestamp, e.message.to_string()))
                .collect(),
        );
        Ok(r)
    }
    async fn create_group(
        &self,
        group: &str,
        retention_days: Option<u32>,
    ) -> Result<(), PortError> {
        self.inner.create_group(group, retention_days).await
    }
    async fn create_stream(&self, group: &str, stream: &str) -> Result<(), PortError> {
        self.inner.create_stream(group, stream).await
    }

    async fn events_between(
        &self,
        group: &str,
        stream: &str,
        from_ms: i64,
        to_ms: i64,
        ingested: (i64, i64),
    ) -> Result<Vec<(i64, String)>, PortError> {
        self.inner
            .events_between(group, stream, from_ms, to_ms, ingested)
            .await
    }
}

#[tokio::test]
async fn failure_after_some_batches_then_retry_is_exact() {
    let rig = Rig::new("inject").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(6 << 20, 42, hours_ago(3));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let failing = FailingSink {
        inner: rig.logs.clone(),
        // The 4th call's outcome is unknown (nothing stored): it is read
        // back, not found within the visibility bound, and the record fails
        // without sending it again.
        fail_on: vec![4],
        calls: AtomicU64::new(0),
        sent: Mutex::new(Vec::new()),
    };
    let shipper = logdrop::shipper::Shipper::new(
        rig.s3.clone(),
        rig.s3.clone(),
        failing,
        rig.config(&[("LOGDROP_PUT_CONCURRENCY", "1")]),
    );
    let err = shipper
        .handle(&rig.s3_event(std::slice::from_ref(&key)), &inv("try1"))
        .await
        .expect_err("the injected failure fails the record");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(err.error_type(), "Retryable");
    // Progress of the three good batches is in the checkpoint; the lease is released.
    let cp = rig.checkpoint().await;
    let state = &cp.files[file]["0"];
    assert!(!state.shipped.is_empty() && !state.shipped.covers(0, content.len() as u64));
    assert!(
        state.leases.is_empty(),
        "released on failure: {:?}",
        state.leases
    );
    assert_eq!(state.unverified.len(), 1, "the unknown call is marked");
    let sent_first = shipper.sender.sink.sent.lock().unwrap().len();
    assert_eq!(sent_first, 3);
    assert_eq!(shipper.sender.sink.calls.load(Ordering::SeqCst), 4);
    assert_eq!(shipper.sender.unknown_outcomes().0, 1, "counted");

    // Once the bound has passed (here: a bound of 0), the retry reads the
    // batch back, does not find it, and sends from there.
    let retry = rig.shipper_with(&[("LOGDROP_VISIBILITY_BOUND", "0s")]);
    retry
        .handle(&rig.s3_event(std::slice::from_ref(&key)), &inv("try2"))
        .await
        .expect("retry succeeds");
    let want = expected_events(file, &content);
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    assert_eq!(got.len(), want.len());
    assert!(got == want, "every event exactly once, in order");
    // What was really sent obeys every PutLogEvents rule, and batches are full.
    for batch in shipper.sender.sink.sent.lock().unwrap().iter() {
        let b: Vec<(i64, &str)> = batch.iter().map(|(t, m)| (*t, m.as_str())).collect();
        check_batch(&b, DEFAULT_MAX_EVENT_BYTES).expect("batch rules");
        let bytes: usize = b.iter().map(|(_, m)| m.len() + 26).sum();
        assert!(bytes > 1_048_576 * 9 / 10, "batch only {bytes} bytes");
    }
}

#[tokio::test]
async fn concurrent_invocations_on_chunks_of_one_task_both_land() {
    let rig = Rig::new("two-chunks").await;
    let file = "catalina.2026-11-24.log";
    let content = corpus(file);
    let bounds = chunk_bounds(file, &content, 2);
    let k1 = rig
        .upload_chunk(file, &content, bounds[0].0, bounds[0].1)
        .await;
    let k2 = rig
        .upload_chunk(file, &content, bounds[1].0, bounds[1].1)
        .await;
    let access = corpus("localhost_access_log.2026-11-24.txt");
    let k3 = rig
        .upload_chunk(
            "localhost_access_log.2026-11-24.txt",
            &access,
            0,
            access.len(),
        )
        .await;
    let (a, b) = (rig.shipper(), rig.shipper());
    let (ea, eb) = (rig.s3_event(&[k1, k3]), rig.s3_event(&[k2]));
    let (ia, ib) = (inv("a"), inv("b"));
    let (ra, rb) = tokio::join!(a.handle(&ea, &ia), b.handle(&eb, &ib));
    ra.expect("a");
    rb.expect("b");
    let cp = rig.checkpoint().await;
    assert_eq!(
        cp.files[file]["0"].shipped.ranges(),
        &[(0, content.len() as u64)]
    );
    assert_eq!(
        cp.files["localhost_access_log.2026-11-24.txt"]["0"]
            .shipped
            .ranges(),
        &[(0, access.len() as u64)]
    );
    assert_eq!(
        tie_order(rig.events(&rig.stream("catalina")).await),
        tie_order(expected_events(file, &content))
    );
}

#[tokio::test]
async fn same_object_delivered_twice_at_once_lands_once() {
    let rig = Rig::new("twice").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(3 << 20, 7, hours_ago(2));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let (a, b) = (rig.shipper(), rig.shipper());
    let (ia, ib) = (inv("dup-a"), inv("dup-b"));
    let (ra, rb) = tokio::join!(a.handle(&event, &ia), b.handle(&event, &ib));
    // One ships; the other finds it shipped or leased (and fails, to be retried).
    let failed: Vec<_> = [&ra, &rb].into_iter().filter(|r| r.is_err()).collect();
    assert!(failed.len() <= 1, "{ra:?} {rb:?}");
    for f in &failed {
        let e = f.as_ref().unwrap_err();
        assert!(e.to_string().contains("holds a lease"), "{e}");
        assert_eq!(e.error_type(), "Retryable");
    }
    // The trigger's retry of the failed delivery finds the range shipped.
    let retry = rig
        .shipper()
        .handle(&event, &inv("dup-retry"))
        .await
        .expect("retry")
        .to_json();
    assert_eq!(
        retry["records"][0]["objects"][0]["result"],
        "already_shipped"
    );
    assert!(
        rig.events(&rig.stream("localhost_access_log")).await == expected_events(file, &content)
    );
}

#[tokio::test]
async fn deadline_stops_early_and_the_retry_resumes() {
    let rig = Rig::new("deadline").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(3 << 20, 9, hours_ago(2));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    // Already past the deadline: nothing new may start.
    let late = logdrop::shipper::Invocation {
        request_id: "late".into(),
        deadline_ms: chrono::Utc::now().timestamp_millis() - 1,
    };
    let err = rig
        .shipper()
        .handle(&event, &late)
        .await
        .expect_err("deadline");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert_eq!(err.error_type(), "Retryable");
    assert!(
        rig.checkpoint().await.files[file]["0"].leases.is_empty(),
        "lease released at the deadline"
    );
    rig.shipper()
        .handle(&event, &inv("on-time"))
        .await
        .expect("retry");
    assert!(
        rig.events(&rig.stream("localhost_access_log")).await == expected_events(file, &content)
    );
}

#[tokio::test]
async fn checkpoint_is_per_task() {
    let rig = Rig::new("per-task").await;
    let keys = upload_corpus(&rig, 1).await;
    rig.shipper()
        .handle(&rig.s3_event(&keys), &inv("pt"))
        .await
        .expect("handled");
    let cp = rig.checkpoint().await;
    assert_eq!(
        (cp.version, cp.cluster.as_str(), cp.task_id.as_str()),
        (2, rig.cluster.as_str(), TASK)
    );
    let other = TaskRef {
        cluster: rig.cluster.clone(),
        task_id: "other".into(),
    };
    let missing = rig
        .s3
        .client()
        .get_object()
        .bucket(&rig.bucket)
        .key(other.checkpoint_key("checkpoints"))
        .send()
        .await;
    assert!(missing.is_err());
    let _: Value = serde_json::from_slice(&cp.encode()).expect("json");
}
