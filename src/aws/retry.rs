//! Which SDK failures are worth retrying, decided apart from any retry loop.

use crate::ports::PortError;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use std::time::Duration;

/// The SDK retries throttling, 5xx and transient network errors itself, with
/// exponential backoff and full jitter; this only gives it more attempts.
pub fn sdk_retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(6)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5))
}

const THROTTLING: [&str; 6] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
];

/// Classifies a failed call, once the SDK's own retries are spent.
pub fn classify<E, R>(err: &SdkError<E, R>, status: Option<u16>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().unwrap_or_default();
    let text = describe(err);
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PortError::Transient(text)
        }
        SdkError::ServiceError(_) => classify_service(code, status, text),
        _ => PortError::Permanent(text),
    }
}

/// A failed SDK call as a port error, with the HTTP status when there was a response.
pub fn port_error<E>(err: SdkError<E, aws_smithy_runtime_api::http::Response>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    classify(&err, status)
}

/// The rule on service errors, separate so it is testable without the SDK.
pub fn classify_service(code: &str, status: Option<u16>, text: String) -> PortError {
    if THROTTLING.contains(&code) || matches!(status, Some(429) | Some(500..=599)) {
        PortError::Transient(text)
    } else if matches!(status, Some(412) | Some(409))
        || code == "PreconditionFailed"
        || code == "ConditionalRequestConflict"
    {
        PortError::Conflict(text)
    } else if matches!(
        code,
        "NoSuchKey" | "NoSuchBucket" | "ResourceNotFoundException" | "NotFound"
    ) || status == Some(404)
    {
        PortError::NotFound(text)
    } else {
        PortError::Permanent(text)
    }
}

fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match (err.code(), err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => aws_smithy_types::error::display::DisplayErrorContext(err).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_service_errors() {
        let t = |code: &str, status| classify_service(code, status, String::new());
        assert!(matches!(
            t("ThrottlingException", Some(400)),
            PortError::Transient(_)
        ));
        assert!(matches!(
            t("InternalError", Some(503)),
            PortError::Transient(_)
        ));
        assert!(matches!(
            t("PreconditionFailed", Some(412)),
            PortError::Conflict(_)
        ));
        assert!(matches!(t("", Some(409)), PortError::Conflict(_)));
        assert!(matches!(t("NoSuchKey", Some(404)), PortError::NotFound(_)));
        assert!(matches!(
            t("ResourceNotFoundException", Some(400)),
            PortError::NotFound(_)
        ));
        assert!(matches!(
            t("AccessDenied", Some(403)),
            PortError::Permanent(_)
        ));
        assert!(matches!(
            t("InvalidParameterException", Some(400)),
            PortError::Permanent(_)
        ));
    }
}
