//! Announcements: an instructor posts to everyone enrolled in their course.
//!
//! Accepting one stores it (`queued`) and queues one fan-out job on `JOB_NOTIFY`
//! (`Nats-Msg-Id` = the announcement id). A sender replica pulls the job and walks the course's
//! learners page by page (enrollment's internal `learners` endpoint, in user id order). For each
//! page it first queues the learners' email/SMS jobs (stable ids, deduplicated by JetStream and by
//! the delivery log), then stores their in-app notifications in bulk and moves the announcement's
//! cursor in one transaction (under the row's lock), then pushes to open sockets. A crash
//! anywhere resumes from the cursor on redelivery and never stores or sends anything twice; so
//! does a replica that stops (it hands the job back between pages). While a long fan-out runs,
//! the consumer engine tells JetStream it is alive, so no second replica takes it meanwhile.
//! Announcements whose job was never stored (the process died after the commit) are re-queued by
//! [`Announcer::requeue_stalled`].

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use coursebus_bus::consume::{Delivery, Handled};
use coursebus_bus::idempotency::Idempotency;
use coursebus_bus::{Bus, CallContext};
use coursebus_contracts::catalog::CoursePublished;
use coursebus_contracts::catalog::{GetCourse, GetCourseRequest};
use coursebus_contracts::enrollment::{LearnersRequest, ListLearners};
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::notifications::{
    AnnounceJob, Announcement, AnnouncementIdRequest, AnnouncementStatus, Channel, CreateAnnouncement,
    CreateAnnouncementRequest, Notification, NotificationJob, NotificationKind, Push,
};
use coursebus_contracts::subjects::notifications as subj;
use coursebus_contracts::validate::Role;
use coursebus_contracts::{ErrorBody, ErrorCode, EventEnvelope, Rpc};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain;
use crate::store::{self, AnnouncementPage, AnnouncementRow};

/// Why a fan-out step is to be retried.
#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("enrollment: {0}")]
    Enrollment(String),
    #[error("queueing jobs: {0}")]
    Publish(String),
}

/// Accepts announcements and fans them out.
#[derive(Debug, Clone)]
pub struct Announcer {
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub nats: async_nats::Client,
    pub bus: Bus,
    pub call_deadline: Duration,
    /// Learners per page of the fan-out.
    pub page_size: u32,
}

/// Where a fan-out run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// Every learner was reached (or there is nothing to do).
    Finished,
    /// The replica is stopping: the job is to be handed back, and resumes from the cursor.
    Interrupted,
}

use coursebus_bus::db;

impl AnnouncementRow {
    fn to_announcement(&self) -> Announcement {
        let status = match self.status.as_str() {
            "queued" => AnnouncementStatus::Queued,
            "delivering" => AnnouncementStatus::Delivering,
            _ => AnnouncementStatus::Done,
        };
        Announcement {
            id: self.id,
            course_id: self.course_id,
            author_id: self.author_id,
            title: self.title.clone(),
            body: self.body.clone(),
            status,
            recipients: u64::try_from(self.recipients).unwrap_or(0),
            created_at: self.created_at,
            finished_at: self.finished_at,
        }
    }

    /// The email and text-message part of one learner's announcement (the in-app part is stored
    /// in bulk by the fan-out).
    fn job(&self, id: Uuid, user_id: Uuid) -> NotificationJob {
        NotificationJob {
            id,
            kind: self.kind(),
            user_id,
            channels: vec![Channel::Email, Channel::Sms],
            data: serde_json::json!({
                "announcement_id": self.id,
                "course_title": self.course_title,
                "title": self.title,
                "body": self.body,
                "link": domain::announcement_link(&self.course_slug),
            }),
            source_event: None,
            created_at: self.created_at,
        }
    }

    fn kind(&self) -> NotificationKind {
        NotificationKind::parse(&self.kind).unwrap_or(NotificationKind::Announcement)
    }

    /// The in-app title: which course, and what.
    fn in_app_title(&self) -> String {
        format!("{}: {}", self.course_title, self.title)
    }
}

/// The id of an announcement created with an `Idempotency-Key`: the same author and key always
/// give the same id, so concurrent retries collide on the primary key instead of posting twice.
fn keyed_id(author: Uuid, key: &str) -> Uuid {
    domain::stable_id(&[b"coursebus-announcement-key\0", author.as_bytes(), key.as_bytes()])
}

impl Announcer {
    /// Accept an announcement from `me` (the course's instructor or an admin) and queue its fan-out.
    pub async fn create(
        &self,
        me: &AccessClaims,
        ctx: &CallContext,
        req: CreateAnnouncementRequest,
    ) -> Result<Announcement, ErrorBody> {
        let (title, body) = domain::check_announcement(&req.title, &req.body)?;
        let scope = format!("{}:{}", <CreateAnnouncement as Rpc>::ENDPOINT.subject(), me.sub);
        let idem = ctx
            .idempotency_key
            .as_deref()
            .map(|key| Idempotency::new(scope, key, &(req.course_id, &title, &body)))
            .transpose()?;
        if let Some(idem) = &idem
            && let Some(done) = idem.replay::<Announcement>(&self.pool).await?
        {
            return Ok(done);
        }
        let course = self
            .bus
            .request::<GetCourse>(ctx, &GetCourseRequest { id_or_slug: req.course_id.to_string(), draft: false })
            .await
            .map_err(|err| {
                if err.code == ErrorCode::NotFound {
                    ErrorBody::not_found("no published course with this id")
                } else {
                    err
                }
            })?;
        if course.instructor_id != me.sub && !me.has_role(Role::Admin) {
            return Err(ErrorBody::forbidden("only the course's instructor or an admin can post announcements"));
        }
        let row = AnnouncementRow {
            kind: NotificationKind::Announcement.as_str().to_owned(),
            id: ctx.idempotency_key.as_deref().map_or_else(Uuid::now_v7, |key| keyed_id(me.sub, key)),
            course_id: course.id,
            author_id: me.sub,
            course_title: course.title,
            course_slug: course.slug,
            title,
            body,
            status: "queued".into(),
            after_user: None,
            recipients: 0,
            created_at: domain::to_micros(OffsetDateTime::now_utc()),
            finished_at: None,
        };
        let announcement = row.to_announcement();
        let mut tx = self.pool.begin().await.map_err(db)?;
        if !store::insert_announcement(&mut tx, &row).await.map_err(db)? {
            drop(tx);
            // A concurrent retry with the same key won: answer what it stored.
            return match &idem {
                Some(idem) => idem.replay(&self.pool).await?.ok_or_else(ErrorBody::internal),
                None => Err(ErrorBody::internal()),
            };
        }
        if let Some(idem) = &idem {
            idem.record(&mut tx, &announcement).await?;
        }
        tx.commit().await.map_err(db)?;
        tracing::info!(announcement_id = %row.id, course_id = %row.course_id, author_id = %me.sub, "announcement accepted");
        // Stored: from here on the sweeper guarantees the job, so a failure is only logged. The
        // job continues the request's trace (never its token or key).
        let trace = CallContext { authorization: None, idempotency_key: None, ..ctx.clone() };
        if let Err(err) = self.queue(row.id, &trace).await {
            tracing::warn!(announcement_id = %row.id, error = %err, "fan-out job not queued yet; the sweeper will");
        }
        Ok(announcement)
    }

    /// A course was published again: tell its learners, through the same fan-out (the first
    /// publication finds no learners and is done at once). Idempotent per event.
    pub async fn course_updated(
        &self,
        event: &EventEnvelope<CoursePublished>,
        ctx: &CallContext,
    ) -> Result<(), FanOutError> {
        let course = &event.data.course;
        let row = AnnouncementRow {
            id: domain::notification_id(event.id, NotificationKind::CourseUpdated),
            kind: NotificationKind::CourseUpdated.as_str().to_owned(),
            course_id: course.id,
            author_id: course.instructor_id,
            course_title: course.title.clone(),
            course_slug: course.slug.clone(),
            title: "New version published".into(),
            body: format!("\"{}\" was updated: the course now has {} lessons.", course.title, course.lesson_count()),
            status: "queued".into(),
            after_user: None,
            recipients: 0,
            created_at: domain::to_micros(event.occurred_at),
            finished_at: None,
        };
        let mut conn = self.pool.acquire().await?;
        let new = store::insert_announcement(&mut conn, &row).await?;
        drop(conn);
        if new {
            tracing::info!(announcement_id = %row.id, course_id = %course.id, "course update to announce");
        }
        // Queued again on a repeated event too: the job id deduplicates, the fan-out resumes.
        self.queue(row.id, ctx).await
    }

    /// The announcement's progress, for its author and admins (anyone else: not found).
    pub async fn get(&self, me: &AccessClaims, req: &AnnouncementIdRequest) -> Result<Announcement, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = store::announcement(&mut conn, req.id).await.map_err(db)?;
        row.filter(|a| a.course_id == req.course_id && (a.author_id == me.sub || me.has_role(Role::Admin)))
            .map(|a| a.to_announcement())
            .ok_or_else(|| ErrorBody::not_found("no such announcement"))
    }

    /// Queue the fan-out job of announcement `id` (it continues `ctx`'s trace).
    async fn queue(&self, id: Uuid, ctx: &CallContext) -> Result<(), FanOutError> {
        let payload = serde_json::to_vec(&AnnounceJob { id }).map_err(|e| FanOutError::Publish(e.to_string()))?;
        let message =
            PublishMessage::build().headers(ctx.to_headers()).payload(payload.into()).message_id(id.to_string());
        self.js
            .send_publish(subj::JOB_ANNOUNCE, message)
            .await
            .map_err(|e| FanOutError::Publish(e.to_string()))?
            .await
            .map_err(|e| FanOutError::Publish(e.to_string()))?;
        Ok(())
    }

    /// Queue again the fan-out of announcements still `queued` after `older_than`.
    pub async fn requeue_stalled(&self, older_than: Duration) -> Result<usize, FanOutError> {
        let ids = store::stalled_announcements(&self.pool, older_than).await?;
        for id in &ids {
            self.queue(*id, &CallContext::new_root()).await?;
        }
        Ok(ids.len())
    }

    /// Fan announcement `id` out, from where a previous run stopped, until every learner is
    /// reached or `shutdown` fires (checked between pages). Calls continue `ctx`'s trace.
    pub async fn fan_out(
        &self,
        id: Uuid,
        ctx: &CallContext,
        shutdown: &CancellationToken,
    ) -> Result<FanOut, FanOutError> {
        loop {
            if shutdown.is_cancelled() {
                return Ok(FanOut::Interrupted);
            }
            let mut conn = self.pool.acquire().await?;
            let Some(a) = store::announcement(&mut conn, id).await? else {
                tracing::warn!(announcement_id = %id, "fan-out job for an unknown announcement dropped");
                return Ok(FanOut::Finished);
            };
            drop(conn);
            if a.status == "done" {
                return Ok(FanOut::Finished);
            }
            // The learners enrolled when it was made: who enrols later (say, just after a new
            // version was published) already sees what it announces.
            let req = LearnersRequest {
                course_id: a.course_id,
                after: a.after_user,
                limit: self.page_size,
                enrolled_by: Some(a.created_at),
            };
            let page = self
                .bus
                .request_within::<ListLearners>(ctx, &req, self.call_deadline)
                .await
                .map_err(|err| FanOutError::Enrollment(err.message))?;
            let Some(&last) = page.user_ids.last() else {
                self.finish(&a).await?;
                return Ok(FanOut::Finished);
            };
            let page_ids = AnnouncementPage {
                ids: page.user_ids.iter().map(|user| domain::announcement_notification_id(a.id, *user)).collect(),
                users: page.user_ids.clone(),
            };
            // Emails and texts first: if the process dies after this, the page is redone and
            // these are deduplicated; the other way round they could be lost.
            self.queue_messages(&a, &page_ids, ctx).await?;

            let title = a.in_app_title();
            let link = domain::announcement_link(&a.course_slug);
            let mut tx = self.pool.begin().await?;
            let current = store::announcement_for_update(&mut tx, id).await?;
            if current.as_ref().map(|c| c.after_user) != Some(a.after_user) {
                // Another run of the same job moved on meanwhile: continue from where it is.
                continue;
            }
            let inserted = store::store_announcement_page(&mut tx, &a, &page_ids, &title, &link, last).await?;
            tx.commit().await?;
            self.push(&a, &title, &link, &inserted).await;
            tracing::debug!(announcement_id = %id, stored = inserted.len(), page = page.user_ids.len(), "fan-out page done");
            if page.next.is_none() {
                self.finish(&a).await?;
                return Ok(FanOut::Finished);
            }
        }
    }

    async fn finish(&self, a: &AnnouncementRow) -> Result<(), FanOutError> {
        let mut conn = self.pool.acquire().await?;
        store::finish_announcement(&mut conn, a.id).await?;
        tracing::info!(announcement_id = %a.id, "announcement fanned out");
        Ok(())
    }

    /// One email/SMS job per learner of the page, all in flight at once, then every ack awaited.
    async fn queue_messages(
        &self,
        a: &AnnouncementRow,
        page: &AnnouncementPage,
        ctx: &CallContext,
    ) -> Result<(), FanOutError> {
        let publish = |e: async_nats::jetstream::context::PublishError| FanOutError::Publish(e.to_string());
        let mut acks = Vec::with_capacity(page.ids.len());
        for (id, user) in page.ids.iter().zip(&page.users) {
            let job = a.job(*id, *user);
            let payload = serde_json::to_vec(&job).map_err(|e| FanOutError::Publish(e.to_string()))?;
            let message =
                PublishMessage::build().headers(ctx.to_headers()).payload(payload.into()).message_id(id.to_string());
            acks.push(self.js.send_publish(subj::JOB_DELIVER, message).await.map_err(publish)?);
        }
        for ack in acks {
            ack.await.map_err(publish)?;
        }
        Ok(())
    }

    /// Tell the learners' open sockets (best effort: their inbox has it anyway).
    async fn push(&self, a: &AnnouncementRow, title: &str, link: &str, inserted: &[(Uuid, Uuid)]) {
        for (id, user) in inserted {
            let push = Push::Notification {
                notification: Notification {
                    id: *id,
                    kind: a.kind(),
                    title: title.to_owned(),
                    body: a.body.clone(),
                    link: Some(link.to_owned()),
                    created_at: a.created_at,
                    read_at: None,
                },
            };
            match serde_json::to_vec(&push) {
                Ok(payload) => {
                    if let Err(err) = self.nats.publish(subj::user_push(user), payload.into()).await {
                        tracing::warn!(notification_id = %id, error = %err, "real-time push failed");
                    }
                }
                Err(err) => tracing::error!(error = %err, "could not serialise a push"),
            }
        }
    }

    /// Handle one fan-out job: done when every learner is reached, handed back when the replica
    /// stops, retried after a failure and given up on (parked in the DLQ) at the last delivery.
    pub async fn handle(&self, delivery: &Delivery) -> Handled {
        let job = match serde_json::from_slice::<AnnounceJob>(&delivery.payload) {
            Ok(job) => job,
            Err(err) => return Handled::Reject(format!("malformed fan-out job: {err}")),
        };
        match self.fan_out(job.id, &delivery.ctx, &delivery.shutdown).await {
            Ok(FanOut::Finished) => Handled::Done,
            Ok(FanOut::Interrupted) => Handled::Release,
            Err(err) if delivery.is_last_attempt() => {
                tracing::error!(announcement_id = %job.id, delivered = delivery.delivered, error = %err, "fan-out given up");
                Handled::Reject(format!("fan-out given up: {err}"))
            }
            Err(err) => Handled::Retry(format!("fan-out of announcement {}: {err}", job.id)),
        }
    }
}
