//! The sidecar: follows Tomcat's log files and uploads them to S3 as gzip
//! chunks cut at event boundaries, remembering its offsets on disk.

pub mod chunk;
pub mod config;
pub mod identity;
pub mod state;
pub mod tail;
pub mod upload;

pub use config::Config;

use crate::core::keys::ChunkKey;
use crate::core::split::Format;
use crate::ports::{ObjectStore, PortError};
use chunk::{Urgency, find_cut, gzip_range};
use state::{FileState, State, StateError, StateFile};
use std::collections::BTreeMap;
use std::fs::File;
use std::time::{Duration, Instant};
use tail::{Change, Seen};

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("log directory {dir}: {source}")]
    LogDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("uploading {key}: {source}")]
    Upload {
        key: String,
        #[source]
        source: PortError,
    },
    #[error("reading {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// A file being followed: one generation of one name.
struct Followed {
    file: File,
    state: FileState,
    format: Format,
    /// When unshipped bytes were first seen (the age rule's clock).
    pending_since: Option<Instant>,
    /// The last shipped bytes. A file truncated and rewritten past the offset
    /// between two looks keeps its size; these bytes then differ.
    fingerprint: Vec<u8>,
}

/// How many shipped bytes the fingerprint keeps.
const FINGERPRINT_BYTES: u64 = 32;

fn fingerprint(file: &File, offset: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let start = offset.saturating_sub(FINGERPRINT_BYTES);
    let mut buf = vec![0u8; (offset - start) as usize];
    match file.read_exact_at(&mut buf, start) {
        Ok(()) => buf,
        Err(_) => Vec::new(),
    }
}

/// Counters for the periodic summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub bytes: u64,
    pub chunks: u64,
    pub failed_attempts: u64,
}

/// How a pass over the files treats data that is not yet due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The size and age rules decide.
    Follow,
    /// Ship everything now (shutdown, `--once`).
    Drain,
}

pub struct Sidecar<S> {
    store: S,
    config: Config,
    cluster: String,
    task_id: String,
    state_file: StateFile,
    followed: BTreeMap<String, Followed>,
    /// Generations used by names not followed now, so a reappearing name never reuses one.
    retired: BTreeMap<String, FileState>,
    pub totals: Totals,
    /// Upload attempts before giving up (`None`: keep trying; `--once` sets a limit).
    pub max_attempts: Option<u32>,
    /// What was last written to the state file.
    saved: Option<State>,
}

impl<S: ObjectStore> Sidecar<S> {
    /// Loads the saved state and re-uploads any chunk that was in flight at a crash.
    pub async fn start(
        store: S,
        config: Config,
        cluster: String,
        task_id: String,
    ) -> Result<Self, SidecarError> {
        let state_file = StateFile::new(&config.state_dir);
        let saved = state_file.load()?.filter(|s| {
            let same = s.cluster == cluster && s.task_id == task_id;
            if !same {
                tracing::warn!(
                    saved_task = s.task_id,
                    "state belongs to another task; starting afresh"
                );
            }
            same
        });
        let mut me = Sidecar {
            store,
            config,
            cluster,
            task_id,
            state_file,
            followed: BTreeMap::new(),
            retired: BTreeMap::new(),
            totals: Totals::default(),
            max_attempts: None,
            saved: None,
        };
        let seen = me.scan()?;
        for (name, fs) in saved.map(|s| s.files).unwrap_or_default() {
            let now = seen.iter().find(|s| s.name == name);
            let reopened = now
                .filter(|s| s.inode == fs.inode && s.len >= fs.offset)
                .and_then(|s| tail::open(&me.config.log_dir, s).ok().flatten());
            match reopened {
                Some(file) => {
                    let format = Format::for_file(&name);
                    let fingerprint = fingerprint(&file, fs.offset);
                    me.followed.insert(
                        name,
                        Followed {
                            file,
                            state: fs,
                            format,
                            pending_since: None,
                            fingerprint,
                        },
                    );
                }
                None => {
                    if fs.offset > 0 || fs.uploading.is_some() {
                        tracing::warn!(
                            file = name,
                            generation = fs.generation,
                            "file was replaced, truncated or deleted while the sidecar was down"
                        );
                    }
                    me.retired.insert(name, fs);
                }
            }
        }
        let names: Vec<String> = me.followed.keys().cloned().collect();
        for name in names {
            me.finish_interrupted_upload(&name).await?;
        }
        me.save()?;
        Ok(me)
    }

    fn scan(&self) -> Result<Vec<Seen>, SidecarError> {
        tail::scan(&self.config.log_dir, &self.config).map_err(|source| SidecarError::LogDir {
            dir: self.config.log_dir.display().to_string(),
            source,
        })
    }

    fn snapshot(&self) -> State {
        let mut files: BTreeMap<String, FileState> = self.retired.clone();
        files.extend(
            self.followed
                .iter()
                .map(|(n, f)| (n.clone(), f.state.clone())),
        );
        State {
            version: state::STATE_VERSION,
            cluster: self.cluster.clone(),
            task_id: self.task_id.clone(),
            files,
        }
    }

    /// Persists the state if it changed since the last save: an idle pass
    /// writes nothing.
    fn save(&mut self) -> Result<(), SidecarError> {
        let now = self.snapshot();
        if self.saved.as_ref() != Some(&now) {
            self.state_file.save(&now)?;
            self.saved = Some(now);
        }
        Ok(())
    }

    /// Bytes written to the followed files and not yet in S3.
    pub fn lag_bytes(&self) -> u64 {
        self.followed
            .values()
            .map(|f| {
                f.file
                    .metadata()
                    .map_or(0, |m| m.len())
                    .saturating_sub(f.state.offset)
            })
            .sum()
    }

    pub fn followed_files(&self) -> usize {
        self.followed.len()
    }

    /// One pass: notice new, rotated, replaced, truncated and deleted files,
    /// then ship what is due. Returns whether anything is left to ship.
    pub async fn pass(&mut self, mode: Mode) -> Result<bool, SidecarError> {
        let seen = self.scan()?;
        let names: Vec<String> = self.followed.keys().cloned().collect();
        for name in names {
            let f = &self.followed[&name];
            let now = seen.iter().find(|s| s.name == name);
            let mut change = tail::classify(f.state.inode, f.state.offset, now);
            if change == Change::Same && fingerprint(&f.file, f.state.offset) != f.fingerprint {
                change = Change::Truncated;
            }
            match change {
                Change::Same => {}
                Change::Deleted | Change::Replaced => {
                    // The open handle still reads the old file: finish it first.
                    self.ship(&name, Mode::Drain).await?;
                    if let Some(old) = self.followed.remove(&name) {
                        tracing::info!(
                            file = name,
                            generation = old.state.generation,
                            "finished a deleted or replaced file"
                        );
                        self.retired.insert(name, old.state);
                    }
                }
                Change::Truncated => {
                    if let Some(old) = self.followed.remove(&name) {
                        tracing::warn!(
                            file = name,
                            generation = old.state.generation,
                            shipped = old.state.offset,
                            "file was truncated; starting a new generation"
                        );
                        self.retired.insert(name, old.state);
                    }
                }
            }
        }
        for s in &seen {
            if !self.followed.contains_key(&s.name) {
                self.follow(s)?;
            }
        }
        let mut left = false;
        let names: Vec<String> = self.followed.keys().cloned().collect();
        for name in names {
            left |= self.ship(&name, mode).await?;
        }
        self.save()?;
        Ok(left)
    }

    fn follow(&mut self, s: &Seen) -> Result<(), SidecarError> {
        let Some(file) =
            tail::open(&self.config.log_dir, s).map_err(|source| SidecarError::Read {
                name: s.name.clone(),
                source,
            })?
        else {
            return Ok(()); // swapped between scan and open: next pass
        };
        let generation = self.retired.remove(&s.name).map_or(0, |r| r.generation + 1);
        tracing::info!(file = s.name, generation, "following");
        let state = FileState {
            generation,
            inode: s.inode,
            offset: 0,
            uploading: None,
        };
        self.followed.insert(
            s.name.clone(),
            Followed {
                file,
                state,
                format: Format::for_file(&s.name),
                pending_since: None,
                fingerprint: Vec::new(),
            },
        );
        Ok(())
    }

    /// Ships the due chunks of one file; returns whether unshipped bytes remain.
    async fn ship(&mut self, name: &str, mode: Mode) -> Result<bool, SidecarError> {
        loop {
            let (chunk_bytes, flush, hold) = (
                self.config.chunk_bytes,
                self.config.flush_interval,
                self.config.hold_timeout,
            );
            let Some(f) = self.followed.get_mut(name) else {
                return Ok(false);
            };
            let len = f
                .file
                .metadata()
                .map_err(|source| SidecarError::Read {
                    name: name.to_string(),
                    source,
                })?
                .len();
            if len <= f.state.offset {
                f.pending_since = None;
                return Ok(false);
            }
            let age = f.pending_since.get_or_insert_with(Instant::now).elapsed();
            let urgency = match mode {
                Mode::Drain => Urgency::Everything,
                Mode::Follow if age >= flush + hold => Urgency::Everything,
                Mode::Follow if age >= flush || len - f.state.offset >= chunk_bytes => {
                    Urgency::WholeEvents
                }
                Mode::Follow => return Ok(true),
            };
            let start = f.state.offset;
            let cut = find_cut(&mut f.file, f.format, start, len, chunk_bytes, urgency).map_err(
                |source| SidecarError::Read {
                    name: name.to_string(),
                    source,
                },
            )?;
            // Nothing to cut: held (following), or the file shrank under us (draining).
            let Some(end) = cut else {
                return Ok(mode == Mode::Follow);
            };
            self.upload(name, start, end).await?;
            if let Some(f) = self.followed.get_mut(name) {
                f.pending_since = (end < len).then(Instant::now);
            }
        }
    }

    /// Records the chunk, uploads it, then records the new offset: after a
    /// crash the recorded chunk is uploaded again with the same key and bytes.
    async fn upload(&mut self, name: &str, start: u64, end: u64) -> Result<(), SidecarError> {
        let level = self.config.gzip_level;
        let Some(f) = self.followed.get_mut(name) else {
            return Ok(());
        };
        let body =
            gzip_range(&mut f.file, start, end, level).map_err(|source| SidecarError::Read {
                name: name.to_string(),
                source,
            })?;
        f.state.uploading = Some((start, end));
        let generation = f.state.generation;
        self.save()?;
        let key = ChunkKey {
            prefix: self.config.key_prefix.clone(),
            cluster: self.cluster.clone(),
            task_id: self.task_id.clone(),
            file: name.to_string(),
            generation,
            start,
            end,
        }
        .to_string();
        let retries = upload::put_with_retry(
            &self.store,
            &self.config.bucket,
            &key,
            body.into(),
            self.max_attempts,
        )
        .await
        .map_err(|source| SidecarError::Upload {
            key: key.clone(),
            source,
        })?;
        self.totals.failed_attempts += u64::from(retries);
        self.totals.bytes += end - start;
        self.totals.chunks += 1;
        if let Some(f) = self.followed.get_mut(name) {
            f.state.offset = end;
            f.state.uploading = None;
            f.fingerprint = fingerprint(&f.file, end);
        }
        self.save()?;
        tracing::debug!(key, bytes = end - start, "chunk uploaded");
        Ok(())
    }

    async fn finish_interrupted_upload(&mut self, name: &str) -> Result<(), SidecarError> {
        let Some((start, end)) = self.followed.get(name).and_then(|f| f.state.uploading) else {
            return Ok(());
        };
        tracing::info!(
            file = name,
            start,
            end,
            "re-uploading the chunk that was in flight when the sidecar stopped"
        );
        self.upload(name, start, end).await
    }

    /// Deletes files that are fully shipped and unchanged for `prune_after`.
    pub fn prune(&mut self) {
        let Some(after) = self.config.prune_after else {
            return;
        };
        let names: Vec<String> = self.followed.keys().cloned().collect();
        for name in names {
            let f = &self.followed[&name];
            let Ok(meta) = f.file.metadata() else {
                continue;
            };
            let idle = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or(Duration::ZERO);
            if meta.len() == f.state.offset && f.state.uploading.is_none() && idle >= after {
                match std::fs::remove_file(self.config.log_dir.join(&name)) {
                    Ok(()) => tracing::info!(file = name, "pruned a fully shipped file"),
                    Err(e) => tracing::warn!(file = name, error = %e, "could not prune"),
                }
            }
        }
    }
}
