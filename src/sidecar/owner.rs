//! Who ships a task's directory on a shared file system (EFS drops): the
//! lock that makes one writer of a directory's state at a time, and the owner
//! record whose time a live sidecar sets every heartbeat.
//!
//! A heartbeat after the first sets the record's modification time instead
//! of rewriting it: on EFS that is one metadata operation (metered at 4 KiB)
//! where an atomic rewrite is a create, a data write (metered at 32 KiB), an
//! fsync and a rename, twelve times a minute per task. The record's time is
//! the later of its `heartbeat` field and its modification time.
//!
//! A sweeper reads the record (`sweeper::liveness`). The lock decides who
//! may write: `flock` on `<state dir>/lock`, which Linux takes on NFS as a
//! whole-file NFSv4 lock (EFS supports them; the server drops the lock of a
//! client that died once its lease lapses). The heartbeat only tells a
//! sweeper whether a sidecar is alive, so that it never takes a directory
//! from a sidecar that is merely between two passes.

use crate::sidecar::config::Config;
use crate::sidecar::state::{StateDir, StateError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub const OWNER_VERSION: u32 = 1;
const LOCK_FILE: &str = "lock";
/// Who ships the directory: written only on a shared file system.
pub const OWNER_FILE: &str = "owner.json";

/// `<state dir>/owner.json`, written by the sidecar that ships the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerDoc {
    pub version: u32,
    pub cluster: String,
    pub task_id: String,
    /// Rewritten every `LOGDROP_HEARTBEAT` while the sidecar runs.
    pub heartbeat: DateTime<Utc>,
    /// Set by a sidecar that stopped on SIGTERM: a sweeper need not wait for
    /// the heartbeat to go stale.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl OwnerDoc {
    /// The record of a running owner, beating at `heartbeat`.
    pub fn new(cluster: &str, task_id: &str, heartbeat: DateTime<Utc>) -> OwnerDoc {
        OwnerDoc {
            version: OWNER_VERSION,
            cluster: cluster.to_string(),
            task_id: task_id.to_string(),
            heartbeat,
            stopped: false,
        }
    }
}

/// The directory's lock, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

/// Takes the lock of the state in `state_dir` if nobody holds it. The state
/// directory must exist: a sweeper must not make again, through a parent, a
/// task directory another sweeper has just deleted.
pub fn try_lock(state_dir: &Path) -> Result<Option<Lock>, StateError> {
    use std::os::unix::fs::MetadataExt;
    let path = state_dir.join(LOCK_FILE);
    let io = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Between the open and the lock, the holder may have moved the directory
    // away to delete it: a lock on that file guards nothing here.
    let held = file.metadata().map_err(io)?;
    match std::fs::metadata(&path) {
        Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
            Ok(Some(Lock { _file: file, path }))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// The live sidecar's hold on its directory: the lock and the record it beats.
pub struct Owner {
    _lock: Lock,
    doc: OwnerDoc,
    every: Duration,
    last: Option<Instant>,
    /// The record as written last, open: a beat sets its time through it.
    record: Option<File>,
}

impl Owner {
    /// Creates the task's directory, waits for its lock (a sweeper may be
    /// shipping it after an earlier sidecar of the task died), records the
    /// owner, and points the link (if any) at the directory.
    pub async fn claim(
        config: &Config,
        state: &mut StateDir,
        cluster: &str,
        task_id: &str,
    ) -> Result<Owner, StateError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| StateError::Io {
            path: config.state_dir.clone(),
            source,
        })?;
        let mut warned: Option<Instant> = None;
        let lock = loop {
            if let Some(lock) = try_lock(&config.state_dir)? {
                break lock;
            }
            // Once, then once a minute: a sweep of a big directory takes a while.
            if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                warned = Some(Instant::now());
                tracing::warn!(dir = %config.log_dir.display(), "another process (a sweeper) holds the directory; waiting for it");
            }
            tokio::time::sleep(config.poll_interval.max(Duration::from_millis(100))).await;
        };
        if let Some(link) = &config.efs_link {
            point_link(link, &config.log_dir)?;
        }
        let mut me = Owner {
            _lock: lock,
            doc: OwnerDoc::new(cluster, task_id, Utc::now()),
            every: config.heartbeat,
            last: None,
            record: None,
        };
        me.beat(state)?;
        Ok(me)
    }

    /// Sets the record's time when a heartbeat is due (writes it whole the first time).
    pub fn beat(&mut self, state: &mut StateDir) -> Result<(), StateError> {
        if self.last.is_some_and(|at| at.elapsed() < self.every) {
            return Ok(());
        }
        // A failing write is tried again a heartbeat later, not every pass.
        self.last = Some(Instant::now());
        if let Some(f) = &self.record {
            match f.set_modified(SystemTime::now()) {
                Ok(()) => return Ok(()),
                // Rewritten whole below, and opened again.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set the owner record's time; writing it again")
                }
            }
        }
        self.write(state)
    }

    /// Writes the record whole, with the time now, and keeps it open.
    fn write(&mut self, state: &mut StateDir) -> Result<(), StateError> {
        self.record = None;
        self.doc.heartbeat = Utc::now();
        state.write(OWNER_FILE, &self.doc)?;
        let path = state.path().join(OWNER_FILE);
        self.record = OpenOptions::new().write(true).open(path).ok();
        Ok(())
    }

    /// Records a clean stop, so a sweeper need not wait for the heartbeat to go stale.
    pub fn stopped(&mut self, state: &mut StateDir) -> Result<(), StateError> {
        self.doc.stopped = true;
        self.last = Some(Instant::now());
        self.write(state)
    }
}

/// Makes `link` a symbolic link to `target`, replacing what was there in one rename.
fn point_link(link: &Path, target: &Path) -> Result<(), StateError> {
    let tmp = link.with_extension("logdrop-tmp");
    let io = |source| StateError::Io {
        path: link.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io)?;
    std::fs::rename(&tmp, link).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A beat after the first only sets the record's time: no new file, the
    /// same bytes, a later modification time.
    #[test]
    fn a_beat_sets_the_time_and_writes_nothing() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut state = StateDir::new(dir.path());
        let old = Utc::now() - chrono::Duration::hours(2);
        state
            .write(OWNER_FILE, &OwnerDoc::new("c", "t", old))
            .unwrap();
        let path = dir.path().join("owner.json");
        let before = (
            std::fs::read(&path).unwrap(),
            std::fs::metadata(&path).unwrap().ino(),
        );
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let old_time = SystemTime::now() - Duration::from_secs(7200);
        file.set_modified(old_time).unwrap();
        let mut owner = Owner {
            _lock: try_lock(dir.path()).unwrap().expect("free"),
            doc: OwnerDoc::new("c", "t", old),
            every: Duration::from_secs(5),
            last: None,
            record: Some(file),
        };
        owner.beat(&mut state).unwrap();
        let after = (
            std::fs::read(&path).unwrap(),
            std::fs::metadata(&path).unwrap().ino(),
        );
        assert_eq!(before, after);
        let beat = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(
            beat > old_time + Duration::from_secs(7000),
            "the time is set"
        );
        // A stop is written whole.
        owner.stopped(&mut state).unwrap();
        let now: OwnerDoc = state.read(OWNER_FILE).unwrap().unwrap();
        assert!(now.stopped);
    }

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_lock(dir.path()).unwrap().expect("free");
        assert!(try_lock(dir.path()).unwrap().is_none(), "taken twice");
        drop(first);
        assert!(try_lock(dir.path()).unwrap().is_some(), "not released");
    }
}
