//! Sources: durable consumers on other domains' event streams turn events into notification
//! jobs on `JOB_NOTIFY`. Each job is published with `Nats-Msg-Id` = its stable id (derived from
//! the event id and the kind) and the event is acknowledged only after JetStream stored the job,
//! so an event processed twice yields one job.
//!
//! Adding a source: a [`Source`] with its stream, consumer name and subjects, and a branch in
//! [`Sources::handle`] that maps the event to a job with a `domain::*_job` function.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, message::PublishMessage};
use coursebus_bus::{Bus, CallContext};
use coursebus_contracts::catalog::{CoursePublished, GetCourse, GetCourseRequest};
use coursebus_contracts::enrollment::EnrollmentCreated;
use coursebus_contracts::identity::{ProfileUpdated, UserRegistered, VerificationRequested};
use coursebus_contracts::notifications::NotificationJob;
use coursebus_contracts::payments::OrderFulfilled;
use coursebus_contracts::subjects::{catalog, enrollment, identity, notifications as subj, payments};
use coursebus_contracts::{ErrorCode, EventEnvelope};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

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
    /// Deliveries of one event before it is given up.
    pub max_deliver: i64,
    pub retry_delays: Vec<Duration>,
    /// How far back a source consumer created for the first time starts.
    pub lookback: Duration,
    /// Course updates fan out like announcements.
    pub announcer: Arc<crate::announce::Announcer>,
}

/// Decode an envelope; a malformed event is logged and skipped (retrying cannot fix it).
fn decode<T: DeserializeOwned>(message: &jetstream::Message) -> Option<EventEnvelope<T>> {
    match serde_json::from_slice(&message.payload) {
        Ok(event) => Some(event),
        Err(err) => {
            tracing::error!(error = %err, subject = %message.subject, "malformed event skipped");
            None
        }
    }
}

impl Sources {
    async fn publish(&self, job: &NotificationJob) -> Result<(), SourceError> {
        let payload = serde_json::to_vec(job).map_err(|e| SourceError::Publish(e.to_string()))?;
        let message = PublishMessage::build().payload(payload.into()).message_id(job.id.to_string());
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
    async fn course(&self, event: &EventEnvelope<EnrollmentCreated>) -> Result<CourseRef, SourceError> {
        let req = GetCourseRequest { id_or_slug: event.data.course_id.to_string(), draft: false };
        match self.bus.request_within::<GetCourse>(&CallContext::new_root(), &req, self.call_deadline).await {
            Ok(course) => Ok(CourseRef { title: course.title, slug: course.slug }),
            // Archived since: still tell the learner, without a title.
            Err(err) if err.code == ErrorCode::NotFound => {
                Ok(CourseRef { title: "a course".into(), slug: event.data.course_id.to_string() })
            }
            Err(err) => Err(SourceError::Catalog(err.message)),
        }
    }

    /// Process one event; `Ok` acknowledges it.
    pub async fn handle(&self, message: &jetstream::Message) -> Result<(), SourceError> {
        match message.subject.as_str() {
            identity::EVT_USER_REGISTERED => {
                let Some(event) = decode::<UserRegistered>(message) else { return Ok(()) };
                let mut conn = self.pool.acquire().await?;
                store::upsert_recipient(&mut conn, event.data.user_id, &event.data.email, &event.data.display_name)
                    .await?;
                drop(conn);
                self.publish(&domain::welcome_job(&event)).await
            }
            identity::EVT_VERIFICATION_REQUESTED => {
                let Some(event) = decode::<VerificationRequested>(message) else { return Ok(()) };
                self.publish(&domain::verify_email_job(&event)).await
            }
            identity::EVT_PROFILE_UPDATED => {
                let Some(event) = decode::<ProfileUpdated>(message) else { return Ok(()) };
                let mut conn = self.pool.acquire().await?;
                store::rename_recipient(&mut conn, event.data.user_id, &event.data.display_name).await?;
                Ok(())
            }
            catalog::EVT_COURSE_PUBLISHED => {
                let Some(event) = decode::<CoursePublished>(message) else { return Ok(()) };
                Ok(self.announcer.course_updated(&event).await?)
            }
            enrollment::EVT_ENROLMENT_CREATED => {
                let Some(event) = decode::<EnrollmentCreated>(message) else { return Ok(()) };
                let course = self.course(&event).await?;
                self.publish(&domain::enrolled_job(&event, &course)).await
            }
            payments::EVT_ORDER_FULFILLED => {
                let Some(event) = decode::<OrderFulfilled>(message) else { return Ok(()) };
                self.publish(&domain::receipt_job(&event)).await
            }
            other => {
                tracing::debug!(subject = other, "event without notifications skipped");
                Ok(())
            }
        }
    }

    /// Consume `source` until `shutdown`, one event at a time (in stream order). Waits for the
    /// stream to exist: its owner creates it when it starts.
    ///
    /// Where a new consumer starts: `lookback` before this replica started, so
    /// deploying notifications onto a platform with history does not greet every old account,
    /// while events of services that started just before it are not missed. An existing consumer
    /// keeps its position (and gets the current subject filter).
    pub async fn run(self: Arc<Self>, source: Source, shutdown: CancellationToken) {
        let deliver_policy =
            consumer::DeliverPolicy::ByStartTime { start_time: time::OffsetDateTime::now_utc() - self.lookback };
        let config = consumer::pull::Config {
            durable_name: Some(source.consumer.to_owned()),
            filter_subjects: source.subjects.iter().map(|s| (*s).to_owned()).collect(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: self.max_deliver,
            deliver_policy,
            ..Default::default()
        };
        loop {
            let Some(mut messages) =
                coursebus_bus::streams::pull_durable(&self.js, source.stream, &config, &shutdown).await
            else {
                return;
            };
            tracing::info!(consumer = source.consumer, stream = source.stream, "notification source ready");
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = messages.next() => next,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, consumer = source.consumer, "event pull failed; resubscribing");
                        break;
                    }
                    None => break,
                };
                let ack = match self.handle(&message).await {
                    Ok(()) => AckKind::Ack,
                    Err(err) => {
                        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
                        if delivered >= self.max_deliver {
                            // Given up: a copy goes to the DLQ first (the event stays in its
                            // stream; only this consumer stops trying).
                            let reason = format!("event given up after {delivered} deliveries: {err}");
                            let retry = domain::retry_delay(delivered, &self.retry_delays);
                            coursebus_bus::dlq::give_up(&self.js, &message, &reason, retry).await
                        } else {
                            let delay = domain::retry_delay(delivered, &self.retry_delays);
                            tracing::warn!(error = %err, subject = %message.subject, delivered, "event will be retried");
                            AckKind::Nak(Some(delay))
                        }
                    }
                };
                if let Err(err) = message.ack_with(ack).await {
                    tracing::warn!(error = %err, "could not acknowledge an event");
                }
            }
        }
    }
}
