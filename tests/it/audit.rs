//! `shipper audit` and `shipper replay`: the real binary against moto, on a
//! task's segments and checkpoint as the sidecar and the shipper leave them.

use crate::moto::moto;
use crate::rig::*;
use logdrop::core::checkpoint::Lease;
use logdrop::core::keys::TaskRef;
use logdrop::core::segment::{self, PartBody, SegmentKey};
use logdrop::shipper::audit::{FileRange, Finding, Report};
use serde_json::Value;

const FILES: [(&str, &str); 2] = [
    ("catalina.2026-11-24.log", "catalina"),
    (
        "localhost_access_log.2026-11-24.txt",
        "localhost_access_log",
    ),
];
/// Segments per task: the corpus files cut in this many pieces.
const SEGMENTS: usize = 4;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn shipper(rig: &Rig, args: &[&str]) -> Run {
    shipper_with(rig, &[], args).await
}

/// The real binary with the function's environment (plus `envs`) on moto.
async fn shipper_with(rig: &Rig, envs: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipper"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOGDROP_LOG_GROUP", &rig.group)
        .kill_on_drop(true);
    for (k, v) in moto().env() {
        cmd.env(k, v);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run shipper");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `shipper audit --json` of the rig's task (plus `extra` flags).
async fn audit(rig: &Rig, extra: &[&str]) -> (Option<i32>, Report) {
    let mut args = vec![
        "audit",
        "--bucket",
        &rig.bucket,
        "--cluster",
        &rig.cluster,
        "--task",
        TASK,
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = shipper(rig, &args).await;
    let report = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    (run.code, report)
}

fn seg_key(rig: &Rig, task: &str, seq: u64) -> String {
    SegmentKey {
        prefix: "logs".into(),
        cluster: rig.cluster.clone(),
        task_id: task.into(),
        seq,
    }
    .to_string()
}

/// The byte ranges of segment `i`: the `i`-th piece of every corpus file.
fn bounds() -> Vec<Vec<(usize, usize)>> {
    (FILES.iter())
        .map(|(f, _)| chunk_bounds(f, &corpus(f), SEGMENTS))
        .collect()
}

/// Uploads segment `i` of the corpus for `task` under number `seq`.
async fn upload_segment(rig: &Rig, task: &str, i: usize, seq: u64) -> String {
    let b = bounds();
    let parts: Vec<PartBody> = (FILES.iter().zip(&b))
        .map(|((f, _), b)| {
            let (start, end) = b[i];
            PartBody {
                file: f.to_string(),
                generation: 0,
                start: start as u64,
                end: end as u64,
                gzip: logdrop::generate::gzip(&corpus(f)[start..end]),
            }
        })
        .collect();
    let key = seg_key(rig, task, seq);
    rig.put_raw(&key, segment::encode(&parts)).await;
    key
}

async fn ship(rig: &Rig, keys: &[String]) {
    rig.shipper()
        .handle(&rig.s3_event(keys), &inv("setup"))
        .await
        .expect("setup shipment");
}

fn ranges_of(i: usize) -> Vec<FileRange> {
    let b = bounds();
    (FILES.iter().zip(&b))
        .map(|((f, _), b)| FileRange {
            file: f.to_string(),
            generation: 0,
            start: b[i].0 as u64,
            end: b[i].1 as u64,
        })
        .collect()
}

fn checkpoint_key(rig: &Rig) -> String {
    TaskRef {
        cluster: rig.cluster.clone(),
        task_id: TASK.into(),
    }
    .checkpoint_key("checkpoints")
}

async fn put_checkpoint(rig: &Rig, key: &str, body: Vec<u8>) {
    (rig.s3.client().put_object())
        .bucket(&rig.bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .expect("put checkpoint");
}

/// The events segments `shipped` hold, in the order they must be in CloudWatch.
fn expected(file: &str, shipped: &[usize]) -> Vec<(i64, String)> {
    let b = &bounds()[FILES.iter().position(|f| f.0 == file).unwrap()];
    let content = corpus(file);
    let bytes: Vec<u8> = (shipped.iter())
        .flat_map(|&i| content[b[i].0..b[i].1].to_vec())
        .collect();
    expected_events(file, &bytes)
}

async fn assert_in_cloudwatch(rig: &Rig, shipped: &[usize]) {
    for (file, stem) in FILES {
        let got = rig.events(&rig.stream(stem)).await;
        let want = expected(file, shipped);
        assert_eq!(got.len(), want.len(), "{file}: event count");
        assert!(got == want, "{file}: events differ");
    }
}

/// Segment 0 shipped, segment 1 deleted before it shipped, segment 2 in S3
/// but unshipped, its lease left behind by an invocation that died.
async fn a_task_with_losses(rig: &Rig) -> [String; 3] {
    let s0 = upload_segment(rig, TASK, 0, 0).await;
    ship(rig, std::slice::from_ref(&s0)).await;
    let s1 = upload_segment(rig, TASK, 1, 1).await;
    (rig.s3.client().delete_object())
        .bucket(&rig.bucket)
        .key(&s1)
        .send()
        .await
        .expect("delete");
    let s2 = upload_segment(rig, TASK, 2, 2).await;
    let mut cp = rig.checkpoint().await;
    let r = &ranges_of(2)[0];
    let state = cp.files.get_mut(&r.file).unwrap().get_mut("0").unwrap();
    state.leases.push(Lease {
        range: (r.start, r.end),
        owner: "died-1/0.0#0".into(),
        expires_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        taken_at: None,
        others_stored: false,
    });
    put_checkpoint(rig, &checkpoint_key(rig), cp.encode()).await;
    [s0, s1, s2]
}

#[tokio::test]
async fn audit_finds_a_deleted_object_an_unshipped_one_and_a_stuck_lease_and_replay_ships_it_once()
{
    let rig = Rig::new("audit-losses").await;
    let [_, _, s2] = a_task_with_losses(&rig).await;
    let (code, report) = audit(&rig, &[]).await;
    assert_eq!(code, Some(1), "{report:?}");
    let task = &report.tasks[..];
    assert_eq!(task.len(), 1);
    let deleted = ranges_of(1);
    let r2 = ranges_of(2);
    let want = vec![
        Finding::Gap {
            range: deleted[0].clone(),
        },
        Finding::Gap {
            range: deleted[1].clone(),
        },
        Finding::MissingSegments {
            first: 1,
            last: 1,
            before: s2.clone(),
        },
        Finding::Unshipped {
            key: s2.clone(),
            uploaded_at: match &task[0].findings[3] {
                Finding::Unshipped { uploaded_at, .. } => *uploaded_at,
                other => panic!("{other:?}"),
            },
            ranges: r2.clone(),
            leased_until: None,
        },
        Finding::StuckLease {
            range: r2[0].clone(),
            owner: "died-1/0.0#0".into(),
            expired_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        },
    ];
    assert_eq!(task[0].findings, want);
    assert!(!report.clean);
    let r = &report.requests;
    assert_eq!(
        (
            r.list,
            r.manifest_reads,
            r.checkpoint_reads,
            r.lifecycle_reads
        ),
        (1, 2, 1, 1),
        "one List, a ranged GET per segment, one checkpoint and one lifecycle read"
    );
    // The human table names each finding and ends with the verdict.
    let args = ["audit", "--bucket", &rig.bucket, "--cluster", &rig.cluster];
    let table = shipper(&rig, &[&args[..], &["--task", TASK]].concat()).await;
    assert_eq!(table.code, Some(1));
    for word in ["gap", "missing-segments", "unshipped", "stuck-lease", &s2] {
        assert!(table.stdout.contains(word), "{word}: {}", table.stdout);
    }
    assert!(
        table
            .stdout
            .contains("audit found 5 problem(s) in 1 task(s)")
    );

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("audit.json");
    std::fs::write(&saved, serde_json::to_vec(&report).unwrap()).unwrap();
    let replay = [
        "replay",
        "--bucket",
        &rig.bucket,
        "--cluster",
        &rig.cluster,
        "--task",
        TASK,
    ];
    let first = shipper(&rig, &replay).await;
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    let sent: usize = FILES.iter().map(|(f, _)| expected(f, &[2]).len()).sum();
    assert_eq!(
        first.stdout,
        format!(
            "shipped          {s2}: {sent} events sent\nreplay: 1 objects, {sent} events sent, 0 failed\n"
        )
    );
    assert_in_cloudwatch(&rig, &[0, 2]).await;

    // Again, from the selection and from the saved audit: nothing more.
    let again = shipper(&rig, &replay).await;
    assert_eq!(again.code, Some(0));
    assert_eq!(again.stdout, "replay: 0 objects, 0 events sent, 0 failed\n");
    let saved = saved.to_str().unwrap();
    let from = shipper(&rig, &["replay", "--from", saved]).await;
    assert_eq!(from.code, Some(0), "{}", from.stderr);
    assert_eq!(
        from.stdout,
        format!("already shipped  {s2}\nreplay: 1 objects, 0 events sent, 0 failed\n")
    );
    assert_in_cloudwatch(&rig, &[0, 2]).await;

    // What is left: the deleted segment, which no replay can bring back.
    let cp = rig.checkpoint().await;
    for (i, (file, _)) in FILES.iter().enumerate() {
        let state = &cp.files[*file]["0"];
        let b = &bounds()[i];
        let want = [(0, b[0].1 as u64), (b[2].0 as u64, b[2].1 as u64)];
        assert_eq!(state.shipped.ranges(), want, "{file}");
        assert!(state.leases.is_empty(), "{file}: {:?}", state.leases);
    }
    let (code, after) = audit(&rig, &[]).await;
    assert_eq!(code, Some(1));
    assert_eq!(after.tasks[0].findings, want[..3]);
}

#[tokio::test]
async fn audit_of_a_clean_task_says_so_and_exits_0() {
    let rig = Rig::new("audit-clean").await;
    let mut keys = Vec::new();
    for i in 0..SEGMENTS {
        keys.push(upload_segment(&rig, TASK, i, 100 + i as u64).await);
    }
    ship(&rig, &keys).await;
    let (code, report) = audit(&rig, &[]).await;
    assert_eq!(code, Some(0), "{report:?}");
    assert!(report.clean && report.tasks[0].findings.is_empty());
    let total: usize = FILES.iter().map(|(f, _)| corpus(f).len()).sum();
    assert_eq!(report.tasks[0].shipped_bytes, total as u64);
    let args = ["audit", "--bucket", &rig.bucket, "--cluster", &rig.cluster];
    let run = shipper(&rig, &[&args[..], &["--task", TASK]].concat()).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("  clean: every byte of every object shipped")
            && run
                .stdout
                .contains("audit clean: nothing missing in 1 task(s)"),
        "{}",
        run.stdout
    );
    let replay = shipper(&rig, &["replay", "--bucket", &rig.bucket, "--since", "1h"]).await;
    assert_eq!(
        replay.stdout,
        "replay: 0 objects, 0 events sent, 0 failed\n"
    );
}

/// The JSON log lines of a run that name `key`.
fn lines_naming<'a>(stderr: &'a str, key: &str) -> Vec<&'a str> {
    (stderr.lines())
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["key"].as_str() == Some(key)))
        .collect()
}

#[tokio::test]
async fn what_cannot_be_read_is_one_line_naming_its_key_and_the_rest_is_still_audited() {
    let rig = Rig::new("audit-bad").await;
    // Task A: a corrupt checkpoint. Task B: a key of neither layout, a segment
    // whose manifest is not JSON, and an unshipped segment that is fine.
    let a = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
    upload_segment(&rig, a, 0, 0).await;
    let a_checkpoint = TaskRef {
        cluster: rig.cluster.clone(),
        task_id: a.into(),
    }
    .checkpoint_key("checkpoints");
    put_checkpoint(&rig, &a_checkpoint, b"{\"version\":1,".to_vec()).await;
    let junk = format!("logs/{}/{TASK}/notes.txt", rig.cluster);
    rig.put_raw(&junk, b"hello".to_vec()).await;
    let bad = seg_key(&rig, TASK, 0);
    rig.put_raw(&bad, logdrop::generate::gzip(b"{not a manifest"))
        .await;
    let good = upload_segment(&rig, TASK, 1, 1).await;
    let stray = "logs/readme.txt";
    rig.put_raw(stray, b"x".to_vec()).await;

    let run = shipper(
        &rig,
        &["audit", "--bucket", &rig.bucket, "--since", "1h", "--json"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let report: Report = serde_json::from_str(&run.stdout).expect("JSON report");
    let by_task = |t: &str| {
        &report
            .tasks
            .iter()
            .find(|x| x.task_id == t)
            .unwrap()
            .findings
    };
    let unreadable = |f: &Finding| match f {
        Finding::Unreadable { key, .. } => Some(key.clone()),
        _ => None,
    };
    let a_found: Vec<_> = by_task(a).iter().filter_map(unreadable).collect();
    assert_eq!(a_found, std::slice::from_ref(&a_checkpoint));
    assert_eq!(
        by_task(a).len(),
        1,
        "coverage is not judged without a checkpoint"
    );
    let b_found = by_task(TASK);
    let b_unreadable: Vec<_> = b_found.iter().filter_map(unreadable).collect();
    // In key order: `notes.txt` sorts before `segment/`.
    assert_eq!(b_unreadable, [junk.clone(), bad.clone()]);
    let unshipped: Vec<_> = (b_found.iter())
        .filter_map(|f| match f {
            Finding::Unshipped { key, ranges, .. } => Some((key.clone(), ranges.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(unshipped, [(good, ranges_of(1))]);
    let other: Vec<_> = report.other.iter().filter_map(unreadable).collect();
    assert_eq!(other, [stray]);
    for key in [&a_checkpoint, &bad, &junk, &stray.to_string()] {
        let lines = lines_naming(&run.stderr, key);
        assert_eq!(lines.len(), 1, "{key}: {}", run.stderr);
        assert!(lines[0].contains("\"level\":\"ERROR\""), "{}", lines[0]);
    }
}

#[tokio::test]
async fn unshipped_objects_within_a_day_of_lifecycle_expiry_are_reported() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    let rig = Rig::new("audit-expiry").await;
    // The rule template.yaml deploys, in the rule-level `Prefix` of old...
    #[allow(deprecated)]
    let logs = LifecycleRule::builder()
        .id("expire-shipped-chunks")
        .status(ExpirationStatus::Enabled)
        .prefix("logs/")
        .expiration(LifecycleExpiration::builder().days(3).build())
        .build()
        .unwrap();
    // ...and sooner ones for other keys, one of each form: they must not apply.
    #[allow(deprecated)]
    let other = LifecycleRule::builder()
        .id("other-2d")
        .status(ExpirationStatus::Enabled)
        .prefix("other/")
        .expiration(LifecycleExpiration::builder().days(2).build())
        .build()
        .unwrap();
    let checkpoints = LifecycleRule::builder()
        .id("checkpoints-1d")
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .prefix("checkpoints/")
                .build(),
        )
        .expiration(LifecycleExpiration::builder().days(1).build())
        .build()
        .unwrap();
    (rig.s3.client().put_bucket_lifecycle_configuration())
        .bucket(&rig.bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(logs)
                .rules(checkpoints)
                .rules(other)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put lifecycle");
    let key = upload_segment(&rig, TASK, 0, 0).await;
    let uploaded = (rig.s3.client().head_object())
        .bucket(&rig.bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .last_modified()
        .unwrap()
        .to_millis()
        .unwrap();
    let uploaded = chrono::DateTime::from_timestamp_millis(uploaded).unwrap();
    // S3's rule: upload time plus the days, rounded up to midnight UTC.
    let due = uploaded + chrono::Duration::days(3);
    let midnight = due.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let expires = if midnight == due {
        due
    } else {
        midnight + chrono::Duration::days(1)
    };
    // Now: unshipped, but days from expiry. Moved to 12 hours before it: expiring.
    let (_, now) = audit(&rig, &[]).await;
    assert!(matches!(
        now.tasks[0].findings[..],
        [Finding::Unshipped { .. }]
    ));
    let later = (expires - chrono::Duration::hours(12)).to_rfc3339();
    let (code, then) = audit(&rig, &["--at", &later]).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        then.tasks[0].findings[1],
        Finding::Expiring {
            key,
            expires_at: expires
        }
    );
    // Shipped, the expiry is no concern.
    ship(&rig, &[seg_key(&rig, TASK, 0)]).await;
    let (code, shipped) = audit(&rig, &["--at", &later]).await;
    assert_eq!((code, shipped.tasks[0].findings.len()), (Some(0), 0));
}

#[tokio::test]
async fn audit_and_replay_read_checkpoints_from_the_dynamodb_table() {
    let rig = Rig::new("audit-ddb").await;
    let store = crate::dynamodb::table("audit").await;
    let table = [("LOGDROP_CHECKPOINT_TABLE", store.table())];
    let s0 = upload_segment(&rig, TASK, 0, 0).await;
    let s1 = upload_segment(&rig, TASK, 1, 1).await;
    let on_table = logdrop::shipper::Shipper::new(
        rig.s3.clone(),
        logdrop::aws::checkpoint_store::AnyCheckpointStore::DynamoDb(store.clone()),
        rig.logs.clone(),
        rig.config(&[]),
    );
    (on_table.handle(&rig.s3_event(&[s0]), &inv("setup")))
        .await
        .expect("setup shipment");
    let task = [
        "--bucket",
        &rig.bucket,
        "--cluster",
        &rig.cluster,
        "--task",
        TASK,
    ];
    let run = shipper_with(&rig, &table, &[&["audit", "--json"][..], &task].concat()).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let report: Report = serde_json::from_str(&run.stdout).expect("JSON report");
    assert_eq!(report.unshipped(), [s1]);
    assert_eq!(report.tasks[0].findings.len(), 1, "{report:?}");
    let replay = shipper_with(&rig, &table, &[&["replay"][..], &task].concat()).await;
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    assert_in_cloudwatch(&rig, &[0, 1]).await;
    let run = shipper_with(&rig, &table, &[&["audit"][..], &task].concat()).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    // The bucket holds no checkpoint object: the table is what was read.
    let listed = (rig.s3.client().list_objects_v2())
        .bucket(&rig.bucket)
        .prefix("checkpoints/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0));
}

#[tokio::test]
async fn a_selection_that_is_not_one_is_refused() {
    let rig = Rig::new("audit-flags").await;
    for args in [
        &["audit", "--bucket", "b"][..],
        &["audit", "--bucket", "b", "--task", "t"],
        &["audit", "--from", "x.json"],
        &["replay", "--from", "x.json", "--at", "1h"],
    ] {
        let run = shipper(&rig, args).await;
        assert_eq!(run.code, Some(2), "{args:?}");
        assert!(
            run.stderr.contains("shipper audit --bucket B"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let run = shipper(
        &rig,
        &["audit", "--bucket", "no-such-bucket-audit", "--since", "1d"],
    )
    .await;
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("cannot list s3://no-such-bucket-audit/logs/"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_manifest_longer_than_the_first_read_takes_a_second_one() {
    let rig = Rig::new("audit-big-manifest").await;
    // 10,000 files (the limit) of 1 byte, names far apart: a manifest over
    // 64 KiB compressed.
    let gzip = logdrop::generate::gzip(b"x");
    let mut parts = Vec::new();
    for i in 0..10_000u64 {
        parts.push(PartBody {
            file: format!(
                "app-{:010x}.log",
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 24
            ),
            generation: 0,
            start: 0,
            end: 1,
            gzip: gzip.clone(),
        });
    }
    let key = seg_key(&rig, TASK, 0);
    rig.put_raw(&key, segment::encode(&parts)).await;
    let (code, report) = audit(&rig, &[]).await;
    assert_eq!(code, Some(1));
    assert_eq!(report.requests.manifest_reads, 2);
    let unshipped: Vec<_> = (report.tasks[0].findings.iter())
        .filter_map(|f| match f {
            Finding::Unshipped { key, ranges, .. } => Some((key.clone(), ranges.len())),
            _ => None,
        })
        .collect();
    assert_eq!(unshipped, [(key, 10_000)]);
    assert_eq!(report.tasks[0].findings.len(), 1, "nothing else");
}
