//! The shipper on layout v2 task segments (moto, real SDK): exactly once,
//! redelivered, raced, mixed with v1 chunks, damaged, and what it writes.

use crate::rig::*;
use logdrop::core::segment::{self, PartBody, SegmentKey};

const FILES: [(&str, &str); 3] = [
    (
        "localhost_access_log.2026-11-24.txt",
        "localhost_access_log",
    ),
    ("catalina.2026-11-24.log", "catalina"),
    ("localhost.2026-11-24.log", "localhost"),
];

fn seg_key(rig: &Rig, task: &str, seq: u64) -> SegmentKey {
    SegmentKey {
        prefix: "logs".into(),
        cluster: rig.cluster.clone(),
        task_id: task.into(),
        seq,
    }
}

fn part(file: &str, content: &[u8], a: usize, b: usize) -> PartBody {
    PartBody {
        file: file.into(),
        generation: 0,
        start: a as u64,
        end: b as u64,
        gzip: logdrop::generate::gzip(&content[a..b]),
    }
}

/// Segment `i` of `n` holds the `i`-th chunk of every corpus file.
async fn upload_corpus_segments(rig: &Rig, n: usize) -> Vec<String> {
    let bounds: Vec<Vec<(usize, usize)>> = FILES
        .iter()
        .map(|(f, _)| chunk_bounds(f, &corpus(f), n))
        .collect();
    let mut keys = Vec::new();
    for i in 0..n {
        let parts: Vec<PartBody> = FILES
            .iter()
            .zip(&bounds)
            .map(|((f, _), b)| part(f, &corpus(f), b[i].0, b[i].1))
            .collect();
        let key = seg_key(rig, TASK, i as u64).to_string();
        rig.put_raw(&key, segment::encode(&parts)).await;
        keys.push(key);
    }
    keys
}

async fn assert_corpus_exactly_once(rig: &Rig, sort: bool) {
    for (file, stem) in FILES {
        let mut got = rig.events(&rig.stream(stem)).await;
        let mut want = expected_events(file, &corpus(file));
        if sort {
            // Racing invocations may interleave equal timestamps at part edges.
            got.sort();
            want.sort();
        }
        assert_eq!(got.len(), want.len(), "{file}: event count");
        assert!(got == want, "{file}: events differ");
    }
    let cp = rig.checkpoint().await;
    for (file, _) in FILES {
        let state = &cp.files[file]["0"];
        assert_eq!(state.shipped.ranges(), &[(0, corpus(file).len() as u64)]);
        assert!(state.leases.is_empty(), "{file}: lease left");
    }
}

#[tokio::test]
async fn segments_ship_the_corpus_exactly_once() {
    let rig = Rig::new("seg-corpus").await;
    let keys = upload_corpus_segments(&rig, 3).await;
    rig.shipper()
        .handle(&rig.s3_event(&keys), &inv("r1"))
        .await
        .expect("handled");
    assert_corpus_exactly_once(&rig, false).await;
    // Delivered again, in reverse order: nothing more.
    for k in keys.iter().rev() {
        let r = rig
            .shipper()
            .handle(&rig.s3_event(std::slice::from_ref(k)), &inv("again"))
            .await
            .expect("again")
            .to_json();
        assert_eq!(r["records"][0]["objects"][0]["result"], "already_shipped");
    }
    assert_corpus_exactly_once(&rig, false).await;
}

#[tokio::test]
async fn segments_delivered_twice_at_once_land_once() {
    let rig = Rig::new("seg-race").await;
    let keys = upload_corpus_segments(&rig, 2).await;
    let event = rig.s3_event(&keys);
    let (a, b) = (rig.shipper(), rig.shipper());
    let (ia, ib) = (inv("race-a"), inv("race-b"));
    let (ra, rb) = tokio::join!(a.handle(&event, &ia), b.handle(&event, &ib));
    for r in [&ra, &rb] {
        if let Err(e) = r {
            assert!(e.to_string().contains("holds a lease"), "{e}");
            assert_eq!(e.error_type(), "Retryable");
        }
    }
    // The trigger's retries of whatever failed.
    rig.shipper()
        .handle(&event, &inv("race-retry"))
        .await
        .expect("retry");
    assert_corpus_exactly_once(&rig, true).await;
}

#[tokio::test]
async fn a_segment_over_v1_chunks_ships_only_the_new_events() {
    let rig = Rig::new("seg-mixed").await;
    let (file, stem) = FILES[1];
    let content = corpus(file);
    let b = chunk_bounds(file, &content, 3);
    // v1 chunk of the first third, then a segment of the whole file (overlapping it).
    let v1 = rig.upload_chunk(file, &content, b[0].0, b[0].1).await;
    rig.shipper()
        .handle(&rig.s3_event(&[v1]), &inv("v1"))
        .await
        .expect("v1");
    let seg = seg_key(&rig, TASK, 0).to_string();
    let body = segment::encode(&[part(file, &content, 0, content.len())]);
    rig.put_raw(&seg, body).await;
    let r = rig
        .shipper()
        .handle(&rig.s3_event(&[seg]), &inv("v2"))
        .await
        .expect("v2")
        .to_json();
    assert_eq!(r["records"][0]["objects"][0]["result"], "shipped");
    let got = rig.events(&rig.stream(stem)).await;
    assert!(got == expected_events(file, &content), "events differ");
    let cp = rig.checkpoint().await;
    assert_eq!(
        cp.files[file]["0"].shipped.ranges(),
        &[(0, content.len() as u64)]
    );
}

#[tokio::test]
async fn damaged_segments_are_poison_naming_the_key() {
    let rig = Rig::new("seg-bad").await;
    let (file, stem) = FILES[1];
    let content = corpus(file);
    let b = chunk_bounds(file, &content, 2);
    let whole = segment::encode(&[
        part(file, &content, b[0].0, b[0].1),
        part(file, &content, b[1].0, b[1].1),
    ]);
    // Cut inside the second part: the first part ships, the second fails.
    let cut = seg_key(&rig, TASK, 1).to_string();
    rig.put_raw(&cut, whole[..whole.len() - 40].to_vec()).await;
    let e = rig
        .shipper()
        .handle(&rig.s3_event(std::slice::from_ref(&cut)), &inv("cut"))
        .await
        .expect_err("truncated");
    assert_eq!(e.error_type(), "Poison");
    let msg = e.to_string();
    assert!(msg.contains(&cut) && msg.contains("part 1"), "{msg}");
    assert!(msg.contains("offset"), "{msg}");
    let cp = rig.checkpoint().await;
    let shipped = cp.files[file]["0"].shipped.ranges().to_vec();
    assert_eq!(shipped.first().map(|r| r.0), Some(0), "first part recorded");
    assert!(cp.files[file]["0"].leases.is_empty());
    let got = rig.events(&rig.stream(stem)).await;
    let want = expected_events(file, &content[..b[0].1]);
    assert!(got.len() >= want.len() && got[..want.len()] == want[..]);

    // A manifest that is not JSON.
    let hostile = seg_key(&rig, TASK, 2).to_string();
    rig.put_raw(&hostile, logdrop::generate::gzip(b"{\"version\":2,"))
        .await;
    let e = rig
        .shipper()
        .handle(&rig.s3_event(std::slice::from_ref(&hostile)), &inv("h"))
        .await
        .expect_err("hostile");
    assert_eq!(e.error_type(), "Poison");
    assert!(e.to_string().contains(&hostile), "{e}");
}

#[tokio::test]
async fn an_sqs_batch_of_two_tasks_writes_two_leases_and_two_completions() {
    let rig = Rig::new("seg-count").await;
    let mut bodies = Vec::new();
    for (n, task) in [TASK, "1f1e2d3c4b5a69788796a5b4c3d2e1f1"]
        .iter()
        .enumerate()
    {
        let parts: Vec<PartBody> = FILES
            .iter()
            .map(|(f, _)| part(f, &corpus(f), 0, corpus(f).len()))
            .collect();
        let key = seg_key(&rig, task, 7).to_string();
        rig.put_raw(&key, segment::encode(&parts)).await;
        let s3 = rig.s3_event(&[key]);
        bodies.push((format!("m{n}"), s3.to_string()));
    }
    let store = FailingSaves::counting(rig.s3.clone());
    let shipper =
        logdrop::shipper::Shipper::new(rig.s3.clone(), store, rig.logs.clone(), rig.config(&[]));
    let r = shipper
        .handle(&rig.sqs_event(&bodies), &inv("count"))
        .await
        .expect("handled");
    assert!(!r.has_failures(), "{:?}", r.to_json());
    assert_eq!(shipper.checkpoints.count(), 4);
    assert_corpus_exactly_once(&rig, false).await;
    // A listing of the bucket shows both segments stamped as layout 2.
    let head = rig
        .s3
        .client()
        .head_object()
        .bucket(&rig.bucket)
        .key(seg_key(&rig, TASK, 7).to_string())
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.metadata().and_then(|m| m.get("logdrop-version")),
        Some(&"2".to_string())
    );
}

#[tokio::test]
async fn one_batch_of_v1_chunks_and_a_segment_of_one_task_writes_three_times() {
    let rig = Rig::new("seg-v1-batch").await;
    // The first half of every file as v1 chunks, the second halves in one segment.
    let mut bodies = Vec::new();
    let mut parts = Vec::new();
    for (n, (file, _)) in FILES.iter().enumerate() {
        let content = corpus(file);
        let b = chunk_bounds(file, &content, 2);
        let key = rig.upload_chunk(file, &content, b[0].0, b[0].1).await;
        bodies.push((format!("v1-{n}"), rig.s3_event(&[key]).to_string()));
        parts.push(part(file, &content, b[1].0, b[1].1));
    }
    let seg = seg_key(&rig, TASK, 0).to_string();
    rig.put_raw(&seg, segment::encode(&parts)).await;
    bodies.push(("v2".into(), rig.s3_event(&[seg]).to_string()));
    let shipper = logdrop::shipper::Shipper::new(
        rig.s3.clone(),
        FailingSaves::counting(rig.s3.clone()),
        rig.logs.clone(),
        rig.config(&[]),
    );
    let r = shipper
        .handle(&rig.sqs_event(&bodies), &inv("mixed"))
        .await
        .expect("handled");
    assert!(!r.has_failures(), "{:?}", r.to_json());
    // One shared lease write for the three chunks, one for the segment's
    // parts, one completion write for all of them (no progress writes).
    assert_eq!(shipper.checkpoints.count(), 3);
    assert_corpus_exactly_once(&rig, false).await;
}

#[tokio::test]
async fn hostile_manifests_and_trailing_bytes_are_poison() {
    let rig = Rig::new("seg-hostile").await;
    // Overlapping parts of one file: refused before anything is leased.
    let json = br#"{"version":2,"parts":[{"file":"a.log","generation":0,"start":0,"end":10,"bytes":5},{"file":"a.log","generation":0,"start":5,"end":20,"bytes":5}]}"#;
    let overlap = seg_key(&rig, TASK, 0).to_string();
    rig.put_raw(&overlap, logdrop::generate::gzip(json)).await;
    // A manifest that inflates past its limit.
    let huge = seg_key(&rig, TASK, 1).to_string();
    let pad = format!(
        "{{\"version\":2,\"parts\":[],\"pad\":\"{}\"}}",
        "x".repeat(segment::MAX_MANIFEST_BYTES)
    );
    rig.put_raw(&huge, logdrop::generate::gzip(pad.as_bytes()))
        .await;
    for key in [&overlap, &huge] {
        let e = rig
            .shipper()
            .handle(&rig.s3_event(std::slice::from_ref(key)), &inv("h"))
            .await
            .expect_err("hostile");
        assert_eq!(e.error_type(), "Poison", "{e}");
        assert!(e.to_string().contains(key.as_str()), "{e}");
    }
    // A good segment with junk after its last part: shipped, then Poison.
    let (file, stem) = FILES[1];
    let content = corpus(file);
    let mut body = segment::encode(&[part(file, &content, 0, content.len())]);
    body.extend_from_slice(b"junk");
    let trailing = seg_key(&rig, TASK, 2).to_string();
    rig.put_raw(&trailing, body).await;
    let e = rig
        .shipper()
        .handle(&rig.s3_event(std::slice::from_ref(&trailing)), &inv("t"))
        .await
        .expect_err("trailing");
    assert_eq!(e.error_type(), "Poison");
    assert!(
        e.to_string()
            .contains("bytes after its last part (at least 4)"),
        "{e}"
    );
    assert!(rig.events(&rig.stream(stem)).await == expected_events(file, &content));
    let cp = rig.checkpoint().await;
    assert_eq!(
        cp.files[file]["0"].shipped.ranges(),
        &[(0, content.len() as u64)]
    );
}

/// What `gzip -c FILE | aws s3 cp - s3://BUCKET/KEY` does: a plain PutObject,
/// no metadata, no logdrop code on the producer's side.
async fn drop_v1(rig: &Rig, key: &str, bytes: &[u8]) {
    rig.s3
        .client()
        .put_object()
        .bucket(&rig.bucket)
        .key(key)
        .body(logdrop::generate::gzip(bytes).into())
        .send()
        .await
        .expect("plain PutObject");
}

/// The README's "Dropping files yourself": an outside producer drops v1
/// objects beside the sidecar's segments of the same task, one of them over a
/// range a segment already shipped, two of them overlapping each other, and
/// one of a new generation of a file reusing its offsets; every event arrives
/// exactly once, in order, byte for byte.
#[tokio::test]
async fn outside_v1_drops_beside_segments_arrive_exactly_once() {
    let rig = Rig::new("seg-drops").await;
    let (access, access_stem) = FILES[0];
    let (juli, juli_stem) = FILES[2];
    let (a, j) = (corpus(access), corpus(juli));
    let b = chunk_bounds(access, &a, 4);
    // The sidecar's segment: the first half of the access log, all of the JULI file.
    let seg = seg_key(&rig, TASK, 0).to_string();
    let parts = [part(access, &a, 0, b[1].1), part(juli, &j, 0, j.len())];
    rig.put_raw(&seg, segment::encode(&parts)).await;
    rig.shipper()
        .handle(&rig.s3_event(std::slice::from_ref(&seg)), &inv("seg"))
        .await
        .expect("segment");
    // The drops: over the segment's second chunk and the third; over the
    // third again and the fourth; the JULI file replaced (generation 1) by
    // a file holding the same bytes, so the same offsets. Then a key whose
    // range is not 15 digits, which is not a v1 key.
    let key = |file: &str, generation: u64, start: usize, end: usize| {
        let mut k = rig.key(file, start as u64, end as u64);
        k.generation = generation;
        k.to_string()
    };
    let drops = [
        key(access, 0, b[1].0, b[2].1),
        key(access, 0, b[2].0, b[3].1),
        key(juli, 1, 0, j.len()),
    ];
    drop_v1(&rig, &drops[0], &a[b[1].0..b[2].1]).await;
    drop_v1(&rig, &drops[1], &a[b[2].0..b[3].1]).await;
    drop_v1(&rig, &drops[2], &j).await;
    let bodies: Vec<(String, String)> = (drops.iter().enumerate())
        .map(|(i, k)| {
            (
                format!("d{i}"),
                rig.s3_event(std::slice::from_ref(k)).to_string(),
            )
        })
        .collect();
    let r = rig
        .shipper()
        .handle(&rig.sqs_event(&bodies), &inv("drops"))
        .await
        .expect("handled");
    assert!(!r.has_failures(), "{:?}", r.to_json());
    let short = format!("logs/{}/{TASK}/{access}/0/0-{}.gz", rig.cluster, b[0].1);
    drop_v1(&rig, &short, &a[..b[0].1]).await;
    let r = rig
        .shipper()
        .handle(&rig.s3_event(std::slice::from_ref(&short)), &inv("short"))
        .await
        .expect("skipped, not failed")
        .to_json();
    assert_eq!(r["records"][0]["objects"][0]["result"], "skipped");
    let got = rig.events(&rig.stream(access_stem)).await;
    assert_eq!(got.len(), expected_events(access, &a).len());
    assert!(
        got == expected_events(access, &a),
        "access log: events differ"
    );
    // Generation 1 is another file: its events arrive although generation
    // 0 shipped the same offsets, each after its twin of generation 0.
    let mut want = expected_events(juli, &j);
    want.extend(expected_events(juli, &j));
    want.sort_by_key(|e| e.0);
    assert!(
        rig.events(&rig.stream(juli_stem)).await == want,
        "JULI: events differ"
    );
    let cp = rig.checkpoint().await;
    assert_eq!(
        cp.files[access]["0"].shipped.ranges(),
        &[(0, a.len() as u64)]
    );
    for generation in ["0", "1"] {
        let state = &cp.files[juli][generation];
        assert_eq!(state.shipped.ranges(), &[(0, j.len() as u64)]);
    }
}
