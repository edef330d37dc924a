//! `coursebus-worker-assessment`: configuration from the environment, logs, run until a signal.

use anyhow::Context as _;
use coursebus_bus::runtime::env;
use coursebus_worker_assessment::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coursebus_bus::runtime::init_tracing();
    let nats_url = env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let database_url = env("CB_ASSESSMENT_DATABASE_URL").context("CB_ASSESSMENT_DATABASE_URL is required")?;
    let mut config = Config::new(nats_url, database_url);
    if let Some(secs) = env("CB_GRADING_ACK_WAIT_SECS") {
        config.grading_ack_wait =
            std::time::Duration::from_secs(secs.parse().context("CB_GRADING_ACK_WAIT_SECS must be a number")?);
    }
    if let Some(n) = env("CB_GRADING_CONCURRENCY") {
        config.grading_concurrency = n.parse().context("CB_GRADING_CONCURRENCY must be a number")?;
    }
    if let Some(n) = env("CB_ASSESSMENT_DB_MAX_CONNECTIONS") {
        config.db_max_connections = n.parse().context("CB_ASSESSMENT_DB_MAX_CONNECTIONS must be a number")?;
    }
    if let Some(replicas) = env("CB_STREAM_REPLICAS") {
        config.stream_replicas = replicas.parse().context("CB_STREAM_REPLICAS must be a number")?;
    }
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("assessment worker failed")
}
