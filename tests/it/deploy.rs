//! The deploy, proven locally (issue 17): the stacks created in moto's
//! CloudFormation and wired as documented (scripts/check-stack.py), and every
//! AWS request the real binaries (sidecar, shipper, and the EFS drops'
//! sweeper) make allowed by exactly the policies the template gives them,
//! evaluated by a real IAM policy evaluator (scripts/check-permissions.py). Each script runs its own moto server, so
//! what it records is only its own scenario's traffic. A broken copy of the
//! template shows that each check fails when it should.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "run `make venv` (make test does it)");
    python
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check_stack(template: &Path) -> Output {
    Command::new(python())
        .arg(root().join("scripts/check-stack.py"))
        .arg(template)
        .output()
        .expect("run check-stack.py")
}

fn check_permissions(template: &Path, report: Option<&Path>) -> Output {
    assert!(
        root()
            .join("node_modules/@cloud-copilot/iam-simulate")
            .exists(),
        "run `make node` (make test does it)"
    );
    let mut cmd = Command::new(python());
    cmd.arg(root().join("scripts/check-permissions.py"))
        .args(["--shipper", env!("CARGO_BIN_EXE_shipper")])
        .args(["--sidecar", env!("CARGO_BIN_EXE_sidecar")])
        .args(["--sweeper", env!("CARGO_BIN_EXE_sweeper")])
        .arg("--template")
        .arg(template);
    if let Some(report) = report {
        cmd.arg("--report").arg(report);
    }
    cmd.output().expect("run check-permissions.py")
}

/// A copy of template.yaml with `from` (which must occur once) replaced by `to`.
fn broken(dir: &Path, from: &str, to: &str) -> PathBuf {
    broken_in(dir, &[(from, to)])
}

/// A copy of template.yaml with each `from` (which must occur once) replaced by its `to`.
fn broken_in(dir: &Path, changes: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(root().join("template.yaml")).expect("read template");
    for (from, to) in changes {
        assert_eq!(text.matches(from).count(), 1, "{from:?} in template.yaml");
        text = text.replace(from, to);
    }
    let path = dir.join("template.yaml");
    std::fs::write(&path, text).expect("write copy");
    path
}

#[test]
fn every_stack_combination_is_created_and_wired() {
    let out = check_stack(&root().join("template.yaml"));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for store in ["dynamodb", "s3"] {
        for trigger in ["S3", "EventBridge"] {
            for existing in ["no", "yes"] {
                let want = format!(
                    "CheckpointStore={store} Trigger={trigger} ExistingLogGroup={existing} "
                );
                assert!(all.contains(&want), "{want:?} not checked:\n{all}");
            }
        }
    }
    for stack in [
        "tomcat-task (examples/ecs-task.yaml",
        "logdrop-efs with the sweeper",
        "tomcat-task-efs (examples/ecs-task-efs.yaml",
    ] {
        assert!(
            all.contains(&format!("CREATE_COMPLETE and wired: {stack}")),
            "{stack:?} not checked:\n{all}"
        );
    }
    assert_eq!(
        all.matches("CREATE_COMPLETE and wired").count(),
        11,
        "{all}"
    );
}

#[test]
fn a_queue_policy_naming_another_bucket_fails_the_stack_check() {
    // S3 would refuse the notification (it checks that it may send); moto
    // does not, so the script compares the statement with the bucket.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = broken(
        dir.path(),
        "aws:SourceArn: !Sub\n                    - \"arn:${AWS::Partition}:s3:::logdrop-",
        "aws:SourceArn: !Sub\n                    - \"arn:${AWS::Partition}:s3:::logdrops-",
    );
    let out = check_stack(&path);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("queue policy senders"), "{all}");
}

#[test]
fn every_request_of_the_binaries_is_allowed_and_nothing_else() {
    let report = root().join("target/permissions-report.txt");
    let out = check_permissions(&root().join("template.yaml"), Some(&report));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    // Both checkpoint stores and both principals were exercised, each
    // recorded request kind allowed by the statement meant for it.
    for (who, action, on, by) in [
        (
            "sidecar",
            "s3:PutObject",
            "logs/",
            "SidecarPolicy/UploadChunks",
        ),
        (
            "shipper",
            "s3:GetObject",
            "logs/",
            "ShipperRole/shipper/ReadChunks",
        ),
        (
            "shipper",
            "dynamodb:GetItem",
            "table",
            "ShipperRole/shipper/TableCheckpoints",
        ),
        (
            "shipper",
            "dynamodb:PutItem",
            "table",
            "ShipperRole/shipper/TableCheckpoints",
        ),
        (
            "shipper",
            "s3:PutObject",
            "checkpoints/",
            "ShipperRole/shipper/BucketCheckpoints",
        ),
        (
            "shipper",
            "logs:PutLogEvents",
            "file log group",
            "ShipperRole/shipper/WriteLogStreams",
        ),
        (
            "shipper",
            "sqs:DeleteMessage",
            "queue",
            "ShipperRole/shipper/ConsumeQueue",
        ),
        // The EFS stack: the sidecar on EFS and the real sweeper's uploads.
        (
            "sweeper",
            "s3:PutObject",
            "logs/",
            "SweeperRole/sweeper/UploadSegments",
        ),
    ] {
        let found = all.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.first() == Some(&"recorded")
                && words.get(2) == Some(&who)
                && words.get(3) == Some(&action)
                && l.contains(&format!(" {on} "))
                && l.ends_with(by)
        });
        assert!(
            found,
            "no recorded {who} {action} on {on} allowed by {by}:\n{all}"
        );
    }
    assert!(
        all.contains(
            "sidecar s3:PutObject over plain HTTP: ExplicitlyDenied by LogBucketPolicy/TlsOnly"
        ),
        "{all}"
    );
    // What the sweeper must never do was evaluated, and denied.
    for why in [
        "sweeper reads a segment",
        "sweeper reads a checkpoint",
        "sweeper writes another bucket",
        "sweeper mounts EFS without the access point",
        "sweeper s3:PutObject over plain HTTP",
    ] {
        assert!(
            all.lines()
                .any(|l| l.trim_start().starts_with("denied") && l.contains(&format!("{why}: "))),
            "{why:?} not denied:\n{all}"
        );
    }
    assert!(!all.contains("ALLOWED but"), "{all}");
}

#[test]
fn a_missing_permission_or_a_too_broad_one_fails_the_permission_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The shipper's checkpoint write, no longer granted; the sweeper granted
    // reading segments instead of writing them.
    let path = broken_in(
        dir.path(),
        &[
            (
                "Action: [dynamodb:GetItem, dynamodb:PutItem]",
                "Action: [dynamodb:GetItem]",
            ),
            (
                "- Sid: UploadSegments\n                Effect: Allow\n                Action: s3:PutObject",
                "- Sid: UploadSegments\n                Effect: Allow\n                Action: s3:GetObject",
            ),
        ],
    );
    let out = check_permissions(&path, None);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("DENIED but needed (recorded: POST / DynamoDB_20120810.PutItem)"),
        "{all}"
    );
    assert!(
        all.lines().any(
            |l| l.contains("efs-sweeper: DENIED but needed (recorded: PUT /")
                && l.contains(" sweeper s3:PutObject ")
        ),
        "{all}"
    );
    assert!(
        all.contains("efs-sweeper: ALLOWED but must never be (sweeper reads a segment)"),
        "{all}"
    );
    // The sidecar allowed to read what it uploads (and every checkpoint).
    let path = broken(
        dir.path(),
        "            Action: s3:PutObject\n            Resource: !Sub \"${LogBucket.Arn}/logs/*\"",
        "            Action: [s3:PutObject, s3:GetObject]\n            Resource: !Sub \"${LogBucket.Arn}/*\"",
    );
    let out = check_permissions(&path, None);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("ALLOWED but must never be (sidecar reads a checkpoint)"),
        "{all}"
    );
    assert!(
        all.contains("ALLOWED but must never be (sidecar reads another task's object)"),
        "{all}"
    );
}
