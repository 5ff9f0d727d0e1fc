//! What every step of a pass shares: the store, the rules, the task's
//! identity, the counters, the limits of a stop or `--once`, the open-file
//! budget and the clock.

use crate::sidecar::config::Config;
use crate::sidecar::error::Totals;
use crate::sidecar::followed::Followed;
use crate::sidecar::metrics::Reporter;
use std::collections::HashMap;
use std::time::{Duration, Instant};

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
    /// Added to the system's clock for the age rules: tests move time on
    /// instead of sleeping.
    pub clock_ahead: Duration,
    /// Log files that may be open at once (`open_file_budget`).
    pub max_open: usize,
    /// When the last early flush (an urgent event) happened: the rate limit's clock.
    pub last_early: Option<Instant>,
    /// The metrics lines.
    pub reporter: Reporter,
}

impl<S> Ctx<S> {
    pub fn new(store: S, config: Config, cluster: String, task_id: String) -> Self {
        Ctx {
            store,
            config,
            cluster,
            task_id,
            totals: Totals::default(),
            max_attempts: None,
            deadline: None,
            limits: None,
            clock_ahead: Duration::ZERO,
            max_open: open_file_budget(),
            last_early: None,
            reporter: Reporter::default(),
        }
    }

    /// The time the age rules read.
    pub fn now(&self) -> Instant {
        Instant::now() + self.clock_ahead
    }

    /// The bytes of `f` this run ships: all of them, or with `--once` what was there at its start.
    pub fn limit(&self, f: &Followed, len: u64) -> u64 {
        let id = f.record.identity;
        match &self.limits {
            None => len,
            // Without a recorded device (a shared file system) the inode alone.
            Some(l) => len.min(
                l.iter()
                    .find(|((dev, inode), _)| {
                        *inode == id.inode && id.dev.is_none_or(|d| d == *dev)
                    })
                    .map_or(0, |(_, &n)| n),
            ),
        }
    }
}

/// Open handles, kept within `Ctx::max_open` as files are looked at one by
/// one: a file closed here is reopened (its identity checked) when next read.
pub(crate) struct Budget {
    open: usize,
    max: usize,
}

impl Budget {
    pub fn new(files: impl Iterator<Item = bool>, max: usize) -> Budget {
        Budget {
            open: files.filter(|open| *open).count(),
            max,
        }
    }

    /// Counts what `f` holds now that it was (`was_open`) or was not open before.
    pub fn after(&mut self, f: &mut Followed, was_open: bool) {
        self.open = (self.open + usize::from(f.is_open())).saturating_sub(usize::from(was_open));
        if self.open > self.max && f.is_open() {
            f.close();
            self.open -= 1;
        }
    }
}

/// How many log files may be open at once: half the soft RLIMIT_NOFILE (read
/// from /proc, no unsafe code), the rest left to sockets and the state.
fn open_file_budget() -> usize {
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
