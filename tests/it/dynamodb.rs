//! The DynamoDB checkpoint store against moto's DynamoDB: its item layout,
//! limits and errors, and the shipper's exactness when it keeps the
//! checkpoints (the shared create/replace/conflict cases are in
//! `checkpoint_conformance`).

use crate::checkpoint_conformance::Atomic;
use crate::moto::moto;
use crate::rig::*;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use logdrop::aws::checkpoint_store::AnyCheckpointStore;
use logdrop::aws::dynamodb::{DynamoDb, MAX_ITEM_BYTES};
use logdrop::aws::logs::CloudWatchLogs;
use logdrop::aws::s3::S3;
use logdrop::config::Env;
use logdrop::core::checkpoint::Checkpoint;
use logdrop::core::keys::TaskRef;
use logdrop::ports::{CheckpointStore, PortError, Precondition};
use logdrop::shipper::Shipper;
use logdrop::shipper::checkpoint::{CheckpointError, Checkpointer};
use logdrop::shipper::config::CheckpointTable;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn table_config(name: &str) -> CheckpointTable {
    CheckpointTable::from_env(&Env::from_pairs([("LOGDROP_CHECKPOINT_TABLE", name)]))
        .expect("config")
        .expect("a table")
}

/// A fresh table as template.yaml would create it: string key `pk`, on-demand.
pub async fn table(name: &str) -> DynamoDb {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{name}-{n}-{}", std::process::id());
    let store = DynamoDb::new(&moto().sdk_config(), &table_config(&name));
    store
        .client()
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    store
}

async fn raw_item(store: &DynamoDb, pk: &str) -> std::collections::HashMap<String, AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk.into()))
        .send()
        .await
        .expect("get item")
        .item()
        .cloned()
        .expect("item exists")
}

#[tokio::test]
async fn item_layout_and_expiry() {
    let store = table("layout").await;
    let before = chrono::Utc::now().timestamp();
    let version = store
        .save(
            "bkt",
            "checkpoints/c/t.json",
            br#"{"version":1}"#.to_vec(),
            Precondition::Absent,
        )
        .await
        .expect("create");
    let after = chrono::Utc::now().timestamp();
    let item = raw_item(&store, "bkt/checkpoints/c/t.json").await;
    assert_eq!(
        item.get("doc")
            .and_then(|d| d.as_s().ok())
            .map(String::as_str),
        Some(r#"{"version":1}"#)
    );
    assert_eq!(
        item.get("version").and_then(|v| v.as_s().ok()),
        Some(&version)
    );
    let expires: i64 = item
        .get("expires_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .expect("expires_at is a number");
    let ttl = 30 * 86_400;
    assert!(
        (before + ttl..=after + ttl).contains(&expires),
        "expires_at {expires} is not the write time plus 30 days ({before}..={after})"
    );
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["doc", "expires_at", "pk", "version"]);
}

#[tokio::test]
async fn an_oversized_document_is_refused_naming_its_key() {
    let store = table("big").await;
    let key = "checkpoints/c/huge.json";
    let err = store
        .save("bkt", key, vec![b' '; MAX_ITEM_BYTES], Precondition::Absent)
        .await
        .expect_err("over the item limit");
    match &err {
        PortError::Permanent(m) => assert!(
            m.what.contains(key) && m.what.contains("409600-byte limit"),
            "the message names the key and the limit: {m}"
        ),
        other => panic!("want Permanent, got {other:?}"),
    }
    assert_eq!(store.load("bkt", key).await.expect("load"), None);
    // A large document under the limit is stored as it is (moto refuses
    // items over 405,000 bytes, a little under the real 400 KiB).
    let fits = 400_000;
    store
        .save("bkt", key, vec![b' '; fits], Precondition::Absent)
        .await
        .expect("a large document that fits");
    let (doc, _) = store.load("bkt", key).await.expect("load").expect("exists");
    assert_eq!(doc.len(), fits);
}

#[tokio::test]
async fn a_missing_table_is_a_clear_error() {
    let store = DynamoDb::new(&moto().sdk_config(), &table_config("no-such-table"));
    let err = store
        .load("bkt", "checkpoints/c/t.json")
        .await
        .expect_err("no table");
    match &err {
        PortError::NotFound(m) => assert!(
            m.what.contains("no-such-table") && m.what.contains("LOGDROP_CHECKPOINT_TABLE"),
            "{m}"
        ),
        other => panic!("want NotFound, got {other:?}"),
    }
    let err = store
        .save("bkt", "k", b"{}".to_vec(), Precondition::Absent)
        .await
        .expect_err("no table");
    assert!(matches!(err, PortError::NotFound(_)), "{err:?}");
    // Through the checkpointer the error names the document, and it is not
    // retried as if it were a race.
    let task = TaskRef {
        cluster: "c".into(),
        task_id: TASK.into(),
    };
    let cp = Checkpointer::new(&store, "bkt".into(), "checkpoints/c/t.json".into(), task, 0);
    let err = cp
        .update(|_| ((), true))
        .await
        .expect_err("no table to load from");
    assert!(
        matches!(&err, CheckpointError::Store { .. }) && !err.is_retryable(),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-table"), "{err}");
}

#[tokio::test]
async fn the_table_variable_selects_the_store() {
    let sdk = moto().sdk_config();
    let s3 = AnyCheckpointStore::from_env(&Env::from_pairs([]), &sdk).expect("default");
    assert_eq!(s3.describe(), "s3");
    let env = Env::from_pairs([("LOGDROP_CHECKPOINT_TABLE", "cp-table")]);
    let ddb = AnyCheckpointStore::from_env(&env, &sdk).expect("table");
    assert_eq!(ddb.describe(), "dynamodb:cp-table");
    let env = Env::from_pairs([("LOGDROP_CHECKPOINT_TABLE", "bad table")]);
    let err = AnyCheckpointStore::from_env(&env, &sdk)
        .err()
        .expect("a bad name is refused");
    assert_eq!(err.var, "LOGDROP_CHECKPOINT_TABLE");
}

/// Shippers sharing one DynamoDB table, as concurrent invocations do.
fn shippers_on(
    rig: &Rig,
    store: &DynamoDb,
    n: usize,
) -> Vec<Shipper<S3, Atomic<AnyCheckpointStore>, CloudWatchLogs>> {
    let shared = Atomic::new(AnyCheckpointStore::DynamoDb(store.clone()));
    (0..n)
        .map(|_| {
            Shipper::new(
                rig.s3.clone(),
                shared.clone(),
                rig.logs.clone(),
                rig.config(&[]),
            )
        })
        .collect()
}

async fn checkpoint_in(rig: &Rig, store: &DynamoDb) -> Checkpoint {
    let task = TaskRef {
        cluster: rig.cluster.clone(),
        task_id: TASK.into(),
    };
    let (bytes, _) = store
        .load(&rig.bucket, &task.checkpoint_key("checkpoints"))
        .await
        .expect("load")
        .expect("the checkpoint is in the table");
    Checkpoint::decode(&bytes).expect("decodes")
}

#[tokio::test]
async fn same_object_delivered_twice_at_once_lands_once_with_dynamodb() {
    let rig = Rig::new("ddb-twice").await;
    let store = table("twice").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(2 << 20, 11, hours_ago(2));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let shippers = shippers_on(&rig, &store, 3);
    let (a, b) = (&shippers[0], &shippers[1]);
    let (ia, ib) = (inv("ddb-a"), inv("ddb-b"));
    let (ra, rb) = tokio::join!(a.handle(&event, &ia), b.handle(&event, &ib));
    let failed: Vec<_> = [&ra, &rb].into_iter().filter(|r| r.is_err()).collect();
    assert!(failed.len() <= 1, "{ra:?} {rb:?}");
    for f in &failed {
        let e = f.as_ref().unwrap_err();
        assert!(e.to_string().contains("holds a lease"), "{e}");
    }
    let retry = shippers[2]
        .handle(&event, &inv("ddb-retry"))
        .await
        .expect("retry");
    assert_eq!(
        retry.to_json()["records"][0]["objects"][0]["result"],
        "already_shipped"
    );
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    let want = expected_events(file, &content);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "every event exactly once, in order");
    let cp = checkpoint_in(&rig, &store).await;
    let state = &cp.files[file]["0"];
    assert_eq!(state.shipped.ranges(), &[(0, content.len() as u64)]);
    assert!(state.leases.is_empty(), "{:?}", state.leases);
    // Nothing was written to the bucket's checkpoint prefix.
    let listed = rig
        .s3
        .client()
        .list_objects_v2()
        .bucket(&rig.bucket)
        .prefix("checkpoints/")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.key_count(), Some(0));
}

#[tokio::test]
async fn concurrent_invocations_on_chunks_of_one_task_with_dynamodb() {
    let rig = Rig::new("ddb-chunks").await;
    let store = table("chunks").await;
    let file = "catalina.2026-11-24.log";
    let content = corpus(file);
    let mut keys = Vec::new();
    for (a, b) in chunk_bounds(file, &content, 4) {
        keys.push(rig.upload_chunk(file, &content, a, b).await);
    }
    let shippers = shippers_on(&rig, &store, keys.len());
    let events: Vec<_> = keys
        .iter()
        .map(|k| rig.s3_event(std::slice::from_ref(k)))
        .collect();
    let invs: Vec<_> = (0..keys.len()).map(|i| inv(&format!("ddb-{i}"))).collect();
    let runs = shippers
        .iter()
        .zip(&events)
        .zip(&invs)
        .map(|((s, e), i)| s.handle(e, i));
    for r in futures::future::join_all(runs).await {
        r.expect("each chunk ships");
    }
    let cp = checkpoint_in(&rig, &store).await;
    assert_eq!(
        cp.files[file]["0"].shipped.ranges(),
        &[(0, content.len() as u64)]
    );
    // Chunks shipped at the same time may interleave equal timestamps.
    let mut got = rig.events(&rig.stream("catalina")).await;
    let mut want = expected_events(file, &content);
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// `shipper invoke` (the real binary) with checkpoints in `table`: exit code
/// and stdout. (The caller proves the store was chosen: the checkpoint is in
/// the table and none is in the bucket.)
async fn invoke_with_table(
    rig: &Rig,
    table: &str,
    event: &serde_json::Value,
) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("event.json");
    std::fs::write(&path, event.to_string()).expect("write event");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipper"));
    cmd.args(["invoke", "--event", path.to_str().expect("path")])
        .env_clear()
        .env("LOGDROP_LOG_GROUP", &rig.group)
        .env("LOGDROP_CHECKPOINT_TABLE", table)
        .kill_on_drop(true);
    for (k, v) in moto().env() {
        cmd.env(k, v);
    }
    // A hang guard only: the run takes seconds.
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), cmd.output())
        .await
        .expect("shipper invoke hung")
        .expect("run shipper");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipper_binary_keeps_checkpoints_in_the_table() {
    let rig = Rig::new("ddb-binary").await;
    let store = table("binary").await;
    let files = [
        "localhost_access_log.2026-11-24.txt",
        "catalina.2026-11-24.log",
    ];
    // Two v2 segments, each holding one half of every file.
    let halves: Vec<Vec<(usize, usize)>> = files
        .iter()
        .map(|f| chunk_bounds(f, &corpus(f), 2))
        .collect();
    let mut keys = Vec::new();
    for i in 0..2 {
        let parts: Vec<logdrop::core::segment::PartBody> = files
            .iter()
            .zip(&halves)
            .map(|(f, b)| logdrop::core::segment::PartBody {
                file: f.to_string(),
                generation: 0,
                start: b[i].0 as u64,
                end: b[i].1 as u64,
                gzip: logdrop::generate::gzip(&corpus(f)[b[i].0..b[i].1]),
            })
            .collect();
        let key = logdrop::core::segment::SegmentKey {
            prefix: "logs".into(),
            cluster: rig.cluster.clone(),
            task_id: TASK.into(),
            seq: i as u64,
        }
        .to_string();
        rig.put_raw(&key, logdrop::core::segment::encode(&parts))
            .await;
        keys.push(key);
    }
    let event = rig.s3_event(&keys);
    // The same delivery twice at once, then the trigger's retry of any failure.
    let (a, b) = tokio::join!(
        invoke_with_table(&rig, store.table(), &event),
        invoke_with_table(&rig, store.table(), &event)
    );
    for (code, out) in [&a, &b] {
        assert!(
            *code == Some(0) || out.contains("holds a lease"),
            "{code:?} {out}"
        );
    }
    let (code, out) = invoke_with_table(&rig, store.table(), &event).await;
    assert_eq!(code, Some(0), "{out}");
    for (file, stem) in [(files[0], "localhost_access_log"), (files[1], "catalina")] {
        let mut got = rig.events(&rig.stream(stem)).await;
        let mut want = expected_events(file, &corpus(file));
        assert_eq!(got.len(), want.len(), "{file}");
        // Racing invocations may interleave equal timestamps at part edges.
        got.sort();
        want.sort();
        assert!(got == want, "{file}: every event exactly once");
    }
    let cp = checkpoint_in(&rig, &store).await;
    for file in files {
        let state = &cp.files[file]["0"];
        assert_eq!(state.shipped.ranges(), &[(0, corpus(file).len() as u64)]);
        assert!(state.leases.is_empty(), "{:?}", state.leases);
    }
    let listed = rig
        .s3
        .client()
        .list_objects_v2()
        .bucket(&rig.bucket)
        .prefix("checkpoints/")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.key_count(), Some(0), "no checkpoint in S3");
}
