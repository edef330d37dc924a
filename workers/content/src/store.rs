//! PostgreSQL access of the content worker: asset rows and its signing key.

use coursebus_contracts::content::{Asset, AssetKind, AssetStatus, Caption, Rendition};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// One row of `assets`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssetRow {
    pub id: Uuid,
    pub course_id: Uuid,
    pub owner_id: Uuid,
    pub kind: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub part_size: i64,
    pub part_count: i32,
    pub object_key: String,
    pub upload_id: Option<String>,
    pub status: String,
    pub failure_reason: Option<String>,
    pub progress_percent: i16,
    pub sha256: Option<String>,
    pub etag: Option<String>,
    pub duration_seconds: Option<f64>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub segment_seconds: Option<i32>,
    pub renditions: sqlx::types::Json<Vec<Rendition>>,
    pub captions: sqlx::types::Json<Vec<Caption>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl AssetRow {
    pub fn kind(&self) -> AssetKind {
        AssetKind::parse(&self.kind).unwrap_or(AssetKind::File)
    }

    pub fn status(&self) -> AssetStatus {
        AssetStatus::parse(&self.status).unwrap_or(AssetStatus::Failed)
    }

    pub fn size(&self) -> u64 {
        u64::try_from(self.size_bytes).unwrap_or(0)
    }

    pub fn part_size(&self) -> u64 {
        u64::try_from(self.part_size).unwrap_or(0)
    }

    pub fn part_count(&self) -> u32 {
        u32::try_from(self.part_count).unwrap_or(0)
    }

    pub fn to_asset(&self) -> Asset {
        Asset {
            id: self.id,
            course_id: self.course_id,
            owner_id: self.owner_id,
            kind: self.kind(),
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            size_bytes: self.size(),
            status: self.status(),
            failure_reason: self.failure_reason.clone(),
            progress_percent: u8::try_from(self.progress_percent).unwrap_or(0),
            sha256: self.sha256.clone(),
            etag: self.etag.clone(),
            duration_seconds: self.duration_seconds,
            width: self.width.and_then(|w| u32::try_from(w).ok()),
            height: self.height.and_then(|h| u32::try_from(h).ok()),
            renditions: self.renditions.0.clone(),
            captions: self.captions.0.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The columns of an [`AssetRow`], for `concat!` into static SQL.
macro_rules! columns {
    () => {
        "id, course_id, owner_id, kind, filename, content_type, size_bytes, part_size, part_count, object_key, \
         upload_id, status, failure_reason, progress_percent, sha256, etag, duration_seconds, width, height, \
         segment_seconds, renditions, captions, created_at, updated_at"
    };
}

pub async fn insert(tx: &mut PgConnection, row: &AssetRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO assets (id, course_id, owner_id, kind, filename, content_type, size_bytes, part_size, part_count, \
         object_key, upload_id, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(row.id)
    .bind(row.course_id)
    .bind(row.owner_id)
    .bind(&row.kind)
    .bind(&row.filename)
    .bind(&row.content_type)
    .bind(row.size_bytes)
    .bind(row.part_size)
    .bind(row.part_count)
    .bind(&row.object_key)
    .bind(&row.upload_id)
    .bind(&row.status)
    .bind(row.created_at)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<AssetRow>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM assets WHERE id = $1")).bind(id).fetch_optional(pool).await
}

/// The row, locked until the transaction ends.
pub async fn lock(tx: &mut PgConnection, id: Uuid) -> Result<Option<AssetRow>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM assets WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(tx)
        .await
}

pub async fn list_for_course(pool: &PgPool, course_id: Uuid) -> Result<Vec<AssetRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM assets WHERE course_id = $1 ORDER BY created_at, id LIMIT 1000"
    ))
    .bind(course_id)
    .fetch_all(pool)
    .await
}

/// The upload is in S3 in full: record its entity tag and the next status.
pub async fn mark_uploaded(
    tx: &mut PgConnection,
    id: Uuid,
    status: &str,
    etag: Option<&str>,
) -> Result<AssetRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE assets SET status = $2, etag = $3, upload_id = NULL, updated_at = now() WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(status)
    .bind(etag)
    .fetch_one(tx)
    .await
}

pub async fn mark_aborted(tx: &mut PgConnection, id: Uuid) -> Result<AssetRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE assets SET status = 'aborted', upload_id = NULL, updated_at = now() WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(id)
    .fetch_one(tx)
    .await
}

/// Raise the transcode progress (never lowers it; only while processing).
pub async fn raise_progress(pool: &PgPool, id: Uuid, percent: i16) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE assets SET progress_percent = $2, updated_at = now() \
         WHERE id = $1 AND status = 'processing' AND progress_percent < $2",
    )
    .bind(id)
    .bind(percent)
    .execute(pool)
    .await?;
    Ok(())
}

/// What a finished transcode gives an asset.
#[derive(Debug, Clone)]
pub struct Transcoded {
    pub duration_seconds: f64,
    pub width: i32,
    pub height: i32,
    pub segment_seconds: i32,
    pub sha256: String,
    pub renditions: Vec<Rendition>,
}

pub async fn mark_ready(tx: &mut PgConnection, id: Uuid, t: &Transcoded) -> Result<AssetRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE assets SET status = 'ready', progress_percent = 100, failure_reason = NULL, duration_seconds = $2, \
         width = $3, height = $4, segment_seconds = $5, sha256 = $6, renditions = $7, updated_at = now() \
         WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(t.duration_seconds)
    .bind(t.width)
    .bind(t.height)
    .bind(t.segment_seconds)
    .bind(&t.sha256)
    .bind(sqlx::types::Json(&t.renditions))
    .fetch_one(tx)
    .await
}

pub async fn mark_failed(tx: &mut PgConnection, id: Uuid, reason: &str) -> Result<AssetRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE assets SET status = 'failed', failure_reason = $2, updated_at = now() WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(reason)
    .fetch_one(tx)
    .await
}

pub async fn set_captions(tx: &mut PgConnection, id: Uuid, captions: &[Caption]) -> Result<AssetRow, sqlx::Error> {
    sqlx::query_as(concat!("UPDATE assets SET captions = $2, updated_at = now() WHERE id = $1 RETURNING ", columns!()))
        .bind(id)
        .bind(sqlx::types::Json(captions))
        .fetch_one(tx)
        .await
}

/// The secret named `name`, made (32 random bytes) by the first replica that asks.
pub async fn signing_key(pool: &PgPool, name: &str) -> Result<Vec<u8>, sqlx::Error> {
    let fresh: [u8; 32] = rand::random();
    sqlx::query("INSERT INTO signing_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(&fresh[..])
        .execute(pool)
        .await?;
    sqlx::query_scalar("SELECT secret FROM signing_keys WHERE name = $1").bind(name).fetch_one(pool).await
}
