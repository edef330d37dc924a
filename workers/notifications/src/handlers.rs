//! One method per inbox endpoint. Every method verifies the caller's token itself; a user sees
//! and changes only their own notifications (another's is "not found").

use std::sync::Arc;

use coursebus_bus::CallContext;
use coursebus_bus::auth::JwtVerifier;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::notifications::{
    Announcement, AnnouncementIdRequest, Channel, CreateAnnouncementRequest, Delivery, DeliveryPage, DeliverySchedule,
    DigestFrequency, ListDeliveriesRequest, ListNotificationsRequest, MarkedRead, Notification, NotificationIdRequest,
    NotificationKind, NotificationPage, PhoneReply, PhoneRequest, Preferences, QuietHours, UnreadCount,
    UnsubscribeRequest, Unsubscribed,
};
use coursebus_contracts::rpc::Empty;
use coursebus_contracts::validate::ValidationError;
use sha2::Digest as _;
use sqlx::PgPool;

use crate::announce::Announcer;
use crate::domain::{self, UnsubscribeLinks};
use crate::store::{self, NotificationRow};

/// The inbox service's state, shared by all endpoint handlers of one replica.
#[derive(Debug)]
pub struct Inbox {
    pub pool: PgPool,
    pub verifier: Arc<JwtVerifier>,
    pub links: Arc<UnsubscribeLinks>,
    pub announcer: Arc<Announcer>,
}

/// Log a database error and answer `internal` (the client never sees database details).
use coursebus_bus::db;

impl Inbox {
    async fn caller(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        self.verifier.verify_ctx(ctx).await
    }

    pub async fn list(&self, ctx: CallContext, req: ListNotificationsRequest) -> Result<NotificationPage, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let limit = domain::page_limit(req.limit, 20)?;
        let before = req.cursor.as_deref().map(domain::decode_cursor).transpose()?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut rows =
            store::list(&mut conn, me.sub, req.unread.unwrap_or(false), before, limit + 1).await.map_err(db)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| domain::encode_cursor(r.seq)) } else { None };
        let items = rows.iter().map(NotificationRow::to_notification).collect::<Result<_, _>>().map_err(db)?;
        Ok(NotificationPage { items, next_cursor })
    }

    pub async fn unread(&self, ctx: CallContext, _req: Empty) -> Result<UnreadCount, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Ok(UnreadCount { unread: store::unread_count(&mut conn, me.sub).await.map_err(db)? })
    }

    pub async fn read(&self, ctx: CallContext, req: NotificationIdRequest) -> Result<Notification, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = store::mark_read(&mut conn, me.sub, req.id)
            .await
            .map_err(db)?
            .ok_or_else(|| ErrorBody::not_found("no such notification"))?;
        row.to_notification().map_err(db)
    }

    pub async fn read_all(&self, ctx: CallContext, _req: Empty) -> Result<MarkedRead, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Ok(MarkedRead { marked: store::mark_all_read(&mut conn, me.sub).await.map_err(db)? })
    }

    pub async fn preferences(&self, ctx: CallContext, _req: Empty) -> Result<Preferences, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let stored = store::preferences(&mut conn, me.sub).await.map_err(db)?;
        Ok(Preferences { items: domain::preference_matrix(&stored) })
    }

    /// Change some pairs (all or nothing) and answer the whole set.
    pub async fn update_preferences(&self, ctx: CallContext, req: Preferences) -> Result<Preferences, ErrorBody> {
        let me = self.caller(&ctx).await?;
        for preference in &req.items {
            domain::check_preference(preference)?;
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        for p in &req.items {
            store::set_preference(&mut tx, me.sub, p.kind, p.channel, p.enabled).await.map_err(db)?;
        }
        let stored = store::preferences(&mut tx, me.sub).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Preferences { items: domain::preference_matrix(&stored) })
    }

    /// Public: the signed link from an email turns that kind of email off, once.
    pub async fn unsubscribe(&self, _ctx: CallContext, req: UnsubscribeRequest) -> Result<Unsubscribed, ErrorBody> {
        let Some((user, kind)) = self.links.check(&req.token) else {
            return Err(ValidationError::new("token", "this unsubscribe link is not valid").into());
        };
        let hash = sha2::Sha256::digest(req.token.as_bytes());
        let mut tx = self.pool.begin().await.map_err(db)?;
        if !store::use_unsubscribe_link(&mut tx, &hash, user, kind.as_str()).await.map_err(db)? {
            return Err(ErrorBody::conflict("this unsubscribe link was already used")
                .with_details(serde_json::json!({ "field": "token" })));
        }
        store::set_preference(&mut tx, user, kind, Channel::Email, false).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(user_id = %user, kind = kind.as_str(), "unsubscribed by link");
        Ok(Unsubscribed { kind, channel: Channel::Email })
    }

    /// Where the caller's text messages go (`None` removes the number).
    pub async fn set_phone(&self, ctx: CallContext, req: PhoneRequest) -> Result<PhoneReply, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let phone = req.phone.as_deref().map(domain::parse_phone).transpose()?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        store::set_phone(&mut conn, me.sub, phone.as_deref()).await.map_err(db)?;
        Ok(PhoneReply { phone })
    }

    pub async fn announce(&self, ctx: CallContext, req: CreateAnnouncementRequest) -> Result<Announcement, ErrorBody> {
        let me = self.caller(&ctx).await?;
        self.announcer.create(&me, &ctx, req).await
    }

    pub async fn announcement(&self, ctx: CallContext, req: AnnouncementIdRequest) -> Result<Announcement, ErrorBody> {
        let me = self.caller(&ctx).await?;
        self.announcer.get(&me, &req).await
    }

    /// The caller's own delivery log (whether the verification email went out, and if not, why).
    pub async fn deliveries(&self, ctx: CallContext, req: ListDeliveriesRequest) -> Result<DeliveryPage, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let limit = domain::page_limit(req.limit, 20)?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let rows = store::deliveries(&mut conn, me.sub, limit).await.map_err(db)?;
        let items = rows
            .into_iter()
            .filter_map(|r| {
                Some(Delivery {
                    notification_id: r.notification_id,
                    kind: NotificationKind::parse(&r.kind)?,
                    channel: Channel::parse(&r.channel)?,
                    status: r.status,
                    attempts: u32::try_from(r.attempts).unwrap_or(0),
                    last_error: r.last_error,
                    updated_at: r.updated_at,
                    sent_at: r.sent_at,
                })
            })
            .collect();
        Ok(DeliveryPage { items })
    }

    pub async fn schedule(&self, ctx: CallContext, _req: Empty) -> Result<DeliverySchedule, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = store::schedule(&mut conn, me.sub).await.map_err(db)?;
        Ok(row.map(|r| to_schedule(&r)).unwrap_or_default())
    }

    /// Replace the caller's digest frequency and quiet hours.
    pub async fn update_schedule(
        &self,
        ctx: CallContext,
        req: DeliverySchedule,
    ) -> Result<DeliverySchedule, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let quiet = domain::check_schedule(&req)?;
        let time = |t: jiff::civil::Time| {
            time::Time::from_hms(t.hour() as u8, t.minute() as u8, 0).map_err(|_| ErrorBody::internal())
        };
        let row = store::ScheduleRow {
            digest: req.digest.as_str().to_owned(),
            quiet_start: quiet.as_ref().map(|q| time(q.start)).transpose()?,
            quiet_end: quiet.as_ref().map(|q| time(q.end)).transpose()?,
            time_zone: quiet.map(|q| q.zone),
        };
        let mut conn = self.pool.acquire().await.map_err(db)?;
        store::set_schedule(&mut conn, me.sub, &row).await.map_err(db)?;
        Ok(to_schedule(&row))
    }
}

fn to_schedule(row: &store::ScheduleRow) -> DeliverySchedule {
    let hhmm = |t: time::Time| format!("{:02}:{:02}", t.hour(), t.minute());
    let quiet_hours = match (row.quiet_start, row.quiet_end, &row.time_zone) {
        (Some(start), Some(end), Some(zone)) => {
            Some(QuietHours { start: hhmm(start), end: hhmm(end), time_zone: zone.clone() })
        }
        _ => None,
    };
    DeliverySchedule { digest: DigestFrequency::parse(&row.digest).unwrap_or_default(), quiet_hours }
}
