//! `coursebus-worker-catalog`: configuration from the environment (see [`Config`]), logs, run
//! until a signal.

use anyhow::Context as _;
use coursebus_worker_catalog::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coursebus_bus::runtime::init_tracing();
    let config = Config::from_env()?;
    run(config, coursebus_bus::runtime::shutdown_on_signal()).await.context("catalog worker failed")
}
