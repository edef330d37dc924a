//! `coursebus-worker-payments`: configuration from the environment, logs, run until a signal.

use std::time::Duration;

use anyhow::Context as _;
use coursebus_bus::runtime::env;
use coursebus_worker_payments::{Config, run};

fn number<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    env(name).map(|v| v.parse::<T>().map_err(|_| anyhow::anyhow!("{name} must be a number"))).transpose()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coursebus_bus::runtime::init_tracing();
    coursebus_bus::runtime::install_crypto_provider();
    let nats_url = env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let database_url = env("CB_PAYMENTS_DATABASE_URL").context("CB_PAYMENTS_DATABASE_URL is required")?;
    let secret_key = env("CB_STRIPE_SECRET_KEY").context("CB_STRIPE_SECRET_KEY is required")?;
    let mut config = Config::new(nats_url, database_url, secret_key);
    if let Some(url) = env("CB_STRIPE_API_BASE") {
        config.stripe_api_base = url;
    }
    if let Some(days) = number("CB_REFUND_WINDOW_DAYS")? {
        config.refund_window.days = days;
    }
    if let Some(percent) = number("CB_REFUND_MAX_PROGRESS_PERCENT")? {
        config.refund_window.max_progress_percent = percent;
    }
    if let Some(secs) = number("CB_PAYMENTS_RECONCILE_SECS")? {
        config.reconcile_every = Duration::from_secs(secs);
    }
    if let Some(secs) = number("CB_PAYMENTS_STALE_SECS")? {
        config.stale_after = Duration::from_secs(secs);
    }
    if let Some(seller) = env("CB_SELLER_NAME") {
        config.seller = seller;
    }
    if let Some(replicas) = number("CB_STREAM_REPLICAS")? {
        config.stream_replicas = replicas;
    }
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("payments worker failed")
}
