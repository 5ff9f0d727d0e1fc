//! The real sidecar binary under hostile files and faults: unreadable files,
//! thousands of files under a low open-file limit, files changed while it was
//! down, symlinks, a read-only state directory, S3 that never answers or whose
//! answers are lost, SIGTERM during an outage. Exact outcomes only.

use crate::sidecar_rig::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn access_lines(from: usize, n: usize) -> Vec<u8> {
    (from..from + n)
        .map(|i| {
            format!(
                "10.0.0.{} - - [24/Nov/2026:10:00:{:02} +0000] \"GET /p/{i} HTTP/1.1\" 200 {i}\n",
                i % 250,
                i % 60
            )
        })
        .collect::<String>()
        .into_bytes()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

async fn objects_in_bucket(s: &SidecarRig) -> usize {
    let out = s
        .rig
        .s3
        .client()
        .list_objects_v2()
        .bucket(&s.rig.bucket)
        .prefix("logs/")
        .send()
        .await
        .expect("list");
    out.contents().len()
}

fn last_line(log: &str) -> &str {
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// Item 4: an upload stored by S3 whose answer never came, then SIGTERM. The
/// drain must re-upload that exact chunk before cutting anything new.
#[tokio::test]
async fn sigterm_while_an_answer_is_lost_never_overlaps_chunks() {
    let mut s = SidecarRig::new("sc-lost-answer").await;
    let proxy = Proxy::start();
    s.endpoint = Some(proxy.endpoint());
    s.extra_env = vec![
        ("LOGDROP_HOLD_TIMEOUT".into(), "120s".into()),
        ("LOGDROP_UPLOAD_TIMEOUT".into(), "120s".into()),
    ];
    proxy.set(Mode::Swallow);
    let file = "localhost_access_log.2026-11-24.txt";
    let first = access_lines(0, 3);
    let more = access_lines(3, 4);
    let mut child = s.spawn();
    append(&s.path(file), &first);
    // S3 has the chunk; the sidecar is still waiting for the answer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while objects_in_bucket(&s).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no upload reached S3\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    append(&s.path(file), &more);
    proxy.set(Mode::Forward);
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", s.log());
    let chunks = s.chunks().await;
    assert_tiles(
        &chunks[&(file.into(), 0)],
        &[first, more].concat(),
        "lost answer then SIGTERM",
    );
}

/// Item 5: an endpoint that accepts and never answers. The attempt times out
/// and is retried; once S3 answers again, everything ships.
#[tokio::test]
async fn an_s3_endpoint_that_never_answers_times_out_and_recovers() {
    let mut s = SidecarRig::new("sc-hung").await;
    let proxy = Proxy::start();
    s.endpoint = Some(proxy.endpoint());
    // Long enough for any answer moto gives on a busy machine, short enough to show.
    s.extra_env = vec![("LOGDROP_UPLOAD_TIMEOUT".into(), "3s".into())];
    proxy.set(Mode::Blackhole);
    let file = "localhost_access_log.2026-11-24.txt";
    let content = access_lines(0, 200);
    let mut child = s.spawn();
    append(&s.path(file), &content);
    wait_for_log(&s, "upload failed; retrying").await;
    proxy.set(Mode::Forward);
    stop_once_shipped(&s, &mut child, file, &content).await;
}

/// Item 6: SIGTERM while S3 is unreachable: it stops within the grace and its
/// last line names what stayed behind.
#[tokio::test]
async fn sigterm_during_an_s3_outage_names_what_stays_behind() {
    let mut s = SidecarRig::new("sc-stop-outage").await;
    let proxy = Proxy::start();
    s.endpoint = Some(proxy.endpoint());
    s.extra_env = vec![("LOGDROP_SHUTDOWN_GRACE".into(), "2s".into())];
    proxy.set(Mode::Refuse);
    let file = "localhost_access_log.2026-11-24.txt";
    let content = access_lines(0, 50);
    let mut child = s.spawn();
    append(&s.path(file), &content);
    wait_for_log(&s, "upload failed; retrying").await;
    signal(&child, libc::SIGTERM);
    // A hang guard only: the grace is 2 s, the backoff could reach 30 s.
    wait_exit(&mut child, Duration::from_secs(60)).expect("exits");
    let log = s.log();
    let last = last_line(&log);
    let range = format!("{file} gen 0 bytes 0-{}", content.len());
    assert!(last.contains(&range), "last line: {last}\n{log}");
    assert!(s.chunks().await.is_empty());
}

/// Item 6: `--once` ships what was there when it started, even while a writer
/// keeps appending faster than it uploads.
#[tokio::test]
async fn once_ships_what_was_there_when_it_started() {
    let mut s = SidecarRig::new("sc-once-busy").await;
    s.extra_env = vec![("LOGDROP_CHUNK_BYTES".into(), "4096".into())];
    let file = "localhost_access_log.2026-11-24.txt";
    let before = access_lines(0, 400);
    append(&s.path(file), &before);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (path, flag) = (s.path(file), stop.clone());
    let writer = std::thread::spawn(move || {
        // Hang guard: stops by itself after 60 s.
        let until = Instant::now() + Duration::from_secs(60);
        let mut i = 400;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until {
            append(&path, &access_lines(i, 30));
            i += 30;
            // About 2.5 MB/s: more than 4 KiB chunks to moto ship, little disk.
            std::thread::sleep(Duration::from_millis(1));
        }
        Instant::now() < until
    });
    let mut once = Running(s.command(&["--once"]).spawn().expect("run --once"));
    // A hang guard: it ships a few hundred KiB.
    let status = wait_exit(&mut once, Duration::from_secs(90));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let status = status.unwrap_or_else(|| panic!("--once still running after 90 s\n{}", s.log()));
    assert!(
        writer.join().unwrap(),
        "--once ran until the writer gave up\n{}",
        s.log()
    );
    assert!(status.success(), "{}", s.log());
    let written = std::fs::read(s.path(file)).unwrap();
    let chunks = s.chunks().await;
    let c = &chunks[&(file.into(), 0)];
    let end = c.keys().map(|k| k.1).max().unwrap() as usize;
    assert!(end >= before.len(), "shipped {end} of {}", before.len());
    assert_tiles(c, &written[..end], "a prefix of the file");
}

/// Item 3: files changed while the sidecar was down: rewritten in place with
/// an end like the old one (copytruncate), deleted and recreated (maybe with
/// the inode reused), truncated shorter. Each new content is a new generation
/// from byte 0, and every chunk's body is the bytes its key names.
#[tokio::test]
async fn files_changed_while_down_start_new_generations() {
    let s = SidecarRig::new("sc-identity").await;
    let same_end = "localhost_access_log.2026-11-24.txt";
    let recreated = "catalina.2026-11-24.log";
    let shorter = "localhost_access_log.2026-11-25.txt";
    let a = access_lines(0, 40);
    let r0 = b"24-Nov-2026 10:00:00.000 INFO [main] first life\n".to_vec();
    let c0 = access_lines(100, 40);
    append(&s.path(same_end), &a);
    append(&s.path(recreated), &r0);
    append(&s.path(shorter), &c0);
    s.once();
    // Same inode, same length and more, the same bytes before the old offset:
    // only the first line differs.
    let first_line = a.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut a2 = format!("{:<w$}\n", "9.9.9.9 rewritten", w = first_line - 1).into_bytes();
    a2.extend_from_slice(&a[first_line..]);
    a2.extend_from_slice(&access_lines(40, 5));
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.path(same_end))
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&s.path(same_end), &a2);
    std::fs::remove_file(s.path(recreated)).unwrap();
    let r1 = b"24-Nov-2026 11:00:00.000 INFO [main] second life, longer than the first\n".to_vec();
    append(&s.path(recreated), &r1);
    let c1 = access_lines(500, 3);
    std::fs::write(s.path(shorter), &c1).unwrap();
    s.once();
    let chunks = s.chunks().await;
    assert_tiles(&chunks[&(same_end.into(), 0)], &a, "before copytruncate");
    assert_tiles(&chunks[&(same_end.into(), 1)], &a2, "after copytruncate");
    assert_tiles(&chunks[&(recreated.into(), 0)], &r0, "first life");
    assert_tiles(&chunks[&(recreated.into(), 1)], &r1, "second life");
    assert_tiles(&chunks[&(shorter.into(), 0)], &c0, "before truncation");
    assert_tiles(&chunks[&(shorter.into(), 1)], &c1, "after truncation");
}

/// Item 2: a file the sidecar cannot read neither stops the others nor loses
/// its place: once readable it continues its generation where it was.
#[tokio::test]
async fn an_unreadable_file_stays_with_its_file() {
    let mut s = SidecarRig::new("sc-unreadable").await;
    s.uid = Some(NOBODY);
    chmod(&s.log_dir(), 0o777);
    let bad = "catalina.2026-11-24.log";
    let good = [
        "localhost_access_log.2026-11-24.txt",
        "localhost.2026-11-24.log",
    ];
    let x = b"24-Nov-2026 10:00:00.000 INFO [main] readable at first\n".to_vec();
    append(&s.path(bad), &x);
    s.once();
    let y = b"24-Nov-2026 10:00:01.000 INFO [main] written while unreadable\n".to_vec();
    append(&s.path(bad), &y);
    chmod(&s.path(bad), 0o600);
    let contents = [
        access_lines(0, 30),
        b"24-Nov-2026 10:00:02.000 INFO [main] ok\n".to_vec(),
    ];
    for (g, c) in good.iter().zip(&contents) {
        append(&s.path(g), c);
    }
    let out = s.command(&["--once"]).status().unwrap();
    assert!(!out.success(), "a file stayed behind: --once must say so");
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains(bad) && l.contains("Permission denied")),
        "no line names the unreadable file\n{log}"
    );
    let chunks = s.chunks().await;
    for (g, c) in good.iter().zip(&contents) {
        assert_tiles(&chunks[&(g.to_string(), 0)], c, g);
    }
    chmod(&s.path(bad), 0o644);
    s.once();
    let chunks = s.chunks().await;
    assert_tiles(&chunks[&(bad.into(), 0)], &[x, y].concat(), bad);
    assert!(
        !chunks.contains_key(&(bad.into(), 1)),
        "re-shipped as a new generation"
    );
}

/// Item 2: thousands of files under a low RLIMIT_NOFILE all ship.
#[tokio::test]
async fn thousands_of_files_under_a_low_open_file_limit() {
    let mut s = SidecarRig::new("sc-many").await;
    s.nofile = Some(256);
    let n = 1500;
    let names: Vec<String> = (0..n)
        .map(|i| format!("localhost_access_log.f{i:04}.txt"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        append(&s.path(name), &access_lines(i, 2));
    }
    s.once();
    let chunks = s.chunks().await;
    for (i, name) in names.iter().enumerate() {
        let c = chunks
            .get(&(name.clone(), 0))
            .unwrap_or_else(|| panic!("{name} not shipped\n{}", s.log()));
        assert_tiles(c, &access_lines(i, 2), name);
    }
}

/// A state directory the sidecar cannot write (read-only here; a full disk
/// fails the same writes, see `state::tests`): nothing is uploaded (an upload
/// must be recorded first), the error names the path, and once it is writable
/// every byte ships exactly once, without a restart.
#[tokio::test]
async fn a_read_only_state_dir_uploads_nothing_until_writable() {
    let mut s = SidecarRig::new("sc-state-ro").await;
    s.uid = Some(NOBODY);
    chmod(&s.log_dir(), 0o777);
    let state = s.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    s.extra_env = vec![("LOGDROP_STATE_DIR".into(), state.display().to_string())];
    let file = "localhost_access_log.2026-11-24.txt";
    let content = access_lines(0, 20);
    append(&s.path(file), &content);
    let out = s
        .command(&["--once"])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&state.display().to_string()), "{err}");
    assert!(s.chunks().await.is_empty());
    // Running, it keeps trying, and ships once the directory is writable.
    let mut child = s.spawn();
    wait_for_log(&s, "pass failed; retrying").await;
    assert!(s.chunks().await.is_empty());
    chown_nobody(&state);
    stop_once_shipped(&s, &mut child, file, &content).await;
}

/// Symlinks are followed like `tail -F`: the target's bytes ship under the
/// link's name, a new target is a new generation; dangling links and links to
/// directories are skipped without stopping anything.
#[tokio::test]
async fn symlinks_are_followed_and_retargeting_is_a_new_generation() {
    let s = SidecarRig::new("sc-symlink").await;
    let elsewhere = s.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let t1 = elsewhere.join("one.log");
    let t2 = elsewhere.join("two.log");
    let one = b"24-Nov-2026 10:00:00.000 INFO [main] one\n".to_vec();
    let two = b"24-Nov-2026 10:00:01.000 INFO [main] two\n".to_vec();
    std::fs::write(&t1, &one).unwrap();
    std::fs::write(&t2, &two).unwrap();
    let link = "catalina.2026-11-24.log";
    std::os::unix::fs::symlink(&t1, s.path(link)).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("missing"), s.path("catalina.2026-11-23.log"))
        .unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.path("localhost.2026-11-24.log")).unwrap();
    s.once();
    std::fs::remove_file(s.path(link)).unwrap();
    std::os::unix::fs::symlink(&t2, s.path(link)).unwrap();
    s.once();
    let chunks = s.chunks().await;
    assert_tiles(&chunks[&(link.into(), 0)], &one, "first target");
    assert_tiles(&chunks[&(link.into(), 1)], &two, "second target");
    assert_eq!(chunks.len(), 2, "{:?}", chunks.keys());
    assert!(t1.exists() && t2.exists());
}

/// Item 7: a duration too large for the clock is a configuration error naming
/// the variable, not a panic.
#[tokio::test]
async fn a_huge_duration_is_a_configuration_error() {
    let s = SidecarRig::new("sc-huge").await;
    for var in ["LOGDROP_SHUTDOWN_GRACE", "LOGDROP_FLUSH_INTERVAL"] {
        let out = s
            .command(&["--once"])
            .env(var, "100000000000000000000")
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(err.contains(var), "{err}");
    }
}

/// Waits until `file` (generation 0) is shipped whole, stops the sidecar,
/// and checks that it exits 0 and that the chunks tile the content exactly.
async fn stop_once_shipped(
    s: &SidecarRig,
    child: &mut std::process::Child,
    file: &str,
    content: &[u8],
) {
    wait_until_shipped(s, file, 0, content.len() as u64).await;
    signal(child, libc::SIGTERM);
    assert!(
        wait_exit(child, Duration::from_secs(30))
            .expect("exits")
            .success()
    );
    assert_tiles(&s.chunks().await[&(file.into(), 0)], content, file);
}
