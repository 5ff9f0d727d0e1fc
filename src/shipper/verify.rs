//! Reading a batch back from its stream before it is sent again: after a
//! `PutLogEvents` call of unknown outcome, and for a range the checkpoint
//! marks unverified (its last owner died or could not record it). The rule
//! is `core::verify`; this is the reading, with a short wait for a stored
//! event to become visible.

use crate::core::batch::Batch;
use crate::core::verify::{Decision, Known, Verdict, decide, found, stored_run, verdict, window};
use crate::ports::{LogSink, PortError};
use std::time::Duration;

/// Reads of one batch's window in one invocation, and the pauses between
/// them: a stored event usually shows within a second or two, so a short
/// wait spares the trigger's redelivery; past it the record fails and the
/// redelivery reads again.
pub const READS_PER_CHECK: usize = 3;
const PAUSES_MS: [u64; READS_PER_CHECK - 1] = [1_000, 2_000];

/// One stream's read-back.
pub struct Readback<'a, L> {
    pub sink: &'a L,
    pub group: &'a str,
    pub stream: &'a str,
    /// How long a stored event may take to become visible
    /// (`LOGDROP_VISIBILITY_BOUND`).
    pub bound_ms: i64,
    /// No read starts after this (the deadline margin is kept for the checkpoint).
    pub until_ms: i64,
}

/// What reading a batch back found.
#[derive(Debug)]
pub struct Checked {
    pub decision: Decision,
    /// What the last read showed (`None`: it failed, or no read was made).
    pub verdict: Option<Verdict>,
    /// A `Partial` batch's found events, when they are one run `[start,
    /// end)` of it: the rest was refused for its time, as a partial
    /// acceptance does, and is what is left to send (re-stamped).
    pub stored_run: Option<(usize, usize)>,
    /// `GetLogEvents` requests made.
    pub reads: u64,
    /// The last read's error, when it failed.
    pub error: Option<PortError>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl<L: LogSink> Readback<'_, L> {
    /// Reads the batch's window until it decides, at most
    /// `READS_PER_CHECK` times. `sent_before_ms`: no call that may have
    /// stored the batch was made after it; `ingested`: the window of
    /// ingestion times in which those calls may have stored it;
    /// `ambiguous`: other ranges of the file may have been put in that
    /// window too, so a batch found whole is not taken as stored (their
    /// identical lines could make up the count).
    pub async fn check(
        &self,
        batch: &Batch,
        known: &Known,
        sent_before_ms: i64,
        ingested: (i64, i64),
        ambiguous: bool,
    ) -> Checked {
        let mut checked = Checked {
            decision: Decision::Undecided,
            verdict: None,
            stored_run: None,
            reads: 0,
            error: None,
        };
        let Some((from, to)) = window(batch.events().map(|e| (e.timestamp, e.message))) else {
            checked.decision = Decision::Stored;
            return checked;
        };
        for i in 0..READS_PER_CHECK {
            if i > 0 {
                let pause = PAUSES_MS[i - 1];
                if now_ms() + pause as i64 > self.until_ms {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            checked.reads += 1;
            checked.stored_run = None;
            let read = self
                .sink
                .events_between(self.group, self.stream, from, to, ingested)
                .await;
            let pages = batch.events().map(|e| (e.timestamp, e.message));
            (checked.verdict, checked.error) = match read {
                Ok(events) => {
                    let v = match verdict(pages, &events, known) {
                        Verdict::Stored if ambiguous => Verdict::Excess,
                        v => v,
                    };
                    if v == Verdict::Partial {
                        let ours: Vec<(i64, &str)> =
                            batch.events().map(|e| (e.timestamp, e.message)).collect();
                        checked.stored_run = stored_run(&found(&ours, &events, known));
                    }
                    (Some(v), None)
                }
                Err(e) => (None, Some(e)),
            };
            checked.decision = decide(checked.verdict, now_ms(), sent_before_ms, self.bound_ms);
            let permanent = checked.error.as_ref().is_some_and(|e| !e.is_retryable());
            if checked.decision != Decision::Undecided || permanent {
                break;
            }
        }
        checked
    }
}
