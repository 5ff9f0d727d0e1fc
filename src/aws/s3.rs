//! S3 adapter: chunk objects (streamed), checkpoint documents (conditional
//! writes), and the audit's view of a bucket (listing, lifecycle, ranged reads).

use crate::aws::retry::port_error;
use crate::core::keys::{LAYOUT_VERSION, VERSION_METADATA};
use crate::ports::{
    BucketIndex, CheckpointStore, ExpiryAfter, ExpiryRule, Failure, ListPage, Listed, Object,
    ObjectStore, PortError, Precondition,
};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ExpirationStatus, LifecycleRule};

#[derive(Clone)]
pub struct S3 {
    client: Client,
}

impl S3 {
    /// With a custom endpoint (`AWS_ENDPOINT_URL`, a local emulator) S3 is
    /// addressed path-style, since such endpoints have no per-bucket host names.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        S3 {
            client: Client::from_conf(conf),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, PortError> {
        self.client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(port_error)
    }
}

impl ObjectStore for S3 {
    async fn get(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        let out = self.get_object(bucket, key).await?;
        let last_modified_ms = out.last_modified().and_then(|t| t.to_millis().ok());
        let body = futures::stream::unfold(out.body, |mut body: ByteStream| async move {
            match body.try_next().await {
                Ok(Some(bytes)) => Some((Ok(bytes), body)),
                Ok(None) => None,
                Err(e) => Some((
                    Err(PortError::Transient(Failure::new("reading the body", e))),
                    body,
                )),
            }
        });
        Ok(Object {
            last_modified_ms,
            body: Box::pin(body),
        })
    }

    async fn put(&self, bucket: &str, key: &str, body: bytes::Bytes) -> Result<(), PortError> {
        // The body's CRC32 goes in a signed header, whatever the SDK's
        // checksum setting, and S3 refuses a body that does not match it.
        let mut crc = flate2::Crc::new();
        crc.update(&body);
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/gzip")
            .metadata(VERSION_METADATA, layout_of(key))
            .checksum_crc32(aws_smithy_types::base64::encode(crc.sum().to_be_bytes()))
            .body(ByteStream::from(body))
            // Not hashed into the signature, as AWS's SDKs do for S3 over
            // HTTPS (the bucket policy allows nothing else): the checksum and
            // TLS guard the body, and SHA-256 over every segment cost the
            // static sidecar half its CPU (README, Sidecar).
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(port_error)?;
        Ok(())
    }
}

/// The `logdrop-version` stamp of an upload: `2` for a task segment, `1` for a
/// v1 chunk. The prefix is whatever precedes the segment's four components.
fn layout_of(key: &str) -> &'static str {
    let prefix = key.rsplitn(5, '/').nth(4).unwrap_or_default();
    match crate::core::segment::SegmentKey::parse(key, prefix) {
        Ok(_) => "2",
        Err(_) => LAYOUT_VERSION,
    }
}

impl CheckpointStore for S3 {
    async fn load(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>, PortError> {
        let out = match self.get_object(bucket, key).await {
            Ok(out) => out,
            Err(PortError::NotFound(f)) if !f.what.contains("NoSuchBucket") => return Ok(None),
            Err(e) => return Err(e),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::Transient(Failure::new(format!("reading {key}"), e)))?;
        Ok(Some((body.to_vec(), etag)))
    }

    async fn save(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        cond: Precondition,
    ) -> Result<String, PortError> {
        let req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let req = match cond {
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Matches(etag) => req.if_match(etag),
        };
        let out = req.send().await.map_err(port_error)?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }
}

impl BucketIndex for S3 {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<String>,
    ) -> Result<ListPage, PortError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(port_error)?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_string(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok())?,
                })
            })
            .collect();
        let next = out
            .is_truncated()
            .unwrap_or(false)
            .then(|| out.next_continuation_token().map(str::to_string))
            .flatten();
        Ok(ListPage { objects, next })
    }

    async fn expiry_rules(&self, bucket: &str) -> Result<Vec<ExpiryRule>, PortError> {
        let out = match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out,
            // No configuration at all: nothing ever expires.
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => return Ok(Vec::new()),
            Err(e) => return Err(port_error(e)),
        };
        Ok(out.rules().iter().filter_map(expiry_rule).collect())
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<bytes::Bytes, PortError> {
        let last = start + len.max(1) - 1;
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={start}-{last}"))
            .send()
            .await
            .map_err(port_error)?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::Transient(Failure::new(format!("reading {key}"), e)))?;
        Ok(body.into_bytes())
    }
}

/// An enabled rule that expires current objects, as far as a listing can
/// check it; `None` for disabled rules and rules that only transition, clean
/// up old versions or abort uploads.
fn expiry_rule(rule: &LifecycleRule) -> Option<ExpiryRule> {
    if *rule.status() != ExpirationStatus::Enabled {
        return None;
    }
    let exp = rule.expiration()?;
    let after = match (exp.days(), exp.date()) {
        (Some(d), _) => ExpiryAfter::Days(u32::try_from(d).ok()?),
        (None, Some(t)) => ExpiryAfter::Date(t.to_millis().ok()?),
        (None, None) => return None,
    };
    let size = |s: Option<i64>| s.and_then(|s| u64::try_from(s).ok());
    let filter = rule.filter();
    let and = filter.and_then(|f| f.and());
    // Deprecated, but rules written before filters existed still carry it.
    #[allow(deprecated)]
    let legacy = rule.prefix();
    let prefix = (filter.and_then(|f| f.prefix()))
        .or_else(|| and.and_then(|a| a.prefix()))
        .or(legacy)
        .unwrap_or_default();
    Some(ExpiryRule {
        prefix: prefix.to_string(),
        size_greater_than: size(filter.and_then(|f| f.object_size_greater_than()))
            .or_else(|| size(and.and_then(|a| a.object_size_greater_than()))),
        size_less_than: size(filter.and_then(|f| f.object_size_less_than()))
            .or_else(|| size(and.and_then(|a| a.object_size_less_than()))),
        after,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_stamped_2_and_chunks_1() {
        assert_eq!(
            super::layout_of("logs/prod/t1/segment/000000000000042.gz"),
            "2"
        );
        assert_eq!(
            super::layout_of("a/b/prod/t1/segment/000000000000042.gz"),
            "2"
        );
        assert_eq!(
            super::layout_of("logs/prod/t1/f.log/0/000000000000000-000000000000010.gz"),
            "1"
        );
        assert_eq!(super::layout_of("segment/000000000000042.gz"), "1");
    }
}
