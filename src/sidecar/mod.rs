//! The sidecar: follows Tomcat's log files and uploads, once per flush, one
//! gzip *task segment* holding every file cut at its last whole event,
//! remembering its offsets on disk.
//!
//! `Sidecar` loops over the followed files (`followed::Followed`, one per
//! name); each flush plans and cuts a segment (`cut`) and records and uploads
//! it (`segment`); `run` takes the shutdown future, so the binary only wires.

pub mod config;
mod context;
pub mod cut;
mod error;
pub mod fingerprint;
pub mod followed;
mod metrics;
pub mod owner;
pub mod prune;
mod redo;
mod run;
mod segment;
pub mod state;
pub mod tail;
pub mod upload;

pub use config::Config;
pub use cut::Mode;
pub use error::{Progress, SidecarError, Totals};

use crate::ports::ObjectStore;
use context::{Budget, Ctx};
use followed::Followed;
use state::{FileRecord, StateDir, TaskDoc};
use std::collections::{BTreeMap, BTreeSet};
use tail::{Change, Scan};

pub struct Sidecar<S> {
    ctx: Ctx<S>,
    /// The records, the segment's with them.
    state: StateDir,
    followed: BTreeMap<String, Followed>,
    /// Finished generations of names not followed now, so a reappearing name never reuses one.
    retired: BTreeMap<String, FileRecord>,
    /// Names that could not be looked at, already logged.
    noted: BTreeSet<String>,
    /// On EFS: the directory's lock and the owner record it beats.
    owner: Option<owner::Owner>,
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
        // On EFS the lock comes first: a sweeper may be writing this state.
        let owner = match config.efs_root {
            Some(_) => Some(owner::Owner::claim(&config, &mut state, &cluster, &task_id).await?),
            None => None,
        };
        // (records, whether the task record must be written)
        let (records, fresh) = match state.load()? {
            Some(s) if s.task.cluster == cluster && s.task.task_id == task_id => (s.files, false),
            Some(s) => {
                tracing::warn!(
                    saved_task = s.task.task_id,
                    "state belongs to another task; starting afresh"
                );
                state.reset()?;
                (BTreeMap::new(), true)
            }
            None => (BTreeMap::new(), true),
        };
        let task = TaskDoc {
            version: state::STATE_VERSION,
            cluster: cluster.clone(),
            task_id: task_id.clone(),
        };
        // Written once: a sweeper starts here for every directory every run.
        if fresh && let Err(e) = state.save_task(&task) {
            // A full or read-only state directory may recover: nothing is
            // uploaded before it can be recorded, and each pass tries again.
            tracing::error!(error = %e, "cannot write the state; nothing is uploaded until it can be");
        }
        let mut me = Sidecar {
            ctx: Ctx::new(store, config, cluster, task_id),
            state,
            followed: BTreeMap::new(),
            retired: BTreeMap::new(),
            noted: BTreeSet::new(),
            owner,
        };
        let scan = me.scan()?;
        for (name, mut rec) in records {
            if me.ctx.config.shared_fs {
                // Recorded by another NFS client, whose device number is its own.
                rec.identity.dev = None;
            }
            me.restore(name, rec, &scan);
        }
        Ok(me)
    }

    /// Matches a saved record with the file under its name now: probably the
    /// same file (its fingerprint is checked on the first look), or gone,
    /// replaced or truncated while the sidecar was down.
    fn restore(&mut self, name: String, mut rec: FileRecord, scan: &Scan) {
        let now = scan.get(&name);
        // A finished generation is over whatever the name holds now.
        let change = (!rec.finished).then(|| tail::classify(&rec, now));
        match change {
            Some(Change::Same) => {
                let mut f = Followed::restored(rec, now.cloned());
                f.shared_fs = self.ctx.config.shared_fs;
                self.followed.insert(name, f);
            }
            None => {
                self.retired.insert(name, rec);
            }
            Some(change) => {
                tracing::warn!(
                    file = name,
                    generation = rec.generation,
                    shipped = rec.offset,
                    uploading = ?rec.uploading,
                    ?change,
                    "file was deleted, replaced or truncated while the sidecar was down; what it held past the offset is gone"
                );
                rec.finished = true;
                if let Err(e) = self.state.save_file(&rec) {
                    tracing::error!(error = %e, file = name, "cannot record the end of a generation yet");
                }
                self.retired.insert(name, rec);
            }
        }
    }

    /// Writes the metrics lines (EMF) to `output`; without it none are written.
    pub fn set_metrics(&mut self, output: crate::telemetry::Output) {
        self.ctx.reporter.output = Some(output);
    }

    /// How the files stand now, for the metrics line.
    fn standing(&self) -> metrics::Standing {
        let pending = self.followed.values().filter(|f| f.unshipped().is_some());
        metrics::Standing {
            pending_bytes: self.lag_bytes(),
            oldest_since: pending.filter_map(|f| f.pending_since).min(),
            unreadable: (self
                .followed
                .values()
                .filter(|f| f.failing.is_some())
                .count()
                + self.noted.len()) as u64,
        }
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

    #[doc(hidden)]
    /// Keeps at most `n` log files open at once (the default is half of
    /// RLIMIT_NOFILE): tests reach the limit without thousands of files.
    pub fn set_max_open(&mut self, n: usize) {
        self.ctx.max_open = n;
    }

    #[doc(hidden)]
    /// Moves the age rules' clock on by `by`: tests step through flushes
    /// without waiting for them.
    pub fn advance_clock(&mut self, by: std::time::Duration) {
        self.ctx.clock_ahead += by;
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
        self.redo().await?;
        self.look(&scan).await?;
        self.follow_new(&scan);
        let mut files: Vec<&mut Followed> = self.followed.values_mut().collect();
        mark_rotated(&mut files);
        let left = flush(&mut self.ctx, &mut self.state, &mut files, mode).await?;
        if mode != Mode::Drain {
            self.prune()?;
        }
        self.ctx.reporter.standing = self.standing();
        Ok(Progress {
            left,
            shipped: self.ctx.totals.bytes - before,
        })
    }

    /// The segment recorded before a crash or a failed upload goes first.
    async fn redo(&mut self) -> Result<(), SidecarError> {
        if self.state.segment().uploading.is_none() {
            return Ok(());
        }
        let redone = redo::redo(&mut self.ctx, &mut self.state, &mut self.followed).await;
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
        redone
    }

    /// What became of each followed file since the last look: a deleted or
    /// replaced file is finished from its open handle, then its generation
    /// ends, as does a truncated one's.
    async fn look(&mut self, scan: &Scan) -> Result<(), SidecarError> {
        let dir = self.ctx.config.log_dir.clone();
        let mut budget = Budget::new(
            self.followed.values().map(|f| f.is_open()),
            self.ctx.max_open,
        );
        let mut ended = Vec::new();
        for f in self.followed.values_mut() {
            let was_open = f.is_open();
            match f.check(&dir, scan.get(f.name())) {
                Err(e) => f.note_failure(&e),
                Ok(Change::Same) => {
                    if f.failing.take().is_some() {
                        tracing::info!(file = f.name(), "the file is readable again");
                    }
                }
                Ok(change @ (Change::Deleted | Change::Replaced)) => {
                    // The open handle still reads the old file: finish it first.
                    if f.is_open() {
                        let files = &mut [f];
                        flush(&mut self.ctx, &mut self.state, files, Mode::Drain).await?;
                        ended.push((files[0].name().to_string(), change));
                    } else {
                        ended.push((f.name().to_string(), change));
                    }
                    continue;
                }
                Ok(Change::Truncated) => ended.push((f.name().to_string(), Change::Truncated)),
            }
            budget.after(f, was_open);
        }
        for (name, change) in ended {
            if let Some(f) = self.followed.remove(&name) {
                self.finish(f, change)?;
            }
        }
        Ok(())
    }

    /// Starts following the matching names not followed yet.
    fn follow_new(&mut self, scan: &Scan) {
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
            let mut f = Followed::new(s, generation);
            if self.ctx.config.shared_fs {
                f.shared_fs = true;
                f.record.identity.dev = None;
            }
            self.followed.insert(s.name.clone(), f);
        }
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

    /// No upload runs past this (a sweeper's Lambda deadline).
    pub fn set_deadline(&mut self, deadline: std::time::Instant) {
        self.ctx.deadline = Some(deadline);
    }

    /// A sweeper's look at a directory no live sidecar ships (`Mode::Sweep`):
    /// the segment a dead sidecar left in flight first, then what the quiet
    /// rules allow now. Returns what stayed behind (empty: nothing).
    pub async fn sweep(&mut self) -> Result<String, SidecarError> {
        self.pass(Mode::Sweep).await?;
        // A name that could not be looked at may hold unshipped bytes: its
        // directory must not be deleted as finished.
        let unseen = self
            .noted
            .iter()
            .map(|n| format!("{n}: cannot be looked at"));
        let left: Vec<String> = [self.left_behind()]
            .into_iter()
            .filter(|l| !l.is_empty())
            .chain(unseen)
            .collect();
        Ok(left.join("; "))
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

/// Marks the files of a series (`prune::series`) that a later name, written
/// after them, follows: their writer moved on. Both are needed: a name alone
/// misleads with date formats that do not sort (`dd-MM-yyyy`), and a
/// modification time alone with a file merely quiet for a moment.
fn mark_rotated(files: &mut [&mut Followed]) {
    let looks: Vec<(String, String, Option<std::time::SystemTime>)> = files
        .iter()
        .map(|f| {
            let mtime = f.seen.as_ref().and_then(|s| s.mtime);
            (prune::series(f.name()), f.name().to_string(), mtime)
        })
        .collect();
    for (f, (series, name, mtime)) in files.iter_mut().zip(&looks) {
        f.rotated = looks
            .iter()
            .any(|(s, n, m)| s == series && n > name && m.is_some() && m > mtime);
    }
}

/// One flush: if any file is due, every file gives what its rules allow, in
/// as many segments as the size cap needs, each cut (`cut`) then recorded
/// and uploaded (`segment`). Returns whether unshipped bytes remain.
async fn flush<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    state: &mut StateDir,
    files: &mut [&mut Followed],
    mode: Mode,
) -> Result<bool, SidecarError> {
    let now = ctx.now();
    let (mut plan, mut left, early) = cut::plan(ctx, files, mode, now);
    if early {
        ctx.last_early = Some(now);
        ctx.totals.early_flushes += 1;
        tracing::info!("early flush: an urgent event is waiting");
    }
    while let Some(seg) = cut::cut_segment(ctx, files, &mut plan, &mut left) {
        segment::ship(ctx, state, files, seg).await?;
    }
    // What a flush left waits for the next one, a whole interval.
    for p in &plan {
        let f = &mut *files[p.file];
        f.pending_since = (f.record.offset < p.until).then_some(now);
    }
    Ok(left)
}
