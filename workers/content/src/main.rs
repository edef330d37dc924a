//! `coursebus-worker-content`: configuration from the environment, logs, run until a signal.

use std::time::Duration;

use anyhow::Context as _;
use coursebus_bus::runtime::env;
use coursebus_bus::s3::S3Config;
use coursebus_worker_content::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coursebus_bus::runtime::init_tracing();
    coursebus_bus::runtime::install_crypto_provider();
    let nats_url = env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let database_url = env("CB_CONTENT_DATABASE_URL").context("CB_CONTENT_DATABASE_URL is required")?;
    let s3 = S3Config::from_env().map_err(anyhow::Error::msg)?;
    let mut config = Config::new(nats_url, database_url, s3);
    if let Some(mib) = env("CB_CONTENT_PART_SIZE_MIB") {
        let mib: u64 = mib.parse().context("CB_CONTENT_PART_SIZE_MIB must be a number")?;
        config.settings.part_size = mib * 1024 * 1024;
    }
    if let Some(secs) = env("CB_CONTENT_PLAYBACK_TTL_SECS") {
        config.settings.playback_ttl =
            Duration::from_secs(secs.parse().context("CB_CONTENT_PLAYBACK_TTL_SECS must be a number")?);
    }
    if let Some(n) = env("CB_CONTENT_DB_MAX_CONNECTIONS") {
        config.db_max_connections = n.parse().context("CB_CONTENT_DB_MAX_CONNECTIONS must be a number")?;
    }
    if let Some(replicas) = env("CB_STREAM_REPLICAS") {
        config.stream_replicas = replicas.parse().context("CB_STREAM_REPLICAS must be a number")?;
    }
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("content worker failed")
}
