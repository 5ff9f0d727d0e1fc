//! What `shipper audit` reads, and nothing more: the keys under a task's
//! prefix (a List per 1,000 keys), each segment's manifest (one ranged GET of
//! its head; a v1 chunk's range is in its key), the task's checkpoint (one
//! read) and the bucket's lifecycle rules (one read). The findings are
//! `audit.rs`'s, from what is read here.

use crate::core::checkpoint::Checkpoint;
use crate::core::keys::{ChunkKey, TaskRef, components, decode_component, encode_component};
use crate::core::segment::{HeadReader, MAX_MANIFEST_BYTES, Manifest, SegmentKey};
use crate::ports::{BucketIndex, CheckpointStore, ExpiryRule, Listed, PortError};
use crate::shipper::Config;
use crate::shipper::audit::{self, Content, Finding, Found, Report, Requests, TaskInput};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::BTreeMap;

/// The first read of a segment's head: the manifest of a few hundred parts
/// fits many times over, so a second read (up to the manifest's limit) is rare.
const FIRST_READ: u64 = 64 * 1024;
/// Manifests read at the same time.
const CONCURRENT_READS: usize = 8;

/// Which tasks to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Task(TaskRef),
    /// Every task with an object uploaded at or after `since`, in one cluster or all.
    Since {
        cluster: Option<String>,
        since: DateTime<Utc>,
    },
}

/// What `audit` and `replay` are asked to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Select {
        bucket: String,
        selection: Selection,
    },
    /// A report `audit --json` wrote (`replay` only).
    From(String),
}

/// The command-line flags of `shipper audit` and `shipper replay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub target: Target,
    pub json: bool,
    /// Audit as of this time instead of now.
    pub at: Option<DateTime<Utc>>,
}

impl Args {
    /// `--bucket B (--cluster C --task T | --since WHEN [--cluster C]) [--json]
    /// [--at WHEN]`, or `--from FILE [--json]`. WHEN is an RFC 3339 time or an
    /// age such as `90m`, `6h`, `2d` (before `now`).
    pub fn parse(args: &[String], now: DateTime<Utc>) -> Result<Args, String> {
        let (mut bucket, mut cluster, mut task, mut since, mut from) =
            (None, None, None, None, None);
        let (mut json, mut at) = (false, None);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--bucket" => bucket = Some(value()?),
                "--cluster" => cluster = Some(value()?),
                "--task" => task = Some(value()?),
                "--since" => since = Some(when(&value()?, now)?),
                "--at" => at = Some(when(&value()?, now)?),
                "--from" => from = Some(value()?),
                "--json" => json = true,
                other => return Err(format!("unknown flag {other}")),
            }
        }
        let target = match (from, bucket, task, since) {
            (Some(f), None, None, None) if cluster.is_none() => Target::From(f),
            (Some(_), ..) => return Err("--from takes no other selection".into()),
            (None, Some(bucket), Some(task_id), None) => {
                let cluster = cluster.ok_or("--task needs --cluster")?;
                let selection = Selection::Task(TaskRef { cluster, task_id });
                Target::Select { bucket, selection }
            }
            (None, Some(bucket), None, Some(since)) => Target::Select {
                bucket,
                selection: Selection::Since { cluster, since },
            },
            (None, None, ..) => return Err("--bucket is required".into()),
            _ => return Err("give either --cluster and --task, or --since".into()),
        };
        Ok(Args { target, json, at })
    }
}

/// An RFC 3339 time, or an age (`30m`, `6h`, `2d`) before `now`.
fn when(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || format!("`{s}` is neither an RFC 3339 time nor an age such as 90m, 6h, 2d");
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = (n.parse().ok().filter(|n: &i64| *n >= 0)).ok_or_else(bad)?;
    let age = match unit {
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => None,
    };
    age.and_then(|a| now.checked_sub_signed(a)).ok_or_else(bad)
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot list s3://{bucket}/{prefix}: {source}")]
    List {
        bucket: String,
        prefix: String,
        #[source]
        source: PortError,
    },
}

/// Where the audit reads from.
pub struct Sources<'a, I, C> {
    pub index: &'a I,
    pub checkpoints: &'a C,
    pub config: &'a Config,
    pub bucket: &'a str,
}

/// Audits the selected tasks as of `now`. Only a listing that fails stops
/// it; anything else that cannot be read is a finding, logged once naming
/// its key, and the rest is still audited.
pub async fn audit<I: BucketIndex, C: CheckpointStore>(
    src: &Sources<'_, I, C>,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Report, AuditError> {
    let mut requests = Requests::default();
    let rules = expiry_rules(src, &mut requests).await;
    let (tasks, other) = list(src, selection, &mut requests).await?;
    let mut report = Report {
        bucket: src.bucket.to_string(),
        at: now,
        clean: false,
        tasks: Vec::with_capacity(tasks.len()),
        other,
        lifecycle_unknown: rules.as_ref().err().cloned(),
        requests,
    };
    let rules = rules.unwrap_or_default();
    for (task, listed) in tasks {
        let input = read_task(src, task, listed, &mut report.requests).await;
        let task_audit = audit::audit_task(&input, &rules, now);
        log_unreadable(&task_audit.findings);
        report.tasks.push(task_audit);
    }
    log_unreadable(&report.other);
    report.clean = report.findings() == 0;
    Ok(report)
}

fn log_unreadable(findings: &[Finding]) {
    for f in findings {
        if let Finding::Unreadable { key, error } = f {
            tracing::error!(key, error, kind = "unreadable", "audit cannot read it");
        }
    }
}

async fn expiry_rules<I: BucketIndex, C>(
    src: &Sources<'_, I, C>,
    requests: &mut Requests,
) -> Result<Vec<ExpiryRule>, String> {
    requests.lifecycle_reads += 1;
    src.index.expiry_rules(src.bucket).await.map_err(|e| {
        tracing::warn!(bucket = src.bucket, error = %e, "cannot read the lifecycle configuration; expiry is not checked");
        e.to_string()
    })
}

type Listing = (BTreeMap<TaskRef, Vec<Listed>>, Vec<Finding>);

/// Every key under the selection's prefix, by task; keys that name no task
/// are findings. For `Since`, only tasks with an object since then.
async fn list<I: BucketIndex, C>(
    src: &Sources<'_, I, C>,
    selection: &Selection,
    requests: &mut Requests,
) -> Result<Listing, AuditError> {
    let root = &src.config.key_prefix;
    let prefix = match selection {
        Selection::Task(t) => format!(
            "{root}/{}/{}/",
            encode_component(&t.cluster),
            encode_component(&t.task_id)
        ),
        Selection::Since {
            cluster: Some(c), ..
        } => format!("{root}/{}/", encode_component(c)),
        Selection::Since { cluster: None, .. } => format!("{root}/"),
    };
    let (mut tasks, mut other) = (BTreeMap::<TaskRef, Vec<Listed>>::new(), Vec::new());
    let mut token = None;
    loop {
        requests.list += 1;
        let page = (src.index.list(src.bucket, &prefix, token.take()).await).map_err(|source| {
            AuditError::List {
                bucket: src.bucket.to_string(),
                prefix: prefix.clone(),
                source,
            }
        })?;
        for obj in page.objects {
            match task_of(&obj.key, root) {
                Ok(task) => tasks.entry(task).or_default().push(obj),
                Err(error) => other.push(Finding::Unreadable {
                    key: obj.key,
                    error,
                }),
            }
        }
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    match selection {
        // A task whose objects are all gone still has a checkpoint to read.
        Selection::Task(t) => {
            tasks.entry(t.clone()).or_default();
        }
        Selection::Since { since, .. } => {
            let since = since.timestamp_millis();
            tasks.retain(|_, objs| objs.iter().any(|o| o.last_modified_ms >= since));
        }
    }
    Ok((tasks, other))
}

/// The task a key belongs to: its first two components after the prefix.
fn task_of(key: &str, prefix: &str) -> Result<TaskRef, String> {
    let parts = components(key, prefix).map_err(|e| e.to_string())?;
    match parts[..] {
        [cluster, task_id, _, ..] => Ok(TaskRef {
            cluster: decode_component(cluster).map_err(|e| e.to_string())?,
            task_id: decode_component(task_id).map_err(|e| e.to_string())?,
        }),
        _ => Err("names no task: not <prefix>/<cluster>/<task>/...".into()),
    }
}

/// A task's objects, what each is, and its checkpoint.
async fn read_task<I: BucketIndex, C: CheckpointStore>(
    src: &Sources<'_, I, C>,
    task: TaskRef,
    listed: Vec<Listed>,
    requests: &mut Requests,
) -> TaskInput {
    let prefix = &src.config.key_prefix;
    let objects: Vec<(Found, u64)> = futures::stream::iter(listed)
        .map(|obj| async move {
            match SegmentKey::parse(&obj.key, prefix) {
                Ok(key) => {
                    let (manifest, damage, reads) = manifest(src, &obj).await;
                    let content = Content::Segment {
                        key,
                        manifest,
                        damage,
                    };
                    (found(obj, content), reads)
                }
                Err(_) => {
                    let content = match ChunkKey::parse(&obj.key, prefix) {
                        Ok(k) => Content::Chunk(k),
                        Err(e) => Content::Unparseable(format!(
                            "neither a layout v1 chunk nor a v2 segment key ({e}); the shipper skips it"
                        )),
                    };
                    (found(obj, content), 0)
                }
            }
        })
        .buffered(CONCURRENT_READS)
        .collect()
        .await;
    requests.manifest_reads += objects.iter().map(|o| o.1).sum::<u64>();
    let checkpoint_key = task.checkpoint_key(&src.config.checkpoint_prefix);
    let bucket = src
        .config
        .checkpoint_bucket
        .as_deref()
        .unwrap_or(src.bucket);
    requests.checkpoint_reads += 1;
    let checkpoint = match src.checkpoints.load(bucket, &checkpoint_key).await {
        Ok(None) => Ok(None),
        Ok(Some((bytes, _))) => Checkpoint::decode(&bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot be read: {e}")),
    };
    TaskInput {
        task,
        checkpoint_key,
        checkpoint,
        objects: objects.into_iter().map(|o| o.0).collect(),
    }
}

fn found(listed: Listed, content: Content) -> Found {
    Found { listed, content }
}

type ManifestRead = (Result<Manifest, String>, Option<String>, u64);

/// A segment's manifest from ranged reads of its head, whether the object's
/// size matches it (the head plus every part, nothing after), and the
/// number of reads it took.
async fn manifest<I: BucketIndex, C>(src: &Sources<'_, I, C>, obj: &Listed) -> ManifestRead {
    let mut head = HeadReader::default();
    let (mut at, mut reads) = (0u64, 0u64);
    loop {
        if at >= obj.size {
            return (Err(head.finish().to_string()), None, reads);
        }
        // The second read goes to the limit, so a manifest takes at most two.
        let want = if at == 0 {
            FIRST_READ
        } else {
            MAX_MANIFEST_BYTES as u64 + 1 - at.min(MAX_MANIFEST_BYTES as u64)
        };
        let len = want.max(1).min(obj.size - at);
        reads += 1;
        let bytes = match src.index.read_range(src.bucket, &obj.key, at, len).await {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => return (Err("the object ended early".into()), None, reads),
            Err(e) => return (Err(format!("cannot be read: {e}")), None, reads),
        };
        at += bytes.len() as u64;
        match head.push(&bytes) {
            Err(e) => return (Err(e.to_string()), None, reads),
            Ok(None) => continue,
            Ok(Some((manifest, rest))) => {
                let head_len = at - rest.len() as u64;
                let damage = size_mismatch(&manifest, head_len, obj.size);
                return (Ok(manifest), damage, reads);
            }
        }
    }
}

/// Why an object of `size` bytes cannot be the head plus the parts the
/// manifest lists, if it cannot (the shipper would fail it as poison).
fn size_mismatch(manifest: &Manifest, head_len: u64, size: u64) -> Option<String> {
    let want = head_len + manifest.parts.iter().map(|p| p.bytes).sum::<u64>();
    match size.cmp(&want) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some(format!(
            "truncated: the manifest lists {want} bytes, the object has {size}"
        )),
        std::cmp::Ordering::Greater => Some(format!(
            "{} bytes after the last part the manifest lists",
            size - want
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::segment::{self, PartBody};

    fn args(s: &str) -> Result<Args, String> {
        let v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        Args::parse(&v, "2026-12-03T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn flags_select_a_task_a_time_or_a_report() {
        let t = |cluster: &str, task_id: &str| TaskRef {
            cluster: cluster.into(),
            task_id: task_id.into(),
        };
        assert_eq!(
            args("--bucket b --cluster c --task t --json").unwrap(),
            Args {
                target: Target::Select {
                    bucket: "b".into(),
                    selection: Selection::Task(t("c", "t"))
                },
                json: true,
                at: None
            }
        );
        let since = args("--bucket b --since 6h --at 2026-12-04T00:00:00Z").unwrap();
        assert_eq!(
            since.target,
            Target::Select {
                bucket: "b".into(),
                selection: Selection::Since {
                    cluster: None,
                    since: "2026-12-03T06:00:00Z".parse().unwrap()
                }
            }
        );
        assert_eq!(since.at, Some("2026-12-04T00:00:00Z".parse().unwrap()));
        assert_eq!(
            args("--from r.json").unwrap().target,
            Target::From("r.json".into())
        );
        for bad in [
            "",
            "--bucket b",
            "--bucket b --task t",
            "--bucket b --cluster c --task t --since 1d",
            "--bucket b --since yesterday",
            "--bucket b --since 5y",
            "--bucket b --since -5h",
            "--from r.json --bucket b",
            "--bucket",
            "--bogus",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_name_their_task() {
        let t = task_of("logs/my%20c/t1/segment/000000000000001.gz", "logs").unwrap();
        assert_eq!((t.cluster.as_str(), t.task_id.as_str()), ("my c", "t1"));
        assert!(task_of("logs/c/x.gz", "logs").is_err());
        assert!(task_of("logs/c/a b/x.gz", "logs").is_err());
        assert!(task_of("other/c/t/x.gz", "logs").is_err());
    }

    #[test]
    fn a_segment_must_be_its_head_and_parts() {
        let body = segment::encode(&[PartBody {
            file: "f.log".into(),
            generation: 0,
            start: 0,
            end: 3,
            gzip: crate::generate::gzip(b"abc"),
        }]);
        let (manifest, rest) = HeadReader::default().push(&body).unwrap().unwrap();
        let head = (body.len() - rest.len()) as u64;
        let size = body.len() as u64;
        assert_eq!(size_mismatch(&manifest, head, size), None);
        assert!(
            size_mismatch(&manifest, head, size - 1)
                .unwrap()
                .contains("truncated")
        );
        assert!(
            size_mismatch(&manifest, head, size + 2)
                .unwrap()
                .starts_with("2 bytes after")
        );
    }
}
