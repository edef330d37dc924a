//! `coursebus-worker-catalog`: configuration from the environment, logs, run until a signal.

use anyhow::Context as _;
use coursebus_worker_catalog::{Config, run};

use coursebus_bus::runtime::env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coursebus_bus::runtime::init_tracing();
    let nats_url = env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let mongodb_url = env("CB_CATALOG_MONGODB_URL").context("CB_CATALOG_MONGODB_URL is required")?;
    let mut config = Config::new(nats_url, mongodb_url);
    if let Some(db) = env("CB_CATALOG_MONGODB_DATABASE") {
        config.database = db;
    }
    if let Some(replicas) = env("CB_STREAM_REPLICAS") {
        config.stream_replicas = replicas.parse().context("CB_STREAM_REPLICAS must be a number")?;
    }
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("catalog worker failed")
}
