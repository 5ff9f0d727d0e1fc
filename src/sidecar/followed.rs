//! One followed file: its identity, fingerprint, open handle (if any),
//! offsets, and the check of what became of it since the last look.

use crate::core::split::Format;
use crate::core::urgent::{LONG_LINE, Rule, Watch};
use crate::sidecar::fingerprint::{Fingerprint, Identity};
use crate::sidecar::state::{FileRecord, STATE_VERSION};
use crate::sidecar::tail::{self, Change, Seen};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A read or open error that stays with its file.
#[derive(Debug, Clone)]
pub struct Failing {
    pub error: String,
    next_log: Instant,
}

/// How often a file's unchanged error is logged again.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(600);

pub struct Followed {
    pub record: FileRecord,
    pub format: Format,
    handle: Option<File>,
    /// What the directory showed at the last look.
    pub seen: Option<Seen>,
    /// The `(len, mtime)` whose fingerprint was last checked.
    checked: Option<(u64, Option<std::time::SystemTime>)>,
    /// When unshipped bytes were first seen (the age rule's clock).
    pub pending_since: Option<Instant>,
    pub failing: Option<Failing>,
    /// Its record is on disk (written before the first segment naming this
    /// generation, so a restart knows the file a part came from).
    pub saved: bool,
    /// The size last looked at, and since when it has been that size: a file
    /// quiet for the hold time-out has no event left to grow.
    pub grew: Option<(u64, Instant)>,
    /// A newer file of its series exists (by name): its writer moved on.
    pub rotated: bool,
    /// On a shared file system the device number is not recorded (`Config::shared_fs`).
    pub shared_fs: bool,
    /// Its unshipped lines looked at for an urgent event (an early flush).
    pub watch: Watch,
}

impl Followed {
    /// A file seen for the first time, as generation `generation` from byte 0.
    pub fn new(seen: &Seen, generation: u64) -> Followed {
        let record = FileRecord {
            version: STATE_VERSION,
            name: seen.name.clone(),
            generation,
            identity: Identity {
                dev: Some(seen.dev),
                inode: seen.inode,
            },
            ..FileRecord::default()
        };
        let mut f = Followed::restored(record, Some(seen.clone()));
        f.saved = false;
        f
    }

    /// A file whose record was saved before a restart; its fingerprint is
    /// checked on the first look.
    pub fn restored(record: FileRecord, seen: Option<Seen>) -> Followed {
        Followed {
            format: Format::for_file(&record.name),
            handle: None,
            seen,
            checked: None,
            pending_since: None,
            failing: None,
            saved: true,
            watch: Watch::from(record.offset),
            record,
            grew: None,
            rotated: false,
            shared_fs: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn is_open(&self) -> bool {
        self.handle.is_some()
    }

    pub fn close(&mut self) {
        self.handle = None;
    }

    /// The open handle, opening the name if needed and checking it is still
    /// the followed file. `Ok(None)`: the name now holds another file.
    pub fn handle(&mut self, dir: &Path) -> io::Result<Option<&mut File>> {
        if self.handle.is_none() {
            let f = File::open(dir.join(&self.record.name))?;
            let m = f.metadata()?;
            if !self.record.identity.matches(m.dev(), m.ino()) {
                return Ok(None);
            }
            if !self.shared_fs {
                self.record.identity.dev = Some(m.dev());
            }
            self.handle = Some(f);
        }
        Ok(self.handle.as_mut())
    }

    /// The file's size through the open handle, else as last seen.
    pub fn size(&self) -> io::Result<u64> {
        match &self.handle {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(self.seen.as_ref().map_or(0, |s| s.len)),
        }
    }

    /// What became of the file, given what its name shows now. Whenever its
    /// size or time changed, the fingerprint of the shipped bytes is checked
    /// too: a rewrite that kept the inode and the length is `Truncated`.
    pub fn check(&mut self, dir: &Path, now: Option<&Seen>) -> io::Result<Change> {
        let change = tail::classify(&self.record, now);
        if change != Change::Same {
            return Ok(change);
        }
        let Some(now) = now else {
            return Ok(Change::Deleted);
        };
        self.seen = Some(now.clone());
        let stamp = (now.len, now.mtime);
        if self.checked == Some(stamp) {
            return Ok(Change::Same);
        }
        let offset = self.record.offset;
        let want = self.record.fingerprint;
        let Some(f) = self.handle(dir)? else {
            return Ok(Change::Replaced);
        };
        let fp = Fingerprint::of(f, offset);
        let same = match (want, fp) {
            (Some(w), Ok(got)) => w == got,
            // Never shipped, or recorded without one: nothing to compare yet.
            (None, Ok(got)) => {
                self.record.fingerprint = (offset > 0).then_some(got);
                true
            }
            // Shorter than the offset between the stat and the read.
            (_, Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => false,
            (_, Err(e)) => return Err(e),
        };
        self.checked = Some(stamp);
        Ok(if same {
            Change::Same
        } else {
            Change::Truncated
        })
    }

    /// Records a shipped chunk ending at `end`.
    pub fn shipped(&mut self, end: u64) {
        self.record.offset = end;
        self.record.uploading = None;
        self.record.fingerprint = self
            .handle
            .as_ref()
            .and_then(|f| Fingerprint::of(f, end).ok());
    }

    /// Notes the size looked at `now`; returns how long the file has had it.
    pub fn quiet_for(&mut self, len: u64, now: Instant) -> Duration {
        match self.grew {
            Some((l, at)) if l == len => now.saturating_duration_since(at),
            _ => {
                self.grew = Some((len, now));
                Duration::ZERO
            }
        }
    }

    /// How long ago the file was last modified, as its directory entry says
    /// (a sweeper's only clue), with the clock moved on by `ahead`.
    pub fn quiet_since_modified(&self, ahead: Duration) -> Duration {
        // Through the open handle when there is one (see `cut::plan`).
        let opened = self
            .handle
            .as_ref()
            .and_then(|f| f.metadata().ok()?.modified().ok());
        let mtime = opened.or_else(|| self.seen.as_ref().and_then(|s| s.mtime));
        mtime
            .and_then(|m| {
                (std::time::SystemTime::now() + ahead)
                    .duration_since(m)
                    .ok()
            })
            .unwrap_or(Duration::ZERO)
    }

    /// Looks at the lines written since the last look, up to `until`, for
    /// an urgent event (reading at offsets, so the handle's position stays).
    pub fn watch_urgent(&mut self, dir: &Path, rule: &Rule, until: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut watch = self.watch;
        watch.shipped_to(self.record.offset);
        let format = self.format;
        let Some(f) = self.handle(dir)? else {
            return Ok(());
        };
        let mut buf = vec![0u8; LONG_LINE];
        let mut held = 0;
        while watch.looked_to + (held as u64) < until && !watch.found_whole() {
            let at = watch.looked_to + held as u64;
            let want = (buf.len() - held).min(usize::try_from(until - at).unwrap_or(usize::MAX));
            let n = f.read_at(&mut buf[held..held + want], at)?;
            if n == 0 {
                break;
            }
            let have = held + n;
            let taken = watch.feed(rule, format, &buf[..have]);
            buf.copy_within(taken..have, 0);
            held = have - taken;
        }
        self.watch = watch;
        Ok(())
    }

    /// Keeps a read error with this file and logs it (once until it changes).
    pub fn note_failure(&mut self, e: &io::Error) {
        if self.fail(e.to_string()) {
            tracing::warn!(file = self.name(), error = %e, "cannot read the file; the other files keep shipping");
        }
    }

    /// Keeps an error with this file; returns whether to log it now (the
    /// first time, when it changes, and then rarely).
    pub fn fail(&mut self, error: String) -> bool {
        let now = Instant::now();
        let log = match &self.failing {
            Some(f) => f.error != error || now >= f.next_log,
            None => true,
        };
        let next_log = if log {
            now + ERROR_LOG_EVERY
        } else {
            self.failing.as_ref().map_or(now, |f| f.next_log)
        };
        self.failing = Some(Failing { error, next_log });
        self.close();
        log
    }

    /// Bytes seen and not yet shipped, as `[offset, len)`.
    pub fn unshipped(&self) -> Option<(u64, u64)> {
        let len = self.size().unwrap_or(0);
        let start = self.record.uploading.map_or(self.record.offset, |u| u.0);
        let end = len.max(self.record.uploading.map_or(0, |u| u.1));
        (end > start).then_some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(dir: &Path, name: &str) -> Seen {
        tail::scan_one(dir, name).unwrap().unwrap()
    }

    #[test]
    fn a_rewrite_that_keeps_inode_length_and_tail_is_caught_by_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, b"first line\nsame tail bytes here\n").unwrap();
        let mut f = Followed::new(&seen(dir.path(), "a.log"), 0);
        assert_eq!(
            f.check(dir.path(), Some(&seen(dir.path(), "a.log")))
                .unwrap(),
            Change::Same
        );
        assert!(f.handle(dir.path()).unwrap().is_some());
        f.shipped(32);
        std::fs::write(&p, b"FIRST LINE\nsame tail bytes here\nmore\n").unwrap();
        let now = seen(dir.path(), "a.log");
        assert_eq!(f.check(dir.path(), Some(&now)).unwrap(), Change::Truncated);
    }

    #[test]
    fn errors_are_logged_once_until_they_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), b"x").unwrap();
        let mut f = Followed::new(&seen(dir.path(), "a.log"), 0);
        assert!(f.fail("denied".into()));
        assert!(!f.fail("denied".into()));
        assert!(f.fail("gone".into()));
    }
}
