//! The library's `Sidecar` driven pass by pass, in-process, against moto's S3
//! through the real `S3` adapter: task segments as the shipper reads them,
//! files cut at one moment sharing one object, the size bound, lines never
//! cut while their writer may finish them, early flushes, rewrites in place,
//! the open-file budget, the state's cost per segment, and the crash rule.
//! The age rules' clock is moved with `advance_clock`, never waited on.
//!
//! Faults are injected over the real adapter by `Faulty` (a put stored whose
//! answer is lost, or answered with an error), which also refuses a second
//! upload of a key with other bytes.

use crate::rig::TASK;
use crate::sidecar::age;
use crate::sidecar_rig::{SidecarRig, append, assert_tiles, get_lines, ranges};
use logdrop::aws::s3::S3;
use logdrop::config::Env;
use logdrop::core::keys::ChunkKey;
use logdrop::core::segment::SegmentKey;
use logdrop::ports::{Object, ObjectStore, PortError};
use logdrop::sidecar::state::{FileRecord, STATE_VERSION, StateDir, TaskDoc};
use logdrop::sidecar::{Config, Mode, Sidecar};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCESS: &str = "localhost_access_log.2026-11-24.txt";
const JULI: &str = "catalina.2026-11-24.log";
const LOCALHOST: &str = "localhost.2026-11-24.log";

/// The real S3 adapter, recording every put's key in order; when `hang` is
/// set the next put stores its object and then never answers (an answer
/// lost); when `fail` is set it stores it and answers with an error. Before
/// each put it reads the key back: an object already there must get the same
/// bytes again.
#[derive(Clone)]
struct Faulty {
    s3: S3,
    puts: Arc<Mutex<Vec<String>>>,
    hang: Arc<AtomicBool>,
    hung: Arc<tokio::sync::Notify>,
    fail: Arc<AtomicBool>,
}

impl Faulty {
    fn new(s: &SidecarRig) -> Faulty {
        Faulty {
            s3: s.rig.s3.clone(),
            puts: Default::default(),
            hang: Default::default(),
            hung: Default::default(),
            fail: Default::default(),
        }
    }

    /// Every key put, in order, a retried key as often as it was put.
    fn keys(&self) -> Vec<String> {
        self.puts.lock().unwrap().clone()
    }
}

/// The object under `key`, or `None` when there is none.
async fn stored(s3: &S3, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match s3
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(out) => Some(out.body.collect().await.expect("body").to_vec()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
        Err(e) => panic!("get {key}: {e:?}"),
    }
}

impl ObjectStore for Faulty {
    async fn get(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        self.s3.get(bucket, key).await
    }

    async fn put(&self, bucket: &str, key: &str, body: bytes::Bytes) -> Result<(), PortError> {
        self.puts.lock().unwrap().push(key.to_string());
        if let Some(previous) = stored(&self.s3, bucket, key).await {
            assert!(previous == body, "{key} uploaded again with other bytes");
        }
        self.s3.put(bucket, key, body).await?;
        if self.hang.swap(false, Ordering::SeqCst) {
            self.hung.notify_one();
            std::future::pending::<()>().await;
        }
        if self.fail.swap(false, Ordering::SeqCst) {
            return Err(PortError::Transient("stored, answered 500".into()));
        }
        Ok(())
    }
}

/// The sidecar's configuration for the rig's bucket and log directory,
/// following `files` (comma-separated patterns).
fn config(s: &SidecarRig, files: &str, extra: &[(&str, &str)]) -> Config {
    let log_dir = s.log_dir().display().to_string();
    let mut pairs = vec![
        ("LOGDROP_BUCKET", s.rig.bucket.as_str()),
        ("LOGDROP_LOG_DIR", log_dir.as_str()),
        ("LOGDROP_FILES", files),
    ];
    pairs.extend_from_slice(extra);
    Config::from_env(&Env::from_pairs(pairs)).expect("config")
}

/// Access logs and JULI files, as Tomcat names them.
fn files_config(s: &SidecarRig, extra: &[(&str, &str)]) -> Config {
    config(s, "*.txt,*.log", extra)
}

async fn sidecar(s: &SidecarRig, store: &Faulty, config: Config) -> Sidecar<Faulty> {
    Sidecar::start(store.clone(), config, s.rig.cluster.clone(), TASK.into())
        .await
        .expect("start")
}

/// `n` JULI events of two lines each (a message and a stack frame).
fn juli(n: usize, tag: &str) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "24-Nov-2026 10:00:{:02}.000 INFO [main] {tag} {i}\n\tat x.y(Z.java:{i})\n",
                i % 60
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// The chunks of (file, generation) in the bucket must tile `content`.
async fn assert_shipped(s: &SidecarRig, file: &str, generation: u64, content: &[u8]) {
    let chunks = s.chunks().await;
    let c = chunks
        .get(&(file.to_string(), generation))
        .unwrap_or_else(|| panic!("{file} gen {generation}: nothing shipped"));
    assert_tiles(c, content, &format!("{file} gen {generation}"));
}

/// The segment stored under `key`: its parts in manifest order, decompressed.
async fn parts(s: &SidecarRig, key: &str) -> Vec<(ChunkKey, Vec<u8>)> {
    let body = stored(&s.rig.s3, &s.rig.bucket, key)
        .await
        .unwrap_or_else(|| panic!("{key} is not in the bucket"));
    ranges(key, &body)
}

/// Every part of the segment under `key` must be exactly its file's bytes;
/// returns the parts as (file, start, end).
async fn assert_parts_are_file_bytes(s: &SidecarRig, key: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for (k, bytes) in parts(s, key).await {
        let file = std::fs::read(s.path(&k.file)).unwrap();
        assert!(
            bytes[..] == file[k.start as usize..k.end as usize],
            "{key}: part {} {}-{} is not the file's bytes",
            k.file,
            k.start,
            k.end
        );
        out.push((k.file, k.start, k.end));
    }
    out
}

/// The parts uploaded for `file`, as (start, end), in upload order.
async fn parts_of(s: &SidecarRig, store: &Faulty, file: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for key in store.keys() {
        out.extend(
            parts(s, &key)
                .await
                .into_iter()
                .filter(|(k, _)| k.file == file)
                .map(|(k, _)| (k.start, k.end)),
        );
    }
    out
}

/// Starts a sidecar, lets its next put store the segment and never answer, and drops it.
async fn crash_during_upload(s: &SidecarRig, store: &Faulty, config: Config) {
    let mut sc = sidecar(s, store, config).await;
    store.hang.store(true, Ordering::SeqCst);
    tokio::select! {
        _ = sc.pass(Mode::Drain) => panic!("the put hangs"),
        _ = store.hung.notified() => {}
    }
}

#[tokio::test]
async fn a_rewrite_in_place_keeping_inode_length_and_tail_is_a_new_generation() {
    let s = SidecarRig::new("sp-rewrite").await;
    let store = Faulty::new(&s);
    let day1 = s.path("catalina.2026-11-24.log");
    let day2 = s.path("catalina.2026-11-25.log");
    let a = juli(20, "a");
    append(&day1, &a);
    let mut sc = sidecar(&s, &store, config(&s, "*.log", &[])).await;
    sc.pass(Mode::Drain).await.unwrap();
    // Rotation: a new dated name; the old one is done.
    let b = juli(5, "b");
    append(&day2, &b);
    sc.pass(Mode::Drain).await.unwrap();
    // A rewrite in place that keeps the inode, the length and the last bytes.
    let mut a2 = a.clone();
    a2[..24].copy_from_slice(b"25-Nov-2026 10:00:00.000");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&day1)
        .unwrap()
        .write_all(&a2)
        .unwrap();
    sc.pass(Mode::Drain).await.unwrap();
    assert_shipped(&s, "catalina.2026-11-24.log", 0, &a).await;
    assert_shipped(&s, "catalina.2026-11-24.log", 1, &a2).await;
    assert_shipped(&s, "catalina.2026-11-25.log", 0, &b).await;
}

/// A generation that ended while the sidecar ran (its file truncated) stays
/// over across a restart: the file under the name then, with the same inode,
/// length and bytes as that generation, is the next one, shipped whole.
#[tokio::test]
async fn a_generation_ended_before_a_restart_stays_over() {
    let s = SidecarRig::new("sp-finished").await;
    let store = Faulty::new(&s);
    let path = s.path(JULI);
    let a = juli(3, "a");
    append(&path, &a);
    let mut sc = sidecar(&s, &store, config(&s, "*.log", &[])).await;
    sc.pass(Mode::Drain).await.unwrap();
    std::fs::File::create(&path).unwrap(); // truncated: the generation ends
    sc.pass(Mode::Drain).await.unwrap();
    drop(sc);
    std::fs::write(&path, &a).unwrap();
    let mut sc = sidecar(&s, &store, config(&s, "*.log", &[])).await;
    sc.pass(Mode::Drain).await.unwrap();
    assert_shipped(&s, JULI, 0, &a).await;
    assert_shipped(&s, JULI, 1, &a).await;
}

/// The segment record's write fails (a full disk, after earlier uploads):
/// nothing is uploaded without it, the error names the path, and once it can
/// be written every byte ships once, without a restart. (A read-only state
/// directory from the start is `sidecar_faults`'.)
#[tokio::test]
async fn nothing_is_uploaded_while_the_segment_record_cannot_be_written() {
    let s = SidecarRig::new("sp-intent-enospc").await;
    let store = Faulty::new(&s);
    let path = s.path(JULI);
    let a = juli(3, "a");
    append(&path, &a);
    let config = config(&s, "*.log", &[]);
    // Every record is written through `<name>.tmp`, then renamed.
    let tmp = config.state_dir.join("segment.json.tmp");
    let mut sc = sidecar(&s, &store, config).await;
    sc.pass(Mode::Drain).await.unwrap();
    let puts = store.keys().len();
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let b = juli(2, "b");
    append(&path, &b);
    for _ in 0..2 {
        let e = sc.pass(Mode::Drain).await.unwrap_err();
        assert!(e.to_string().contains(&tmp.display().to_string()), "{e}");
    }
    assert_eq!(
        store.keys().len(),
        puts,
        "uploaded without a recorded intent"
    );
    std::fs::remove_file(&tmp).unwrap();
    sc.pass(Mode::Drain).await.unwrap();
    assert_shipped(&s, JULI, 0, &[a, b].concat()).await;
}

#[tokio::test]
async fn recording_a_segment_costs_the_same_with_many_files() {
    let mut costs = Vec::new();
    for n in [1usize, 400] {
        let s = SidecarRig::new("sp-state-cost").await;
        for i in 0..n {
            append(&s.path(&format!("f{i:04}.log")), b"line\n");
        }
        let store = Faulty::new(&s);
        let mut sc = sidecar(&s, &store, config(&s, "*.log", &[])).await;
        sc.pass(Mode::Drain).await.unwrap();
        append(&s.path("f0000.log"), b"another line\n");
        let before = sc.state_bytes_written();
        sc.pass(Mode::Drain).await.unwrap();
        costs.push(sc.state_bytes_written() - before);
    }
    eprintln!("state bytes written for one segment: {costs:?}");
    assert_eq!(costs[0], costs[1], "bytes of state per segment");
    assert!(costs[0] > 0 && costs[0] < 2048, "{costs:?}");
}

/// The default delay's half (the rotated file pruned, the newest spared) is
/// `sidecar::prunes_rotated_files_but_never_the_newest_of_a_series`.
#[tokio::test]
async fn pruning_can_be_off() {
    let s = SidecarRig::new("sp-prune-off").await;
    let old = s.path("catalina.2026-11-24.log");
    let new = s.path("catalina.2026-11-25.log");
    append(&old, &juli(2, "old"));
    append(&new, &juli(2, "new"));
    // Both quiet for longer than the default delay.
    age(&old, Duration::from_secs(3 * 3600));
    age(&new, Duration::from_secs(2 * 3600));
    let extra = [
        ("LOGDROP_FLUSH_INTERVAL", "0s"),
        ("LOGDROP_HOLD_TIMEOUT", "0s"),
        ("LOGDROP_PRUNE_AFTER", "off"),
    ];
    let store = Faulty::new(&s);
    let mut sc = sidecar(&s, &store, config(&s, "*.log", &extra)).await;
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(sc.lag_bytes(), 0);
    sc.pass(Mode::Follow).await.unwrap();
    assert!(old.exists(), "pruned with pruning off");
    assert!(new.exists(), "the newest file was pruned");
}

#[tokio::test]
async fn open_handles_stay_within_the_budget() {
    let s = SidecarRig::new("sp-budget").await;
    let names: Vec<String> = (0..40).map(|i| format!("f{i:02}.log")).collect();
    for n in &names {
        append(&s.path(n), b"one\n");
    }
    let store = Faulty::new(&s);
    let extra = [
        ("LOGDROP_FLUSH_INTERVAL", "0s"),
        ("LOGDROP_HOLD_TIMEOUT", "0s"),
    ];
    let mut sc = sidecar(&s, &store, config(&s, "*.log", &extra)).await;
    sc.set_max_open(8);
    for round in 0..3 {
        for n in &names {
            append(&s.path(n), format!("round {round}\n").as_bytes());
        }
        sc.pass(Mode::Follow).await.unwrap();
        assert!(sc.open_files() <= 8, "{} files open", sc.open_files());
        assert_eq!(sc.lag_bytes(), 0, "round {round}");
    }
    let chunks = s.chunks().await;
    for n in &names {
        assert_tiles(
            &chunks[&(n.clone(), 0)],
            b"one\nround 0\nround 1\nround 2\n",
            n,
        );
    }
}

#[tokio::test]
async fn files_cut_at_one_moment_share_one_segment_that_round_trips() {
    let s = SidecarRig::new("sp-one-moment").await;
    let store = Faulty::new(&s);
    append(&s.path(ACCESS), &get_lines(0, 30));
    let mut sc = sidecar(&s, &store, files_config(&s, &[])).await;
    sc.pass(Mode::Follow).await.unwrap();
    sc.advance_clock(Duration::from_secs(30));
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(store.keys(), Vec::<String>::new(), "nothing is due yet");
    // Only the access log is old enough (61 s); the others, just written,
    // go with it.
    sc.advance_clock(Duration::from_secs(31));
    append(&s.path(JULI), &juli(3, "a"));
    append(&s.path(LOCALHOST), &juli(2, "l"));
    sc.pass(Mode::Follow).await.unwrap();
    let keys = store.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let prefix = format!("logs/{}/{TASK}/segment/", s.rig.cluster);
    assert!(keys[0].starts_with(&prefix), "{keys:?}");
    let got = assert_parts_are_file_bytes(&s, &keys[0]).await;
    let one_juli = juli(1, "a").len() as u64;
    // Stable order (by name); JULI files hold their last event (it may grow).
    assert_eq!(
        got,
        [
            (JULI.to_string(), 0, 2 * one_juli),
            (LOCALHOST.to_string(), 0, juli(1, "l").len() as u64),
            (ACCESS.to_string(), 0, get_lines(0, 30).len() as u64),
        ]
    );
    // Shutdown ships the held events, in the next segment.
    sc.stop().await;
    let keys = store.keys();
    assert_eq!(keys.len(), 2);
    assert_parts_are_file_bytes(&s, &keys[1]).await;
    assert_shipped(&s, ACCESS, 0, &get_lines(0, 30)).await;
    assert_shipped(&s, JULI, 0, &juli(3, "a")).await;
    assert_shipped(&s, LOCALHOST, 0, &juli(2, "l")).await;
}

#[tokio::test]
async fn one_object_per_task_minute_at_the_defaults() {
    // Issue 9's task: one access line a second, one JULI line a minute.
    let s = SidecarRig::new("sp-per-minute").await;
    let store = Faulty::new(&s);
    let mut sc = sidecar(&s, &store, files_config(&s, &[])).await;
    let minutes = 30;
    let mut juli_all = Vec::new();
    for minute in 0..minutes {
        append(&s.path(ACCESS), &get_lines(minute * 60, 60));
        let line = format!("24-Nov-2026 10:{minute:02}:00.000 INFO [main] m {minute}\n");
        append(&s.path(JULI), line.as_bytes());
        juli_all.extend_from_slice(line.as_bytes());
        // Polls within the minute cut nothing.
        sc.pass(Mode::Follow).await.unwrap();
        sc.advance_clock(Duration::from_secs(60));
        sc.pass(Mode::Follow).await.unwrap();
        // The minute's JULI line is not held for another flush: the file
        // has been quiet for longer than the hold time-out.
        assert_eq!(
            sc.lag_bytes(),
            0,
            "minute {minute}: lines wait for another flush"
        );
    }
    let objects = store.keys().len();
    eprintln!("{objects} objects for {minutes} task-minutes");
    assert_eq!(objects, minutes, "one segment per flush, both files in it");
    sc.stop().await;
    assert_shipped(&s, ACCESS, 0, &get_lines(0, minutes * 60)).await;
    assert_shipped(&s, JULI, 0, &juli_all).await;
}

#[tokio::test]
async fn a_segment_holds_at_most_chunk_bytes() {
    let s = SidecarRig::new("sp-size-bound").await;
    let store = Faulty::new(&s);
    let names: Vec<String> = (0..12).map(|i| format!("f{i:02}.log")).collect();
    let content = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n".repeat(20);
    for n in &names {
        append(&s.path(n), &content); // 1280 bytes each
    }
    let mut sc = sidecar(
        &s,
        &store,
        config(&s, "*.log", &[("LOGDROP_CHUNK_BYTES", "4096")]),
    )
    .await;
    sc.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    for key in &keys {
        let parts = assert_parts_are_file_bytes(&s, key).await;
        let total: u64 = parts.iter().map(|(_, start, end)| end - start).sum();
        assert!(total <= 4096, "{key}: {total} bytes");
    }
    // Three whole files fit in 4096 bytes; the fourth goes to the next segment.
    assert_eq!(keys.len(), 4);
    let chunks = s.chunks().await;
    for n in &names {
        assert_tiles(&chunks[&(n.clone(), 0)], &content, n);
    }
}

#[tokio::test]
async fn a_crash_during_an_upload_reuploads_the_same_segment_first() {
    let s = SidecarRig::new("sp-crash").await;
    let store = Faulty::new(&s);
    let a = get_lines(0, 50);
    let j = juli(4, "j");
    append(&s.path(ACCESS), &a);
    append(&s.path(JULI), &j);
    crash_during_upload(&s, &store, files_config(&s, &[("LOGDROP_GZIP_LEVEL", "1")])).await;
    let interrupted = store.keys()[0].clone();
    let first = stored(&s.rig.s3, &s.rig.bucket, &interrupted)
        .await
        .unwrap();
    // Written while down, and restarted with another gzip level.
    let (a2, j2) = (get_lines(50, 5), juli(2, "k"));
    append(&s.path(ACCESS), &a2);
    append(&s.path(JULI), &j2);
    let mut sc = sidecar(&s, &store, files_config(&s, &[("LOGDROP_GZIP_LEVEL", "9")])).await;
    sc.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    assert_eq!(keys[1], interrupted, "the recorded segment goes first");
    // `Faulty::put` also refuses a second upload of a key with other bytes.
    assert_eq!(
        stored(&s.rig.s3, &s.rig.bucket, &interrupted)
            .await
            .unwrap(),
        first
    );
    let seq = |k: &str| SegmentKey::parse(k, "logs").unwrap().seq;
    assert_eq!(seq(&keys[2]), seq(&interrupted) + 1, "{keys:?}");
    assert_shipped(&s, ACCESS, 0, &[a, a2].concat()).await;
    assert_shipped(&s, JULI, 0, &[j, j2].concat()).await;
}

#[tokio::test]
async fn a_part_whose_file_changed_while_down_is_given_up_alone() {
    let s = SidecarRig::new("sp-given-up").await;
    let store = Faulty::new(&s);
    let a = get_lines(0, 50);
    append(&s.path(ACCESS), &a);
    append(&s.path(JULI), &juli(4, "j"));
    crash_during_upload(&s, &store, files_config(&s, &[])).await;
    let interrupted = store.keys()[0].clone();
    // Replaced while down: the recorded part cannot be read again.
    std::fs::remove_file(s.path(JULI)).unwrap();
    let j2 = juli(3, "new");
    append(&s.path(JULI), &j2);
    let mut sc = sidecar(&s, &store, files_config(&s, &[])).await;
    sc.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    assert!(
        !keys[1..].contains(&interrupted),
        "a key is never written again with other bytes"
    );
    // The access part, exactly its recorded range, goes under the next number.
    let got = assert_parts_are_file_bytes(&s, &keys[1]).await;
    assert_eq!(got, [(ACCESS.to_string(), 0, a.len() as u64)]);
    assert_shipped(&s, ACCESS, 0, &a).await;
    // The new file under the name is the next generation, shipped whole.
    assert_shipped(&s, JULI, 1, &j2).await;
}

#[tokio::test]
async fn a_chunk_an_earlier_version_was_uploading_goes_exactly_into_a_segment() {
    // The state a layout 1 sidecar leaves when it dies during an upload: the
    // file's record names the chunk in flight (it may or may not be in S3).
    let s = SidecarRig::new("sp-v1-inflight").await;
    let store = Faulty::new(&s);
    let a = get_lines(0, 40);
    append(&s.path(ACCESS), &a);
    let config = files_config(&s, &[]);
    let meta = std::fs::metadata(s.path(ACCESS)).unwrap();
    let mut st = StateDir::new(&config.state_dir);
    st.save_task(&TaskDoc {
        version: STATE_VERSION,
        cluster: s.rig.cluster.clone(),
        task_id: TASK.into(),
    })
    .unwrap();
    let mut rec = FileRecord {
        version: STATE_VERSION,
        name: ACCESS.into(),
        ..FileRecord::default()
    };
    rec.identity.dev = Some(std::os::unix::fs::MetadataExt::dev(&meta));
    rec.identity.inode = std::os::unix::fs::MetadataExt::ino(&meta);
    rec.uploading = Some((0, a.len() as u64));
    st.save_file(&rec).unwrap();
    let more = get_lines(40, 7);
    append(&s.path(ACCESS), &more);
    let mut sc = sidecar(&s, &store, config).await;
    sc.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    let got = assert_parts_are_file_bytes(&s, &keys[0]).await;
    // The same range: the shipper stores it once, whichever copy it reads first.
    assert_eq!(got[0], (ACCESS.to_string(), 0, a.len() as u64));
    assert_shipped(&s, ACCESS, 0, &[a, more].concat()).await;
}

/// One access line of 75 bytes.
fn line(i: usize) -> Vec<u8> {
    let l =
        format!("10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /{i:04}.html HTTP/1.1\" 200 16\n");
    assert_eq!(l.len(), 75);
    l.into_bytes()
}

#[tokio::test]
async fn a_line_a_buffered_writer_has_not_finished_is_not_cut() {
    // Tomcat's buffered access log writes its buffer when full, mid-line, and
    // the rest at its background flush: here the file holds one line and 30
    // bytes of the next, and the rest comes 8 s later (flush 5 s, hold 5 s).
    let s = SidecarRig::new("sp-buffered").await;
    let store = Faulty::new(&s);
    let path = s.path(ACCESS);
    let (one, two) = (line(1), line(2));
    append(&path, &[&one[..], &two[..30]].concat());
    let extra = [
        ("LOGDROP_FLUSH_INTERVAL", "5s"),
        ("LOGDROP_HOLD_TIMEOUT", "5s"),
    ];
    let mut sc = sidecar(&s, &store, files_config(&s, &extra)).await;
    sc.pass(Mode::Follow).await.unwrap();
    sc.advance_clock(Duration::from_secs(5));
    sc.pass(Mode::Follow).await.unwrap();
    sc.advance_clock(Duration::from_secs(3));
    append(&path, &two[30..]);
    sc.pass(Mode::Follow).await.unwrap();
    sc.advance_clock(Duration::from_secs(2));
    sc.pass(Mode::Follow).await.unwrap();
    // Before: cut at 105, inside the second line, which became two events.
    assert_eq!(parts_of(&s, &store, ACCESS).await, vec![(0, 75), (75, 150)]);
    assert_eq!(sc.totals().forced_cuts, 0);
    assert_eq!(sc.lag_bytes(), 0);
}

#[tokio::test]
async fn a_line_left_unfinished_ships_after_the_line_time_out_or_at_a_stop_counted() {
    let s = SidecarRig::new("sp-unfinished").await;
    let store = Faulty::new(&s);
    let path = s.path(ACCESS);
    let (one, two, three) = (line(1), line(2), line(3));
    append(&path, &one);
    let mut sc = sidecar(&s, &store, files_config(&s, &[])).await;
    sc.pass(Mode::Follow).await.unwrap();
    sc.advance_clock(Duration::from_secs(30));
    append(&path, &two[..30]);
    sc.pass(Mode::Follow).await.unwrap();
    // The flush a minute after the first line takes the whole line only.
    sc.advance_clock(Duration::from_secs(30));
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(parts_of(&s, &store, ACCESS).await, vec![(0, 75)]);
    // The writer adds to the line: the next flush finds it changed 55 s ago.
    sc.advance_clock(Duration::from_secs(5));
    append(&path, &two[30..40]);
    sc.pass(Mode::Follow).await.unwrap();
    sc.advance_clock(Duration::from_secs(55));
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(
        parts_of(&s, &store, ACCESS).await,
        vec![(0, 75)],
        "still held"
    );
    // The flush after finds it unchanged for longer than the line time-out.
    sc.advance_clock(Duration::from_secs(60));
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(parts_of(&s, &store, ACCESS).await, vec![(0, 75), (75, 115)]);
    assert_eq!(sc.totals().forced_cuts, 1);
    // A stop ships a line without its newline as is, counted too.
    append(&path, &[&two[40..], &three[..10]].concat());
    sc.stop().await;
    assert_eq!(
        parts_of(&s, &store, ACCESS).await,
        vec![(0, 75), (75, 115), (115, 160)]
    );
    assert_eq!(sc.totals().forced_cuts, 2);
    assert_shipped(&s, ACCESS, 0, &[&one[..], &two[..], &three[..10]].concat()).await;
}

#[tokio::test]
async fn a_rotated_file_ships_its_unfinished_line_at_the_next_flush() {
    let s = SidecarRig::new("sp-rotated-line").await;
    let store = Faulty::new(&s);
    let old = "localhost_access_log.2026-11-24.txt";
    let new = "localhost_access_log.2026-11-25.txt";
    let (one, two) = (line(1), line(2));
    append(&s.path(old), &[&one[..], &two[..30]].concat());
    age(&s.path(old), Duration::from_secs(3600));
    let mut sc = sidecar(&s, &store, files_config(&s, &[])).await;
    sc.pass(Mode::Follow).await.unwrap();
    append(&s.path(new), &two);
    sc.advance_clock(Duration::from_secs(60));
    sc.pass(Mode::Follow).await.unwrap();
    // Its writer moved on to the newer name: nothing will finish the line.
    assert_eq!(parts_of(&s, &store, old).await, vec![(0, 105)]);
    assert_eq!(sc.totals().forced_cuts, 1);
}

#[tokio::test]
async fn a_later_name_written_earlier_is_not_a_rotation() {
    // fileDateFormat="dd-MM-yyyy": on 1 December the file Tomcat writes sorts
    // before November's last; only a later name written later is a rotation.
    let s = SidecarRig::new("sp-not-rotation").await;
    let store = Faulty::new(&s);
    let old = "localhost_access_log.30-11-2026.txt";
    let now = "localhost_access_log.01-12-2026.txt";
    let (one, two) = (line(1), line(2));
    append(&s.path(old), &one);
    age(&s.path(old), Duration::from_secs(3600));
    append(&s.path(now), &[&one[..], &two[..30]].concat());
    let mut sc = sidecar(&s, &store, files_config(&s, &[])).await;
    sc.pass(Mode::Follow).await.unwrap();
    sc.advance_clock(Duration::from_secs(60));
    append(&s.path(now), &two[30..40]);
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(parts_of(&s, &store, now).await, vec![(0, 75)]);
    assert_eq!(parts_of(&s, &store, old).await, vec![(0, 75)]);
    assert_eq!(sc.totals().forced_cuts, 0);
}

#[tokio::test]
async fn a_failed_upload_is_retried_with_the_same_key_and_bytes_first() {
    let s = SidecarRig::new("sp-failed").await;
    let store = Faulty::new(&s);
    let (a, j) = (get_lines(0, 20), juli(3, "j"));
    append(&s.path(ACCESS), &a);
    append(&s.path(JULI), &j);
    let mut sc = sidecar(&s, &store, files_config(&s, &[])).await;
    sc.set_max_attempts(1);
    store.fail.store(true, Ordering::SeqCst);
    assert!(
        sc.pass(Mode::Drain).await.is_err(),
        "the one attempt failed"
    );
    let (a2, j2) = (get_lines(20, 3), juli(1, "k"));
    append(&s.path(ACCESS), &a2);
    append(&s.path(JULI), &j2);
    sc.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    // `Faulty::put` refuses the same key with other bytes.
    assert_eq!(keys[1], keys[0], "the recorded segment goes first");
    assert_eq!(keys.len(), 3, "then one segment for what came since");
    assert_shipped(&s, ACCESS, 0, &[a, a2].concat()).await;
    assert_shipped(&s, JULI, 0, &[j, j2].concat()).await;
}

#[tokio::test]
async fn an_error_ships_within_one_poll_and_storms_are_rate_limited() {
    let s = SidecarRig::new("sp-early").await;
    let store = Faulty::new(&s);
    let mut sc = sidecar(&s, &store, files_config(&s, &[])).await;
    let path = s.path(JULI);
    let info = |i: usize| format!("24-Nov-2026 10:00:{i:02}.000 INFO [main] ok {i}\n");
    let severe = |i: usize| {
        format!("24-Nov-2026 10:00:{i:02}.000 SEVERE [main] boom {i}\n\tat x.y(Z.java:{i})\n")
    };
    append(&path, info(0).as_bytes());
    sc.pass(Mode::Follow).await.unwrap();
    assert!(
        store.keys().is_empty(),
        "an INFO line waits for the interval"
    );
    // An error whose stack trace may still grow waits until the next event
    // starts (or the file is quiet for the hold time-out)...
    append(&path, severe(1).as_bytes());
    sc.pass(Mode::Follow).await.unwrap();
    assert!(store.keys().is_empty(), "the trace may still grow");
    // ...and then ships at the next poll, long before the interval.
    append(&path, info(2).as_bytes());
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(store.keys().len(), 1, "one early flush");
    let shipped = [info(0), severe(1)].concat();
    assert_shipped(&s, JULI, 0, shipped.as_bytes()).await;
    assert_eq!(sc.totals().early_flushes, 1);
    // A storm: errors every poll ship at most once per minimum interval.
    // Polls 1 s apart from the first early flush: 10 s of errors (11 polls)
    // make one more, at the tenth second.
    for i in 3..14 {
        append(&path, [severe(i), info(i)].concat().as_bytes());
        sc.pass(Mode::Follow).await.unwrap();
        sc.advance_clock(Duration::from_secs(1));
    }
    assert_eq!(
        store.keys().len(),
        2,
        "10 s of errors, one more early flush"
    );
    // A lone error in a quiet file goes once the hold time-out has passed.
    sc.advance_clock(Duration::from_secs(60));
    sc.pass(Mode::Follow).await.unwrap();
    let before = store.keys().len();
    append(&path, severe(20).as_bytes());
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(store.keys().len(), before, "not quiet yet");
    sc.advance_clock(Duration::from_secs(5));
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(
        store.keys().len(),
        before + 1,
        "quiet for the hold time-out"
    );
    assert_eq!(sc.lag_bytes(), 0);
    sc.stop().await;
    let mut all = [info(0), severe(1), info(2)].concat();
    for i in 3..14 {
        all += &[severe(i), info(i)].concat();
    }
    all += &severe(20);
    assert_shipped(&s, JULI, 0, all.as_bytes()).await;
}

#[tokio::test]
async fn the_early_flush_can_be_off_or_follow_5xx() {
    let s = SidecarRig::new("sp-early-off").await;
    let store = Faulty::new(&s);
    let off = [("LOGDROP_EARLY_FLUSH_LEVEL", "off")];
    let mut sc = sidecar(&s, &store, files_config(&s, &off)).await;
    append(
        &s.path(JULI),
        b"24-Nov-2026 10:00:00.000 SEVERE [main] boom\n24-Nov-2026 10:00:01.000 INFO [main] x\n",
    );
    sc.pass(Mode::Follow).await.unwrap();
    assert!(store.keys().is_empty(), "off: errors wait for the interval");
    let s = SidecarRig::new("sp-early-5xx").await;
    let store = Faulty::new(&s);
    let on = [("LOGDROP_EARLY_FLUSH_5XX", "true")];
    let mut sc = sidecar(&s, &store, files_config(&s, &on)).await;
    let log = s.path(ACCESS);
    append(&log, &get_lines(0, 3));
    sc.pass(Mode::Follow).await.unwrap();
    assert!(store.keys().is_empty(), "200s wait");
    append(
        &log,
        b"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /x HTTP/1.1\" 503 5\n",
    );
    sc.pass(Mode::Follow).await.unwrap();
    assert_eq!(store.keys().len(), 1, "a 503 ships at once");
}
