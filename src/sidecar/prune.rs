//! Which files may be deleted: rotated ones only. A series is the files whose
//! names differ only in their digits (`catalina.2026-11-24.log`,
//! `catalina.2026-11-25.log`); its newest file — the latest name and the most
//! recently modified — is the one Tomcat may still write, and is never pruned,
//! however long it has been quiet.

use crate::sidecar::followed::Followed;
use crate::sidecar::state::FileRecord;
use crate::sidecar::tail;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// One followed file as the rule sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub mtime: Option<SystemTime>,
    /// Every byte is in S3 and no upload is outstanding.
    pub fully_shipped: bool,
}

/// The series a name belongs to: the name with each run of digits as `#`.
pub fn series(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_digits = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The names to delete now: fully shipped, unchanged for `after`, and not
/// the newest of their series by name or by modification time.
pub fn prunable<'a>(files: &[Candidate<'a>], now: SystemTime, after: Duration) -> Vec<&'a str> {
    let mut newest: BTreeMap<String, (&str, Option<SystemTime>)> = BTreeMap::new();
    let mut latest: BTreeMap<String, Option<SystemTime>> = BTreeMap::new();
    for f in files {
        let s = series(f.name);
        let by_name = newest.entry(s.clone()).or_insert((f.name, f.mtime));
        if f.name > by_name.0 {
            *by_name = (f.name, f.mtime);
        }
        let by_time = latest.entry(s).or_insert(f.mtime);
        if f.mtime > *by_time {
            *by_time = f.mtime;
        }
    }
    files
        .iter()
        .filter(|f| {
            let s = series(f.name);
            let quiet = f
                .mtime
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|idle| idle >= after);
            let newest_name = newest.get(&s).is_some_and(|n| n.0 == f.name);
            let newest_time = latest.get(&s).is_some_and(|t| *t == f.mtime);
            f.fully_shipped && quiet && !newest_name && !newest_time
        })
        .map(|f| f.name)
        .collect()
}

/// Deletes the prunable files among `followed` and removes them from it;
/// returns their records, finished, for the caller to save.
pub fn prune(
    followed: &mut BTreeMap<String, Followed>,
    dir: &Path,
    after: Duration,
) -> Vec<FileRecord> {
    let candidates: Vec<Candidate<'_>> = followed
        .values()
        .filter_map(|f| {
            let seen = f.seen.as_ref()?;
            Some(Candidate {
                name: f.name(),
                mtime: seen.mtime,
                fully_shipped: f.failing.is_none()
                    && f.record.uploading.is_none()
                    && seen.len == f.record.offset,
            })
        })
        .collect();
    let names: Vec<String> = prunable(&candidates, SystemTime::now(), after)
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut done = Vec::new();
    for name in names {
        let Some(f) = followed.get(&name) else {
            continue;
        };
        // Looked at again just before: still this file, still fully shipped.
        let still = tail::scan_one(dir, &name)
            .ok()
            .flatten()
            .is_some_and(|s| f.record.identity.matches(s.dev, s.inode) && s.len == f.record.offset);
        if !still {
            continue;
        }
        match std::fs::remove_file(dir.join(&name)) {
            Ok(()) => {
                tracing::info!(file = name, "pruned a fully shipped file");
                if let Some(f) = followed.remove(&name) {
                    let mut rec = f.record;
                    rec.finished = true;
                    done.push(rec);
                }
            }
            Err(e) => tracing::warn!(file = name, error = %e, "could not prune"),
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_ignore_digits() {
        assert_eq!(series("catalina.2026-11-24.log"), "catalina.#-#-#.log");
        assert_eq!(
            series("localhost_access_log.2026-11-24.txt"),
            "localhost_access_log.#-#-#.txt"
        );
        assert_ne!(
            series("catalina.2026-11-24.log"),
            series("localhost.2026-11-24.log")
        );
    }

    #[test]
    fn only_rotated_quiet_shipped_files() {
        let now = SystemTime::now();
        let ago = |h: u64| Some(now - Duration::from_secs(h * 3600));
        let c = |name, mtime, fully_shipped| Candidate {
            name,
            mtime,
            fully_shipped,
        };
        let files = [
            c("catalina.2026-11-23.log", ago(30), true),
            c("catalina.2026-11-24.log", ago(5), false),
            c("catalina.2026-11-25.log", ago(2), true),
            c("localhost.2026-11-24.log", ago(20), true),
            c("localhost.2026-11-25.log", ago(30), true),
            c("localhost_access_log.2026-11-25.txt", ago(9), true),
        ];
        let got = prunable(&files, now, Duration::from_secs(3600));
        // 23: rotated, shipped, quiet. 24: not fully shipped. 25: newest.
        // localhost.24 is the most recently written of its series: kept.
        // localhost.25 is the latest name: kept. The access log is alone.
        assert_eq!(got, ["catalina.2026-11-23.log"]);
        assert!(prunable(&files, now, Duration::from_secs(31 * 3600)).is_empty());
    }
}
