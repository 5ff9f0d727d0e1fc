//! One set of cases for every adapter of the `CheckpointStore` port: the S3
//! store and the DynamoDB store must give the same answers to the same calls,
//! so the shipper's exactness never depends on which one is configured.

use crate::dynamodb::table;
use crate::rig::*;
use logdrop::core::checkpoint::Checkpoint;
use logdrop::core::keys::{ChunkKey, TaskRef};
use logdrop::core::ranges::RangeSet;
use logdrop::ports::{CheckpointStore, PortError, Precondition};
use logdrop::shipper::Shipper;
use logdrop::shipper::checkpoint::Checkpointer;
use std::sync::Arc;

/// moto checks a write's condition and then writes, without a lock, so two
/// writers racing through its threads can both "win"; AWS does both in one
/// step. Letting one `save` at a time reach the emulator stands in for that
/// atomicity, while the writers' read-modify-write cycles still interleave
/// freely (loads are not held back), which is what these tests are about.
#[derive(Clone)]
pub struct Atomic<C> {
    inner: C,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<C> Atomic<C> {
    pub fn new(inner: C) -> Self {
        Atomic {
            inner,
            gate: Arc::default(),
        }
    }
}

impl<C: CheckpointStore> CheckpointStore for Atomic<C> {
    async fn load(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>, PortError> {
        self.inner.load(bucket, key).await
    }

    async fn save(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        cond: Precondition,
    ) -> Result<String, PortError> {
        let _one_at_a_time = self.gate.lock().await;
        self.inner.save(bucket, key, body, cond).await
    }
}

fn conflict<T: std::fmt::Debug>(r: Result<T, PortError>, what: &str) {
    assert!(
        matches!(r, Err(PortError::Conflict(_))),
        "{what}: want a conflict, got {r:?}"
    );
}

/// Create-only, replace-only-this-version, and keys kept apart.
async fn create_replace_conflict<C: CheckpointStore>(store: &C, bucket: &str) {
    let key = "checkpoints/c/t.json";
    assert_eq!(store.load(bucket, key).await.expect("load missing"), None);

    let v1 = store
        .save(bucket, key, b"one".to_vec(), Precondition::Absent)
        .await
        .expect("create");
    assert_eq!(
        store.load(bucket, key).await.expect("load"),
        Some((b"one".to_vec(), v1.clone()))
    );
    conflict(
        store
            .save(bucket, key, b"again".to_vec(), Precondition::Absent)
            .await,
        "create over an existing document",
    );

    let v2 = store
        .save(
            bucket,
            key,
            b"two".to_vec(),
            Precondition::Matches(v1.clone()),
        )
        .await
        .expect("replace the version read");
    assert_ne!(v1, v2, "every write gets a new version");
    conflict(
        store
            .save(bucket, key, b"stale".to_vec(), Precondition::Matches(v1))
            .await,
        "replace of a version no longer current",
    );
    // Neither refused write changed anything.
    assert_eq!(
        store.load(bucket, key).await.expect("load"),
        Some((b"two".to_vec(), v2.clone()))
    );

    // Another key (of the same bucket) is a separate document.
    let other = "checkpoints/c/u.json";
    assert_eq!(store.load(bucket, other).await.expect("load other"), None);
    let v3 = store
        .save(bucket, other, b"three".to_vec(), Precondition::Absent)
        .await
        .expect("create other");
    assert_eq!(
        store.load(bucket, other).await.expect("load other"),
        Some((b"three".to_vec(), v3))
    );
    assert_eq!(
        store.load(bucket, key).await.expect("load"),
        Some((b"two".to_vec(), v2))
    );

    // Bytes that are not UTF-8 come back untouched.
    let body: Vec<u8> = (0..=255u8).collect();
    let bin = "checkpoints/bin.json";
    let a = store
        .save(bucket, bin, body.clone(), Precondition::Absent)
        .await
        .expect("create binary");
    assert_eq!(
        store.load(bucket, bin).await.expect("load binary"),
        Some((body, a))
    );
}

/// Eight writers race to create the same document: exactly one wins.
async fn one_creator_wins<C: CheckpointStore>(store: &C, bucket: &str) {
    let key = "checkpoints/race.json";
    let writes = (0..8u8).map(|i| store.save(bucket, key, vec![i], Precondition::Absent));
    let results = futures::future::join_all(writes).await;
    let won: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for (i, r) in results.iter().enumerate() {
        if i != won[0] {
            assert!(
                matches!(r, Err(PortError::Conflict(_))),
                "writer {i}: {r:?}"
            );
        }
    }
    let (doc, version) = store
        .load(bucket, key)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(doc, vec![won[0] as u8]);
    assert_eq!(Some(&version), results[won[0]].as_ref().ok());
}

/// Separate `Checkpointer`s act like separate invocations of one task: only
/// the store's conditional writes protect them, and no update may be lost.
async fn concurrent_checkpointers_lose_nothing<C: CheckpointStore>(store: &C, bucket: &str) {
    let task = TaskRef {
        cluster: "c".into(),
        task_id: TASK.into(),
    };
    let cp_key = task.checkpoint_key("checkpoints");
    let chunk = ChunkKey::parse(
        &format!("logs/c/{TASK}/f/0/000000000000000-000000000000001.gz"),
        "logs",
    )
    .expect("key");
    let writers: Vec<_> = (0..4)
        .map(|_| {
            // Conflicts are retried; transient store failures are not expected here.
            Checkpointer::new(store, bucket.to_string(), cp_key.clone(), task.clone(), 0)
        })
        .collect();
    let work = writers.iter().enumerate().map(|(i, cp)| {
        let chunk = chunk.clone();
        async move {
            for j in 0..5u64 {
                let at = (i as u64 * 5 + j) * 10;
                cp.update(|doc| {
                    let ranges = RangeSet::from(vec![(at, at + 10)]);
                    doc.record(&chunk, &ranges, None, chrono::Utc::now());
                    ((), true)
                })
                .await
                .expect("update");
            }
        }
    });
    futures::future::join_all(work).await;
    let (bytes, _) = store
        .load(bucket, &cp_key)
        .await
        .expect("load")
        .expect("exists");
    let doc = Checkpoint::decode(&bytes).expect("decodes");
    assert_eq!(
        doc.file(&chunk).expect("file").shipped.ranges(),
        &[(0, 200)]
    );
}

async fn all_cases<C: CheckpointStore + Clone>(store: &C, bucket: &str) {
    create_replace_conflict(store, bucket).await;
    let atomic = Atomic::new(store.clone());
    one_creator_wins(&atomic, bucket).await;
    concurrent_checkpointers_lose_nothing(&atomic, bucket).await;
}

#[tokio::test]
async fn s3_store_conforms() {
    let rig = Rig::new("conform-s3").await;
    all_cases(&rig.s3, &rig.bucket).await;
}

#[tokio::test]
async fn dynamodb_store_conforms() {
    let store = table("conform").await;
    all_cases(&store, "some-bucket").await;
    // The bucket is part of the item's identity: another bucket's document of
    // the same key is separate.
    assert_eq!(
        store
            .load("another-bucket", "checkpoints/c/t.json")
            .await
            .expect("load"),
        None
    );
}

/// One object of one batch: save 1 takes the lease, 2 records the batch, 3
/// completes. Fails save `fail_on` of the first delivery, then redelivers
/// through `store` untouched. Whichever write fails after `PutLogEvents`
/// succeeded, the events must be stored once and the redelivery add nothing
/// (DESIGN.md: "a failed checkpoint write after a successful put is not a window").
async fn failed_write_then_redelivery<C: CheckpointStore + Clone>(
    rig: &Rig,
    store: C,
    fail_on: u64,
) {
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(200 << 10, 5, hours_ago(1));
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let failing = FailingSaves::new(store.clone(), fail_on..=fail_on);
    let first = Shipper::new(rig.s3.clone(), failing, rig.logs.clone(), rig.config(&[]));
    let outcome = first.handle(&event, &inv(&format!("fail{fail_on}"))).await;
    let want = expected_events(file, &content);
    let stored = rig.events(&rig.stream("localhost_access_log")).await;
    assert!(
        stored == want,
        "save {fail_on} failing: stored once ({outcome:?})"
    );
    let again = Shipper::new(rig.s3.clone(), store, rig.logs.clone(), rig.config(&[]))
        .handle(&event, &inv(&format!("again{fail_on}")))
        .await
        .expect("the redelivery succeeds");
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    assert_eq!(
        got.len(),
        want.len(),
        "save {fail_on} failing: the redelivery stored events again ({outcome:?} then {again:?})"
    );
    assert!(got == want);
    assert_eq!(
        again.to_json()["records"][0]["objects"][0]["result"],
        "already_shipped"
    );
}

/// Issue 7 item 9: the batch's ranges wait for the next write (the release).
#[tokio::test]
async fn failed_progress_write_after_a_put_repeats_nothing_s3() {
    let rig = Rig::new("s3-fail2").await;
    failed_write_then_redelivery(&rig, rig.s3.clone(), 2).await;
}

#[tokio::test]
async fn failed_progress_write_after_a_put_repeats_nothing_dynamodb() {
    let rig = Rig::new("ddb-fail2").await;
    failed_write_then_redelivery(&rig, table("fail2").await, 2).await;
}

#[tokio::test]
async fn failed_completion_write_after_a_put_repeats_nothing_s3() {
    let rig = Rig::new("s3-fail3").await;
    failed_write_then_redelivery(&rig, rig.s3.clone(), 3).await;
}

#[tokio::test]
async fn failed_completion_write_after_a_put_repeats_nothing_dynamodb() {
    let rig = Rig::new("ddb-fail3").await;
    failed_write_then_redelivery(&rig, table("fail3").await, 3).await;
}
