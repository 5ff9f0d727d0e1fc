//! Following the log directory: which files exist, and what became of the
//! ones already followed (grown, rotated away, replaced, truncated, deleted).

use crate::sidecar::config::Config;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file as seen by name in the directory now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub inode: u64,
    pub len: u64,
}

/// Regular files in `dir` whose names match the patterns, sorted by name.
pub fn scan(dir: &Path, config: &Config) -> std::io::Result<Vec<Seen>> {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !config.matches(&name) {
            continue;
        }
        // Follows symlinks, like `tail -F`; vanished since read_dir: skip.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            seen.push(Seen {
                name,
                inode: meta.ino(),
                len: meta.len(),
            });
        }
    }
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(seen)
}

/// What to do with a followed file, given what its name shows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Same file; maybe grown.
    Same,
    /// The name now points at another file: finish the old one, start a new generation.
    Replaced,
    /// Shorter than what was shipped (copytruncate): start a new generation at 0.
    Truncated,
    /// The name is gone: finish what the open handle still reads, then forget it.
    Deleted,
}

pub fn classify(followed_inode: u64, shipped_offset: u64, now: Option<&Seen>) -> Change {
    match now {
        None => Change::Deleted,
        Some(s) if s.inode != followed_inode => Change::Replaced,
        Some(s) if s.len < shipped_offset => Change::Truncated,
        Some(_) => Change::Same,
    }
}

/// Opens `name` and checks it is still the file that was seen (not swapped in between).
pub fn open(dir: &Path, seen: &Seen) -> std::io::Result<Option<File>> {
    let f = File::open(dir.join(&seen.name))?;
    Ok((f.metadata()?.ino() == seen.inode).then_some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_changes() {
        let s = |inode, len| {
            Some(Seen {
                name: "a".into(),
                inode,
                len,
            })
        };
        assert_eq!(classify(1, 10, s(1, 10).as_ref()), Change::Same);
        assert_eq!(classify(1, 10, s(1, 20).as_ref()), Change::Same);
        assert_eq!(classify(1, 10, s(2, 20).as_ref()), Change::Replaced);
        assert_eq!(classify(1, 10, s(1, 5).as_ref()), Change::Truncated);
        assert_eq!(classify(1, 10, None), Change::Deleted);
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
        let names: Vec<String> = scan(dir.path(), &config)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            [
                "catalina.2026-11-24.log",
                "localhost_access_log.2026-11-24.txt"
            ]
        );
    }
}
