//! Notification messages: the in-app inbox and the notification jobs on `JOB_NOTIFY`.
//!
//! A source (another domain's event, later an instructor's announcement) becomes one
//! [`NotificationJob`] with a stable id derived from what caused it, published with
//! `Nats-Msg-Id` = that id; the sender replicas deliver it once per channel and record each
//! attempt in a delivery log.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::rpc::{Empty, rpc};
use crate::subjects::notifications as subj;

/// What a notification is about; each kind has its own templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A new account: welcome, with the link that verifies the address.
    Welcome,
    /// Another link to verify the address (the user asked for it).
    VerifyEmail,
    /// The learner was enrolled in a course.
    Enrolled,
    /// The instructor of a course the learner is enrolled in posted an announcement.
    Announcement,
    /// One email gathering the emails of a day or a week (for users who chose a digest).
    Digest,
    /// A course the learner is enrolled in was published again with changes.
    CourseUpdated,
    /// A paid course: the purchase's receipt (always sent; it is a record of a payment).
    Receipt,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 7] = [
        NotificationKind::Welcome,
        NotificationKind::VerifyEmail,
        NotificationKind::Enrolled,
        NotificationKind::Announcement,
        NotificationKind::Digest,
        NotificationKind::CourseUpdated,
        NotificationKind::Receipt,
    ];

    /// The channels this kind can be delivered on (see [`NotificationKind::on_by_default`]).
    pub fn channels(self) -> &'static [Channel] {
        match self {
            NotificationKind::Welcome | NotificationKind::VerifyEmail | NotificationKind::Digest => &[Channel::Email],
            NotificationKind::Enrolled | NotificationKind::Announcement | NotificationKind::CourseUpdated => {
                &[Channel::InApp, Channel::Email, Channel::Sms]
            }
            NotificationKind::Receipt => &[Channel::InApp, Channel::Email],
        }
    }

    /// Whether the user may turn `channel` off for this kind (account emails cannot be).
    pub fn optional(self, _channel: Channel) -> bool {
        !self.is_account() && self != NotificationKind::Receipt
    }

    /// What a user who changed nothing gets: every channel but SMS, which is opt-in (it costs
    /// money and needs a number the user gave for it).
    pub fn on_by_default(self, channel: Channel) -> bool {
        channel != Channel::Sms
    }

    /// Account emails (welcome, verification) always go out and carry the verification link.
    pub fn is_account(self) -> bool {
        matches!(self, NotificationKind::Welcome | NotificationKind::VerifyEmail)
    }

    /// Whether this kind's emails wait for the user's digest (when they chose one) and its
    /// emails and texts for the end of their quiet hours.
    pub fn can_wait(self) -> bool {
        matches!(self, NotificationKind::Enrolled | NotificationKind::Announcement | NotificationKind::CourseUpdated)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Welcome => "welcome",
            NotificationKind::VerifyEmail => "verify_email",
            NotificationKind::Enrolled => "enrolled",
            NotificationKind::Announcement => "announcement",
            NotificationKind::Digest => "digest",
            NotificationKind::CourseUpdated => "course_updated",
            NotificationKind::Receipt => "receipt",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// Where a notification is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The user's inbox in the app.
    InApp,
    Email,
    /// A text message (Twilio) to the number the user set.
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "in_app",
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Channel::InApp, Channel::Email, Channel::Sms].into_iter().find(|c| c.as_str() == raw)
    }
}

/// Whether the user gets `kind` on `channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub kind: NotificationKind,
    pub channel: Channel,
    pub enabled: bool,
}

/// `GET`/`PUT /v1/notifications/preferences`: every (kind, channel) pair the platform delivers.
/// A `PUT` sends only the pairs it changes and gets the whole set back; a pair that cannot be
/// turned off (account emails) is `invalid_input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    pub items: Vec<Preference>,
}

/// One job on `JOB_NOTIFY`: deliver notification `id` to `user_id` on `channels`.
///
/// `id` is stable for its cause (a hash of the source event id and the kind), so a source
/// processed twice publishes the same `Nats-Msg-Id` and a redelivered job finds its delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationJob {
    pub id: Uuid,
    pub kind: NotificationKind,
    pub user_id: Uuid,
    pub channels: Vec<Channel>,
    /// The template variables of `kind` (e.g. `course_title`).
    #[serde(default)]
    pub data: serde_json::Value,
    /// The event that caused it, if any.
    #[serde(default)]
    pub source_event: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One notification in the caller's inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: Uuid,
    pub kind: NotificationKind,
    pub title: String,
    pub body: String,
    /// Where the app should take the user (a path such as `/courses/rust-101`).
    pub link: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<OffsetDateTime>,
}

/// `GET /v1/notifications?unread=&cursor=&limit=`: the caller's notifications, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListNotificationsRequest {
    /// Only unread ones.
    #[serde(default)]
    pub unread: Option<bool>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// 1 to 100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/notifications/unread-count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnreadCount {
    pub unread: u64,
}

/// `POST /v1/notifications/{id}/read`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationIdRequest {
    pub id: Uuid,
}

/// `POST /v1/notifications/read-all`: how many were marked read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MarkedRead {
    pub marked: u64,
}

/// A real-time push on the user's WebSocket (one JSON text frame each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Push {
    /// A new in-app notification (as the inbox lists it).
    Notification { notification: Notification },
}

rpc!(ListNotifications, ListNotificationsRequest, NotificationPage, subj::INBOX_LIST);
rpc!(GetUnreadCount, Empty, UnreadCount, subj::INBOX_UNREAD);
rpc!(MarkRead, NotificationIdRequest, Notification, subj::INBOX_READ);
rpc!(MarkAllRead, Empty, MarkedRead, subj::INBOX_READ_ALL);
rpc!(GetPreferences, Empty, Preferences, subj::PREFERENCES_GET);
rpc!(UpdatePreferences, Preferences, Preferences, subj::PREFERENCES_UPDATE);
rpc!(Unsubscribe, UnsubscribeRequest, Unsubscribed, subj::UNSUBSCRIBE);
rpc!(SetPhone, PhoneRequest, PhoneReply, subj::PHONE_SET);
rpc!(ListDeliveries, ListDeliveriesRequest, DeliveryPage, subj::DELIVERIES_LIST);

/// `GET /v1/notifications/deliveries?limit=`: the caller's most recent deliveries, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeliveriesRequest {
    /// 1 to 100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One channel of one notification in the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub notification_id: Uuid,
    pub kind: NotificationKind,
    pub channel: Channel,
    /// `queued`, `sent`, `failed`, `skipped` (turned off) or `digested` (held for the digest).
    pub status: String,
    pub attempts: u32,
    /// Why the last attempt failed, or why it waits (quiet hours).
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
}
rpc!(GetSchedule, Empty, DeliverySchedule, subj::SCHEDULE_GET);
rpc!(UpdateSchedule, DeliverySchedule, DeliverySchedule, subj::SCHEDULE_UPDATE);

/// How often a user who chose a digest gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DigestFrequency {
    /// One email per notification (no digest).
    #[default]
    Off,
    /// Every day at 07:00 UTC.
    Daily,
    /// Mondays at 07:00 UTC.
    Weekly,
}

impl DigestFrequency {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestFrequency::Off => "off",
            DigestFrequency::Daily => "daily",
            DigestFrequency::Weekly => "weekly",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [DigestFrequency::Off, DigestFrequency::Daily, DigestFrequency::Weekly].into_iter().find(|f| f.as_str() == raw)
    }
}

/// A daily window in the user's time zone when emails and texts wait (in-app still arrives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, local time.
    #[schema(example = "22:00")]
    pub start: String,
    /// `HH:MM`, local time; before `start` means the window spans midnight.
    #[schema(example = "07:00")]
    pub end: String,
    /// An IANA time zone.
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
}

/// `GET`/`PUT /v1/notifications/schedule`: when emails of kinds that can wait (enrolments,
/// announcements) arrive. A `PUT` replaces both settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverySchedule {
    #[serde(default)]
    pub digest: DigestFrequency,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

/// One job on `JOB_NOTIFY` (`cb.job.notifications.digest`): send the due digests of `frequency`,
/// gathering what was held for them until `cutoff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRun {
    pub frequency: DigestFrequency,
    #[serde(with = "time::serde::rfc3339")]
    pub cutoff: OffsetDateTime,
}
rpc!(CreateAnnouncement, CreateAnnouncementRequest, Announcement, subj::ANNOUNCEMENT_CREATE);
rpc!(GetAnnouncement, AnnouncementIdRequest, Announcement, subj::ANNOUNCEMENT_GET);

/// `PUT /v1/notifications/phone`: where text messages go (E.164, e.g. `+14155550100`); `null`
/// removes it. Text messages are still off until a kind's `sms` preference is turned on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneRequest {
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhoneReply {
    pub phone: Option<String>,
}

/// `POST /v1/courses/{course_id}/announcements` (the course's instructor or an admin).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAnnouncementRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    /// 1 to 200 characters.
    pub title: String,
    /// 1 to 10,000 characters of plain text.
    pub body: String,
}

/// `GET /v1/courses/{course_id}/announcements/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementIdRequest {
    pub course_id: Uuid,
    pub id: Uuid,
}

/// Where an announcement's fan-out is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnnouncementStatus {
    /// Accepted; the fan-out job has not started.
    Queued,
    Delivering,
    /// Every learner enrolled when the fan-out ran has it in their inbox.
    Done,
}

/// An announcement and its fan-out so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Announcement {
    pub id: Uuid,
    pub course_id: Uuid,
    pub author_id: Uuid,
    pub title: String,
    pub body: String,
    pub status: AnnouncementStatus,
    /// Learners whose inbox has it (emails and texts follow through the job queue).
    pub recipients: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
}

/// One job on `JOB_NOTIFY` (`cb.job.notifications.announce`): fan announcement `id` out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceJob {
    pub id: Uuid,
}

/// `GET /v1/notifications/unsubscribe?token=`: the signed link at the bottom of an email; works
/// without logging in, once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UnsubscribeRequest {
    pub token: String,
}

/// What the link turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Unsubscribed {
    pub kind: NotificationKind,
    pub channel: Channel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_jobs_round_trip() {
        for kind in NotificationKind::ALL {
            assert_eq!(NotificationKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(serde_json::to_value(Channel::InApp).unwrap(), Channel::InApp.as_str());
        let job = NotificationJob {
            id: Uuid::now_v7(),
            kind: NotificationKind::Enrolled,
            user_id: Uuid::now_v7(),
            channels: vec![Channel::InApp, Channel::Email],
            data: serde_json::json!({"course_title": "Rust"}),
            source_event: Some(Uuid::now_v7()),
            created_at: time::macros::datetime!(2026-01-01 00:00 UTC),
        };
        let back: NotificationJob = serde_json::from_slice(&serde_json::to_vec(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }
}
