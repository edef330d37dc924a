//! The search worker: course search over the published catalog, served as the NATS micro service
//! `search`.
//!
//! The default engine is an embedded tantivy index per replica, built by replaying
//! `EVT_CATALOG` with the replica's own ordered consumer: replicas scale reads, and a new replica
//! catches up by itself before it starts answering. For large installs the OpenSearch engine
//! keeps one shared index instead, fed by one durable consumer.

pub mod domain;
pub mod engine;
pub mod handlers;
pub mod indexer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use coursebus_bus::{MicroService, ServiceSpec, streams};
use coursebus_contracts::search::SearchCourses;
use coursebus_contracts::subjects::{catalog as catalog_subj, search as subj};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::opensearch::OpenSearchEngine;
use crate::engine::tantivy::TantivyEngine;
use crate::engine::{EngineError, SearchEngine};
use crate::handlers::Search;
use crate::indexer::Progress;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Full-text course search over the published catalog",
};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Bus(#[from] coursebus_bus::BusError),
    #[error("search engine: {0}")]
    Engine(#[from] EngineError),
}

/// Which engine answers, and where its index lives.
#[derive(Clone, PartialEq, Eq)]
pub enum EngineConfig {
    /// Embedded tantivy: in memory (`index_dir: None`, rebuilt at every start) or in a folder of
    /// this replica's own (kept across restarts; only what it missed is replayed).
    Tantivy { index_dir: Option<PathBuf> },
    /// An OpenSearch cluster (`url` may carry basic-auth credentials) and the index to use.
    OpenSearch { url: String, index: String },
}

impl std::fmt::Debug for EngineConfig {
    /// The URL may carry a password: show only scheme, host and port.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineConfig::Tantivy { index_dir } => f.debug_struct("Tantivy").field("index_dir", index_dir).finish(),
            EngineConfig::OpenSearch { url, index } => {
                let host = opensearch::http::Url::parse(url)
                    .map(|u| {
                        format!(
                            "{}://{}:{}",
                            u.scheme(),
                            u.host_str().unwrap_or(""),
                            u.port_or_known_default().unwrap_or(0)
                        )
                    })
                    .unwrap_or_else(|_| "<invalid url>".into());
                f.debug_struct("OpenSearch").field("url", &host).field("index", index).finish()
            }
        }
    }
}

/// The default OpenSearch index name.
pub const DEFAULT_OPENSEARCH_INDEX: &str = "coursebus_courses";

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub stream_replicas: usize,
    pub engine: EngineConfig,
    /// A new replica answers only once its index caught up with the stream, or after this long
    /// (with a warning) if it has not.
    pub catch_up_timeout: Duration,
}

impl Config {
    /// Embedded tantivy in memory; `EVT_CATALOG` with one replica if this worker creates it.
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            stream_replicas: 1,
            engine: EngineConfig::Tantivy { index_dir: None },
            catch_up_timeout: Duration::from_secs(60),
        }
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), SearchError> {
    tracing::info!(engine = ?config.engine, "search worker starting");
    match &config.engine {
        EngineConfig::Tantivy { index_dir: None } => serve(Arc::new(TantivyEngine::in_ram()?), &config, shutdown).await,
        EngineConfig::Tantivy { index_dir: Some(dir) } => {
            serve(Arc::new(TantivyEngine::in_dir(dir)?), &config, shutdown).await
        }
        EngineConfig::OpenSearch { url, index } => {
            serve(Arc::new(OpenSearchEngine::new(url, index.clone())?), &config, shutdown).await
        }
    }
}

async fn serve<E: SearchEngine>(
    engine: Arc<E>,
    config: &Config,
    shutdown: CancellationToken,
) -> Result<(), SearchError> {
    let client = coursebus_bus::connect(&config.nats_url, "search", Duration::from_secs(30)).await?;
    let js = jetstream::new(client.clone());
    // The catalog creates its stream too: whoever starts first, the stream is the same.
    streams::ensure_stream(
        &js,
        streams::event_stream(catalog_subj::EVENT_STREAM, catalog_subj::EVENT_SUBJECTS, config.stream_replicas),
    )
    .await?;

    // An external index may not be reachable yet: keep trying rather than crash-looping.
    loop {
        match engine.prepare().await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(error = %err, engine = engine.name(), "search engine not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }

    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let indexer = tokio::spawn(indexer::run(engine.clone(), js, progress_tx, shutdown.clone()));

    // Never answer from a partial index: wait (bounded) until the replay caught up.
    let started = std::time::Instant::now();
    let waited = tokio::select! {
        _ = shutdown.cancelled() => {
            let _ = indexer.await;
            return Ok(());
        }
        waited = tokio::time::timeout(config.catch_up_timeout, async {
            // The borrow must not live across an await: copy the value out.
            progress.wait_for(|p| p.caught_up).await.map(|p| *p)
        }) => waited,
    };
    match waited {
        Ok(Ok(p)) => {
            tracing::info!(through_seq = p.applied, elapsed_ms = started.elapsed().as_millis() as u64, "index ready")
        }
        Ok(Err(_)) => tracing::error!("the indexer stopped before catching up"),
        Err(_) => tracing::warn!(
            timeout_secs = config.catch_up_timeout.as_secs(),
            through_seq = progress.borrow().applied,
            "index still catching up; serving anyway"
        ),
    }

    let mut service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    let search = Arc::new(Search { engine });
    service
        .serve::<SearchCourses, _, _>(move |ctx, req| {
            let search = search.clone();
            async move { search.search(ctx, req).await }
        })
        .await?;
    service.run().await;
    let _ = indexer.await;
    client.flush().await.ok();
    tracing::info!("search stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_future_can_be_spawned() {
        fn is_send<T: Send + 'static>(_: &T) {}
        is_send(&run(Config::new("nats://127.0.0.1:1"), CancellationToken::new()));
    }

    #[test]
    fn config_debug_hides_opensearch_credentials() {
        let mut config = Config::new("nats://127.0.0.1:4222");
        config.engine =
            EngineConfig::OpenSearch { url: "https://admin:hunter2@search.example:9200/".into(), index: "c".into() };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("admin"), "{shown}");
        assert!(shown.contains("https://search.example:9200"), "{shown}");
    }
}
