//! The bytes: the source comes down from S3 to a local file (hashed on the way), the outputs go
//! back up under the job's prefix with the content types players expect.

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use futures::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use coursebus_contracts::content::outputs;

/// Files uploaded at once.
const UPLOAD_CONCURRENCY: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The source object (this key) is not there: permanent, retrying cannot make it appear.
    /// The key stays out of the message, which reaches the uploader.
    #[error("the uploaded file is missing from storage")]
    Missing(String),
    #[error("storage: {0}")]
    S3(String),
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::Missing(_))
    }
}

/// A downloaded source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
}

/// The content type of an output file, by its extension.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).as_deref() {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("vtt") => "text/vtt",
        _ => "application/octet-stream",
    }
}

/// Playlists and manifests go up last, after the segments and pictures they point at.
fn upload_rank(name: &str) -> u8 {
    match name {
        outputs::HLS_MASTER | outputs::DASH_MANIFEST => 2,
        _ if name.ends_with(".m3u8") || name.ends_with(".mpd") => 1,
        _ => 0,
    }
}

/// One bucket of an S3-compatible store.
#[derive(Debug, Clone)]
pub struct Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    /// Stream object `key` into a new file at `dest`, hashing it on the way.
    pub async fn download(&self, key: &str, dest: &Path) -> Result<Downloaded, StoreError> {
        let object = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|err| {
            if err.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                StoreError::Missing(key.to_owned())
            } else {
                StoreError::S3(format!("get {key}: {}", DisplayErrorContext(err)))
            }
        })?;
        let mut body = object.body;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(dest).await?);
        let mut hash = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) =
            body.try_next().await.map_err(|err| StoreError::S3(format!("get {key}: {}", DisplayErrorContext(err))))?
        {
            hash.update(&chunk);
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.into_inner().sync_all().await?;
        Ok(Downloaded { bytes, sha256: hex::encode(hash.finalize()) })
    }

    /// Upload every file under `dir` to `prefix` + its path relative to `dir` (`/`-separated);
    /// the same keys on every run, so a repeated job overwrites its own outputs. Returns the
    /// number of files and their total size.
    pub async fn upload_dir(&self, dir: &Path, prefix: &str) -> Result<(usize, u64), StoreError> {
        let mut files = list_files(dir).await?;
        files.sort_by(|(a, _), (b, _)| upload_rank(a).cmp(&upload_rank(b)).then_with(|| a.cmp(b)));
        let mut total = (0usize, 0u64);
        // Rank by rank, so playlists never reach the store before what they list.
        for rank in 0..=2 {
            let batch: Vec<(String, PathBuf)> =
                files.iter().filter(|(name, _)| upload_rank(name) == rank).cloned().collect();
            let sizes: Vec<u64> = futures::stream::iter(batch)
                .map(|(name, path)| async move {
                    self.upload_file(&path, format!("{prefix}{name}"), content_type(&name)).await
                })
                .buffer_unordered(UPLOAD_CONCURRENCY)
                .try_collect()
                .await?;
            total.0 += sizes.len();
            total.1 += sizes.iter().sum::<u64>();
        }
        Ok(total)
    }

    async fn upload_file(&self, path: &Path, key: String, content_type: &str) -> Result<u64, StoreError> {
        let size = tokio::fs::metadata(path).await?.len();
        let body = ByteStream::from_path(path)
            .await
            .map_err(|err| StoreError::Io(std::io::Error::other(format!("{}: {err}", path.display()))))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map_err(|err| StoreError::S3(format!("put {key}: {}", DisplayErrorContext(err))))?;
        tracing::debug!(key = %key, bytes = size, "output uploaded");
        Ok(size)
    }
}

/// Every regular file under `dir`, as (`/`-separated relative name, path).
async fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, std::io::Error> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((base, folder)) = pending.pop() {
        let mut entries = tokio::fs::read_dir(&folder).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if base.is_empty() { name } else { format!("{base}/{name}") };
            let kind = entry.file_type().await?;
            if kind.is_dir() {
                pending.push((relative, entry.path()));
            } else if kind.is_file() {
                found.push((relative, entry.path()));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("master.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(content_type("manifest.mpd"), "application/dash+xml");
        assert_eq!(content_type("chunk-stream0-00001.m4s"), "video/iso.segment");
        assert_eq!(content_type("poster.jpg"), "image/jpeg");
        assert_eq!(content_type("thumbnails.vtt"), "text/vtt");
        assert_eq!(content_type("README"), "application/octet-stream");
    }

    #[test]
    fn playlists_go_last() {
        let mut names = vec!["master.m3u8", "media_0.m3u8", "chunk-stream0-00001.m4s", "manifest.mpd", "poster.jpg"];
        names.sort_by_key(|n| (upload_rank(n), *n));
        assert_eq!(names, ["chunk-stream0-00001.m4s", "poster.jpg", "media_0.m3u8", "manifest.mpd", "master.m3u8"]);
    }

    #[tokio::test]
    async fn lists_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.m4s"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b.vtt"), b"y").unwrap();
        let mut names: Vec<String> = list_files(dir.path()).await.unwrap().into_iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, ["a.m4s", "sub/b.vtt"]);
    }
}
