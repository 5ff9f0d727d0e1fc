//! Adapters from the ports to the AWS SDK. SDK types stop here.

pub mod checkpoint_store;
pub mod dynamodb;
pub mod logs;
pub mod retry;
pub mod s3;
pub mod sqs;
pub mod task_metadata;
pub mod timeouts;

/// Shared SDK configuration: region, credentials and endpoint from the
/// environment, plus a retry policy with more patience than the default.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry::sdk_retry_config())
        .load()
        .await
}

/// The shipper's SDK configuration: the shared one plus request timeouts
/// within its deadline margin.
pub async fn shipper_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry::sdk_retry_config())
        .timeout_config(timeouts::shipper())
        .load()
        .await
}
