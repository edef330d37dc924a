//! One method per endpoint. Every method verifies the caller's token itself and checks, here in
//! the worker, that the caller owns the asset's course (asking the catalog with the caller's own
//! token) or is enrolled in it (asking enrollment): the gateway is never trusted for that.

use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::auth::JwtVerifier;
use coursebus_bus::idempotency::Idempotency;
use coursebus_bus::{Bus, CallContext, outbox};
use coursebus_contracts::catalog::{Course, GetCourse, GetCourseRequest};
use coursebus_contracts::content::{
    Asset, AssetFailed, AssetIdRequest, AssetKind, AssetList, AssetReady, AssetStatus, AssetUpload, AssetUploaded,
    CourseAssetsRequest, CreateAsset, CreateAssetRequest, DownloadUrl, PLAYBACK_PATH, PartUrl, PlaybackFetchRequest,
    PlaybackFile, PlaybackGrant, PutCaptionRequest, TranscodeCompleted, TranscodeFailed, TranscodeJob,
    TranscodeProgress, UploadPartsReply, UploadPartsRequest, UploadStatus, UploadedPart, outputs,
};
use coursebus_contracts::enrollment::{AccessCheckRequest, CheckAccess};
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::rpc::Empty;
use coursebus_contracts::validate::Role;
use coursebus_contracts::{Actor, ErrorBody, ErrorCode, Event, EventEnvelope, Rpc};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{self, Grant, PlaybackPath};
use crate::objects::{Objects, StorageError};
use crate::store::{self, AssetRow, Transcoded};

/// Lifetimes and sizes the handlers use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Preferred part size of uploads (at least 5 MiB).
    pub part_size: u64,
    /// How long a presigned part URL works.
    pub upload_url_ttl: Duration,
    /// How long a presigned download or segment URL works.
    pub download_ttl: Duration,
    /// How long a playback grant works.
    pub playback_ttl: Duration,
}

/// The content service's state, shared by all endpoint handlers of one replica.
#[derive(Debug)]
pub struct Contents {
    pub pool: PgPool,
    pub verifier: Arc<JwtVerifier>,
    /// For calls to the catalog and enrollment, with the caller's token.
    pub bus: Bus,
    pub objects: Objects,
    pub outbox: outbox::Waker,
    /// Signs playback grants (kept in the database; the same for every replica).
    pub playback_key: Vec<u8>,
    pub settings: Settings,
}

use coursebus_bus::db;

fn storage(err: StorageError) -> ErrorBody {
    tracing::error!(error = %err, "storage error");
    ErrorBody::unavailable("the storage is not available; try again")
}

fn outbox_err(err: coursebus_bus::BusError) -> ErrorBody {
    tracing::error!(error = %err, "outbox error");
    ErrorBody::internal()
}

fn no_asset() -> ErrorBody {
    ErrorBody::not_found("no such asset")
}

fn expires_at(ttl: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc() + ttl
}

fn service_actor() -> Actor {
    Actor::Service { name: "content".into() }
}

/// How a caller relates to an asset's course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// Uploaded it, or an admin.
    Owner,
    Learner,
}

impl Contents {
    async fn caller(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        self.verifier.verify_ctx(ctx).await
    }

    /// The course as its instructor sees it (the catalog checks the caller's token: a course
    /// one does not own is 403 or 404 there).
    async fn owned_course(&self, me: &AccessClaims, ctx: &CallContext, course_id: Uuid) -> Result<Course, ErrorBody> {
        let working_copy = self
            .bus
            .request::<GetCourse>(ctx, &GetCourseRequest { id_or_slug: course_id.to_string(), draft: true })
            .await;
        let course = match working_copy {
            Ok(course) => course,
            Err(err) if err.code == ErrorCode::NotFound => {
                // The catalog hides working copies from non-owners; a course everyone can
                // see is refused rather than denied to exist.
                let anonymous = ctx.clone().with_authorization(None);
                let published = GetCourseRequest { id_or_slug: course_id.to_string(), draft: false };
                return Err(match self.bus.request::<GetCourse>(&anonymous, &published).await {
                    Ok(_) => ErrorBody::forbidden("only the course's instructor or an admin can manage its assets"),
                    Err(_) => err,
                });
            }
            Err(err) => return Err(err),
        };
        if course.instructor_id != me.sub && !me.has_role(Role::Admin) {
            return Err(ErrorBody::forbidden("only the course's instructor or an admin can manage its assets"));
        }
        Ok(course)
    }

    async fn asset(&self, id: Uuid) -> Result<AssetRow, ErrorBody> {
        store::get(&self.pool, id).await.map_err(db)?.ok_or_else(no_asset)
    }

    /// The asset, if the caller owns it (or is an admin).
    async fn owned_asset(&self, me: &AccessClaims, id: Uuid) -> Result<AssetRow, ErrorBody> {
        let row = self.asset(id).await?;
        if row.owner_id != me.sub && !me.has_role(Role::Admin) {
            return Err(ErrorBody::forbidden("only the asset's owner or an admin can do this"));
        }
        Ok(row)
    }

    /// Owner, admin, or a learner with a live enrolment in the asset's course (asked of
    /// enrollment with the caller's own token); anyone else is refused.
    async fn relation(&self, me: &AccessClaims, ctx: &CallContext, row: &AssetRow) -> Result<Relation, ErrorBody> {
        if row.owner_id == me.sub || me.has_role(Role::Admin) {
            return Ok(Relation::Owner);
        }
        if row.kind() == AssetKind::Submission {
            // A learner's submission: its uploader (above) and the course's instructor only.
            return match self.owned_course(me, ctx, row.course_id).await {
                Ok(_) => Ok(Relation::Owner),
                Err(_) => Err(ErrorBody::forbidden("a submission is seen by its learner and the course's instructor")),
            };
        }
        let access = self
            .bus
            .request::<CheckAccess>(
                ctx,
                &AccessCheckRequest { user_id: me.sub, course_id: row.course_id, lesson_id: None },
            )
            .await?;
        if access.enrolled {
            Ok(Relation::Learner)
        } else {
            Err(ErrorBody::forbidden("enrol in the course to see its lessons"))
        }
    }

    /// An enrolled learner, the course's instructor or an admin (who may upload a submission).
    async fn enrolled_or_staff(&self, me: &AccessClaims, ctx: &CallContext, course_id: Uuid) -> Result<(), ErrorBody> {
        if me.has_role(Role::Admin) {
            return Ok(());
        }
        let access = self
            .bus
            .request::<CheckAccess>(ctx, &AccessCheckRequest { user_id: me.sub, course_id, lesson_id: None })
            .await?;
        if access.enrolled || self.owned_course(me, ctx, course_id).await.is_ok() {
            Ok(())
        } else {
            Err(ErrorBody::forbidden("enrol in the course to submit files to it"))
        }
    }

    pub async fn create(&self, ctx: CallContext, req: CreateAssetRequest) -> Result<AssetUpload, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let new = domain::check_new_asset(&req)?;
        let scope = format!("{}:{}", <CreateAsset as Rpc>::ENDPOINT.subject(), me.sub);
        let idem = ctx
            .idempotency_key
            .as_deref()
            .map(|key| {
                Idempotency::new(
                    scope,
                    key,
                    &(req.course_id, new.kind, &new.filename, &new.content_type, new.size_bytes),
                )
            })
            .transpose()?;
        if let Some(idem) = &idem
            && let Some(done) = idem.replay::<AssetUpload>(&self.pool).await?
        {
            return Ok(done);
        }
        let course_id = if new.kind == AssetKind::Submission {
            // A learner's own file for an assignment: any enrolled learner (or the course's staff).
            self.enrolled_or_staff(&me, &ctx, req.course_id).await?;
            req.course_id
        } else {
            self.owned_course(&me, &ctx, req.course_id).await?.id
        };
        let id = Uuid::now_v7();
        let (part_size, part_count) = domain::parts_for(new.size_bytes, self.settings.part_size);
        let key = domain::source_key(course_id, id);
        let upload_id = self
            .objects
            .create_multipart(&key, &new.content_type, &domain::attachment(&new.filename))
            .await
            .map_err(storage)?;
        let now = OffsetDateTime::now_utc();
        let row = AssetRow {
            id,
            course_id,
            owner_id: me.sub,
            kind: new.kind.as_str().to_owned(),
            filename: new.filename,
            content_type: new.content_type,
            size_bytes: i64::try_from(new.size_bytes).unwrap_or(i64::MAX),
            part_size: i64::try_from(part_size).unwrap_or(i64::MAX),
            part_count: i32::try_from(part_count).unwrap_or(i32::MAX),
            object_key: key.clone(),
            upload_id: Some(upload_id.clone()),
            status: AssetStatus::Uploading.as_str().to_owned(),
            failure_reason: None,
            progress_percent: 0,
            sha256: None,
            etag: None,
            duration_seconds: None,
            width: None,
            height: None,
            segment_seconds: None,
            renditions: Default::default(),
            captions: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let reply = AssetUpload { asset: row.to_asset(), part_size, part_count };
        let stored = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            store::insert(&mut tx, &row).await.map_err(db)?;
            if let Some(idem) = &idem {
                idem.record(&mut tx, &reply).await?;
            }
            tx.commit().await.map_err(db)
        }
        .await;
        if let Err(err) = stored {
            // Leave no parts behind for an asset that does not exist.
            if let Err(abort) = self.objects.abort(&key, &upload_id).await {
                tracing::warn!(error = %abort, asset_id = %id, "could not abort the upload of an asset not stored");
            }
            // A concurrent retry with the same key may have won.
            if let Some(idem) = &idem
                && let Some(done) = idem.replay::<AssetUpload>(&self.pool).await?
            {
                return Ok(done);
            }
            return Err(err);
        }
        tracing::info!(asset_id = %id, course_id = %course_id, kind = row.kind, size_bytes = row.size_bytes, part_count, "upload started");
        Ok(reply)
    }

    pub async fn get(&self, ctx: CallContext, req: AssetIdRequest) -> Result<Asset, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.asset(req.asset_id).await?;
        self.relation(&me, &ctx, &row).await?;
        Ok(row.to_asset())
    }

    pub async fn list(&self, ctx: CallContext, req: CourseAssetsRequest) -> Result<AssetList, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let course = self.owned_course(&me, &ctx, req.course_id).await?;
        let rows = store::list_for_course(&self.pool, course.id).await.map_err(db)?;
        Ok(AssetList { items: rows.iter().map(AssetRow::to_asset).collect() })
    }

    fn uploading(row: &AssetRow) -> Result<&str, ErrorBody> {
        match (&row.upload_id, row.status()) {
            (Some(upload_id), AssetStatus::Uploading) => Ok(upload_id),
            (_, status) => Err(ErrorBody::conflict(format!("the asset is {}, not uploading", status.as_str()))),
        }
    }

    pub async fn presign_parts(
        &self,
        ctx: CallContext,
        req: UploadPartsRequest,
    ) -> Result<UploadPartsReply, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.owned_asset(&me, req.asset_id).await?;
        let upload_id = Self::uploading(&row)?;
        domain::check_part_numbers(&req.part_numbers, row.part_count())?;
        let ttl = self.settings.upload_url_ttl;
        let mut parts = Vec::with_capacity(req.part_numbers.len());
        for n in req.part_numbers {
            let url = self.objects.presign_part(&row.object_key, upload_id, n, ttl).await.map_err(storage)?;
            parts.push(PartUrl { part_number: n, url, expires_at: expires_at(ttl) });
        }
        Ok(UploadPartsReply { parts })
    }

    pub async fn upload_status(&self, ctx: CallContext, req: AssetIdRequest) -> Result<UploadStatus, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.owned_asset(&me, req.asset_id).await?;
        let uploaded: Vec<UploadedPart> = match (&row.upload_id, row.status()) {
            (Some(upload_id), AssetStatus::Uploading) => self
                .objects
                .list_parts(&row.object_key, upload_id)
                .await
                .map_err(storage)?
                .unwrap_or_default()
                .into_iter()
                .map(|p| UploadedPart { part_number: p.number, size_bytes: p.size })
                .collect(),
            _ => Vec::new(),
        };
        let missing = if row.status() == AssetStatus::Uploading {
            domain::missing_parts(row.part_count(), &uploaded.iter().map(|p| p.part_number).collect::<Vec<_>>())
        } else {
            Vec::new()
        };
        Ok(UploadStatus {
            asset_id: row.id,
            status: row.status(),
            part_size: row.part_size(),
            part_count: row.part_count(),
            uploaded,
            missing,
        })
    }

    /// Assemble the parts; a video goes to the transcode queue in the same transaction that
    /// marks it `processing` (through the outbox), anything else is `ready` at once.
    pub async fn complete(&self, ctx: CallContext, req: AssetIdRequest) -> Result<Asset, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.owned_asset(&me, req.asset_id).await?;
        if matches!(row.status(), AssetStatus::Uploaded | AssetStatus::Processing | AssetStatus::Ready) {
            return Ok(row.to_asset());
        }
        let upload_id = Self::uploading(&row)?.to_owned();
        let etag = match self.objects.list_parts(&row.object_key, &upload_id).await.map_err(storage)? {
            Some(parts) if !parts.is_empty() => {
                self.check_parts(&row, &parts)?;
                self.objects.complete(&row.object_key, &upload_id, &parts).await.map_err(storage)?;
                self.objects.head(&row.object_key).await.map_err(storage)?.and_then(|(_, etag)| etag)
            }
            _ => {
                // No parts: either nothing was sent, or an earlier complete reached S3 but not
                // our database: the object then exists with the declared size.
                match self.objects.head(&row.object_key).await.map_err(storage)? {
                    Some((size, etag)) if size == row.size() => etag,
                    _ => {
                        return Err(ErrorBody::conflict("no part has been uploaded yet").with_details(
                            serde_json::json!({"missing": domain::missing_parts(row.part_count(), &[])}),
                        ));
                    }
                }
            }
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(locked) = store::lock(&mut tx, row.id).await.map_err(db)? else {
            return Err(no_asset());
        };
        if locked.status() != AssetStatus::Uploading {
            // A concurrent complete won.
            return Ok(locked.to_asset());
        }
        let video = locked.kind() == AssetKind::Video;
        let next = if video { AssetStatus::Processing } else { AssetStatus::Ready };
        let done = store::mark_uploaded(&mut tx, row.id, next.as_str(), etag.as_deref()).await.map_err(db)?;
        let actor = Actor::User { id: me.sub };
        let uploaded =
            AssetUploaded { asset_id: done.id, course_id: done.course_id, kind: done.kind(), size_bytes: done.size() };
        outbox::enqueue(&mut tx, &uploaded.envelope(actor.clone()), Some(&ctx)).await.map_err(outbox_err)?;
        if video {
            let job = TranscodeJob {
                asset_id: done.id,
                course_id: done.course_id,
                source_key: done.object_key.clone(),
                output_prefix: domain::stream_prefix(done.course_id, done.id),
            };
            outbox::enqueue(&mut tx, &job.envelope(actor), Some(&ctx)).await.map_err(outbox_err)?;
        } else {
            let ready = AssetReady { asset_id: done.id, course_id: done.course_id, kind: done.kind() };
            outbox::enqueue(&mut tx, &ready.envelope(actor), Some(&ctx)).await.map_err(outbox_err)?;
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(asset_id = %done.id, status = done.status, "upload completed");
        Ok(done.to_asset())
    }

    /// Every part present, each but the last exactly `part_size`, and the total as declared.
    fn check_parts(&self, row: &AssetRow, parts: &[crate::objects::StoredPart]) -> Result<(), ErrorBody> {
        let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        let missing = domain::missing_parts(row.part_count(), &numbers);
        if !missing.is_empty() {
            return Err(ErrorBody::conflict(format!("{} part(s) are not uploaded yet", missing.len()))
                .with_details(serde_json::json!({"missing": missing})));
        }
        for part in parts {
            let expected = domain::expected_part_size(row.size(), row.part_size(), row.part_count(), part.number);
            if part.number > row.part_count() || part.size != expected {
                return Err(ErrorBody::conflict(format!(
                    "part {} holds {} bytes, expected {expected}; upload it again",
                    part.number, part.size
                ))
                .with_details(serde_json::json!({"part_number": part.number})));
            }
        }
        Ok(())
    }

    pub async fn abort(&self, ctx: CallContext, req: AssetIdRequest) -> Result<Asset, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.owned_asset(&me, req.asset_id).await?;
        if row.status() == AssetStatus::Aborted {
            return Ok(row.to_asset());
        }
        let upload_id = Self::uploading(&row)?.to_owned();
        self.objects.abort(&row.object_key, &upload_id).await.map_err(storage)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let done = store::mark_aborted(&mut tx, row.id).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(asset_id = %row.id, "upload aborted");
        Ok(done.to_asset())
    }

    pub async fn download(&self, ctx: CallContext, req: AssetIdRequest) -> Result<DownloadUrl, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.asset(req.asset_id).await?;
        let relation = self.relation(&me, &ctx, &row).await?;
        if row.kind() == AssetKind::Video && relation != Relation::Owner {
            return Err(ErrorBody::forbidden("videos are streamed: ask for a playback grant"));
        }
        if row.status() != AssetStatus::Ready && !(row.kind() == AssetKind::Video && row.etag.is_some()) {
            return Err(ErrorBody::conflict(format!("the asset is {}", row.status().as_str())));
        }
        let ttl = self.settings.download_ttl;
        let url = self
            .objects
            .presign_get(&row.object_key, ttl, Some(&domain::attachment(&row.filename)))
            .await
            .map_err(storage)?;
        Ok(DownloadUrl { url, expires_at: expires_at(ttl) })
    }

    pub async fn grant_playback(&self, ctx: CallContext, req: AssetIdRequest) -> Result<PlaybackGrant, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.asset(req.asset_id).await?;
        self.relation(&me, &ctx, &row).await?;
        if row.kind() != AssetKind::Video {
            return Err(ErrorBody::invalid_input("only videos are played; download other assets"));
        }
        if row.status() != AssetStatus::Ready {
            return Err(ErrorBody::conflict(format!("the video is {}, not ready", row.status().as_str())));
        }
        let expires = expires_at(self.settings.playback_ttl);
        let token =
            Grant { asset_id: row.id, user_id: me.sub, expires: expires.unix_timestamp() }.sign(&self.playback_key);
        let url = |name: &str| format!("{PLAYBACK_PATH}/{token}/{name}");
        Ok(PlaybackGrant {
            asset_id: row.id,
            hls_url: url(outputs::HLS_MASTER),
            dash_url: url(outputs::DASH_MANIFEST),
            poster_url: url(outputs::POSTER),
            thumbnails_url: url(outputs::THUMBNAILS),
            expires_at: expires,
        })
    }

    /// A file under a playback grant. The grant is the credential (players cannot send
    /// headers for every segment); it names the asset and expires.
    pub async fn fetch_playback(
        &self,
        _ctx: CallContext,
        req: PlaybackFetchRequest,
    ) -> Result<PlaybackFile, ErrorBody> {
        let Some(grant) = Grant::verify(&req.token, &self.playback_key, OffsetDateTime::now_utc().unix_timestamp())
        else {
            return Err(ErrorBody::forbidden("this playback link is invalid or has expired"));
        };
        let Some(path) = domain::playback_path(&req.path) else {
            return Err(ErrorBody::not_found("no such file"));
        };
        let row = self.asset(grant.asset_id).await?;
        if row.status() != AssetStatus::Ready {
            return Err(ErrorBody::not_found("the video is not available"));
        }
        let prefix = domain::stream_prefix(row.course_id, row.id);
        match path {
            PlaybackPath::CaptionPlaylist { lang } => {
                if !row.captions.0.iter().any(|c| c.lang == lang) {
                    return Err(ErrorBody::not_found("no captions in this language"));
                }
                Ok(PlaybackFile::Text {
                    content_type: "application/vnd.apple.mpegurl".into(),
                    body: domain::caption_playlist(&lang, row.duration_seconds.unwrap_or(1.0)),
                })
            }
            PlaybackPath::Text { key, content_type } => {
                let Some(text) = self.objects.get_text(&format!("{prefix}{key}")).await.map_err(storage)? else {
                    return Err(ErrorBody::not_found("no such file"));
                };
                let body = match key.as_str() {
                    outputs::HLS_MASTER => domain::master_with_captions(&text, &row.captions.0),
                    outputs::DASH_MANIFEST => domain::manifest_with_captions(&text, &row.captions.0),
                    _ => text,
                };
                Ok(PlaybackFile::Text { content_type: content_type.to_owned(), body })
            }
            PlaybackPath::Binary { key } => {
                let url = self
                    .objects
                    .presign_get(&format!("{prefix}{key}"), self.settings.download_ttl, None)
                    .await
                    .map_err(storage)?;
                Ok(PlaybackFile::Redirect { url })
            }
        }
    }

    pub async fn put_caption(&self, ctx: CallContext, req: PutCaptionRequest) -> Result<Asset, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.owned_asset(&me, req.asset_id).await?;
        if row.kind() != AssetKind::Video {
            return Err(ErrorBody::invalid_input("captions belong to videos"));
        }
        if matches!(row.status(), AssetStatus::Aborted | AssetStatus::Failed) {
            return Err(ErrorBody::conflict(format!("the video is {}", row.status().as_str())));
        }
        let caption = domain::check_caption(&req.lang, req.label.as_deref(), &req.vtt)?;
        let key =
            format!("{}{}/{}.vtt", domain::stream_prefix(row.course_id, row.id), outputs::CAPTIONS_DIR, caption.lang);
        self.objects.put_text(&key, req.vtt, "text/vtt; charset=utf-8").await.map_err(storage)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(locked) = store::lock(&mut tx, row.id).await.map_err(db)? else {
            return Err(no_asset());
        };
        let mut captions = locked.captions.0.clone();
        captions.retain(|c| c.lang != caption.lang);
        captions.push(caption);
        captions.sort_by(|a, b| a.lang.cmp(&b.lang));
        let done = store::set_captions(&mut tx, row.id, &captions).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.to_asset())
    }

    /// Internal (media): progress of a transcode.
    pub async fn report_progress(&self, _ctx: CallContext, req: TranscodeProgress) -> Result<Empty, ErrorBody> {
        store::raise_progress(&self.pool, req.asset_id, i16::from(req.percent.min(99))).await.map_err(db)?;
        Ok(Empty {})
    }

    /// A transcode finished: the asset becomes `ready` (once; a repeated event changes nothing).
    /// `ctx` is the result's publisher's: `asset.ready` continues its trace.
    pub async fn transcode_completed(
        &self,
        ctx: &CallContext,
        event: EventEnvelope<TranscodeCompleted>,
    ) -> Result<(), ErrorBody> {
        let t = event.data;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(row) = store::lock(&mut tx, t.asset_id).await.map_err(db)? else {
            tracing::warn!(asset_id = %t.asset_id, "a transcode finished for an unknown asset");
            return Ok(());
        };
        if row.status() != AssetStatus::Processing {
            tracing::info!(asset_id = %row.id, status = row.status, "transcode result ignored: asset not processing");
            return Ok(());
        }
        let transcoded = Transcoded {
            duration_seconds: t.duration_seconds,
            width: i32::try_from(t.width).unwrap_or(0),
            height: i32::try_from(t.height).unwrap_or(0),
            segment_seconds: i32::try_from(t.segment_seconds).unwrap_or(4),
            sha256: t.source_sha256,
            renditions: t.renditions,
        };
        let done = store::mark_ready(&mut tx, row.id, &transcoded).await.map_err(db)?;
        let ready = AssetReady { asset_id: done.id, course_id: done.course_id, kind: done.kind() };
        outbox::enqueue(&mut tx, &ready.envelope(service_actor()), Some(ctx)).await.map_err(outbox_err)?;
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(asset_id = %done.id, renditions = done.renditions.0.len(), "video ready");
        Ok(())
    }

    /// A transcode was given up on: the asset fails with the reason (unless it is ready).
    pub async fn transcode_failed(
        &self,
        ctx: &CallContext,
        event: EventEnvelope<TranscodeFailed>,
    ) -> Result<(), ErrorBody> {
        let f = event.data;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(row) = store::lock(&mut tx, f.asset_id).await.map_err(db)? else {
            return Ok(());
        };
        if row.status() != AssetStatus::Processing {
            return Ok(());
        }
        let done = store::mark_failed(&mut tx, row.id, &f.reason).await.map_err(db)?;
        let failed = AssetFailed { asset_id: done.id, course_id: done.course_id, reason: f.reason.clone() };
        outbox::enqueue(&mut tx, &failed.envelope(service_actor()), Some(ctx)).await.map_err(outbox_err)?;
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::warn!(asset_id = %done.id, reason = %f.reason, attempts = f.attempts, "video failed");
        Ok(())
    }
}

/// Whether an error from a handler of events is worth retrying (not a bad event).
pub fn retryable(err: &ErrorBody) -> bool {
    matches!(err.code, ErrorCode::Internal | ErrorCode::Unavailable)
}
