//! The notifications worker: the in-app inbox (the NATS micro service `notifications`), the
//! sources that turn other domains' events into notification jobs on `JOB_NOTIFY`, and the
//! sender replicas that deliver those jobs in-app and by email (SMTP), over PostgreSQL.
//!
//! ```text
//! EVT_IDENTITY ──notifications_identity──┐
//!                                         ├─▶ JOB_NOTIFY (Nats-Msg-Id = notification id)
//! EVT_ENROLLMENT ─notifications_enrollment┘        │
//!                   notifications_sender (shared by replicas) ─▶ inbox row / SMTP + delivery log
//! ```
//!
//! Rules (see `sender.rs`): one notification per cause (stable ids), one email per notification
//! (`sent` is committed before the job is acknowledged and checked before any send), transient
//! failures retried with growing delays up to `max_deliver`, rejections not retried.

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

use async_nats::jetstream::consumer;
use coursebus_bus::auth::{BusJwks, JwtVerifier};
use coursebus_bus::{Bus, MicroService, ServiceSpec, streams};
use coursebus_contracts::Rpc;
use coursebus_contracts::notifications::{
    CreateAnnouncement, GetAnnouncement, GetPreferences, GetSchedule, GetUnreadCount, ListDeliveries,
    ListNotifications, MarkAllRead, MarkRead, SetPhone, Unsubscribe, UpdatePreferences, UpdateSchedule,
};
use coursebus_contracts::subjects::notifications as subj;
use tokio_util::sync::CancellationToken;

use crate::announce::Announcer;
use crate::handlers::Inbox;
use crate::sender::Sender;
use crate::sources::{SOURCES, Sources};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "In-app inbox and delivery of notifications (in-app, email)",
};

/// Failures that stop the worker (as opposed to refused requests or failed deliveries).
#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    #[error(transparent)]
    Bus(#[from] coursebus_bus::BusError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Mailer(#[from] mailer::MailerError),
    #[error("templates: {0}")]
    Templates(#[from] minijinja::Error),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("Twilio client: {0}")]
    Twilio(#[from] reqwest::Error),
}

#[derive(Clone)]
pub struct Config {
    pub nats_url: String,
    pub database_url: String,
    /// `smtp://host:port`, `smtp://host?tls=required` or `smtps://user:password@host`.
    pub smtp_url: String,
    /// The `From` of every email (`Name <address>`).
    pub mail_from: String,
    /// The public address links in emails point to.
    pub app_url: String,
    /// JetStream replicas for the streams this worker owns (1 on a single node, 3 on a cluster).
    pub stream_replicas: usize,
    pub db_max_connections: u32,
    /// Deadline of each call to another service (the catalog).
    pub call_deadline: Duration,
    /// Jobs one replica works on at once.
    pub sender_concurrency: usize,
    /// Deliveries of one job (or event) before it is given up.
    pub max_deliver: i64,
    /// Delays between delivery attempts (the last repeats).
    pub retry_delays: Vec<Duration>,
    /// How long a pulled job may take before JetStream hands it to another replica.
    pub ack_wait: Duration,
    pub smtp_timeout: Duration,
    /// Text messages through Twilio; `None` leaves the SMS channel unconfigured (opted-in texts
    /// are logged `failed` with that reason).
    pub twilio: Option<sms::TwilioConfig>,
    /// Learners per page of an announcement's fan-out.
    pub fanout_page: u32,
    /// How far back the event sources start when their consumers are created (first deployment):
    /// events older than this are history, not news.
    pub source_lookback: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("smtp_url", &"***")
            .field("mail_from", &self.mail_from)
            .field("sender_concurrency", &self.sender_concurrency)
            .field("max_deliver", &self.max_deliver)
            .field("twilio", &self.twilio)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>, smtp_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            database_url: database_url.into(),
            smtp_url: smtp_url.into(),
            mail_from: "coursebus <no-reply@coursebus.localhost>".into(),
            app_url: "http://127.0.0.1:8080".into(),
            stream_replicas: 1,
            db_max_connections: 10,
            call_deadline: Duration::from_secs(2),
            sender_concurrency: 8,
            max_deliver: 10,
            retry_delays: [1, 5, 15, 30, 60, 120, 300, 600].map(Duration::from_secs).to_vec(),
            ack_wait: Duration::from_secs(60),
            smtp_timeout: Duration::from_secs(10),
            twilio: None,
            fanout_page: 1_000,
            source_lookback: Duration::from_secs(10 * 60),
        }
    }
}

/// Connect, migrate, provision `JOB_NOTIFY` and the consumers, serve until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), NotificationsError> {
    let mailer = mailer::Mailer::new(&config.smtp_url, &config.mail_from, config.smtp_timeout)?;
    let pool = coursebus_bus::worker::pool_options(config.db_max_connections).connect(&config.database_url).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    coursebus_bus::idempotency::install(&pool).await?;
    let links = Arc::new(domain::UnsubscribeLinks::new(store::unsubscribe_key(&pool).await?));
    let templates = Arc::new(domain::Templates::new(&config.app_url, links.clone())?);

    let client = coursebus_bus::connect(&config.nats_url, subj::SERVICE, Duration::from_secs(30)).await?;
    let js = async_nats::jetstream::new(client.clone());
    let jobs =
        streams::ensure_stream(&js, streams::job_stream(subj::JOB_STREAM, subj::JOB_SUBJECTS, config.stream_replicas))
            .await?;
    let job_consumer = jobs
        .create_consumer(consumer::pull::Config {
            durable_name: Some(subj::SENDER_CONSUMER.to_owned()),
            filter_subject: subj::JOB_SUBJECTS.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            ..Default::default()
        })
        .await
        .map_err(|e| NotificationsError::JetStream(format!("consumer {}: {e}", subj::SENDER_CONSUMER)))?;

    streams::ensure_stream(&js, schedule::stream_config(config.stream_replicas)).await?;
    streams::ensure_stream(&js, coursebus_bus::dlq::stream_config(config.stream_replicas)).await?;
    let scheduler = Arc::new(schedule::Scheduler {
        pool: pool.clone(),
        js: js.clone(),
        max_deliver: config.max_deliver,
        retry_delays: config.retry_delays.clone(),
    });
    scheduler.publish_digest_schedules().await.map_err(|e| NotificationsError::JetStream(e.to_string()))?;
    let tick_consumer = js
        .get_stream(subj::SCHEDULE_STREAM)
        .await
        .map_err(|e| NotificationsError::JetStream(format!("stream {}: {e}", subj::SCHEDULE_STREAM)))?
        .create_consumer(consumer::pull::Config {
            durable_name: Some(subj::SCHEDULER_CONSUMER.to_owned()),
            filter_subject: subj::TICK_SUBJECTS.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: config.max_deliver,
            ..Default::default()
        })
        .await
        .map_err(|e| NotificationsError::JetStream(format!("consumer {}: {e}", subj::SCHEDULER_CONSUMER)))?;

    let bus = Bus::new(client.clone(), config.call_deadline);
    let announcer = Arc::new(Announcer {
        pool: pool.clone(),
        js: js.clone(),
        nats: client.clone(),
        bus: bus.clone(),
        call_deadline: config.call_deadline,
        page_size: config.fanout_page,
        max_deliver: config.max_deliver,
        retry_delays: config.retry_delays.clone(),
    });
    let inbox = Arc::new(Inbox {
        pool: pool.clone(),
        verifier: JwtVerifier::new(BusJwks(bus.clone())),
        links,
        announcer: announcer.clone(),
    });
    let mut service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    coursebus_bus::serve!(
        service,
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
    tracing::info!(endpoints = 13, first = %<ListNotifications as Rpc>::ENDPOINT.subject(), "notifications serving");

    let sources = Arc::new(Sources {
        pool: pool.clone(),
        js: js.clone(),
        bus: bus.clone(),
        call_deadline: config.call_deadline,
        max_deliver: config.max_deliver,
        retry_delays: config.retry_delays.clone(),
        lookback: config.source_lookback,
        announcer: announcer.clone(),
    });
    let mut tasks = Vec::new();
    for source in SOURCES {
        tasks.push(tokio::spawn(sources.clone().run(source, shutdown.clone())));
    }
    let sender = Arc::new(Sender {
        pool: pool.clone(),
        nats: client.clone(),
        templates,
        mailer,
        max_deliver: config.max_deliver,
        retry_delays: config.retry_delays.clone(),
        bus,
        call_deadline: config.call_deadline,
        twilio: config.twilio.clone().map(sms::Twilio::new).transpose()?,
        announcer: announcer.clone(),
        scheduler: scheduler.clone(),
    });
    tasks.push(tokio::spawn(scheduler.as_ref().clone().run(tick_consumer, shutdown.clone())));
    tasks.push(tokio::spawn(coursebus_bus::dlq::capture(
        js.clone(),
        subj::JOB_STREAM,
        subj::SENDER_CONSUMER,
        None,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(sender.run(job_consumer, config.sender_concurrency, shutdown.clone())));
    // Re-queue announcements whose fan-out job was never stored.
    tasks.push(tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                if let Err(err) = coursebus_bus::idempotency::purge(&announcer.pool).await {
                    tracing::warn!(error = %err, "old idempotency keys could not be purged");
                }
                match announcer.requeue_stalled(Duration::from_secs(60)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(announcements = n, "stalled announcement fan-outs queued again"),
                    Err(err) => tracing::warn!(error = %err, "stalled announcements could not be queued again"),
                }
            }
        }
    }));

    service.run().await;
    for task in tasks {
        let _ = task.await;
    }
    pool.close().await;
    client.flush().await.ok();
    tracing::info!("notifications stopped");
    Ok(())
}
