//! S3 adapter: chunk objects (streamed) and checkpoint documents (conditional writes).

use crate::aws::retry::port_error;
use crate::core::keys::{LAYOUT_VERSION, VERSION_METADATA};
use crate::ports::{CheckpointStore, Failure, Object, ObjectStore, PortError, Precondition};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

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
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/gzip")
            .metadata(VERSION_METADATA, layout_of(key))
            .body(ByteStream::from(body))
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
