//! Uploading one chunk, patiently: while S3 is unavailable the data waits in
//! the source file, so retrying forever costs nothing but time.

use crate::ports::{ObjectStore, PortError};
use std::time::{Duration, Instant};

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

/// Puts `body` under `key`, retrying every failure until it succeeds,
/// `max_attempts` (if any) is spent, or `deadline` (if any) would pass: no
/// attempt runs and no backoff sleeps past it. Permanent errors (access
/// denied, no such bucket) are retried too: they are usually fixed by an
/// operator, and the alternative is dropping data.
/// `on_failure` runs after each failed attempt (the metrics count it, and
/// report while the retries last).
pub async fn put_with_retry<S: ObjectStore>(
    store: &S,
    bucket: &str,
    key: &str,
    body: bytes::Bytes,
    max_attempts: Option<u32>,
    deadline: Option<Instant>,
    on_failure: &mut dyn FnMut(),
) -> Result<u32, PortError> {
    let mut attempt = 0u32;
    let out_of_time = || {
        PortError::Transient(
            "the deadline came (the shutdown grace, or the end of a sweeper's run)".into(),
        )
    };
    loop {
        let put = store.put(bucket, key, body.clone());
        let result = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), put)
                .await
                .unwrap_or_else(|_| Err(out_of_time())),
            None => put.await,
        };
        match result {
            Ok(()) => return Ok(attempt),
            Err(e) => {
                attempt += 1;
                on_failure();
                if max_attempts.is_some_and(|m| attempt >= m) {
                    return Err(e);
                }
                let wait = backoff(attempt - 1, fastrand::f64());
                if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                    return Err(e);
                }
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

    /// A store that never answers.
    struct Hung;
    impl ObjectStore for Hung {
        async fn get(&self, _: &str, _: &str) -> Result<crate::ports::Object, PortError> {
            std::future::pending().await
        }
        async fn put(&self, _: &str, _: &str, _: bytes::Bytes) -> Result<(), PortError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn nothing_runs_past_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(200);
        let e = put_with_retry(
            &Hung,
            "b",
            "k",
            bytes::Bytes::new(),
            None,
            Some(deadline),
            &mut || {},
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("grace"), "{e}");
    }
}
