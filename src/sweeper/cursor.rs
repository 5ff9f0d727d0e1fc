//! Where a run stopped at its deadline, so the next one starts there and
//! every directory is reached even when one run cannot look at them all.
//! A hint only: two sweepers may overwrite it, and a lost one restarts at
//! the first directory.

use std::path::Path;

const CURSOR_FILE: &str = ".logdrop-sweep-cursor";

/// The index in `dirs` the run starts at: the first not before the saved one.
pub fn resume_at(root: &Path, dirs: &[(String, String)]) -> usize {
    let Ok(text) = std::fs::read_to_string(root.join(CURSOR_FILE)) else {
        return 0;
    };
    let Some((cluster, task)) = text.trim().split_once('/') else {
        return 0;
    };
    let at = (cluster.to_string(), task.to_string());
    let i = dirs.partition_point(|d| *d < at);
    if i == dirs.len() { 0 } else { i }
}

/// Saves the first directory not reached.
pub fn save(root: &Path, cluster: &str, task_id: &str) {
    let tmp = root.join(format!("{CURSOR_FILE}.{}", std::process::id()));
    let written = std::fs::write(&tmp, format!("{cluster}/{task_id}\n"))
        .and_then(|_| std::fs::rename(&tmp, root.join(CURSOR_FILE)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(root = %root.display(), error = %e, "cannot save where the sweep stopped; the next run starts at the first directory");
    }
}

/// A run that reached every directory leaves no cursor.
pub fn clear(root: &Path) {
    let _ = std::fs::remove_file(root.join(CURSOR_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_starts_where_the_last_one_stopped() {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<(String, String)> = ["a/1", "a/2", "b/1"]
            .iter()
            .map(|d| {
                let (c, t) = d.split_once('/').unwrap();
                (c.to_string(), t.to_string())
            })
            .collect();
        assert_eq!(resume_at(root.path(), &dirs), 0);
        save(root.path(), "a", "2");
        assert_eq!(resume_at(root.path(), &dirs), 1);
        // The saved directory is gone: the next one after it.
        save(root.path(), "a", "3");
        assert_eq!(resume_at(root.path(), &dirs), 2);
        save(root.path(), "c", "1");
        assert_eq!(resume_at(root.path(), &dirs), 0);
        clear(root.path());
        assert_eq!(resume_at(root.path(), &dirs), 0);
    }
}
