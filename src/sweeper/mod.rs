//! The sweeper: ships the task directories on a shared file system (EFS)
//! that no live sidecar ships — a task that died without warning, or a
//! writer that runs no sidecar at all — with the sidecar's own code, state
//! and cutting rules (`Sidecar::sweep`), so its objects are ordinary segments.
//!
//! One run looks at every `<root>/<cluster>/<task_id>/` once, in a rotating
//! order that starts after where the last run stopped (`cursor`), until the
//! deadline. A directory is taken only when its owner is gone or absent
//! (`liveness`) and its lock is free (`owner::try_lock`); the lock,
//! held while the directory is shipped, keeps two sweepers, or a sweeper and
//! a sidecar that came back, from writing one state or one key at once.

mod config;
mod cursor;
mod liveness;

pub use config::SweepConfig;

use crate::ports::ObjectStore;
use crate::sidecar::owner;
use crate::sidecar::state::StateDir;
use crate::sidecar::{Sidecar, SidecarError};
use chrono::Utc;
use liveness::{Liveness, liveness};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

/// A directory is not started with less time than this left before the deadline.
const DIR_MARGIN: Duration = Duration::from_secs(10);
/// Where a finished directory is moved, under its lock, before it is deleted.
const TRASH: &str = ".logdrop-trash";
/// Uploads of one directory give up after this many attempts: S3 failing for
/// one directory must not spend the run (the directory counts as failed and
/// is tried again at the next run).
const DIR_ATTEMPTS: u32 = 6;

/// What one run did, directory by directory.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Task directories found under the root.
    pub dirs: usize,
    /// Left alone: a live sidecar heartbeats in them.
    pub owned: usize,
    /// Left alone: another process holds the lock.
    pub held: usize,
    /// Nothing to ship: no state and no file the patterns match.
    pub empty: usize,
    /// Looked at and shipped what was due.
    pub swept: usize,
    /// Fully shipped, quiet past the retention, and deleted.
    pub deleted: usize,
    /// Could not be swept (each logged, naming it); tried again next run.
    pub failed: usize,
    /// Not reached before the deadline; the next run starts with them.
    pub not_reached: usize,
    /// Uncompressed bytes shipped.
    pub bytes: u64,
    /// Deleted directories still in the trash (`<root>/.logdrop-trash`),
    /// left for a run with time to spare.
    pub trash_left: usize,
}

/// What became of one directory.
enum Outcome {
    Owned,
    Held,
    Empty,
    Swept { bytes: u64 },
    Deleted { bytes: u64 },
}

/// One run over every task directory under the root, until `deadline`.
pub async fn sweep<S: ObjectStore + Clone>(
    store: &S,
    config: &SweepConfig,
    deadline: Option<Instant>,
) -> std::io::Result<SweepReport> {
    let dirs = task_dirs(&config.root)?;
    let start = cursor::resume_at(&config.root, &dirs);
    let mut report = SweepReport {
        dirs: dirs.len(),
        ..SweepReport::default()
    };
    let order = dirs[start..].iter().chain(&dirs[..start]);
    for (done, (cluster, task_id)) in order.enumerate() {
        if deadline.is_some_and(|d| Instant::now() + DIR_MARGIN >= d) {
            report.not_reached = dirs.len() - done;
            cursor::save(&config.root, cluster, task_id);
            tracing::warn!(
                not_reached = report.not_reached,
                "the deadline is near; the next run starts with the directories not reached"
            );
            break;
        }
        let dir = config.root.join(cluster).join(task_id);
        let span = tracing::info_span!("sweep", dir = %dir.display());
        // Boxed: the sidecar's pass is a deep future, and one per directory.
        let outcome = Box::pin(sweep_dir(store, config, &dir, deadline))
            .instrument(span)
            .await;
        match outcome {
            Ok(Outcome::Owned) => report.owned += 1,
            Ok(Outcome::Held) => report.held += 1,
            Ok(Outcome::Empty) => report.empty += 1,
            Ok(Outcome::Swept { bytes }) => {
                report.swept += 1;
                report.bytes += bytes;
            }
            Ok(Outcome::Deleted { bytes }) => {
                report.swept += 1;
                report.deleted += 1;
                report.bytes += bytes;
            }
            Err(e) if deadline.is_some_and(|d| Instant::now() + DIR_MARGIN >= d) => {
                // Stopped by the deadline, most likely: the next run starts here.
                report.not_reached = dirs.len() - done;
                cursor::save(&config.root, cluster, task_id);
                tracing::warn!(dir = %dir.display(), error = %e, not_reached = report.not_reached, "the deadline came during the directory; the next run starts with it");
                break;
            }
            Err(e) => {
                report.failed += 1;
                tracing::error!(dir = %dir.display(), error = %e, "cannot sweep the directory; the others go on, and the next run tries again");
            }
        }
    }
    if report.not_reached == 0 {
        cursor::clear(&config.root);
    }
    // After the shipping: a trash too big for one run must not keep every
    // run from reaching the directories.
    report.trash_left = empty_trash(&config.root, deadline);
    tracing::info!(report = ?report, "sweep finished");
    Ok(report)
}

/// Every `<cluster>/<task_id>` under the root, sorted; names starting with a
/// dot (the cursor, a temporary file) are not tasks.
fn task_dirs(root: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for cluster in subdirs(root)? {
        match subdirs(&root.join(&cluster)) {
            Ok(tasks) => out.extend(tasks.into_iter().map(|t| (cluster.clone(), t))),
            Err(e) => {
                tracing::error!(dir = %root.join(&cluster).display(), error = %e, "cannot list the cluster's directory; skipped this run")
            }
        }
    }
    out.sort();
    Ok(out)
}

fn subdirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!(dir = %dir.display(), name = ?entry.file_name(), "a name that is not UTF-8 is not a cluster or task; skipped");
            continue;
        };
        // Not followed: a link is no task directory of this file system.
        if !name.starts_with('.') && entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(name);
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
enum DirError {
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    #[error(transparent)]
    State(#[from] crate::sidecar::state::StateError),
    #[error(
        "its state belongs to task {cluster}/{task_id}, not to the directory's: a copy of another task's directory? Left as it is"
    )]
    Foreign { cluster: String, task_id: String },
    #[error("deleting it: {0}")]
    Delete(std::io::Error),
    #[error("its path does not name a task as the sidecar spells it ({0}); left as it is")]
    Name(crate::core::keys::KeyError),
    #[error("listing it: {0}")]
    List(std::io::Error),
    #[error("making its state directory: {0}")]
    MakeState(std::io::Error),
}

async fn sweep_dir<S: ObjectStore + Clone>(
    store: &S,
    config: &SweepConfig,
    dir: &Path,
    deadline: Option<Instant>,
) -> Result<Outcome, DirError> {
    let sidecar_config = config.for_dir(dir);
    // Nothing written where nothing is to be shipped (an empty directory
    // made by a writer's start, or a mistake): no lock, no state.
    if !sidecar_config.state_dir.exists() && !has_matching_file(dir, &sidecar_config)? {
        return Ok(Outcome::Empty);
    }
    let state = StateDir::new(&sidecar_config.state_dir);
    let gone = match liveness(&state, Utc::now(), config.stale) {
        Liveness::Alive => return Ok(Outcome::Owned),
        Liveness::NoOwner => None,
        Liveness::Gone(since) => Some(since),
    };
    // Made here, not by the lock: a parent another sweeper has just deleted
    // must not be made again.
    match std::fs::create_dir(&sidecar_config.state_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Empty),
        Err(e) => return Err(DirError::MakeState(e)),
    }
    let Some(lock) = owner::try_lock(&sidecar_config.state_dir)? else {
        return Ok(Outcome::Held);
    };
    // Looked at again under the lock: a sidecar may have come back meanwhile.
    if liveness(&state, Utc::now(), config.stale) == Liveness::Alive {
        return Ok(Outcome::Owned);
    }
    let (cluster, task_id) = identity(&state, dir)?;
    let mut sidecar = Sidecar::start(store.clone(), sidecar_config, cluster, task_id).await?;
    sidecar.set_max_attempts(DIR_ATTEMPTS);
    if let Some(d) = deadline {
        // Room left to save the state and release the lock after the last upload.
        sidecar.set_deadline(d.checked_sub(DIR_MARGIN / 2).unwrap_or(d));
    }
    let left = sidecar.sweep().await?;
    let bytes = sidecar.totals().bytes;
    drop(sidecar);
    if let Some(heartbeat) = gone
        && left.is_empty()
        && quiet_for(dir, heartbeat) >= config.retention
    {
        if let Some(other) = unmatched_file(dir, &config.for_dir(dir))? {
            tracing::info!(dir = %dir.display(), file = other, "everything shipped, but the directory holds a file the patterns do not match; kept");
            return Ok(Outcome::Swept { bytes });
        }
        // Moved away under the lock, deleted after: on NFS a deletion is
        // many requests, and no sweeper may take the half-deleted directory.
        let trash = config.root.join(TRASH);
        let _ = std::fs::create_dir(&trash);
        let moved = trash.join(trash_name(dir));
        std::fs::rename(dir, &moved).map_err(DirError::Delete)?;
        drop(lock);
        match std::fs::remove_dir_all(&moved) {
            // Another run emptying the trash got there first.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(DirError::Delete(e)),
            _ => {}
        }
        tracing::info!(dir = %dir.display(), "the task is gone and everything it wrote is shipped; its directory is deleted");
        return Ok(Outcome::Deleted { bytes });
    }
    Ok(Outcome::Swept { bytes })
}

/// The cluster and task joined, and a random suffix: unique across sweepers
/// (their process ids repeat from one Lambda sandbox to the next).
fn trash_name(dir: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    format!(
        "{}%2F{}.{:016x}",
        name(dir.parent()),
        name(Some(dir)),
        fastrand::u64(..)
    )
}

/// Deletes what a run moved to the trash but could not delete, until
/// `deadline`; returns how many entries are left.
fn empty_trash(root: &Path, deadline: Option<Instant>) -> usize {
    let trash = root.join(TRASH);
    let Ok(entries) = std::fs::read_dir(&trash) else {
        return 0;
    };
    let (mut entries, mut failed) = (entries.flatten(), 0);
    while let Some(entry) = entries.next() {
        if deadline.is_some_and(|d| Instant::now() + DIR_MARGIN >= d) {
            let left = failed + 1 + entries.count();
            tracing::warn!(trash = %trash.display(), left, "the deadline is near; the rest of the trash goes at a run with time to spare");
            return left;
        }
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        if let Err(e) = std::fs::remove_dir_all(entry.path())
            && !gone(&e)
        {
            tracing::warn!(path = %entry.path().display(), error = %e, "cannot delete a finished directory moved aside; the next run tries again");
            failed += 1;
        }
    }
    failed
}

/// A file (not the state) the directory holds that no pattern matches.
fn unmatched_file(dir: &Path, config: &crate::sidecar::Config) -> Result<Option<String>, DirError> {
    let entries = std::fs::read_dir(dir).map_err(DirError::List)?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|name| name != ".logdrop" && !config.matches(name)))
}

fn has_matching_file(dir: &Path, config: &crate::sidecar::Config) -> Result<bool, DirError> {
    let entries = std::fs::read_dir(dir).map_err(DirError::List)?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .any(|name| config.matches(&name)))
}

/// The task a directory belongs to: its state's, which must be the one its
/// path names; a directory without state is the task its path names.
fn identity(state: &StateDir, dir: &Path) -> Result<(String, String), DirError> {
    let names = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let task_id = names(dir).unwrap_or_default();
    let cluster = dir.parent().and_then(names).unwrap_or_default();
    let Some(task) = state.load_task()? else {
        // The names decoded, as the sidecar encodes them (`task_dir`).
        let decode = crate::core::keys::decode_component;
        return Ok((
            decode(&cluster).map_err(DirError::Name)?,
            decode(&task_id).map_err(DirError::Name)?,
        ));
    };
    let encoded = |s: &str| crate::core::keys::encode_component(s);
    if encoded(&task.cluster) != cluster || encoded(&task.task_id) != task_id {
        return Err(DirError::Foreign {
            cluster: task.cluster,
            task_id: task.task_id,
        });
    }
    Ok((task.cluster, task.task_id))
}

/// How long since the directory's files changed and its owner last beat.
fn quiet_for(dir: &Path, heartbeat: chrono::DateTime<Utc>) -> Duration {
    let files = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let m = e.ok()?.metadata().ok()?;
            m.is_file().then(|| m.modified().ok()).flatten()
        });
    let latest = files.chain([SystemTime::from(heartbeat)]).max();
    latest
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests;
