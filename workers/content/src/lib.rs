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

use coursebus_bus::config::{self, CommonConfig, ConfigError};
use coursebus_bus::consume::{Consumer, Delivery, Handled};
use coursebus_bus::s3::S3Config;
use coursebus_bus::{ServiceSpec, StartError, Worker, streams};
use coursebus_contracts::EventEnvelope;
use coursebus_contracts::content::{
    AbortUpload, CompleteUpload, CreateAsset, DownloadAsset, FetchPlayback, GetAsset, GetUploadStatus, GrantPlayback,
    ListAssets, PresignParts, PutCaption, ReportProgress,
};
use coursebus_contracts::subjects::{content as subj, media};
use tokio_util::sync::CancellationToken;

pub use crate::handlers::Settings;
use crate::handlers::{Contents, retryable};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Lesson assets: presigned S3 uploads, downloads, HLS/DASH playback grants, captions",
};

/// Content's schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often a transcode result is tried before it is parked in the DLQ.
const RESULT_MAX_DELIVER: i64 = 10;

/// The longest a presigned S3 URL may work (SigV4: 7 days).
const PRESIGN_MAX_SECS: u64 = 7 * 24 * 3600;

const DEFAULT_SETTINGS: Settings = Settings {
    part_size: 8 * 1024 * 1024,
    upload_url_ttl: Duration::from_secs(3600),
    download_ttl: Duration::from_secs(300),
    playback_ttl: Duration::from_secs(4 * 3600),
};

/// What content is configured with: the common settings (`CB_CONTENT_*`), the bucket (`CB_S3_*`)
/// and the handlers' lifetimes and sizes:
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `CB_CONTENT_PART_SIZE_MIB` | preferred upload part size (S3 allows 5 MiB to 5 GiB) | 8 |
/// | `CB_CONTENT_UPLOAD_URL_TTL_SECS` | how long a presigned part URL works | 3600 |
/// | `CB_CONTENT_DOWNLOAD_TTL_SECS` | how long a presigned download or segment URL works | 300 |
/// | `CB_CONTENT_PLAYBACK_TTL_SECS` | how long a playback grant works | 14400 |
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub s3: S3Config,
    pub settings: Settings,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>, s3: S3Config) -> Self {
        Self { common: CommonConfig::new(nats_url).with_database(database_url), s3, settings: DEFAULT_SETTINGS }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(subj::SERVICE)?;
        // S3Config reads its own variables; its only failure is a required one that is unset.
        let s3 = S3Config::from_env().map_err(|reason| match reason.strip_suffix(" is required") {
            Some(name) => ConfigError::Missing { name: name.to_owned() },
            None => ConfigError::Invalid { name: "CB_S3_*".into(), value: String::new(), reason },
        })?;
        let defaults = DEFAULT_SETTINGS;
        let within = |low: u64, high: u64| {
            move |n: &u64| (low..=high).contains(n).then_some(()).ok_or_else(|| format!("must be {low} to {high}"))
        };
        let part_mib = config::checked("CB_CONTENT_PART_SIZE_MIB", defaults.part_size >> 20, within(5, 5 * 1024))?;
        let ttl = |name: &str, default: Duration, max: u64| {
            config::checked(name, default.as_secs(), within(1, max)).map(Duration::from_secs)
        };
        let settings = Settings {
            part_size: part_mib * 1024 * 1024,
            upload_url_ttl: ttl("CB_CONTENT_UPLOAD_URL_TTL_SECS", defaults.upload_url_ttl, PRESIGN_MAX_SECS)?,
            download_ttl: ttl("CB_CONTENT_DOWNLOAD_TTL_SECS", defaults.download_ttl, PRESIGN_MAX_SECS)?,
            playback_ttl: ttl("CB_CONTENT_PLAYBACK_TTL_SECS", defaults.playback_ttl, u64::from(u32::MAX))?,
        };
        Ok(Self { common, s3, settings })
    }
}

/// Serve until `shutdown`: the endpoints (after making sure the bucket exists), and media's
/// transcode results from `EVT_MEDIA`, recorded on the assets by the durable consumer
/// `content_media` shared by the replicas and acknowledged after the commit.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
    let db = worker.postgres(&MIGRATOR).await?;
    worker
        .streams([
            streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, worker.replicas()),
            // Transcode jobs leave through our outbox: the queue must exist before media starts.
            streams::job_stream(media::JOB_STREAM, media::JOB_SUBJECTS, worker.replicas()),
        ])
        .await?;
    config.s3.ensure_bucket().await.map_err(|err| StartError::worker("storage", err))?;
    let playback_key = store::signing_key(&db.pool, "playback").await?;

    let contents = Arc::new(Contents {
        outbox: db.outbox,
        pool: db.pool,
        verifier: worker.verifier(),
        bus: worker.bus(),
        objects: objects::Objects::new(&config.s3),
        playback_key,
        settings: config.settings,
    });

    coursebus_bus::endpoints!(
        worker,
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

    let state = contents;
    worker.consume(
        Consumer::events(
            media::EVENT_STREAM,
            subj::MEDIA_CONSUMER,
            &[media::EVT_TRANSCODE_COMPLETED, media::EVT_TRANSCODE_FAILED],
        )
        .max_deliver(RESULT_MAX_DELIVER),
        move |delivery| {
            let contents = state.clone();
            async move { contents.on_media_result(delivery).await }
        },
    );
    worker.run().await
}

impl Contents {
    /// One transcode result from `EVT_MEDIA`.
    async fn on_media_result(&self, delivery: Delivery) -> Handled {
        let outcome = match delivery.subject.as_str() {
            media::EVT_TRANSCODE_COMPLETED => match delivery.json::<EventEnvelope<_>>() {
                Ok(event) => self.transcode_completed(&delivery.ctx, event).await,
                Err(rejected) => return rejected,
            },
            media::EVT_TRANSCODE_FAILED => match delivery.json::<EventEnvelope<_>>() {
                Ok(event) => self.transcode_failed(&delivery.ctx, event).await,
                Err(rejected) => return rejected,
            },
            other => return Handled::Reject(format!("unexpected subject {other}")),
        };
        match outcome {
            Ok(()) => Handled::Done,
            Err(err) if retryable(&err) => Handled::Retry(err.message),
            Err(err) => Handled::Reject(format!("transcode result refused: {}", err.message)),
        }
    }
}
