//! S3 access of the content worker: multipart uploads, presigned URLs, small text objects.

use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use coursebus_bus::s3::S3Config;

/// A storage call failed (the reason is for logs, never for clients).
#[derive(Debug, thiserror::Error)]
#[error("S3 {operation}: {reason}")]
pub struct StorageError {
    pub operation: &'static str,
    pub reason: String,
}

fn fail<E: std::error::Error + 'static>(operation: &'static str) -> impl FnOnce(E) -> StorageError {
    move |err| StorageError { operation, reason: DisplayErrorContext(err).to_string() }
}

/// A part S3 holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub number: u32,
    pub size: u64,
    pub etag: Option<String>,
}

/// The bucket, the client for our own calls, and the one that signs URLs for clients.
#[derive(Debug, Clone)]
pub struct Objects {
    bucket: String,
    client: aws_sdk_s3::Client,
    presigner: aws_sdk_s3::Client,
}

impl Objects {
    pub fn new(config: &S3Config) -> Self {
        Self { bucket: config.bucket.clone(), client: config.client(), presigner: config.presigning_client() }
    }

    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        disposition: &str,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_disposition(disposition)
            .send()
            .await
            .map_err(fail("CreateMultipartUpload"))?;
        out.upload_id.ok_or_else(|| StorageError { operation: "CreateMultipartUpload", reason: "no upload id".into() })
    }

    pub async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        ttl: Duration,
    ) -> Result<String, StorageError> {
        let config = PresigningConfig::expires_in(ttl).map_err(fail("presign UploadPart"))?;
        let request = self
            .presigner
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(i32::try_from(part).unwrap_or(i32::MAX))
            .presigned(config)
            .await
            .map_err(fail("presign UploadPart"))?;
        Ok(request.uri().to_owned())
    }

    /// The parts of an upload in part order; `None` when S3 knows no such upload.
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<StoredPart>>, StorageError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let result = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(err) if err.as_service_error().and_then(|e| e.code()) == Some("NoSuchUpload") => return Ok(None),
                Err(err) => return Err(fail("ListParts")(err)),
            };
            for part in out.parts() {
                parts.push(StoredPart {
                    number: part.part_number().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                    size: part.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: part.e_tag().map(str::to_owned),
                });
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(Some(parts))
    }

    pub async fn complete(&self, key: &str, upload_id: &str, parts: &[StoredPart]) -> Result<(), StorageError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(i32::try_from(p.number).unwrap_or(i32::MAX))
                            .set_e_tag(p.etag.clone())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(fail("CompleteMultipartUpload"))?;
        Ok(())
    }

    /// Abort an upload and drop its parts (an upload S3 no longer knows is fine).
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().and_then(|e| e.code()) == Some("NoSuchUpload") => Ok(()),
            Err(err) => Err(fail("AbortMultipartUpload")(err)),
        }
    }

    /// `(size, etag)` of an object, `None` if it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some((
                out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                out.e_tag().map(|e| e.trim_matches('"').to_owned()),
            ))),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(fail("HeadObject")(err)),
        }
    }

    /// A presigned GET, as an attachment named `disposition` when given.
    pub async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
        disposition: Option<&str>,
    ) -> Result<String, StorageError> {
        let config = PresigningConfig::expires_in(ttl).map_err(fail("presign GetObject"))?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_response_content_disposition(disposition.map(str::to_owned))
            .presigned(config)
            .await
            .map_err(fail("presign GetObject"))?;
        Ok(request.uri().to_owned())
    }

    /// A small text object; `None` if it does not exist.
    pub async fn get_text(&self, key: &str) -> Result<Option<String>, StorageError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(err) => return Err(fail("GetObject")(err)),
        };
        let bytes = out.body.collect().await.map_err(fail("GetObject body"))?.into_bytes();
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| StorageError { operation: "GetObject", reason: format!("{key} is not UTF-8") })
    }

    pub async fn put_text(&self, key: &str, body: String, content_type: &str) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .map_err(fail("PutObject"))?;
        Ok(())
    }
}
