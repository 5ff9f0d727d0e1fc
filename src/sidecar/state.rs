//! The sidecar's offsets on disk (state version 2): one small record per file
//! name, each written atomically (write, fsync, rename, fsync the directory),
//! so recording a chunk costs the same whether one file or thousands are
//! followed, and a crash at any moment leaves the old or the new record.
//!
//! ```text
//! <state dir>/task.json                 {"version":2,"cluster":..,"task_id":..}
//! <state dir>/files/<hash of name>.json {"version":2,"name":..,"generation":..,..}
//! <state dir>/segment.json              {"version":2,"next_seq":..,"uploading":{..}}
//! ```
//! `segment.json` holds the next segment's number and the segment being
//! uploaded; a state without it starts a fresh counter (`SegmentDoc::fresh`).
//! Version 1 (`state.json`, one document for every file) is refused, not
//! read: on ECS a state only meets the sidecar version of its own task (a
//! task keeps its image's digest, and a new task's id makes an old state
//! another task's); elsewhere the error says what to do.

use crate::sidecar::fingerprint::{Fingerprint, Identity, fnv1a};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const STATE_VERSION: u32 = 2;
const TASK_FILE: &str = "task.json";
const FILES_DIR: &str = "files";
const SEGMENT_FILE: &str = "segment.json";

/// The task-level record: one write per segment, its size O(parts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentDoc {
    pub version: u32,
    /// The number the next segment key takes.
    pub next_seq: u64,
    /// The segment being uploaded, recorded before the upload starts: it is
    /// uploaded again, same key and bytes, before anything new is cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploading: Option<SegmentIntent>,
}

impl SegmentDoc {
    /// The counter of a state that has none yet starts at the current time in
    /// milliseconds, not 0: if a task's state is lost while its task id stays
    /// (a state directory off the shared volume, deleted by hand), the new
    /// keys must not overwrite the segments the old state already uploaded,
    /// some of which may still wait in the queue. One segment per upload keeps
    /// the counter far behind the clock, so a later fresh start is beyond it.
    pub fn fresh() -> Self {
        SegmentDoc {
            next_seq: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0),
            ..SegmentDoc::default()
        }
    }
}

impl Default for SegmentDoc {
    fn default() -> Self {
        SegmentDoc {
            version: STATE_VERSION,
            next_seq: 0,
            uploading: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentIntent {
    pub seq: u64,
    /// The parts' gzip level: a re-upload after a restart with another level writes the same bytes.
    pub gzip_level: u32,
    pub parts: Vec<PartRange>,
}

/// One file range of a recorded segment, in manifest order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRange {
    pub file: String,
    pub generation: u64,
    pub start: u64,
    pub end: u64,
}

/// Which task the records belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDoc {
    pub version: u32,
    pub cluster: String,
    pub task_id: String,
}

/// What is known about one file name: its current (or last) generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub version: u32,
    pub name: String,
    pub generation: u64,
    /// The file the offsets belong to (`dev` is not recorded on a shared file system).
    pub identity: Identity,
    /// Every byte before this is in S3.
    pub offset: u64,
    /// Checksums of the file's first bytes and of the bytes before `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// A range that must ship exactly as recorded, before anything new of
    /// this file is cut: a segment part that could not be read again, or the
    /// v1 chunk an earlier version was uploading (it goes into a segment as a
    /// part of the same range, which the shipper stores once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploading: Option<(u64, u64)>,
    /// This generation is over (deleted, replaced, truncated, pruned): a file
    /// that appears under the name starts the next one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state {path} is not valid sidecar state: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

/// What was saved: the task it belongs to and a record per file name (the
/// segment record is kept by the `StateDir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub task: TaskDoc,
    pub files: BTreeMap<String, FileRecord>,
}

pub struct StateDir {
    dir: PathBuf,
    /// Bytes written so far, to show that a write's cost does not grow with the files.
    pub bytes_written: u64,
    /// A task document not written yet (the directory was not writable): it
    /// goes first, so no record is ever on disk without its task.
    pending_task: Option<TaskDoc>,
    /// The segment record as last written (or loaded): changed only once on disk.
    segment: SegmentDoc,
}

fn record_file(name: &str) -> String {
    format!("{:016x}.json", fnv1a(name.as_bytes()))
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        StateDir {
            dir: dir.to_path_buf(),
            bytes_written: 0,
            pending_task: None,
            segment: SegmentDoc::fresh(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn io(path: &Path, source: std::io::Error) -> StateError {
        StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io(path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Invalid {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
    }

    /// The saved state, or `None` when there is none yet; the segment record
    /// is loaded into `self.segment`.
    pub fn load(&mut self) -> Result<Option<Saved>, StateError> {
        let task_path = self.dir.join(TASK_FILE);
        let Some(task) = Self::read_json::<TaskDoc>(&task_path)? else {
            // Never met on ECS (see the module's comment); elsewhere a task
            // id kept across versions must not start its files again at 0.
            let v1 = self.dir.join("state.json");
            if v1.exists() {
                return Err(StateError::Invalid {
                    path: v1,
                    detail: "version 1 state is not read by this version: ship it with an earlier version (`sidecar --once`) and delete it, or delete it to start afresh".into(),
                });
            }
            return Ok(None);
        };
        if task.version != STATE_VERSION {
            return Err(StateError::Invalid {
                path: task_path,
                detail: format!("version {}", task.version),
            });
        }
        let seg_path = self.dir.join(SEGMENT_FILE);
        let segment = Self::read_json::<SegmentDoc>(&seg_path)?.unwrap_or_else(SegmentDoc::fresh);
        if segment.version != STATE_VERSION {
            return Err(StateError::Invalid {
                path: seg_path,
                detail: format!("version {}", segment.version),
            });
        }
        self.segment = segment;
        let mut files = BTreeMap::new();
        let dir = self.dir.join(FILES_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(Saved { task, files }));
            }
            Err(e) => return Err(Self::io(&dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| Self::io(&dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue; // a temporary file left by a crash
            }
            let Some(rec) = Self::read_json::<FileRecord>(&path)? else {
                continue;
            };
            if rec.version != STATE_VERSION {
                return Err(StateError::Invalid {
                    path,
                    detail: format!("version {}", rec.version),
                });
            }
            files.insert(rec.name.clone(), rec);
        }
        Ok(Some(Saved { task, files }))
    }

    /// Forgets every record (state of another task).
    pub fn reset(&mut self) -> Result<(), StateError> {
        let seg = self.dir.join(SEGMENT_FILE);
        match std::fs::remove_file(&seg) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Self::io(&seg, e)),
        }
        let dir = self.dir.join(FILES_DIR);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Self::io(&dir, e)),
        }
        self.segment = SegmentDoc::fresh();
        Ok(())
    }

    /// The next segment's number and the one in flight.
    pub fn segment(&self) -> &SegmentDoc {
        &self.segment
    }

    /// Writes the task document; when that fails it is kept and written
    /// before the next record.
    pub fn save_task(&mut self, task: &TaskDoc) -> Result<(), StateError> {
        self.pending_task = Some(task.clone());
        self.write_pending_task()
    }

    fn write_pending_task(&mut self) -> Result<(), StateError> {
        if let Some(task) = self.pending_task.clone() {
            let dir = self.dir.clone();
            self.write_atomic(&dir, TASK_FILE, &task)?;
            self.pending_task = None;
        }
        Ok(())
    }

    /// Writes one file's record; the cost is that record's size alone.
    pub fn save_file(&mut self, rec: &FileRecord) -> Result<(), StateError> {
        self.write_pending_task()?;
        let dir = self.dir.join(FILES_DIR);
        self.write_atomic(&dir, &record_file(&rec.name), rec)
    }

    /// Another document kept in the state directory (the owner record), if any.
    pub(crate) fn read<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        Self::read_json(&self.dir.join(name))
    }

    /// The task the records belong to, if any, without loading them.
    pub fn load_task(&self) -> Result<Option<TaskDoc>, StateError> {
        Self::read_json(&self.dir.join(TASK_FILE))
    }

    /// Writes another document into the state directory, atomically.
    pub(crate) fn write<T: Serialize>(&mut self, name: &str, value: &T) -> Result<(), StateError> {
        let dir = self.dir.clone();
        self.write_atomic(&dir, name, value)
    }

    /// Records a segment before its upload: a recorded intent is what
    /// allows a re-upload (kept in memory only once on disk).
    pub fn intend(&mut self, intent: SegmentIntent) -> Result<(), StateError> {
        self.save_segment(SegmentDoc {
            uploading: Some(intent),
            ..self.segment.clone()
        })
    }

    /// The segment `seq` is in S3: the next one takes the next number.
    pub fn segment_done(&mut self, seq: u64) -> Result<(), StateError> {
        self.save_segment(SegmentDoc {
            version: STATE_VERSION,
            next_seq: seq + 1,
            uploading: None,
        })
    }

    /// Writes the segment record; the cost is its parts', not the followed files'.
    fn save_segment(&mut self, doc: SegmentDoc) -> Result<(), StateError> {
        self.write_pending_task()?;
        let dir = self.dir.clone();
        self.write_atomic(&dir, SEGMENT_FILE, &doc)?;
        self.segment = doc;
        Ok(())
    }

    fn write_atomic<T: Serialize>(
        &mut self,
        dir: &Path,
        name: &str,
        value: &T,
    ) -> Result<(), StateError> {
        let path = dir.join(name);
        std::fs::create_dir_all(dir).map_err(|e| Self::io(dir, e))?;
        let body = serde_json::to_vec_pretty(value).map_err(|e| StateError::Invalid {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let tmp = dir.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| Self::io(&tmp, e))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(|e| Self::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Self::io(&path, e))?;
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Self::io(dir, e))?;
        self.bytes_written += body.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
