//! Layout 2: task segments decoded as the shipper reads them, files cut at
//! one moment sharing one object, the size bound, and the crash rule. The
//! age rule's clock is moved by hand (`age_all`), never waited on.

use super::*;
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

/// As if `by` had passed since every pending byte was first seen and since
/// every file last grew.
fn age_all(s: &mut Sidecar<Recording>, by: Duration) {
    let then = Instant::now().checked_sub(by).unwrap();
    for f in s.followed.values_mut() {
        if let Some(t) = f.pending_since.as_mut() {
            *t = then;
        }
        if let Some((_, t)) = f.grew.as_mut() {
            *t = then;
        }
    }
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
async fn a_chunk_recorded_by_layout_1_goes_exactly_into_a_segment() {
    // A layout 1 sidecar crashes during an upload; the restart uses layout 2.
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let a = access(0, 40);
    append(&dir.path().join(ACCESS), &a);
    crash_during_upload(&store, files_config(dir.path(), &[("LOGDROP_LAYOUT", "1")])).await;
    let v1 = ChunkKey::parse(&store.keys()[0], "logs").unwrap();
    let more = access(40, 7);
    append(&dir.path().join(ACCESS), &more);
    let mut s = sidecar(&store, files_config(dir.path(), &[])).await;
    s.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    let m = assert_parts_are_file_bytes(&store, dir.path(), &keys[1]);
    let first = &m.parts[0];
    // The same range: the shipper stores it once, whichever copy it reads first.
    assert_eq!(
        (first.file.as_str(), first.start, first.end),
        (ACCESS, v1.start, v1.end)
    );
    store.assert_tiles(ACCESS, 0, &[a, more].concat());
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
async fn a_segment_recorded_before_a_switch_to_layout_1_goes_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let a = access(0, 30);
    append(&dir.path().join(ACCESS), &a);
    crash_during_upload(&store, files_config(dir.path(), &[])).await;
    let segment = store.keys()[0].clone();
    let more = access(30, 4);
    append(&dir.path().join(ACCESS), &more);
    let v1 = [("LOGDROP_LAYOUT", "1")];
    let mut s = sidecar(&store, files_config(dir.path(), &v1)).await;
    s.pass(Mode::Drain).await.unwrap();
    let keys = store.keys();
    assert_eq!(keys[1], segment, "the recorded segment goes first");
    assert!(ChunkKey::parse(&keys[2], "logs").is_ok(), "then layout 1");
    store.assert_tiles(ACCESS, 0, &[a, more].concat());
}
