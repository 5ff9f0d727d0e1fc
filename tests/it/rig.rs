//! A test's own bucket and log group on the shared moto, with helpers to
//! upload chunks, invoke the shipper and read back what CloudWatch Logs holds.

use crate::moto::moto;
use chrono::{NaiveDate, NaiveDateTime};
use logdrop::aws::{logs::CloudWatchLogs, s3::S3};
use logdrop::config::Env;
use logdrop::core::checkpoint::Checkpoint;
use logdrop::core::keys::{ChunkKey, TaskRef};
use logdrop::ports::ObjectStore;
use logdrop::shipper::{Config, Invocation, Shipper};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};

pub const TASK: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub struct Rig {
    pub s3: S3,
    pub logs: CloudWatchLogs,
    pub bucket: String,
    pub group: String,
    pub cluster: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Rig {
    pub async fn new(name: &str) -> Rig {
        let sdk = moto().sdk_config();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let bucket = format!("{name}-{n}-{}", std::process::id()).replace('_', "-");
        let s3 = S3::new(&sdk);
        s3.client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        Rig {
            s3,
            logs: CloudWatchLogs::new(&sdk),
            group: format!("/test/{bucket}"),
            cluster: format!("c{n}"),
            bucket,
        }
    }

    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![("LOGDROP_LOG_GROUP", self.group.as_str())];
        pairs.extend_from_slice(extra);
        Config::from_env(&Env::from_pairs(pairs)).expect("config")
    }

    pub fn shipper(&self) -> Shipper<S3, S3, CloudWatchLogs> {
        self.shipper_with(&[])
    }

    pub fn shipper_with(&self, extra: &[(&str, &str)]) -> Shipper<S3, S3, CloudWatchLogs> {
        Shipper::new(
            self.s3.clone(),
            self.s3.clone(),
            self.logs.clone(),
            self.config(extra),
        )
    }

    pub fn key(&self, file: &str, start: u64, end: u64) -> ChunkKey {
        ChunkKey {
            prefix: "logs".into(),
            cluster: self.cluster.clone(),
            task_id: TASK.into(),
            file: file.into(),
            generation: 0,
            start,
            end,
        }
    }

    /// Uploads `content[start..end]` of `file` as a v1 chunk; returns its key.
    pub async fn upload_chunk(
        &self,
        file: &str,
        content: &[u8],
        start: usize,
        end: usize,
    ) -> String {
        let key = self.key(file, start as u64, end as u64).to_string();
        self.s3
            .put(
                &self.bucket,
                &key,
                logdrop::generate::gzip(&content[start..end]).into(),
            )
            .await
            .expect("put chunk");
        key
    }

    pub async fn put_raw(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put(&self.bucket, key, body.into())
            .await
            .expect("put raw");
    }

    /// A direct S3 notification, keys form-URL-encoded as S3 sends them.
    pub fn s3_event(&self, keys: &[String]) -> Value {
        let records: Vec<Value> = keys
            .iter()
            .map(|k| json!({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": self.bucket}, "object": {"key": form_encode(k)}}}))
            .collect();
        json!({ "Records": records })
    }

    pub fn eventbridge_event(&self, key: &str) -> Value {
        json!({"version": "0", "id": "eb-1", "detail-type": "Object Created", "source": "aws.s3",
               "detail": {"bucket": {"name": self.bucket}, "object": {"key": key}}})
    }

    pub fn sqs_event(&self, bodies: &[(String, String)]) -> Value {
        let records: Vec<Value> = bodies
            .iter()
            .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs", "attributes": {}, "messageAttributes": {}}))
            .collect();
        json!({ "Records": records })
    }

    /// Every event of a stream, oldest first, as the service returns them.
    pub async fn events(&self, stream: &str) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .logs
                .client()
                .get_log_events()
                .log_group_name(&self.group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(token.clone())
                .send()
                .await;
            let Ok(resp) = resp else { return out };
            let page: Vec<(i64, String)> = resp
                .events()
                .iter()
                .map(|e| {
                    (
                        e.timestamp().unwrap_or_default(),
                        e.message().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            let next = resp.next_forward_token().map(str::to_string);
            if page.is_empty() || next == token {
                return out;
            }
            out.extend(page);
            token = next;
        }
    }

    pub fn stream(&self, file_stem: &str) -> String {
        format!("{file_stem}/{TASK}")
    }

    pub async fn checkpoint(&self) -> Checkpoint {
        let task = TaskRef {
            cluster: self.cluster.clone(),
            task_id: TASK.into(),
        };
        let key = task.checkpoint_key("checkpoints");
        let out = self
            .s3
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("checkpoint exists");
        Checkpoint::decode(&out.body.collect().await.expect("body").to_vec()).expect("decodes")
    }
}

pub fn form_encode(key: &str) -> String {
    key.replace('%', "%25").replace(' ', "+")
}

pub fn inv(id: &str) -> Invocation {
    Invocation {
        request_id: id.into(),
        deadline_ms: chrono::Utc::now().timestamp_millis() + 600_000,
    }
}

pub fn yesterday() -> NaiveDate {
    (chrono::Utc::now() - chrono::Duration::days(1)).date_naive()
}

pub fn hours_ago(h: i64) -> NaiveDateTime {
    (chrono::Utc::now() - chrono::Duration::hours(h)).naive_utc()
}

/// A corpus file with its dates moved to yesterday, so every event is inside
/// the window CloudWatch Logs accepts whenever the tests run.
pub fn corpus(name: &str) -> Vec<u8> {
    let raw = std::fs::read(format!(
        "{}/../shared/corpus/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("corpus file");
    logdrop::generate::rebase_dates(
        &raw,
        NaiveDate::from_ymd_opt(2026, 11, 24).expect("date"),
        yesterday(),
    )
}

/// The events a file must produce, computed here independently of the
/// library: lines, JULI starts found with chrono, `\r` before `\n` dropped,
/// trailing blank lines dropped; then stable-sorted by time, as CloudWatch
/// Logs orders a stream.
pub fn expected_events(file: &str, content: &[u8]) -> Vec<(i64, String)> {
    let text = String::from_utf8(content.to_vec()).expect("fixture is UTF-8");
    let juli = !file.starts_with("localhost_access_log.");
    let mut events: Vec<(i64, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if juli {
            let start = line
                .get(..24)
                .and_then(|t| NaiveDateTime::parse_from_str(t, "%d-%b-%Y %H:%M:%S%.3f").ok());
            match (start, events.last_mut()) {
                (Some(t), _) => events.push((t.and_utc().timestamp_millis(), line.to_string())),
                (None, Some(last)) => {
                    last.1.push('\n');
                    last.1.push_str(line);
                }
                (None, None) if !line.is_empty() => panic!("orphan line in fixture"),
                _ => {}
            }
        } else if !line.is_empty() {
            let (open, close) = (line.find('[').expect("["), line.find(']').expect("]"));
            let t =
                chrono::DateTime::parse_from_str(&line[open + 1..close], "%d/%b/%Y:%H:%M:%S %z")
                    .expect("access time");
            events.push((t.timestamp_millis(), line.to_string()));
        }
    }
    for e in &mut events {
        while e.1.ends_with('\n') {
            e.1.pop();
        }
    }
    events.sort_by_key(|e| e.0);
    events
}

/// Offsets where events start, found independently (see `expected_events`).
pub fn event_starts(file: &str, content: &[u8]) -> Vec<usize> {
    let juli = !file.starts_with("localhost_access_log.");
    let mut starts = Vec::new();
    let mut at = 0;
    for line in content.split(|&b| b == b'\n') {
        let is_start = if juli {
            line.get(..24)
                .and_then(|t| std::str::from_utf8(t).ok())
                .is_some_and(|t| NaiveDateTime::parse_from_str(t, "%d-%b-%Y %H:%M:%S%.3f").is_ok())
        } else {
            !line.is_empty()
        };
        if is_start && at < content.len() {
            starts.push(at);
        }
        at += line.len() + 1;
    }
    starts
}

/// Cuts `content` into about `n` chunks at event boundaries, as the sidecar does.
pub fn chunk_bounds(file: &str, content: &[u8], n: usize) -> Vec<(usize, usize)> {
    let starts = event_starts(file, content);
    let step = starts.len().div_ceil(n).max(1);
    let mut cuts: Vec<usize> = starts.iter().step_by(step).copied().collect();
    cuts[0] = 0;
    cuts.push(content.len());
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

/// A checkpoint store whose listed `save` calls (1-based) fail as transient
/// errors (a throttle would) without writing: the failures between a
/// successful put and its record.
pub struct FailingSaves<C> {
    pub inner: C,
    pub fail: std::ops::RangeInclusive<u64>,
    pub saves: std::sync::atomic::AtomicU64,
}

impl<C> FailingSaves<C> {
    pub fn new(inner: C, fail: std::ops::RangeInclusive<u64>) -> Self {
        FailingSaves {
            inner,
            fail,
            saves: Default::default(),
        }
    }

    /// Fails nothing: counts the saves.
    pub fn counting(inner: C) -> Self {
        // An empty range.
        #[allow(clippy::reversed_empty_ranges)]
        FailingSaves::new(inner, 1..=0)
    }

    pub fn count(&self) -> u64 {
        self.saves.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<C: logdrop::ports::CheckpointStore> logdrop::ports::CheckpointStore for FailingSaves<C> {
    async fn load(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String)>, logdrop::ports::PortError> {
        self.inner.load(bucket, key).await
    }

    async fn save(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        cond: logdrop::ports::Precondition,
    ) -> Result<String, logdrop::ports::PortError> {
        let n = self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if self.fail.contains(&n) {
            return Err(logdrop::ports::PortError::Transient(
                "injected checkpoint failure".into(),
            ));
        }
        self.inner.save(bucket, key, body, cond).await
    }
}

/// A writer collecting a subscriber's output in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Runs `fut` with a subscriber of its own, formatted as the binaries'
/// (JSON, fields at the top level), and returns the lines it logged. Only
/// this future's lines are captured, so tests running beside it do not mix in.
pub async fn logged<F: std::future::Future>(fut: F) -> (F::Output, Vec<Value>) {
    use tracing::instrument::WithSubscriber;
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .with_ansi(false)
        .json()
        .flatten_event(true)
        .with_writer(out.clone())
        .finish();
    let result = fut.with_subscriber(subscriber).await;
    let bytes = out.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let lines = String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (result, lines)
}

/// The `WARN` and `ERROR` lines of `lines`.
pub fn loud(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| matches!(l["level"].as_str(), Some("WARN" | "ERROR")))
        .collect()
}
