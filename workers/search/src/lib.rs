//! The search worker: course search over the published catalog, served as the NATS micro service
//! `search`.
//!
//! The default engine is an embedded tantivy index per replica, built by replaying
//! `EVT_CATALOG` with the replica's own ordered consumer: replicas scale reads, and a new replica
//! catches up by itself before it starts answering. For large installs the OpenSearch engine
//! keeps one shared index instead, fed by one durable consumer shared by the replicas (on the
//! platform's consumer engine, its deliveries gathered into batches). Search has no database.

pub mod domain;
pub mod engine;
pub mod handlers;
pub mod indexer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::config::{CommonConfig, ConfigError, Secret, or, required, secs, var};
use coursebus_bus::{ServiceSpec, StartError, Worker, streams};
use coursebus_contracts::search::SearchCourses;
use coursebus_contracts::subjects::{catalog as catalog_subj, search as subj};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::opensearch::OpenSearchEngine;
use crate::engine::tantivy::TantivyEngine;
use crate::engine::{Feed, SearchEngine};
use crate::handlers::Search;
use crate::indexer::Progress;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Full-text course search over the published catalog",
};

/// Which engine answers, and where its index lives.
#[derive(Clone, PartialEq, Eq)]
pub enum EngineConfig {
    /// Embedded tantivy: in memory (`index_dir: None`, rebuilt at every start) or in a folder of
    /// this replica's own (kept across restarts; only what it missed is replayed).
    Tantivy { index_dir: Option<PathBuf> },
    /// An OpenSearch cluster (`url` may carry basic-auth credentials) and the index to use.
    OpenSearch { url: Secret<String>, index: String },
}

impl std::fmt::Debug for EngineConfig {
    /// The URL may carry a password: show only scheme, host and port.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineConfig::Tantivy { index_dir } => f.debug_struct("Tantivy").field("index_dir", index_dir).finish(),
            EngineConfig::OpenSearch { url, index } => {
                let host = opensearch::http::Url::parse(url.expose())
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

/// The search worker's configuration: the common settings (it has no database) and its own.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `CB_SEARCH_ENGINE` | `tantivy` or `opensearch` | `tantivy` |
/// | `CB_SEARCH_INDEX_DIR` | tantivy only: keep the index in this folder | in memory |
/// | `CB_OPENSEARCH_URL` | the cluster, `https://user:password@host:9200` | required with `opensearch` |
/// | `CB_OPENSEARCH_INDEX` | the index in it | `coursebus_courses` |
/// | `CB_SEARCH_CATCH_UP_SECS` | the longest wait for the index to catch up before serving | 60 |
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub engine: EngineConfig,
    /// A new replica answers only once its index caught up with the stream, or after this long
    /// (with a warning) if it has not.
    pub catch_up_timeout: Duration,
}

impl Config {
    /// Embedded tantivy in memory; `EVT_CATALOG` with one replica if this worker creates it.
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            common: CommonConfig::new(nats_url),
            engine: EngineConfig::Tantivy { index_dir: None },
            catch_up_timeout: Duration::from_secs(60),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::new("");
        let engine = match or("CB_SEARCH_ENGINE", "tantivy".to_owned())?.as_str() {
            "tantivy" => EngineConfig::Tantivy { index_dir: var::<PathBuf>("CB_SEARCH_INDEX_DIR")? },
            "opensearch" => EngineConfig::OpenSearch {
                url: Secret::new(required("CB_OPENSEARCH_URL")?),
                index: or("CB_OPENSEARCH_INDEX", DEFAULT_OPENSEARCH_INDEX.to_owned())?,
            },
            other => {
                return Err(ConfigError::Invalid {
                    name: "CB_SEARCH_ENGINE".into(),
                    value: other.to_owned(),
                    reason: "must be tantivy or opensearch".into(),
                });
            }
        };
        Ok(Self {
            common: CommonConfig::from_env(subj::SERVICE)?,
            engine,
            catch_up_timeout: secs("CB_SEARCH_CATCH_UP_SECS", defaults.catch_up_timeout)?,
        })
    }
}

/// Open the configured engine's index, then serve until `shutdown` (see [`serve`]).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    tracing::info!(engine = ?config.engine, "search worker starting");
    let failed = |err| StartError::worker("search index", err);
    match &config.engine {
        EngineConfig::Tantivy { index_dir: None } => {
            serve(Arc::new(TantivyEngine::in_ram().map_err(failed)?), &config, shutdown).await
        }
        EngineConfig::Tantivy { index_dir: Some(dir) } => {
            serve(Arc::new(TantivyEngine::in_dir(dir).map_err(failed)?), &config, shutdown).await
        }
        EngineConfig::OpenSearch { url, index } => {
            serve(Arc::new(OpenSearchEngine::new(url.expose(), index.clone()).map_err(failed)?), &config, shutdown)
                .await
        }
    }
}

/// The worker on `engine`: make sure `EVT_CATALOG` exists, wait for the engine, start feeding
/// the index (each replica its own replay, or the shared durable consumer), wait (bounded) until
/// the index caught up, then serve the endpoint until `shutdown`.
async fn serve<E: SearchEngine>(
    engine: Arc<E>,
    config: &Config,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let mut worker = Worker::start(SPEC, &config.common, shutdown.clone()).await?;
    // The catalog creates its stream too: whoever starts first, the stream is the same.
    worker
        .streams([streams::event_stream(catalog_subj::EVENT_STREAM, catalog_subj::EVENT_SUBJECTS, worker.replicas())])
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
    match engine.feed() {
        Feed::PerReplica { resume_after } => worker.spawn(indexer::replay(
            engine.clone(),
            worker.jetstream().clone(),
            resume_after,
            progress_tx,
            worker.shutdown(),
        )),
        Feed::Shared => {
            // Nothing to catch up with here: the shared index is as far as the shared consumer.
            progress_tx.send_modify(|p| p.caught_up = true);
            drop(progress_tx);
            let (batches, apply) = indexer::batches(engine.clone(), worker.shutdown());
            worker.spawn(apply);
            worker.consume(indexer::shared_consumer(), move |delivery| {
                let batches = batches.clone();
                async move { batches.index(delivery).await }
            });
        }
    }

    // Never answer from a partial index: wait (bounded) until the replay caught up.
    let started = std::time::Instant::now();
    let waited = tokio::select! {
        _ = shutdown.cancelled() => None,
        waited = tokio::time::timeout(config.catch_up_timeout, async {
            // The borrow must not live across an await: copy the value out.
            progress.wait_for(|p| p.caught_up).await.map(|p| *p)
        }) => Some(waited),
    };
    match waited {
        // Stopped before serving: let the indexer finish what it is writing (it drops its end of
        // `progress` when it returns).
        None => {
            while progress.changed().await.is_ok() {}
            return Ok(());
        }
        Some(Ok(Ok(p))) => {
            tracing::info!(through_seq = p.applied, elapsed_ms = started.elapsed().as_millis() as u64, "index ready")
        }
        Some(Ok(Err(_))) => tracing::error!("the indexer stopped before catching up"),
        Some(Err(_)) => tracing::warn!(
            timeout_secs = config.catch_up_timeout.as_secs(),
            through_seq = progress.borrow().applied,
            "index still catching up; serving anyway"
        ),
    }

    let search = Arc::new(Search { engine });
    coursebus_bus::endpoints!(worker, search, SearchCourses => search);
    worker.run().await
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
