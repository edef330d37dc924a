//! `coursebus-worker-notifications`: configuration from the environment, logs, run until a signal.

use anyhow::Context as _;
use coursebus_worker_notifications::{Config, run};

use coursebus_bus::runtime::env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coursebus_bus::runtime::init_tracing();
    let nats_url = env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let database_url = env("CB_NOTIFICATIONS_DATABASE_URL").context("CB_NOTIFICATIONS_DATABASE_URL is required")?;
    let smtp_url = env("CB_SMTP_URL").unwrap_or_else(|| "smtp://127.0.0.1:2525".into());
    let mut config = Config::new(nats_url, database_url, smtp_url);
    if let Some(from) = env("CB_MAIL_FROM") {
        config.mail_from = from;
    }
    if let Some(url) = env("CB_APP_URL") {
        config.app_url = url;
    }
    if let Some(n) = env("CB_NOTIFICATIONS_DB_MAX_CONNECTIONS") {
        config.db_max_connections = n.parse().context("CB_NOTIFICATIONS_DB_MAX_CONNECTIONS must be a number")?;
    }
    if let Some(n) = env("CB_NOTIFICATIONS_CONCURRENCY") {
        config.sender_concurrency = n.parse().context("CB_NOTIFICATIONS_CONCURRENCY must be a number")?;
    }
    if let Some(n) = env("CB_NOTIFICATIONS_MAX_DELIVER") {
        config.max_deliver = n.parse().context("CB_NOTIFICATIONS_MAX_DELIVER must be a number")?;
    }
    // Text messages: all three Twilio settings, or none (the SMS channel then stays unconfigured).
    if let (Some(account_sid), Some(auth_token), Some(from)) =
        (env("CB_TWILIO_ACCOUNT_SID"), env("CB_TWILIO_AUTH_TOKEN"), env("CB_TWILIO_FROM"))
    {
        config.twilio = Some(coursebus_worker_notifications::sms::TwilioConfig {
            base_url: env("CB_TWILIO_URL").unwrap_or_else(|| coursebus_worker_notifications::sms::TWILIO_API.into()),
            account_sid,
            auth_token,
            from,
            timeout: std::time::Duration::from_secs(10),
        });
    }
    if let Some(replicas) = env("CB_STREAM_REPLICAS") {
        config.stream_replicas = replicas.parse().context("CB_STREAM_REPLICAS must be a number")?;
    }
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("notifications worker failed")
}
