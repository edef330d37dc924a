//! `coursebus-worker-search`: configuration from the environment, logs, run until a signal.
//!
//! - `CB_NATS_URL` (default `nats://127.0.0.1:4222`), `CB_STREAM_REPLICAS` (default 1);
//! - `CB_SEARCH_ENGINE`: `tantivy` (default) or `opensearch`;
//! - `CB_SEARCH_INDEX_DIR`: tantivy only, keep the index in this folder (default: in memory);
//! - `CB_OPENSEARCH_URL` (required with `opensearch`), `CB_OPENSEARCH_INDEX` (default
//!   `coursebus_courses`);
//! - `CB_SEARCH_CATCH_UP_SECS`: the longest wait for the index to catch up before serving (60).

use anyhow::{Context as _, bail};
use coursebus_worker_search::{Config, DEFAULT_OPENSEARCH_INDEX, EngineConfig, run};

use coursebus_bus::runtime::env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Also picks the process's TLS provider (the OpenSearch client brings a second one).
    coursebus_bus::runtime::init_tracing();
    let nats_url = env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let mut config = Config::new(nats_url);
    if let Some(replicas) = env("CB_STREAM_REPLICAS") {
        config.stream_replicas = replicas.parse().context("CB_STREAM_REPLICAS must be a number")?;
    }
    config.engine = match env("CB_SEARCH_ENGINE").as_deref().unwrap_or("tantivy") {
        "tantivy" => EngineConfig::Tantivy { index_dir: env("CB_SEARCH_INDEX_DIR").map(Into::into) },
        "opensearch" => EngineConfig::OpenSearch {
            url: env("CB_OPENSEARCH_URL").context("CB_OPENSEARCH_URL is required with CB_SEARCH_ENGINE=opensearch")?,
            index: env("CB_OPENSEARCH_INDEX").unwrap_or_else(|| DEFAULT_OPENSEARCH_INDEX.into()),
        },
        other => bail!("CB_SEARCH_ENGINE must be tantivy or opensearch, not {other:?}"),
    };
    if let Some(secs) = env("CB_SEARCH_CATCH_UP_SECS") {
        config.catch_up_timeout =
            std::time::Duration::from_secs(secs.parse().context("CB_SEARCH_CATCH_UP_SECS must be a number")?);
    }
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("search worker failed")
}
