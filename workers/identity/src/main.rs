//! `coursebus-worker-identity`: configuration from the environment, logs, run until a signal.

use std::time::Duration;

use anyhow::Context as _;
use coursebus_worker_identity::{BootstrapAdmin, Config, run};

use coursebus_bus::runtime::env;

fn secs(name: &str) -> anyhow::Result<Option<Duration>> {
    env(name)
        .map(|v| v.parse::<u64>().map(Duration::from_secs).with_context(|| format!("{name} must be seconds")))
        .transpose()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coursebus_bus::runtime::init_tracing();
    let nats_url = env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let database_url = env("CB_IDENTITY_DATABASE_URL").context("CB_IDENTITY_DATABASE_URL is required")?;
    let mut config = Config::new(nats_url, database_url);
    if let Some(ttl) = secs("CB_IDENTITY_ACCESS_TTL_SECS")? {
        config.access_ttl = ttl;
    }
    if let Some(ttl) = secs("CB_IDENTITY_REFRESH_TTL_SECS")? {
        config.refresh_ttl = ttl;
    }
    if let Some(replicas) = env("CB_STREAM_REPLICAS") {
        config.stream_replicas = replicas.parse().context("CB_STREAM_REPLICAS must be a number")?;
    }
    if let (Some(email), Some(password)) =
        (env("CB_IDENTITY_BOOTSTRAP_ADMIN_EMAIL"), env("CB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD"))
    {
        config.bootstrap_admin = Some(BootstrapAdmin { email, password });
    }
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("identity worker failed")
}
