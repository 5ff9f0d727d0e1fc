//! The sidecar: follows Tomcat's log files and uploads them to S3 as gzip
//! chunks cut at event boundaries, remembering its offsets on disk.
//!
//! `Sidecar` loops over the followed files (`followed::Followed`, one per
//! name); `run` takes the shutdown future, so the binary only wires. Layout 1
//! ships each file's chunks alone (`ship`), layout 2 a task segment per flush
//! (`segment`).

pub mod chunk;
pub mod config;
mod error;
pub mod fingerprint;
pub mod followed;
pub mod identity;
pub mod prune;
mod redo;
mod run;
mod segment;
mod ship;
pub mod state;
pub mod tail;
pub mod upload;

pub use chunk::Mode;
pub use config::{Config, Layout};
pub use error::{Progress, SidecarError, Totals};

use crate::ports::ObjectStore;
use followed::Followed;
use segment::Segments;
use ship::{Ctx, note_failure, open_file_budget, ship};
use state::{FileRecord, SegmentDoc, StateDir, TaskDoc};
use std::collections::{BTreeMap, BTreeSet};
use tail::{Change, Restore, Scan};

pub struct Sidecar<S> {
    ctx: Ctx<S>,
    state: StateDir,
    /// Layout 2: the next segment's number and the one in flight.
    segment: SegmentDoc,
    followed: BTreeMap<String, Followed>,
    /// Finished generations of names not followed now, so a reappearing name never reuses one.
    retired: BTreeMap<String, FileRecord>,
    /// Names that could not be looked at, already logged.
    noted: BTreeSet<String>,
    /// Open handles allowed at once (from RLIMIT_NOFILE).
    max_open: usize,
}

impl<S: ObjectStore> Sidecar<S> {
    /// Loads the saved state and matches each record with the file under its
    /// name now. An interrupted upload is redone before anything new is cut.
    pub async fn start(
        store: S,
        config: Config,
        cluster: String,
        task_id: String,
    ) -> Result<Self, SidecarError> {
        let mut state = StateDir::new(&config.state_dir);
        let (records, segment) = match state.load()? {
            Some(s) if s.task.cluster == cluster && s.task.task_id == task_id => {
                (s.files, s.segment)
            }
            Some(s) => {
                tracing::warn!(
                    saved_task = s.task.task_id,
                    "state belongs to another task; starting afresh"
                );
                state.reset()?;
                (BTreeMap::new(), SegmentDoc::fresh())
            }
            None => (BTreeMap::new(), SegmentDoc::fresh()),
        };
        let task = TaskDoc {
            version: state::STATE_VERSION,
            cluster: cluster.clone(),
            task_id: task_id.clone(),
        };
        if let Err(e) = state.save_task(&task) {
            // A full or read-only state directory may recover: nothing is
            // uploaded before it can be recorded, and each pass tries again.
            tracing::error!(error = %e, "cannot write the state; nothing is uploaded until it can be");
        }
        let mut me = Sidecar {
            ctx: Ctx {
                store,
                config,
                cluster,
                task_id,
                totals: Totals::default(),
                max_attempts: None,
                deadline: None,
                limits: None,
            },
            state,
            segment,
            followed: BTreeMap::new(),
            retired: BTreeMap::new(),
            noted: BTreeSet::new(),
            max_open: open_file_budget(),
        };
        let scan = me.scan()?;
        for (name, mut rec) in records {
            let now = scan.get(&name);
            match tail::restore(&rec, now) {
                Restore::Resume => {
                    me.followed
                        .insert(name, Followed::restored(rec, now.cloned()));
                }
                Restore::Finished => {
                    me.retired.insert(name, rec);
                }
                Restore::Lost(change) => {
                    tracing::warn!(
                        file = name,
                        generation = rec.generation,
                        shipped = rec.offset,
                        uploading = ?rec.uploading,
                        ?change,
                        "file was deleted, replaced or truncated while the sidecar was down; what it held past the offset is gone"
                    );
                    rec.finished = true;
                    if let Err(e) = me.state.save_file(&rec) {
                        tracing::error!(error = %e, file = name, "cannot record the end of a generation yet");
                    }
                    me.retired.insert(name, rec);
                }
            }
        }
        Ok(me)
    }

    /// Gives up on an upload after this many attempts instead of waiting forever.
    pub fn set_max_attempts(&mut self, attempts: u32) {
        self.ctx.max_attempts = Some(attempts);
    }

    pub fn totals(&self) -> Totals {
        self.ctx.totals
    }

    /// Bytes written to the state so far (its cost per chunk does not grow with the files).
    pub fn state_bytes_written(&self) -> u64 {
        self.state.bytes_written
    }

    fn scan(&self) -> Result<Scan, SidecarError> {
        let dir = &self.ctx.config.log_dir;
        tail::scan(dir, &self.ctx.config).map_err(|source| SidecarError::LogDir {
            dir: dir.display().to_string(),
            source,
        })
    }

    /// Bytes seen in the followed files and not yet in S3.
    pub fn lag_bytes(&self) -> u64 {
        self.followed
            .values()
            .filter_map(Followed::unshipped)
            .map(|(a, b)| b - a)
            .sum()
    }

    /// Log files open now (at most half of RLIMIT_NOFILE after each pass).
    pub fn open_files(&self) -> usize {
        self.followed.values().filter(|f| f.is_open()).count()
    }

    #[cfg(test)]
    fn set_max_open(&mut self, n: usize) {
        self.max_open = n;
    }

    pub fn followed_files(&self) -> usize {
        self.followed.len()
    }

    /// What stayed behind, file by file: `name gen G bytes A-B`.
    pub fn left_behind(&self) -> String {
        self.followed
            .values()
            .filter_map(|f| {
                let (a, b) = f.unshipped()?;
                let b = self
                    .ctx
                    .limit(f, b)
                    .max(f.record.uploading.map_or(0, |u| u.1));
                (b > a).then(|| format!("{} gen {} bytes {a}-{b}", f.name(), f.record.generation))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One pass: notice new, rotated, replaced, truncated and deleted files,
    /// ship what is due, prune what may go. A file that cannot be read is
    /// logged and skipped; only the directory, the state or S3 stop a pass.
    pub async fn pass(&mut self, mode: Mode) -> Result<Progress, SidecarError> {
        let scan = self.scan()?;
        self.note_skipped(&scan);
        let before = self.ctx.totals.bytes;
        let v2 = self.ctx.config.layout == Layout::V2;
        // Even after a switch to layout 1: a segment recorded before the
        // restart is uploaded again before any of its files is cut again.
        if self.segment.uploading.is_some() {
            let mut seg = Segments {
                doc: &mut self.segment,
                state: &mut self.state,
                max_open: self.max_open,
            };
            let redone = redo::redo(&mut self.ctx, &mut seg, &mut self.followed).await;
            // Files whose recorded part could not be rebuilt end their
            // generation now, even if the re-upload of the others failed.
            let over: Vec<String> = self
                .followed
                .values()
                .filter(|f| f.record.finished)
                .map(|f| f.name().to_string())
                .collect();
            for name in over {
                if let Some(f) = self.followed.remove(&name) {
                    self.finish(f, Change::Truncated)?;
                }
            }
            redone?;
        }
        let dir = self.ctx.config.log_dir.clone();
        let mut open = self.followed.values().filter(|f| f.is_open()).count();
        let mut ended = Vec::new();
        for f in self.followed.values_mut() {
            let was_open = f.is_open();
            let change = f.check(&dir, scan.get(f.name()));
            match change {
                Err(e) => note_failure(f, &e),
                Ok(Change::Same) => {
                    if f.failing.take().is_some() {
                        tracing::info!(file = f.name(), "the file is readable again");
                    }
                }
                Ok(change @ (Change::Deleted | Change::Replaced)) => {
                    // The open handle still reads the old file: finish it first.
                    if f.is_open() && v2 {
                        let mut seg = Segments {
                            doc: &mut self.segment,
                            state: &mut self.state,
                            max_open: self.max_open,
                        };
                        segment::ship_task(&mut self.ctx, &mut seg, &mut [f], Mode::Drain).await?;
                    } else if f.is_open() {
                        ship(&mut self.ctx, &mut self.state, f, Mode::Drain).await?;
                    }
                    ended.push((f.name().to_string(), change));
                }
                Ok(Change::Truncated) => ended.push((f.name().to_string(), Change::Truncated)),
            }
            open = (open + usize::from(f.is_open())).saturating_sub(usize::from(was_open));
            if open > self.max_open && f.is_open() {
                f.close(); // checked; shipping reopens it
                open -= 1;
            }
        }
        for (name, change) in ended {
            if let Some(f) = self.followed.remove(&name) {
                self.finish(f, change)?;
            }
        }
        for s in &scan.seen {
            if self.followed.contains_key(&s.name) {
                continue;
            }
            if let Some(l) = &self.ctx.limits
                && !l.contains_key(&(s.dev, s.inode))
            {
                continue; // `--once`: appeared after it started
            }
            let generation = self.retired.remove(&s.name).map_or(0, |r| r.generation + 1);
            tracing::info!(file = s.name, generation, "following");
            self.followed
                .insert(s.name.clone(), Followed::new(s, generation));
        }
        let mut left = false;
        if v2 {
            let mut seg = Segments {
                doc: &mut self.segment,
                state: &mut self.state,
                max_open: self.max_open,
            };
            let mut files: Vec<&mut Followed> = self.followed.values_mut().collect();
            left = segment::ship_task(&mut self.ctx, &mut seg, &mut files, mode).await?;
        }
        for f in self.followed.values_mut().filter(|_| !v2) {
            if f.failing.is_some() {
                left = true;
                continue;
            }
            let was_open = f.is_open();
            left |= ship(&mut self.ctx, &mut self.state, f, mode).await?;
            open = (open + usize::from(f.is_open())).saturating_sub(usize::from(was_open));
            // Handles stay bounded: a file over the budget is reopened (and
            // its identity checked) when it next has bytes to ship.
            if open > self.max_open && f.is_open() {
                f.close();
                open -= 1;
            }
        }
        if mode == Mode::Follow {
            self.prune()?;
        }
        Ok(Progress {
            left,
            shipped: self.ctx.totals.bytes - before,
        })
    }

    fn note_skipped(&mut self, scan: &Scan) {
        for (name, e) in &scan.skipped {
            if self.noted.insert(name.clone()) {
                tracing::warn!(file = name, error = %e, "cannot look at a matching name; skipped");
            }
        }
        if !self.noted.is_empty() {
            let skipped: BTreeSet<&str> = scan.skipped.iter().map(|(n, _)| n.as_str()).collect();
            self.noted.retain(|n| skipped.contains(n.as_str()));
        }
    }

    /// Ends a generation: recorded, so a file under the name starts the next one.
    fn finish(&mut self, mut f: Followed, change: Change) -> Result<(), SidecarError> {
        let name = f.name().to_string();
        match (change, f.unshipped()) {
            (Change::Truncated, _) => tracing::warn!(
                file = name,
                generation = f.record.generation,
                shipped = f.record.offset,
                "file was truncated or rewritten; starting a new generation"
            ),
            (_, Some((a, b))) => tracing::error!(
                file = name,
                generation = f.record.generation,
                start = a,
                end = b,
                "file was deleted or replaced while not open; these bytes were not shipped"
            ),
            (_, None) => tracing::info!(
                file = name,
                generation = f.record.generation,
                "finished a deleted or replaced file"
            ),
        }
        f.record.finished = true;
        f.record.uploading = None;
        // Retired in memory even if the write fails: the name's next file
        // takes the next generation, and the record written with its first
        // chunk says so on disk.
        let rec = self.retired.entry(name).insert_entry(f.record);
        self.state.save_file(rec.get())?;
        Ok(())
    }

    /// Deletes rotated files that are fully shipped and quiet (`prune` has the rule).
    fn prune(&mut self) -> Result<(), SidecarError> {
        let Some(after) = self.ctx.config.prune_after else {
            return Ok(());
        };
        let dir = &self.ctx.config.log_dir;
        for rec in prune::prune(&mut self.followed, dir, after) {
            let rec = self.retired.entry(rec.name.clone()).insert_entry(rec);
            self.state.save_file(rec.get())?;
        }
        Ok(())
    }

    /// Passes until nothing is left, or nothing more can be shipped.
    async fn drain(&mut self) -> Result<(), SidecarError> {
        loop {
            let p = self.pass(Mode::Drain).await?;
            if !p.left || p.shipped == 0 {
                return Ok(());
            }
        }
    }

    /// `--once`: ships what the files held when it started (held partial
    /// events included), then returns; an error names what stayed behind.
    pub async fn once(&mut self) -> Result<(), SidecarError> {
        let scan = self.scan()?;
        self.ctx.limits = Some(
            scan.seen
                .iter()
                .map(|s| ((s.dev, s.inode), s.len))
                .collect(),
        );
        self.drain().await?;
        let left = self.left_behind();
        if left.is_empty() {
            Ok(())
        } else {
            Err(SidecarError::LeftBehind(left))
        }
    }
}

#[cfg(test)]
mod tests;
