//! `shipper invoke` keeps its memory flat on hostile objects: a huge chunk
//! without a newline, one short line repeated, both compressing a
//! thousandfold. CloudWatch Logs is answered by the proxy (the emulator could
//! not take the volume); S3 is the emulator.

use crate::faults::{Fault, FaultProxy, Rule};
use crate::moto::moto;
use crate::rig::*;
use std::io::Write;

/// Peak RSS allowed for `shipper invoke` (the bound).
const PEAK_LIMIT_KIB: i64 = 64 * 1024;
/// Uncompressed size of each hostile object (`LOGDROP_TEST_HOSTILE_MIB` to change).
fn object_bytes() -> usize {
    std::env::var("LOGDROP_TEST_HOSTILE_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(64)
        << 20
}

/// Gzip (level 1, as the sidecar writes) of `unit` repeated to `len` bytes.
fn gzip_repeated(unit: &[u8], len: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let block: Vec<u8> = unit
        .iter()
        .copied()
        .cycle()
        .take(64 * 1024 - (64 * 1024) % unit.len())
        .collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        gz.write_all(&block[..n]).expect("gzip");
        left -= n;
    }
    gz.finish().expect("gzip")
}

/// Runs `shipper invoke` to the end; returns its exit code, peak RSS in KiB and stdout.
///
/// The peak is measured by `/usr/bin/time` where it exists: a child of the
/// test process would count the test's own memory, which its fork shares
/// before the exec. Elsewhere the child's `VmHWM` is read until it exits
/// (then a peak in its last milliseconds could go unseen).
fn invoke_measured(endpoint: &str, group: &str, event: &serde_json::Value) -> (i32, i64, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("event.json");
    std::fs::write(&path, event.to_string()).expect("write event");
    let timed = std::path::Path::new("/usr/bin/time").exists();
    // `LOGDROP_TEST_SHIPPER_BIN=target/release/shipper` measures the release build.
    let bin = std::env::var("LOGDROP_TEST_SHIPPER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shipper").to_string());
    let peak_file = dir.path().join("peak");
    let mut cmd = if timed {
        let mut c = std::process::Command::new("/usr/bin/time");
        c.args([
            "-f",
            "%M",
            "-o",
            peak_file.to_str().expect("path"),
            env!("CARGO_BIN_EXE_shipper"),
        ]);
        c
    } else {
        std::process::Command::new(&bin)
    };
    cmd.args(["invoke", "--event", path.to_str().expect("path")])
        .env_clear()
        .env("LOGDROP_LOG_GROUP", group)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in moto().env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint);
    let child = cmd.spawn().expect("spawn shipper");
    let pid = child.id();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = crate::sidecar_rig::peak_rss_kib(pid) {
            peak = peak.max(kib);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        peak
    });
    let out = child.wait_with_output().expect("wait for shipper");
    let polled = watcher.join().unwrap_or(0) as i64;
    let peak = if timed {
        std::fs::read_to_string(&peak_file)
            .ok()
            .and_then(|t| t.trim().lines().last()?.trim().parse().ok())
            .expect("peak from /usr/bin/time")
    } else {
        polled
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.code().unwrap_or(-1), peak, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_on_hostile_objects() {
    let rig = Rig::new("hostile").await;
    let line = b"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /health HTTP/1.1\" 200 2\n";
    let object_bytes = object_bytes();
    let objects = [
        ("one-line.2026-11-24.log", gzip_repeated(b"x", object_bytes)),
        (
            "localhost_access_log.2026-11-24.txt",
            gzip_repeated(line, object_bytes - object_bytes % line.len()),
        ),
    ];
    let rule: Rule = Box::new(|req, _| match req.target {
        Some(_) => Fault::Accept,
        None => Fault::Pass,
    });
    let proxy = FaultProxy::start(&moto().endpoint, rule).await;
    for (file, gz) in objects {
        let len = if file.starts_with("one-line") {
            object_bytes
        } else {
            object_bytes - object_bytes % line.len()
        };
        let key = rig.key(file, 0, len as u64).to_string();
        rig.put_raw(&key, gz).await;
        let (endpoint, group, event) = (
            proxy.endpoint.clone(),
            rig.group.clone(),
            rig.s3_event(&[key]),
        );
        let (code, peak_kib, stdout) =
            tokio::task::spawn_blocking(move || invoke_measured(&endpoint, &group, &event))
                .await
                .expect("join");
        eprintln!("{file}: {len} bytes, peak RSS {} KiB", peak_kib);
        assert_eq!(code, 0, "{file}: {stdout}");
        assert!(stdout.contains("\"shipped\""), "{stdout}");
        assert!(
            peak_kib <= PEAK_LIMIT_KIB,
            "{file}: peak RSS {peak_kib} KiB"
        );
    }
}

/// The same hostile bodies as the two parts of one v2 segment: parts are
/// decoded one at a time, so the peak is that of one object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_on_a_hostile_segment() {
    let rig = Rig::new("hostile-seg").await;
    let line = b"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /health HTTP/1.1\" 200 2\n";
    let n = object_bytes();
    let access = n - n % line.len();
    let parts = [
        ("one-line.2026-11-24.log", gzip_repeated(b"x", n), n),
        (
            "localhost_access_log.2026-11-24.txt",
            gzip_repeated(line, access),
            access,
        ),
    ]
    .map(|(file, gzip, len)| logdrop::core::segment::PartBody {
        file: file.into(),
        generation: 0,
        start: 0,
        end: len as u64,
        gzip,
    });
    let key = logdrop::core::segment::SegmentKey {
        prefix: "logs".into(),
        cluster: rig.cluster.clone(),
        task_id: TASK.into(),
        seq: 0,
    }
    .to_string();
    rig.put_raw(&key, logdrop::core::segment::encode(&parts))
        .await;
    let rule: Rule = Box::new(|req, _| match req.target {
        Some(_) => Fault::Accept,
        None => Fault::Pass,
    });
    let proxy = FaultProxy::start(&moto().endpoint, rule).await;
    let (endpoint, group, event) = (
        proxy.endpoint.clone(),
        rig.group.clone(),
        rig.s3_event(&[key]),
    );
    let (code, peak_kib, stdout) =
        tokio::task::spawn_blocking(move || invoke_measured(&endpoint, &group, &event))
            .await
            .expect("join");
    eprintln!("segment of two {n}-byte parts: peak RSS {peak_kib} KiB");
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("\"shipped\""), "{stdout}");
    assert!(peak_kib <= PEAK_LIMIT_KIB, "peak RSS {peak_kib} KiB");
}
