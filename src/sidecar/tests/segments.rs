//! Task segments decoded as the shipper reads them, files cut at one moment
//! sharing one object, the size bound, lines never cut while their writer
//! may finish them, and the crash rule. The age rules' clock is moved by hand
//! (`age_all`), never waited on.

use super::*;
use crate::sidecar::state::{FileRecord, StateDir, TaskDoc};
use std::time::Instant;

const ACCESS: &str = "localhost_access_log.2026-11-24.txt";
const JULI: &str = "catalina.2026-11-24.log";
const LOCALHOST: &str = "localhost.2026-11-24.log";

fn files_config(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut pairs = vec![("LOGDROP_FILES", "*.txt,*.log")];
    pairs.extend_from_slice(extra);
    config(dir, &pairs)
}

fn access(from: usize, n: usize) -> Vec<u8> {
    (from..from + n)
        .map(|i| format!("10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /{i} HTTP/1.1\" 200 5\n"))
        .collect::<String>()
        .into_bytes()
}

/// Moves the sidecar's clock on by `by`.
fn age_all(s: &mut Sidecar<Recording>, by: Duration) {
    s.advance_clock(by);
}

/// Every part of the segment under `key` must be exactly its file's bytes.
fn assert_parts_are_file_bytes(store: &Recording, dir: &Path, key: &str) -> Manifest {
    let body = store.store.body("b", key).unwrap();
    let (manifest, plain) = decode_segment(&body);
    for (p, bytes) in manifest.parts.iter().zip(&plain) {
        let file = std::fs::read(dir.join(&p.file)).unwrap();
        assert!(
            bytes[..] == file[p.start as usize..p.end as usize],
            "{key}: part {} {}-{} is not the file's bytes",
            p.file,
            p.start,
            p.end
        );
    }
    manifest
}

#[tokio::test]
async fn files_cut_at_one_moment_share_one_segment_that_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    append(&dir.path().join(ACCESS), &access(0, 30));
    append(&dir.path().join(JULI), &juli(3, "a"));
    append(&dir.path().join(LOCALHOST), &juli(2, "l"));
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(store.keys(), Vec::<String>::new(), "nothing is due yet");
    // Only the access log is old enough; the others go with it.
    let f = s.followed.get_mut(ACCESS).unwrap();
    f.pending_since = Some(Instant::now() - Duration::from_secs(61));
    s.pass(Mode::Follow).await.unwrap();
    let keys = store.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("logs/c/t/segment/"), "{keys:?}");
    let m = assert_parts_are_file_bytes(&store, dir.path(), &keys[0]);
    let got: Vec<(&str, u64, u64)> = m
        .parts
        .iter()
        .map(|p| (p.file.as_str(), p.start, p.end))
        .collect();
    let one_juli = juli(1, "a").len() as u64;
    // Stable order (by name); JULI files hold their last event (it may grow).
    assert_eq!(
        got,
        [
            (JULI, 0, 2 * one_juli),
            (LOCALHOST, 0, juli(1, "l").len() as u64),
            (ACCESS, 0, access(0, 30).len() as u64),
        ]
    );
    // Shutdown ships the held events, in the next segment.
    s.stop().await;
    assert_eq!(store.keys().len(), 2);
    assert_parts_are_file_bytes(&store, dir.path(), &store.keys()[1]);
    store.assert_tiles(ACCESS, 0, &access(0, 30));
    store.assert_tiles(JULI, 0, &juli(3, "a"));
    store.assert_tiles(LOCALHOST, 0, &juli(2, "l"));
}

#[tokio::test]
async fn one_object_per_task_minute_at_the_defaults() {
    // Issue 9's task: one access line a second, one JULI line a minute.
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    let minutes = 30;
    let mut juli_all = Vec::new();
    for minute in 0..minutes {
        append(&dir.path().join(ACCESS), &access(minute * 60, 60));
        let line = format!("24-Nov-2026 10:{minute:02}:00.000 INFO [main] m {minute}\n");
        append(&dir.path().join(JULI), line.as_bytes());
        juli_all.extend_from_slice(line.as_bytes());
        // Polls within the minute cut nothing.
        s.pass(Mode::Follow).await.unwrap();
        age_all(&mut s, Duration::from_secs(60));
        s.pass(Mode::Follow).await.unwrap();
        // The minute's JULI line is not held for another flush: the file
        // has been quiet for longer than the hold time-out.
        assert_eq!(
            s.lag_bytes(),
            0,
            "minute {minute}: lines wait for another flush"
        );
    }
    let objects = store.keys().len();
    eprintln!("{objects} objects for {minutes} task-minutes");
    assert_eq!(objects, minutes, "one segment per flush, both files in it");
    s.stop().await;
    store.assert_tiles(ACCESS, 0, &access(0, minutes * 60));
    store.assert_tiles(JULI, 0, &juli_all);
}

#[tokio::test]
async fn a_segment_holds_at_most_chunk_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let names: Vec<String> = (0..12).map(|i| format!("f{i:02}.log")).collect();
    let content = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n".repeat(20);
    for n in &names {
        append(&dir.path().join(n), &content); // 1280 bytes each
    }
    let mut s = sidecar(
        &store,
        config(dir.path(), &[("LOGDROP_CHUNK_BYTES", "4096")]),
    )
    .await;
    s.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    for key in &keys {
        let m = assert_parts_are_file_bytes(&store, dir.path(), key);
        let total: u64 = m.parts.iter().map(|p| p.end - p.start).sum();
        assert!(total <= 4096, "{key}: {total} bytes");
    }
    // Three whole files fit in 4096 bytes; the fourth goes to the next segment.
    assert_eq!(keys.len(), 4);
    for n in &names {
        store.assert_tiles(n, 0, &content);
    }
}

/// Starts a sidecar, lets its next put store the segment and never answer, and drops it.
async fn crash_during_upload(store: &Recording, config: Config) {
    let mut s = sidecar(store, config).await;
    store.hang.store(true, Ordering::SeqCst);
    tokio::select! {
        _ = s.pass(Mode::Drain) => panic!("the put hangs"),
        _ = store.hung.notified() => {}
    }
}

#[tokio::test]
async fn a_crash_during_an_upload_reuploads_the_same_segment_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let a = access(0, 50);
    let j = juli(4, "j");
    append(&dir.path().join(ACCESS), &a);
    append(&dir.path().join(JULI), &j);
    crash_during_upload(
        &store,
        files_config(dir.path(), &[("LOGDROP_GZIP_LEVEL", "1")]),
    )
    .await;
    let interrupted = store.keys()[0].clone();
    let first = store.store.body("b", &interrupted).unwrap();
    // Written while down, and restarted with another gzip level.
    let (a2, j2) = (access(50, 5), juli(2, "k"));
    append(&dir.path().join(ACCESS), &a2);
    append(&dir.path().join(JULI), &j2);
    let mut s = sidecar(
        &store,
        files_config(dir.path(), &[("LOGDROP_GZIP_LEVEL", "9")]),
    )
    .await;
    s.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    assert_eq!(keys[1], interrupted, "the recorded segment goes first");
    // `Recording::put` also refuses a second upload of a key with other bytes.
    assert_eq!(store.store.body("b", &interrupted).unwrap(), first);
    let seq = |k: &str| SegmentKey::parse(k, "logs").unwrap().seq;
    assert_eq!(seq(&keys[2]), seq(&interrupted) + 1, "{keys:?}");
    store.assert_tiles(ACCESS, 0, &[a, a2].concat());
    store.assert_tiles(JULI, 0, &[j, j2].concat());
}

#[tokio::test]
async fn a_part_whose_file_changed_while_down_is_given_up_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let a = access(0, 50);
    append(&dir.path().join(ACCESS), &a);
    append(&dir.path().join(JULI), &juli(4, "j"));
    crash_during_upload(&store, files_config(dir.path(), &[])).await;
    let interrupted = store.keys()[0].clone();
    // Replaced while down: the recorded part cannot be read again.
    std::fs::remove_file(dir.path().join(JULI)).unwrap();
    let j2 = juli(3, "new");
    append(&dir.path().join(JULI), &j2);
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    s.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    assert!(
        !keys[1..].contains(&interrupted),
        "a key is never written again with other bytes"
    );
    // The access part, exactly its recorded range, goes under the next number.
    let m = assert_parts_are_file_bytes(&store, dir.path(), &keys[1]);
    assert_eq!(m.parts.len(), 1);
    assert_eq!(
        (m.parts[0].file.as_str(), m.parts[0].start, m.parts[0].end),
        (ACCESS, 0, a.len() as u64)
    );
    store.assert_tiles(ACCESS, 0, &a);
    // The new file under the name is the next generation, shipped whole.
    store.assert_tiles(JULI, 1, &j2);
}

#[tokio::test]
async fn a_chunk_an_earlier_version_was_uploading_goes_exactly_into_a_segment() {
    // The state a layout 1 sidecar leaves when it dies during an upload: the
    // file's record names the chunk in flight (it may or may not be in S3).
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let a = access(0, 40);
    append(&dir.path().join(ACCESS), &a);
    let config = files_config(dir.path(), &[]);
    let meta = std::fs::metadata(dir.path().join(ACCESS)).unwrap();
    let mut st = StateDir::new(&config.state_dir);
    st.save_task(&TaskDoc {
        version: state::STATE_VERSION,
        cluster: "c".into(),
        task_id: "t".into(),
    })
    .unwrap();
    let mut rec = FileRecord {
        version: state::STATE_VERSION,
        name: ACCESS.into(),
        ..FileRecord::default()
    };
    rec.identity.dev = Some(std::os::unix::fs::MetadataExt::dev(&meta));
    rec.identity.inode = std::os::unix::fs::MetadataExt::ino(&meta);
    rec.uploading = Some((0, a.len() as u64));
    st.save_file(&rec).unwrap();
    let more = access(40, 7);
    append(&dir.path().join(ACCESS), &more);
    let mut s = sidecar(&store, config).await;
    s.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    let m = assert_parts_are_file_bytes(&store, dir.path(), &keys[0]);
    // The same range: the shipper stores it once, whichever copy it reads first.
    assert_eq!(
        (m.parts[0].file.as_str(), m.parts[0].start, m.parts[0].end),
        (ACCESS, 0, a.len() as u64)
    );
    store.assert_tiles(ACCESS, 0, &[a, more].concat());
}

/// One access line of 75 bytes.
fn line(i: usize) -> Vec<u8> {
    let l =
        format!("10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /{i:04}.html HTTP/1.1\" 200 16\n");
    assert_eq!(l.len(), 75);
    l.into_bytes()
}

/// The parts uploaded for `file`, as (start, end), in upload order.
fn parts_of(store: &Recording, file: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for key in store.keys() {
        let (m, _) = decode_segment(&store.store.body("b", &key).unwrap());
        out.extend(
            m.parts
                .iter()
                .filter(|p| p.file == file)
                .map(|p| (p.start, p.end)),
        );
    }
    out
}

#[tokio::test]
async fn a_line_a_buffered_writer_has_not_finished_is_not_cut() {
    // Tomcat's buffered access log writes its buffer when full, mid-line, and
    // the rest at its background flush: here the file holds one line and 30
    // bytes of the next, and the rest comes 8 s later (flush 5 s, hold 5 s).
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let path = dir.path().join(ACCESS);
    let (one, two) = (line(1), line(2));
    append(&path, &[&one[..], &two[..30]].concat());
    let extra = [
        ("LOGDROP_FLUSH_INTERVAL", "5s"),
        ("LOGDROP_HOLD_TIMEOUT", "5s"),
    ];
    let mut s = sidecar(&store, files_config(dir.path(), &extra)).await;
    s.pass(Mode::Follow).await.unwrap();
    age_all(&mut s, Duration::from_secs(5));
    s.pass(Mode::Follow).await.unwrap();
    age_all(&mut s, Duration::from_secs(3));
    append(&path, &two[30..]);
    s.pass(Mode::Follow).await.unwrap();
    age_all(&mut s, Duration::from_secs(2));
    s.pass(Mode::Follow).await.unwrap();
    // Before: cut at 105, inside the second line, which became two events.
    assert_eq!(parts_of(&store, ACCESS), vec![(0, 75), (75, 150)]);
    assert_eq!(s.totals().forced_cuts, 0);
    assert_eq!(s.lag_bytes(), 0);
}

#[tokio::test]
async fn a_line_left_unfinished_ships_after_the_line_time_out_or_at_a_stop_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let path = dir.path().join(ACCESS);
    let (one, two, three) = (line(1), line(2), line(3));
    append(&path, &one);
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    s.pass(Mode::Follow).await.unwrap();
    age_all(&mut s, Duration::from_secs(30));
    append(&path, &two[..30]);
    s.pass(Mode::Follow).await.unwrap();
    // The flush a minute after the first line takes the whole line only.
    age_all(&mut s, Duration::from_secs(30));
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(parts_of(&store, ACCESS), vec![(0, 75)]);
    // The writer adds to the line: the next flush finds it changed 55 s ago.
    age_all(&mut s, Duration::from_secs(5));
    append(&path, &two[30..40]);
    s.pass(Mode::Follow).await.unwrap();
    age_all(&mut s, Duration::from_secs(55));
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(parts_of(&store, ACCESS), vec![(0, 75)], "still held");
    // The flush after finds it unchanged for longer than the line time-out.
    age_all(&mut s, Duration::from_secs(60));
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(parts_of(&store, ACCESS), vec![(0, 75), (75, 115)]);
    assert_eq!(s.totals().forced_cuts, 1);
    // A stop ships a line without its newline as is, counted too.
    append(&path, &[&two[40..], &three[..10]].concat());
    s.stop().await;
    assert_eq!(
        parts_of(&store, ACCESS),
        vec![(0, 75), (75, 115), (115, 160)]
    );
    assert_eq!(s.totals().forced_cuts, 2);
    store.assert_tiles(ACCESS, 0, &[&one[..], &two[..], &three[..10]].concat());
}

#[tokio::test]
async fn a_rotated_file_ships_its_unfinished_line_at_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let old = "localhost_access_log.2026-11-24.txt";
    let new = "localhost_access_log.2026-11-25.txt";
    let (one, two) = (line(1), line(2));
    append(&dir.path().join(old), &[&one[..], &two[..30]].concat());
    super::age(&dir.path().join(old), Duration::from_secs(3600));
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    s.pass(Mode::Follow).await.unwrap();
    append(&dir.path().join(new), &two);
    age_all(&mut s, Duration::from_secs(60));
    s.pass(Mode::Follow).await.unwrap();
    // Its writer moved on to the newer name: nothing will finish the line.
    assert_eq!(parts_of(&store, old), vec![(0, 105)]);
    assert_eq!(s.totals().forced_cuts, 1);
}

#[tokio::test]
async fn a_later_name_written_earlier_is_not_a_rotation() {
    // fileDateFormat="dd-MM-yyyy": on 1 December the file Tomcat writes sorts
    // before November's last; only a later name written later is a rotation.
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let old = "localhost_access_log.30-11-2026.txt";
    let now = "localhost_access_log.01-12-2026.txt";
    let (one, two) = (line(1), line(2));
    append(&dir.path().join(old), &one);
    super::age(&dir.path().join(old), Duration::from_secs(3600));
    append(&dir.path().join(now), &[&one[..], &two[..30]].concat());
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    s.pass(Mode::Follow).await.unwrap();
    age_all(&mut s, Duration::from_secs(60));
    append(&dir.path().join(now), &two[30..40]);
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(parts_of(&store, now), vec![(0, 75)]);
    assert_eq!(parts_of(&store, old), vec![(0, 75)]);
    assert_eq!(s.totals().forced_cuts, 0);
}

#[tokio::test]
async fn a_failed_upload_is_retried_with_the_same_key_and_bytes_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let (a, j) = (access(0, 20), juli(3, "j"));
    append(&dir.path().join(ACCESS), &a);
    append(&dir.path().join(JULI), &j);
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    s.set_max_attempts(1);
    store.fail.store(true, Ordering::SeqCst);
    assert!(s.pass(Mode::Drain).await.is_err(), "the one attempt failed");
    let (a2, j2) = (access(20, 3), juli(1, "k"));
    append(&dir.path().join(ACCESS), &a2);
    append(&dir.path().join(JULI), &j2);
    s.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    // `Recording::put` refuses the same key with other bytes.
    assert_eq!(keys[1], keys[0], "the recorded segment goes first");
    assert_eq!(keys.len(), 3, "then one segment for what came since");
    store.assert_tiles(ACCESS, 0, &[a, a2].concat());
    store.assert_tiles(JULI, 0, &[j, j2].concat());
}

#[tokio::test]
async fn an_error_ships_within_one_poll_and_storms_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    let path = dir.path().join(JULI);
    let info = |i: usize| format!("24-Nov-2026 10:00:{i:02}.000 INFO [main] ok {i}\n");
    let severe = |i: usize| {
        format!("24-Nov-2026 10:00:{i:02}.000 SEVERE [main] boom {i}\n\tat x.y(Z.java:{i})\n")
    };
    append(&path, info(0).as_bytes());
    s.pass(Mode::Follow).await.unwrap();
    assert!(
        store.keys().is_empty(),
        "an INFO line waits for the interval"
    );
    // An error whose stack trace may still grow waits until the next event
    // starts (or the file is quiet for the hold time-out)...
    append(&path, severe(1).as_bytes());
    s.pass(Mode::Follow).await.unwrap();
    assert!(store.keys().is_empty(), "the trace may still grow");
    // ...and then ships at the next poll, long before the interval.
    append(&path, info(2).as_bytes());
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(store.keys().len(), 1, "one early flush");
    let shipped = [info(0), severe(1)].concat();
    store.assert_tiles(JULI, 0, shipped.as_bytes());
    assert_eq!(s.totals().early_flushes, 1);
    // A storm: errors every poll ship at most once per minimum interval.
    // Polls 1 s apart from the first early flush: 10 s of errors (11 polls)
    // make one more, at the tenth second.
    for i in 3..14 {
        append(&path, [severe(i), info(i)].concat().as_bytes());
        s.pass(Mode::Follow).await.unwrap();
        age_all(&mut s, Duration::from_secs(1));
    }
    assert_eq!(
        store.keys().len(),
        2,
        "10 s of errors, one more early flush"
    );
    // A lone error in a quiet file goes once the hold time-out has passed.
    age_all(&mut s, Duration::from_secs(60));
    s.pass(Mode::Follow).await.unwrap();
    let before = store.keys().len();
    append(&path, severe(20).as_bytes());
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(store.keys().len(), before, "not quiet yet");
    age_all(&mut s, Duration::from_secs(5));
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(
        store.keys().len(),
        before + 1,
        "quiet for the hold time-out"
    );
    assert_eq!(s.lag_bytes(), 0);
    s.stop().await;
    let mut all = [info(0), severe(1), info(2)].concat();
    for i in 3..14 {
        all += &[severe(i), info(i)].concat();
    }
    all += &severe(20);
    store.assert_tiles(JULI, 0, all.as_bytes());
}

#[tokio::test]
async fn the_early_flush_can_be_off_or_follow_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let off = [("LOGDROP_EARLY_FLUSH_LEVEL", "off")];
    let mut s = sidecar(&store, files_config(dir.path(), &off)).await;
    let juli = dir.path().join(JULI);
    append(
        &juli,
        b"24-Nov-2026 10:00:00.000 SEVERE [main] boom\n24-Nov-2026 10:00:01.000 INFO [main] x\n",
    );
    s.pass(Mode::Follow).await.unwrap();
    assert!(store.keys().is_empty(), "off: errors wait for the interval");
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let on = [("LOGDROP_EARLY_FLUSH_5XX", "true")];
    let mut s = sidecar(&store, files_config(dir.path(), &on)).await;
    let log = dir.path().join(ACCESS);
    append(&log, &access(0, 3));
    s.pass(Mode::Follow).await.unwrap();
    assert!(store.keys().is_empty(), "200s wait");
    append(
        &log,
        b"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /x HTTP/1.1\" 503 5\n",
    );
    s.pass(Mode::Follow).await.unwrap();
    assert_eq!(store.keys().len(), 1, "a 503 ships at once");
}

#[tokio::test]
async fn the_metrics_line_reports_pending_bytes_and_their_age() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    append(&dir.path().join(ACCESS), &access(0, 10));
    s.pass(Mode::Follow).await.unwrap();
    age_all(&mut s, Duration::from_secs(30));
    let now = s.ctx.now();
    let totals = s.totals();
    let line = s.ctx.reporter.line("c", now, &totals);
    assert_eq!(
        line.get("PendingBytes"),
        Some(&[access(0, 10).len() as f64][..])
    );
    assert_eq!(line.get("OldestPendingAge"), Some(&[30.0][..]));
    assert_eq!(line.get("SegmentsUploaded"), Some(&[0.0][..]));
    age_all(&mut s, Duration::from_secs(30));
    s.pass(Mode::Follow).await.unwrap();
    let (now, totals) = (s.ctx.now(), s.totals());
    let line = s.ctx.reporter.line("c", now, &totals);
    assert_eq!(line.get("PendingBytes"), Some(&[0.0][..]));
    assert_eq!(line.get("OldestPendingAge"), Some(&[0.0][..]));
    assert_eq!(
        line.get("SegmentsUploaded"),
        Some(&[1.0][..]),
        "counted since the last line"
    );
    assert_eq!(line.get("UploadRetries"), Some(&[0.0][..]));
}
