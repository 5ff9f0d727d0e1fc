//! Layout 2: all of a task's due bytes of one flush in one object, a "task
//! segment" (`core::segment`). When any file is due every file with pending
//! complete events is cut in the same pass, so a task pays one upload per
//! flush however many files it writes.
//!
//! Crash rule, as for v1 chunks: the segment (number, every part's range,
//! gzip level) is recorded before its upload; after a crash or a failed
//! upload the same segment is uploaded again, same key and bytes, before
//! anything new is cut; then each file's offset is recorded; then the intent
//! is cleared and the number advanced (the re-upload is `redo`).

use crate::core::segment::{PartBody, SegmentKey, encode};
use crate::ports::ObjectStore;
use crate::sidecar::chunk::{Mode, Urgency, decide, find_cut, gzip_range};
use crate::sidecar::error::SidecarError;
use crate::sidecar::followed::Followed;
use crate::sidecar::ship::{Ctx, note_failure};
use crate::sidecar::state::{PartRange, SegmentDoc, SegmentIntent, StateDir};
use crate::sidecar::upload;
use std::io;
use std::time::Instant;

/// The segment record and the open-handle budget, beside the shared context.
pub(crate) struct Segments<'a> {
    pub doc: &'a mut SegmentDoc,
    pub state: &'a mut StateDir,
    pub max_open: usize,
}

/// A part cut and compressed, waiting for its segment to be uploaded.
struct Cut {
    file: usize,
    body: PartBody,
}

/// Keeps open handles within the budget: a file closed here is reopened (and
/// its identity checked) when it is next read.
fn keep_budget(f: &mut Followed, open: &mut usize, was_open: bool, max: usize) {
    *open = (*open + usize::from(f.is_open())).saturating_sub(usize::from(was_open));
    if *open > max && f.is_open() {
        f.close();
        *open -= 1;
    }
}

/// Cuts every file that has pending events when any of them is due, and
/// uploads the cuts as segments of at most `chunk_bytes` uncompressed bytes.
/// Returns whether unshipped bytes remain. A read error stays with its file.
pub(crate) async fn ship_task<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    seg: &mut Segments<'_>,
    files: &mut [&mut Followed],
    mode: Mode,
) -> Result<bool, SidecarError> {
    let mut left = false;
    // First look: which files have pending bytes, and is any of them due?
    let mut pending: Vec<(usize, Option<Urgency>, bool)> = Vec::new();
    for (i, f) in files.iter_mut().enumerate() {
        if f.failing.is_some() {
            left = true;
            continue;
        }
        let len = match f.size() {
            Ok(len) => ctx.limit(f, len),
            Err(e) => {
                note_failure(f, &e);
                left = true;
                continue;
            }
        };
        let quiet = f.quiet_for(len) >= ctx.config.hold_timeout;
        let waiting = len.saturating_sub(f.record.offset);
        if waiting == 0 && f.record.uploading.is_none() {
            f.pending_since = None;
            continue;
        }
        let age = f.pending_since.get_or_insert_with(Instant::now).elapsed();
        // A range left over from a segment that could not be read again is overdue.
        let own = match f.record.uploading {
            Some(_) => Some(Urgency::Everything),
            None => decide(mode, ctx.config.due(), age, waiting),
        };
        pending.push((i, own, quiet));
    }
    if pending.iter().all(|(_, own, _)| own.is_none()) {
        return Ok(left || !pending.is_empty());
    }
    let mut open = files.iter().filter(|f| f.is_open()).count();
    let mut cuts: Vec<Cut> = Vec::new();
    let mut used = 0u64;
    for (i, own, quiet) in pending {
        let was_open = files[i].is_open();
        // The flush is due: this file's complete events go too, and so does
        // its last event if the file has been quiet for the hold time-out
        // (it is not growing): a lone JULI line a minute is not held for a
        // second flush, and still costs no upload of its own.
        let mut urgency = match (own, quiet) {
            (_, true) => Urgency::Everything,
            (Some(u), false) => u,
            (None, false) => Urgency::WholeEvents,
        };
        let mut start = files[i].record.offset;
        let mut first = true;
        loop {
            let f = &mut *files[i];
            let next = match cut_one(ctx, f, start, urgency) {
                Ok(n) => n,
                Err(e) => {
                    note_failure(f, &e);
                    left = true;
                    break;
                }
            };
            let Some((body, available)) = next else {
                // Held (following), or the file shrank under us (draining).
                left |= mode == Mode::Follow;
                break;
            };
            let size = body.end - body.start;
            start = body.end;
            f.pending_since = (start < available).then(Instant::now);
            // A file that does not fit goes into the next segment, at once;
            // so does a file's next range: one part per file per segment, so
            // a re-upload finds each file's offset at its part's start or end.
            if (!first || used + size > ctx.config.chunk_bytes) && !cuts.is_empty() {
                upload_cuts(ctx, seg, files, std::mem::take(&mut cuts)).await?;
                used = 0;
            }
            used += size;
            first = false;
            cuts.push(Cut { file: i, body });
            if start >= available {
                break;
            }
            match decide(
                mode,
                ctx.config.due(),
                std::time::Duration::ZERO,
                available - start,
            ) {
                Some(u) => urgency = u,
                None => {
                    left = true;
                    break;
                }
            }
        }
        keep_budget(&mut *files[i], &mut open, was_open, seg.max_open);
    }
    if !cuts.is_empty() {
        upload_cuts(ctx, seg, files, cuts).await?;
    }
    Ok(left)
}

/// The next part of `f` from `start`, compressed, and the bytes available;
/// `None` when nothing may be cut now.
fn cut_one<S>(
    ctx: &Ctx<S>,
    f: &mut Followed,
    start: u64,
    urgency: Urgency,
) -> io::Result<Option<(PartBody, u64)>> {
    let dir = ctx.config.log_dir.clone();
    let format = f.format;
    let recorded = f.record.uploading.filter(|u| u.0 == start);
    let len = match f.handle(&dir)? {
        Some(h) => h.metadata()?.len(),
        None => return Ok(None), // replaced since the look: the next pass finishes it
    };
    let available = ctx.limit(f, len);
    let Some(h) = f.handle(&dir)? else {
        return Ok(None);
    };
    let end = match recorded {
        Some((_, end)) => Some(end),
        None => find_cut(h, format, start, available, ctx.config.chunk_bytes, urgency)?,
    };
    let Some(end) = end else {
        return Ok(None);
    };
    let gzip = gzip_range(h, start, end, ctx.config.gzip_level)?;
    Ok(Some((
        PartBody {
            file: f.name().to_string(),
            generation: f.record.generation,
            start,
            end,
            gzip,
        },
        available.max(end),
    )))
}

/// Records the segment, uploads it, records each file's offset, then clears
/// the intent and advances the number.
async fn upload_cuts<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    seg: &mut Segments<'_>,
    files: &mut [&mut Followed],
    cuts: Vec<Cut>,
) -> Result<(), SidecarError> {
    let intent = SegmentIntent {
        seq: seg.doc.next_seq,
        gzip_level: ctx.config.gzip_level,
        parts: cuts
            .iter()
            .map(|c| PartRange {
                file: c.body.file.clone(),
                generation: c.body.generation,
                start: c.body.start,
                end: c.body.end,
            })
            .collect(),
    };
    for c in &cuts {
        let f = &mut *files[c.file];
        if !f.saved {
            seg.state.save_file(&f.record)?;
            f.saved = true;
        }
    }
    // In memory only once on disk: a recorded intent is what allows a re-upload.
    let mut doc = seg.doc.clone();
    doc.uploading = Some(intent.clone());
    seg.state.save_segment(&doc)?;
    *seg.doc = doc;
    let bodies: Vec<PartBody> = cuts.iter().map(|c| clone_body(&c.body)).collect();
    put(ctx, intent.seq, &bodies).await?;
    let dir = ctx.config.log_dir.clone();
    for c in &cuts {
        let f = &mut *files[c.file];
        let was_open = f.is_open();
        // The fingerprint of the shipped bytes is taken through the handle.
        let _ = f.handle(&dir);
        f.shipped(c.body.end);
        seg.state.save_file(&f.record)?;
        if !was_open {
            f.close();
        }
    }
    done(seg, intent.seq)
}

fn clone_body(b: &PartBody) -> PartBody {
    PartBody {
        file: b.file.clone(),
        generation: b.generation,
        start: b.start,
        end: b.end,
        gzip: b.gzip.clone(),
    }
}

pub(crate) async fn put<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    seq: u64,
    bodies: &[PartBody],
) -> Result<(), SidecarError> {
    let key = SegmentKey {
        prefix: ctx.config.key_prefix.clone(),
        cluster: ctx.cluster.clone(),
        task_id: ctx.task_id.clone(),
        seq,
    }
    .to_string();
    let body = encode(bodies);
    let retries = upload::put_with_retry(
        &ctx.store,
        &ctx.config.bucket,
        &key,
        body.into(),
        ctx.max_attempts,
        ctx.deadline,
    )
    .await
    .map_err(|source| SidecarError::Upload {
        key: key.clone(),
        source,
    })?;
    let bytes: u64 = bodies.iter().map(|b| b.end - b.start).sum();
    ctx.totals.failed_attempts += u64::from(retries);
    ctx.totals.bytes += bytes;
    ctx.totals.chunks += 1;
    tracing::debug!(key, bytes, parts = bodies.len(), "segment uploaded");
    Ok(())
}

pub(crate) fn done(seg: &mut Segments<'_>, seq: u64) -> Result<(), SidecarError> {
    let doc = SegmentDoc {
        version: seg.doc.version,
        next_seq: seq + 1,
        uploading: None,
    };
    seg.state.save_segment(&doc)?;
    *seg.doc = doc;
    Ok(())
}
