//! Sources: durable consumers on other domains' event streams turn events into notification
//! jobs on `JOB_NOTIFY`. Each job is published with `Nats-Msg-Id` = its stable id (derived from
//! the event id and the kind) and the event is acknowledged only after JetStream stored the job,
//! so an event processed twice yields one job. Each source is one consumer of the bus's engine,
//! one event at a time in stream order; a consumer created for the first time starts a lookback
//! before the replica started (see `lib.rs`). A malformed event is skipped (logged); a failure is
//! retried, and given up on (parked in the DLQ) at the consumer's last delivery.
//!
//! Adding a source: a [`Source`] with its stream, consumer name and subjects, and a branch in
//! `Sources::process` that maps the event to a job with a `domain::*_job` function.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use coursebus_bus::consume::{Delivery, Handled};
use coursebus_bus::{Bus, CallContext};
use coursebus_contracts::catalog::{CoursePublished, GetCourse, GetCourseRequest};
use coursebus_contracts::enrollment::EnrollmentCreated;
use coursebus_contracts::identity::{ProfileUpdated, UserRegistered, VerificationRequested};
use coursebus_contracts::notifications::NotificationJob;
use coursebus_contracts::payments::OrderFulfilled;
use coursebus_contracts::subjects::{catalog, enrollment, identity, notifications as subj, payments};
use coursebus_contracts::{ErrorCode, EventEnvelope};
use serde::de::DeserializeOwned;
use sqlx::PgPool;

use crate::domain::{self, CourseRef};
use crate::store;

/// One durable consumer on another domain's stream.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub stream: &'static str,
    pub consumer: &'static str,
    pub subjects: &'static [&'static str],
}

/// Every event source notifications listens to.
pub const SOURCES: [Source; 4] = [
    Source {
        stream: identity::EVENT_STREAM,
        consumer: subj::IDENTITY_CONSUMER,
        subjects: &[identity::EVT_USER_REGISTERED, identity::EVT_PROFILE_UPDATED, identity::EVT_VERIFICATION_REQUESTED],
    },
    Source {
        stream: enrollment::EVENT_STREAM,
        consumer: subj::ENROLLMENT_CONSUMER,
        subjects: &[enrollment::EVT_ENROLMENT_CREATED],
    },
    Source {
        stream: catalog::EVENT_STREAM,
        consumer: subj::CATALOG_CONSUMER,
        subjects: &[catalog::EVT_COURSE_PUBLISHED],
    },
    Source {
        stream: payments::EVENT_STREAM,
        consumer: subj::PAYMENTS_CONSUMER,
        subjects: &[payments::EVT_ORDER_FULFILLED],
    },
];

/// Why an event is to be retried.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing the job: {0}")]
    Publish(String),
    #[error("catalog: {0}")]
    Catalog(String),
    #[error(transparent)]
    FanOut(#[from] crate::announce::FanOutError),
}

/// Turns events into jobs.
#[derive(Debug)]
pub struct Sources {
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub bus: Bus,
    pub call_deadline: Duration,
    /// Course updates fan out like announcements.
    pub announcer: Arc<crate::announce::Announcer>,
}

/// Decode an envelope; a malformed event is logged and skipped (retrying cannot fix it).
fn decode<T: DeserializeOwned>(delivery: &Delivery) -> Option<EventEnvelope<T>> {
    match serde_json::from_slice(&delivery.payload) {
        Ok(event) => Some(event),
        Err(err) => {
            tracing::error!(error = %err, subject = %delivery.subject, "malformed event skipped");
            None
        }
    }
}

impl Sources {
    /// Queue `job` (its delivery continues `ctx`'s trace).
    async fn publish(&self, job: &NotificationJob, ctx: &CallContext) -> Result<(), SourceError> {
        let payload = serde_json::to_vec(job).map_err(|e| SourceError::Publish(e.to_string()))?;
        let message =
            PublishMessage::build().headers(ctx.to_headers()).payload(payload.into()).message_id(job.id.to_string());
        let ack = self
            .js
            .send_publish(subj::JOB_DELIVER, message)
            .await
            .map_err(|e| SourceError::Publish(e.to_string()))?
            .await
            .map_err(|e| SourceError::Publish(e.to_string()))?;
        tracing::debug!(notification_id = %job.id, kind = job.kind.as_str(), duplicate = ack.duplicate, "job queued");
        Ok(())
    }

    /// The published course, as learners see it.
    async fn course(
        &self,
        event: &EventEnvelope<EnrollmentCreated>,
        ctx: &CallContext,
    ) -> Result<CourseRef, SourceError> {
        let req = GetCourseRequest { id_or_slug: event.data.course_id.to_string(), draft: false };
        match self.bus.request_within::<GetCourse>(ctx, &req, self.call_deadline).await {
            Ok(course) => Ok(CourseRef { title: course.title, slug: course.slug }),
            // Archived since: still tell the learner, without a title.
            Err(err) if err.code == ErrorCode::NotFound => {
                Ok(CourseRef { title: "a course".into(), slug: event.data.course_id.to_string() })
            }
            Err(err) => Err(SourceError::Catalog(err.message)),
        }
    }

    /// Handle one event: done once its job is stored (or it needs none); a failure is retried,
    /// and on the consumer's last delivery the event is parked in the DLQ (it stays in its
    /// stream; only this consumer stops trying).
    pub async fn handle(&self, delivery: Delivery) -> Handled {
        match self.process(&delivery).await {
            Ok(()) => Handled::Done,
            Err(err) if delivery.is_last_attempt() => {
                Handled::Reject(format!("event given up after {} deliveries: {err}", delivery.delivered))
            }
            Err(err) => Handled::Retry(err.to_string()),
        }
    }

    /// Process one event; `Ok` acknowledges it.
    async fn process(&self, delivery: &Delivery) -> Result<(), SourceError> {
        let ctx = &delivery.ctx;
        match delivery.subject.as_str() {
            identity::EVT_USER_REGISTERED => {
                let Some(event) = decode::<UserRegistered>(delivery) else { return Ok(()) };
                let mut conn = self.pool.acquire().await?;
                store::upsert_recipient(&mut conn, event.data.user_id, &event.data.email, &event.data.display_name)
                    .await?;
                drop(conn);
                self.publish(&domain::welcome_job(&event), ctx).await
            }
            identity::EVT_VERIFICATION_REQUESTED => {
                let Some(event) = decode::<VerificationRequested>(delivery) else { return Ok(()) };
                self.publish(&domain::verify_email_job(&event), ctx).await
            }
            identity::EVT_PROFILE_UPDATED => {
                let Some(event) = decode::<ProfileUpdated>(delivery) else { return Ok(()) };
                let mut conn = self.pool.acquire().await?;
                store::rename_recipient(&mut conn, event.data.user_id, &event.data.display_name).await?;
                Ok(())
            }
            catalog::EVT_COURSE_PUBLISHED => {
                let Some(event) = decode::<CoursePublished>(delivery) else { return Ok(()) };
                Ok(self.announcer.course_updated(&event, ctx).await?)
            }
            enrollment::EVT_ENROLMENT_CREATED => {
                let Some(event) = decode::<EnrollmentCreated>(delivery) else { return Ok(()) };
                let course = self.course(&event, ctx).await?;
                self.publish(&domain::enrolled_job(&event, &course), ctx).await
            }
            payments::EVT_ORDER_FULFILLED => {
                let Some(event) = decode::<OrderFulfilled>(delivery) else { return Ok(()) };
                self.publish(&domain::receipt_job(&event), ctx).await
            }
            other => {
                tracing::debug!(subject = other, "event without notifications skipped");
                Ok(())
            }
        }
    }
}
