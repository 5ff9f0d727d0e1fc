//! The long-running loop: passes until the shutdown future completes, then a
//! drain within the grace; and the periodic summary line.

use super::{Mode, Sidecar};
use crate::ports::ObjectStore;
use std::future::Future;
use std::time::Instant;

impl<S: ObjectStore> Sidecar<S> {
    /// Follows the files until `shutdown` completes, then ships what is held
    /// within the shutdown grace. Returns what stayed behind (empty: nothing).
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> String {
        tokio::pin!(shutdown);
        let config = self.ctx.config.clone();
        let mut last_summary = Instant::now();
        let mut last_error: Option<(String, Instant)> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                r = async {
                    tokio::time::sleep(config.poll_interval).await;
                    self.pass(Mode::Follow).await
                } => if let Err(e) = r {
                    if matches!(e, crate::sidecar::SidecarError::State(_)) {
                        self.ctx.totals.state_failures += 1;
                    }
                    // Logged when it changes, then once a minute, not every poll.
                    let text = e.to_string();
                    let quiet = last_error.as_ref().is_some_and(|(t, at)| {
                        *t == text && at.elapsed() < std::time::Duration::from_secs(60)
                    });
                    if !quiet {
                        tracing::error!(error = text, "pass failed; retrying");
                        last_error = Some((text, Instant::now()));
                    }
                },
            }
            self.beat();
            if last_summary.elapsed() >= config.summary_interval {
                self.summary();
                last_summary = Instant::now();
            }
        }
        self.stop().await
    }

    /// Ships everything held, within the shutdown grace; the last line names
    /// what stayed behind.
    pub async fn stop(&mut self) -> String {
        let grace = self.ctx.config.shutdown_grace;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "stopping: shipping everything held"
        );
        let deadline = Instant::now() + grace;
        self.ctx.deadline = Some(deadline);
        match tokio::time::timeout_at(deadline.into(), self.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not ship everything before stopping"),
            Err(_) => tracing::error!("the shutdown grace ran out"),
        }
        self.summary();
        if let Some(o) = &mut self.owner
            && let Err(e) = o.stopped(&mut self.state)
        {
            tracing::error!(error = %e, "cannot record the stop in the owner record; a sweeper takes the directory once the heartbeat is stale");
        }
        let left = self.left_behind();
        if left.is_empty() {
            tracing::info!("stopped; everything seen was shipped");
        } else {
            tracing::error!(
                left,
                "stopped with data not shipped: a stopped task does not restart, so unless a sidecar reads this volume again it is lost"
            );
        }
        left
    }

    /// Rewrites the owner record on EFS when a heartbeat is due.
    fn beat(&mut self) {
        if let Some(o) = &mut self.owner
            && let Err(e) = o.beat(&mut self.state)
        {
            tracing::error!(error = %e, "cannot write the owner record; a sweeper may take the directory once the heartbeat is stale");
        }
    }

    /// The summary line, and the metrics line beside it.
    pub fn summary(&mut self) {
        let t = self.ctx.totals;
        let (now, every) = (self.ctx.now(), self.ctx.config.summary_interval);
        let ctx = &mut self.ctx;
        ctx.reporter.report(&ctx.cluster, now, &t, every, true);
        tracing::info!(
            bytes = t.bytes,
            chunks = t.chunks,
            failed_attempts = t.failed_attempts,
            forced_cuts = t.forced_cuts,
            lag_bytes = self.lag_bytes(),
            files = self.followed_files(),
            "summary"
        );
    }
}
