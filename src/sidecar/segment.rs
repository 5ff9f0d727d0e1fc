//! Recording a task segment (`core::segment`) and uploading it, by the crash
//! rule: the segment (number, every part's range, gzip level) is recorded
//! before its upload; after a crash or a failed upload the same segment is
//! uploaded again, same key and bytes, before anything new is cut (`redo`);
//! then each file's offset is recorded; then the intent is cleared and the
//! number advanced.

use crate::core::segment::{Part, SegmentKey};
use crate::ports::ObjectStore;
use crate::sidecar::context::Ctx;
use crate::sidecar::cut::Segment;
use crate::sidecar::error::SidecarError;
use crate::sidecar::followed::Followed;
use crate::sidecar::state::{PartRange, SegmentIntent, StateDir};
use crate::sidecar::upload;

pub(crate) fn ranges(parts: &[Part]) -> Vec<PartRange> {
    parts
        .iter()
        .map(|p| PartRange {
            file: p.file.clone(),
            generation: p.generation,
            start: p.start,
            end: p.end,
        })
        .collect()
}

/// Records the segment, uploads it, records each file's offset, then clears
/// the intent and advances the number.
pub(crate) async fn ship<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    state: &mut StateDir,
    files: &mut [&mut Followed],
    seg: Segment,
) -> Result<(), SidecarError> {
    let seq = state.segment().next_seq;
    let parts = seg.body.parts().to_vec();
    for &i in &seg.files {
        let f = &mut *files[i];
        // Written once before a generation's first segment, so a restart
        // knows the file a recorded part came from.
        if !f.saved {
            state.save_file(&f.record)?;
            f.saved = true;
        }
    }
    state.intend(SegmentIntent {
        seq,
        gzip_level: ctx.config.gzip_level,
        parts: ranges(&parts),
    })?;
    put(ctx, seq, seg.body.finish(), &parts).await?;
    let dir = ctx.config.log_dir.clone();
    for (&i, p) in seg.files.iter().zip(&parts) {
        let f = &mut *files[i];
        let was_open = f.is_open();
        // The fingerprint of the shipped bytes is taken through the handle.
        let _ = f.handle(&dir);
        f.shipped(p.end);
        state.save_file(&f.record)?;
        if !was_open {
            f.close();
        }
    }
    Ok(state.segment_done(seq)?)
}

/// Uploads a segment body under its key, retrying as `upload` does.
pub(crate) async fn put<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    seq: u64,
    body: bytes::Bytes,
    parts: &[Part],
) -> Result<(), SidecarError> {
    let key = SegmentKey {
        prefix: ctx.config.key_prefix.clone(),
        cluster: ctx.cluster.clone(),
        task_id: ctx.task_id.clone(),
        seq,
    }
    .to_string();
    let Ctx {
        store,
        config,
        totals,
        reporter,
        cluster,
        max_attempts,
        deadline,
        clock_ahead,
        ..
    } = ctx;
    // Each failure is counted at once, and a sidecar stuck on S3 still
    // writes its metrics line every summary interval.
    let mut on_failure = || {
        totals.failed_attempts += 1;
        let now = std::time::Instant::now() + *clock_ahead;
        reporter.report(cluster, now, totals, config.summary_interval, false);
    };
    upload::put_with_retry(
        store,
        &config.bucket,
        &key,
        body,
        *max_attempts,
        *deadline,
        &mut on_failure,
    )
    .await
    .map_err(|source| SidecarError::Upload {
        key: key.clone(),
        source,
    })?;
    let bytes: u64 = parts.iter().map(|p| p.end - p.start).sum();
    ctx.totals.bytes += bytes;
    ctx.totals.chunks += 1;
    tracing::debug!(key, bytes, parts = parts.len(), "segment uploaded");
    Ok(())
}
