//! The SQS adapter of `poll::Queue`. SDK types stay in this file.

use crate::shipper::poll::{Message, Queue, QueueError};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use std::time::Duration;

/// SQS's largest receive, and the Lambda event source mapping's batch size
/// in the template.
const MAX_MESSAGES: i32 = 10;

#[derive(Clone, Debug)]
pub struct Sqs {
    client: Client,
    queue_url: String,
}

impl Sqs {
    /// `wait_seconds` is the long poll's length: an attempt must outlast it,
    /// so the shipper's short attempt timeout is replaced here.
    pub fn new(sdk: &aws_config::SdkConfig, queue_url: &str, wait_seconds: i32) -> Self {
        let conf = aws_sdk_sqs::config::Builder::from(sdk)
            .timeout_config(crate::aws::timeouts::long_poll(wait_seconds))
            .build();
        Sqs {
            client: Client::from_conf(conf),
            queue_url: queue_url.to_string(),
        }
    }

    fn error(
        &self,
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> QueueError {
        QueueError::Call {
            queue: self.queue_url.clone(),
            operation,
            source: Box::new(source),
        }
    }
}

impl Queue for Sqs {
    async fn describe(&self) -> Result<(String, Duration), QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| self.error("GetQueueAttributes", aws_sdk_sqs::Error::from(e)))?;
        let get = |name: QueueAttributeName, attribute: &'static str| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .cloned()
                .ok_or_else(|| QueueError::Attribute {
                    queue: self.queue_url.clone(),
                    attribute,
                })
        };
        let arn = get(QueueAttributeName::QueueArn, "QueueArn")?;
        let visibility = get(QueueAttributeName::VisibilityTimeout, "VisibilityTimeout")?
            .parse::<u64>()
            .map_err(|_| QueueError::Attribute {
                queue: self.queue_url.clone(),
                attribute: "VisibilityTimeout",
            })?;
        Ok((arn, Duration::from_secs(visibility)))
    }

    async fn receive(&self, wait_seconds: i32) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(MAX_MESSAGES)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| self.error("ReceiveMessage", aws_sdk_sqs::Error::from(e)))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                    tracing::warn!(
                        queue = self.queue_url,
                        "a received message without id or receipt handle; ignored"
                    );
                    return None;
                };
                let mut attributes: Vec<(String, String)> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                attributes.sort();
                Some(Message {
                    id: id.to_string(),
                    receipt_handle: receipt.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    attributes,
                })
            })
            .collect())
    }

    async fn delete(&self, messages: &[&Message]) -> Result<Vec<String>, QueueError> {
        // Entry ids are the messages' positions: message ids need not fit
        // the entry id's character set.
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&m.receipt_handle)
                    .build()
                    .map_err(|e| self.error("DeleteMessageBatch", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.error("DeleteMessageBatch", aws_sdk_sqs::Error::from(e)))?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| f.id().parse::<usize>().ok())
            .filter_map(|i| messages.get(i).map(|m| m.id.clone()))
            .collect())
    }
}
