//! The notifications worker: the in-app inbox (the NATS micro service `notifications`), the
//! sources that turn other domains' events into notification jobs on `JOB_NOTIFY`, and the
//! sender replicas that deliver those jobs in-app, by email (SMTP) and by text (Twilio), over
//! PostgreSQL. It runs on [`coursebus_bus::Worker`]: every consumer below is the bus's consumer
//! engine, shared by the replicas.
//!
//! ```text
//! EVT_IDENTITY ───notifications_identity───┐
//! EVT_ENROLLMENT ─notifications_enrollment─┤
//! EVT_CATALOG ────notifications_catalog────┼─▶ JOB_NOTIFY (Nats-Msg-Id = notification id)
//! EVT_PAYMENTS ───notifications_payments───┘        │  deliver · announce · digest
//! SCHED_NOTIFY ─notifications_scheduler─▶ digest runs, released quiet-hours jobs ─┘
//!                   notifications_sender ─▶ inbox row / SMTP / Twilio + delivery log
//! ```
//!
//! Rules (see `sender.rs`): one notification per cause (stable ids), one email per notification
//! (`sent` is committed before the job is acknowledged and checked before any send), transient
//! failures retried with capped growing delays ([`Config::retry`]) up to `max_deliver` (the last
//! attempt records `failed` and parks the job in the DLQ), rejections not retried. Announcements
//! (`announce.rs`) fan out page by page from a stored cursor, so a redelivered fan-out resumes;
//! a sweep every 30 s queues again the fan-outs whose job was never stored. Digests and quiet
//! hours run on JetStream message schedules (`schedule.rs`), re-published every hour.

pub mod announce;
pub mod domain;
pub mod handlers;
pub mod mailer;
pub mod schedule;
pub mod sender;
pub mod sms;
pub mod sources;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use coursebus_bus::config::{CommonConfig, ConfigError, Secret, checked, or, secs, var};
use coursebus_bus::consume::{Consumer, RetryPolicy};
use coursebus_bus::{ServiceSpec, StartError, Worker, streams};
use coursebus_contracts::notifications::{
    CreateAnnouncement, GetAnnouncement, GetPreferences, GetSchedule, GetUnreadCount, ListDeliveries,
    ListNotifications, MarkAllRead, MarkRead, SetPhone, Unsubscribe, UpdatePreferences, UpdateSchedule,
};
use coursebus_contracts::subjects::notifications as subj;
use tokio_util::sync::CancellationToken;

use crate::announce::Announcer;
use crate::handlers::Inbox;
use crate::schedule::Scheduler;
use crate::sender::Sender;
use crate::sources::{SOURCES, Sources};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "In-app inbox and delivery of notifications (in-app, email)",
};

/// Notifications' schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where email goes when `CB_SMTP_URL` is unset (the local stack's SMTP server).
pub const DEFAULT_SMTP_URL: &str = "smtp://127.0.0.1:2525";

/// How long a fan-out stays `queued` before the sweep queues its job again.
const STALLED_AFTER: Duration = Duration::from_secs(60);

/// What notifications is configured with. From the environment ([`Config::from_env`]): the
/// common variables (`CB_NATS_URL`, `CB_NOTIFICATIONS_DATABASE_URL`, …, see [`CommonConfig`]) and
///
/// | variable | field | default |
/// |---|---|---|
/// | `CB_SMTP_URL` | `smtp_url` | `smtp://127.0.0.1:2525` |
/// | `CB_MAIL_FROM` | `mail_from` | `coursebus <no-reply@coursebus.localhost>` |
/// | `CB_APP_URL` | `app_url` | `http://127.0.0.1:8080` |
/// | `CB_NOTIFICATIONS_CONCURRENCY` | `sender_concurrency` | 8 |
/// | `CB_NOTIFICATIONS_MAX_DELIVER` | `max_deliver` | 10 |
/// | `CB_NOTIFICATIONS_RETRY_FIRST_MS`, `CB_NOTIFICATIONS_RETRY_CAP_MS` | `retry` | 3000, 600000 |
/// | `CB_NOTIFICATIONS_ACK_WAIT_SECS` | `ack_wait` | 60 |
/// | `CB_NOTIFICATIONS_SMTP_TIMEOUT_SECS` | `smtp_timeout` | 10 |
/// | `CB_NOTIFICATIONS_FANOUT_PAGE` | `fanout_page` | 1000 |
/// | `CB_NOTIFICATIONS_SOURCE_LOOKBACK_SECS` | `source_lookback` | 600 |
/// | `CB_TWILIO_ACCOUNT_SID`, `CB_TWILIO_AUTH_TOKEN`, `CB_TWILIO_FROM` | `twilio` (all three or none) | none |
/// | `CB_TWILIO_URL`, `CB_NOTIFICATIONS_TWILIO_TIMEOUT_SECS` | `twilio` | `https://api.twilio.com`, 10 |
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `smtp://host:port`, `smtp://host?tls=required` or `smtps://user:password@host`.
    pub smtp_url: Secret<String>,
    /// The `From` of every email (`Name <address>`).
    pub mail_from: String,
    /// The public address links in emails point to.
    pub app_url: String,
    /// Jobs one replica works on at once.
    pub sender_concurrency: usize,
    /// Deliveries of one job (or event, or tick) before it is given up.
    pub max_deliver: i64,
    /// Delays between delivery attempts of jobs, events and ticks.
    pub retry: RetryPolicy,
    /// How long a pulled job may go without news before JetStream hands it to another replica
    /// (the engine reports progress every third of it while a job runs).
    pub ack_wait: Duration,
    pub smtp_timeout: Duration,
    /// Text messages through Twilio; `None` leaves the SMS channel unconfigured (opted-in texts
    /// are logged `failed` with that reason).
    pub twilio: Option<sms::TwilioConfig>,
    /// Learners per page of an announcement's fan-out (1 to 5000).
    pub fanout_page: u32,
    /// How far back the event sources start when their consumers are created (first deployment):
    /// events older than this are history, not news.
    pub source_lookback: Duration,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>, smtp_url: impl Into<String>) -> Self {
        Self {
            common: CommonConfig::new(nats_url).with_database(database_url),
            smtp_url: Secret::new(smtp_url.into()),
            mail_from: "coursebus <no-reply@coursebus.localhost>".into(),
            app_url: "http://127.0.0.1:8080".into(),
            sender_concurrency: 8,
            max_deliver: 10,
            // 3 s doubling to 10 min: 10 deliveries span about 23 minutes, so an SMTP outage of
            // that long is ridden out before a job is given up.
            retry: RetryPolicy { first: Duration::from_secs(3), cap: Duration::from_secs(600) },
            ack_wait: Duration::from_secs(60),
            smtp_timeout: Duration::from_secs(10),
            twilio: None,
            fanout_page: 1_000,
            source_lookback: Duration::from_secs(10 * 60),
        }
    }

    /// Read the environment (see [`Config`] for the variables).
    pub fn from_env() -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(subj::SERVICE)?;
        common.require_database(subj::SERVICE)?;
        let own = |suffix: &str| format!("CB_NOTIFICATIONS_{suffix}");
        let defaults = Self::new("", "", DEFAULT_SMTP_URL);
        let positive_secs = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            checked(name, default.as_secs(), within(1, 24 * 3600)).map(Duration::from_secs)
        };

        let first_name = own("RETRY_FIRST_MS");
        let cap_name = own("RETRY_CAP_MS");
        let first = checked(&first_name, millis_of(defaults.retry.first), within(1, 24 * 3600 * 1000))?;
        let cap = checked(&cap_name, millis_of(defaults.retry.cap).max(first), within(first, 24 * 3600 * 1000))?;

        let twilio = match (
            var::<String>("CB_TWILIO_ACCOUNT_SID")?,
            var::<String>("CB_TWILIO_AUTH_TOKEN")?,
            var::<String>("CB_TWILIO_FROM")?,
        ) {
            (Some(account_sid), Some(auth_token), Some(from)) => Some(sms::TwilioConfig {
                base_url: or("CB_TWILIO_URL", sms::TWILIO_API.to_owned())?,
                account_sid,
                auth_token: Secret::new(auth_token),
                from,
                timeout: positive_secs(&own("TWILIO_TIMEOUT_SECS"), sms::DEFAULT_TIMEOUT)?,
            }),
            // All three or none: the SMS channel then stays unconfigured.
            _ => None,
        };

        Ok(Self {
            common,
            smtp_url: Secret::new(or("CB_SMTP_URL", DEFAULT_SMTP_URL.to_owned())?),
            mail_from: or("CB_MAIL_FROM", defaults.mail_from)?,
            app_url: or("CB_APP_URL", defaults.app_url)?,
            sender_concurrency: checked(&own("CONCURRENCY"), defaults.sender_concurrency, within(1, 1_000))?,
            max_deliver: checked(&own("MAX_DELIVER"), defaults.max_deliver, within(1, 1_000))?,
            retry: RetryPolicy { first: Duration::from_millis(first), cap: Duration::from_millis(cap) },
            ack_wait: positive_secs(&own("ACK_WAIT_SECS"), defaults.ack_wait)?,
            smtp_timeout: positive_secs(&own("SMTP_TIMEOUT_SECS"), defaults.smtp_timeout)?,
            twilio,
            fanout_page: checked(&own("FANOUT_PAGE"), defaults.fanout_page, within(1, 5_000))?,
            source_lookback: secs(&own("SOURCE_LOOKBACK_SECS"), defaults.source_lookback)?,
        })
    }
}

/// A check for [`checked`]: from `low` to `high`, both included.
fn within<T: PartialOrd + std::fmt::Display + Copy>(low: T, high: T) -> impl Fn(&T) -> Result<(), String> {
    move |n| (low..=high).contains(n).then_some(()).ok_or_else(|| format!("must be {low} to {high}"))
}

fn millis_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Serve until `shutdown`: the inbox endpoints; the four event sources; the sender on
/// `JOB_NOTIFY` (deliveries, announcement fan-outs and digest runs, up to `sender_concurrency`
/// at once); the scheduler's ticks; the hourly re-publication of the digest schedules; the
/// 30 s sweep of stalled fan-outs; the DLQ capture of jobs JetStream gave up on.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    // Before connecting anything: a bad SMTP URL or sender address stops the worker at once.
    let mailer = mailer::Mailer::new(config.smtp_url.expose(), &config.mail_from, config.smtp_timeout)
        .map_err(|err| StartError::worker("mailer", err))?;
    let twilio = config
        .twilio
        .clone()
        .map(sms::Twilio::new)
        .transpose()
        .map_err(|err| StartError::worker("Twilio client", err))?;

    let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
    let db = worker.postgres(&MIGRATOR).await?;
    worker
        .streams([
            streams::job_stream(subj::JOB_STREAM, subj::JOB_SUBJECTS, worker.replicas()),
            schedule::stream_config(worker.replicas()),
            // Jobs, events and ticks given up on are parked there.
            coursebus_bus::dlq::stream_config(worker.replicas()),
        ])
        .await?;
    let links = Arc::new(domain::UnsubscribeLinks::new(store::unsubscribe_key(&db.pool).await?));
    let templates = Arc::new(
        domain::Templates::new(&config.app_url, links.clone()).map_err(|err| StartError::worker("templates", err))?,
    );
    let js = worker.jetstream().clone();
    let bus = worker.bus();
    let call_deadline = config.common.call_deadline;

    let scheduler = Arc::new(Scheduler { pool: db.pool.clone(), js: js.clone() });
    scheduler.publish_digest_schedules().await.map_err(|err| StartError::worker("digest schedules", err))?;
    let announcer = Arc::new(Announcer {
        pool: db.pool.clone(),
        js: js.clone(),
        nats: worker.client().clone(),
        bus: bus.clone(),
        call_deadline,
        page_size: config.fanout_page,
    });
    let inbox =
        Arc::new(Inbox { pool: db.pool.clone(), verifier: worker.verifier(), links, announcer: announcer.clone() });
    coursebus_bus::endpoints!(
        worker,
        inbox,
        ListNotifications => list,
        GetUnreadCount => unread,
        MarkRead => read,
        MarkAllRead => read_all,
        GetPreferences => preferences,
        UpdatePreferences => update_preferences,
        Unsubscribe => unsubscribe,
        SetPhone => set_phone,
        ListDeliveries => deliveries,
        GetSchedule => schedule,
        UpdateSchedule => update_schedule,
        CreateAnnouncement => announce,
        GetAnnouncement => announcement,
    );

    // A source consumer created now starts `source_lookback` before this replica started: a
    // deployment onto a platform with history does not greet every old account, while events of
    // services that started just before it are not missed. An existing one keeps its place.
    let start_time = time::OffsetDateTime::now_utc() - config.source_lookback;
    let sources = Arc::new(Sources {
        pool: db.pool.clone(),
        js: js.clone(),
        bus: bus.clone(),
        call_deadline,
        announcer: announcer.clone(),
    });
    for source in SOURCES {
        let sources = sources.clone();
        worker.consume(
            Consumer::events(source.stream, source.consumer, source.subjects)
                .max_deliver(config.max_deliver)
                .retry(config.retry)
                .deliver_policy(DeliverPolicy::ByStartTime { start_time }),
            move |delivery| {
                let sources = sources.clone();
                async move { sources.handle(delivery).await }
            },
        );
    }

    let sender = Arc::new(Sender {
        pool: db.pool.clone(),
        nats: worker.client().clone(),
        templates,
        mailer,
        bus,
        call_deadline,
        twilio,
        announcer: announcer.clone(),
        scheduler: scheduler.clone(),
    });
    worker.consume(
        Consumer::jobs(subj::JOB_STREAM, subj::SENDER_CONSUMER, &[subj::JOB_SUBJECTS])
            .in_flight(config.sender_concurrency)
            .ack_wait(config.ack_wait)
            .max_deliver(config.max_deliver)
            .retry(config.retry),
        move |delivery| {
            let sender = sender.clone();
            async move { sender.handle(delivery).await }
        },
    );
    // A job JetStream gave up on without an answer (the replica died every time) is parked too.
    worker.spawn(coursebus_bus::dlq::capture(js, subj::JOB_STREAM, subj::SENDER_CONSUMER, None, worker.shutdown()));

    let ticks = scheduler.clone();
    worker.consume(
        Consumer::events(subj::SCHEDULE_STREAM, subj::SCHEDULER_CONSUMER, &[subj::TICK_SUBJECTS])
            .max_deliver(config.max_deliver)
            .retry(config.retry),
        move |delivery| {
            let scheduler = ticks.clone();
            async move { scheduler.handle_tick(delivery).await }
        },
    );
    // Publishing a schedule again replaces it: every replica keeps them there.
    worker.every("digest schedules", Duration::from_secs(3600), move || {
        let scheduler = scheduler.clone();
        async move { scheduler.publish_digest_schedules().await }
    });
    // Queue again the fan-outs whose job was never stored (the process died after the commit).
    worker.every("stalled announcements", Duration::from_secs(30), move || {
        let announcer = announcer.clone();
        async move {
            let n = announcer.requeue_stalled(STALLED_AFTER).await?;
            if n > 0 {
                tracing::info!(announcements = n, "stalled announcement fan-outs queued again");
            }
            Ok::<_, announce::FanOutError>(())
        }
    });

    worker.run().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_debug_printed() {
        let mut config = Config::new(
            "nats://notifications:natspw@127.0.0.1:4222",
            "postgres://u:dbpw@127.0.0.1/notifications",
            "smtps://mailer:smtppw@mail.test",
        );
        config.twilio = Some(sms::TwilioConfig {
            base_url: sms::TWILIO_API.into(),
            account_sid: "ACtest".into(),
            auth_token: Secret::new("twiliopw".into()),
            from: "+15005550006".into(),
            timeout: sms::DEFAULT_TIMEOUT,
        });
        let shown = format!("{config:?}");
        for secret in ["natspw", "dbpw", "smtppw", "twiliopw"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("ACtest"), "{shown}");
    }

    #[test]
    fn ranges_include_both_ends_and_say_what_they_take() {
        let page = within(1u32, 5_000);
        assert!(page(&1).is_ok() && page(&5_000).is_ok());
        assert_eq!(page(&0), Err("must be 1 to 5000".to_owned()));
    }

    #[test]
    fn the_default_retries_grow_to_ten_minutes() {
        let retry = Config::new("nats://x", "postgres://x", DEFAULT_SMTP_URL).retry;
        let delays: Vec<u64> = (1..=12).map(|d| retry.delay(d).as_secs()).collect();
        assert_eq!(delays, [3, 6, 12, 24, 48, 96, 192, 384, 600, 600, 600, 600]);
        // The 9 waits between 10 deliveries ride out an outage of about 23 minutes.
        let window: u64 = delays[..9].iter().sum();
        assert_eq!(window, 1_365);
    }
}
