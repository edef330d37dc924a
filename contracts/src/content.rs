//! Content messages: lesson assets, presigned multipart uploads, downloads, playback grants,
//! captions, and content events; and the media jobs and events of transcoding.
//!
//! Bytes never travel on the bus: clients send parts straight to S3 with presigned URLs and
//! fetch segments from S3 the same way. Only metadata, playlists and captions (small text) do.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ErrorBody;
use crate::event::Event;
use crate::rpc::{Empty, rpc};
use crate::subjects::{content as subj, media};

const MIB: u64 = 1024 * 1024;

/// What an asset is for; each kind has its own size and content-type limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// A lesson video: transcoded to HLS and DASH after upload.
    Video,
    /// A PDF handout.
    Document,
    /// An image for an article or a course cover.
    Image,
    /// A downloadable resource (archives, data sets, text).
    File,
    /// A learner's assignment file: uploaded by an enrolled learner, read only by its uploader,
    /// the course's instructor and admins.
    Submission,
}

impl AssetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Video => "video",
            AssetKind::Document => "document",
            AssetKind::Image => "image",
            AssetKind::File => "file",
            AssetKind::Submission => "submission",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "video" => Some(AssetKind::Video),
            "document" => Some(AssetKind::Document),
            "image" => Some(AssetKind::Image),
            "file" => Some(AssetKind::File),
            "submission" => Some(AssetKind::Submission),
            _ => None,
        }
    }

    /// The largest upload of this kind, in bytes.
    pub fn max_bytes(self) -> u64 {
        match self {
            AssetKind::Video => 10 * 1024 * MIB,
            AssetKind::Document => 200 * MIB,
            AssetKind::Image => 20 * MIB,
            AssetKind::File => 2 * 1024 * MIB,
            AssetKind::Submission => 100 * MIB,
        }
    }

    /// The content types accepted for this kind. Nothing a browser would run (HTML, SVG,
    /// JavaScript) is accepted: downloads come from the storage's own origin.
    pub fn content_types(self) -> &'static [&'static str] {
        match self {
            AssetKind::Video => &["video/mp4", "video/quicktime", "video/webm", "video/x-matroska"],
            AssetKind::Document => &["application/pdf"],
            AssetKind::Image => &["image/png", "image/jpeg", "image/webp", "image/gif"],
            AssetKind::File => &[
                "application/pdf",
                "application/zip",
                "application/gzip",
                "application/x-tar",
                "application/json",
                "application/octet-stream",
                "text/plain",
                "text/csv",
                "text/markdown",
            ],
            AssetKind::Submission => &[
                "application/pdf",
                "application/zip",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.oasis.opendocument.text",
                "text/plain",
                "text/markdown",
                "image/png",
                "image/jpeg",
            ],
        }
    }
}

/// Where an asset stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetStatus {
    /// Parts are being uploaded.
    Uploading,
    /// All bytes are in S3 (a video waits for its transcode job).
    Uploaded,
    /// A media replica is transcoding it.
    Processing,
    /// Ready to download or play.
    Ready,
    /// Transcoding failed; `failure_reason` says why.
    Failed,
    /// The upload was abandoned; S3 holds none of its parts.
    Aborted,
}

impl AssetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetStatus::Uploading => "uploading",
            AssetStatus::Uploaded => "uploaded",
            AssetStatus::Processing => "processing",
            AssetStatus::Ready => "ready",
            AssetStatus::Failed => "failed",
            AssetStatus::Aborted => "aborted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "uploading" => Some(AssetStatus::Uploading),
            "uploaded" => Some(AssetStatus::Uploaded),
            "processing" => Some(AssetStatus::Processing),
            "ready" => Some(AssetStatus::Ready),
            "failed" => Some(AssetStatus::Failed),
            "aborted" => Some(AssetStatus::Aborted),
            _ => None,
        }
    }
}

/// One rung of a video's adaptive ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    /// Peak video bitrate, bits per second.
    pub bandwidth: u64,
    /// The HLS media playlist of this rung, relative to the playback root.
    pub playlist: String,
}

/// Captions of one language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Caption {
    /// BCP 47 language tag (`en`, `pt-BR`).
    pub lang: String,
    /// What players show in their captions menu.
    pub label: String,
}

/// An asset as its owner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Asset {
    pub id: Uuid,
    pub course_id: Uuid,
    pub owner_id: Uuid,
    pub kind: AssetKind,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub status: AssetStatus,
    /// Why the asset failed (`status = failed`).
    pub failure_reason: Option<String>,
    /// How far transcoding got, 0 to 100 (videos).
    pub progress_percent: u8,
    /// SHA-256 of the uploaded bytes, hex (known once media or content read them).
    pub sha256: Option<String>,
    /// S3's entity tag of the uploaded object.
    pub etag: Option<String>,
    pub duration_seconds: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub renditions: Vec<Rendition>,
    pub captions: Vec<Caption>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// `POST /v1/courses/{course}/assets`: start uploading an asset of a course one owns.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAssetRequest {
    /// Set by the gateway from the path.
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    pub kind: AssetKind,
    /// The client's file name, kept for downloads (never used as a storage key). 1-255 characters.
    pub filename: String,
    pub content_type: String,
    /// The exact size of the file, in bytes.
    pub size_bytes: u64,
}

/// The asset and how to send its bytes: `part_count` parts of `part_size` bytes (the last one
/// shorter), each to a URL from `POST /v1/assets/{id}/upload/parts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetUpload {
    pub asset: Asset,
    pub part_size: u64,
    pub part_count: u32,
}

/// An asset, by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetIdRequest {
    pub asset_id: Uuid,
}

/// A course's assets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseAssetsRequest {
    pub course_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetList {
    pub items: Vec<Asset>,
}

/// `POST /v1/assets/{id}/upload/parts`: presigned URLs for these part numbers (1-based).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadPartsRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub asset_id: Uuid,
    /// At most 100 per call.
    pub part_numbers: Vec<u32>,
}

/// Where to `PUT` one part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PartUrl {
    pub part_number: u32,
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadPartsReply {
    pub parts: Vec<PartUrl>,
}

/// A part S3 already holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadedPart {
    pub part_number: u32,
    pub size_bytes: u64,
}

/// `GET /v1/assets/{id}/upload`: what is left to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadStatus {
    pub asset_id: Uuid,
    pub status: AssetStatus,
    pub part_size: u64,
    pub part_count: u32,
    /// Parts S3 holds, in part order.
    pub uploaded: Vec<UploadedPart>,
    /// Part numbers still to send.
    pub missing: Vec<u32>,
}

/// `GET /v1/assets/{id}/download`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DownloadUrl {
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// `POST /v1/assets/{id}/playback`: where a player starts. The URLs are paths on the gateway
/// under a signed prefix that expires at `expires_at`; segments under it redirect to presigned
/// storage URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlaybackGrant {
    pub asset_id: Uuid,
    /// HLS master playlist.
    pub hls_url: String,
    /// MPEG-DASH manifest.
    pub dash_url: String,
    pub poster_url: String,
    /// WebVTT track of preview thumbnails (`sprite.jpg#xywh=...`).
    pub thumbnails_url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// `GET /v1/playback/{token}/{path}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybackFetchRequest {
    pub token: String,
    pub path: String,
}

/// A playlist is answered with its text; anything else with a presigned URL to redirect to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlaybackFile {
    Text { content_type: String, body: String },
    Redirect { url: String },
}

/// `PUT /v1/assets/{id}/captions/{lang}` with a WebVTT body (at most [`MAX_CAPTION_BYTES`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutCaptionRequest {
    pub asset_id: Uuid,
    pub lang: String,
    /// Defaults to the language tag.
    #[serde(default)]
    pub label: Option<String>,
    pub vtt: String,
}

/// The gateway path under which playback grants serve files: `<PLAYBACK_PATH>/<grant>/<file>`.
pub const PLAYBACK_PATH: &str = "/v1/playback";

/// The largest captions file accepted.
pub const MAX_CAPTION_BYTES: usize = 512 * 1024;

/// Internal (media → content): progress of a transcode, best effort.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeProgress {
    pub asset_id: Uuid,
    pub percent: u8,
}

rpc!(CreateAsset, CreateAssetRequest, AssetUpload, subj::ASSET_CREATE);
rpc!(GetAsset, AssetIdRequest, Asset, subj::ASSET_GET);
rpc!(ListAssets, CourseAssetsRequest, AssetList, subj::ASSET_LIST);
rpc!(PresignParts, UploadPartsRequest, UploadPartsReply, subj::UPLOAD_PARTS);
rpc!(GetUploadStatus, AssetIdRequest, UploadStatus, subj::UPLOAD_STATUS);
rpc!(CompleteUpload, AssetIdRequest, Asset, subj::UPLOAD_COMPLETE);
rpc!(AbortUpload, AssetIdRequest, Asset, subj::UPLOAD_ABORT);
rpc!(DownloadAsset, AssetIdRequest, DownloadUrl, subj::ASSET_DOWNLOAD);
rpc!(GrantPlayback, AssetIdRequest, PlaybackGrant, subj::PLAYBACK_GRANT);
rpc!(FetchPlayback, PlaybackFetchRequest, PlaybackFile, subj::PLAYBACK_FETCH);
rpc!(PutCaption, PutCaptionRequest, Asset, subj::CAPTION_PUT);
rpc!(ReportProgress, TranscodeProgress, Empty, subj::INTERNAL_PROGRESS);

/// Check a caption's language tag: BCP 47 shape (`en`, `pt-BR`, `zh-Hant`), at most 35 characters.
pub fn check_lang(lang: &str) -> Result<(), ErrorBody> {
    let mut parts = lang.split('-');
    let primary_ok =
        parts.next().is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()));
    let rest_ok = parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if lang.len() <= 35 && primary_ok && rest_ok {
        Ok(())
    } else {
        Err(ErrorBody::invalid_field("lang", "lang must be a language tag such as `en` or `pt-BR`"))
    }
}

/// An asset reached S3 in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetUploaded {
    pub asset_id: Uuid,
    pub course_id: Uuid,
    pub kind: AssetKind,
    pub size_bytes: u64,
}

impl Event for AssetUploaded {
    const SUBJECT: &'static str = subj::EVT_ASSET_UPLOADED;
    const TYPE: &'static str = "content.asset.uploaded";
}

/// An asset can be downloaded or played.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetReady {
    pub asset_id: Uuid,
    pub course_id: Uuid,
    pub kind: AssetKind,
}

impl Event for AssetReady {
    const SUBJECT: &'static str = subj::EVT_ASSET_READY;
    const TYPE: &'static str = "content.asset.ready";
}

/// An asset could not be processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetFailed {
    pub asset_id: Uuid,
    pub course_id: Uuid,
    pub reason: String,
}

impl Event for AssetFailed {
    const SUBJECT: &'static str = subj::EVT_ASSET_FAILED;
    const TYPE: &'static str = "content.asset.failed";
}

/// The media job: transcode `source_key` into renditions under `output_prefix` (same bucket).
/// Queued by content in the transaction that marks the asset `processing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscodeJob {
    pub asset_id: Uuid,
    pub course_id: Uuid,
    pub source_key: String,
    /// Every output goes under this prefix (`.../stream/`); re-running overwrites the same keys.
    pub output_prefix: String,
}

impl Event for TranscodeJob {
    const SUBJECT: &'static str = media::JOB_TRANSCODE;
    const TYPE: &'static str = "media.transcode.requested";
}

/// A transcode finished: what the player needs, all keys relative to the job's `output_prefix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscodeCompleted {
    pub asset_id: Uuid,
    pub duration_seconds: f64,
    pub width: u32,
    pub height: u32,
    pub renditions: Vec<Rendition>,
    /// SHA-256 of the source, hex.
    pub source_sha256: String,
    /// Target segment length, seconds (captions playlists use it).
    pub segment_seconds: u32,
}

impl Event for TranscodeCompleted {
    const SUBJECT: &'static str = media::EVT_TRANSCODE_COMPLETED;
    const TYPE: &'static str = "media.transcode.completed";
}

/// A transcode was given up on (not a video, corrupt, or retries exhausted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscodeFailed {
    pub asset_id: Uuid,
    pub reason: String,
    pub attempts: u64,
}

impl Event for TranscodeFailed {
    const SUBJECT: &'static str = media::EVT_TRANSCODE_FAILED;
    const TYPE: &'static str = "media.transcode.failed";
}

/// The fixed names of a transcode's outputs, relative to its `output_prefix`.
pub mod outputs {
    pub const HLS_MASTER: &str = "master.m3u8";
    pub const DASH_MANIFEST: &str = "manifest.mpd";
    pub const POSTER: &str = "poster.jpg";
    pub const SPRITE: &str = "sprite.jpg";
    pub const THUMBNAILS: &str = "thumbnails.vtt";
    /// Captions of `lang` live at `captions/<lang>.vtt` (and their playlist at `.m3u8`).
    pub const CAPTIONS_DIR: &str = "captions";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags() {
        for ok in ["en", "pt-BR", "zh-Hant", "sgn-ase"] {
            assert!(check_lang(ok).is_ok(), "{ok}");
        }
        for bad in ["", "E", "english", "en_US", "../x", "en-", "en-a"] {
            assert!(check_lang(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_round_trip_and_never_accept_active_content() {
        for kind in [AssetKind::Video, AssetKind::Document, AssetKind::Image, AssetKind::File, AssetKind::Submission] {
            assert_eq!(AssetKind::parse(kind.as_str()), Some(kind));
            for ct in kind.content_types() {
                assert!(!ct.contains("html") && !ct.contains("svg") && !ct.contains("javascript"), "{ct}");
            }
        }
    }
}
