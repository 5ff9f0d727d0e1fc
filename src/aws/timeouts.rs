//! Request timeouts. The SDK's default is a connect timeout only, so an
//! answer that never comes would hold an invocation until Lambda kills it,
//! with nothing recorded. Each attempt and each operation (its retries
//! included) has a limit that fits inside the shipper's deadline margin, so a
//! call started before the margin ends before the deadline and the final
//! checkpoint write still has its time.

use crate::shipper::invocation::DEFAULT_DEADLINE_MARGIN_MS;
use aws_config::timeout::TimeoutConfig;
use std::time::Duration;

pub const CONNECT: Duration = Duration::from_secs(2);
/// One attempt: a 1 MiB `PutLogEvents` or a checkpoint write takes well under a second.
pub const ATTEMPT: Duration = Duration::from_secs(4);

/// The shipper's timeouts: the whole operation within the deadline margin.
pub fn shipper() -> TimeoutConfig {
    let margin = Duration::from_millis(DEFAULT_DEADLINE_MARGIN_MS as u64);
    TimeoutConfig::builder()
        .connect_timeout(CONNECT)
        .operation_attempt_timeout(ATTEMPT)
        .operation_timeout(margin - Duration::from_secs(1))
        .build()
}

/// The sidecar's (and the sweeper's) S3 client: without a limit a request
/// whose answer never comes blocks every file. An attempt may take `attempt`;
/// the SDK's retries of one call, three times that.
pub fn sidecar(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(attempt.min(Duration::from_secs(5)))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt.saturating_mul(3))
        .build()
}

/// An SQS long poll of `wait_seconds`: each attempt may take that long plus
/// the usual allowance; a receive that never answers still ends.
pub fn long_poll(wait_seconds: i32) -> TimeoutConfig {
    let wait = Duration::from_secs(u64::try_from(wait_seconds).unwrap_or(0));
    TimeoutConfig::builder()
        .connect_timeout(CONNECT)
        .operation_attempt_timeout(wait + ATTEMPT)
        .operation_timeout(wait + 3 * ATTEMPT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_fits_in_the_margin() {
        let t = shipper();
        let margin = Duration::from_millis(DEFAULT_DEADLINE_MARGIN_MS as u64);
        assert!(t.operation_timeout().is_some_and(|o| o < margin));
        assert!(t.operation_attempt_timeout().is_some_and(|a| a < margin));
        assert_eq!(t.connect_timeout(), Some(CONNECT));
    }

    #[test]
    fn a_long_poll_outlasts_its_wait() {
        let t = long_poll(20);
        assert!(
            t.operation_attempt_timeout()
                .is_some_and(|a| a > Duration::from_secs(20))
        );
    }
}
