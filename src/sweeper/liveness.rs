//! Whether a task's directory has a live sidecar shipping it, as its owner
//! record (`sidecar::owner`) says: the record's time is the later of its
//! `heartbeat` field and its file's modification time, which each heartbeat
//! after the first sets.

use crate::sidecar::owner::{OWNER_FILE, OwnerDoc};
use crate::sidecar::state::StateDir;
use chrono::{DateTime, Utc};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// No owner record: files dropped by a writer that runs no sidecar.
    NoOwner,
    /// A heartbeat younger than the stale time: leave the directory alone.
    Alive,
    /// The owner stopped, or its last heartbeat (this time) is stale.
    Gone(DateTime<Utc>),
}

/// Reads the owner record. One that does not parse is judged by the file's
/// time alone and named in a warning. A beat from further ahead than the
/// stale time (a skewed clock) is not believed: the sweeper then tries the
/// lock, which a live sidecar holds for its whole run.
pub fn liveness(state: &StateDir, now: DateTime<Utc>, stale: Duration) -> Liveness {
    let path = state.path().join(OWNER_FILE);
    // Read after the record is opened and read, which revalidates the
    // attributes an NFS client caches.
    let loaded = state.read::<OwnerDoc>(OWNER_FILE);
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let beat = match loaded {
        Ok(None) => return Liveness::NoOwner,
        Ok(Some(doc)) if doc.stopped => return Liveness::Gone(doc.heartbeat),
        Ok(Some(doc)) => doc.heartbeat.max(modified),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the owner record; judging the owner by the file's time");
            modified
        }
    };
    let age = now.signed_duration_since(beat).to_std().unwrap_or_default();
    let ahead = beat.signed_duration_since(now).to_std().unwrap_or_default();
    if age < stale && ahead < stale {
        Liveness::Alive
    } else {
        Liveness::Gone(beat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(heartbeat: DateTime<Utc>, stopped: bool) -> OwnerDoc {
        OwnerDoc {
            stopped,
            ..OwnerDoc::new("c", "t", heartbeat)
        }
    }

    #[test]
    fn a_heartbeat_younger_than_the_stale_time_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = StateDir::new(dir.path());
        let now = Utc::now();
        let stale = Duration::from_secs(30);
        assert_eq!(liveness(&state, now, stale), Liveness::NoOwner);
        state.write(OWNER_FILE, &doc(now, false)).unwrap();
        assert_eq!(liveness(&state, now, stale), Liveness::Alive);
        // The beat is the field's or the file's time (which a coarse file
        // system clock may put a little before `now`), whichever is later.
        let later = Utc::now() + chrono::Duration::seconds(30);
        assert!(matches!(
            liveness(&state, later, stale),
            Liveness::Gone(t) if t >= now && t < later
        ));
        // An old record whose file's time is old too is stale.
        let path = dir.path().join(OWNER_FILE);
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        state
            .write(OWNER_FILE, &doc(now - chrono::Duration::hours(2), false))
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(
            liveness(&state, Utc::now(), stale),
            Liveness::Gone(_)
        ));
        // A beat sets the file's time only: the old field with a new time is alive.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        assert_eq!(liveness(&state, Utc::now(), stale), Liveness::Alive);
        // A beat an hour ahead of the sweeper's clock is not believed.
        let ahead = now + chrono::Duration::hours(1);
        state.write(OWNER_FILE, &doc(ahead, false)).unwrap();
        assert_eq!(liveness(&state, now, stale), Liveness::Gone(ahead));
        state.write(OWNER_FILE, &doc(now, true)).unwrap();
        assert_eq!(liveness(&state, now, stale), Liveness::Gone(now));
    }

    #[test]
    fn an_owner_record_that_does_not_parse_is_judged_by_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        std::fs::write(dir.path().join(OWNER_FILE), b"{not json").unwrap();
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(liveness(&state, now, hour), Liveness::Alive);
        let later = now + chrono::Duration::hours(2);
        assert!(matches!(liveness(&state, later, hour), Liveness::Gone(_)));
    }
}
