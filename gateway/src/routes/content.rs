//! Content routes: asset uploads (presigned multipart), downloads, playback and captions.
//! Bytes never pass through the gateway: clients send parts to, and read segments from, S3
//! with presigned URLs; only playlists and captions (small text) travel here.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coursebus_contracts::ErrorBody;
use coursebus_contracts::content::{
    AbortUpload, Asset, AssetIdRequest, AssetList, AssetUpload, CompleteUpload, CourseAssetsRequest, CreateAsset,
    CreateAssetRequest, DownloadAsset, DownloadUrl, FetchPlayback, GetAsset, GetUploadStatus, GrantPlayback,
    ListAssets, MAX_CAPTION_BYTES, PlaybackFetchRequest, PlaybackFile, PlaybackGrant, PresignParts, PutCaption,
    PutCaptionRequest, UploadPartsReply, UploadPartsRequest, UploadStatus,
};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, Ctx};

/// Start uploading an asset of a course one teaches: the reply says how to split the file
/// (`part_size`, `part_count`); ask for part URLs next.
#[utoipa::path(post, path = "/v1/courses/{course}/assets", tag = "content", security(("bearer" = [])),
    params(("course" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    request_body = CreateAssetRequest,
    responses(
        (status = 201, description = "Upload started", body = AssetUpload),
        (status = 400, description = "Bad name, kind or content type", body = ErrorBody),
        (status = 403, description = "Not the course's instructor", body = ErrorBody),
        (status = 413, description = "Larger than the kind allows", body = ErrorBody),
    ))]
pub async fn create_asset(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<CreateAssetRequest>,
) -> ApiResult<(StatusCode, Json<AssetUpload>)> {
    req.course_id = course_id;
    Ok((StatusCode::CREATED, Json(s.bus.request::<CreateAsset>(&ctx, &req).await?)))
}

/// A course's assets (its instructor and admins).
#[utoipa::path(get, path = "/v1/courses/{course}/assets", tag = "content", security(("bearer" = [])),
    params(("course" = Uuid, Path)),
    responses((status = 200, description = "Oldest first", body = AssetList), (status = 403, description = "Not the course's instructor", body = ErrorBody)))]
pub async fn list_assets(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
) -> ApiResult<Json<AssetList>> {
    Ok(Json(s.bus.request::<ListAssets>(&ctx, &CourseAssetsRequest { course_id }).await?))
}

/// An asset: status, transcode progress, renditions, captions (its owner, admins and the
/// course's learners).
#[utoipa::path(get, path = "/v1/assets/{id}", tag = "content", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The asset", body = Asset), (status = 403, description = "Not enrolled", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody)))]
pub async fn get_asset(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> ApiResult<Json<Asset>> {
    Ok(Json(s.bus.request::<GetAsset>(&ctx, &AssetIdRequest { asset_id }).await?))
}

/// Presigned URLs to `PUT` parts to (at most 100 per call).
#[utoipa::path(post, path = "/v1/assets/{id}/upload/parts", tag = "content", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UploadPartsRequest,
    responses((status = 200, description = "One URL per part", body = UploadPartsReply), (status = 409, description = "Not uploading", body = ErrorBody)))]
pub async fn presign_parts(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(asset_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<UploadPartsRequest>,
) -> ApiResult<Json<UploadPartsReply>> {
    req.asset_id = asset_id;
    Ok(Json(s.bus.request::<PresignParts>(&ctx, &req).await?))
}

/// What S3 already holds of the upload and which parts are missing (to resume).
#[utoipa::path(get, path = "/v1/assets/{id}/upload", tag = "content", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Uploaded and missing parts", body = UploadStatus)))]
pub async fn upload_status(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> ApiResult<Json<UploadStatus>> {
    Ok(Json(s.bus.request::<GetUploadStatus>(&ctx, &AssetIdRequest { asset_id }).await?))
}

/// Abandon the upload: S3 drops every part sent so far.
#[utoipa::path(delete, path = "/v1/assets/{id}/upload", tag = "content", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Aborted", body = Asset), (status = 409, description = "Already completed", body = ErrorBody)))]
pub async fn abort_upload(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> ApiResult<Json<Asset>> {
    Ok(Json(s.bus.request::<AbortUpload>(&ctx, &AssetIdRequest { asset_id }).await?))
}

/// Finish the upload once every part is in S3: a video is queued for transcoding
/// (`processing`), anything else is `ready`.
#[utoipa::path(post, path = "/v1/assets/{id}/upload/complete", tag = "content", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Completed", body = Asset), (status = 409, description = "Parts missing (`details.missing`) or of the wrong size", body = ErrorBody)))]
pub async fn complete_upload(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> ApiResult<Json<Asset>> {
    Ok(Json(s.bus.request::<CompleteUpload>(&ctx, &AssetIdRequest { asset_id }).await?))
}

/// A short-lived presigned download URL (documents, images, files; video sources for their owner).
#[utoipa::path(get, path = "/v1/assets/{id}/download", tag = "content", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Presigned URL", body = DownloadUrl), (status = 403, description = "Not enrolled in the course", body = ErrorBody)))]
pub async fn download_asset(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> ApiResult<Json<DownloadUrl>> {
    Ok(Json(s.bus.request::<DownloadAsset>(&ctx, &AssetIdRequest { asset_id }).await?))
}

/// A playback grant for a ready video: HLS and DASH URLs under a signed, expiring path.
#[utoipa::path(post, path = "/v1/assets/{id}/playback", tag = "content", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Where the player starts", body = PlaybackGrant), (status = 403, description = "Not enrolled in the course", body = ErrorBody), (status = 409, description = "Not ready", body = ErrorBody)))]
pub async fn grant_playback(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(asset_id): ApiPath<Uuid>,
) -> ApiResult<Json<PlaybackGrant>> {
    Ok(Json(s.bus.request::<GrantPlayback>(&ctx, &AssetIdRequest { asset_id }).await?))
}

/// A file under a playback grant: playlists and manifests are answered here; segments and
/// images redirect (302) to a presigned storage URL. The grant in the path is the credential.
#[utoipa::path(get, path = "/v1/playback/{grant}/{file}", tag = "content",
    params(("grant" = String, Path), ("file" = String, Path, description = "e.g. `master.m3u8`, `captions/en.m3u8`")),
    responses(
        (status = 200, description = "A playlist, manifest or WebVTT file"),
        (status = 302, description = "A segment or image: follow `Location`"),
        (status = 403, description = "Invalid or expired grant", body = ErrorBody),
    ))]
pub async fn fetch_playback(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiPath((token, path)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let file = s.bus.request::<FetchPlayback>(&ctx, &PlaybackFetchRequest { token, path }).await?;
    let response = match file {
        PlaybackFile::Text { content_type, body } => {
            let mut response = body.into_response();
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=60"));
            response
        }
        PlaybackFile::Redirect { url } => {
            let Ok(location) = HeaderValue::from_str(&url) else {
                return Err(ErrorBody::internal().into());
            };
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
            response
        }
    };
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CaptionQuery {
    /// What players show in their captions menu (defaults to the language tag).
    #[serde(default)]
    pub label: Option<String>,
}

/// Add or replace a video's captions in one language: the body is a WebVTT file (`text/vtt`,
/// at most 512 KiB). Players find it through the HLS master playlist and the DASH manifest.
#[utoipa::path(put, path = "/v1/assets/{id}/captions/{lang}", tag = "content", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("lang" = String, Path, description = "BCP 47 tag, e.g. `en`, `pt-BR`"), CaptionQuery),
    request_body(content = String, content_type = "text/vtt"),
    responses((status = 200, description = "The asset with its captions", body = Asset), (status = 400, description = "Not WebVTT, or a bad language tag", body = ErrorBody)))]
pub async fn put_caption(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath((asset_id, lang)): ApiPath<(Uuid, String)>,
    ApiQuery(query): ApiQuery<CaptionQuery>,
    body: Bytes,
) -> ApiResult<Json<Asset>> {
    if body.len() > MAX_CAPTION_BYTES {
        return Err(ErrorBody::new(
            coursebus_contracts::ErrorCode::PayloadTooLarge,
            format!("captions may be at most {MAX_CAPTION_BYTES} bytes"),
        )
        .into());
    }
    let Ok(vtt) = String::from_utf8(body.to_vec()) else {
        return Err(ErrorBody::invalid_field("vtt", "captions must be UTF-8 WebVTT").into());
    };
    let req = PutCaptionRequest { asset_id, lang, label: query.label, vtt };
    Ok(Json(s.bus.request::<PutCaption>(&ctx, &req).await?))
}
