//! Following the log directory: which files exist, and what became of the
//! ones already followed (grown, rotated away, replaced, truncated, deleted).

use crate::sidecar::config::Config;
use crate::sidecar::state::FileRecord;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// A file as seen by name in the directory now (symlinks followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub dev: u64,
    pub inode: u64,
    pub len: u64,
    pub mtime: Option<SystemTime>,
}

/// What one look at the directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Regular files whose names match the patterns, sorted by name.
    pub seen: Vec<Seen>,
    /// Matching names that could not be looked at (a dangling symlink, no permission).
    pub skipped: Vec<(String, std::io::Error)>,
}

impl Scan {
    pub fn get(&self, name: &str) -> Option<&Seen> {
        self.seen
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.seen[i])
    }
}

fn seen(name: String, meta: &std::fs::Metadata) -> Seen {
    Seen {
        name,
        dev: meta.dev(),
        inode: meta.ino(),
        len: meta.len(),
        mtime: meta.modified().ok(),
    }
}

/// Looks at the directory. Only an unreadable directory is an error; a name
/// that cannot be looked at is reported with its error and skipped.
pub fn scan(dir: &Path, config: &Config) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !config.matches(&name) {
            continue;
        }
        // Follows symlinks, like `tail -F`.
        match std::fs::metadata(entry.path()) {
            Ok(meta) if meta.is_file() => out.seen.push(seen(name, &meta)),
            Ok(_) => {} // a directory or device that matches: not a log file
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && entry.path().is_symlink() => {
                out.skipped.push((name, e));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // vanished since read_dir
            Err(e) => out.skipped.push((name, e)),
        }
    }
    out.seen.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One name, looked at alone.
pub fn scan_one(dir: &Path, name: &str) -> std::io::Result<Option<Seen>> {
    match std::fs::metadata(dir.join(name)) {
        Ok(m) if m.is_file() => Ok(Some(seen(name.to_string(), &m))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What to do with a followed file, given what its name shows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Same file; maybe grown.
    Same,
    /// The name now points at another file: finish the old one, start a new generation.
    Replaced,
    /// Shorter than what was shipped, or its shipped bytes changed (copytruncate,
    /// a rewrite in place): start a new generation at 0.
    Truncated,
    /// The name is gone: finish what the open handle still reads, then forget it.
    Deleted,
}

/// The change as far as the directory shows it (identity and length); the
/// fingerprint of the shipped bytes is checked by the caller on `Same`.
pub fn classify(rec: &FileRecord, now: Option<&Seen>) -> Change {
    match now {
        None => Change::Deleted,
        Some(s) if !rec.identity.matches(s.dev, s.inode) => Change::Replaced,
        // Shorter than the shipped bytes, or than a recorded upload that must be redone.
        Some(s) if s.len < rec.uploading.map_or(rec.offset, |u| u.1.max(rec.offset)) => {
            Change::Truncated
        }
        Some(_) => Change::Same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_changes() {
        let s = |dev, inode, len| {
            Some(Seen {
                name: "a".into(),
                dev,
                inode,
                len,
                mtime: None,
            })
        };
        let mut rec = FileRecord {
            identity: crate::sidecar::fingerprint::Identity {
                dev: Some(7),
                inode: 1,
            },
            offset: 10,
            ..FileRecord::default()
        };
        assert_eq!(classify(&rec, s(7, 1, 10).as_ref()), Change::Same);
        assert_eq!(classify(&rec, s(7, 1, 20).as_ref()), Change::Same);
        assert_eq!(classify(&rec, s(7, 2, 20).as_ref()), Change::Replaced);
        assert_eq!(classify(&rec, s(8, 1, 20).as_ref()), Change::Replaced);
        assert_eq!(classify(&rec, s(7, 1, 5).as_ref()), Change::Truncated);
        assert_eq!(classify(&rec, None), Change::Deleted);
        // On a shared file system the device is not recorded and matches any.
        rec.identity.dev = None;
        assert_eq!(classify(&rec, s(8, 1, 10).as_ref()), Change::Same);
    }

    #[test]
    fn scans_matching_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "catalina.2026-11-24.log",
            "catalina.out",
            "localhost_access_log.2026-11-24.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("localhost.2026-11-24.log")).unwrap();
        let config =
            Config::from_env(&crate::config::Env::from_pairs([("LOGDROP_BUCKET", "b")])).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("nowhere"),
            dir.path().join("catalina.x.log"),
        )
        .unwrap();
        let scan = scan(dir.path(), &config).unwrap();
        let names: Vec<String> = scan.seen.into_iter().map(|s| s.name).collect();
        assert_eq!(scan.skipped.len(), 1, "the dangling link is reported");
        assert_eq!(
            names,
            [
                "catalina.2026-11-24.log",
                "localhost_access_log.2026-11-24.txt"
            ]
        );
    }
}
