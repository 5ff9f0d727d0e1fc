//! `shipper audit`, the pure part: one task's objects (as listed, each
//! segment with its manifest) against its checkpoint, into findings. What the
//! audit reads to get there is `inventory.rs`; what it prints is `Report`.
//!
//! The rules, each a finding kind:
//! - `gap`: bytes of a file generation that no object holds and the
//!   checkpoint does not have as shipped, between offset 0 and the last byte
//!   known. The sidecar never uploaded them, or an object was deleted
//!   before it shipped. (Bytes after the last object are the sidecar's
//!   pending bytes: no object can tell of them.)
//! - `missing-segments`: segment numbers absent between two present ones.
//!   The sidecar numbers its segments one by one, so an absent number is an
//!   object gone whose content is unknown (a whole file may have been in it).
//!   A jump to a number at least the previous segment's upload time in
//!   milliseconds is a counter restarted after a lost state, not a gap.
//! - `unshipped`: an object with bytes the checkpoint does not have as shipped.
//! - `expiring`: an unshipped object whose lifecycle expiry is past or within a day.
//! - `stuck-lease`: a lease past its expiry (its invocation died; nothing has
//!   written the checkpoint since). The next delivery of its range reads it
//!   back from the stream before sending, as for `unverified`.
//! - `unverified`: a range (checkpoint v2) whose events may be in CloudWatch
//!   Logs but are not recorded: a dead invocation's, or a call of unknown
//!   outcome's. Its bytes are also `unshipped`; the next delivery (or
//!   `replay`) reads them back before sending anything of them again.
//! - `unreadable`: a key under the prefix that is neither layout, a segment
//!   whose manifest cannot be read or whose size does not match it, a
//!   checkpoint that cannot be read (the task's coverage is then unchecked).
//! - `nothing-found`: neither objects nor a checkpoint (a wrong task id?).

use crate::core::checkpoint::Checkpoint;
use crate::core::keys::{ChunkKey, TaskRef};
use crate::core::ranges::RangeSet;
use crate::core::segment::{Manifest, SegmentKey};
use crate::ports::{ExpiryAfter, ExpiryRule, Listed};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// An unshipped object this close to its lifecycle expiry is reported.
const EXPIRY_WARNING_HOURS: i64 = 24;
/// Leeway between the sidecar's clock and S3's when telling a counter
/// restart (a number read from the clock) from absent segments.
const CLOCK_LEEWAY_MS: i64 = 1_000;

/// What a listed key turned out to be.
#[derive(Debug, Clone)]
pub enum Content {
    Chunk(ChunkKey),
    Segment {
        key: SegmentKey,
        /// The manifest, or why it cannot be read.
        manifest: Result<Manifest, String>,
        /// Why the object's size does not match its manifest, if it does not.
        damage: Option<String>,
    },
    /// Neither layout: the shipper skips it, so its bytes never ship.
    Unparseable(String),
}

/// One listed object and what it is.
#[derive(Debug, Clone)]
pub struct Found {
    pub listed: Listed,
    pub content: Content,
}

/// Everything the audit of one task looks at.
#[derive(Debug, Clone)]
pub struct TaskInput {
    pub task: TaskRef,
    /// Where the checkpoint is (for the report and error lines).
    pub checkpoint_key: String,
    /// The document, `None` when the task has none yet, or why it cannot be read.
    pub checkpoint: Result<Option<Checkpoint>, String>,
    pub objects: Vec<Found>,
}

/// A byte range of one file generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    pub file: String,
    pub generation: u64,
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    Gap {
        #[serde(flatten)]
        range: FileRange,
    },
    MissingSegments {
        first: u64,
        last: u64,
        /// The segment after them.
        before: String,
    },
    Unshipped {
        key: String,
        uploaded_at: DateTime<Utc>,
        ranges: Vec<FileRange>,
        /// An unexpired lease on them: an invocation is at work on it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leased_until: Option<DateTime<Utc>>,
    },
    Expiring {
        key: String,
        expires_at: DateTime<Utc>,
    },
    StuckLease {
        #[serde(flatten)]
        range: FileRange,
        owner: String,
        expired_at: DateTime<Utc>,
    },
    Unverified {
        #[serde(flatten)]
        range: FileRange,
        /// No call that may have stored its events was made later.
        sent_before: DateTime<Utc>,
    },
    Unreadable {
        key: String,
        error: String,
    },
    NothingFound {
        prefix: String,
    },
}

/// The audit of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAudit {
    pub cluster: String,
    pub task_id: String,
    pub checkpoint: String,
    pub objects: usize,
    /// Bytes the checkpoint has as shipped, over all its files.
    pub shipped_bytes: u64,
    pub findings: Vec<Finding>,
}

impl TaskAudit {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The earliest time a lifecycle rule deletes `obj`, if any rule applies.
pub fn expires_at(rules: &[ExpiryRule], obj: &Listed) -> Option<DateTime<Utc>> {
    let uploaded = DateTime::from_timestamp_millis(obj.last_modified_ms)?;
    rules
        .iter()
        .filter(|r| {
            obj.key.starts_with(&r.prefix)
                && r.size_greater_than.is_none_or(|s| obj.size > s)
                && r.size_less_than.is_none_or(|s| obj.size < s)
        })
        .filter_map(|r| match r.after {
            // S3 adds the days to the upload time and rounds up to midnight UTC.
            ExpiryAfter::Days(d) => {
                let t = uploaded + Duration::days(i64::from(d));
                let midnight = t.date_naive().and_hms_opt(0, 0, 0)?.and_utc();
                Some(if midnight == t {
                    t
                } else {
                    midnight + Duration::days(1)
                })
            }
            ExpiryAfter::Date(ms) => DateTime::from_timestamp_millis(ms),
        })
        .min()
}

/// The file ranges an object holds, if it can be read.
fn ranges_of(content: &Content) -> Vec<FileRange> {
    let range = |k: &ChunkKey| FileRange {
        file: k.file.clone(),
        generation: k.generation,
        start: k.start,
        end: k.end,
    };
    match content {
        Content::Chunk(k) => vec![range(k)],
        Content::Segment {
            key,
            manifest: Ok(m),
            ..
        } => m.parts.iter().map(|p| range(&p.chunk_key(key))).collect(),
        _ => Vec::new(),
    }
}

type Files = BTreeMap<(String, u64), RangeSet>;

/// Audits one task as of `now`.
pub fn audit_task(input: &TaskInput, rules: &[ExpiryRule], now: DateTime<Utc>) -> TaskAudit {
    let mut audit = TaskAudit {
        cluster: input.task.cluster.clone(),
        task_id: input.task.task_id.clone(),
        checkpoint: input.checkpoint_key.clone(),
        objects: input.objects.len(),
        shipped_bytes: 0,
        findings: unreadable(input),
    };
    let checkpoint = match &input.checkpoint {
        Ok(Some(c)) => c.clone(),
        Ok(None) if input.objects.is_empty() => {
            let prefix = format!("{}/{}/", input.task.cluster, input.task.task_id);
            audit.findings.push(Finding::NothingFound { prefix });
            return audit;
        }
        Ok(None) => Checkpoint::new(&input.task.cluster, &input.task.task_id, now),
        Err(error) => {
            audit.findings.push(Finding::Unreadable {
                key: input.checkpoint_key.clone(),
                error: error.clone(),
            });
            return audit;
        }
    };
    let shipped = shipped_files(&checkpoint, &input.checkpoint_key, &mut audit.findings);
    audit.shipped_bytes = (shipped.values())
        .flat_map(|s| s.ranges())
        .map(|(a, b)| b - a)
        .sum();
    audit.findings.extend(gaps(input, &shipped));
    audit.findings.extend(missing_segments(input));
    for obj in &input.objects {
        audit
            .findings
            .extend(unshipped(obj, &shipped, &checkpoint, rules, now));
    }
    audit.findings.extend(stuck_leases(&checkpoint, now));
    audit.findings.extend(unverified(&checkpoint));
    audit
}

/// Keys of neither layout and segments that cannot be read.
fn unreadable(input: &TaskInput) -> Vec<Finding> {
    let mut out = Vec::new();
    for obj in &input.objects {
        let error = match &obj.content {
            Content::Unparseable(why) => why.clone(),
            Content::Segment {
                manifest: Err(why), ..
            } => why.clone(),
            Content::Segment {
                damage: Some(why), ..
            } => why.clone(),
            _ => continue,
        };
        out.push(Finding::Unreadable {
            key: obj.listed.key.clone(),
            error,
        });
    }
    out
}

/// The checkpoint's shipped ranges by (file, generation).
fn shipped_files(checkpoint: &Checkpoint, key: &str, findings: &mut Vec<Finding>) -> Files {
    let mut out = Files::new();
    for (file, gens) in &checkpoint.files {
        for (generation, state) in gens {
            match generation.parse::<u64>() {
                Ok(g) => {
                    out.insert((file.clone(), g), state.shipped.clone());
                }
                Err(_) => findings.push(Finding::Unreadable {
                    key: key.to_string(),
                    error: format!("file {file}: `{generation}` is not a generation number"),
                }),
            }
        }
    }
    out
}

/// Bytes from 0 to the last known byte of each file generation that are in
/// no object and not shipped.
fn gaps(input: &TaskInput, shipped: &Files) -> Vec<Finding> {
    let mut known = shipped.clone();
    for obj in &input.objects {
        for r in ranges_of(&obj.content) {
            (known.entry((r.file, r.generation)).or_default()).insert(r.start, r.end);
        }
    }
    let mut out = Vec::new();
    for ((file, generation), set) in known {
        let end = set.ranges().last().map_or(0, |r| r.1);
        for (start, end) in set.missing(0, end) {
            out.push(Finding::Gap {
                range: FileRange {
                    file: file.clone(),
                    generation,
                    start,
                    end,
                },
            });
        }
    }
    out
}

/// Segment numbers absent between present ones, except counter restarts.
fn missing_segments(input: &TaskInput) -> Vec<Finding> {
    let mut segs: Vec<(u64, &Found)> = (input.objects.iter())
        .filter_map(|o| match &o.content {
            Content::Segment { key, .. } => Some((key.seq, o)),
            _ => None,
        })
        .collect();
    segs.sort_by_key(|s| s.0);
    let mut out = Vec::new();
    for w in segs.windows(2) {
        let ((a, prev), (b, next)) = (w[0], w[1]);
        let restart = i64::try_from(b)
            .is_ok_and(|b| b.saturating_add(CLOCK_LEEWAY_MS) >= prev.listed.last_modified_ms);
        if b > a + 1 && !restart {
            out.push(Finding::MissingSegments {
                first: a + 1,
                last: b - 1,
                before: next.listed.key.clone(),
            });
        }
    }
    out
}

/// The object's bytes not shipped, and whether it expires before they are.
fn unshipped(
    obj: &Found,
    shipped: &Files,
    checkpoint: &Checkpoint,
    rules: &[ExpiryRule],
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let none = RangeSet::default();
    let ranges: Vec<FileRange> = (ranges_of(&obj.content).into_iter())
        .flat_map(|r| {
            let set = shipped
                .get(&(r.file.clone(), r.generation))
                .unwrap_or(&none);
            (set.missing(r.start, r.end).into_iter()).map(move |(start, end)| FileRange {
                start,
                end,
                ..r.clone()
            })
        })
        .collect();
    if ranges.is_empty() {
        return Vec::new();
    }
    let leased_until = (ranges.iter())
        .flat_map(|r| leases(checkpoint, r))
        .filter(|l| l.expires_at > now)
        .map(|l| l.expires_at)
        .max();
    let key = obj.listed.key.clone();
    let uploaded_at = DateTime::from_timestamp_millis(obj.listed.last_modified_ms).unwrap_or(now);
    let mut out = vec![Finding::Unshipped {
        key: key.clone(),
        uploaded_at,
        ranges,
        leased_until,
    }];
    if let Some(expires_at) = expires_at(rules, &obj.listed)
        && expires_at <= now + Duration::hours(EXPIRY_WARNING_HOURS)
    {
        out.push(Finding::Expiring { key, expires_at });
    }
    out
}

/// The leases of `r`'s file generation that overlap it.
fn leases<'c>(
    checkpoint: &'c Checkpoint,
    r: &FileRange,
) -> impl Iterator<Item = &'c crate::core::checkpoint::Lease> {
    let (start, end) = (r.start, r.end);
    (checkpoint.files.get(&r.file))
        .and_then(|g| g.get(&r.generation.to_string()))
        .into_iter()
        .flat_map(|s| &s.leases)
        .filter(move |l| crate::core::ranges::overlaps(l.range, (start, end)))
}

/// Leases past their expiry (those of a generation that is no number are
/// already reported as unreadable).
fn stuck_leases(checkpoint: &Checkpoint, now: DateTime<Utc>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (file, gens) in &checkpoint.files {
        for (generation, state) in gens {
            let Ok(generation) = generation.parse::<u64>() else {
                continue;
            };
            for l in state.leases.iter().filter(|l| l.expires_at <= now) {
                out.push(Finding::StuckLease {
                    range: FileRange {
                        file: file.clone(),
                        generation,
                        start: l.range.0,
                        end: l.range.1,
                    },
                    owner: l.owner.clone(),
                    expired_at: l.expires_at,
                });
            }
        }
    }
    out
}

/// Ranges perhaps stored but not recorded, not since shipped.
fn unverified(checkpoint: &Checkpoint) -> Vec<Finding> {
    let mut out = Vec::new();
    for (file, gens) in &checkpoint.files {
        for (generation, state) in gens {
            let Ok(generation) = generation.parse::<u64>() else {
                continue;
            };
            let open =
                (state.unverified.iter()).filter(|u| !state.shipped.covers(u.range.0, u.range.1));
            out.extend(open.map(|u| Finding::Unverified {
                range: FileRange {
                    file: file.clone(),
                    generation,
                    start: u.range.0,
                    end: u.range.1,
                },
                sent_before: u.sent_before,
            }));
        }
    }
    out
}

/// Requests the audit made, by kind: the bill of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// `ListObjectsV2`: one per 1,000 keys.
    pub list: u64,
    /// Ranged `GetObject` of a segment's head, for its manifest.
    pub manifest_reads: u64,
    /// `GetObject` of a checkpoint object or `GetItem` of its item.
    pub checkpoint_reads: u64,
    /// `GetBucketLifecycleConfiguration`.
    pub lifecycle_reads: u64,
}

/// Everything one run of the audit found: what `--json` prints and `replay --from` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub bucket: String,
    pub at: DateTime<Utc>,
    pub clean: bool,
    pub tasks: Vec<TaskAudit>,
    /// Keys under the prefix that name no task.
    pub other: Vec<Finding>,
    /// Why expiry was not checked, if it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_unknown: Option<String>,
    pub requests: Requests,
}

impl Report {
    pub fn findings(&self) -> usize {
        self.other.len() + self.tasks.iter().map(|t| t.findings.len()).sum::<usize>()
    }

    /// The unshipped objects, task by task in upload order (key order where
    /// S3's one-second times tie: a segment's number, a chunk's offsets): what
    /// `replay` re-delivers, so each stream gets its events in file order.
    pub fn unshipped(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for t in &self.tasks {
            let mut task: Vec<(&DateTime<Utc>, &String)> = (t.findings.iter())
                .filter_map(|f| match f {
                    Finding::Unshipped {
                        key, uploaded_at, ..
                    } => Some((uploaded_at, key)),
                    _ => None,
                })
                .collect();
            task.sort();
            keys.extend(task.into_iter().map(|(_, k)| k.clone()));
        }
        keys
    }

    /// The human table: per task its findings, one line each, then a verdict.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for t in &self.tasks {
            let _ = writeln!(
                out,
                "task {}/{} in s3://{}: {} objects, {} bytes shipped (checkpoint {})",
                t.cluster, t.task_id, self.bucket, t.objects, t.shipped_bytes, t.checkpoint
            );
            if !t.is_clean() {
                let _ = writeln!(out, "  {:<17} OBJECT OR FILE: DETAIL", "KIND");
            }
            rows(&mut out, &t.findings);
            if t.is_clean() {
                let _ = writeln!(
                    out,
                    "  clean: every byte of every object shipped, no gaps, no stuck leases"
                );
            }
        }
        if !self.other.is_empty() {
            let _ = writeln!(out, "keys under the prefix that name no task:");
            let _ = writeln!(out, "  {:<17} OBJECT: DETAIL", "KIND");
            rows(&mut out, &self.other);
        }
        if let Some(why) = &self.lifecycle_unknown {
            let _ = writeln!(out, "lifecycle expiry not checked: {why}");
        }
        let r = &self.requests;
        let _ = writeln!(
            out,
            "requests: {} list, {} manifest reads, {} checkpoint reads, {} lifecycle reads",
            r.list, r.manifest_reads, r.checkpoint_reads, r.lifecycle_reads
        );
        let _ = match self.findings() {
            0 => writeln!(
                out,
                "audit clean: nothing missing in {} task(s) as of {}",
                self.tasks.len(),
                time(&self.at)
            ),
            n => writeln!(
                out,
                "audit found {n} problem(s) in {} task(s) as of {}",
                self.tasks.len(),
                time(&self.at)
            ),
        };
        out
    }
}

fn rows(out: &mut String, findings: &[Finding]) {
    for f in findings {
        let (kind, what) = describe(f);
        let _ = writeln!(out, "  {kind:<17} {what}");
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn file_range(r: &FileRange) -> String {
    format!(
        "{} generation {} bytes {}-{}",
        r.file, r.generation, r.start, r.end
    )
}

/// A finding's kind and what it is about, for the table.
fn describe(f: &Finding) -> (&'static str, String) {
    match f {
        Finding::Gap { range } => (
            "gap",
            format!("{}: in no object, not shipped", file_range(range)),
        ),
        Finding::MissingSegments {
            first,
            last,
            before,
        } => (
            "missing-segments",
            format!("numbers {first}..={last}, before {before}"),
        ),
        Finding::Unshipped {
            key,
            uploaded_at,
            ranges,
            leased_until,
        } => {
            let bytes = (ranges.iter())
                .map(|r| format!("{} {}-{}", r.file, r.start, r.end))
                .collect::<Vec<_>>()
                .join(", ");
            let lease =
                leased_until.map_or(String::new(), |t| format!(", leased until {}", time(&t)));
            let up = time(uploaded_at);
            (
                "unshipped",
                format!("{key} (uploaded {up}{lease}): {bytes}"),
            )
        }
        Finding::Expiring { key, expires_at } => (
            "expiring",
            format!("{key}: lifecycle deletes it at {}", time(expires_at)),
        ),
        Finding::StuckLease {
            range,
            owner,
            expired_at,
        } => (
            "stuck-lease",
            format!(
                "{}: {owner}, expired {}",
                file_range(range),
                time(expired_at)
            ),
        ),
        Finding::Unverified { range, sent_before } => (
            "unverified",
            format!(
                "{}: perhaps stored by a call made before {}, not recorded; read back before any re-send",
                file_range(range),
                time(sent_before)
            ),
        ),
        Finding::Unreadable { key, error } => ("unreadable", format!("{key}: {error}")),
        Finding::NothingFound { prefix } => (
            "nothing-found",
            format!("{prefix}: no objects and no checkpoint"),
        ),
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
