//! The crash rule, the re-upload half: the segment recorded before an upload
//! that did not finish (a crash, a failed or cancelled upload) is uploaded
//! again, same key and bytes, before anything new is cut.

use crate::core::segment::SegmentWriter;
use crate::ports::ObjectStore;
use crate::sidecar::context::Ctx;
use crate::sidecar::error::SidecarError;
use crate::sidecar::fingerprint::Fingerprint;
use crate::sidecar::followed::Followed;
use crate::sidecar::segment::{Record, put, ranges};
use crate::sidecar::state::{PartRange, SegmentIntent};
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

/// What became of one recorded part when it was read again.
enum Again {
    /// Its bytes are the same: compressed into the body.
    Same,
    /// Another file now, or shorter, or its shipped bytes changed.
    Changed,
    /// Unreadable now (a read error): it may come back.
    Unreadable(io::Error),
}

fn rebuild(
    dir: &std::path::Path,
    f: &mut Followed,
    p: &PartRange,
    level: u32,
    body: &mut SegmentWriter,
) -> Again {
    let offset = f.record.offset;
    let want = f.record.fingerprint;
    if f.record.generation != p.generation || (offset != p.start && offset != p.end) {
        return Again::Changed;
    }
    let h = match f.handle(dir) {
        Ok(Some(h)) => h,
        Ok(None) => return Again::Changed,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Again::Changed,
        Err(e) => return Again::Unreadable(e),
    };
    match h.metadata() {
        Ok(m) if m.len() < p.end => return Again::Changed,
        Ok(_) => {}
        Err(e) => return Again::Unreadable(e),
    }
    match (want, Fingerprint::of(h, offset)) {
        (Some(w), Ok(got)) if w != got => return Again::Changed,
        (_, Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Again::Changed,
        (_, Err(e)) => return Again::Unreadable(e),
        _ => {}
    }
    let pushed = h.seek(SeekFrom::Start(p.start)).and_then(|_| {
        body.push(
            &p.file,
            p.generation,
            (p.start, p.end),
            level,
            h.take(p.end - p.start),
        )
    });
    match pushed {
        Ok(()) => Again::Same,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Again::Changed,
        Err(e) => Again::Unreadable(e),
    }
}

/// Uploads the recorded segment again, before anything new is cut. A file
/// whose part cannot be rebuilt is left with its record marked finished, for
/// the caller to end its generation.
///
/// When a part's file can no longer give the same bytes, the v1 rule for a
/// recorded chunk applies: that range is given up (logged, naming it; it is in
/// S3 if the first upload got there, else lost with the file) and its file
/// starts a new generation. The key is never written with other bytes: the
/// parts still readable go, with exactly their recorded ranges, under the next
/// number (a part uploaded twice has one v1 key, which the shipper stores once).
/// A part whose file cannot be read now stays recorded with its file and is
/// shipped, exactly that range, once readable.
pub(crate) async fn redo<S: ObjectStore>(
    ctx: &mut Ctx<S>,
    seg: &mut Record<'_>,
    followed: &mut BTreeMap<String, Followed>,
) -> Result<(), SidecarError> {
    let Some(intent) = seg.doc.uploading.clone() else {
        return Ok(());
    };
    tracing::info!(
        seq = intent.seq,
        parts = intent.parts.len(),
        "re-uploading the segment that was in flight when the upload stopped"
    );
    let dir = ctx.config.log_dir.clone();
    let mut body = SegmentWriter::new(0);
    let mut changed = Vec::new();
    let mut unreadable = Vec::new();
    for p in &intent.parts {
        match followed.get_mut(&p.file) {
            None => changed.push(p.clone()),
            Some(f) => match rebuild(&dir, f, p, intent.gzip_level, &mut body) {
                Again::Same => {}
                Again::Changed => changed.push(p.clone()),
                Again::Unreadable(e) => unreadable.push((p.clone(), e)),
            },
        }
    }
    let same = body.parts().to_vec();
    // Recorded before the segment is recorded again or uploaded: a crash or a
    // failed upload from here on must not forget what became of these parts.
    for (p, _) in &unreadable {
        // At `end` the offset says the first upload got there: nothing to redo.
        if let Some(f) = followed.get_mut(&p.file)
            && f.record.offset == p.start
        {
            f.record.uploading = Some((p.start, p.end));
            seg.state.save_file(&f.record)?;
        }
    }
    // Changed files recorded as finished, so no later cut of theirs can
    // overlap the range given up.
    for p in &changed {
        if let Some(f) = followed.get_mut(&p.file)
            && f.record.generation == p.generation
        {
            f.record.finished = true;
            seg.state.save_file(&f.record)?;
        }
    }
    let mut seq = intent.seq;
    if !changed.is_empty() || !unreadable.is_empty() {
        seq = intent.seq + 1;
        for p in &changed {
            tracing::error!(
                file = p.file,
                generation = p.generation,
                start = p.start,
                end = p.end,
                seq = intent.seq,
                "the file changed before its recorded segment was re-uploaded; this range is in S3 only if that upload got there"
            );
        }
        for (p, e) in &unreadable {
            tracing::warn!(file = p.file, start = p.start, end = p.end, error = %e, "cannot read a recorded part again; it is shipped once readable");
        }
        if !same.is_empty() {
            seg.intend(SegmentIntent {
                seq,
                gzip_level: intent.gzip_level,
                parts: ranges(&same),
            })?;
        }
    }
    if !same.is_empty() {
        put(ctx, seq, body.finish(), &same).await?;
    }
    for b in &same {
        if let Some(f) = followed.get_mut(&b.file)
            && f.record.offset < b.end
        {
            f.shipped(b.end);
            seg.state.save_file(&f.record)?;
        }
    }
    seg.done(seq)
}
