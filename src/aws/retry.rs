//! Which SDK failures are worth retrying, decided apart from any retry loop.

use crate::ports::{Failure, PortError};
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

/// How a failed call ended, as far as the caller can tell: the rule, apart
/// from the SDK's types so it is testable without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The service answered with an error.
    Answered { status: Option<u16> },
    /// No connection was made (refused, DNS): the request never left.
    NotSent,
    /// The request may have reached the service: reset, timeout, an answer cut
    /// short or unreadable.
    Unknown,
    /// The request could not even be built or was refused by the client.
    Invalid,
}

/// Classifies a failed call, once the SDK's own retries (if any) are spent.
pub fn classify<E, R>(err: SdkError<E, R>, status: Option<u16>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_string();
    let text = describe(&err);
    let attempt = attempt_of(&err, status);
    decide(attempt, &code, Failure::new(text, err))
}

fn attempt_of<E, R>(err: &SdkError<E, R>, status: Option<u16>) -> Attempt
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(_) => Attempt::Answered { status },
        SdkError::DispatchFailure(d) if d.is_user() => Attempt::Invalid,
        SdkError::DispatchFailure(_) if never_connected(err) => Attempt::NotSent,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Attempt::Unknown
        }
        _ => Attempt::Invalid,
    }
}

/// Whether the error chain holds a refused connection: then nothing was sent.
fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            )
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The rule: what a failed attempt means for the caller.
pub fn decide(attempt: Attempt, code: &str, failure: Failure) -> PortError {
    match attempt {
        Attempt::Answered { status } => classify_service(code, status, failure),
        Attempt::NotSent => PortError::Transient(failure),
        Attempt::Unknown => PortError::Unknown(failure),
        Attempt::Invalid => PortError::Permanent(failure),
    }
}

/// A failed SDK call as a port error, with the HTTP status when there was a response.
pub fn port_error<E>(err: SdkError<E, aws_smithy_runtime_api::http::Response>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    classify(err, status)
}

/// The rule on service errors: an answer says the request was not carried out.
pub fn classify_service(code: &str, status: Option<u16>, failure: Failure) -> PortError {
    if THROTTLING.contains(&code) || matches!(status, Some(429) | Some(500..=599)) {
        PortError::Transient(failure)
    } else if matches!(status, Some(412) | Some(409))
        || code == "PreconditionFailed"
        || code == "ConditionalRequestConflict"
    {
        PortError::Conflict(failure)
    } else if matches!(
        code,
        "NoSuchKey" | "NoSuchBucket" | "ResourceNotFoundException" | "NotFound"
    ) || status == Some(404)
    {
        PortError::NotFound(failure)
    } else {
        PortError::Permanent(failure)
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
        let t = |code: &str, status| classify_service(code, status, Failure::from(""));
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

    #[test]
    fn only_an_answer_or_no_connection_is_surely_not_done() {
        let d = |a| decide(a, "", Failure::from(""));
        assert!(matches!(d(Attempt::NotSent), PortError::Transient(_)));
        assert!(matches!(d(Attempt::Unknown), PortError::Unknown(_)));
        assert!(matches!(d(Attempt::Invalid), PortError::Permanent(_)));
        assert!(matches!(
            d(Attempt::Answered { status: Some(503) }),
            PortError::Transient(_)
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(never_connected(&refused));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!never_connected(&reset));
    }
}
