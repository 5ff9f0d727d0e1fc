//! DynamoDB adapter of the checkpoint store: one item per checkpoint document,
//! written with conditional puts (as the Kinesis Client Library keeps its
//! leases). A conditional write costs one write unit per KB instead of an S3
//! PUT, which is about eight times cheaper per write.
//!
//! Item layout (table created with a string partition key `pk`, on-demand,
//! TTL enabled on `expires_at`):
//!
//! | attribute    | type | value |
//! |--------------|------|-------|
//! | `pk`         | S    | `<bucket>/<key>`, e.g. `my-bucket/checkpoints/prod/0f1e….json` |
//! | `doc`        | S    | the checkpoint document's JSON, unchanged (B if a body is not UTF-8) |
//! | `version`    | S    | a random token replaced on every write; the port's "ETag" |
//! | `expires_at` | N    | epoch seconds: time of the write (the document's `updated_at`) plus the TTL |
//!
//! The key keeps the bucket so one table can serve several buckets (or
//! stacks) without two tasks of the same name sharing a document, and so the
//! identity of a checkpoint is the same whichever store holds it.

use crate::ports::{CheckpointStore, Failure, PortError, Precondition};
use crate::shipper::config::CheckpointTable;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::time::Duration;

/// The table's partition key attribute.
pub const PK: &str = "pk";
/// The document: its JSON as a string (binary only if a body is not UTF-8).
pub const DOC: &str = "doc";
/// The token a conditional write compares.
pub const VERSION: &str = "version";
/// DynamoDB TTL attribute, epoch seconds.
pub const EXPIRES_AT: &str = "expires_at";

/// DynamoDB's item size limit (names plus values), 400 KB.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Room kept for `version` and `expires_at` (names and values) in the size check.
const FIXED_ATTRIBUTE_BYTES: usize = 64;

#[derive(Clone)]
pub struct DynamoDb {
    client: Client,
    table: String,
    ttl: Duration,
}

impl DynamoDb {
    /// The adapter for the table the shipper's configuration describes.
    pub fn new(sdk: &aws_config::SdkConfig, config: &CheckpointTable) -> Self {
        DynamoDb {
            client: Client::new(sdk),
            table: config.table.clone(),
            ttl: config.ttl,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn context(&self, pk: &str, e: PortError) -> PortError {
        let at = format!("DynamoDB table {} item {pk}", self.table);
        // Keep the kind and the cause; only say where it happened.
        let with = |f: Failure, hint: &str| Failure {
            what: format!("{at}: {}{hint}", f.what),
            source: f.source,
        };
        match e {
            PortError::NotFound(f) => PortError::NotFound(with(
                f,
                " (does the table named by LOGDROP_CHECKPOINT_TABLE exist?)",
            )),
            PortError::Conflict(f) => PortError::Conflict(with(f, "")),
            PortError::Transient(f) => PortError::Transient(with(f, "")),
            PortError::Unknown(f) => PortError::Unknown(with(f, "")),
            PortError::Permanent(f) => PortError::Permanent(with(f, "")),
        }
    }
}

/// The partition key of a checkpoint document.
pub fn partition_key(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

/// An item's size as DynamoDB counts it, for the attributes that vary.
pub fn item_bytes(pk: &str, doc: &[u8]) -> usize {
    PK.len() + pk.len() + DOC.len() + doc.len() + FIXED_ATTRIBUTE_BYTES
}

/// A fresh version token: 128 random bits, so a document deleted by TTL and
/// created again never reuses a token an old writer might still hold.
fn new_version() -> String {
    format!("{:032x}", fastrand::u128(..))
}

impl CheckpointStore for DynamoDb {
    async fn load(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>, PortError> {
        let pk = partition_key(bucket, key);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk.clone()))
            // A stale read would only cost a conflict and a re-read, but a
            // strongly consistent one costs a single read unit and saves that.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.context(&pk, port_error(e)))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        decode_item(item).map(Some).map_err(|problem| {
            self.context(
                &pk,
                PortError::Permanent(format!("malformed item: {problem}").into()),
            )
        })
    }

    async fn save(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        cond: Precondition,
    ) -> Result<String, PortError> {
        let pk = partition_key(bucket, key);
        let size = item_bytes(&pk, &body);
        if size > MAX_ITEM_BYTES {
            return Err(self.context(
                &pk,
                PortError::Permanent(
                    format!(
                        "the checkpoint of s3://{bucket}/{key} would be a {size}-byte item, over \
                     DynamoDB's {MAX_ITEM_BYTES}-byte limit; use the S3 store (unset \
                     LOGDROP_CHECKPOINT_TABLE) for tasks with this many files"
                    )
                    .into(),
                ),
            ));
        }
        let version = new_version();
        let expires_at = (chrono::Utc::now() + self.ttl).timestamp();
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(pk.clone()))
            .item(DOC, doc_value(body))
            .item(VERSION, AttributeValue::S(version.clone()))
            .item(EXPIRES_AT, AttributeValue::N(expires_at.to_string()));
        let req = match cond {
            Precondition::Absent => req
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
            Precondition::Matches(v) => req
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", AttributeValue::S(v)),
        };
        req.send()
            .await
            .map_err(|e| self.context(&pk, port_error(e)))?;
        Ok(version)
    }
}

// --- SDK conversions -------------------------------------------------------

/// A JSON document (always UTF-8) is stored as a string, readable in the
/// console and counted by its UTF-8 length as the item limit counts it; other
/// bytes, which the port allows, as binary.
fn doc_value(body: Vec<u8>) -> AttributeValue {
    match String::from_utf8(body) {
        Ok(text) => AttributeValue::S(text),
        Err(e) => AttributeValue::B(Blob::new(e.into_bytes())),
    }
}

fn decode_item(
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Result<(Vec<u8>, String), String> {
    let doc = match item.get(DOC) {
        Some(AttributeValue::B(b)) => b.as_ref().to_vec(),
        Some(AttributeValue::S(s)) => s.as_bytes().to_vec(),
        Some(_) => return Err(format!("`{DOC}` is neither binary nor string")),
        None => return Err(format!("no `{DOC}` attribute")),
    };
    let version = match item.get(VERSION) {
        Some(AttributeValue::S(s)) => s.clone(),
        Some(AttributeValue::N(n)) => n.clone(),
        _ => return Err(format!("no string `{VERSION}` attribute")),
    };
    Ok((doc, version))
}

/// DynamoDB reports a failed condition as a 400 with its own code, and
/// throttling as 400s too: name those before the generic rule.
fn port_error<E>(e: SdkError<E, aws_smithy_runtime_api::http::Response>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or_default().to_string();
    match classify_dynamodb(&code) {
        Some(make) => make(Failure::new(describe(&e), e)),
        None => crate::aws::retry::port_error(e),
    }
}

/// The DynamoDB error codes whose meaning the generic rule would miss.
pub fn classify_dynamodb(code: &str) -> Option<fn(Failure) -> PortError> {
    match code {
        "ConditionalCheckFailedException" | "TransactionConflictException" => {
            Some(PortError::Conflict)
        }
        "ProvisionedThroughputExceededException"
        | "RequestLimitExceeded"
        | "ThrottlingException"
        | "LimitExceededException"
        | "InternalServerError"
        | "ServiceUnavailable" => Some(PortError::Transient),
        "ResourceNotFoundException" => Some(PortError::NotFound),
        _ => None,
    }
}

fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_dynamodb_codes() {
        let c = |code: &str| classify_dynamodb(code).map(|f| f("".into()).kind());
        assert_eq!(c("ConditionalCheckFailedException"), Some("conflict"));
        assert_eq!(
            c("ProvisionedThroughputExceededException"),
            Some("transient")
        );
        assert_eq!(c("ResourceNotFoundException"), Some("not_found"));
        assert_eq!(c("ValidationException"), None);
    }

    #[test]
    fn decodes_items() {
        let item = |doc: AttributeValue, v: AttributeValue| {
            [(DOC.to_string(), doc), (VERSION.to_string(), v)]
                .into_iter()
                .collect()
        };
        let s = |x: &str| AttributeValue::S(x.into());
        assert_eq!(
            decode_item(&item(AttributeValue::B(Blob::new(b"{}".to_vec())), s("v1"))),
            Ok((b"{}".to_vec(), "v1".into()))
        );
        assert_eq!(
            decode_item(&item(s("{}"), AttributeValue::N("3".into()))),
            Ok((b"{}".to_vec(), "3".into()))
        );
        assert!(decode_item(&item(AttributeValue::Bool(true), s("v"))).is_err());
        assert!(decode_item(&Default::default()).is_err());
    }

    #[test]
    fn versions_differ() {
        assert_ne!(new_version(), new_version());
        assert_eq!(new_version().len(), 32);
    }
}
