//! EFS drops (a plain directory stands for the file system): a task whose
//! sidecar and writer are SIGKILLed loses nothing once the real `sweeper`
//! binary has run; files dropped with no sidecar ship as they grow; a live
//! owner's directory is left alone; two sweepers, or a sweeper and a sidecar
//! coming back, never write a key twice with other bytes nor a range twice.

use crate::rig::{TASK, expected_events, hours_ago, inv};
use crate::sidecar_rig::{
    Chunks, Mode, Proxy, Running, SidecarRig, assert_tiles, signal, wait_exit,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ACCESS: &str = "localhost_access_log.2026-11-24.txt";
const JULI: &str = "catalina.2026-11-24.log";

fn root(s: &SidecarRig) -> PathBuf {
    s.dir.path().join("efs")
}

fn task_dir(s: &SidecarRig) -> PathBuf {
    root(s).join(&s.rig.cluster).join(TASK)
}

/// The real sidecar with its files on the stand-in file system.
fn spawn_on_efs(s: &SidecarRig) -> Running {
    let mut cmd = s.command(&[]);
    cmd.env_remove("LOGDROP_LOG_DIR")
        .env("LOGDROP_EFS_ROOT", root(s))
        .env("LOGDROP_HEARTBEAT", "50ms");
    Running(cmd.spawn().expect("spawn sidecar"))
}

/// One run of the real sweeper binary over the root. An owner counts as gone
/// at once (the tests decide who is alive), and a dead writer's last line
/// ships at once (its writer will never finish it).
fn sweeper(s: &SidecarRig, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sweeper"));
    cmd.arg("--root")
        .arg(root(s))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in crate::moto::moto().env() {
        cmd.env(k, v);
    }
    cmd.env("LOGDROP_BUCKET", &s.rig.bucket)
        .env("LOGDROP_OWNER_STALE", "0s")
        .env("LOGDROP_LINE_TIMEOUT", "0s")
        .env("LOGDROP_CHUNK_BYTES", "16384")
        .env("RUST_LOG", "info");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn sweep(s: &SidecarRig, extra: &[(&str, &str)]) -> (serde_json::Value, String) {
    let out: Output = sweeper(s, extra).output().expect("run the sweeper");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sweeper failed: {log}");
    let report = serde_json::from_slice(&out.stdout).expect("a JSON report");
    (report, log)
}

/// Appends `content` in random pieces (often mid-line) until done or told to stop.
fn writer(
    path: PathBuf,
    content: Vec<u8>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut at = 0;
        while at < content.len() && !stop.load(Ordering::SeqCst) {
            let n = rng.usize(1..3000).min(content.len() - at);
            crate::sidecar_rig::append(&path, &content[at..at + n]);
            at += n;
            std::thread::sleep(Duration::from_millis(rng.u64(0..=3)));
        }
        at
    })
}

async fn segment_keys(s: &SidecarRig) -> Vec<String> {
    let page = s
        .rig
        .s3
        .client()
        .list_objects_v2()
        .bucket(&s.rig.bucket)
        .prefix("logs/")
        .send()
        .await
        .expect("list");
    page.contents()
        .iter()
        .filter_map(|o| o.key())
        .map(str::to_string)
        .collect()
}

async fn wait_for_objects(s: &SidecarRig, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while segment_keys(s).await.len() < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} objects after 120 s\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The segment the dead sidecar recorded as in flight, if any.
fn in_flight(s: &SidecarRig) -> Option<u64> {
    let doc = std::fs::read(task_dir(s).join(".logdrop/segment.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&doc).ok()?;
    v["uploading"]["seq"].as_u64()
}

/// Every file of the task directory tiles its segments exactly, and the
/// shipper puts every event into CloudWatch Logs once.
async fn assert_everything_arrives(s: &SidecarRig, files: &[&str]) {
    let chunks = s.chunks().await; // also: every re-upload of a key was identical
    let none = Chunks::new();
    let mut contents = BTreeMap::new();
    for name in files {
        let content = std::fs::read(task_dir(s).join(name)).unwrap_or_default();
        let of = chunks.get(&(name.to_string(), 0)).unwrap_or(&none);
        assert_tiles(of, &content, name);
        contents.insert(*name, content);
    }
    let keys = segment_keys(s).await;
    let shipped = s
        .rig
        .shipper()
        .handle(&s.rig.s3_event(&keys), &inv("efs"))
        .await;
    assert!(shipped.is_ok(), "{shipped:?}");
    for (name, content) in contents {
        let stem = name.split('.').next().expect("stem");
        let got = s.rig.events(&s.rig.stream(stem)).await;
        assert!(got == expected(name, &content), "{name}: events differ");
    }
}

/// The events of a file whose writer may have died inside a line: an access
/// line without its end has no time of its own and takes the previous one's.
fn expected(name: &str, content: &[u8]) -> Vec<(i64, String)> {
    let whole = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let tail = &content[whole..];
    if !name.starts_with("localhost_access_log.") || tail.is_empty() {
        return expected_events(name, content);
    }
    let mut events = expected_events(name, &content[..whole]);
    let t = events.last().map_or(0, |e| e.0);
    events.push((t, String::from_utf8_lossy(tail).into_owned()));
    events
}

/// How the sidecar is caught when it dies.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// After `n` objects reached S3, wherever it then is.
    After(usize),
    /// With a segment stored and its answer lost (in flight, in S3).
    AnswerLost,
    /// With a segment sent to an endpoint that never answers (in flight, not in S3).
    Hung,
}

async fn killed_task_then_sweep(name: &str, kill: Kill, seed: u64) {
    let mut s = SidecarRig::new(name).await;
    s.enable_versioning().await;
    let proxy = Proxy::start();
    s.endpoint = Some(proxy.endpoint());
    let dir = task_dir(&s);
    std::fs::create_dir_all(&dir).expect("task dir");
    let start = hours_ago(1);
    let access = logdrop::generate::access_log(300_000, seed, start);
    let juli = logdrop::generate::juli_log(200_000, seed + 1, start);
    let stop = Arc::new(AtomicBool::new(false));
    let mut child = spawn_on_efs(&s);
    let w1 = writer(dir.join(ACCESS), access, seed, stop.clone());
    let w2 = writer(dir.join(JULI), juli, seed + 2, stop.clone());
    match kill {
        Kill::After(n) => wait_for_objects(&s, n).await,
        Kill::AnswerLost | Kill::Hung => {
            wait_for_objects(&s, 1).await;
            let before = segment_keys(&s).await.len();
            proxy.set(if matches!(kill, Kill::Hung) {
                Mode::Blackhole
            } else {
                Mode::Swallow
            });
            // Wait until the sidecar has recorded a segment it cannot finish.
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let recorded = in_flight(&s).is_some();
                let stored = segment_keys(&s).await.len() > before;
                if recorded && (matches!(kill, Kill::Hung) || stored) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no segment in flight\n{}",
                    s.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    signal(&child.0, libc::SIGKILL);
    stop.store(true, Ordering::SeqCst);
    wait_exit(&mut child.0, Duration::from_secs(10)).expect("killed");
    w1.join().expect("writer");
    w2.join().expect("writer");
    let flying = in_flight(&s);
    // What an ephemeral volume would have lost with the task: the bytes on
    // disk that no object in S3 holds yet.
    let written: u64 = [ACCESS, JULI]
        .iter()
        .map(|n| std::fs::metadata(dir.join(n)).map_or(0, |m| m.len()))
        .sum();
    let in_s3: u64 = s
        .chunks()
        .await
        .values()
        .flat_map(|c| c.keys().map(|(a, b)| b - a))
        .sum();
    eprintln!(
        "efs: kill {kill:?}: {written} bytes written, {} not in S3 at the kill (lost with an ephemeral volume), in flight {flying:?}",
        written - in_s3
    );
    let (report, log) = sweep(&s, &[]);
    assert_eq!(report["swept"], 1, "{report}\n{log}");
    if let Some(seq) = flying {
        let key = format!("logs/{}/{TASK}/segment/{seq:015}.gz", s.rig.cluster);
        assert!(
            segment_keys(&s).await.contains(&key),
            "{key} not re-uploaded\n{log}"
        );
    }
    assert_everything_arrives(&s, &[ACCESS, JULI]).await;
    // A second run finds nothing more to ship; past the retention, the
    // finished directory of the gone task is deleted.
    let (again, _) = sweep(&s, &[]);
    assert_eq!(
        (again["bytes"].as_u64(), again["deleted"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    let (last, _) = sweep(&s, &[("LOGDROP_SWEEP_RETENTION", "0s")]);
    assert_eq!(last["deleted"], 1, "{last}");
    assert!(!task_dir(&s).exists());
}

#[tokio::test]
async fn a_task_killed_without_warning_loses_nothing_once_swept() {
    for (i, kill) in [Kill::After(1), Kill::After(3), Kill::AnswerLost, Kill::Hung]
        .into_iter()
        .enumerate()
    {
        let seed = 40 + i as u64 * 7;
        eprintln!("efs: kill {kill:?}, seed {seed}");
        killed_task_then_sweep(&format!("efs-kill-{i}"), kill, seed).await;
    }
}

#[tokio::test]
async fn files_dropped_with_no_sidecar_ship_as_they_grow() {
    let s = SidecarRig::new("efs-plain").await;
    let dir = task_dir(&s);
    std::fs::create_dir_all(&dir).expect("task dir");
    let access = logdrop::generate::access_log(120_000, 5, hours_ago(1));
    let mut rng = fastrand::Rng::with_seed(5);
    let mut at = 0;
    // The writer is alive between runs: its unfinished last line waits.
    let live = [
        ("LOGDROP_LINE_TIMEOUT", "1h"),
        ("LOGDROP_HOLD_TIMEOUT", "1h"),
    ];
    while at < access.len() {
        let n = rng.usize(1..20_000).min(access.len() - at);
        crate::sidecar_rig::append(&dir.join(ACCESS), &access[at..at + n]);
        at += n;
        sweep(&s, &live);
    }
    // Nothing ended inside a line while the writer could still finish it.
    for ((_, _), parts) in s.chunks().await {
        for body in parts.values() {
            assert_eq!(body.last(), Some(&b'\n'), "a part ends inside a line");
        }
    }
    // Once the writer is quiet, its last line goes too; a directory with no
    // owner is never deleted (its writer may come back).
    let (report, _) = sweep(&s, &[("LOGDROP_SWEEP_RETENTION", "0s")]);
    assert_eq!(report["deleted"], 0, "{report}");
    assert_everything_arrives(&s, &[ACCESS]).await;
    assert!(
        !dir.join(".logdrop/owner.json").exists(),
        "the sweeper wrote an owner record"
    );
}

#[tokio::test]
async fn a_live_owner_is_left_alone_and_a_sidecar_waits_for_a_sweeper() {
    let mut s = SidecarRig::new("efs-live").await;
    s.extra_env = vec![("LOGDROP_HOLD_TIMEOUT".into(), "0s".into())];
    let dir = task_dir(&s);
    let mut child = spawn_on_efs(&s);
    crate::sidecar_rig::wait_for_log(&s, "sidecar starting").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join(".logdrop/owner.json").exists() {
        assert!(Instant::now() < deadline, "no owner record\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    crate::sidecar_rig::append(
        &dir.join(ACCESS),
        b"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5\n",
    );
    // By its heartbeat (fresh within an hour), then by its lock alone.
    let (report, _) = sweep(&s, &[("LOGDROP_OWNER_STALE", "1h")]);
    assert_eq!(
        (report["owned"].as_u64(), report["swept"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );
    let (report, _) = sweep(&s, &[]);
    assert_eq!(
        (report["held"].as_u64(), report["swept"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );
    signal(&child.0, libc::SIGTERM);
    assert!(
        wait_exit(&mut child.0, Duration::from_secs(30))
            .expect("stops")
            .success()
    );
    // A sweeper holds the directory (its lock, taken here) when the sidecar comes back.
    let lock = logdrop::sidecar::owner::try_lock(&dir.join(".logdrop"))
        .unwrap()
        .expect("free");
    let _back = spawn_on_efs(&s);
    crate::sidecar_rig::wait_for_log(&s, "holds the directory; waiting").await;
    crate::sidecar_rig::append(
        &dir.join(ACCESS),
        b"10.0.0.1 - - [24/Nov/2026:10:00:01 +0000] \"GET /b HTTP/1.1\" 200 5\n",
    );
    drop(lock);
    let content = std::fs::read(dir.join(ACCESS)).unwrap();
    crate::sidecar_rig::wait_until_shipped(&s, ACCESS, 0, content.len() as u64).await;
    assert_tiles(
        &s.chunks().await[&(ACCESS.to_string(), 0)],
        &content,
        ACCESS,
    );
}

#[tokio::test]
async fn two_sweepers_at_once_ship_each_range_once() {
    let s = SidecarRig::new("efs-two").await;
    s.enable_versioning().await;
    let mut files = Vec::new();
    for t in 0..6u64 {
        let dir = root(&s).join(&s.rig.cluster).join(format!("{TASK}-{t}"));
        std::fs::create_dir_all(&dir).unwrap();
        // A name per task, so the bucket's ranges tell the tasks apart.
        let name = format!("localhost_access_log.2026-11-1{t}.txt");
        let content = logdrop::generate::access_log(40_000, t, hours_ago(1));
        std::fs::write(dir.join(&name), &content).unwrap();
        files.push((name, content));
    }
    let a = sweeper(&s, &[]).spawn().expect("sweeper a");
    let b = sweeper(&s, &[]).spawn().expect("sweeper b");
    for mut c in [a, b] {
        assert!(c.wait().expect("sweeper").success());
    }
    sweep(&s, &[]);
    let chunks = s.chunks().await; // fails on a key written twice with other bytes
    let parts = parts_per_file(&s).await;
    for (name, content) in &files {
        let of = &chunks[&(name.clone(), 0)];
        assert_tiles(of, content, name);
        assert_eq!(
            parts[name],
            of.len(),
            "{name}: a range shipped under two keys"
        );
    }
}

/// How many segment parts name each file, over every key.
async fn parts_per_file(s: &SidecarRig) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for key in segment_keys(s).await {
        let body = s
            .rig
            .s3
            .client()
            .get_object()
            .bucket(&s.rig.bucket)
            .key(&key)
            .send()
            .await
            .expect("get");
        let body = body.body.collect().await.expect("body").to_vec();
        let (manifest, _) = logdrop::core::segment::HeadReader::default()
            .push(&body)
            .expect("manifest")
            .expect("whole manifest");
        for p in manifest.parts {
            *out.entry(p.file).or_default() += 1;
        }
    }
    out
}

#[tokio::test]
async fn bad_directories_are_named_and_the_others_ship() {
    let s = SidecarRig::new("efs-bad").await;
    let cluster = root(&s).join(&s.rig.cluster);
    let line = b"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5\n";
    let with_state = |task: &str, file: &str, body: &[u8]| {
        let dir = cluster.join(task);
        std::fs::create_dir_all(dir.join(".logdrop")).unwrap();
        std::fs::write(dir.join(".logdrop").join(file), body).unwrap();
        std::fs::write(dir.join(ACCESS), line).unwrap();
    };
    std::fs::create_dir_all(cluster.join(TASK)).unwrap();
    std::fs::write(cluster.join(TASK).join(ACCESS), line).unwrap();
    with_state("corrupt-state", "task.json", b"{oops");
    let future = format!(
        r#"{{"version":99,"cluster":"{}","task_id":"future-state"}}"#,
        s.rig.cluster
    );
    with_state("future-state", "task.json", future.as_bytes());
    let other = format!(
        r#"{{"version":2,"cluster":"{}","task_id":"someone-else"}}"#,
        s.rig.cluster
    );
    with_state("copied-in", "task.json", other.as_bytes());
    with_state("garbled-owner", "owner.json", b"}{");
    // Ten thousand directories of tasks that wrote nothing.
    for i in 0..10_000 {
        std::fs::create_dir_all(root(&s).join("idle").join(format!("t{i:05}"))).unwrap();
    }
    let out = sweeper(&s, &[]).output().expect("sweeper");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "failed directories must fail the run\n{log}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let got: Vec<Option<u64>> = ["dirs", "failed", "swept", "empty"]
        .iter()
        .map(|k| report[k].as_u64())
        .collect();
    assert_eq!(
        got,
        [Some(10_005), Some(3), Some(2), Some(10_000)],
        "{report}"
    );
    for bad in ["corrupt-state", "future-state", "copied-in"] {
        let named = log
            .lines()
            .filter(|l| l.contains("cannot sweep the directory") && l.contains(bad))
            .count();
        assert_eq!(named, 1, "{bad}: one line naming it\n{log}");
        assert_eq!(std::fs::read(cluster.join(bad).join(ACCESS)).unwrap(), line);
    }
    assert!(log.contains("cannot read the owner record"), "{log}");
    let keys = segment_keys(&s).await;
    let shipped = |task: &str| {
        keys.iter()
            .any(|k| k.starts_with(&format!("logs/{}/{task}/", s.rig.cluster)))
    };
    assert!(shipped(TASK) && shipped("garbled-owner"), "{keys:?}");
    assert!(
        !shipped("corrupt-state")
            && !shipped("future-state")
            && !shipped("copied-in")
            && !shipped("someone-else"),
        "{keys:?}"
    );
    // The idle directories are left as they were.
    assert!(!root(&s).join("idle/t00000/.logdrop").exists());
}
