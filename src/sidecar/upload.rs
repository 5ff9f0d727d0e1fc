//! Uploading one chunk, patiently: while S3 is unavailable the data waits in
//! the source file, so retrying forever costs nothing but time.

use crate::ports::{ObjectStore, PortError};
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Exponential backoff with full jitter: attempt 0 waits up to 200 ms, then
/// doubling, never more than 30 s. `unit` is a random number in `[0, 1)`.
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    let cap = FIRST_DELAY
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_DELAY);
    cap.mul_f64(unit.clamp(0.0, 1.0))
}

/// Puts `body` under `key`, retrying every failure until it succeeds or
/// `max_attempts` (if any) is spent. Permanent errors (access denied, no such
/// bucket) are retried too: they are usually fixed by an operator, and the
/// alternative is dropping data.
pub async fn put_with_retry<S: ObjectStore>(
    store: &S,
    bucket: &str,
    key: &str,
    body: bytes::Bytes,
    max_attempts: Option<u32>,
) -> Result<u32, PortError> {
    let mut attempt = 0u32;
    loop {
        match store.put(bucket, key, body.clone()).await {
            Ok(()) => return Ok(attempt),
            Err(e) => {
                attempt += 1;
                if max_attempts.is_some_and(|m| attempt >= m) {
                    return Err(e);
                }
                let wait = backoff(attempt - 1, fastrand::f64());
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(key, attempt, error = %e, retry_in_ms = wait.as_millis() as u64, "upload failed; retrying");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(
            backoff(0, 0.999_999),
            Duration::from_millis(200).mul_f64(0.999_999)
        );
        assert_eq!(backoff(3, 0.5), Duration::from_millis(800));
        assert_eq!(backoff(40, 1.0), MAX_DELAY);
        assert_eq!(backoff(2, 0.0), Duration::ZERO);
    }
}
