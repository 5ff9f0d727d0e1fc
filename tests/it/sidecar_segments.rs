//! Layout 2's crash rule with the real binary: a segment stored by S3 whose
//! answer was lost, then SIGKILL; on restart one of its files cannot be read.
//! The readable part is re-sent with exactly its range, the unreadable one
//! once the file is readable again: every byte once, no range overlapping.

use crate::sidecar_rig::*;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn wait_for(s: &SidecarRig, what: &str, done: impl AsyncFn() -> bool) {
    // A hang guard only: the condition is what the test waits on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "{what} after 60 s\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_part_unreadable_after_a_crash_ships_its_exact_range_once_readable() {
    let mut s = SidecarRig::new("sc-seg-unreadable").await;
    s.enable_versioning().await;
    let proxy = Proxy::start();
    s.endpoint = Some(proxy.endpoint());
    s.uid = Some(NOBODY);
    chmod(&s.log_dir(), 0o777);
    s.extra_env = vec![
        ("LOGDROP_HOLD_TIMEOUT".into(), "120s".into()),
        ("LOGDROP_UPLOAD_TIMEOUT".into(), "120s".into()),
    ];
    let bad = "localhost_access_log.2026-11-24.txt";
    let good = "localhost_access_log.2026-11-25.txt";
    let (b1, g1) = (get_lines(0, 20), get_lines(100, 20));
    append(&s.path(bad), &b1);
    append(&s.path(good), &g1);
    proxy.set(Mode::Swallow);
    let mut child = s.spawn();
    wait_for(&s, "no segment reached S3", async || {
        s.object_counts().await.1 > 0
    })
    .await;
    signal(&child, libc::SIGKILL);
    wait_exit(&mut child, Duration::from_secs(10)).expect("killed");
    // Unreadable for the sidecar's user now; both files grow meanwhile.
    chmod(&s.path(bad), 0o600);
    let (b2, g2) = (get_lines(20, 5), get_lines(120, 5));
    append(&s.path(bad), &b2);
    append(&s.path(good), &g2);
    proxy.set(Mode::Forward);
    let mut child = s.spawn();
    let g = [g1, g2].concat();
    wait_until_shipped(&s, good, 0, g.len() as u64).await;
    wait_for(&s, "no line names the unreadable part", async || {
        s.log().contains("cannot read a recorded part again")
    })
    .await;
    chmod(&s.path(bad), 0o644);
    let b = [b1, b2].concat();
    wait_until_shipped(&s, bad, 0, b.len() as u64).await;
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", s.log());
    // `chunks` also checks every upload of a key, and every copy of a range, is identical.
    let chunks = s.chunks().await;
    assert_tiles(&chunks[&(bad.into(), 0)], &b, bad);
    assert_tiles(&chunks[&(good.into(), 0)], &g, good);
    assert!(!chunks.contains_key(&(bad.into(), 1)), "a new generation");
}
