//! The sidecar's offsets, persisted atomically (write, fsync, rename, fsync
//! the directory) so a crash at any moment leaves the old or the new state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const STATE_VERSION: u32 = 1;
const FILE_NAME: &str = "state.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub cluster: String,
    pub task_id: String,
    /// By file name in the log directory.
    pub files: BTreeMap<String, FileState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub generation: u64,
    /// Identity of the file the offsets belong to.
    pub inode: u64,
    /// Every byte before this is in S3.
    pub offset: u64,
    /// The chunk being uploaded, recorded before the upload starts: after a
    /// crash it is uploaded again, exactly, before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploading: Option<(u64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid v{STATE_VERSION} state: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        StateFile {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            path: self.path(),
            source,
        }
    }

    /// The saved state, or `None` when there is none yet.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let bytes = match std::fs::read(self.path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
            path: self.path(),
            detail: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Invalid {
                path: self.path(),
                detail: format!("version {}", state.version),
            });
        }
        Ok(Some(state))
    }

    pub fn save(&self, state: &State) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let body = serde_json::to_vec_pretty(state).map_err(|e| StateError::Invalid {
            path: self.path(),
            detail: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.io(e))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, self.path()).map_err(|e| self.io(e))?;
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let sf = StateFile::new(&dir.path().join(".logdrop"));
        assert_eq!(sf.load().unwrap(), None);
        let mut files = BTreeMap::new();
        files.insert(
            "catalina.2026-11-24.log".to_string(),
            FileState {
                generation: 1,
                inode: 42,
                offset: 6080,
                uploading: Some((6080, 7000)),
            },
        );
        let state = State {
            version: 1,
            cluster: "prod".into(),
            task_id: "t1".into(),
            files,
        };
        sf.save(&state).unwrap();
        assert_eq!(sf.load().unwrap(), Some(state));
        let golden = include_str!("../../tests/fixtures/sidecar_state_v1.json");
        assert_eq!(
            std::fs::read_to_string(sf.path()).unwrap(),
            golden.trim_end()
        );
        std::fs::write(sf.path(), b"{").unwrap();
        assert!(matches!(sf.load(), Err(StateError::Invalid { .. })));
    }
}
