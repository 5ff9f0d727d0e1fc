//! `shipper invoke --event FILE`: the real binary on the sample events.

use crate::moto::moto;
use crate::rig::Rig;
use std::path::Path;
use std::process::Command;

fn shipper(envs: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shipper"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in moto().env() {
        cmd.env(k, v);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run shipper")
}

async fn upload_samples(rig: &Rig, bucket: &str) {
    rig.s3
        .client()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("events/objects");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                logdrop::ports::ObjectStore::put(
                    &rig.s3,
                    bucket,
                    &key,
                    std::fs::read(&path).unwrap().into(),
                )
                .await
                .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn invoke_runs_each_sample_event() {
    let rig = Rig::new("cli").await;
    upload_samples(&rig, "logdrop-demo").await;
    let group = ("LOGDROP_LOG_GROUP", rig.group.clone());
    for event in [
        "events/s3-put.json",
        "events/sqs-batch.json",
        "events/eventbridge-object-created.json",
    ] {
        let out = shipper(std::slice::from_ref(&group), &["invoke", "--event", event]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{event}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_str(&stdout).expect("stdout is the JSON response");
        assert!(
            json.get("records").is_some() || json["batchItemFailures"] == serde_json::json!([]),
            "{json}"
        );
    }
    let stream = "localhost_access_log/0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    assert_eq!(rig_events_len(&rig, stream).await, 2000);
    assert_eq!(
        rig_events_len(&rig, "localhost/0f1e2d3c4b5a69788796a5b4c3d2e1f0").await,
        27
    );
    assert_eq!(
        rig_events_len(&rig, "catalina/0f1e2d3c4b5a69788796a5b4c3d2e1f0").await,
        40
    );
}

async fn rig_events_len(rig: &Rig, stream: &str) -> usize {
    rig.events(stream).await.len()
}

#[test]
fn bad_configuration_names_the_variable() {
    let out = shipper(
        &[
            ("LOGDROP_LOG_GROUP", "g".into()),
            ("LOGDROP_TIMEZONE", "Nowhere/Else".into()),
        ],
        &["invoke", "--event", "events/s3-put.json"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOGDROP_TIMEZONE"));
    let out = shipper(&[], &["invoke", "--event", "events/s3-put.json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOGDROP_LOG_GROUP"));
    let out = shipper(&[("LOGDROP_LOG_GROUP", "g".into())], &["bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn failed_record_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("e.json");
    let body = serde_json::json!({"Records": [{"s3": {"bucket": {"name": "no-such-bucket-cli"}, "object": {"key": "logs/c/t/catalina.x.log/0/000000000000000-000000000000010.gz"}}}]});
    std::fs::write(&event, body.to_string()).unwrap();
    let out = shipper(
        &[("LOGDROP_LOG_GROUP", "g".into())],
        &["invoke", "--event", event.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["records"][0]["ok"], false);
}
