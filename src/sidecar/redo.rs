//! The crash rule, the re-upload half: the segment recorded before an upload
//! that did not finish (a crash, a failed or cancelled upload) is uploaded
//! again, same key and bytes, before anything new is cut.

use crate::core::segment::SegmentWriter;
use crate::ports::ObjectStore;
use crate::sidecar::context::Ctx;
use crate::sidecar::error::SidecarError;
use crate::sidecar::fingerprint::Fingerprint;
use crate::sidecar::followed::Followed;
use crate::sidecar::segment::{put, ranges};
use crate::sidecar::state::{PartRange, SegmentIntent, StateDir};
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
    state: &mut StateDir,
    followed: &mut BTreeMap<String, Followed>,
) -> Result<(), SidecarError> {
    let Some(intent) = state.segment().uploading.clone() else {
        return Ok(());
    };
    tracing::info!(
        seq = intent.seq,
        parts = intent.parts.len(),
        "re-uploading the segment that was in flight when the upload stopped"
    );
    let again = read_again(&ctx.config.log_dir, &intent, followed);
    let same = again.body.parts().to_vec();
    let seq = settle_lost_parts(state, followed, &intent, &again)?;
    if !same.is_empty() {
        put(ctx, seq, again.body.finish(), &same).await?;
    }
    for b in &same {
        if let Some(f) = followed.get_mut(&b.file)
            && f.record.offset < b.end
        {
            f.shipped(b.end);
            state.save_file(&f.record)?;
        }
    }
    Ok(state.segment_done(seq)?)
}

/// The recorded segment read again: the parts whose bytes are the same, in
/// a body, and those that changed or cannot be read now.
struct ReadAgain {
    body: SegmentWriter,
    changed: Vec<PartRange>,
    unreadable: Vec<(PartRange, io::Error)>,
}

fn read_again(
    dir: &std::path::Path,
    intent: &SegmentIntent,
    followed: &mut BTreeMap<String, Followed>,
) -> ReadAgain {
    let mut again = ReadAgain {
        body: SegmentWriter::new(0),
        changed: Vec::new(),
        unreadable: Vec::new(),
    };
    for p in &intent.parts {
        match followed.get_mut(&p.file) {
            None => again.changed.push(p.clone()),
            Some(f) => match rebuild(dir, f, p, intent.gzip_level, &mut again.body) {
                Again::Same => {}
                Again::Changed => again.changed.push(p.clone()),
                Again::Unreadable(e) => again.unreadable.push((p.clone(), e)),
            },
        }
    }
    again
}

/// Records what became of the parts that cannot go again, before anything
/// is uploaded (a crash or a failed upload from here on must not forget
/// them), and returns the number the rest goes under: the recorded one if
/// every part is the same, else the next (recorded as the new intent).
fn settle_lost_parts(
    state: &mut StateDir,
    followed: &mut BTreeMap<String, Followed>,
    intent: &SegmentIntent,
    again: &ReadAgain,
) -> Result<u64, SidecarError> {
    for (p, e) in &again.unreadable {
        tracing::warn!(file = p.file, start = p.start, end = p.end, error = %e, "cannot read a recorded part again; it is shipped once readable");
        // At `end` the offset says the first upload got there: nothing to redo.
        if let Some(f) = followed.get_mut(&p.file)
            && f.record.offset == p.start
        {
            f.record.uploading = Some((p.start, p.end));
            state.save_file(&f.record)?;
        }
    }
    for p in &again.changed {
        tracing::error!(
            file = p.file,
            generation = p.generation,
            start = p.start,
            end = p.end,
            seq = intent.seq,
            "the file changed before its recorded segment was re-uploaded; this range is in S3 only if that upload got there"
        );
        // Finished, so no later cut of this file can overlap the range given up.
        if let Some(f) = followed.get_mut(&p.file)
            && f.record.generation == p.generation
        {
            f.record.finished = true;
            state.save_file(&f.record)?;
        }
    }
    if again.changed.is_empty() && again.unreadable.is_empty() {
        return Ok(intent.seq);
    }
    let seq = intent.seq + 1;
    if !again.body.parts().is_empty() {
        state.intend(SegmentIntent {
            seq,
            gzip_level: intent.gzip_level,
            parts: ranges(again.body.parts()),
        })?;
    }
    Ok(seq)
}
