//! `coursebus-gateway`: configuration from the environment, logs, serve until a signal.

use std::time::Duration;

use anyhow::Context as _;
use coursebus_gateway::{Config, run};

use coursebus_bus::runtime::env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coursebus_bus::runtime::init_tracing();
    let mut config = Config::new(env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()));
    if let Some(listen) = env("CB_GATEWAY_LISTEN") {
        config.listen = listen.parse().context("CB_GATEWAY_LISTEN must be host:port")?;
    }
    if let Some(limit) = env("CB_GATEWAY_BODY_LIMIT_BYTES") {
        config.body_limit = limit.parse().context("CB_GATEWAY_BODY_LIMIT_BYTES must be a number")?;
    }
    if let Some(ms) = env("CB_GATEWAY_BUS_DEADLINE_MS") {
        config.bus_deadline = Duration::from_millis(ms.parse().context("CB_GATEWAY_BUS_DEADLINE_MS must be a number")?);
    }
    config.stripe_webhook_secret = env("CB_STRIPE_WEBHOOK_SECRET").map(coursebus_gateway::webhook::WebhookSecret::new);
    config.trust_forwarded_for = env("CB_GATEWAY_TRUST_FORWARDED_FOR").is_some_and(|v| v == "true" || v == "1");
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("gateway failed")
}
