//! Exactly once where CloudWatch Logs' answer is lost or the shipper dies
//! after a put (issue 15): a call of unknown outcome, a crash between a put
//! and its checkpoint write and a checkpoint store down after the lease are
//! each read back from the stream before anything is sent again.

use crate::faults::{Fault, FaultProxy, Hide, Rule};
use crate::moto::moto;
use crate::rig::*;
use logdrop::aws::{logs::CloudWatchLogs, s3::S3};
use logdrop::shipper::Shipper;
use std::collections::HashMap;

const ACCESS: &str = "localhost_access_log.2026-11-24.txt";

/// A shipper whose S3 and CloudWatch Logs requests go through `proxy`.
fn through(
    proxy: &FaultProxy,
    rig: &Rig,
    extra: &[(&str, &str)],
) -> Shipper<S3, S3, CloudWatchLogs> {
    let patient = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .operation_attempt_timeout(std::time::Duration::from_secs(60))
        .build();
    let sdk = (proxy.sdk_config().into_builder())
        .timeout_config(patient)
        .build();
    Shipper::new(
        S3::new(&sdk),
        S3::new(&sdk),
        CloudWatchLogs::new(&sdk),
        rig.config(extra),
    )
}

/// `(duplicated, lost)`: the stream against what the file must give, as multisets.
fn compare(want: &[(i64, String)], got: &[(i64, String)]) -> (usize, usize) {
    let mut have: HashMap<&(i64, String), usize> = HashMap::new();
    for e in got {
        *have.entry(e).or_default() += 1;
    }
    let mut lost = 0;
    for e in want {
        match have.get_mut(e) {
            Some(n) if *n > 0 => *n -= 1,
            _ => lost += 1,
        }
    }
    (have.values().sum(), lost)
}

/// Moves the task's checkpoint `by` into the past, as time passing would:
/// leases expire, unverified ranges age past the visibility bound.
async fn age_checkpoint(rig: &Rig, by: chrono::Duration) {
    let mut cp = rig.checkpoint().await;
    for state in cp.files.values_mut().flat_map(|g| g.values_mut()) {
        for l in &mut state.leases {
            l.expires_at -= by;
            l.taken_at = l.taken_at.map(|t| t - by);
        }
        for u in &mut state.unverified {
            u.sent_before -= by;
            u.sent_after = u.sent_after.map(|t| t - by);
        }
    }
    let key = logdrop::core::keys::TaskRef {
        cluster: rig.cluster.clone(),
        task_id: TASK.into(),
    }
    .checkpoint_key("checkpoints");
    rig.put_raw(&key, cp.encode()).await;
}

fn puts(fault: Fault, which: impl Fn(u64) -> bool + Send + Sync + 'static) -> Rule {
    Box::new(move |req, n| {
        if req.op() == "logs:PutLogEvents" && which(n) {
            fault
        } else {
            Fault::Pass
        }
    })
}

async fn exact(rig: &Rig, file: &str, content: &[u8]) {
    let got = rig
        .events(&rig.stream(file.split('.').next().unwrap_or(file)))
        .await;
    let want = expected_events(file, content);
    assert_eq!(compare(&want, &got), (0, 0), "duplicated, lost");
    assert!(got == want, "every event once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_put_stored_then_reset_is_stored_once() {
    let rig = Rig::new("reset-every").await;
    let content = logdrop::generate::access_log(3 << 20, 21, hours_ago(2));
    let key = rig.upload_chunk(ACCESS, &content, 0, content.len()).await;
    // Every PutLogEvents is stored and its answer lost; the reads pass.
    let proxy = FaultProxy::start(&moto().endpoint, puts(Fault::ResetAfter, |_| true)).await;
    let shipper = through(&proxy, &rig, &[]);
    let r = shipper
        .handle(&rig.s3_event(std::slice::from_ref(&key)), &inv("reset"))
        .await
        .expect("each batch is found by its read-back")
        .to_json();
    let report = &r["records"][0]["objects"][0]["report"];
    let calls = proxy.requests("logs:PutLogEvents");
    assert_eq!(report["outcome_unknown_calls"], calls);
    assert_eq!(report["possible_duplicates"], 0);
    assert_eq!(report["verified"], report["events"]);
    exact(&rig, ACCESS, &content).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_stored_then_reset_and_unreadable_then_a_clean_redelivery_stores_once() {
    let rig = Rig::new("reset-unread").await;
    let content = logdrop::generate::access_log(3 << 20, 22, hours_ago(2));
    let key = rig.upload_chunk(ACCESS, &content, 0, content.len()).await;
    // Puts stored then reset, reads reset: nothing can be decided.
    let rule: Rule = Box::new(|req, _| match req.op().as_str() {
        "logs:PutLogEvents" => Fault::ResetAfter,
        "logs:GetLogEvents" => Fault::ResetBefore,
        _ => Fault::Pass,
    });
    let proxy = FaultProxy::start(&moto().endpoint, rule).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let err = through(&proxy, &rig, &[("LOGDROP_VISIBILITY_BOUND", "0s")])
        .handle(&event, &inv("dark"))
        .await
        .expect_err("undecided");
    assert_eq!(err.error_type(), "Retryable");
    assert_eq!(proxy.requests("logs:PutLogEvents"), 1, "never sent blindly");
    assert_eq!(
        rig.checkpoint().await.files[ACCESS]["0"].unverified.len(),
        1
    );
    rig.shipper()
        .handle(&event, &inv("clean"))
        .await
        .expect("the redelivery reads the batch back and goes on");
    exact(&rig, ACCESS, &content).await;
}

/// The stored batch is hidden from reads for longer than the invocation
/// waits: the record fails, and the redelivery finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_slow_to_show_is_found_by_the_redelivery() {
    let rig = Rig::new("slow-show").await;
    let content = logdrop::generate::access_log(3 << 20, 23, hours_ago(2));
    let key = rig.upload_chunk(ACCESS, &content, 0, content.len()).await;
    let proxy = FaultProxy::start(&moto().endpoint, puts(Fault::ResetAfter, |n| n == 2)).await;
    proxy.hide(Hide::UntilTold);
    let shipper = through(&proxy, &rig, &[]);
    let event = rig.s3_event(std::slice::from_ref(&key));
    let err = shipper
        .handle(&event, &inv("first"))
        .await
        .expect_err("undecided");
    assert_eq!(err.error_type(), "Retryable");
    assert!(proxy.hidden_reads() >= 1);
    proxy.hide(Hide::Nothing);
    shipper
        .handle(&event, &inv("again"))
        .await
        .expect("found now");
    assert_eq!(shipper.sender.possible_duplicates(), 0);
    exact(&rig, ACCESS, &content).await;
}

/// The stored batch is hidden from the first read only: the invocation's
/// own second read finds it, and the record succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_shown_by_the_second_read_is_found_within_the_invocation() {
    let rig = Rig::new("slow-once").await;
    let content = logdrop::generate::access_log(3 << 20, 27, hours_ago(2));
    let key = rig.upload_chunk(ACCESS, &content, 0, content.len()).await;
    let proxy = FaultProxy::start(&moto().endpoint, puts(Fault::ResetAfter, |n| n == 2)).await;
    proxy.hide(Hide::Reads(1));
    let shipper = through(&proxy, &rig, &[]);
    let r = shipper
        .handle(&rig.s3_event(std::slice::from_ref(&key)), &inv("wait"))
        .await
        .expect("found by the second read")
        .to_json();
    let reset = proxy.injected();
    let reset = reset
        .iter()
        .find(|i| i.fault == Fault::ResetAfter)
        .expect("the reset put");
    let report = &r["records"][0]["objects"][0]["report"];
    assert_eq!(
        report["verified"],
        crate::faults::put_events(&reset.body) as u64
    );
    assert_eq!(report["readback_calls"], 2, "{report}");
    assert_eq!(report["possible_duplicates"], 0, "{report}");
    assert_eq!(proxy.hidden_reads(), 1);
    exact(&rig, ACCESS, &content).await;
}

/// Hidden past the visibility bound (the checkpoint aged past it): the
/// batch is sent again, one duplicate, counted and logged by its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_hidden_past_the_bound_is_duplicated_once_counted_and_logged() {
    let rig = Rig::new("hidden-long").await;
    let content = logdrop::generate::access_log(3 << 20, 24, hours_ago(2));
    let key = rig.upload_chunk(ACCESS, &content, 0, content.len()).await;
    let proxy = FaultProxy::start(&moto().endpoint, puts(Fault::ResetAfter, |n| n == 2)).await;
    proxy.hide(Hide::UntilTold);
    let shipper = through(&proxy, &rig, &[]);
    let event = rig.s3_event(std::slice::from_ref(&key));
    shipper
        .handle(&event, &inv("first"))
        .await
        .expect_err("undecided");
    age_checkpoint(&rig, chrono::Duration::hours(1)).await;
    let (r, lines) = logged(shipper.handle(&event, &inv("late"))).await;
    let r = r.expect("sent again").to_json();
    let hidden = crate::faults::put_events(
        &proxy
            .injected()
            .iter()
            .find(|i| i.fault == Fault::ResetAfter)
            .expect("the reset put")
            .body,
    );
    let report = &r["records"][0]["objects"][0]["report"];
    assert_eq!(report["possible_duplicates"], hidden as u64);
    let warned: Vec<_> = loud(&lines)
        .into_iter()
        .filter(|l| l["key"] == key.as_str() && l["possible_duplicates"] == hidden as u64)
        .collect();
    assert_eq!(warned.len(), 1, "{lines:#?}");
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    let want = expected_events(ACCESS, &content);
    assert_eq!(
        compare(&want, &got),
        (hidden, 0),
        "one copy of the hidden batch, nothing lost"
    );
}

/// One-second access times, a second longer than a batch: batch 2 lies
/// inside it, its neighbours on both sides hold the same line at the same
/// second. Its put is lost before (absent) or after (stored) the service:
/// the neighbours' copies never count as its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_lines_at_both_edges_are_not_taken_for_the_batch() {
    let t = (chrono::Utc::now() - chrono::Duration::hours(2)).naive_utc();
    let line = |t: chrono::NaiveDateTime| {
        format!(
            "10.0.0.1 - - [{}] \"GET /health HTTP/1.1\" 200 2\n",
            logdrop::generate::access_time(t)
        )
    };
    // 25,000 identical lines in one second (batches of 10,000 events), then a few more seconds.
    let mut text = line(t).repeat(25_000);
    for s in 1..4 {
        text.push_str(&line(t + chrono::Duration::seconds(s)).repeat(3));
    }
    let content = text.into_bytes();
    for (name, fault) in [
        ("edge-before", Fault::ResetBefore),
        ("edge-after", Fault::ResetAfter),
    ] {
        let rig = Rig::new(name).await;
        let key = rig.upload_chunk(ACCESS, &content, 0, content.len()).await;
        let proxy = FaultProxy::start(&moto().endpoint, puts(fault, |n| n == 2)).await;
        let shipper = through(&proxy, &rig, &[("LOGDROP_VISIBILITY_BOUND", "0s")]);
        shipper
            .handle(&rig.s3_event(std::slice::from_ref(&key)), &inv(name))
            .await
            .expect(name);
        let got = rig.events(&rig.stream("localhost_access_log")).await;
        assert_eq!(
            compare(&expected_events(ACCESS, &content), &got),
            (0, 0),
            "{name}: duplicated, lost"
        );
    }
}

/// A checkpoint store failing every write after the lease, for the rest
/// of the invocation: the puts went through, nothing was recorded. Healed,
/// and the lease expired, the redelivery reads back instead of re-sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_store_down_after_the_lease_then_healed_duplicates_nothing() {
    let rig = Rig::new("store-down").await;
    let content = logdrop::generate::access_log(10 << 20, 25, hours_ago(2));
    let key = rig.upload_chunk(ACCESS, &content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let store = FailingSaves::new(rig.s3.clone(), 2..=u64::MAX);
    let down = Shipper::new(rig.s3.clone(), store, rig.logs.clone(), rig.config(&[]));
    down.handle(&event, &inv("down"))
        .await
        .expect_err("nothing recorded");
    let stored = rig.events(&rig.stream("localhost_access_log")).await.len();
    assert!(stored > 0, "batches were put before the store failed");
    age_checkpoint(&rig, chrono::Duration::hours(1)).await;
    let again = rig.shipper();
    let r = again
        .handle(&event, &inv("healed"))
        .await
        .expect("healed")
        .to_json();
    let report = &r["records"][0]["objects"][0]["report"];
    assert_eq!(report["verified"], stored as u64, "{report}");
    exact(&rig, ACCESS, &content).await;
}

/// Runs `shipper invoke` on `event` through the proxy (with `extra` variables)
/// and SIGKILLs it once the proxy has applied `fault`: waiting for that
/// condition, not for a time.
async fn invoke_then_kill(
    rig: &Rig,
    proxy: &FaultProxy,
    event: &serde_json::Value,
    extra: &[(&str, &str)],
    fault: Fault,
    what: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("event.json");
    std::fs::write(&path, event.to_string()).expect("write event");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipper"));
    cmd.args(["invoke", "--event", path.to_str().expect("path")])
        .env_clear()
        .env("LOGDROP_LOG_GROUP", &rig.group)
        .envs(extra.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in moto().env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    let mut child = cmd.spawn().expect("run shipper");
    let waited = tokio::time::timeout(std::time::Duration::from_secs(300), async {
        while !proxy.saw(fault) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} never came");
    child.kill().await.expect("SIGKILL");
}

/// `shipper invoke` SIGKILLed while the answer to its `n`th put is held
/// (the put is stored, no checkpoint write follows), then redelivered once
/// its lease has expired.
async fn killed_after_put(n: u64, content: &[u8]) {
    let rig = Rig::new(&format!("kill-{n}")).await;
    let key = rig.upload_chunk(ACCESS, content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let proxy = FaultProxy::start(&moto().endpoint, puts(Fault::Hold, move |i| i == n)).await;
    invoke_then_kill(&rig, &proxy, &event, &[], Fault::Hold, &format!("put {n}")).await;
    age_checkpoint(&rig, chrono::Duration::hours(1)).await;
    rig.shipper()
        .handle(&event, &inv(&format!("after-kill-{n}")))
        .await
        .expect("redelivery");
    exact(&rig, ACCESS, content).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_a_put_at_points_across_the_object_then_redelivered_is_exact() {
    // About 120,000 lines: 12 batches of 10,000 events.
    let content = logdrop::generate::access_log(10 << 20, 26, hours_ago(3));
    // The points (after the 1st, 2nd, 5th, 9th stored batch) and
    // two other seeded ones.
    let mut rng = fastrand::Rng::with_seed(15);
    let mut points = vec![1, 2, 5, 9];
    while points.len() < 6 {
        let n = rng.u64(1..=12);
        if !points.contains(&n) {
            points.push(n);
        }
    }
    eprintln!("SIGKILL after puts {points:?}");
    for n in points {
        killed_after_put(n, &content).await;
    }
}

/// The fault-free path costs what it did before the read-back: no
/// `GetLogEvents`, and the checkpoint writes of before (the lease announces
/// what is about to be sent; nothing else is written ahead of a put). The
/// corpus's three files in 36 v1 chunks, one invocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_free_delivery_reads_nothing_back_and_writes_nothing_more() {
    let rig = Rig::new("fault-free").await;
    let mut keys = Vec::new();
    for file in [
        ACCESS,
        "catalina.2026-11-24.log",
        "localhost.2026-11-24.log",
    ] {
        let content = corpus(file);
        for (a, b) in chunk_bounds(file, &content, 12) {
            keys.push(rig.upload_chunk(file, &content, a, b).await);
        }
    }
    let proxy = FaultProxy::start(&moto().endpoint, Box::new(|_, _| Fault::Pass)).await;
    let shipper = through(&proxy, &rig, &[]);
    shipper
        .handle(&rig.s3_event(&keys), &inv("clean"))
        .await
        .expect("no fault");
    let ops = [
        "logs:PutLogEvents",
        "logs:CreateLogStream",
        "logs:GetLogEvents",
        "s3:GET",
        "s3:PUT",
    ];
    let counts: Vec<(&str, u64)> = ops.iter().map(|op| (*op, proxy.requests(op))).collect();
    eprintln!("fault-free requests for 36 chunks: {counts:?}");
    assert_eq!(proxy.requests("logs:GetLogEvents"), 0);
    // The chunks were uploaded around the proxy: every PUT through it is a
    // checkpoint write, the lease of all 36 and their completions.
    assert_eq!(proxy.requests("s3:PUT"), 2);
    assert_eq!(proxy.requests("logs:PutLogEvents"), 31);
}

/// An SQS batch holding two chunks of one file whose lines are identical at
/// the same second: the later range first in the batch. The shipper is
/// SIGKILLed once the later range's batch is stored and the earlier one's
/// put has reached the proxy but never the emulator (every put after the
/// first is stalled, so no retry can store it). After the leases expire the
/// redelivery reads the earlier range back in a window that holds the later
/// range's identical lines in exactly its count: that window is undecidable,
/// not "stored". Nothing is lost; the later range's batch, stored, is read
/// back in a window the earlier range may have written into too, and is sent
/// again: a counted duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_two_ranges_of_one_file_with_identical_lines_loses_nothing() {
    let rig = Rig::new("kill-two-ranges").await;
    let t = (chrono::Utc::now() - chrono::Duration::hours(2)).naive_utc();
    let line = format!(
        "10.0.0.1 - - [{}] \"GET /health HTTP/1.1\" 200 2\n",
        logdrop::generate::access_time(t)
    );
    let content = line.repeat(6).into_bytes();
    let half = line.len() * 3;
    let first = rig.upload_chunk(ACCESS, &content, 0, half).await;
    let second = rig
        .upload_chunk(ACCESS, &content, half, content.len())
        .await;
    let event = rig.s3_event(&[second, first]);
    let proxy = FaultProxy::start(&moto().endpoint, puts(Fault::Stall, |i| i >= 2)).await;
    let one = [("LOGDROP_OBJECT_CONCURRENCY", "1")];
    invoke_then_kill(&rig, &proxy, &event, &one, Fault::Stall, "the second put").await;
    let stream = rig.stream("localhost_access_log");
    assert_eq!(
        rig.events(&stream).await.len(),
        3,
        "the later range stored, the earlier not"
    );
    age_checkpoint(&rig, chrono::Duration::hours(1)).await;
    let r = Shipper::new(
        rig.s3.clone(),
        rig.s3.clone(),
        rig.logs.clone(),
        rig.config(&[("LOGDROP_OBJECT_CONCURRENCY", "1")]),
    )
    .handle(&event, &inv("after-kill-two-ranges"))
    .await
    .expect("redelivery")
    .to_json();
    let counted: u64 = (r["records"].as_array().expect("records").iter())
        .map(|rec| {
            rec["objects"][0]["report"]["possible_duplicates"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    let got = rig.events(&stream).await;
    let (duplicated, lost) = compare(&expected_events(ACCESS, &content), &got);
    eprintln!(
        "two ranges, identical lines: duplicated {duplicated}, lost {lost}, counted {counted}: {r}"
    );
    assert_eq!(lost, 0, "lost");
    // At most the later range's batch, sent again; every copy counted (the
    // count also holds the earlier range's events, which were not stored).
    assert!(duplicated <= 3, "duplicated {duplicated}");
    assert!(duplicated as u64 <= counted, "every duplicate counted");
}
