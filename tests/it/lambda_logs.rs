//! Lambda's logging conventions on the real binary: `AWS_LAMBDA_LOG_LEVEL`
//! and `AWS_LAMBDA_LOG_FORMAT` honoured, the message at the top level of each
//! JSON line, the request id on every line of an invocation.

use crate::moto::moto;
use crate::rig::*;
use serde_json::Value;
use std::process::Command;

/// stderr of `shipper invoke` on a fresh chunk, with these variables.
async fn invoke_logs(name: &str, envs: &[(&str, &str)]) -> (String, String) {
    let rig = Rig::new(name).await;
    let file = "catalina.2026-11-24.log";
    let content = corpus(file);
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let event = dir.path().join("event.json");
    std::fs::write(&event, rig.s3_event(std::slice::from_ref(&key)).to_string())
        .expect("write event");
    let out = Command::new(env!("CARGO_BIN_EXE_shipper"))
        .args(["invoke", "--event"])
        .arg(&event)
        .env_clear()
        .envs(moto().env())
        .env("LOGDROP_LOG_GROUP", &rig.group)
        .envs(envs.iter().copied())
        .output()
        .expect("run shipper");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (stderr, key)
}

#[tokio::test]
async fn json_lines_follow_lambda_conventions() {
    // Lambda's level wins over RUST_LOG.
    let (stderr, key) = invoke_logs(
        "logs-json",
        &[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    // The EMF metrics line is a metric record, not a log line (tests/it/metrics.rs checks it).
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v.get("_aws").is_none())
        .collect();
    assert!(!lines.is_empty());
    let request_id = lines[0]["span"]["requestId"]
        .as_str()
        .expect("requestId")
        .to_string();
    assert!(request_id.starts_with("local-"), "{request_id}");
    for line in &lines {
        assert!(line["message"].is_string(), "message at the top: {line}");
        assert!(
            ["INFO", "WARN", "ERROR"].contains(&line["level"].as_str().unwrap_or("")),
            "{line}"
        );
        assert_eq!(line["span"]["requestId"], request_id.as_str(), "{line}");
    }
    let shipped: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "object shipped")
        .collect();
    assert_eq!(shipped.len(), 1, "{stderr}");
    assert_eq!(shipped[0]["key"], key.as_str());
    assert_eq!(shipped[0]["stream"], rig_stream("catalina"));
}

fn rig_stream(stem: &str) -> String {
    format!("{stem}/{TASK}")
}

#[tokio::test]
async fn text_format_and_level_are_honoured() {
    let (stderr, _) = invoke_logs("logs-text", &[("AWS_LAMBDA_LOG_FORMAT", "Text")]).await;
    assert!(stderr.contains("object shipped"), "{stderr}");
    assert!(
        stderr
            .lines()
            // EMF lines stay JSON in either format: Lambda extracts metrics from them.
            .filter(|l| !l.contains("\"_aws\""))
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "{stderr}"
    );
    let (stderr, _) = invoke_logs(
        "logs-quiet",
        &[("AWS_LAMBDA_LOG_LEVEL", "ERROR"), ("RUST_LOG", "info")],
    )
    .await;
    // Only the metrics line, which a log level does not silence.
    let logs: Vec<&str> = stderr.lines().filter(|l| !l.contains("\"_aws\"")).collect();
    assert!(
        logs.is_empty(),
        "a successful invocation at ERROR logs nothing: {stderr}"
    );
}
