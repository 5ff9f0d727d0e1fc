//! `Sidecar` driven with the in-memory store through rotation, rewrites, a
//! crash during an upload and a stop while an answer is lost. Drain passes
//! make every step deterministic: nothing here waits on a clock.

use super::*;
use crate::config::Env;
use crate::core::keys::ChunkKey;
use crate::core::segment::{HeadReader, Manifest, PartSplitter, SegmentError, SegmentKey};
use crate::memory::MemoryStore;
use crate::ports::PortError;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The in-memory store, shared, recording every put; when `hang` is set the
/// next put stores its object and then never answers (an answer lost); when
/// `fail` is set it stores it and answers with an error.
#[derive(Clone, Default)]
struct Recording {
    store: Arc<MemoryStore>,
    puts: Arc<Mutex<Vec<String>>>,
    hang: Arc<AtomicBool>,
    hung: Arc<tokio::sync::Notify>,
    fail: Arc<AtomicBool>,
}

impl ObjectStore for Recording {
    async fn get(&self, bucket: &str, key: &str) -> Result<crate::ports::Object, PortError> {
        self.store.get(bucket, key).await
    }

    async fn put(&self, bucket: &str, key: &str, body: bytes::Bytes) -> Result<(), PortError> {
        self.puts.lock().unwrap().push(key.to_string());
        if let Some(previous) = self.store.body(bucket, key) {
            assert_eq!(previous, body, "{key} uploaded again with other bytes");
        }
        self.store.put(bucket, key, body).await?;
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

impl Recording {
    fn keys(&self) -> Vec<String> {
        self.puts.lock().unwrap().clone()
    }

    /// Every file range uploaded as a segment part, with its bytes; a key
    /// uploaded twice counts once.
    fn ranges(&self) -> Vec<(ChunkKey, Vec<u8>)> {
        let mut keys = self.keys();
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for key in keys {
            let seg = SegmentKey::parse(&key, "logs").unwrap();
            let (manifest, plain) = decode_segment(&self.store.body("b", &key).unwrap());
            for (p, bytes) in manifest.parts.iter().zip(plain) {
                assert_eq!(bytes.len() as u64, p.end - p.start, "{key}: part length");
                out.push((p.chunk_key(&seg), bytes));
            }
        }
        out
    }

    /// The chunks of (file, generation) must tile `content` without gap or overlap.
    fn assert_tiles(&self, file: &str, generation: u64, content: &[u8]) {
        let mut ranges: Vec<(ChunkKey, Vec<u8>)> = self
            .ranges()
            .into_iter()
            .filter(|(k, _)| k.file == file && k.generation == generation)
            .collect();
        ranges.sort_by_key(|(k, _)| (k.start, k.end));
        ranges.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let mut at = 0;
        let mut joined = Vec::new();
        for (k, bytes) in ranges {
            assert_eq!(
                k.start, at,
                "{file} gen {generation}: gap or overlap at {at}"
            );
            joined.extend_from_slice(&bytes);
            at = k.end;
        }
        assert!(
            joined == content,
            "{file} gen {generation}: chunks do not rejoin"
        );
    }
}

/// A segment body read as the shipper does: manifest, then each part's bytes.
fn decode_segment(body: &[u8]) -> (Manifest, Vec<Vec<u8>>) {
    let (manifest, rest) = HeadReader::default().push(body).unwrap().unwrap();
    let mut gz = vec![Vec::new(); manifest.parts.len()];
    let mut split = PartSplitter::new(&manifest);
    split
        .split(&rest, |i, b| -> Result<(), SegmentError> {
            gz[i].extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    split.finish().unwrap();
    let plain = gz
        .iter()
        .map(|g| {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&g[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        })
        .collect();
    (manifest, plain)
}

fn config(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let log_dir = dir.display().to_string();
    let mut pairs = vec![
        ("LOGDROP_BUCKET", "b"),
        ("LOGDROP_LOG_DIR", log_dir.as_str()),
        ("LOGDROP_FILES", "*.log"),
    ];
    pairs.extend_from_slice(extra);
    Config::from_env(&Env::from_pairs(pairs)).unwrap()
}

async fn sidecar(store: &Recording, config: Config) -> Sidecar<Recording> {
    Sidecar::start(store.clone(), config, "c".into(), "t".into())
        .await
        .unwrap()
}

fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

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

#[tokio::test]
async fn rotation_rewrites_and_a_crash_during_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let day1 = dir.path().join("catalina.2026-11-24.log");
    let day2 = dir.path().join("catalina.2026-11-25.log");
    let a = juli(20, "a");
    append(&day1, &a);
    let mut s = sidecar(&store, config(dir.path(), &[])).await;
    s.pass(Mode::Drain).await.unwrap();
    // Rotation: a new dated name; the old one is done.
    let b = juli(5, "b");
    append(&day2, &b);
    s.pass(Mode::Drain).await.unwrap();
    // A rewrite in place that keeps the inode, the length and the last bytes.
    let mut a2 = a.clone();
    a2[..24].copy_from_slice(b"25-Nov-2026 10:00:00.000");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&day1)
        .unwrap()
        .write_all(&a2)
        .unwrap();
    s.pass(Mode::Drain).await.unwrap();
    // A crash while an upload is in flight: the chunk is stored, its answer lost.
    let c = juli(7, "c");
    append(&day2, &c);
    store.hang.store(true, Ordering::SeqCst);
    tokio::select! {
        _ = s.pass(Mode::Drain) => panic!("the put hangs"),
        _ = store.hung.notified() => {}
    }
    drop(s);
    let interrupted = store.keys().last().unwrap().clone();
    let d = juli(3, "d");
    append(&day2, &d);
    let mut s = sidecar(&store, config(dir.path(), &[])).await;
    let before = store.keys().len();
    s.pass(Mode::Drain).await.unwrap();
    assert_eq!(
        store.keys()[before],
        interrupted,
        "the recorded chunk goes first"
    );
    store.assert_tiles("catalina.2026-11-24.log", 0, &a);
    store.assert_tiles("catalina.2026-11-24.log", 1, &a2);
    store.assert_tiles("catalina.2026-11-25.log", 0, &[b, c, d].concat());
}

#[tokio::test]
async fn a_stop_while_an_answer_is_lost_reuploads_that_chunk_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let path = dir.path().join("catalina.2026-11-24.log");
    let first = juli(4, "first");
    append(&path, &first);
    let mut s = sidecar(
        &store,
        config(
            dir.path(),
            &[
                ("LOGDROP_POLL_INTERVAL", "10ms"),
                ("LOGDROP_FLUSH_INTERVAL", "0s"),
                ("LOGDROP_HOLD_TIMEOUT", "0s"),
            ],
        ),
    )
    .await;
    store.hang.store(true, Ordering::SeqCst);
    let more = juli(3, "more");
    let shutdown = async {
        store.hung.notified().await;
        append(&path, &more);
    };
    let left = s.run(shutdown).await;
    assert_eq!(left, "");
    store.assert_tiles("catalina.2026-11-24.log", 0, &[first, more].concat());
}

#[tokio::test]
async fn recording_a_segment_costs_the_same_with_many_files() {
    let mut costs = Vec::new();
    for n in [1usize, 400] {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            append(&dir.path().join(format!("f{i:04}.log")), b"line\n");
        }
        let store = Recording::default();
        let mut s = sidecar(&store, config(dir.path(), &[])).await;
        s.pass(Mode::Drain).await.unwrap();
        append(&dir.path().join("f0000.log"), b"another line\n");
        let before = s.state_bytes_written();
        s.pass(Mode::Drain).await.unwrap();
        costs.push(s.state_bytes_written() - before);
    }
    eprintln!("state bytes written for one segment: {costs:?}");
    assert_eq!(costs[0], costs[1], "bytes of state per segment");
    assert!(costs[0] > 0 && costs[0] < 2048, "{costs:?}");
}

fn age(path: &Path, ago: Duration) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

#[tokio::test]
async fn pruning_spares_the_newest_file_of_a_series_and_can_be_off() {
    for (setting, pruned) in [(None, true), (Some("off"), false)] {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("catalina.2026-11-24.log");
        let new = dir.path().join("catalina.2026-11-25.log");
        append(&old, &juli(2, "old"));
        append(&new, &juli(2, "new"));
        // Both quiet for longer than the default delay.
        age(&old, Duration::from_secs(3 * 3600));
        age(&new, Duration::from_secs(2 * 3600));
        let mut extra = vec![
            ("LOGDROP_FLUSH_INTERVAL", "0s"),
            ("LOGDROP_HOLD_TIMEOUT", "0s"),
        ];
        if let Some(v) = setting {
            extra.push(("LOGDROP_PRUNE_AFTER", v));
        }
        let store = Recording::default();
        let mut s = sidecar(&store, config(dir.path(), &extra)).await;
        s.pass(Mode::Follow).await.unwrap();
        assert_eq!(s.lag_bytes(), 0);
        s.pass(Mode::Follow).await.unwrap();
        assert_eq!(!old.exists(), pruned, "{setting:?}");
        assert!(new.exists(), "{setting:?}: the newest file was pruned");
    }
}

#[tokio::test]
async fn nothing_is_uploaded_while_the_state_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let name = "catalina.2026-11-24.log";
    let path = dir.path().join(name);
    let a = juli(3, "a");
    append(&path, &a);
    let config = config(dir.path(), &[]);
    // The intent's record: the segment's.
    let tmp = state::segment_tmp(&config.state_dir);
    let mut s = sidecar(&store, config).await;
    s.pass(Mode::Drain).await.unwrap();
    let puts = store.keys().len();
    // A full disk: writing the record fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let b = juli(2, "b");
    append(&path, &b);
    for _ in 0..2 {
        let e = s.pass(Mode::Drain).await.unwrap_err();
        assert!(e.to_string().contains(&tmp.display().to_string()), "{e}");
    }
    assert_eq!(
        store.keys().len(),
        puts,
        "uploaded without a recorded intent"
    );
    std::fs::remove_file(&tmp).unwrap();
    s.pass(Mode::Drain).await.unwrap();
    store.assert_tiles(name, 0, &[a, b].concat());
}

#[tokio::test]
async fn open_handles_stay_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("f{i:02}.log")).collect();
    for n in &names {
        append(&dir.path().join(n), b"one\n");
    }
    let store = Recording::default();
    let extra = [
        ("LOGDROP_FLUSH_INTERVAL", "0s"),
        ("LOGDROP_HOLD_TIMEOUT", "0s"),
    ];
    let mut s = sidecar(&store, config(dir.path(), &extra)).await;
    s.set_max_open(8);
    for round in 0..3 {
        for n in &names {
            append(&dir.path().join(n), format!("round {round}\n").as_bytes());
        }
        s.pass(Mode::Follow).await.unwrap();
        assert!(s.open_files() <= 8, "{} files open", s.open_files());
        assert_eq!(s.lag_bytes(), 0, "round {round}");
    }
    for n in &names {
        store.assert_tiles(n, 0, b"one\nround 0\nround 1\nround 2\n");
    }
}

mod segments;
