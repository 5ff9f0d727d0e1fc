//! The metrics lines (EMF) of the real binaries: valid against the
//! specification's schema (tests/fixtures/emf-schema.json, plus the rules a
//! schema cannot state), and exact in a known scenario.

use crate::moto::moto;
use crate::rig::{Rig, TASK};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The EMF lines among a binary's output lines.
fn emf_lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

/// Validates each line with the venv's `jsonschema` against the schema,
/// then the references: every dimension and metric named is a member of
/// the root, dimensions strings, metrics numbers or at most 100 numbers.
/// Returns the problems found (empty: valid).
fn emf_problems(lines: &[Value]) -> String {
    const CHECK: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
for n, text in enumerate(open(sys.argv[2])):
    doc = json.loads(text)
    for e in jsonschema.Draft202012Validator(schema).iter_errors(doc):
        print(f"line {n}: {e.message}")
    for d in doc.get("_aws", {}).get("CloudWatchMetrics", []):
        for name in [k for s in d.get("Dimensions", []) for k in s]:
            if not isinstance(doc.get(name), str):
                print(f"line {n}: dimension {name} is not a string member")
        for m in d.get("Metrics", []):
            v = doc.get(m.get("Name"))
            ok = isinstance(v, (int, float)) or (isinstance(v, list) and 0 < len(v) <= 100
                                                   and all(isinstance(x, (int, float)) for x in v))
            if not ok or isinstance(v, bool):
                print(f"line {n}: metric {m.get('Name')} is not a number or up to 100 numbers")
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "run `make venv` (make test does it)");
    let out = Command::new(python)
        .args(["-c", CHECK])
        .arg(root().join("tests/fixtures/emf-schema.json"))
        .arg(&file)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_schema_check_catches_broken_lines() {
    let good = json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "logdrop",
        "Dimensions": [["Function"]], "Metrics": [{"Name": "A", "Unit": "Count"}]}]},
        "Function": "f", "A": 1});
    assert_eq!(emf_problems(std::slice::from_ref(&good)), "");
    let mut broken = Vec::new();
    for (path, value) in [
        ("/_aws/Timestamp", json!("now")),
        ("/_aws/CloudWatchMetrics/0/Metrics/0/Unit", json!("Parsecs")),
        ("/Function", json!(7)),
        ("/A", json!((0..101).collect::<Vec<_>>())),
    ] {
        let mut v = good.clone();
        *v.pointer_mut(path).unwrap() = value;
        broken.push(v);
    }
    let mut no_target = good.clone();
    no_target.as_object_mut().unwrap().remove("A");
    broken.push(no_target);
    let problems = emf_problems(&broken);
    for n in 0..broken.len() {
        assert!(
            problems.contains(&format!("line {n}:")),
            "line {n} passed:\n{problems}"
        );
    }
}

fn shipper(envs: &[(&str, &str)], event: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shipper"));
    cmd.args(["invoke", "--event"])
        .arg(event)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in moto().env() {
        cmd.env(k, v);
    }
    cmd.envs(envs.iter().copied());
    cmd.output().expect("run shipper")
}

/// `n` access-log lines stamped `ago` seconds before now.
fn access_lines(from: usize, n: usize, ago: i64) -> Vec<u8> {
    let t = chrono::Utc::now() - chrono::Duration::seconds(ago);
    let stamp = t.format("%d/%b/%Y:%H:%M:%S +0000");
    (from..from + n)
        .map(|i| format!("10.0.0.7 - - [{stamp}] \"GET /m/{i} HTTP/1.1\" 200 5\n"))
        .collect::<String>()
        .into_bytes()
}

fn metric(line: &Value, name: &str) -> Value {
    line.get(name).cloned().unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_shipper_reports_exact_counts_per_invocation() {
    let rig = Rig::new("metrics").await;
    let file = "localhost_access_log.2026-12-03.txt";
    let content = access_lines(0, 7, 120);
    let five = access_lines(0, 5, 120).len();
    let a = rig.upload_chunk(file, &content, 0, five).await;
    let corrupt = rig.key("catalina.2026-12-03.log", 0, 10).to_string();
    rig.put_raw(&corrupt, b"not gzip at all".to_vec()).await;
    let missing = rig.key("localhost.2026-12-03.log", 0, 10).to_string();
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("e.json");
    let s3_body = |key: &str| rig.s3_event(&[key.to_string()]).to_string();
    let first = rig.sqs_event(&[
        ("m1".into(), s3_body(&a)),
        ("m2".into(), s3_body(&corrupt)),
        ("m3".into(), "not json".into()),
        ("m4".into(), s3_body(&missing)),
    ]);
    std::fs::write(&event, first.to_string()).unwrap();
    let envs = [
        ("LOGDROP_LOG_GROUP", rig.group.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "ship-fn"),
    ];
    let before = chrono::Utc::now().timestamp_millis();
    let out = shipper(&envs, &event);
    let after = chrono::Utc::now().timestamp_millis();
    let lines = emf_lines(&out.stderr);
    assert_eq!(emf_problems(&lines), "");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let summary = &lines[0];
    assert_eq!(summary["Function"], "ship-fn");
    let bytes = access_lines(0, 5, 120).len() - 5; // without the newlines
    let want = [
        ("Records", 4),
        ("RecordsFailed", 2),
        ("EventsShipped", 5),
        ("BytesShipped", bytes as i64),
        ("EventsAlreadyShipped", 0),
        ("ObjectsAlreadyShipped", 0),
        ("ObjectsMissing", 1),
        ("EventsRestamped", 0),
        ("EventsClamped", 0),
        ("LeaseConflicts", 0),
        ("CheckpointRetries", 0),
        ("PutOutcomeUnknown", 0),
    ];
    for (name, n) in want {
        assert_eq!(metric(summary, name), json!(n as f64), "{name}: {summary}");
    }
    // Nothing was read back: the read-back's metrics are left out.
    for name in ["EventsVerified", "EventsResent", "ReadBacks"] {
        assert!(summary.get(name).is_none(), "{name}: {summary}");
    }
    // Every event's lag, in 1 s buckets: written 120 s (to the second) before
    // the run, stored during it.
    let lag = summary["Lag"].as_array().expect("Lag values");
    assert_eq!(lag.len(), 5);
    for v in lag {
        let ms = v.as_f64().unwrap();
        assert!(
            ms >= 119_000.0 && ms <= (after - before) as f64 + 122_000.0,
            "{ms}"
        );
    }
    let kinds: Vec<(Value, Value)> = lines[1..]
        .iter()
        .map(|l| (l["Kind"].clone(), l["RecordsFailed"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("corrupt"), json!(1.0)),
            (json!("unreadable_record"), json!(1.0))
        ]
    );
    for l in &lines[1..] {
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Kind"]])
        );
    }

    // Again, with a chunk overlapping the first: 5 events skipped, 2 new.
    let b = rig.upload_chunk(file, &content, 0, content.len()).await;
    std::fs::write(&event, rig.s3_event(&[a.clone(), b]).to_string()).unwrap();
    let out = shipper(&envs, &event);
    let lines = emf_lines(&out.stderr);
    assert_eq!(emf_problems(&lines), "");
    assert_eq!(lines.len(), 1, "no failure, no kind line: {lines:#?}");
    for (name, n) in [
        ("Records", 2),
        ("RecordsFailed", 0),
        ("EventsShipped", 2),
        ("EventsAlreadyShipped", 5),
        ("ObjectsAlreadyShipped", 1),
        ("ObjectsMissing", 0),
    ] {
        assert_eq!(
            metric(&lines[0], name),
            json!(n as f64),
            "{name}: {}",
            lines[0]
        );
    }
    let stored = rig.events(&format!("localhost_access_log/{TASK}")).await;
    assert_eq!(stored.len(), 7, "every event once");
}

#[tokio::test]
async fn the_sidecar_reports_what_it_uploaded() {
    let rig = Rig::new("metrics-sidecar").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("localhost_access_log.2026-12-03.txt");
    std::fs::write(&log, access_lines(0, 10, 5)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecar"));
    cmd.arg("--once")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in moto().env() {
        cmd.env(k, v);
    }
    let out = cmd
        .env("LOGDROP_BUCKET", &rig.bucket)
        .env("LOGDROP_LOG_DIR", dir.path())
        .env("LOGDROP_CLUSTER", "prod-eu")
        .env("LOGDROP_TASK_ID", TASK)
        .output()
        .expect("run sidecar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines = emf_lines(&out.stdout);
    assert_eq!(emf_problems(&lines), "");
    let last = lines.last().expect("a metrics line");
    assert_eq!(
        last["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Cluster"]])
    );
    assert_eq!(last["Cluster"], "prod-eu");
    let total = |name: &str| -> f64 { lines.iter().map(|l| l[name].as_f64().unwrap_or(0.0)).sum() };
    assert_eq!(total("SegmentsUploaded"), 1.0);
    assert_eq!(total("UploadRetries"), 0.0);
    assert_eq!(total("EarlyFlushes"), 0.0);
    assert_eq!(last["PendingBytes"], json!(0.0));
    assert_eq!(last["OldestPendingAge"], json!(0.0));
    assert_eq!(last["UnreadableFiles"], json!(0.0));
}

/// While bytes wait for their flush, each line says how many and since when:
/// the running sidecar's lines are read as it writes them (on a thread, with
/// a generous deadline that only a broken sidecar reaches), until one shows
/// the file's bytes pending for a second or more; then SIGTERM ships them.
#[tokio::test]
async fn the_sidecar_reports_bytes_waiting_and_their_age() {
    use crate::sidecar_rig::{Running, signal};
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let rig = Rig::new("metrics-pending").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("localhost_access_log.2026-12-03.txt");
    let content = access_lines(0, 10, 5);
    std::fs::write(&log, &content).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecar"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in moto().env() {
        cmd.env(k, v);
    }
    let mut child = Running(
        cmd.env("LOGDROP_BUCKET", &rig.bucket)
            .env("LOGDROP_LOG_DIR", dir.path())
            .env("LOGDROP_CLUSTER", "prod-eu")
            .env("LOGDROP_TASK_ID", TASK)
            .env("LOGDROP_FLUSH_INTERVAL", "1h")
            .env("LOGDROP_POLL_INTERVAL", "100ms")
            .env("LOGDROP_SUMMARY_INTERVAL", "100ms")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run sidecar"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(emf) = emf_lines(line.as_bytes()).pop()
                && tx.send(emf).is_err()
            {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let next = |deadline: Instant| {
        let wait = deadline.saturating_duration_since(Instant::now());
        lines
            .recv_timeout(wait)
            .expect("a metrics line before the deadline")
    };
    let mut seen = vec![next(deadline)];
    while seen.last().unwrap()["OldestPendingAge"]
        .as_f64()
        .unwrap_or(0.0)
        < 1.0
    {
        seen.push(next(deadline));
    }
    let last = seen.last().unwrap();
    assert_eq!(emf_problems(&seen), "");
    assert_eq!(last["PendingBytes"], json!(content.len() as f64));
    assert_eq!(last["SegmentsUploaded"], json!(0.0));
    // SIGTERM: the stop ships them, and its line says nothing waits.
    signal(&child.0, libc::SIGTERM);
    assert!(child.0.wait().expect("wait").success());
    // Every line to the end of its output (the reader ends at end of file).
    let wait = || deadline.saturating_duration_since(Instant::now());
    let after: Vec<Value> = std::iter::from_fn(|| lines.recv_timeout(wait()).ok()).collect();
    let after = after.last().expect("the stop's metrics line");
    assert_eq!(after["PendingBytes"], json!(0.0));
    assert_eq!(after["SegmentsUploaded"], json!(1.0));
}
