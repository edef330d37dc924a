//! The catalog worker: courses, modules and lessons, the publish workflow and listing, served as
//! the NATS micro service `catalog` over MongoDB. Reads of published courses come from a
//! per-replica cache that catalog events invalidate.

pub mod domain;
pub mod handlers;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use coursebus_bus::auth::{BusJwks, JwtVerifier};
use coursebus_bus::cache::SnapshotCache;
use coursebus_bus::{Bus, MicroService, ServiceSpec, streams};
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

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Bus(#[from] coursebus_bus::BusError),
    #[error("nats: {0}")]
    Nats(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub mongodb_url: String,
    pub database: String,
    pub stream_replicas: usize,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, mongodb_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            mongodb_url: mongodb_url.into(),
            database: "catalog".into(),
            stream_replicas: 1,
        }
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), CatalogError> {
    let store = Store::connect(&config.mongodb_url, &config.database).await?;
    let client = coursebus_bus::connect(&config.nats_url, "catalog", Duration::from_secs(30)).await?;
    let js = jetstream::new(client.clone());
    streams::ensure_stream(
        &js,
        streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, config.stream_replicas),
    )
    .await?;
    let bus = Bus::new(client.clone(), Duration::from_secs(3));
    let catalog = Arc::new(Catalog {
        store: store.clone(),
        verifier: JwtVerifier::new(BusJwks(bus)),
        cache: Arc::new(SnapshotCache::new(handlers::CACHE_TTL, handlers::CACHE_ENTRIES)),
        relay: Arc::new(Notify::new()),
        client: client.clone(),
    });

    // Every replica drops cached snapshots when any replica changes a course (hinted before the
    // changing replica replies; the events as a backstop).
    let invalidation = catalog
        .cache
        .follow(&client, &[subj::COURSE_CHANGED_HINT, subj::EVENT_SUBJECTS], course_of_notice, shutdown.clone())
        .await?;

    let mut service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    coursebus_bus::serve!(
        service,
        catalog,
        CreateCourse => create,
        UpdateCourse => update,
        PutOutline => put_outline,
        PublishCourse => publish,
        ArchiveCourse => archive,
        GetCourse => get,
        ListCourses => list,
    );

    let relay = tokio::spawn(relay(store, js, catalog.relay.clone(), shutdown.clone()));
    service.run().await;
    let _ = tokio::join!(relay, invalidation);
    client.flush().await.ok();
    tracing::info!("catalog stopped");
    Ok(())
}

/// Publish the events waiting in course documents to JetStream (`Nats-Msg-Id` = event id, so a re-publish after a
/// crash is dropped as a duplicate), then pull them from the document. Woken after each commit; sweeps every 2 s
/// for what another replica left behind.
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
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

async fn relay_batch(store: &Store, js: &jetstream::Context) -> Result<usize, CatalogError> {
    let pending = store.pending(100).await?;
    let mut relayed = 0;
    for (course, version, events) in pending {
        let mut acks = Vec::with_capacity(events.len());
        for p in &events {
            let mut headers = async_nats::HeaderMap::new();
            for (k, v) in &p.headers {
                headers.insert(k.as_str(), v.as_str());
            }
            let message = PublishMessage::build().payload(p.payload.clone().into()).headers(headers).message_id(&p.id);
            acks.push(
                js.send_publish(p.subject.clone(), message).await.map_err(|e| CatalogError::Nats(e.to_string()))?,
            );
        }
        for ack in acks {
            ack.await.map_err(|e| CatalogError::Nats(e.to_string()))?;
        }
        if store.mark_published(&course, version).await? {
            relayed += events.len();
        }
    }
    Ok(relayed)
}
