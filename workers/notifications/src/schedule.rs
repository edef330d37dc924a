//! Timers, with JetStream message schedules (no polling cron): the `SCHED_NOTIFY` stream holds
//!
//! - two cron schedules (`cb.sched.notifications.schedule.digest.{daily,weekly}`) that fire a
//!   tick every day / every Monday at 07:00 UTC, re-published by every replica at start and every
//!   hour (a periodic job of the worker; publishing a schedule again replaces it);
//! - one `@at` schedule per job held back by quiet hours
//!   (`cb.sched.notifications.schedule.deferred.<notification id>`), whose tick carries the job.
//!
//! The shared durable consumer `notifications_scheduler` (the bus's consumer engine, one tick at
//! a time; a tick that keeps failing is parked in the DLQ) turns ticks into jobs on `JOB_NOTIFY`:
//! a digest tick becomes a [`DigestRun`] (one per tick, `Nats-Msg-Id` from the tick's stream
//! sequence), a deferred tick re-queues its job. A digest run queues one digest email job per
//! user with held emails (ids derived from user, frequency and cutoff, so a repeated run sends
//! nothing twice).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use coursebus_bus::consume::{Delivery, Handled};
use coursebus_contracts::notifications::{Channel, DigestFrequency, DigestRun, NotificationJob};
use coursebus_contracts::subjects::notifications as subj;
use sqlx::PgPool;

use crate::domain;
use crate::store;

/// Why a tick or a digest run is to be retried.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("JetStream: {0}")]
    JetStream(String),
}

fn js_err(e: impl std::fmt::Display) -> ScheduleError {
    ScheduleError::JetStream(e.to_string())
}

/// When each digest frequency fires (6-field cron, seconds first, UTC).
pub const DIGEST_CRONS: [(DigestFrequency, &str); 2] =
    [(DigestFrequency::Daily, "0 0 7 * * *"), (DigestFrequency::Weekly, "0 0 7 * * 1")];

/// The timer stream's configuration.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: subj::SCHEDULE_STREAM.to_owned(),
        subjects: vec![subj::SCHEDULE_SUBJECTS.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        // Quiet hours hold a job for less than a day; the cron schedules are re-published hourly.
        max_age: Duration::from_secs(8 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
        num_replicas: replicas.max(1),
        allow_direct: true,
        allow_message_schedules: true,
        ..Default::default()
    }
}

/// Owns the timers.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub pool: PgPool,
    pub js: jetstream::Context,
}

impl Scheduler {
    async fn publish(&self, subject: String, message: PublishMessage) -> Result<(), ScheduleError> {
        self.js.send_publish(subject, message).await.map_err(js_err)?.await.map_err(js_err)?;
        Ok(())
    }

    /// (Re-)publish the digest cron schedules.
    pub async fn publish_digest_schedules(&self) -> Result<(), ScheduleError> {
        for (frequency, cron) in DIGEST_CRONS {
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_SCHEDULE, cron);
            headers.insert(async_nats::header::NATS_SCHEDULE_TARGET, subj::digest_tick(frequency.as_str()).as_str());
            let message = PublishMessage::build().headers(headers).payload(Default::default());
            self.publish(subj::digest_schedule(frequency.as_str()), message).await?;
        }
        Ok(())
    }

    /// Hold `job` (only its `channels`) until `until`, when its tick re-queues it.
    pub async fn defer(
        &self,
        job: &NotificationJob,
        channels: &[Channel],
        until: jiff::Timestamp,
    ) -> Result<(), ScheduleError> {
        let mut held = job.clone();
        held.channels = channels.to_vec();
        let payload = serde_json::to_vec(&held).map_err(js_err)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_SCHEDULE,
            format!("@at {}", until.round(jiff::Unit::Second).map_err(js_err)?).as_str(),
        );
        headers.insert(async_nats::header::NATS_SCHEDULE_TARGET, subj::deferred_tick(&job.id).as_str());
        let message = PublishMessage::build().headers(headers).payload(payload.into());
        self.publish(subj::deferred_schedule(&job.id), message).await
    }

    /// Turn one tick into jobs; `Ok` acknowledges it.
    async fn tick(&self, delivery: &Delivery) -> Result<(), ScheduleError> {
        let seq = delivery.stream_sequence;
        let subject = delivery.subject.as_str();
        if let Some(frequency) = subject.strip_prefix(&subj::digest_tick("")) {
            let Some(frequency) = DigestFrequency::parse(frequency).filter(|f| *f != DigestFrequency::Off) else {
                tracing::warn!(subject, "tick for an unknown digest frequency skipped");
                return Ok(());
            };
            let run = DigestRun { frequency, cutoff: domain::to_micros(time::OffsetDateTime::now_utc()) };
            let payload = serde_json::to_vec(&run).map_err(js_err)?;
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("digest-{}-{seq}", frequency.as_str()));
            self.publish(subj::JOB_DIGEST.to_owned(), message).await?;
            tracing::info!(frequency = frequency.as_str(), "digest run queued");
        } else {
            // A job held by quiet hours: deliver it now.
            let job: NotificationJob = match serde_json::from_slice(&delivery.payload) {
                Ok(job) => job,
                Err(err) => {
                    tracing::error!(error = %err, subject, "malformed deferred job skipped");
                    return Ok(());
                }
            };
            let payload = serde_json::to_vec(&job).map_err(js_err)?;
            let message =
                PublishMessage::build().payload(payload.into()).message_id(format!("{}-deferred-{seq}", job.id));
            self.publish(subj::JOB_DELIVER.to_owned(), message).await?;
            tracing::debug!(notification_id = %job.id, "deferred job released");
        }
        Ok(())
    }

    /// A digest run: queue one digest email per user with held emails.
    pub async fn digest_run(&self, run: &DigestRun) -> Result<usize, ScheduleError> {
        let users = store::digest_due(&self.pool, run.frequency.as_str(), run.cutoff).await?;
        let mut acks = Vec::with_capacity(users.len());
        for user in &users {
            let job = domain::digest_job(*user, run);
            let payload = serde_json::to_vec(&job).map_err(js_err)?;
            let message = PublishMessage::build().payload(payload.into()).message_id(job.id.to_string());
            acks.push(self.js.send_publish(subj::JOB_DELIVER, message).await.map_err(js_err)?);
        }
        for ack in acks {
            ack.await.map_err(js_err)?;
        }
        Ok(users.len())
    }

    /// Handle one tick of `SCHED_NOTIFY`: done once its jobs are stored, else retried.
    pub async fn handle_tick(&self, delivery: Delivery) -> Handled {
        match self.tick(&delivery).await {
            Ok(()) => Handled::Done,
            Err(err) => Handled::Retry(format!("tick: {err}")),
        }
    }

    /// Handle one digest-run job from `JOB_NOTIFY`.
    pub async fn handle_digest_run(&self, delivery: &Delivery) -> Handled {
        let run = match serde_json::from_slice::<DigestRun>(&delivery.payload) {
            Ok(run) => run,
            Err(err) => {
                tracing::error!(error = %err, "malformed digest run dropped");
                return Handled::Done;
            }
        };
        match self.digest_run(&run).await {
            Ok(users) => {
                tracing::info!(frequency = run.frequency.as_str(), users, "digests queued");
                Handled::Done
            }
            Err(err) => Handled::Retry(format!("digest run: {err}")),
        }
    }
}
