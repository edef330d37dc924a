//! Notifications' PostgreSQL store. Every function takes a connection so callers compose them in
//! one transaction.

use coursebus_contracts::notifications::{Channel, Notification, NotificationKind};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

pub type Result<T> = std::result::Result<T, sqlx::Error>;

/// Where a user is reached.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Recipient {
    pub email: String,
    pub display_name: String,
}

/// Record (or refresh) a user's address and name.
pub async fn upsert_recipient(conn: &mut PgConnection, user_id: Uuid, email: &str, display_name: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO recipients (user_id, email, display_name) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, display_name = EXCLUDED.display_name, \
         updated_at = now()",
    )
    .bind(user_id)
    .bind(email)
    .bind(display_name)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn rename_recipient(conn: &mut PgConnection, user_id: Uuid, display_name: &str) -> Result<()> {
    sqlx::query("UPDATE recipients SET display_name = $2, updated_at = now() WHERE user_id = $1")
        .bind(user_id)
        .bind(display_name)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn recipient(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<Recipient>> {
    sqlx::query_as(
        "SELECT email, display_name FROM recipients \
         WHERE user_id = $1 AND email IS NOT NULL AND display_name IS NOT NULL",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// What an inbox row holds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub seq: i64,
    pub id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub created_at: OffsetDateTime,
    pub read_at: Option<OffsetDateTime>,
}

impl NotificationRow {
    pub fn to_notification(&self) -> Result<Notification> {
        Ok(Notification {
            id: self.id,
            kind: NotificationKind::parse(&self.kind)
                .ok_or_else(|| sqlx::Error::Decode("unexpected stored notification kind".into()))?,
            title: self.title.clone(),
            body: self.body.clone(),
            link: self.link.clone(),
            created_at: self.created_at,
            read_at: self.read_at,
        })
    }
}

/// A new in-app notification; returns false when it was stored before (a redelivered job).
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: NotificationKind,
    pub title: &'a str,
    pub body: &'a str,
    pub link: Option<&'a str>,
    pub created_at: OffsetDateTime,
}

pub async fn insert_notification(conn: &mut PgConnection, n: &NewNotification<'_>) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, title, body, link, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(n.id)
    .bind(n.user_id)
    .bind(n.kind.as_str())
    .bind(n.title)
    .bind(n.body)
    .bind(n.link)
    .bind(n.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A page of `user_id`'s inbox, newest first, strictly older than `before` (a `seq`).
pub async fn list(
    conn: &mut PgConnection,
    user_id: Uuid,
    unread_only: bool,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<NotificationRow>> {
    sqlx::query_as(
        "SELECT seq, id, kind, title, body, link, created_at, read_at FROM notifications \
         WHERE user_id = $1 AND ($2 = false OR read_at IS NULL) AND ($3::bigint IS NULL OR seq < $3) \
         ORDER BY seq DESC LIMIT $4",
    )
    .bind(user_id)
    .bind(unread_only)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
}

pub async fn unread_count(conn: &mut PgConnection, user_id: Uuid) -> Result<u64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Mark one of `user_id`'s notifications read (the first read time stays); `None` when it is not
/// theirs or does not exist.
pub async fn mark_read(conn: &mut PgConnection, user_id: Uuid, id: Uuid) -> Result<Option<NotificationRow>> {
    sqlx::query_as(
        "UPDATE notifications SET read_at = COALESCE(read_at, now()) WHERE id = $1 AND user_id = $2 \
         RETURNING seq, id, kind, title, body, link, created_at, read_at",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

pub async fn mark_all_read(conn: &mut PgConnection, user_id: Uuid) -> Result<u64> {
    let done = sqlx::query("UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// A delivery's state in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Failed,
    /// The user turned the channel off for this kind.
    Skipped,
    /// Held for the user's digest (the digest email has its own delivery).
    Digested,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Digested => "digested",
        }
    }

    fn parse(raw: &str) -> Result<Self> {
        match raw {
            "queued" => Ok(DeliveryStatus::Queued),
            "sent" => Ok(DeliveryStatus::Sent),
            "failed" => Ok(DeliveryStatus::Failed),
            "skipped" => Ok(DeliveryStatus::Skipped),
            "digested" => Ok(DeliveryStatus::Digested),
            _ => Err(sqlx::Error::Decode("unexpected stored delivery status".into())),
        }
    }
}

/// Log a delivery as `queued` unless it is logged already.
pub async fn queue_delivery(
    conn: &mut PgConnection,
    notification_id: Uuid,
    channel: Channel,
    user_id: Uuid,
    kind: NotificationKind,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO deliveries (notification_id, channel, user_id, kind, status) VALUES ($1, $2, $3, $4, 'queued') \
         ON CONFLICT (notification_id, channel) DO NOTHING",
    )
    .bind(notification_id)
    .bind(channel.as_str())
    .bind(user_id)
    .bind(kind.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Lock a delivery's log row for the rest of the transaction (a concurrent attempt at the same
/// delivery waits, then sees what this one recorded) and return its status.
pub async fn lock_delivery(
    conn: &mut PgConnection,
    notification_id: Uuid,
    channel: Channel,
) -> Result<Option<DeliveryStatus>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT status FROM deliveries WHERE notification_id = $1 AND channel = $2 FOR UPDATE")
            .bind(notification_id)
            .bind(channel.as_str())
            .fetch_optional(conn)
            .await?;
    row.map(|(s,)| DeliveryStatus::parse(&s)).transpose()
}

/// Record an attempt: `sent`, `failed` (final) or still `queued` with the reason it failed.
pub async fn record_attempt(
    conn: &mut PgConnection,
    notification_id: Uuid,
    channel: Channel,
    status: DeliveryStatus,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE deliveries SET status = $3, attempts = attempts + 1, last_error = COALESCE($4, last_error), \
         updated_at = now(), sent_at = CASE WHEN $3 = 'sent' THEN now() END \
         WHERE notification_id = $1 AND channel = $2",
    )
    .bind(notification_id)
    .bind(channel.as_str())
    .bind(status.as_str())
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Mark a still-queued delivery `skipped` (the user turned the channel off).
pub async fn skip_delivery(conn: &mut PgConnection, notification_id: Uuid, channel: Channel) -> Result<()> {
    sqlx::query(
        "UPDATE deliveries SET status = 'skipped', updated_at = now() \
         WHERE notification_id = $1 AND channel = $2 AND status = 'queued'",
    )
    .bind(notification_id)
    .bind(channel.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// The pairs `user_id` changed: (kind, channel, enabled).
pub async fn preferences(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<(String, String, bool)>> {
    sqlx::query_as("SELECT kind, channel, enabled FROM preferences WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(conn)
        .await
}

/// Is `kind` on `channel` on for `user_id`? (No row: the kind's default.)
pub async fn channel_enabled(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: NotificationKind,
    channel: Channel,
) -> Result<bool> {
    let row: Option<(bool,)> =
        sqlx::query_as("SELECT enabled FROM preferences WHERE user_id = $1 AND kind = $2 AND channel = $3")
            .bind(user_id)
            .bind(kind.as_str())
            .bind(channel.as_str())
            .fetch_optional(conn)
            .await?;
    Ok(row.map_or(kind.on_by_default(channel), |(enabled,)| enabled))
}

pub async fn set_preference(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: NotificationKind,
    channel: Channel,
    enabled: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO preferences (user_id, kind, channel, enabled) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, kind, channel) DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()",
    )
    .bind(user_id)
    .bind(kind.as_str())
    .bind(channel.as_str())
    .bind(enabled)
    .execute(conn)
    .await?;
    Ok(())
}

/// The HMAC key of unsubscribe links: made by the first replica that starts, then shared.
pub async fn unsubscribe_key(pool: &PgPool) -> Result<Vec<u8>> {
    let fresh: [u8; 32] = rand::random();
    sqlx::query("INSERT INTO secrets (name, value) VALUES ('unsubscribe', $1) ON CONFLICT (name) DO NOTHING")
        .bind(fresh.as_slice())
        .execute(pool)
        .await?;
    sqlx::query_scalar("SELECT value FROM secrets WHERE name = 'unsubscribe'").fetch_one(pool).await
}

/// Record the use of an unsubscribe link; false when it was used before.
pub async fn use_unsubscribe_link(
    conn: &mut PgConnection,
    token_hash: &[u8],
    user_id: Uuid,
    kind: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO unsubscribe_uses (token_hash, user_id, kind) VALUES ($1, $2, $3) ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(kind)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The number text messages go to, if the user gave one.
pub async fn phone(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<String>> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT phone FROM recipients WHERE user_id = $1").bind(user_id).fetch_optional(conn).await?;
    Ok(row.and_then(|(phone,)| phone))
}

/// Set (or with `None` remove) the user's number; the row may come before identity's event does.
pub async fn set_phone(conn: &mut PgConnection, user_id: Uuid, phone: Option<&str>) -> Result<()> {
    sqlx::query(
        "INSERT INTO recipients (user_id, phone) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET phone = EXCLUDED.phone, updated_at = now()",
    )
    .bind(user_id)
    .bind(phone)
    .execute(conn)
    .await?;
    Ok(())
}

/// An announcement as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AnnouncementRow {
    pub id: Uuid,
    /// `announcement` or `course_updated`.
    pub kind: String,
    pub course_id: Uuid,
    pub author_id: Uuid,
    pub course_title: String,
    pub course_slug: String,
    pub title: String,
    pub body: String,
    pub status: String,
    pub after_user: Option<Uuid>,
    pub recipients: i64,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

macro_rules! select_announcement {
    () => {
        "SELECT id, kind, course_id, author_id, course_title, course_slug, title, body, status, after_user, \
         recipients, created_at, finished_at FROM announcements WHERE id = $1"
    };
}

/// Store a new fan-out; false when one with this id exists (a repeated event).
pub async fn insert_announcement(conn: &mut PgConnection, a: &AnnouncementRow) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO announcements (id, kind, course_id, author_id, course_title, course_slug, title, body, status, \
         created_at) VALUES ($1, $9, $2, $3, $4, $5, $6, $7, 'queued', $8)",
    )
    .bind(a.id)
    .bind(a.course_id)
    .bind(a.author_id)
    .bind(&a.course_title)
    .bind(&a.course_slug)
    .bind(&a.title)
    .bind(&a.body)
    .bind(a.created_at)
    .bind(&a.kind)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn announcement(conn: &mut PgConnection, id: Uuid) -> Result<Option<AnnouncementRow>> {
    sqlx::query_as(select_announcement!()).bind(id).fetch_optional(conn).await
}

/// The announcement, locked for the rest of the transaction (one fan-out page at a time).
pub async fn announcement_for_update(conn: &mut PgConnection, id: Uuid) -> Result<Option<AnnouncementRow>> {
    sqlx::query_as(concat!(select_announcement!(), " FOR UPDATE")).bind(id).fetch_optional(conn).await
}

/// One page of an announcement's in-app notifications: `(notification id, user id)` pairs.
#[derive(Debug, Clone, Default)]
pub struct AnnouncementPage {
    pub ids: Vec<Uuid>,
    pub users: Vec<Uuid>,
}

/// Store a page: the in-app notifications (skipping users who turned announcements off in-app
/// and ones stored before) with their delivery log, and move the announcement's cursor to
/// `after_user`. Returns the notifications inserted now, to push.
pub async fn store_announcement_page(
    conn: &mut PgConnection,
    a: &AnnouncementRow,
    page: &AnnouncementPage,
    title: &str,
    link: &str,
    after_user: Uuid,
) -> Result<Vec<(Uuid, Uuid)>> {
    let kind = a.kind.as_str();
    let inserted: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "INSERT INTO notifications (id, user_id, kind, title, body, link, created_at) \
         SELECT n.id, n.user_id, $3, $4, $5, $6, $7 FROM UNNEST($1::uuid[], $2::uuid[]) AS n(id, user_id) \
         WHERE NOT EXISTS (SELECT 1 FROM preferences p WHERE p.user_id = n.user_id AND p.kind = $3 \
                           AND p.channel = 'in_app' AND NOT p.enabled) \
         ON CONFLICT (id) DO NOTHING RETURNING id, user_id",
    )
    .bind(&page.ids)
    .bind(&page.users)
    .bind(kind)
    .bind(title)
    .bind(&a.body)
    .bind(link)
    .bind(a.created_at)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (notification_id, channel, user_id, kind, status, attempts, sent_at) \
         SELECT n.id, 'in_app', n.user_id, $3, \
                CASE WHEN EXISTS (SELECT 1 FROM notifications x WHERE x.id = n.id) THEN 'sent' ELSE 'skipped' END, \
                1, CASE WHEN EXISTS (SELECT 1 FROM notifications x WHERE x.id = n.id) THEN now() END \
         FROM UNNEST($1::uuid[], $2::uuid[]) AS n(id, user_id) \
         ON CONFLICT (notification_id, channel) DO NOTHING",
    )
    .bind(&page.ids)
    .bind(&page.users)
    .bind(kind)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE announcements SET status = 'delivering', after_user = $2, recipients = recipients + $3 WHERE id = $1",
    )
    .bind(a.id)
    .bind(after_user)
    .bind(i64::try_from(inserted.len()).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(inserted)
}

pub async fn finish_announcement(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE announcements SET status = 'done', finished_at = now() WHERE id = $1 AND status <> 'done'")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Announcements still `queued` a while after they were accepted (their job may never have
/// been stored).
pub async fn stalled_announcements(pool: &PgPool, older_than: std::time::Duration) -> Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM announcements WHERE status = 'queued' AND created_at < now() - make_interval(secs => $1) \
         ORDER BY created_at LIMIT 100",
    )
    .bind(older_than.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// A user's schedule as stored (no row: no digest, no quiet hours).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    pub digest: String,
    pub quiet_start: Option<time::Time>,
    pub quiet_end: Option<time::Time>,
    pub time_zone: Option<String>,
}

pub async fn schedule(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<ScheduleRow>> {
    sqlx::query_as("SELECT digest, quiet_start, quiet_end, time_zone FROM schedules WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await
}

pub async fn set_schedule(conn: &mut PgConnection, user_id: Uuid, row: &ScheduleRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO schedules (user_id, digest, quiet_start, quiet_end, time_zone) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id) DO UPDATE SET digest = EXCLUDED.digest, quiet_start = EXCLUDED.quiet_start, \
         quiet_end = EXCLUDED.quiet_end, time_zone = EXCLUDED.time_zone, updated_at = now()",
    )
    .bind(user_id)
    .bind(&row.digest)
    .bind(row.quiet_start)
    .bind(row.quiet_end)
    .bind(&row.time_zone)
    .execute(conn)
    .await?;
    Ok(())
}

/// Hold an email for the user's next digest and log its delivery as `digested`.
pub async fn hold_for_digest(
    conn: &mut PgConnection,
    notification_id: Uuid,
    user_id: Uuid,
    kind: NotificationKind,
    line: &str,
    link: Option<&str>,
    created_at: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO digest_items (notification_id, user_id, kind, line, link, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (notification_id) DO NOTHING",
    )
    .bind(notification_id)
    .bind(user_id)
    .bind(kind.as_str())
    .bind(line)
    .bind(link)
    .bind(created_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE deliveries SET status = 'digested', updated_at = now() \
         WHERE notification_id = $1 AND channel = 'email' AND status = 'queued'",
    )
    .bind(notification_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Note why a still-queued delivery waits (quiet hours), without counting an attempt.
pub async fn note_delivery(conn: &mut PgConnection, notification_id: Uuid, channel: Channel, note: &str) -> Result<()> {
    sqlx::query(
        "UPDATE deliveries SET last_error = $3, updated_at = now() \
         WHERE notification_id = $1 AND channel = $2 AND status = 'queued'",
    )
    .bind(notification_id)
    .bind(channel.as_str())
    .bind(note)
    .execute(conn)
    .await?;
    Ok(())
}

/// Users with emails held until `cutoff` whose digest is `frequency` (a daily run also flushes
/// what users who turned their digest off since still have waiting).
pub async fn digest_due(pool: &PgPool, frequency: &str, cutoff: OffsetDateTime) -> Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT DISTINCT d.user_id FROM digest_items d LEFT JOIN schedules s ON s.user_id = d.user_id \
         WHERE d.digest_id IS NULL AND d.created_at <= $2 \
         AND (COALESCE(s.digest, 'off') = $1 OR ($1 = 'daily' AND COALESCE(s.digest, 'off') = 'off'))",
    )
    .bind(frequency)
    .bind(cutoff)
    .fetch_all(pool)
    .await
}

/// A held email, as a digest lists it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DigestItem {
    pub notification_id: Uuid,
    pub line: String,
    pub link: Option<String>,
}

/// The user's held emails up to `cutoff`, oldest first, locked until the digest is recorded.
pub async fn digest_items_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
    cutoff: OffsetDateTime,
) -> Result<Vec<DigestItem>> {
    sqlx::query_as(
        "SELECT notification_id, line, link FROM digest_items \
         WHERE user_id = $1 AND digest_id IS NULL AND created_at <= $2 ORDER BY created_at, notification_id FOR UPDATE",
    )
    .bind(user_id)
    .bind(cutoff)
    .fetch_all(conn)
    .await
}

pub async fn mark_digested(conn: &mut PgConnection, items: &[Uuid], digest_id: Uuid) -> Result<()> {
    sqlx::query("UPDATE digest_items SET digest_id = $2 WHERE notification_id = ANY($1)")
        .bind(items)
        .bind(digest_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A delivery-log row as the caller sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub notification_id: Uuid,
    pub kind: String,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: OffsetDateTime,
    pub sent_at: Option<OffsetDateTime>,
}

/// `user_id`'s most recent deliveries, newest first.
pub async fn deliveries(conn: &mut PgConnection, user_id: Uuid, limit: u32) -> Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "SELECT notification_id, kind, channel, status, attempts, last_error, updated_at, sent_at FROM deliveries \
         WHERE user_id = $1 ORDER BY queued_at DESC, notification_id, channel LIMIT $2",
    )
    .bind(user_id)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
}
