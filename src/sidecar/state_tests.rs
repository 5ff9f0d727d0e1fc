//! The state's golden files, round trips and write cost.
use super::*;

fn record() -> FileRecord {
    FileRecord {
        version: 2,
        name: "catalina.2026-11-24.log".into(),
        generation: 1,
        identity: Identity {
            dev: Some(64769),
            inode: 42,
        },
        offset: 6080,
        fingerprint: Some(Fingerprint {
            head_len: 1024,
            head: 0x0123_4567_89ab_cdef,
            tail: 0xfedc_ba98_7654_3210,
        }),
        uploading: Some((6080, 7000)),
        finished: false,
    }
}

#[test]
fn golden_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = StateDir::new(&dir.path().join(".logdrop"));
    assert_eq!(sd.load().unwrap(), None);
    let task = TaskDoc {
        version: 2,
        cluster: "prod".into(),
        task_id: "t1".into(),
    };
    sd.save_task(&task).unwrap();
    sd.save_file(&record()).unwrap();
    let mut files = BTreeMap::new();
    files.insert(record().name, record());
    // Written before layout 2: no segment record; segment numbers start at
    // the clock, beyond any a lost state may have used.
    let before = chrono::Utc::now().timestamp_millis() as u64;
    let got = sd.load().unwrap().unwrap();
    assert!(sd.segment().next_seq >= before, "{:?}", sd.segment());
    assert_eq!(
        got,
        Saved {
            task: task.clone(),
            files: files.clone(),
        }
    );
    let segment = SegmentDoc {
        version: 2,
        next_seq: 41,
        uploading: Some(SegmentIntent {
            seq: 41,
            gzip_level: 1,
            parts: vec![
                PartRange {
                    file: "catalina.2026-11-24.log".into(),
                    generation: 1,
                    start: 6080,
                    end: 7000,
                },
                PartRange {
                    file: "localhost_access_log.2026-11-24.txt".into(),
                    generation: 0,
                    start: 0,
                    end: 512,
                },
            ],
        }),
    };
    sd.segment_done(40).unwrap();
    sd.intend(segment.uploading.clone().unwrap()).unwrap();
    let mut again = StateDir::new(sd.path());
    assert_eq!(again.load().unwrap(), Some(Saved { task, files }));
    assert_eq!(again.segment(), &segment);
    let seg_golden = include_str!("../../tests/fixtures/sidecar_state_v2_segment.json");
    assert_eq!(
        std::fs::read_to_string(sd.path().join(SEGMENT_FILE)).unwrap(),
        seg_golden.trim_end()
    );
    let golden = include_str!("../../tests/fixtures/sidecar_state_v2_file.json");
    let path = sd
        .path()
        .join(FILES_DIR)
        .join(record_file("catalina.2026-11-24.log"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), golden.trim_end());
    std::fs::write(&path, b"{").unwrap();
    assert!(matches!(sd.load(), Err(StateError::Invalid { .. })));
}

#[test]
fn a_full_disk_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = StateDir::new(dir.path());
    let files = dir.path().join(FILES_DIR);
    std::fs::create_dir_all(&files).unwrap();
    let tmp = files.join(format!("{}.tmp", record_file(&record().name)));
    // Writing to /dev/full fails with ENOSPC, like a full disk.
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let e = sd.save_file(&record()).unwrap_err();
    assert!(e.to_string().contains(&tmp.display().to_string()), "{e}");
    assert_eq!(sd.bytes_written, 0);
    // A segment record that cannot be written is not kept in memory either.
    let before = sd.segment().clone();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("segment.json.tmp")).unwrap();
    let intent = SegmentIntent {
        seq: before.next_seq,
        gzip_level: 1,
        parts: Vec::new(),
    };
    assert!(sd.intend(intent).is_err());
    assert!(sd.segment_done(before.next_seq).is_err());
    assert_eq!(sd.segment(), &before);
    // Nor is a reset that fails (`files` is not a directory here).
    std::fs::remove_dir_all(&files).unwrap();
    std::fs::write(&files, b"").unwrap();
    assert!(sd.reset().is_err());
    assert_eq!(sd.segment(), &before);
}

#[test]
fn version_1_state_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.json"), br#"{"version":1}"#).unwrap();
    let e = StateDir::new(dir.path()).load().unwrap_err();
    assert!(
        e.to_string().contains("state.json") && e.to_string().contains("version 1"),
        "{e}"
    );
}

#[test]
fn a_write_costs_one_record_whatever_the_number_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = StateDir::new(dir.path());
    let mut cost = Vec::new();
    for n in [1usize, 300] {
        for i in 0..n {
            let mut r = record();
            r.name = format!("f{n:04}-{i:04}.log");
            sd.save_file(&r).unwrap();
        }
        let before = sd.bytes_written;
        let mut r = record();
        r.name = format!("f{n:04}-0000.log");
        r.offset += 1;
        sd.save_file(&r).unwrap();
        cost.push(sd.bytes_written - before);
    }
    assert_eq!(cost[0], cost[1]);
}
