//! The sweep's order and deadline with the in-memory store: a run that
//! reaches no directory saves where to start, and the next starts there.

use super::*;
use crate::config::Env;
use crate::memory::MemoryStore;
use crate::ports::{Object, PortError};
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
