//! Shipping one followed file: the recorded upload first, then the chunks
//! that are due, each recorded before and after its upload.

use crate::core::keys::ChunkKey;
use crate::ports::ObjectStore;
use crate::sidecar::chunk::{Mode, decide, find_cut, gzip_range};
use crate::sidecar::config::Config;
use crate::sidecar::error::{SidecarError, Totals};
use crate::sidecar::followed::Followed;
use crate::sidecar::state::{StateDir, StateError};
use crate::sidecar::upload;
use std::collections::HashMap;
use std::io;
use std::time::Instant;

/// What the loop over the files shares: the store, the rules, the counters.
pub(crate) struct Ctx<S> {
    pub store: S,
    pub config: Config,
    pub cluster: String,
    pub task_id: String,
    pub totals: Totals,
    /// Upload attempts before giving up (`None`: keep trying; `--once` sets a limit).
    pub max_attempts: Option<u32>,
    /// No upload runs past this (the shutdown grace).
    pub deadline: Option<Instant>,
    /// `--once`: each file's length when it started, by (device, inode).
    pub limits: Option<HashMap<(u64, u64), u64>>,
}

impl<S> Ctx<S> {
    /// The bytes of `f` this run ships: all of them, or with `--once` what was there at its start.
    pub fn limit(&self, f: &Followed, len: u64) -> u64 {
        let id = f.record.identity;
        match &self.limits {
            None => len,
            Some(l) => len.min(
                l.get(&(id.dev.unwrap_or_default(), id.inode))
                    .copied()
                    .unwrap_or(0),
            ),
        }
    }
}

/// Why one file's shipping stopped.
enum Stop {
    /// This file only (unreadable, vanished): the others keep shipping.
    File(io::Error),
    /// Every file (state cannot be recorded, S3 refused past the limits).
    All(SidecarError),
}

impl From<StateError> for Stop {
    fn from(e: StateError) -> Self {
        Stop::All(e.into())
    }
}

pub(crate) fn note_failure(f: &mut Followed, e: &io::Error) {
    if f.fail(e.to_string()) {
        tracing::warn!(file = f.name(), error = %e, "cannot read the file; the other files keep shipping");
    }
}

/// Ships the due chunks of one file, the recorded upload first; returns
/// whether unshipped bytes remain. A read error stays with the file.
pub(crate) async fn ship<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    state: &mut StateDir,
    f: &mut Followed,
    mode: Mode,
) -> Result<bool, SidecarError> {
    match ship_file(ctx, state, f, mode).await {
        Ok(left) => Ok(left),
        Err(Stop::File(e)) => {
            note_failure(f, &e);
            Ok(true)
        }
        Err(Stop::All(e)) => Err(e),
    }
}

async fn ship_file<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    state: &mut StateDir,
    f: &mut Followed,
    mode: Mode,
) -> Result<bool, Stop> {
    let dir = ctx.config.log_dir.clone();
    loop {
        if let Some((start, end)) = f.record.uploading {
            tracing::info!(
                file = f.name(),
                start,
                end,
                "re-uploading the chunk that was in flight when the upload stopped"
            );
            upload(ctx, state, f, start, end).await?;
            continue;
        }
        let Some(h) = f.handle(&dir).map_err(Stop::File)? else {
            return Ok(false); // replaced since the look: the next pass finishes it
        };
        let len = h.metadata().map_err(Stop::File)?.len();
        let available = ctx.limit(f, len);
        let start = f.record.offset;
        let pending = available.saturating_sub(start);
        if pending == 0 {
            f.pending_since = None;
            return Ok(false);
        }
        let age = f.pending_since.get_or_insert_with(Instant::now).elapsed();
        let Some(urgency) = decide(mode, ctx.config.due(), age, pending) else {
            return Ok(true);
        };
        let format = f.format;
        let Some(h) = f.handle(&dir).map_err(Stop::File)? else {
            return Ok(false);
        };
        let cut = find_cut(h, format, start, available, ctx.config.chunk_bytes, urgency)
            .map_err(Stop::File)?;
        // Nothing to cut: held (following), or the file shrank under us (draining).
        let Some(end) = cut else {
            return Ok(mode == Mode::Follow);
        };
        upload(ctx, state, f, start, end).await?;
        f.pending_since = (end < available).then(Instant::now);
    }
}

/// Records the chunk, uploads it, then records the new offset: after a crash
/// or a cancelled upload the recorded chunk is uploaded again, same key and bytes.
async fn upload<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    state: &mut StateDir,
    f: &mut Followed,
    start: u64,
    end: u64,
) -> Result<(), Stop> {
    let dir = ctx.config.log_dir.clone();
    let Some(h) = f.handle(&dir).map_err(Stop::File)? else {
        return Err(Stop::File(io::Error::other("replaced before its upload")));
    };
    let body = gzip_range(h, start, end, ctx.config.gzip_level).map_err(Stop::File)?;
    // In memory only once on disk: a recorded intent is what allows a re-upload
    // without recording it again.
    if f.record.uploading != Some((start, end)) {
        let mut rec = f.record.clone();
        rec.uploading = Some((start, end));
        state.save_file(&rec)?;
        f.record = rec;
    }
    let key = ChunkKey {
        prefix: ctx.config.key_prefix.clone(),
        cluster: ctx.cluster.clone(),
        task_id: ctx.task_id.clone(),
        file: f.name().to_string(),
        generation: f.record.generation,
        start,
        end,
    }
    .to_string();
    let retries = upload::put_with_retry(
        &ctx.store,
        &ctx.config.bucket,
        &key,
        body.into(),
        ctx.max_attempts,
        ctx.deadline,
    )
    .await
    .map_err(|source| {
        Stop::All(SidecarError::Upload {
            key: key.clone(),
            source,
        })
    })?;
    ctx.totals.failed_attempts += u64::from(retries);
    ctx.totals.bytes += end - start;
    ctx.totals.chunks += 1;
    f.shipped(end);
    state.save_file(&f.record)?;
    tracing::debug!(key, bytes = end - start, "chunk uploaded");
    Ok(())
}

/// How many log files may be open at once: half the soft RLIMIT_NOFILE (read
/// from /proc, no unsafe code), the rest left to sockets and the state.
pub(crate) fn open_file_budget() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    (soft / 2).clamp(8, 4096)
}
