//! `coursebus-worker-search`: configuration from the environment (see [`Config`]), logs, run
//! until a signal.

use anyhow::Context as _;
use coursebus_worker_search::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Also picks the process's TLS provider (the OpenSearch client brings a second one).
    coursebus_bus::runtime::init_tracing();
    let config = Config::from_env()?;
    run(config, coursebus_bus::runtime::shutdown_on_signal()).await.context("search worker failed")
}
