//! The sweeper's configuration: the sidecar's (bucket, prefix, files, cutting
//! rules, gzip level) plus where the file system is mounted, when an owner
//! counts as gone and how long a finished directory is kept.

use crate::config::{ConfigError, Env, err};
use crate::sidecar::Config;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Six missed heartbeats (`sidecar::config::DEFAULT_HEARTBEAT`).
pub const DEFAULT_OWNER_STALE: Duration = Duration::from_secs(30);
/// A dead task's shipped directory is kept a day: time to look at it by hand.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// The file system's mount: task directories are `<root>/<cluster>/<task_id>/`.
    pub root: PathBuf,
    /// An owner whose heartbeat is older than this is gone.
    pub stale: Duration,
    /// A gone task's directory, fully shipped and unchanged this long, is deleted.
    pub retention: Duration,
    /// The rules every directory is cut by.
    pub sidecar: Config,
}

impl SweepConfig {
    /// `root` (the `--root` flag) wins over `LOGDROP_EFS_ROOT`.
    pub fn from_env(env: &Env, root: Option<PathBuf>) -> Result<SweepConfig, ConfigError> {
        let root = match root.or_else(|| env.get("LOGDROP_EFS_ROOT").map(PathBuf::from)) {
            Some(r) => r,
            None => return Err(err("LOGDROP_EFS_ROOT", "is required (or --root DIR)")),
        };
        // The sidecar's variables, without the ones that place one task's files.
        let own = ["LOGDROP_EFS_ROOT", "LOGDROP_LOG_DIR", "LOGDROP_STATE_DIR"];
        let sidecar = Config::from_env(&env.without(&own))?;
        Ok(SweepConfig {
            root,
            stale: env.duration("LOGDROP_OWNER_STALE", DEFAULT_OWNER_STALE)?,
            retention: env.duration("LOGDROP_SWEEP_RETENTION", DEFAULT_RETENTION)?,
            sidecar,
        })
    }

    /// The sidecar configuration of one task directory.
    pub fn for_dir(&self, dir: &Path) -> Config {
        let mut c = self.sidecar.clone();
        c.log_dir = dir.to_path_buf();
        c.state_dir = dir.join(".logdrop");
        c.efs_root = None;
        c.shared_fs = true;
        c.efs_link = None;
        c
    }
}
