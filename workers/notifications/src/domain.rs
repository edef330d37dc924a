//! The notification rules, free of I/O: stable notification ids, which event becomes which job,
//! the templates (HTML + text email, in-app title and body) and inbox cursors.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coursebus_contracts::EventEnvelope;
use coursebus_contracts::enrollment::EnrollmentCreated;
use coursebus_contracts::identity::{UserRegistered, VerificationRequested};
use coursebus_contracts::notifications::{
    Channel, DeliverySchedule, DigestFrequency, DigestRun, NotificationJob, NotificationKind, Preference,
};
use coursebus_contracts::payments::OrderFulfilled;
use coursebus_contracts::validate::ValidationError;
use minijinja::{Environment, Value};
use serde::Serialize;
use uuid::Uuid;

/// A UUIDv8 from the SHA-256 of `parts` (in order): the same inputs always give the same id.
/// Every stable id here starts with a tag of its own, so ids of different things never meet.
pub use coursebus_bus::ids::stable_id;

/// The id of the notification of `kind` caused by event `event_id`, so processing an event
/// twice yields one notification.
pub fn notification_id(event_id: Uuid, kind: NotificationKind) -> Uuid {
    stable_id(&[b"coursebus-notification\0", event_id.as_bytes(), b"\0", kind.as_str().as_bytes()])
}

/// The notification a learner gets for announcement `announcement`: stable, so a resumed or
/// repeated fan-out stores and sends it once.
pub fn announcement_notification_id(announcement: Uuid, user: Uuid) -> Uuid {
    stable_id(&[b"coursebus-announcement\0", announcement.as_bytes(), user.as_bytes()])
}

/// Where an announcement takes the learner in the app.
pub fn announcement_link(course_slug: &str) -> String {
    format!("/courses/{course_slug}")
}

/// An announcement's title and body, trimmed and within bounds.
pub fn check_announcement(title: &str, body: &str) -> Result<(String, String), ValidationError> {
    let (title, body) = (title.trim(), body.trim());
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(ValidationError::new("title", "title must be 1 to 200 characters on one line"));
    }
    if body.is_empty() || body.chars().count() > 10_000 {
        return Err(ValidationError::new("body", "body must be 1 to 10,000 characters"));
    }
    Ok((title.to_owned(), body.to_owned()))
}

/// A phone number in E.164 form (`+` and 7 to 15 digits, no leading zero); spaces, dashes,
/// dots and parentheses are dropped first.
pub fn parse_phone(raw: &str) -> Result<String, ValidationError> {
    let cleaned: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let digits = cleaned.strip_prefix('+').unwrap_or("");
    let valid =
        (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0');
    if valid {
        Ok(cleaned)
    } else {
        Err(ValidationError::new("phone", "phone must be in international form, e.g. +14155550100"))
    }
}

/// A user's quiet hours, checked: local start and end and a known IANA time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Quiet {
    pub start: jiff::civil::Time,
    pub end: jiff::civil::Time,
    pub zone: String,
}

/// `HH:MM` (24-hour clock).
pub fn parse_hhmm(field: &'static str, raw: &str) -> Result<jiff::civil::Time, ValidationError> {
    let invalid = || ValidationError::new(field, format!("{field} must be a time of day as HH:MM, e.g. 22:00"));
    let (h, m) = raw.split_once(':').filter(|(h, m)| h.len() == 2 && m.len() == 2).ok_or_else(invalid)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| invalid())?, m.parse().map_err(|_| invalid())?);
    jiff::civil::Time::new(h, m, 0, 0).map_err(|_| invalid())
}

/// Check a schedule: a known time zone and a window of some length.
pub fn check_schedule(schedule: &DeliverySchedule) -> Result<Option<Quiet>, ValidationError> {
    let Some(q) = &schedule.quiet_hours else { return Ok(None) };
    let start = parse_hhmm("start", &q.start)?;
    let end = parse_hhmm("end", &q.end)?;
    if start == end {
        return Err(ValidationError::new("end", "quiet hours must end at another time than they start"));
    }
    jiff::tz::TimeZone::get(&q.time_zone)
        .map_err(|_| ValidationError::new("time_zone", "time_zone must be an IANA time zone, e.g. Europe/Berlin"))?;
    Ok(Some(Quiet { start, end, zone: q.time_zone.clone() }))
}

/// When the quiet hours that hold `now` end, or `None` outside them. Windows may span midnight
/// (22:00–07:00); the end is taken on the local calendar, so daylight-saving changes are honoured.
pub fn quiet_until(now: jiff::Timestamp, quiet: &Quiet) -> Option<jiff::Timestamp> {
    let zone = jiff::tz::TimeZone::get(&quiet.zone).ok()?;
    let local = now.to_zoned_datetime(zone.clone());
    let (today, time) = (local.date(), local.time());
    let end_day = if quiet.start < quiet.end {
        (quiet.start <= time && time < quiet.end).then_some(today)?
    } else if time >= quiet.start {
        today.tomorrow().ok()?
    } else if time < quiet.end {
        today
    } else {
        return None;
    };
    end_day.to_datetime(quiet.end).to_zoned_datetime(zone).ok().map(|z| z.timestamp())
}

/// `time` ↔ `jiff` instants.
pub fn to_jiff(t: time::OffsetDateTime) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(t.unix_timestamp_nanos()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The digest of `frequency` for `user` that gathers what was held until `cutoff`: one id per
/// run, so a repeated run sends nothing twice.
pub fn digest_id(user: Uuid, frequency: DigestFrequency, cutoff: time::OffsetDateTime) -> Uuid {
    let cutoff = cutoff.unix_timestamp_nanos().to_be_bytes();
    stable_id(&[b"coursebus-digest\0", user.as_bytes(), frequency.as_str().as_bytes(), &cutoff])
}

/// The digest email job (its items are gathered when it is sent).
pub fn digest_job(user: Uuid, run: &DigestRun) -> NotificationJob {
    NotificationJob {
        id: digest_id(user, run.frequency, run.cutoff),
        kind: NotificationKind::Digest,
        user_id: user,
        channels: vec![Channel::Email],
        data: serde_json::json!({ "frequency": run.frequency.as_str(), "cutoff": run.cutoff.unix_timestamp() }),
        source_event: None,
        created_at: run.cutoff,
    }
}

/// `identity.user.registered` → a welcome email.
pub fn welcome_job(event: &EventEnvelope<UserRegistered>) -> NotificationJob {
    NotificationJob {
        id: notification_id(event.id, NotificationKind::Welcome),
        kind: NotificationKind::Welcome,
        user_id: event.data.user_id,
        channels: vec![Channel::Email],
        data: serde_json::json!({}),
        source_event: Some(event.id),
        created_at: event.occurred_at,
    }
}

/// `identity.user.verification_requested` → another verification email.
pub fn verify_email_job(event: &EventEnvelope<VerificationRequested>) -> NotificationJob {
    NotificationJob {
        id: notification_id(event.id, NotificationKind::VerifyEmail),
        kind: NotificationKind::VerifyEmail,
        user_id: event.data.user_id,
        channels: vec![Channel::Email],
        data: serde_json::json!({}),
        source_event: Some(event.id),
        created_at: event.occurred_at,
    }
}

/// The link that confirms the address, pointing at the gateway's public endpoint.
pub fn verify_url(app_url: &str, token: &str) -> String {
    format!("{}/v1/auth/verify-email?token={token}", app_url.trim_end_matches('/'))
}

/// What the enrolled notification says about the course (from the catalog's published snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CourseRef {
    pub title: String,
    pub slug: String,
}

/// `enrollment.enrolment.created` → "you are enrolled" in-app and by email.
pub fn enrolled_job(event: &EventEnvelope<EnrollmentCreated>, course: &CourseRef) -> NotificationJob {
    NotificationJob {
        id: notification_id(event.id, NotificationKind::Enrolled),
        kind: NotificationKind::Enrolled,
        user_id: event.data.user_id,
        channels: NotificationKind::Enrolled.channels().to_vec(),
        data: serde_json::json!({
            "course_id": event.data.course_id,
            "course_title": course.title,
            "link": format!("/courses/{}", course.slug),
        }),
        source_event: Some(event.id),
        created_at: event.occurred_at,
    }
}

/// `payments.order.fulfilled` → the receipt, in-app and by email (with the PDF's address).
pub fn receipt_job(event: &EventEnvelope<OrderFulfilled>) -> NotificationJob {
    let order = &event.data;
    NotificationJob {
        id: notification_id(event.id, NotificationKind::Receipt),
        kind: NotificationKind::Receipt,
        user_id: order.user_id,
        channels: NotificationKind::Receipt.channels().to_vec(),
        data: serde_json::json!({
            "order_id": order.order_id,
            "course_id": order.course_id,
            "course_title": order.course_title,
            "invoice_number": order.invoice_number.clone().unwrap_or_default(),
            "total": coursebus_contracts::payments::format_money(order.total_minor, &order.currency),
            "receipt_path": format!("/v1/payments/orders/{}/receipt", order.order_id),
            "link": format!("/orders/{}", order.order_id),
        }),
        source_event: Some(event.id),
        created_at: event.occurred_at,
    }
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailContent {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A rendered in-app notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InAppContent {
    pub title: String,
    pub body: String,
    pub link: Option<String>,
}

/// Who a notification is for, as the templates see them.
#[derive(Debug, Clone, Serialize)]
pub struct Person<'a> {
    pub display_name: &'a str,
    pub email: &'a str,
}

/// Signs and checks unsubscribe links: `base64url(user · kind · notification) . base64url(HMAC)`,
/// keyed by a secret the worker keeps in its database, so a link works without logging in and
/// cannot be forged or altered.
pub struct UnsubscribeLinks {
    key: Vec<u8>,
}

impl std::fmt::Debug for UnsubscribeLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeLinks { key: *** }")
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl UnsubscribeLinks {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        <HmacSha256 as hmac::Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("any key length"))
    }

    /// The token for `user` to stop emails of `kind`, minted for notification `id`.
    pub fn token(&self, user: Uuid, kind: NotificationKind, id: Uuid) -> String {
        use hmac::Mac as _;
        let payload = format!("{user}.{}.{id}", kind.as_str());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// The user and kind of a genuine token; `None` for anything forged, altered or malformed.
    pub fn check(&self, token: &str) -> Option<(Uuid, NotificationKind)> {
        use hmac::Mac as _;
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let mut parts = payload.split('.');
        let user = parts.next()?.parse().ok()?;
        let kind = parts.next()?;
        let kind = NotificationKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
        Some((user, kind))
    }
}

/// The templates of every kind, compiled once. Names ending in `.html` are HTML-escaped.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    app_url: String,
    links: Arc<UnsubscribeLinks>,
}

macro_rules! templates {
    ($env:expr, $($name:literal),* $(,)?) => {
        $( $env.add_template($name, include_str!(concat!("../templates/", $name)))?; )*
    };
}

impl Templates {
    /// `app_url` is the public address links in emails point to (no trailing slash).
    pub fn app_url(&self) -> &str {
        &self.app_url
    }

    pub fn new(app_url: &str, links: Arc<UnsubscribeLinks>) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        templates!(
            env,
            "welcome.subject.txt",
            "welcome.txt",
            "welcome.html",
            "verify_email.subject.txt",
            "verify_email.txt",
            "verify_email.html",
            "enrolled.subject.txt",
            "enrolled.txt",
            "enrolled.html",
            "enrolled.title.txt",
            "enrolled.body.txt",
            "enrolled.sms.txt",
            "announcement.subject.txt",
            "announcement.txt",
            "announcement.html",
            "announcement.sms.txt",
            "digest.subject.txt",
            "digest.txt",
            "digest.html",
            "course_updated.subject.txt",
            "course_updated.txt",
            "course_updated.html",
            "course_updated.sms.txt",
            "receipt.subject.txt",
            "receipt.txt",
            "receipt.html",
            "receipt.title.txt",
            "receipt.body.txt",
        );
        Ok(Self { env, app_url: app_url.trim_end_matches('/').to_owned(), links })
    }

    fn context(&self, job: &NotificationJob, person: Option<&Person<'_>>) -> Value {
        let mut ctx = match &job.data {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        ctx.insert("app_url".into(), self.app_url.clone().into());
        if let Some(person) = person {
            ctx.insert("display_name".into(), person.display_name.into());
            ctx.insert("email".into(), person.email.into());
            if job.kind.optional(Channel::Email) {
                let token = self.links.token(job.user_id, job.kind, job.id);
                let url = format!("{}/v1/notifications/unsubscribe?token={token}", self.app_url);
                ctx.insert("unsubscribe_url".into(), url.into());
            }
        }
        Value::from(minijinja::value::Serde(ctx))
    }

    fn render(&self, name: &str, ctx: &Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx.clone())
    }

    /// The email of `job` for `person`.
    pub fn email(&self, job: &NotificationJob, person: &Person<'_>) -> Result<EmailContent, minijinja::Error> {
        let ctx = self.context(job, Some(person));
        let kind = job.kind.as_str();
        let subject = self.render(&format!("{kind}.subject.txt"), &ctx)?;
        Ok(EmailContent {
            subject: one_line(&subject),
            text: self.render(&format!("{kind}.txt"), &ctx)?,
            html: self.render(&format!("{kind}.html"), &ctx)?,
        })
    }

    /// One line saying what `job` is about (its email subject), for a digest.
    pub fn line(&self, job: &NotificationJob) -> Result<String, minijinja::Error> {
        let ctx = self.context(job, None);
        Ok(one_line(&self.render(&format!("{}.subject.txt", job.kind.as_str()), &ctx)?))
    }

    /// The text message of `job` (plain text, one segment where it can).
    pub fn sms(&self, job: &NotificationJob) -> Result<String, minijinja::Error> {
        let ctx = self.context(job, None);
        Ok(self.render(&format!("{}.sms.txt", job.kind.as_str()), &ctx)?.trim().to_owned())
    }

    /// The in-app notification of `job`.
    pub fn in_app(&self, job: &NotificationJob) -> Result<InAppContent, minijinja::Error> {
        let ctx = self.context(job, None);
        let kind = job.kind.as_str();
        Ok(InAppContent {
            title: one_line(&self.render(&format!("{kind}.title.txt"), &ctx)?),
            body: self.render(&format!("{kind}.body.txt"), &ctx)?.trim().to_owned(),
            link: job.data.get("link").and_then(|l| l.as_str()).map(str::to_owned),
        })
    }
}

/// `t` at PostgreSQL's precision (microseconds), so a push says what the inbox will list.
pub fn to_micros(t: time::OffsetDateTime) -> time::OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).unwrap_or(t)
}

/// A header-safe single line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every (kind, channel) pair the platform delivers, on unless `stored` (what the user changed:
/// kind, channel, enabled) says otherwise. Unknown stored pairs are ignored.
pub fn preference_matrix(stored: &[(String, String, bool)]) -> Vec<Preference> {
    NotificationKind::ALL
        .iter()
        .flat_map(|kind| kind.channels().iter().map(move |channel| (*kind, *channel)))
        .map(|(kind, channel)| {
            let enabled = !kind.optional(channel)
                || stored
                    .iter()
                    .find(|(k, c, _)| k == kind.as_str() && c == channel.as_str())
                    .map_or(kind.on_by_default(channel), |(_, _, enabled)| *enabled);
            Preference { kind, channel, enabled }
        })
        .collect()
}

/// Check a requested change: the kind must be delivered on that channel, and turning it off must
/// be allowed.
pub fn check_preference(p: &Preference) -> Result<(), ValidationError> {
    if !p.kind.channels().contains(&p.channel) {
        return Err(ValidationError::new(
            "channel",
            format!("{} notifications are not sent by {}", p.kind.as_str(), p.channel.as_str()),
        ));
    }
    if !p.enabled && !p.kind.optional(p.channel) {
        return Err(ValidationError::new(
            "enabled",
            format!("{} by {} cannot be turned off", p.kind.as_str(), p.channel.as_str()),
        ));
    }
    Ok(())
}

/// An opaque inbox cursor: the last item's sequence number.
pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(seq.to_be_bytes())
}

pub fn decode_cursor(cursor: &str) -> Result<i64, ValidationError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| ValidationError::new("cursor", "cursor is not valid"))
}

pub use coursebus_contracts::validate::page_limit;

#[cfg(test)]
mod tests {
    use coursebus_contracts::{Actor, Event};

    use super::*;

    fn registered() -> EventEnvelope<UserRegistered> {
        UserRegistered {
            user_id: Uuid::now_v7(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            roles: vec![],
        }
        .envelope(Actor::Anonymous)
    }

    #[test]
    fn ids_are_stable_per_event_and_kind() {
        let event = Uuid::now_v7();
        assert_eq!(
            notification_id(event, NotificationKind::Welcome),
            notification_id(event, NotificationKind::Welcome)
        );
        assert_ne!(
            notification_id(event, NotificationKind::Welcome),
            notification_id(event, NotificationKind::Enrolled)
        );
        assert_ne!(
            notification_id(event, NotificationKind::Welcome),
            notification_id(Uuid::now_v7(), NotificationKind::Welcome)
        );
        let event = registered();
        assert_eq!(welcome_job(&event).id, welcome_job(&event).id);
    }

    #[test]
    fn emails_render_text_and_escaped_html() {
        let templates = Templates::new("https://learn.example/", Arc::new(UnsubscribeLinks::new(vec![7; 32]))).unwrap();
        let event = EnrollmentCreated {
            enrollment_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            course_id: Uuid::now_v7(),
            course_version: 1,
            enrolled_at: time::OffsetDateTime::now_utc(),
            order_id: None,
        }
        .envelope(Actor::Anonymous);
        let course = CourseRef { title: "Rust <fast> & safe".into(), slug: "rust".into() };
        let job = enrolled_job(&event, &course);
        let person = Person { display_name: "Ada\nBcc: evil", email: "ada@example.com" };
        let email = templates.email(&job, &person).unwrap();
        assert_eq!(email.subject, "You are enrolled in Rust <fast> & safe");
        assert!(email.text.contains("\"Rust <fast> & safe\""), "{}", email.text);
        assert!(email.text.contains("https://learn.example/courses/rust"), "{}", email.text);
        assert!(email.html.contains("Rust &lt;fast&gt; &amp; safe"), "{}", email.html);
        let in_app = templates.in_app(&job).unwrap();
        assert_eq!(in_app.title, "You are enrolled in Rust <fast> & safe");
        assert_eq!(in_app.link.as_deref(), Some("/courses/rust"));

        let welcome = templates.email(&welcome_job(&registered()), &person).unwrap();
        assert_eq!(welcome.subject, "Welcome to coursebus, Ada Bcc: evil", "no header injection");
    }

    fn quiet(start: &str, end: &str, zone: &str) -> Quiet {
        let schedule = DeliverySchedule {
            digest: DigestFrequency::Off,
            quiet_hours: Some(coursebus_contracts::notifications::QuietHours {
                start: start.into(),
                end: end.into(),
                time_zone: zone.into(),
            }),
        };
        check_schedule(&schedule).unwrap().unwrap()
    }

    #[test]
    fn quiet_hours_span_midnight_and_follow_the_local_clock() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let night = quiet("22:00", "07:00", "Europe/Berlin");
        // 23:30 in Berlin (CET, UTC+1) → 07:00 the next morning.
        assert_eq!(quiet_until(at("2026-01-10T22:30:00Z"), &night), Some(at("2026-01-11T06:00:00Z")));
        // 05:00 in Berlin → 07:00 the same morning.
        assert_eq!(quiet_until(at("2026-01-11T04:00:00Z"), &night), Some(at("2026-01-11T06:00:00Z")));
        assert_eq!(quiet_until(at("2026-01-11T12:00:00Z"), &night), None, "noon is not quiet");
        // The night clocks go forward (29 March 2026): 07:00 CEST is 05:00 UTC.
        assert_eq!(quiet_until(at("2026-03-28T22:30:00Z"), &night), Some(at("2026-03-29T05:00:00Z")));
        let lunch = quiet("12:00", "13:30", "UTC");
        assert_eq!(quiet_until(at("2026-01-11T12:10:00Z"), &lunch), Some(at("2026-01-11T13:30:00Z")));
        assert_eq!(quiet_until(at("2026-01-11T13:30:00Z"), &lunch), None, "the end is not quiet any more");
    }

    #[test]
    fn schedules_are_checked() {
        let bad = |start: &str, end: &str, zone: &str| {
            let q = coursebus_contracts::notifications::QuietHours {
                start: start.into(),
                end: end.into(),
                time_zone: zone.into(),
            };
            check_schedule(&DeliverySchedule { digest: DigestFrequency::Daily, quiet_hours: Some(q) })
                .unwrap_err()
                .field
        };
        assert_eq!(bad("24:00", "07:00", "UTC"), "start");
        assert_eq!(bad("22:00", "7:00", "UTC"), "end");
        assert_eq!(bad("22:00", "22:00", "UTC"), "end");
        assert_eq!(bad("22:00", "07:00", "Mars/Olympus"), "time_zone");
        assert!(check_schedule(&DeliverySchedule::default()).unwrap().is_none());
    }

    #[test]
    fn preferences_default_on_and_account_emails_stay_on() {
        let all = preference_matrix(&[]);
        assert_eq!(all.len(), 14);
        assert!(all.iter().all(|p| p.enabled == (p.channel != Channel::Sms)), "SMS is opt-in: {all:?}");
        let stored =
            vec![("enrolled".to_owned(), "email".to_owned(), false), ("welcome".to_owned(), "email".to_owned(), false)];
        let changed = preference_matrix(&stored);
        let get = |kind, channel| changed.iter().find(|p| p.kind == kind && p.channel == channel).unwrap().enabled;
        assert!(!get(NotificationKind::Enrolled, Channel::Email));
        assert!(get(NotificationKind::Enrolled, Channel::InApp));
        assert!(get(NotificationKind::Welcome, Channel::Email), "account emails cannot be off");
        let off = |kind, channel| Preference { kind, channel, enabled: false };
        assert!(check_preference(&off(NotificationKind::Enrolled, Channel::Email)).is_ok());
        assert_eq!(check_preference(&off(NotificationKind::Welcome, Channel::Email)).unwrap_err().field, "enabled");
        assert_eq!(check_preference(&off(NotificationKind::Welcome, Channel::InApp)).unwrap_err().field, "channel");
        // A receipt is a record of a payment: it always goes out, by email and in-app, never by SMS.
        assert_eq!(check_preference(&off(NotificationKind::Receipt, Channel::Email)).unwrap_err().field, "enabled");
        assert_eq!(check_preference(&off(NotificationKind::Receipt, Channel::Sms)).unwrap_err().field, "channel");
    }

    #[test]
    fn cursors_and_limits() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert_eq!(decode_cursor("nope!").unwrap_err().field, "cursor");
        assert_eq!(page_limit(None, 20).unwrap(), 20);
        assert_eq!(page_limit(Some(101), 20).unwrap_err().field, "limit");
    }

    #[test]
    fn unsubscribe_tokens_verify_and_reject_tampering() {
        let links = UnsubscribeLinks::new(b"a secret key".to_vec());
        let user = Uuid::now_v7();
        let token = links.token(user, NotificationKind::Enrolled, Uuid::now_v7());
        assert_eq!(links.check(&token), Some((user, NotificationKind::Enrolled)));
        // Another key, an altered payload or tag, garbage: all rejected.
        assert_eq!(UnsubscribeLinks::new(b"another key".to_vec()).check(&token), None);
        let (payload, tag) = token.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(format!("{}.enrolled.{}", Uuid::now_v7(), Uuid::now_v7()));
        assert_eq!(links.check(&format!("{forged_payload}.{tag}")), None);
        assert_eq!(links.check(&format!("{payload}.{}", &tag[1..])), None);
        assert_eq!(links.check("not a token"), None);
    }
}
