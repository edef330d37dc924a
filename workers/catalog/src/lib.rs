//! The catalog worker: courses, modules and lessons, the publish workflow and listing, served as
//! the NATS micro service `catalog` over MongoDB. Reads of published courses come from a
//! per-replica cache that catalog events (and the change hints sent before each reply)
//! invalidate. Each course document carries its own outbox, which this worker's relay publishes
//! to `EVT_CATALOG`.

pub mod domain;
pub mod handlers;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use coursebus_bus::cache::SnapshotCache;
use coursebus_bus::config::{CommonConfig, ConfigError, Secret, millis, or, required};
use coursebus_bus::{ServiceSpec, StartError, Worker, streams};
use coursebus_contracts::catalog::{
    ArchiveCourse, CreateCourse, GetCourse, ListCourses, PublishCourse, PutOutline, UpdateCourse, course_of_notice,
};
use coursebus_contracts::subjects::catalog as subj;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::handlers::Catalog;
use crate::store::Store;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Courses, modules, lessons and the publish workflow",
};

/// The catalog's deadline for its calls to other services (identity's JWKS).
pub const CALL_DEADLINE: Duration = Duration::from_secs(3);

/// Events relayed per sweep of the course outboxes.
const RELAY_BATCH: i64 = 100;

/// How often the relay looks for events nobody woke it for (another replica's, after a crash).
const RELAY_SWEEP: Duration = Duration::from_secs(2);

/// Why a pass of the outbox relay failed (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("nats: {0}")]
    Nats(String),
}

/// The catalog's configuration: the common settings and its MongoDB.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `CB_CATALOG_MONGODB_URL` | its MongoDB (a replica set in production) | required |
/// | `CB_CATALOG_MONGODB_DATABASE` | the database in it | `catalog` |
/// | `CB_CATALOG_CALL_DEADLINE_MS` | deadline of its calls to other services | 3000 |
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// May carry credentials.
    pub mongodb_url: Secret<String>,
    pub database: String,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, mongodb_url: impl Into<String>) -> Self {
        let mut common = CommonConfig::new(nats_url);
        common.call_deadline = CALL_DEADLINE;
        Self { common, mongodb_url: Secret::new(mongodb_url.into()), database: "catalog".into() }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let mut common = CommonConfig::from_env(subj::SERVICE)?;
        // The catalog's own default deadline is longer than the common one.
        common.call_deadline = millis("CB_CATALOG_CALL_DEADLINE_MS", CALL_DEADLINE)?;
        Ok(Self {
            common,
            mongodb_url: Secret::new(required("CB_CATALOG_MONGODB_URL")?),
            database: or("CB_CATALOG_MONGODB_DATABASE", "catalog".to_owned())?,
        })
    }
}

/// Serve until `shutdown`: the endpoints, the cache invalidation that follows every replica's
/// changes, and the relay of the course outboxes to `EVT_CATALOG`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
    let store = Store::connect(config.mongodb_url.expose(), &config.database)
        .await
        .map_err(|err| StartError::worker("mongodb", err))?;
    worker.streams([streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, worker.replicas())]).await?;

    let catalog = Arc::new(Catalog {
        store: store.clone(),
        verifier: worker.verifier(),
        cache: Arc::new(SnapshotCache::new(handlers::CACHE_TTL, handlers::CACHE_ENTRIES)),
        relay: Arc::new(Notify::new()),
        client: worker.client().clone(),
    });

    // Every replica drops cached snapshots when any replica changes a course (hinted before the
    // changing replica replies; the events as a backstop).
    let invalidation = catalog
        .cache
        .follow(
            worker.client(),
            &[subj::COURSE_CHANGED_HINT, subj::EVENT_SUBJECTS],
            course_of_notice,
            worker.shutdown(),
        )
        .await?;
    worker.spawn(async move {
        let _ = invalidation.await;
    });
    worker.spawn(relay(store, worker.jetstream().clone(), catalog.relay.clone(), worker.shutdown()));

    coursebus_bus::endpoints!(
        worker,
        catalog,
        CreateCourse => create,
        UpdateCourse => update,
        PutOutline => put_outline,
        PublishCourse => publish,
        ArchiveCourse => archive,
        GetCourse => get,
        ListCourses => list,
    );
    worker.run().await
}

/// Publish the events waiting in course documents to JetStream (`Nats-Msg-Id` = event id, so a re-publish after a
/// crash is dropped as a duplicate), then pull them from the document. Woken after each commit; sweeps every 2 s
/// for what another replica left behind. Returns on `shutdown`.
async fn relay(store: Store, js: jetstream::Context, wake: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        match relay_batch(&store, &js).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "catalog outbox relay failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(RELAY_SWEEP) => {}
        }
    }
}

async fn relay_batch(store: &Store, js: &jetstream::Context) -> Result<usize, RelayError> {
    let pending = store.pending(RELAY_BATCH).await?;
    let mut relayed = 0;
    for (course, version, events) in pending {
        let mut acks = Vec::with_capacity(events.len());
        for p in &events {
            let mut headers = async_nats::HeaderMap::new();
            for (k, v) in &p.headers {
                headers.insert(k.as_str(), v.as_str());
            }
            let message = PublishMessage::build().payload(p.payload.clone().into()).headers(headers).message_id(&p.id);
            acks.push(js.send_publish(p.subject.clone(), message).await.map_err(|e| RelayError::Nats(e.to_string()))?);
        }
        for ack in acks {
            ack.await.map_err(|e| RelayError::Nats(e.to_string()))?;
        }
        if store.mark_published(&course, version).await? {
            relayed += events.len();
        }
    }
    Ok(relayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_the_mongodb_credentials() {
        let config = Config::new("nats://catalog:natspw@127.0.0.1:4222", "mongodb://u:mongopw@mongo:27017/");
        let shown = format!("{config:?}");
        assert!(!shown.contains("mongopw") && !shown.contains("natspw"), "{shown}");
        assert_eq!(config.common.call_deadline, CALL_DEADLINE);
    }
}
