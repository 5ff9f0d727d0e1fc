use super::*;
use crate::core::checkpoint::{Lease, Unverified};
use crate::core::segment::Part;

const F: &str = "catalina.2026-11-24.log";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn now() -> DateTime<Utc> {
    at("2026-12-03T12:00:00Z")
}

fn task() -> TaskRef {
    TaskRef {
        cluster: "prod".into(),
        task_id: "t1".into(),
    }
}

fn listed(key: &str, lm: DateTime<Utc>) -> Listed {
    Listed {
        key: key.into(),
        size: 100,
        last_modified_ms: lm.timestamp_millis(),
    }
}

fn chunk(start: u64, end: u64) -> Found {
    let key = ChunkKey {
        prefix: "logs".into(),
        cluster: "prod".into(),
        task_id: "t1".into(),
        file: F.into(),
        generation: 0,
        start,
        end,
    };
    Found {
        listed: listed(&key.to_string(), now() - Duration::hours(1)),
        content: Content::Chunk(key),
    }
}

fn segment(seq: u64, uploaded: DateTime<Utc>, parts: &[(&str, u64, u64)]) -> Found {
    let key = SegmentKey {
        prefix: "logs".into(),
        cluster: "prod".into(),
        task_id: "t1".into(),
        seq,
    };
    let parts = (parts.iter())
        .map(|&(file, start, end)| Part {
            file: file.into(),
            generation: 0,
            start,
            end,
            bytes: 10,
        })
        .collect();
    Found {
        listed: listed(&key.to_string(), uploaded),
        content: Content::Segment {
            key,
            manifest: Ok(Manifest { version: 2, parts }),
            damage: None,
        },
    }
}

fn shipped(ranges: &[(u64, u64)]) -> Checkpoint {
    let mut c = Checkpoint::new("prod", "t1", now());
    let state = c.files.entry(F.into()).or_default().entry("0".into());
    state.or_default().shipped = RangeSet::from(ranges.to_vec());
    c
}

fn input(checkpoint: Checkpoint, objects: Vec<Found>) -> TaskInput {
    TaskInput {
        task: task(),
        checkpoint_key: "checkpoints/prod/t1.json".into(),
        checkpoint: Ok(Some(checkpoint)),
        objects,
    }
}

fn findings(input: &TaskInput) -> Vec<Finding> {
    audit_task(input, &[], now()).findings
}

fn range(start: u64, end: u64) -> FileRange {
    FileRange {
        file: F.into(),
        generation: 0,
        start,
        end,
    }
}

#[test]
fn a_task_whose_objects_all_shipped_is_clean() {
    let t0 = now() - Duration::hours(2);
    let objects = vec![
        chunk(0, 10),
        segment(7, t0, &[(F, 10, 30)]),
        segment(8, t0, &[(F, 30, 50)]),
    ];
    let audit = audit_task(&input(shipped(&[(0, 50)]), objects), &[], now());
    assert_eq!(audit.findings, []);
    assert_eq!((audit.objects, audit.shipped_bytes), (3, 50));
    assert!(audit.is_clean());
}

#[test]
fn objects_deleted_after_they_shipped_are_not_gaps() {
    let objects = vec![chunk(40, 50)];
    assert_eq!(findings(&input(shipped(&[(0, 50)]), objects)), []);
}

#[test]
fn bytes_in_no_object_and_not_shipped_are_a_gap() {
    // 10..20 was never uploaded (or deleted unshipped); 0..10 shipped and gone.
    let objects = vec![chunk(20, 30)];
    assert_eq!(
        findings(&input(shipped(&[(0, 10), (20, 30)]), objects)),
        [Finding::Gap {
            range: range(10, 20)
        }]
    );
    // A generation that starts late has lost its beginning.
    assert_eq!(
        findings(&input(shipped(&[(5, 30)]), vec![])),
        [Finding::Gap { range: range(0, 5) }]
    );
}

#[test]
fn absent_segment_numbers_are_found_but_a_counter_restart_is_not() {
    let t0 = now() - Duration::hours(2);
    let objects = vec![
        segment(5, t0, &[(F, 0, 10)]),
        segment(6, t0, &[(F, 10, 20)]),
        segment(9, t0, &[(F, 20, 30)]),
    ];
    let nine = objects[2].listed.key.clone();
    assert_eq!(
        findings(&input(shipped(&[(0, 30)]), objects)),
        [Finding::MissingSegments {
            first: 7,
            last: 8,
            before: nine
        }]
    );
    // A lost state restarts the counter at the clock in milliseconds.
    let restart = (t0 + Duration::minutes(5)).timestamp_millis() as u64;
    let objects = vec![
        segment(5, t0, &[(F, 0, 10)]),
        segment(restart, t0 + Duration::minutes(6), &[(F, 10, 20)]),
    ];
    assert_eq!(findings(&input(shipped(&[(0, 20)]), objects)), []);
}

#[test]
fn an_object_with_bytes_not_shipped_is_unshipped_with_those_bytes() {
    let t0 = now() - Duration::hours(2);
    let seg = segment(3, t0, &[(F, 0, 40), ("localhost.log", 0, 7)]);
    let key = seg.listed.key.clone();
    let mut cp = shipped(&[(0, 25)]);
    let lease_end = now() + Duration::minutes(3);
    (cp.files.get_mut(F).unwrap().get_mut("0").unwrap().leases).push(Lease {
        range: (25, 40),
        owner: "req-9/0.0#0".into(),
        expires_at: lease_end,
        taken_at: None,
        others_stored: false,
    });
    let other = FileRange {
        file: "localhost.log".into(),
        generation: 0,
        start: 0,
        end: 7,
    };
    assert_eq!(
        findings(&input(cp, vec![seg])),
        [Finding::Unshipped {
            key,
            uploaded_at: t0,
            ranges: vec![range(25, 40), other],
            leased_until: Some(lease_end),
        }]
    );
}

#[test]
fn leases_past_expiry_are_stuck() {
    let mut cp = shipped(&[(0, 10)]);
    let expired = now() - Duration::minutes(1);
    (cp.files.get_mut(F).unwrap().get_mut("0").unwrap().leases).push(Lease {
        range: (10, 20),
        owner: "req-1/0.0".into(),
        expires_at: expired,
        taken_at: None,
        others_stored: false,
    });
    let f = findings(&input(cp, vec![chunk(0, 10), chunk(10, 20)]));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(matches!(
        &f[0],
        Finding::Unshipped {
            leased_until: None,
            ..
        }
    ));
    assert_eq!(
        f[1],
        Finding::StuckLease {
            range: range(10, 20),
            owner: "req-1/0.0".into(),
            expired_at: expired
        }
    );
}

/// A v2 checkpoint's unverified ranges are reported (those since shipped
/// are not), beside the unshipped object that holds their bytes.
#[test]
fn unverified_ranges_are_reported() {
    let mut cp = shipped(&[(0, 10)]);
    let sent = now() - Duration::minutes(3);
    let state = cp.files.get_mut(F).unwrap().get_mut("0").unwrap();
    for range in [(10, 20), (0, 5)] {
        state.unverified.push(Unverified {
            range,
            sent_before: sent,
            sent_after: None,
            ended: false,
            others_stored: false,
        });
    }
    let f = findings(&input(cp, vec![chunk(0, 10), chunk(10, 20)]));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(matches!(&f[0], Finding::Unshipped { .. }));
    assert_eq!(
        f[1],
        Finding::Unverified {
            range: range(10, 20),
            sent_before: sent
        }
    );
    let (kind, what) = describe(&f[1]);
    assert_eq!(kind, "unverified");
    assert!(what.contains("bytes 10-20"), "{what}");
}

#[test]
fn lifecycle_expiry_is_upload_plus_days_rounded_up_to_midnight() {
    let obj = |key: &str, size: u64, lm: &str| Listed {
        key: key.into(),
        size,
        last_modified_ms: at(lm).timestamp_millis(),
    };
    let rule = |prefix: &str, after: ExpiryAfter| ExpiryRule {
        prefix: prefix.into(),
        size_greater_than: None,
        size_less_than: None,
        after,
    };
    // AWS's own example: created 10:30 on 15 January, 3 days: 19 January 00:00.
    let o = obj("logs/a", 10, "2014-01-15T10:30:00Z");
    let days3 = rule("logs/", ExpiryAfter::Days(3));
    assert_eq!(
        expires_at(std::slice::from_ref(&days3), &o),
        Some(at("2014-01-19T00:00:00Z"))
    );
    assert_eq!(
        expires_at(&[rule("other/", ExpiryAfter::Days(3))], &o),
        None
    );
    let date = rule(
        "",
        ExpiryAfter::Date(at("2014-01-17T00:00:00Z").timestamp_millis()),
    );
    assert_eq!(
        expires_at(&[days3.clone(), date], &o),
        Some(at("2014-01-17T00:00:00Z"))
    );
    let big_only = ExpiryRule {
        size_greater_than: Some(10),
        ..days3.clone()
    };
    assert_eq!(
        expires_at(&[big_only], &o),
        None,
        "10 is not greater than 10"
    );
    let small_only = ExpiryRule {
        size_less_than: Some(11),
        ..days3
    };
    assert!(expires_at(&[small_only], &o).is_some());
}

#[test]
fn unshipped_objects_near_or_past_expiry_are_expiring() {
    let rules = [ExpiryRule {
        prefix: "logs/".into(),
        size_greater_than: None,
        size_less_than: None,
        after: ExpiryAfter::Days(1),
    }];
    let old = segment(1, now() - Duration::hours(20), &[(F, 0, 10)]);
    let key = old.listed.key.clone();
    let f = audit_task(&input(shipped(&[]), vec![old.clone()]), &rules, now()).findings;
    assert!(matches!(&f[0], Finding::Unshipped { .. }), "{f:?}");
    assert_eq!(
        f[1],
        Finding::Expiring {
            key,
            expires_at: at("2026-12-03T00:00:00Z") + Duration::days(1)
        }
    );
    // Shipped, its expiry is no concern; three days away, not yet.
    let f = audit_task(
        &input(shipped(&[(0, 10)]), vec![old.clone()]),
        &rules,
        now(),
    );
    assert!(f.is_clean());
    let three_days = [ExpiryRule {
        after: ExpiryAfter::Days(3),
        ..rules[0].clone()
    }];
    let f = audit_task(&input(shipped(&[]), vec![old]), &three_days, now()).findings;
    assert_eq!(f.len(), 1, "{f:?}");
}

#[test]
fn what_cannot_be_read_is_named_and_the_rest_still_audited() {
    let t0 = now() - Duration::hours(2);
    let bad_manifest = Found {
        listed: listed("logs/prod/t1/segment/000000000000004.gz", t0),
        content: Content::Segment {
            key: SegmentKey::parse("logs/prod/t1/segment/000000000000004.gz", "logs").unwrap(),
            manifest: Err("segment manifest is not valid JSON: x".into()),
            damage: None,
        },
    };
    let mut damaged = segment(5, t0, &[(F, 10, 20)]);
    if let Content::Segment { damage, .. } = &mut damaged.content {
        *damage = Some("3 bytes after the last part the manifest lists".into());
    }
    let junk = Found {
        listed: listed("logs/prod/t1/notes.txt", t0),
        content: Content::Unparseable("neither layout".into()),
    };
    let objects = vec![
        chunk(0, 10),
        bad_manifest,
        damaged.clone(),
        junk,
        chunk(20, 30),
    ];
    let f = findings(&input(shipped(&[(0, 20)]), objects.clone()));
    let kinds: Vec<String> = (f.iter())
        .map(|f| match f {
            Finding::Unreadable { key, .. } => format!("unreadable {key}"),
            Finding::Unshipped { key, .. } => format!("unshipped {key}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "unreadable logs/prod/t1/segment/000000000000004.gz".to_string(),
            format!("unreadable {}", damaged.listed.key),
            "unreadable logs/prod/t1/notes.txt".into(),
            format!("unshipped {}", objects[4].listed.key),
        ]
    );
    // A checkpoint that cannot be read: named, and the objects still checked.
    let mut broken = input(shipped(&[]), objects);
    broken.checkpoint = Err("checkpoint is not valid JSON".into());
    let f = findings(&broken);
    assert_eq!(f.len(), 4, "{f:?}");
    assert_eq!(
        f[3],
        Finding::Unreadable {
            key: "checkpoints/prod/t1.json".into(),
            error: "checkpoint is not valid JSON".into()
        }
    );
}

#[test]
fn a_task_with_nothing_is_not_clean() {
    let mut empty = input(shipped(&[]), vec![]);
    empty.checkpoint = Ok(None);
    assert_eq!(
        findings(&empty),
        [Finding::NothingFound {
            prefix: "prod/t1/".into()
        }]
    );
}

#[test]
fn the_report_round_trips_as_json_and_says_clean_or_not() {
    let t0 = now() - Duration::hours(2);
    let objects = vec![segment(1, t0, &[(F, 0, 10)]), chunk(10, 20)];
    let task = audit_task(&input(shipped(&[]), objects.clone()), &[], now());
    let mut report = Report {
        bucket: "b".into(),
        at: now(),
        clean: false,
        tasks: vec![task],
        other: vec![],
        lifecycle_unknown: None,
        requests: Requests::default(),
    };
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""kind":"unshipped""#), "{json}");
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    // The chunk was uploaded an hour ago, the segment two: upload order.
    let keys: Vec<String> = objects.iter().map(|o| o.listed.key.clone()).collect();
    assert_eq!(report.unshipped(), keys);
    let mut swapped = report.clone();
    swapped.tasks[0].findings.reverse();
    assert_eq!(swapped.unshipped(), keys);
    let table = report.table();
    assert!(table.contains("unshipped"), "{table}");
    assert!(
        table.contains("audit found 2 problem(s) in 1 task(s)"),
        "{table}"
    );
    report.tasks[0].findings.clear();
    assert!(report.table().contains("  clean: every byte"));
    assert!(
        report
            .table()
            .contains("audit clean: nothing missing in 1 task(s)")
    );
}

#[test]
fn a_generation_that_is_no_number_is_named_once() {
    let mut cp = shipped(&[(0, 10)]);
    let odd = cp.files.get_mut(F).unwrap().entry("x".into()).or_default();
    odd.leases.push(Lease {
        range: (0, 5),
        owner: "req-1/0.0".into(),
        expires_at: now() - Duration::minutes(1),
        taken_at: None,
        others_stored: false,
    });
    assert_eq!(
        findings(&input(cp, vec![chunk(0, 10)])),
        [Finding::Unreadable {
            key: "checkpoints/prod/t1.json".into(),
            error: format!("file {F}: `x` is not a generation number"),
        }]
    );
}
