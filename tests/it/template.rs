//! The project's own template checks (scripts/check-template.py, run by
//! `make lint`): the shipped templates pass, and each check catches a copy
//! broken in the way it exists to catch.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (exit code, stderr) of the check on `path`.
fn check(path: &Path) -> (Option<i32>, String) {
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "run `make venv` (make test does it)");
    let out = Command::new(python)
        .arg(root().join("scripts/check-template.py"))
        .arg(path)
        .output()
        .expect("run check-template.py");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of `file` with `from` replaced by `to` (which must occur exactly once).
fn broken(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join(file)).expect("read template");
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {file}");
    let name = Path::new(file).file_name().expect("file name");
    let path = dir.join(name);
    std::fs::write(&path, text.replace(from, to)).expect("write copy");
    path
}

#[test]
fn shipped_templates_pass() {
    for file in [
        "template.yaml",
        "examples/ecs-task.yaml",
        "examples/ecs-task-definition.json",
    ] {
        let (code, stderr) = check(&root().join(file));
        assert_eq!(code, Some(0), "{file}: {stderr}");
        assert_eq!(stderr, "", "{file}");
    }
}

#[test]
fn each_check_fails_on_a_broken_copy() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "template.yaml",
            "Resource: !GetAtt LogBucket.Arn\n",
            "Resource: \"*\"\n",
            "wildcard-resource: ShipperRole.Policies[shipper]: s3:ListBucket on Resource \"*\"",
        ),
        (
            "template.yaml",
            "      # Instead of SAM's managed policies",
            "      ManagedPolicyArns: [arn:aws:iam::aws:policy/AmazonS3FullAccess]\n      # Instead of SAM's managed policies",
            "full-access: ShipperRole: managed policy arn:aws:iam::aws:policy/AmazonS3FullAccess",
        ),
        (
            "template.yaml",
            "Action: [logs:CreateLogStream, logs:PutLogEvents]\n                Resource:\n                  - !Sub \"arn",
            "Action: [\"logs:*\"]\n                Resource:\n                  - !Sub \"arn",
            "full-access: ShipperRole.Policies[shipper]: action logs:*",
        ),
        (
            "template.yaml",
            "      Role: !GetAtt ShipperRole.Arn\n",
            "",
            "sam-policies: ShipperFunction",
        ),
        (
            "template.yaml",
            "aws:SecureTransport: \"false\"\n\n  ChunkQueue:",
            "aws:SecureTransport: \"true\"\n\n  ChunkQueue:",
            "tls-only: LogBucket",
        ),
        (
            "template.yaml",
            "MinValue: 17\n",
            "MinValue: 7\n",
            "chunk-expiry: chunks may expire after 7.0 days, before the queues' retention plus 3 days (17 days)",
        ),
        (
            "template.yaml",
            "MessageRetentionPeriod: 345600\n",
            "MessageRetentionPeriod: 1209600\n      # 14 days in the main queue as well\n",
            "",
        ),
        (
            "template.yaml",
            "MinValue: 90\n    Description: Checkpoints",
            "MinValue: 30\n    Description: Checkpoints",
            "checkpoint-expiry: checkpoints may expire after 30.0 days, before chunks (90.0 days)",
        ),
        (
            "examples/ecs-task.yaml",
            "ManagedPolicyArns:\n",
            "ManagedPolicyArns:\n        - arn:aws:iam::aws:policy/CloudWatchFullAccess\n",
            "full-access: TaskRole: managed policy arn:aws:iam::aws:policy/CloudWatchFullAccess",
        ),
        (
            "examples/ecs-task.yaml",
            "StopTimeout: 30\n",
            "StopTimeout: 29\n",
            "stop-timeout: TaskDefinition.logdrop: stopTimeout 29 for a shutdown grace of 25s",
        ),
        (
            "examples/ecs-task.yaml",
            "MemoryReservation: 16\n",
            "MemoryReservation: \"16\"\n",
            "ecs-model: TaskDefinition: Invalid type for parameter containerDefinitions[1].memoryReservation",
        ),
        (
            "examples/ecs-task.yaml",
            "ReadonlyRootFilesystem: true\n",
            "ReadOnlyRootFilesystem: true\n",
            "ecs-model: TaskDefinition: Unknown parameter in containerDefinitions[1]: \"readOnlyRootFilesystem\"",
        ),
        (
            "examples/ecs-task-definition.json",
            "\"stopTimeout\": 30",
            "\"stopTimeout\": 10",
            "stop-timeout: task.logdrop: stopTimeout 10",
        ),
        (
            "examples/ecs-task-definition.json",
            "\"memoryReservation\": 16",
            "\"memoryReservation\": \"16\"",
            "ecs-model: Invalid type for parameter containerDefinitions[1].memoryReservation",
        ),
    ];
    for (file, from, to, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (code, stderr) = check(&broken(dir.path(), file, from, to));
        if want.is_empty() {
            // Both queues at 14 days still fit the 17-day minimum: not an error.
            assert_eq!(code, Some(0), "{file} with {to:?}: {stderr}");
            continue;
        }
        assert_eq!(code, Some(1), "{file} with {to:?} passed: {stderr}");
        assert!(stderr.contains(want), "{file}: want {want:?} in\n{stderr}");
    }
}

#[test]
fn chunks_must_outlive_a_longer_dead_letter_retention() {
    // The DLQ kept at the maximum retention (14 days) and chunks at 14 days:
    // a redrive on day 14 would find nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = broken(
        dir.path(),
        "template.yaml",
        "    MinValue: 17\n",
        "    MinValue: 14\n",
    );
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("chunk-expiry"), "{stderr}");
}
