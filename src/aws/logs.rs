//! CloudWatch Logs adapter.

use crate::aws::retry::port_error;
use crate::core::batch::Batch;
use crate::ports::{Failure, LogSink, PortError, Rejected};
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

#[derive(Clone)]
pub struct CloudWatchLogs {
    client: Client,
}

impl CloudWatchLogs {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        CloudWatchLogs {
            client: Client::new(sdk),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn already_exists<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool {
    err.code() == Some("ResourceAlreadyExistsException")
}

/// Pages of one read-back at most: a batch's window holds at most its own
/// 10,000 events and its neighbours' at the edges, a page up to 10,000.
/// A window that needs more is read as failed rather than endlessly.
const MAX_READ_PAGES: usize = 100;

fn index(i: Option<i32>) -> Option<usize> {
    i.and_then(|i| usize::try_from(i).ok())
}

impl LogSink for CloudWatchLogs {
    async fn put(&self, group: &str, stream: &str, batch: &Batch) -> Result<Rejected, PortError> {
        let events = batch
            .events()
            .map(|e| {
                InputLogEvent::builder()
                    .timestamp(e.timestamp)
                    .message(e.message)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::Permanent(Failure::new("building the request", e)))?;
        let out = self
            .client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            // No blind retries: CloudWatch Logs has no idempotency token, so a
            // retried call whose answer was lost stores its events twice. The
            // caller retries by the outcome (`PortError::Unknown` at most once).
            .customize()
            .config_override(
                aws_sdk_cloudwatchlogs::config::Builder::default()
                    .retry_config(aws_smithy_types::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(port_error)?;
        Ok(out
            .rejected_log_events_info()
            .map_or_else(Rejected::default, |r| Rejected {
                too_new_start: index(r.too_new_log_event_start_index()),
                too_old_end: index(r.too_old_log_event_end_index()),
                expired_end: index(r.expired_log_event_end_index()),
            }))
    }

    async fn create_group(
        &self,
        group: &str,
        retention_days: Option<u32>,
    ) -> Result<(), PortError> {
        match self
            .client
            .create_log_group()
            .log_group_name(group)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if already_exists(&e) => return Ok(()),
            Err(e) => return Err(port_error(e)),
        }
        if let Some(days) = retention_days {
            let days = i32::try_from(days)
                .map_err(|_| PortError::Permanent(format!("retention {days} days").into()))?;
            self.client
                .put_retention_policy()
                .log_group_name(group)
                .retention_in_days(days)
                .send()
                .await
                .map_err(port_error)?;
        }
        Ok(())
    }

    async fn create_stream(&self, group: &str, stream: &str) -> Result<(), PortError> {
        match self
            .client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if already_exists(&e) => Ok(()),
            Err(e) => Err(port_error(e)),
        }
    }

    /// `GetLogEvents` from the head of the window, page by page until the
    /// forward token comes back unchanged (the API's end mark; a page may be
    /// empty before the end). The API's `endTime` excludes its own
    /// millisecond, so `to_ms + 1` is asked for; moto includes it, so what
    /// comes back is filtered to the window again.
    async fn events_between(
        &self,
        group: &str,
        stream: &str,
        from_ms: i64,
        to_ms: i64,
        ingested: (i64, i64),
    ) -> Result<Vec<(i64, String)>, PortError> {
        let (since, until) = ingested;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_READ_PAGES {
            let page = self
                .client
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_time(from_ms)
                .end_time(to_ms.saturating_add(1))
                .start_from_head(true)
                .set_next_token(token.clone())
                .send()
                .await;
            let page = match page.map_err(port_error) {
                Ok(p) => p,
                // No stream: nothing of it was ever stored.
                Err(PortError::NotFound(_)) => return Ok(out),
                Err(e) => return Err(e),
            };
            out.extend(
                (page.events().iter())
                    .filter(|e| {
                        e.ingestion_time()
                            .is_none_or(|i| (since..=until).contains(&i))
                    })
                    .filter_map(|e| Some((e.timestamp()?, e.message()?.to_string())))
                    .filter(|(t, _)| (from_ms..=to_ms).contains(t)),
            );
            let next = page.next_forward_token().map(str::to_string);
            if next.is_none() || next == token {
                return Ok(out);
            }
            token = next;
        }
        Err(PortError::Transient(Failure::from(format!(
            "GetLogEvents {group}/{stream} [{from_ms}, {to_ms}]: more than {MAX_READ_PAGES} pages"
        ))))
    }
}
