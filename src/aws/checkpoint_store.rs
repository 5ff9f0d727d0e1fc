//! The checkpoint store the shipper is configured with: S3 (the reference,
//! no table to create) or DynamoDB (`LOGDROP_CHECKPOINT_TABLE` set; cheaper
//! per write). Both keep the same documents with the same semantics.

use crate::aws::dynamodb::DynamoDb;
use crate::aws::s3::S3;
use crate::config::{ConfigError, Env};
use crate::ports::{CheckpointStore, PortError, Precondition};
use crate::shipper::config::CheckpointTable;

#[derive(Clone)]
pub enum AnyCheckpointStore {
    S3(S3),
    DynamoDb(DynamoDb),
}

impl AnyCheckpointStore {
    /// Chooses the store from `LOGDROP_CHECKPOINT_TABLE`; a bad value is an
    /// error naming its variable.
    pub fn from_env(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(sdk, CheckpointTable::from_env(env)?.as_ref()))
    }

    /// The store the shipper's configuration describes (`Config::checkpoint_table`).
    pub fn new(sdk: &aws_config::SdkConfig, table: Option<&CheckpointTable>) -> Self {
        match table {
            Some(table) => AnyCheckpointStore::DynamoDb(DynamoDb::new(sdk, table)),
            None => AnyCheckpointStore::S3(S3::new(sdk)),
        }
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            AnyCheckpointStore::S3(_) => "s3".into(),
            AnyCheckpointStore::DynamoDb(d) => format!("dynamodb:{}", d.table()),
        }
    }
}

impl CheckpointStore for AnyCheckpointStore {
    async fn load(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>, PortError> {
        match self {
            AnyCheckpointStore::S3(s) => s.load(bucket, key).await,
            AnyCheckpointStore::DynamoDb(d) => d.load(bucket, key).await,
        }
    }

    async fn save(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        cond: Precondition,
    ) -> Result<String, PortError> {
        match self {
            AnyCheckpointStore::S3(s) => s.save(bucket, key, body, cond).await,
            AnyCheckpointStore::DynamoDb(d) => d.save(bucket, key, body, cond).await,
        }
    }
}
