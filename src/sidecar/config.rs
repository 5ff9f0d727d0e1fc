//! The sidecar's configuration (contract v2), parsed once at start-up.

use crate::config::{ConfigError, Env, err};
use crate::core::keys::DEFAULT_KEY_PREFIX;
use crate::core::urgent::Rule;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_LOG_DIR: &str = "/usr/local/tomcat/logs";
pub const DEFAULT_FILES: &str = "localhost_access_log.*.txt,catalina.*.log,localhost.*.log";

/// One object per task-minute at most: $0.22 a month in S3 uploads (issue 9).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a last line without its newline may stay unchanged before it
/// ships as is. Tomcat's buffered `AccessLogValve` (the default) writes its
/// 128,000-character buffer whenever it fills, mid-line, and flushes the rest
/// from the engine's background thread every `backgroundProcessorDelay`
/// (10 s by default), so its file routinely ends inside a line for up to
/// ~10 s; JULI's `FileHandler` flushes every record. Six times Tomcat's
/// period leaves room for a background thread delayed by a busy JVM.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub key_prefix: String,
    pub log_dir: PathBuf,
    pub files: Vec<glob::Pattern>,
    /// Largest chunk, in uncompressed bytes.
    pub chunk_bytes: u64,
    /// Oldest unshipped byte's age that triggers a chunk.
    pub flush_interval: Duration,
    /// How long a file must be quiet before a flush takes its last event
    /// (which may still grow by continuation lines).
    pub hold_timeout: Duration,
    /// How long a last line without its newline must stay unchanged before a
    /// flush ships it as is (a forced cut, counted and logged).
    pub line_timeout: Duration,
    pub state_dir: PathBuf,
    pub shutdown_grace: Duration,
    pub cluster: Option<String>,
    pub task_id: Option<String>,
    pub poll_interval: Duration,
    pub gzip_level: u32,
    /// Delete rotated (not the newest of their series), fully shipped files
    /// that have not changed for this long (off when `None`).
    pub prune_after: Option<Duration>,
    pub summary_interval: Duration,
    /// Longest time one S3 request attempt may take.
    pub upload_timeout: Duration,
    /// EFS drops: the shared file system's mount; the task's files and state
    /// then live in `<root>/<cluster>/<task_id>/` (`on_efs`).
    pub efs_root: Option<PathBuf>,
    /// A symbolic link made to point at the task's directory on EFS, for the
    /// writer's container to find it (README "EFS drops").
    pub efs_link: Option<PathBuf>,
    /// How often the owner record on EFS is rewritten.
    pub heartbeat: Duration,
    /// The files are on a file system other hosts mount (EFS): a file is
    /// known by its inode and fingerprint alone, as each NFS client reports
    /// its own device number. Set by `on_efs` and for each swept directory.
    pub shared_fs: bool,
    /// Events that make a flush due before the interval (`LOGDROP_EARLY_FLUSH_LEVEL`,
    /// `LOGDROP_EARLY_FLUSH_5XX`).
    pub early_flush: Rule,
    /// At most one early flush per this long, so a storm of errors costs a
    /// bounded number of uploads.
    pub early_flush_min_interval: Duration,
}

/// A sweeper takes a directory whose heartbeat is older than this: six
/// missed beats, so a sidecar stalled for a few seconds is never taken over.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// An early flush at most every 10 s: an error storm costs at most six
/// uploads a minute instead of one (README, Cost).
pub const DEFAULT_EARLY_FLUSH_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Rotated files are pruned once fully shipped and quiet for this long: Tomcat
/// writes a dated file until midnight, and a Fargate task's disk is small.
pub const DEFAULT_PRUNE_AFTER: Duration = Duration::from_secs(3600);

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let log_dir = PathBuf::from(env.or("LOGDROP_LOG_DIR", DEFAULT_LOG_DIR));
        let files = file_patterns(env)?;
        let chunk_bytes = env.parse("LOGDROP_CHUNK_BYTES", 8u64 << 20)?;
        if !(4096..=(1u64 << 30)).contains(&chunk_bytes) {
            return Err(err(
                "LOGDROP_CHUNK_BYTES",
                format!("{chunk_bytes} is outside 4096..=1073741824"),
            ));
        }
        let gzip_level = env.parse("LOGDROP_GZIP_LEVEL", 1u32)?;
        if gzip_level > 9 {
            return Err(err(
                "LOGDROP_GZIP_LEVEL",
                format!("{gzip_level} is not a gzip level 0..=9"),
            ));
        }
        let key_prefix = env
            .or("LOGDROP_KEY_PREFIX", DEFAULT_KEY_PREFIX)
            .trim_matches('/')
            .to_string();
        if key_prefix.is_empty() {
            return Err(err("LOGDROP_KEY_PREFIX", "must not be empty"));
        }
        // Retired with layout 1: a deployment still asking for it must hear so.
        if let Some(v) = env.get("LOGDROP_LAYOUT").filter(|v| *v != "2") {
            return Err(err(
                "LOGDROP_LAYOUT",
                format!(
                    "`{v}`: layout 1 is retired, the sidecar writes task segments only; remove the variable"
                ),
            ));
        }
        let poll_interval = env.duration("LOGDROP_POLL_INTERVAL", Duration::from_secs(1))?;
        if poll_interval < Duration::from_millis(10) {
            return Err(err("LOGDROP_POLL_INTERVAL", "must be at least 10ms"));
        }
        Ok(Config {
            bucket: env.required("LOGDROP_BUCKET")?,
            key_prefix,
            state_dir: env
                .get("LOGDROP_STATE_DIR")
                .map_or_else(|| log_dir.join(".logdrop"), PathBuf::from),
            log_dir,
            files,
            chunk_bytes,
            flush_interval: env.duration("LOGDROP_FLUSH_INTERVAL", DEFAULT_FLUSH_INTERVAL)?,
            hold_timeout: env.duration("LOGDROP_HOLD_TIMEOUT", DEFAULT_HOLD_TIMEOUT)?,
            line_timeout: env.duration("LOGDROP_LINE_TIMEOUT", DEFAULT_LINE_TIMEOUT)?,
            shutdown_grace: env.duration("LOGDROP_SHUTDOWN_GRACE", Duration::from_secs(25))?,
            cluster: env.get("LOGDROP_CLUSTER").map(str::to_string),
            task_id: env.get("LOGDROP_TASK_ID").map(str::to_string),
            poll_interval,
            gzip_level,
            prune_after: match env.get("LOGDROP_PRUNE_AFTER") {
                Some(v) if v.eq_ignore_ascii_case("off") => None,
                _ => Some(env.duration("LOGDROP_PRUNE_AFTER", DEFAULT_PRUNE_AFTER)?),
            },
            summary_interval: env.duration("LOGDROP_SUMMARY_INTERVAL", Duration::from_secs(60))?,
            upload_timeout: upload_timeout(env)?,
            efs_root: efs_root(env)?,
            efs_link: env.get("LOGDROP_EFS_LINK").map(PathBuf::from),
            heartbeat: env.duration("LOGDROP_HEARTBEAT", DEFAULT_HEARTBEAT)?,
            shared_fs: false,
            early_flush: Rule {
                juli_level: Rule::parse_level(&env.or("LOGDROP_EARLY_FLUSH_LEVEL", "SEVERE"))
                    .map_err(|p| err("LOGDROP_EARLY_FLUSH_LEVEL", p))?,
                access_5xx: env.flag("LOGDROP_EARLY_FLUSH_5XX", false)?,
            },
            early_flush_min_interval: env.duration(
                "LOGDROP_EARLY_FLUSH_MIN_INTERVAL",
                DEFAULT_EARLY_FLUSH_MIN_INTERVAL,
            )?,
        })
    }

    /// Places the task's files and state in its directory on EFS.
    pub fn on_efs(&mut self, cluster: &str, task_id: &str) {
        if let Some(root) = &self.efs_root {
            self.log_dir = task_dir(root, cluster, task_id);
            self.state_dir = self.log_dir.join(".logdrop");
            self.shared_fs = true;
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        self.files.iter().any(|p| p.matches(name))
    }
}

fn file_patterns(env: &Env) -> Result<Vec<glob::Pattern>, ConfigError> {
    let files = env
        .or("LOGDROP_FILES", DEFAULT_FILES)
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| glob::Pattern::new(p).map_err(|e| err("LOGDROP_FILES", format!("`{p}`: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if files.is_empty() {
        return Err(err("LOGDROP_FILES", "names no pattern"));
    }
    Ok(files)
}

/// The directory of one task under an EFS root.
pub fn task_dir(root: &std::path::Path, cluster: &str, task_id: &str) -> PathBuf {
    use crate::core::keys::encode_component;
    root.join(encode_component(cluster))
        .join(encode_component(task_id))
}

fn efs_root(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let Some(root) = env.get("LOGDROP_EFS_ROOT") else {
        return Ok(None);
    };
    // The directory is the task's: a fixed one would mix tasks' files.
    for var in ["LOGDROP_LOG_DIR", "LOGDROP_STATE_DIR"] {
        if env.get(var).is_some() {
            return Err(err(
                var,
                "is set with LOGDROP_EFS_ROOT: on EFS the files and the state live in <root>/<cluster>/<task id>/; remove it",
            ));
        }
    }
    Ok(Some(PathBuf::from(root)))
}

fn upload_timeout(env: &Env) -> Result<Duration, ConfigError> {
    let t = env.duration("LOGDROP_UPLOAD_TIMEOUT", Duration::from_secs(30))?;
    if t < Duration::from_millis(100) {
        return Err(err("LOGDROP_UPLOAD_TIMEOUT", "must be at least 100ms"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = Config::from_env(&Env::from_pairs([("LOGDROP_BUCKET", "b")])).unwrap();
        assert_eq!(c.log_dir, PathBuf::from("/usr/local/tomcat/logs"));
        assert_eq!(
            c.state_dir,
            PathBuf::from("/usr/local/tomcat/logs/.logdrop")
        );
        assert!(
            c.matches("localhost_access_log.2026-11-24.txt")
                && c.matches("catalina.2026-11-24.log")
        );
        assert!(!c.matches("catalina.out") && !c.matches("manager.2026-11-24.log"));
        assert_eq!(
            (c.chunk_bytes, c.gzip_level, c.prune_after),
            (8 << 20, 1, Some(DEFAULT_PRUNE_AFTER))
        );
        assert_eq!(
            (c.flush_interval, c.hold_timeout, c.line_timeout),
            (
                Duration::from_secs(60),
                Duration::from_secs(5),
                Duration::from_secs(60)
            )
        );
        let off = Config::from_env(&Env::from_pairs([
            ("LOGDROP_BUCKET", "b"),
            ("LOGDROP_PRUNE_AFTER", "off"),
        ]))
        .unwrap();
        assert_eq!(off.prune_after, None);
        for (var, value) in [
            ("LOGDROP_CHUNK_BYTES", "10"),
            ("LOGDROP_FLUSH_INTERVAL", "soon"),
            ("LOGDROP_FILES", "[x"),
            ("LOGDROP_GZIP_LEVEL", "12"),
            ("LOGDROP_SHUTDOWN_GRACE", "-3"),
            ("LOGDROP_PRUNE_AFTER", "1y"),
            ("LOGDROP_UPLOAD_TIMEOUT", "1ms"),
            ("LOGDROP_SHUTDOWN_GRACE", "100000000000000000000"),
            ("LOGDROP_FLUSH_INTERVAL", "100000000000000000000"),
            ("LOGDROP_LINE_TIMEOUT", "later"),
            ("LOGDROP_LAYOUT", "1"),
        ] {
            let e = Config::from_env(&Env::from_pairs([("LOGDROP_BUCKET", "b"), (var, value)]))
                .unwrap_err();
            assert_eq!(e.var, var);
        }
        assert_eq!(
            Config::from_env(&Env::from_pairs([])).unwrap_err().var,
            "LOGDROP_BUCKET"
        );
    }
}
