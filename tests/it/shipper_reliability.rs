//! Failures between a successful put and its record, partial acceptance,
//! ambiguous keys and the deadline mid-object: each ends exactly once.

use crate::rig::*;
use logdrop::aws::logs::CloudWatchLogs;
use logdrop::core::batch::Batch;
use logdrop::ports::{LogSink, PortError, Rejected};
use logdrop::shipper::Shipper;
use std::sync::atomic::{AtomicU64, Ordering};

#[tokio::test]
async fn a_checkpoint_write_failing_after_a_put_does_not_send_it_again() {
    let rig = Rig::new("cp-fails").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(3 << 20, 11, hours_ago(2));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    // Save 1 takes the lease. The object is a few batches, fewer than a
    // progress write needs, so the next write is the completion: its first two
    // tries fail (saves 2 and 3) after every put succeeded, and the third
    // (save 4) records everything. No batch is sent again for it.
    let store = FailingSaves::new(rig.s3.clone(), 2..=3);
    let shipper = Shipper::new(rig.s3.clone(), store, rig.logs.clone(), rig.config(&[]));
    shipper
        .handle(&event, &inv("cp1"))
        .await
        .expect("the completion write is retried");
    assert_eq!(shipper.checkpoints.count(), 4);
    let state = &rig.checkpoint().await.files[file]["0"];
    assert_eq!(state.shipped.ranges(), &[(0, content.len() as u64)]);
    assert!(state.leases.is_empty(), "{state:?}");
    // A redelivery finds it shipped.
    let again = rig
        .shipper()
        .handle(&event, &inv("cp2"))
        .await
        .expect("redelivery")
        .to_json();
    assert_eq!(
        again["records"][0]["objects"][0]["result"],
        "already_shipped"
    );
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    let want = expected_events(file, &content);
    assert_eq!(got.len(), want.len(), "no batch sent twice");
    assert!(got == want);
}

/// A record whose events are all put, but whose checkpoint completion write
/// (the invocation's last write of the task's document) never succeeds, fails
/// and is retried; in Lambda's logs one line names its object (a v1 chunk, a
/// segment), the error kind and `will_retry`: through SQS the response names
/// only the message.
#[tokio::test]
async fn a_record_failing_only_at_the_completion_write_is_logged_by_its_key() {
    use logdrop::core::segment::{self, PartBody, SegmentKey};
    let rig = Rig::new("cp-final").await;
    let (v1_file, seg_file) = ("catalina.2026-11-24.log", "localhost.2026-11-24.log");
    let (v1_content, seg_content) = (corpus(v1_file), corpus(seg_file));
    let chunk = rig
        .upload_chunk(v1_file, &v1_content, 0, v1_content.len())
        .await;
    let seg = SegmentKey {
        prefix: "logs".into(),
        cluster: rig.cluster.clone(),
        task_id: TASK.into(),
        seq: 1,
    }
    .to_string();
    let part = PartBody {
        file: seg_file.into(),
        generation: 0,
        start: 0,
        end: seg_content.len() as u64,
        gzip: logdrop::generate::gzip(&seg_content),
    };
    rig.put_raw(&seg, segment::encode(&[part])).await;
    let bodies = vec![
        (
            "m-chunk".to_string(),
            rig.s3_event(std::slice::from_ref(&chunk)).to_string(),
        ),
        (
            "m-seg".to_string(),
            rig.s3_event(std::slice::from_ref(&seg)).to_string(),
        ),
    ];
    // Save 1 is the chunk's shared lease, save 2 the segment's; every later
    // save (the completion write and all its retries) fails.
    let store = FailingSaves::new(rig.s3.clone(), 3..=u64::MAX);
    let shipper = Shipper::new(rig.s3.clone(), store, rig.logs.clone(), rig.config(&[]));
    let (response, lines) = logged(shipper.handle(&rig.sqs_event(&bodies), &inv("final"))).await;
    let response = response.expect("an SQS answer").to_json();
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "m-chunk"}, {"itemIdentifier": "m-seg"}])
    );
    // The events were put before the write failed.
    assert!(rig.events(&rig.stream("catalina")).await == expected_events(v1_file, &v1_content));
    assert!(rig.events(&rig.stream("localhost")).await == expected_events(seg_file, &seg_content));
    let loud = loud(&lines);
    for (id, key) in [("m-chunk", &chunk), ("m-seg", &seg)] {
        let about: Vec<&&serde_json::Value> = loud
            .iter()
            .filter(|l| {
                l["record"] == id || l["key"].as_str().is_some_and(|k| k.contains(key.as_str()))
            })
            .collect();
        assert_eq!(about.len(), 1, "{id}: {loud:#?}");
        assert_eq!(about[0]["record"], id);
        assert_eq!(about[0]["key"], key.as_str(), "{id}");
        assert_eq!(about[0]["kind"], "checkpoint", "{id}");
        assert_eq!(about[0]["will_retry"], true, "{id}");
    }
}

/// CloudWatch Logs that refuses the first `too_old` events of call `on` as
/// too old (storing the rest, as the service does) and fails every call
/// after it for good.
struct RejectingSink {
    inner: CloudWatchLogs,
    on: u64,
    too_old: usize,
    calls: AtomicU64,
}

impl LogSink for RejectingSink {
    async fn put(&self, group: &str, stream: &str, batch: &Batch) -> Result<Rejected, PortError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n > self.on {
            return Err(PortError::Permanent("injected refusal".into()));
        }
        if n < self.on {
            return self.inner.put(group, stream, batch).await;
        }
        let kept = logdrop::core::batch::batches_of(
            batch
                .events()
                .skip(self.too_old)
                .map(|e| (e.timestamp, e.message, e.source)),
        );
        for b in &kept {
            self.inner.put(group, stream, b).await?;
        }
        Ok(Rejected {
            too_old_end: Some(self.too_old),
            ..Rejected::default()
        })
    }

    async fn create_group(&self, group: &str, days: Option<u32>) -> Result<(), PortError> {
        self.inner.create_group(group, days).await
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
async fn partial_acceptance_then_a_failed_restamp_records_what_was_stored() {
    let rig = Rig::new("partial").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(3 << 20, 12, hours_ago(2));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let sink = RejectingSink {
        inner: rig.logs.clone(),
        on: 2,
        too_old: 5,
        calls: AtomicU64::new(0),
    };
    let shipper = Shipper::new(rig.s3.clone(), rig.s3.clone(), sink, rig.config(&[]));
    let err = shipper
        .handle(&event, &inv("p1"))
        .await
        .expect_err("the re-stamp fails");
    assert!(err.to_string().contains("injected refusal"), "{err}");
    rig.shipper()
        .handle(&event, &inv("p2"))
        .await
        .expect("retry");
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    let want = expected_events(file, &content);
    // The 5 refused events come with the retry; the accepted ones only once.
    assert_eq!(got.len(), want.len(), "nothing stored twice");
    let (mut g, mut w) = (got, want);
    g.sort();
    w.sort();
    assert!(g == w);
}

/// CloudWatch Logs that, on call `on`, refuses the first `too_old` events
/// as too old, stores the rest, and loses its answer; every other call
/// passes.
struct LostPartialSink {
    inner: CloudWatchLogs,
    on: u64,
    too_old: usize,
    calls: AtomicU64,
}

impl LogSink for LostPartialSink {
    async fn put(&self, group: &str, stream: &str, batch: &Batch) -> Result<Rejected, PortError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 != self.on {
            return self.inner.put(group, stream, batch).await;
        }
        let kept = logdrop::core::batch::batches_of(
            (batch.events().skip(self.too_old)).map(|e| (e.timestamp, e.message, e.source)),
        );
        for b in &kept {
            self.inner.put(group, stream, b).await?;
        }
        Err(PortError::Unknown(
            "connection reset after the answer was sent".into(),
        ))
    }

    async fn create_group(&self, group: &str, days: Option<u32>) -> Result<(), PortError> {
        self.inner.create_group(group, days).await
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
        (self.inner)
            .events_between(group, stream, from_ms, to_ms, ingested)
            .await
    }
}

/// A partial acceptance whose answer is lost: the read-back finds the
/// accepted run, and only the refused events are sent, re-stamped, as
/// after an answered partial acceptance. Nothing is stored twice.
#[tokio::test]
async fn partial_acceptance_with_the_answer_lost_sends_only_the_refused_events() {
    let rig = Rig::new("partial-lost").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(3 << 20, 13, hours_ago(2));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let sink = LostPartialSink {
        inner: rig.logs.clone(),
        on: 2,
        too_old: 5,
        calls: AtomicU64::new(0),
    };
    // moto shows a stored event at once.
    let config = rig.config(&[("LOGDROP_VISIBILITY_BOUND", "0s")]);
    let shipper = Shipper::new(rig.s3.clone(), rig.s3.clone(), sink, config);
    let r = shipper
        .handle(&rig.s3_event(std::slice::from_ref(&key)), &inv("pl"))
        .await
        .expect("the refused events are re-stamped")
        .to_json();
    let report = &r["records"][0]["objects"][0]["report"];
    assert_eq!(report["outcome_unknown_calls"], 1, "{report}");
    assert_eq!(report["restamped"], 5, "{report}");
    assert_eq!(report["possible_duplicates"], 5, "{report}");
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    let want = expected_events(file, &content);
    assert_eq!(got.len(), want.len(), "nothing stored twice");
    let text = |v: Vec<(i64, String)>| {
        let mut m: Vec<String> = v.into_iter().map(|e| e.1).collect();
        m.sort();
        m
    };
    assert!(text(got) == text(want), "every message once");
}

#[tokio::test]
async fn eventbridge_key_of_a_file_literally_named_with_an_escape_is_found() {
    let rig = Rig::new("eb-literal").await;
    // The file's name holds `%20` itself: its key holds `%2520`, which also
    // decodes to the valid key of a file `app x.log` that does not exist.
    let file = "app%20x.log";
    let content = b"first\n  continued\nsecond\n".to_vec();
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    assert!(key.contains("app%2520x.log"), "{key}");
    let shipper = rig.shipper();
    for (id, k) in [("plain", key.clone()), ("encoded", form_encode(&key))] {
        let r = shipper
            .handle(&rig.eventbridge_event(&k), &inv(id))
            .await
            .expect(id)
            .to_json();
        let result = &r["records"][0]["objects"][0]["result"];
        assert!(
            result == "shipped" || result == "already_shipped",
            "{id}: {r}"
        );
    }
    let got: Vec<String> = rig
        .events(&rig.stream("app%20x"))
        .await
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(got, ["first\n  continued", "second"]);
}

/// Passes calls through, but holds call `hold_on` until the invocation is
/// inside its deadline margin, so the deadline arrives mid-object.
struct SlowSink {
    inner: CloudWatchLogs,
    hold_on: u64,
    until_ms: i64,
    calls: AtomicU64,
}

impl LogSink for SlowSink {
    async fn put(&self, group: &str, stream: &str, batch: &Batch) -> Result<Rejected, PortError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let r = self.inner.put(group, stream, batch).await;
        if n == self.hold_on {
            // Waiting on the clock itself, the condition under test.
            while chrono::Utc::now().timestamp_millis() <= self.until_ms {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        r
    }

    async fn create_group(&self, group: &str, days: Option<u32>) -> Result<(), PortError> {
        self.inner.create_group(group, days).await
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
async fn the_deadline_arriving_mid_object_saves_progress_and_the_retry_completes() {
    let rig = Rig::new("mid-deadline").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(4 << 20, 13, hours_ago(2));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let deadline_ms = chrono::Utc::now().timestamp_millis() + 4_000;
    // A 4 s invocation keeps its last fifth (800 ms) for the checkpoint.
    let sink = SlowSink {
        inner: rig.logs.clone(),
        hold_on: 2,
        until_ms: deadline_ms - 800,
        calls: AtomicU64::new(0),
    };
    let shipper = Shipper::new(rig.s3.clone(), rig.s3.clone(), sink, rig.config(&[]));
    let short = logdrop::shipper::Invocation {
        request_id: "short".into(),
        deadline_ms,
    };
    let err = shipper.handle(&event, &short).await.expect_err("deadline");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert_eq!(err.error_type(), "Retryable");
    let state = &rig.checkpoint().await.files[file]["0"];
    assert!(state.leases.is_empty(), "released: {state:?}");
    assert!(!state.shipped.covers(0, content.len() as u64));
    rig.shipper()
        .handle(&event, &inv("after"))
        .await
        .expect("retry");
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    assert!(
        got == expected_events(file, &content),
        "exactly once, in order"
    );
}
