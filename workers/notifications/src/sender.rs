//! The sender: every replica pulls from one durable consumer on `JOB_NOTIFY` (the bus's consumer
//! engine, up to `sender_concurrency` jobs at once) and delivers each job on its channels,
//! acknowledging only after the outcome is committed. The same consumer carries announcement
//! fan-outs (`announce.rs`) and digest runs (`schedule.rs`).
//!
//! Exactly one email per notification: the email's delivery-log row is locked (`FOR UPDATE`)
//! for the whole attempt, checked before sending and marked `sent` in the same transaction right
//! after the SMTP server accepted the message. A redelivered job, or a second replica holding the
//! same job after an ack timeout, finds `sent` and only acknowledges. (The one window left: the
//! process dies between the SMTP server's acceptance and the commit.)
//!
//! Retries: a transient failure (SMTP down, 4xx, timeout, recipient not known yet) is recorded
//! with its reason and the job is retried with the consumer's capped growing delays; the last
//! allowed delivery records `failed` and parks the job in the DLQ. A rejection (5xx, invalid
//! address) is `failed` at once, without retry. A malformed job is parked at once.

use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::consume::{Delivery, Handled};
use coursebus_bus::{Bus, CallContext};
use coursebus_contracts::identity::{IssueVerificationToken, VerificationTokenRequest};
use coursebus_contracts::notifications::{Channel, Notification, NotificationJob, NotificationKind, Push};
use coursebus_contracts::subjects::notifications as subj;
use sqlx::PgPool;

use crate::announce::Announcer;
use crate::domain::{Person, Templates, verify_url};
use crate::mailer::{Mailer, SendError};
use crate::schedule::Scheduler;
use crate::sms::Twilio;
use crate::store::{self, DeliveryStatus, NewNotification};

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every channel is settled (sent, skipped, or refused by the provider): acknowledge.
    Settled,
    /// Some channel should be tried again later.
    Retry(String),
    /// The last attempt failed for a reason that retrying might have fixed (the server stayed
    /// down): logged `failed`, and the job goes to the DLQ for an operator.
    GaveUp(String),
}

/// The end of the quiet hours `schedule` holds now, if any.
fn quiet_now(schedule: &store::ScheduleRow) -> Option<jiff::Timestamp> {
    let (start, end, zone) = (schedule.quiet_start?, schedule.quiet_end?, schedule.time_zone.clone()?);
    let time = |t: time::Time| jiff::civil::Time::new(t.hour() as i8, t.minute() as i8, 0, 0).ok();
    let quiet = crate::domain::Quiet { start: time(start)?, end: time(end)?, zone };
    crate::domain::quiet_until(jiff::Timestamp::now(), &quiet)
}

/// Record what one attempt on `channel` came to (in the caller's transaction, which holds the
/// delivery row's lock): sent (with the provider's id, if any), still queued with the reason
/// (retry later), or failed for good (a rejection, or a transient failure on the last attempt).
async fn settle(
    tx: &mut sqlx::PgConnection,
    job: &NotificationJob,
    channel: Channel,
    result: Result<Option<String>, SendError>,
    last_attempt: bool,
) -> Result<Outcome, DeliverError> {
    Ok(match result {
        Ok(provider_id) => {
            store::record_attempt(tx, job.id, channel, DeliveryStatus::Sent, None).await?;
            tracing::info!(notification_id = %job.id, kind = job.kind.as_str(), channel = channel.as_str(), provider_id = provider_id.as_deref().unwrap_or(""), "sent");
            Outcome::Settled
        }
        Err(SendError::Retry(reason)) if !last_attempt => {
            store::record_attempt(tx, job.id, channel, DeliveryStatus::Queued, Some(&reason)).await?;
            Outcome::Retry(reason)
        }
        Err(SendError::Retry(reason)) => {
            store::record_attempt(tx, job.id, channel, DeliveryStatus::Failed, Some(&reason)).await?;
            tracing::warn!(notification_id = %job.id, kind = job.kind.as_str(), channel = channel.as_str(), reason = %reason, "given up after the last attempt");
            Outcome::GaveUp(format!("{}: {reason}", channel.as_str()))
        }
        Err(SendError::Reject(reason)) => {
            store::record_attempt(tx, job.id, channel, DeliveryStatus::Failed, Some(&reason)).await?;
            tracing::warn!(notification_id = %job.id, kind = job.kind.as_str(), channel = channel.as_str(), reason = %reason, "refused");
            Outcome::Settled
        }
    })
}

/// Delivers notification jobs.
#[derive(Debug)]
pub struct Sender {
    pub pool: PgPool,
    /// For real-time pushes of new in-app notifications (core NATS).
    pub nats: async_nats::Client,
    pub templates: Arc<Templates>,
    pub mailer: Mailer,
    /// For verification tokens from identity.
    pub bus: Bus,
    pub call_deadline: Duration,
    /// Text messages; `None` when the platform has no Twilio account configured.
    pub twilio: Option<Twilio>,
    /// Fans announcements out (jobs on `cb.job.notifications.announce`).
    pub announcer: Arc<Announcer>,
    /// Digest runs and jobs held by quiet hours.
    pub scheduler: Arc<Scheduler>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
}

impl Sender {
    /// Deliver `job` (calls continue `ctx`'s trace); `last_attempt` turns a transient failure
    /// into a final `failed`.
    pub async fn deliver(
        &self,
        job: &NotificationJob,
        ctx: &CallContext,
        last_attempt: bool,
    ) -> Result<Outcome, DeliverError> {
        let mut tx = self.pool.begin().await?;
        for channel in &job.channels {
            store::queue_delivery(&mut tx, job.id, *channel, job.user_id, job.kind).await?;
            // Preferences apply to whatever is not delivered yet (also between retries).
            if job.kind.optional(*channel) && !store::channel_enabled(&mut tx, job.user_id, job.kind, *channel).await? {
                store::skip_delivery(&mut tx, job.id, *channel).await?;
            }
        }
        let mut push = None;
        if job.channels.contains(&Channel::InApp)
            && store::lock_delivery(&mut tx, job.id, Channel::InApp).await? == Some(DeliveryStatus::Queued)
        {
            let content = self.templates.in_app(job)?;
            let notification = Notification {
                id: job.id,
                kind: job.kind,
                title: content.title.clone(),
                body: content.body.clone(),
                link: content.link.clone(),
                created_at: crate::domain::to_micros(job.created_at),
                read_at: None,
            };
            let inserted = store::insert_notification(
                &mut tx,
                &NewNotification {
                    id: job.id,
                    user_id: job.user_id,
                    kind: job.kind,
                    title: &content.title,
                    body: &content.body,
                    link: content.link.as_deref(),
                    created_at: job.created_at,
                },
            )
            .await?;
            store::record_attempt(&mut tx, job.id, Channel::InApp, DeliveryStatus::Sent, None).await?;
            push = inserted.then_some(notification);
        }
        tx.commit().await?;
        if let Some(notification) = push {
            self.push(job, notification).await;
        }

        let mut channels: Vec<Channel> = job.channels.iter().copied().filter(|c| *c != Channel::InApp).collect();
        if job.kind.can_wait() && !channels.is_empty() {
            let mut conn = self.pool.acquire().await?;
            let schedule = store::schedule(&mut conn, job.user_id).await?;
            drop(conn);
            if let Some(schedule) = schedule {
                // The user chose a digest: the email waits for it.
                if schedule.digest != "off" && channels.contains(&Channel::Email) {
                    self.hold_for_digest(job).await?;
                    channels.retain(|c| *c != Channel::Email);
                }
                // Quiet hours: emails and texts wait for their end (in-app did not).
                if let Some(until) = quiet_now(&schedule)
                    && !channels.is_empty()
                {
                    return self.defer(job, &channels, until).await;
                }
            }
        }
        let mut outcome = Outcome::Settled;
        if channels.contains(&Channel::Email) {
            outcome = self.email(job, ctx, last_attempt).await?;
        }
        if channels.contains(&Channel::Sms) {
            // A retry wins over giving up, giving up over settled.
            outcome = match (outcome, self.sms(job, last_attempt).await?) {
                (Outcome::Retry(r), _) | (_, Outcome::Retry(r)) => Outcome::Retry(r),
                (Outcome::GaveUp(r), _) | (_, Outcome::GaveUp(r)) => Outcome::GaveUp(r),
                _ => Outcome::Settled,
            };
        }
        Ok(outcome)
    }

    /// Hold a still-queued email for the user's digest (one line: what its subject would say).
    async fn hold_for_digest(&self, job: &NotificationJob) -> Result<(), DeliverError> {
        let mut tx = self.pool.begin().await?;
        if store::lock_delivery(&mut tx, job.id, Channel::Email).await? == Some(DeliveryStatus::Queued) {
            let line = self.templates.line(job)?;
            let link = job.data.get("link").and_then(|l| l.as_str());
            store::hold_for_digest(&mut tx, job.id, job.user_id, job.kind, &line, link, job.created_at).await?;
            tracing::debug!(notification_id = %job.id, "email held for the digest");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Hold `channels` of `job` until the quiet hours end; the job is then settled here.
    async fn defer(
        &self,
        job: &NotificationJob,
        channels: &[Channel],
        until: jiff::Timestamp,
    ) -> Result<Outcome, DeliverError> {
        if let Err(err) = self.scheduler.defer(job, channels, until).await {
            return Ok(Outcome::Retry(format!("could not hold the job for quiet hours: {err}")));
        }
        let mut conn = self.pool.acquire().await?;
        let note = format!("held by quiet hours until {until}");
        for channel in channels {
            store::note_delivery(&mut conn, job.id, *channel, &note).await?;
        }
        tracing::debug!(notification_id = %job.id, until = %until, "held by quiet hours");
        Ok(Outcome::Settled)
    }

    /// Tell the user's open sockets (best effort: the inbox has it anyway).
    async fn push(&self, job: &NotificationJob, notification: Notification) {
        let payload = match serde_json::to_vec(&Push::Notification { notification }) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(error = %err, "could not serialise a push");
                return;
            }
        };
        if let Err(err) = self.nats.publish(subj::user_push(&job.user_id), payload.into()).await {
            tracing::warn!(notification_id = %job.id, error = %err, "real-time push failed");
        }
    }

    async fn email(
        &self,
        job: &NotificationJob,
        ctx: &CallContext,
        last_attempt: bool,
    ) -> Result<Outcome, DeliverError> {
        let mut tx = self.pool.begin().await?;
        match store::lock_delivery(&mut tx, job.id, Channel::Email).await? {
            Some(DeliveryStatus::Queued) => {}
            // Sent, failed for good or skipped before: nothing to do.
            _ => return Ok(Outcome::Settled),
        }
        let result = match store::recipient(&mut tx, job.user_id).await? {
            // The identity event may not have been processed yet.
            None => Err(SendError::Retry("no address known for the user yet".into())),
            Some(recipient) => match self.prepare(&mut tx, job, ctx).await? {
                Err(reason) => Err(reason),
                Ok(None) => {
                    store::skip_delivery(&mut tx, job.id, Channel::Email).await?;
                    tx.commit().await?;
                    tracing::info!(notification_id = %job.id, kind = job.kind.as_str(), "nothing to send");
                    return Ok(Outcome::Settled);
                }
                Ok(Some((job, items))) => {
                    let person = Person { display_name: &recipient.display_name, email: &recipient.email };
                    let sent = match self.templates.email(&job, &person) {
                        Ok(content) => {
                            self.mailer.send(&recipient.email, &recipient.display_name, &content, job.id).await
                        }
                        Err(err) => Err(SendError::Reject(format!("template: {err}"))),
                    };
                    if sent.is_ok() && !items.is_empty() {
                        store::mark_digested(&mut tx, &items, job.id).await?;
                    }
                    sent
                }
            },
        };
        let outcome = settle(&mut tx, job, Channel::Email, result.map(|()| None), last_attempt).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// A text message through Twilio, under the same once-only rule as email.
    async fn sms(&self, job: &NotificationJob, last_attempt: bool) -> Result<Outcome, DeliverError> {
        let mut tx = self.pool.begin().await?;
        match store::lock_delivery(&mut tx, job.id, Channel::Sms).await? {
            Some(DeliveryStatus::Queued) => {}
            _ => return Ok(Outcome::Settled),
        }
        let result = match (&self.twilio, store::phone(&mut tx, job.user_id).await?) {
            (None, _) => Err(SendError::Reject("text messages are not configured on this platform".into())),
            (Some(_), None) => Err(SendError::Reject("the user has no phone number".into())),
            (Some(twilio), Some(phone)) => match self.templates.sms(job) {
                Ok(text) => twilio.send(&phone, &text).await.map(Some),
                Err(err) => Err(SendError::Reject(format!("template: {err}"))),
            },
        };
        let outcome = settle(&mut tx, job, Channel::Sms, result, last_attempt).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// What an email needs beyond its job, read in the delivery's transaction: account emails
    /// carry a fresh single-use link from identity (minted per attempt, so a retried email never
    /// shows a link that was already used); a digest gathers the held emails (locked until it is
    /// recorded sent, returned as the last element). `Ok(None)`: nothing to send (a verification
    /// email for a confirmed address, an empty digest).
    #[allow(clippy::type_complexity)]
    async fn prepare(
        &self,
        tx: &mut sqlx::PgConnection,
        job: &NotificationJob,
        ctx: &CallContext,
    ) -> Result<Result<Option<(NotificationJob, Vec<uuid::Uuid>)>, SendError>, DeliverError> {
        let mut job = job.clone();
        if job.kind == NotificationKind::Digest {
            let items = store::digest_items_for_update(tx, job.user_id, job.created_at).await?;
            if items.is_empty() {
                return Ok(Ok(None));
            }
            if let serde_json::Value::Object(data) = &mut job.data {
                data.insert("items".into(), serde_json::to_value(&items).unwrap_or_default());
            }
            return Ok(Ok(Some((job, items.into_iter().map(|i| i.notification_id).collect()))));
        }
        if !job.kind.is_account() {
            return Ok(Ok(Some((job, Vec::new()))));
        }
        let req = VerificationTokenRequest { user_id: job.user_id };
        let reply = match self.bus.request_within::<IssueVerificationToken>(ctx, &req, self.call_deadline).await {
            Ok(reply) => reply,
            Err(err) => return Ok(Err(SendError::Retry(format!("identity: {}", err.message)))),
        };
        match reply.token {
            Some(token) => {
                if let serde_json::Value::Object(data) = &mut job.data {
                    data.insert("verify_url".into(), verify_url(self.templates.app_url(), &token).into());
                }
            }
            None if job.kind == NotificationKind::VerifyEmail => return Ok(Ok(None)),
            None => {}
        }
        Ok(Ok(Some((job, Vec::new()))))
    }

    /// Handle one message of `JOB_NOTIFY`: a fan-out, a digest run or a notification job.
    pub async fn handle(&self, delivery: Delivery) -> Handled {
        match delivery.subject.as_str() {
            subj::JOB_ANNOUNCE => return self.announcer.handle(&delivery).await,
            subj::JOB_DIGEST => return self.scheduler.handle_digest_run(&delivery).await,
            _ => {}
        }
        let job: NotificationJob = match serde_json::from_slice(&delivery.payload) {
            Ok(job) => job,
            Err(err) => return Handled::Reject(format!("malformed job: {err}")),
        };
        match self.deliver(&job, &delivery.ctx, delivery.is_last_attempt()).await {
            Ok(Outcome::Settled) => Handled::Done,
            // Logged `failed`; the job goes to the DLQ for an operator.
            Ok(Outcome::GaveUp(reason)) => Handled::Reject(reason),
            Ok(Outcome::Retry(reason)) => Handled::Retry(format!("notification {}: {reason}", job.id)),
            // On the last delivery the engine parks the job with this reason.
            Err(err) => Handled::Retry(format!("notification {}: {err}", job.id)),
        }
    }
}
