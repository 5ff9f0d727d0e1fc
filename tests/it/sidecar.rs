//! The real sidecar binary: writes while it runs, SIGTERM, SIGKILL, rotation,
//! S3 outages. Every byte written must be in S3 exactly as written.

use crate::rig::*;
use crate::sidecar_rig::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const FILES: [&str; 3] = [
    "localhost_access_log.2026-11-24.txt",
    "catalina.2026-11-24.log",
    "localhost.2026-11-24.log",
];

#[tokio::test]
async fn random_writes_then_sigterm_ship_every_byte_at_event_boundaries() {
    let mut s = SidecarRig::new("sc-writes").await;
    // Only shutdown may force a cut here: the hold time-out is out of reach.
    s.extra_env = vec![
        ("LOGDROP_HOLD_TIMEOUT".into(), "120s".into()),
        ("LOGDROP_CHUNK_BYTES".into(), "32768".into()),
    ];
    let mut child = s.spawn();
    let contents: Vec<Vec<u8>> = FILES.iter().map(|f| corpus(f)).collect();
    let writers: Vec<_> = FILES
        .iter()
        .zip(&contents)
        .enumerate()
        .map(|(i, (f, c))| write_slowly(s.path(f), c.clone(), i as u64, 3))
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    // The stop must reach a running sidecar, however slow its start.
    wait_for_log(&s, "sidecar starting").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGTERM);
    let status =
        wait_exit(&mut child, Duration::from_secs(25)).expect("exits within the grace period");
    assert!(status.success(), "{}", s.log());
    let chunks = s.chunks().await;
    let (objects, segments) = s.object_counts().await;
    assert_eq!(segments, objects, "the sidecar writes only segments");
    for (file, content) in FILES.iter().zip(&contents) {
        let c = &chunks[&(file.to_string(), 0)];
        assert_tiles(c, content, file);
        if file.starts_with("localhost_access_log") {
            assert!(c.len() > 3, "{file}: {} chunks", c.len());
        }
        let starts: BTreeSet<u64> = event_starts(file, content)
            .into_iter()
            .map(|x| x as u64)
            .collect();
        for (_, end) in c.keys() {
            assert!(
                starts.contains(end) || *end == content.len() as u64,
                "{file}: a chunk ends inside an event at {end}"
            );
        }
    }
}

/// Issue 9's count: a flush is one object, whatever the number of files.
/// Each `--once` run is one flush of everything written before it.
#[tokio::test]
async fn one_object_per_flush_whatever_the_number_of_files() {
    let s = SidecarRig::new("sc-per-flush").await;
    let names = [
        "localhost_access_log.2026-11-24.txt",
        "localhost_access_log.2026-11-25.txt",
        "catalina.2026-11-24.log",
        "localhost.2026-11-24.log",
        "catalina.2026-11-25.log",
    ];
    let start = hours_ago(1);
    let mut written: Vec<Vec<u8>> = vec![Vec::new(); names.len()];
    let flushes = 4;
    for round in 0..flushes {
        for (i, n) in names.iter().enumerate() {
            let seed = (round * 10 + i) as u64;
            let bytes = match n.starts_with("localhost_access") {
                true => logdrop::generate::access_log(1500, seed, start),
                false => logdrop::generate::juli_log(1500, seed, start),
            };
            append(&s.path(n), &bytes);
            written[i].extend_from_slice(&bytes);
        }
        s.once();
        let (objects, segments) = s.object_counts().await;
        assert_eq!(
            (objects, segments),
            (round + 1, round + 1),
            "after {} flushes",
            round + 1
        );
    }
    let chunks = s.chunks().await;
    for (n, content) in names.iter().zip(&written) {
        assert_tiles(&chunks[&(n.to_string(), 0)], content, n);
    }
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_nothing() {
    let s = SidecarRig::new("sc-kill").await;
    s.enable_versioning().await;
    let start = hours_ago(1);
    let access = logdrop::generate::access_log(600_000, 11, start);
    let juli = logdrop::generate::juli_log(400_000, 12, start);
    let names = [
        "localhost_access_log.2026-11-24.txt",
        "localhost.2026-11-24.log",
    ];
    let w1 = write_slowly(s.path(names[0]), access.clone(), 1, 2);
    let w2 = write_slowly(s.path(names[1]), juli.clone(), 2, 3);
    let mut rng = fastrand::Rng::with_seed(99);
    // A longer run: LOGDROP_TEST_KILLS=500 cargo test --test it sigkill
    let kills: usize = std::env::var("LOGDROP_TEST_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(24);
    for _ in 0..kills {
        let mut child = s.spawn();
        std::thread::sleep(Duration::from_millis(rng.u64(20..250)));
        signal(&child, libc::SIGKILL);
        let status = wait_exit(&mut child, Duration::from_secs(10)).expect("killed");
        // Whatever it had done by then, it was still running: it did not fail on its own.
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{status}\n{}",
            s.log()
        );
    }
    w1.join().expect("writer");
    w2.join().expect("writer");
    s.once();
    let chunks = s.chunks().await; // also checks every re-upload was identical
    assert_tiles(&chunks[&(names[0].to_string(), 0)], &access, names[0]);
    assert_tiles(&chunks[&(names[1].to_string(), 0)], &juli, names[1]);
    assert!(!s.log().contains("sidecar failed"), "{}", s.log());
}

#[tokio::test]
async fn rotation_truncation_replacement_and_deletion() {
    let s = SidecarRig::new("sc-rotate").await;
    let mut child = s.spawn();
    let day1 = b"24-Nov-2026 23:59:59.000 INFO [main] a\n24-Nov-2026 23:59:59.500 INFO [main] b\n"
        .to_vec();
    append(&s.path("catalina.2026-11-24.log"), &day1);
    // Rotation: Tomcat starts a new dated file; the old one is finished.
    let day2 = b"25-Nov-2026 00:00:00.100 INFO [main] c\n".to_vec();
    append(&s.path("catalina.2026-11-25.log"), &day2);
    // Truncation (copytruncate): new generation from byte 0.
    let t = "localhost_access_log.trunc.txt";
    let before = b"1.1.1.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /a HTTP/1.1\" 200 1\n".to_vec();
    append(&s.path(t), &before);
    wait_until_shipped(&s, t, 0, before.len() as u64).await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.path(t))
        .unwrap()
        .set_len(0)
        .unwrap();
    let after = b"1.1.1.1 - - [24/Nov/2026:10:00:01 +0000] \"GET /b HTTP/1.1\" 200 2\n".to_vec();
    append(&s.path(t), &after);
    // Replacement: a new file renamed over the old name (new inode).
    let r = "localhost_access_log.repl.txt";
    let old = b"old line 1\nold line 2\n".to_vec();
    append(&s.path(r), &old);
    wait_until_shipped(&s, r, 0, old.len() as u64).await;
    let new = b"new line\n".to_vec();
    std::fs::write(s.dir.path().join("staging"), &new).unwrap();
    std::fs::rename(s.dir.path().join("staging"), s.path(r)).unwrap();
    // Deletion: what was written before the delete still ships from the open handle.
    let d = "localhost_access_log.del.txt";
    let first = b"first\n".to_vec();
    append(&s.path(d), &first);
    wait_until_shipped(&s, d, 0, first.len() as u64).await;
    append(&s.path(d), b"second\n");
    std::fs::remove_file(s.path(d)).unwrap();

    wait_until_shipped(&s, t, 1, after.len() as u64).await;
    wait_until_shipped(&s, r, 1, new.len() as u64).await;
    wait_until_shipped(&s, d, 0, 13).await;
    signal(&child, libc::SIGTERM);
    assert!(
        wait_exit(&mut child, Duration::from_secs(25))
            .expect("exits")
            .success()
    );
    let chunks = s.chunks().await;
    assert_tiles(
        &chunks[&("catalina.2026-11-24.log".into(), 0)],
        &day1,
        "day 1",
    );
    assert_tiles(
        &chunks[&("catalina.2026-11-25.log".into(), 0)],
        &day2,
        "day 2",
    );
    assert_tiles(&chunks[&(t.into(), 0)], &before, "before truncation");
    assert_tiles(&chunks[&(t.into(), 1)], &after, "after truncation");
    assert_tiles(&chunks[&(r.into(), 0)], &old, "replaced file");
    assert_tiles(&chunks[&(r.into(), 1)], &new, "replacement");
    assert_tiles(&chunks[&(d.into(), 0)], b"first\nsecond\n", "deleted file");
}

#[tokio::test]
async fn sigterm_ships_held_events_and_partial_lines() {
    let mut s = SidecarRig::new("sc-held").await;
    // Nothing is due by age: only the stop can ship these.
    s.extra_env = vec![
        ("LOGDROP_FLUSH_INTERVAL".into(), "10m".into()),
        ("LOGDROP_SHUTDOWN_GRACE".into(), "20s".into()),
    ];
    let mut child = s.spawn();
    let juli = b"24-Nov-2026 22:11:12.458 SEVERE [x] boom\n\tat a.b(C.java:1)\n".to_vec();
    let partial = b"1.1.1.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /half".to_vec();
    append(&s.path("localhost.2026-11-24.log"), &juli);
    append(&s.path("localhost_access_log.2026-11-24.txt"), &partial);
    // Both files seen (and the signal handlers installed, which happens
    // before the first pass) before the stop, however slow the machine.
    wait_for_log(&s, "localhost_access_log.2026-11-24.txt").await;
    wait_for_log(&s, "localhost.2026-11-24.log").await;
    assert!(s.chunks().await.is_empty(), "held until the stop");
    let stop = Instant::now();
    signal(&child, libc::SIGTERM);
    let status =
        wait_exit(&mut child, Duration::from_secs(20)).expect("exits within the grace period");
    assert!(status.success());
    let chunks = s.chunks().await;
    assert_tiles(
        &chunks[&("localhost.2026-11-24.log".into(), 0)],
        &juli,
        "held event",
    );
    assert_tiles(
        &chunks[&("localhost_access_log.2026-11-24.txt".into(), 0)],
        &partial,
        "partial line",
    );
    eprintln!("stopped in {:?}", stop.elapsed());
    let log = s.log();
    let summary = log
        .lines()
        .rev()
        .find(|l| l.contains(r#""message":"summary""#))
        .expect("a summary line at the stop");
    // Both files cut at the stop, in one segment: one object.
    assert!(
        summary.contains(r#""chunks":1"#) && summary.contains(r#""lag_bytes":0"#),
        "{summary}"
    );
}

/// Sets a file's modification time `ago` in the past.
pub fn age(path: &std::path::Path, ago: Duration) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - ago).unwrap();
}

#[tokio::test]
async fn prunes_rotated_files_but_never_the_newest_of_a_series() {
    let mut s = SidecarRig::new("sc-prune").await;
    s.extra_env = vec![("LOGDROP_PRUNE_AFTER".into(), "1s".into())];
    let rotated = "catalina.2026-11-24.log";
    let newest = "catalina.2026-11-25.log";
    let old = b"24-Nov-2026 22:10:58.757 INFO [main] yesterday\n".to_vec();
    let today = b"25-Nov-2026 08:00:00.000 INFO [main] today, quiet since\n".to_vec();
    append(&s.path(rotated), &old);
    append(&s.path(newest), &today);
    // Both have been quiet far longer than the setting: only rotation tells them apart.
    age(&s.path(rotated), Duration::from_secs(7200));
    age(&s.path(newest), Duration::from_secs(3600));
    let mut child = s.spawn();
    wait_until_shipped(&s, rotated, 0, old.len() as u64).await;
    wait_until_shipped(&s, newest, 0, today.len() as u64).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.path(rotated).exists() {
        assert!(Instant::now() < deadline, "not pruned\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.log().contains("pruned a fully shipped file"));
    // The pass that pruned the rotated file judged the newest one too.
    assert!(
        s.path(newest).exists(),
        "the newest file was pruned\n{}",
        s.log()
    );
    let later = b"25-Nov-2026 09:00:00.000 INFO [main] Tomcat still writes here\n";
    append(&s.path(newest), later);
    signal(&child, libc::SIGTERM);
    assert!(
        wait_exit(&mut child, Duration::from_secs(25))
            .expect("exits")
            .success()
    );
    let chunks = s.chunks().await;
    assert_tiles(&chunks[&(rotated.into(), 0)], &old, rotated);
    assert_tiles(
        &chunks[&(newest.into(), 0)],
        &[today.as_slice(), later].concat(),
        newest,
    );
}

#[tokio::test]
async fn s3_outage_then_recovery_loses_nothing() {
    let mut s = SidecarRig::new("sc-outage").await;
    let proxy = Proxy::start();
    s.endpoint = Some(format!("http://{}", proxy.addr));
    proxy.set(Mode::Refuse);
    let mut child = s.spawn();
    let content = logdrop::generate::access_log(2 << 20, 5, hours_ago(1));
    let file = "localhost_access_log.2026-11-24.txt";
    write_slowly(s.path(file), content.clone(), 3, 0)
        .join()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.log().contains("upload failed; retrying") {
        assert!(
            Instant::now() < deadline,
            "no failed upload seen\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        s.chunks().await.is_empty(),
        "nothing reached S3 while it was down"
    );
    let rss = peak_rss_kib(child.id()).expect("rss");
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB while S3 is down");
    proxy.set(Mode::Forward);
    wait_until_shipped(&s, file, 0, content.len() as u64).await;
    signal(&child, libc::SIGTERM);
    assert!(
        wait_exit(&mut child, Duration::from_secs(25))
            .expect("exits")
            .success()
    );
    assert_tiles(&s.chunks().await[&(file.into(), 0)], &content, file);
}

#[tokio::test]
async fn without_identity_it_says_what_to_set() {
    let s = SidecarRig::new("sc-ident").await;
    let out = s
        .command(&["--once"])
        .env_remove("LOGDROP_TASK_ID")
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOGDROP_TASK_ID"));
}
