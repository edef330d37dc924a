//! The media worker: replicas share the durable pull consumer `media_transcode` on `JOB_MEDIA`
//! and turn each uploaded video into an adaptive ladder (MPEG-DASH and HLS over the same fMP4
//! segments), a poster and a preview strip, all under the job's `output_prefix` in S3; the
//! result is a fact on `EVT_MEDIA` that content records on the asset. It has no database and
//! no endpoints; its micro service `media` is registered so `$SRV.PING|INFO` show the replicas.
//!
//! ```text
//! content ──JOB_MEDIA (cb.job.media.transcode)──▶ media replica (one job at a time)
//!                                                   │  S3 source ─▶ temp dir ─▶ ffmpeg ─▶ S3 outputs
//!            ◀──cb.content.internal.progress────────┤  (best effort, at most once a second)
//!            ◀──EVT_MEDIA transcode.completed|failed┘  (stable event id, then the job is acked)
//! ```
//!
//! Rules (the job itself is in `handlers.rs`, its rules in `domain.rs`, the bytes in `store.rs`):
//! - the consumer runs on the platform's consumer engine with one job in flight per replica (no
//!   prefetch: a buffered job would wait out its `ack_wait` behind a long encode); the engine
//!   keeps the job with in-progress acks every `ack_wait / 3`;
//! - the job is acknowledged only after JetStream stored its result event, published straight to
//!   `EVT_MEDIA` (there is no outbox: no database); the event id is derived from the asset, so a
//!   job finished twice (a replica died after publishing) yields one event, and outputs have
//!   fixed keys, so a repeated run overwrites them;
//! - a bad input (not a video, no picture, ffmpeg refuses it, the upload is missing) fails at
//!   once with a reason for the uploader; anything else (S3, NATS, disk) is retried after 2 s,
//!   4 s, 8 s … (at most a minute) up to `max_deliver`, then failed; a failed job is copied to
//!   the `DLQ` stream; a job no replica ever answered (each died on it) fails its asset too;
//! - on shutdown the running ffmpeg is killed and the job handed back at once (`-NAK`).

pub mod domain;
pub mod ffmpeg;
pub mod handlers;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::config::{self, CommonConfig, ConfigError};
use coursebus_bus::consume::{Consumer, RetryPolicy};
use coursebus_bus::s3::S3Config;
use coursebus_bus::{ServiceSpec, StartError, Worker, streams};
use coursebus_contracts::subjects::media;
use tokio_util::sync::CancellationToken;

pub use crate::domain::stable_id;
use crate::ffmpeg::Ffmpeg;
use crate::handlers::Transcoder;
use crate::store::Store;

/// The micro-service name of the media replicas (`$SRV.PING.media`).
pub use coursebus_contracts::subjects::media::SERVICE;

/// No endpoints: registered so `$SRV.PING|INFO` show the replicas to operators.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Transcodes uploaded videos to HLS and MPEG-DASH ladders with posters and preview strips (ffmpeg)",
};

/// The delays before a job that failed for a passing reason is delivered again.
pub const RETRY: RetryPolicy = RetryPolicy { first: Duration::from_secs(2), cap: Duration::from_secs(60) };

/// What the media worker is configured with:
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `CB_NATS_URL`, `CB_LOG_FORMAT`, `CB_STREAM_REPLICAS` | see [`CommonConfig`] | |
/// | `CB_S3_ENDPOINT`, `CB_S3_PUBLIC_ENDPOINT`, `CB_S3_REGION`, `CB_S3_BUCKET`, `CB_S3_ACCESS_KEY`, `CB_S3_SECRET_KEY` | see [`S3Config::from_env`] | |
/// | `CB_FFMPEG` | the ffmpeg binary | `ffmpeg` |
/// | `CB_MEDIA_WORK_DIR` | where each job's temporary folder goes | the system temp folder |
/// | `CB_MEDIA_ACK_WAIT_SECS` | seconds a job may go without an in-progress ack (≥ 1) | 30 |
/// | `CB_MEDIA_MAX_DELIVER` | deliveries of one job before it is given up (≥ 1) | 4 |
/// | `CB_MEDIA_PRESET` | the x264 preset | `veryfast` |
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// Where sources are read and outputs written (the bucket content uses).
    pub s3: S3Config,
    /// The ffmpeg binary (a static build is fine; ffprobe is not needed).
    pub ffmpeg: PathBuf,
    /// Where each job's temporary folder goes; `None`: the system temp folder.
    pub work_dir: Option<PathBuf>,
    /// How long a job may go without an in-progress ack before JetStream hands it to another
    /// replica (in-progress acks are sent every third of it).
    pub ack_wait: Duration,
    /// Deliveries of one job before it is given up.
    pub max_deliver: i64,
    /// The x264 preset (`ultrafast` … `veryslow`).
    pub preset: String,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, s3: S3Config, ffmpeg: impl Into<PathBuf>) -> Self {
        Self {
            common: CommonConfig::new(nats_url),
            s3,
            ffmpeg: ffmpeg.into(),
            work_dir: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 4,
            preset: "veryfast".into(),
        }
    }

    /// From the variables in the table above; a malformed or missing one is refused.
    pub fn from_env() -> Result<Self, ConfigError> {
        let s3 = S3Config::from_env().map_err(s3_error)?;
        let mut config = Self::new("", s3, config::or("CB_FFMPEG", PathBuf::from("ffmpeg"))?);
        config.common = CommonConfig::from_env(SERVICE)?;
        config.work_dir = config::var("CB_MEDIA_WORK_DIR")?;
        config.ack_wait =
            Duration::from_secs(config::checked("CB_MEDIA_ACK_WAIT_SECS", config.ack_wait.as_secs(), at_least_one)?);
        config.max_deliver = config::checked("CB_MEDIA_MAX_DELIVER", config.max_deliver, at_least_one)?;
        config.preset = config::or("CB_MEDIA_PRESET", config.preset)?;
        Ok(config)
    }
}

fn at_least_one<T: PartialOrd + From<u8>>(n: &T) -> Result<(), String> {
    if *n >= T::from(1) { Ok(()) } else { Err("must be at least 1".to_owned()) }
}

/// `S3Config::from_env` says only which variable is missing (`"<name> is required"`).
fn s3_error(reason: String) -> ConfigError {
    ConfigError::Missing { name: reason.strip_suffix(" is required").unwrap_or(&reason).to_owned() }
}

/// Check ffmpeg, connect, provision `JOB_MEDIA`, `EVT_MEDIA` and `DLQ`, register the micro
/// service, and work on jobs until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let ffmpeg = Ffmpeg::new(&config.ffmpeg, &config.preset);
    let version = ffmpeg
        .version()
        .await
        .map_err(|err| StartError::worker("ffmpeg", format!("{} is not usable: {err}", config.ffmpeg.display())))?;
    tracing::info!(ffmpeg = %version, preset = %config.preset, "ffmpeg found");
    if let Some(dir) = &config.work_dir {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|err| StartError::worker("work directory", format!("{}: {err}", dir.display())))?;
    }

    let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
    worker
        .streams([
            streams::job_stream(media::JOB_STREAM, media::JOB_SUBJECTS, worker.replicas()),
            streams::event_stream(media::EVENT_STREAM, media::EVENT_SUBJECTS, worker.replicas()),
            // Jobs given up on are parked there.
            coursebus_bus::dlq::stream_config(worker.replicas()),
        ])
        .await?;
    // Content owns the bucket; creating it here too only matters when media starts first.
    if let Err(err) = config.s3.ensure_bucket().await {
        tracing::warn!(error = %err, bucket = %config.s3.bucket, "bucket not reachable yet; jobs will retry");
    }

    let js = worker.jetstream().clone();
    let transcoder = Arc::new(Transcoder {
        js: js.clone(),
        bus: worker.bus(),
        store: Store::new(config.s3.client(), config.s3.bucket.clone()),
        ffmpeg,
        work_dir: config.work_dir.clone(),
    });
    // A job JetStream gave up on (no replica answered it) fails its asset, then goes to the DLQ.
    worker.spawn(coursebus_bus::dlq::capture(
        js.clone(),
        media::JOB_STREAM,
        media::TRANSCODE_CONSUMER,
        Some(handlers::given_up(js)),
        worker.shutdown(),
    ));
    worker.consume(
        Consumer::jobs(media::JOB_STREAM, media::TRANSCODE_CONSUMER, &[media::JOB_TRANSCODE])
            .in_flight(1)
            .ack_wait(config.ack_wait)
            .max_deliver(config.max_deliver)
            .retry(RETRY),
        move |delivery| {
            let transcoder = transcoder.clone();
            async move { transcoder.transcode(delivery).await }
        },
    );
    worker.run().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_a_minute() {
        let delays: Vec<u64> = (1..=8).map(|d| RETRY.delay(d).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn config_defaults() {
        let s3 = S3Config {
            endpoint: "http://127.0.0.1:9000".into(),
            public_endpoint: None,
            region: "us-east-1".into(),
            bucket: "coursebus-content".into(),
            access_key: "a".into(),
            secret_key: "hunter2".into(),
        };
        let config = Config::new("nats://u:pw@127.0.0.1:4222", s3, "ffmpeg");
        assert_eq!(
            (config.ack_wait, config.max_deliver, config.preset.as_str()),
            (Duration::from_secs(30), 4, "veryfast")
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("pw") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_missing_s3_variable_is_named() {
        assert_eq!(
            s3_error("CB_S3_ENDPOINT is required".into()),
            ConfigError::Missing { name: "CB_S3_ENDPOINT".into() }
        );
    }
}
