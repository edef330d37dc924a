//! The content worker: lesson assets. Metadata lives in PostgreSQL, bytes in S3 under keys this
//! worker generates. Clients upload straight to S3 through presigned multipart URLs and read
//! through short-lived presigned URLs; videos are handed to the media queue group (`JOB_MEDIA`,
//! through the outbox) and become `ready` when its `EVT_MEDIA` result arrives.

pub mod domain;
pub mod handlers;
pub mod objects;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use coursebus_bus::auth::{BusJwks, JwtVerifier};
use coursebus_bus::consume::{self, Handled};
use coursebus_bus::s3::S3Config;
use coursebus_bus::{Bus, MicroService, ServiceSpec, idempotency, outbox, streams};
use coursebus_contracts::content::{
    AbortUpload, CompleteUpload, CreateAsset, DownloadAsset, FetchPlayback, GetAsset, GetUploadStatus, GrantPlayback,
    ListAssets, PresignParts, PutCaption, ReportProgress,
};
use coursebus_contracts::subjects::{content as subj, media};
use coursebus_contracts::{EventEnvelope, Rpc};
use tokio_util::sync::CancellationToken;

pub use crate::handlers::Settings;
use crate::handlers::{Contents, retryable};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Lesson assets: presigned S3 uploads, downloads, HLS/DASH playback grants, captions",
};

/// Failures that stop the worker (as opposed to refused requests).
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Start(#[from] coursebus_bus::worker::StartError),
    #[error(transparent)]
    Bus(#[from] coursebus_bus::BusError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("storage: {0}")]
    Storage(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub database_url: String,
    pub s3: S3Config,
    pub settings: Settings,
    /// JetStream replicas for the streams this worker owns.
    pub stream_replicas: usize,
    pub db_max_connections: u32,
    /// Deadline of each call to another service (catalog, enrollment).
    pub call_deadline: Duration,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>, s3: S3Config) -> Self {
        Self {
            nats_url: nats_url.into(),
            database_url: database_url.into(),
            s3,
            settings: Settings {
                part_size: 8 * 1024 * 1024,
                upload_url_ttl: Duration::from_secs(3600),
                download_ttl: Duration::from_secs(300),
                playback_ttl: Duration::from_secs(4 * 3600),
            },
            stream_replicas: 1,
            db_max_connections: 10,
            call_deadline: Duration::from_secs(2),
        }
    }
}

/// Connect, migrate, provision `EVT_CONTENT` and `JOB_MEDIA`, serve until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ContentError> {
    let spec = coursebus_bus::worker::Spec {
        service: subj::SERVICE,
        nats_url: &config.nats_url,
        database_url: &config.database_url,
        max_connections: config.db_max_connections,
        streams: vec![
            streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, config.stream_replicas),
            // Transcode jobs leave through our outbox: the queue must exist before media starts.
            streams::job_stream(media::JOB_STREAM, media::JOB_SUBJECTS, config.stream_replicas),
        ],
    };
    let coursebus_bus::worker::Started { pool, client, js } =
        coursebus_bus::worker::start_pg(spec, &sqlx::migrate!("./migrations")).await?;
    config.s3.ensure_bucket().await.map_err(ContentError::Storage)?;
    let playback_key = store::signing_key(&pool, "playback").await?;

    let bus = Bus::new(client.clone(), config.call_deadline);
    let relay = outbox::Relay::new(pool.clone(), js.clone());
    let contents = Arc::new(Contents {
        outbox: relay.waker(),
        pool: pool.clone(),
        verifier: JwtVerifier::new(BusJwks(bus.clone())),
        bus,
        objects: objects::Objects::new(&config.s3),
        playback_key,
        settings: config.settings.clone(),
    });

    let mut service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    coursebus_bus::serve!(
        service,
        contents,
        CreateAsset => create,
        GetAsset => get,
        ListAssets => list,
        PresignParts => presign_parts,
        GetUploadStatus => upload_status,
        CompleteUpload => complete,
        AbortUpload => abort,
        DownloadAsset => download,
        GrantPlayback => grant_playback,
        FetchPlayback => fetch_playback,
        PutCaption => put_caption,
        ReportProgress => report_progress,
    );
    tracing::info!(endpoints = 12, first = %<CreateAsset as Rpc>::ENDPOINT.subject(), "content serving");

    let relay = tokio::spawn(relay.run(shutdown.clone()));
    let results = tokio::spawn(media_results(js, contents.clone(), shutdown.clone()));
    let housekeeping = tokio::spawn(idempotency::purge_until(pool.clone(), Duration::from_secs(600), shutdown.clone()));
    service.run().await;
    let _ = tokio::join!(relay, results, housekeeping);
    pool.close().await;
    client.flush().await.ok();
    tracing::info!("content stopped");
    Ok(())
}

/// How often a transcode result is tried before it is parked in the DLQ.
const RESULT_MAX_DELIVER: i64 = 10;

/// Record transcode results from `EVT_MEDIA` on the assets (durable consumer shared by the
/// replicas; acknowledged after the commit).
async fn media_results(js: jetstream::Context, contents: Arc<Contents>, shutdown: CancellationToken) {
    let config = consumer::pull::Config {
        durable_name: Some(subj::MEDIA_CONSUMER.into()),
        filter_subjects: vec![media::EVT_TRANSCODE_COMPLETED.into(), media::EVT_TRANSCODE_FAILED.into()],
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: RESULT_MAX_DELIVER,
        ..Default::default()
    };
    consume::run(js, media::EVENT_STREAM, config, shutdown, move |subject, payload| {
        let contents = contents.clone();
        async move {
            let outcome = match subject.as_str() {
                media::EVT_TRANSCODE_COMPLETED => match serde_json::from_slice::<EventEnvelope<_>>(&payload) {
                    Ok(event) => contents.transcode_completed(event).await,
                    Err(err) => return Handled::Reject(format!("malformed transcode result: {err}")),
                },
                media::EVT_TRANSCODE_FAILED => match serde_json::from_slice::<EventEnvelope<_>>(&payload) {
                    Ok(event) => contents.transcode_failed(event).await,
                    Err(err) => return Handled::Reject(format!("malformed transcode result: {err}")),
                },
                other => return Handled::Reject(format!("unexpected subject {other}")),
            };
            match outcome {
                Ok(()) => Handled::Done,
                Err(err) if retryable(&err) => Handled::Retry(err.message),
                Err(err) => Handled::Reject(format!("transcode result refused: {}", err.message)),
            }
        }
    })
    .await;
}
