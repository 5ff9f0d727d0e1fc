//! The sweep's order and deadline with the in-memory store: a run that
//! reaches no directory saves where to start, and the next starts there.

use super::*;
use crate::config::Env;
use crate::memory::MemoryStore;
use crate::ports::{Object, PortError};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The in-memory store, shared by every directory's sidecar, recording puts in order.
#[derive(Clone, Default)]
struct Shared(Arc<MemoryStore>, Arc<Mutex<Vec<String>>>);

impl ObjectStore for Shared {
    async fn get(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        self.0.get(bucket, key).await
    }

    async fn put(&self, bucket: &str, key: &str, body: bytes::Bytes) -> Result<(), PortError> {
        self.1.lock().unwrap().push(key.to_string());
        self.0.put(bucket, key, body).await
    }
}

fn config(root: &Path) -> SweepConfig {
    let env = Env::from_pairs([("LOGDROP_BUCKET", "b"), ("LOGDROP_OWNER_STALE", "0s")]);
    SweepConfig::from_env(&env, Some(root.to_path_buf())).unwrap()
}

fn task(root: &Path, t: &str) {
    let dir = root.join("c").join(t);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("localhost_access_log.2026-11-24.txt"),
        "10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5\n",
    )
    .unwrap();
}

#[tokio::test]
async fn a_run_past_its_deadline_leaves_the_rest_to_the_next_which_starts_there() {
    let root = tempfile::tempdir().unwrap();
    for t in ["t1", "t2", "t3"] {
        task(root.path(), t);
    }
    let store = Shared::default();
    let config = config(root.path());
    let late = sweep(&store, &config, Some(Instant::now())).await.unwrap();
    assert_eq!((late.swept, late.not_reached), (0, 3));
    assert!(store.1.lock().unwrap().is_empty());
    // As if the last run had stopped before t2.
    cursor::save(root.path(), "c", "t2");
    let report = sweep(&store, &config, None).await.unwrap();
    assert_eq!((report.swept, report.not_reached), (3, 0));
    let tasks: Vec<String> = store
        .1
        .lock()
        .unwrap()
        .iter()
        .map(|k| k.split('/').nth(2).unwrap().to_string())
        .collect();
    assert_eq!(tasks, ["t2", "t3", "t1"]);
    assert_eq!(
        cursor::resume_at(root.path(), &task_dirs(root.path()).unwrap()),
        0
    );
}

#[tokio::test]
async fn an_empty_directory_is_left_untouched() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("c/empty")).unwrap();
    std::fs::write(root.path().join("c/empty/notes.md"), "not a log").unwrap();
    let report = sweep(&Shared::default(), &config(root.path()), None)
        .await
        .unwrap();
    assert_eq!((report.dirs, report.empty, report.swept), (1, 1, 0));
    assert!(!root.path().join("c/empty/.logdrop").exists());
}

fn line(n: u32) -> String {
    format!("10.0.0.1 - - [24/Nov/2026:10:00:{n:02} +0000] \"GET / HTTP/1.1\" 200 5\n")
}

/// Marks the task `t` gone: an owner record whose last heartbeat is old.
fn gone(root: &Path, t: &str) {
    let state = root.join("c").join(t).join(".logdrop");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join(crate::sidecar::owner::OWNER_FILE),
        r#"{"version":1,"cluster":"c","task_id":"t1","heartbeat":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
}

fn retention_zero(root: &Path) -> SweepConfig {
    let env = Env::from_pairs([
        ("LOGDROP_BUCKET", "b"),
        ("LOGDROP_OWNER_STALE", "0s"),
        ("LOGDROP_SWEEP_RETENTION", "0s"),
    ]);
    SweepConfig::from_env(&env, Some(root.to_path_buf())).unwrap()
}

#[tokio::test]
async fn a_finished_directory_is_deleted_through_the_trash_unless_it_holds_other_files() {
    let root = tempfile::tempdir().unwrap();
    for t in ["t1", "t2", "t3"] {
        task(root.path(), t);
        gone(root.path(), t);
    }
    std::fs::write(root.path().join("c/t2/heap.hprof"), "not a log").unwrap();
    // A matching name that cannot be looked at (a link to itself: ELOOP).
    let looped = root.path().join("c/t3/catalina.2026-11-24.log");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let store = Shared::default();
    let report = sweep(&store, &retention_zero(root.path()), None)
        .await
        .unwrap();
    assert_eq!((report.swept, report.deleted, report.failed), (3, 1, 0));
    assert!(!root.path().join("c/t1").exists());
    // Shipped, but kept for the file nobody ships, and for the one unseen.
    assert!(root.path().join("c/t2/heap.hprof").exists());
    assert!(looped.symlink_metadata().is_ok());
    assert_eq!(store.1.lock().unwrap().len(), 3);
    let trash: Vec<_> = std::fs::read_dir(root.path().join(TRASH))
        .unwrap()
        .collect();
    assert!(trash.is_empty(), "{trash:?}");
    // What an interrupted deletion left in the trash goes at a later run,
    // after the directories and while the deadline allows; the report
    // counts what is left.
    for n in ["c%2Ft8.0123", "c%2Ft9.0123"] {
        std::fs::create_dir_all(root.path().join(TRASH).join(n).join("x")).unwrap();
    }
    let left = |root: &Path| std::fs::read_dir(root.join(TRASH)).unwrap().count();
    let late = sweep(&store, &retention_zero(root.path()), Some(Instant::now()))
        .await
        .unwrap();
    assert_eq!((late.trash_left, left(root.path())), (2, 2));
    let report = sweep(&store, &retention_zero(root.path()), None)
        .await
        .unwrap();
    assert_eq!((report.trash_left, left(root.path())), (0, 0));
}

#[tokio::test]
async fn a_directory_whose_lock_is_held_is_not_touched() {
    let root = tempfile::tempdir().unwrap();
    task(root.path(), "t1");
    let state = root.path().join("c/t1/.logdrop");
    std::fs::create_dir_all(&state).unwrap();
    let held = crate::sidecar::owner::try_lock(&state)
        .unwrap()
        .expect("free");
    let store = Shared::default();
    let report = sweep(&store, &config(root.path()), None).await.unwrap();
    assert_eq!((report.held, report.swept), (1, 0));
    assert!(store.1.lock().unwrap().is_empty());
    drop(held);
    let report = sweep(&store, &config(root.path()), None).await.unwrap();
    assert_eq!((report.held, report.swept), (0, 1));
}

#[tokio::test]
async fn a_directory_name_the_sidecar_would_not_write_is_named_and_left() {
    let root = tempfile::tempdir().unwrap();
    task(root.path(), "t1");
    task(root.path(), "not a task");
    let store = Shared::default();
    let report = sweep(&store, &config(root.path()), None).await.unwrap();
    assert_eq!((report.swept, report.failed), (1, 1));
    let keys = store.1.lock().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].contains("/t1/"), "{keys:?}");
}

#[tokio::test]
async fn a_dangling_link_stays_with_its_name_and_the_rest_ships() {
    let root = tempfile::tempdir().unwrap();
    task(root.path(), "t1");
    std::os::unix::fs::symlink(
        root.path().join("nowhere"),
        root.path().join("c/t1/catalina.2026-11-24.log"),
    )
    .unwrap();
    let store = Shared::default();
    let report = sweep(&store, &config(root.path()), None).await.unwrap();
    assert_eq!((report.swept, report.failed), (1, 0));
    assert_eq!(store.1.lock().unwrap().len(), 1);
    assert!(report.bytes > 0);
}

/// Each NFS client numbers the file system's device its own way: a record
/// written by another host's sweeper or sidecar still names the file.
#[tokio::test]
async fn a_record_from_another_client_with_another_device_number_resumes() {
    let root = tempfile::tempdir().unwrap();
    task(root.path(), "t1");
    let store = Shared::default();
    let config = config(root.path());
    sweep(&store, &config, None).await.unwrap();
    let files = root.path().join("c/t1/.logdrop/files");
    let mut records = 0;
    for entry in std::fs::read_dir(&files).unwrap() {
        let path = entry.unwrap().path();
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(doc["identity"]["dev"].is_null(), "{doc}");
        doc["identity"]["dev"] = 4242.into();
        std::fs::write(&path, doc.to_string()).unwrap();
        records += 1;
    }
    assert_eq!(records, 1);
    let log = root.path().join("c/t1/localhost_access_log.2026-11-24.txt");
    let first = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(line(1).as_bytes())
        .unwrap();
    let report = sweep(&store, &config, None).await.unwrap();
    assert_eq!((report.swept, report.bytes), (1, line(1).len() as u64));
    let keys = store.1.lock().unwrap().clone();
    assert_eq!(keys.len(), 2);
    for entry in std::fs::read_dir(&files).unwrap() {
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        assert_eq!(doc["generation"], 0, "{doc}");
        assert_eq!(doc["offset"], first + line(1).len() as u64, "{doc}");
    }
}

/// Between two runs a file is truncated and rewritten, another deleted: the
/// rewritten one ships from its start as a new generation, the deleted one's
/// record is finished, and nothing else is disturbed.
#[tokio::test]
async fn a_file_truncated_or_deleted_between_runs_is_followed_as_the_sidecar_would() {
    let root = tempfile::tempdir().unwrap();
    task(root.path(), "t1");
    let dir = root.path().join("c/t1");
    let other = dir.join("localhost_access_log.2026-11-23.txt");
    std::fs::write(&other, line(2)).unwrap();
    let store = Shared::default();
    let config = config(root.path());
    let first = sweep(&store, &config, None).await.unwrap();
    assert_eq!(first.bytes, (line(0).len() + line(2).len()) as u64);
    std::fs::write(dir.join("localhost_access_log.2026-11-24.txt"), line(3)).unwrap();
    std::fs::remove_file(&other).unwrap();
    let second = sweep(&store, &config, None).await.unwrap();
    assert_eq!((second.swept, second.failed), (1, 0));
    assert_eq!(second.bytes, line(3).len() as u64);
    let mut records: Vec<(String, u64, u64, bool)> = std::fs::read_dir(dir.join(".logdrop/files"))
        .unwrap()
        .map(|e| {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            (
                doc["name"].as_str().unwrap().to_string(),
                doc["generation"].as_u64().unwrap(),
                doc["offset"].as_u64().unwrap(),
                doc["finished"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    records.sort();
    assert_eq!(
        records,
        [
            (
                "localhost_access_log.2026-11-23.txt".into(),
                0,
                line(2).len() as u64,
                true
            ),
            (
                "localhost_access_log.2026-11-24.txt".into(),
                1,
                line(3).len() as u64,
                false
            ),
        ]
    );
}
