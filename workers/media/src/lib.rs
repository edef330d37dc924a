//! The media worker: replicas share the durable pull consumer `media_transcode` on `JOB_MEDIA`
//! and turn each uploaded video into an adaptive ladder (MPEG-DASH and HLS over the same fMP4
//! segments), a poster and a preview strip, all under the job's `output_prefix` in S3; the
//! result is a fact on `EVT_MEDIA` that content records on the asset.
//!
//! ```text
//! content ──JOB_MEDIA (cb.job.media.transcode)──▶ media replica (one job at a time)
//!                                                   │  S3 source ─▶ temp dir ─▶ ffmpeg ─▶ S3 outputs
//!            ◀──cb.content.internal.progress────────┤  (best effort, at most once a second)
//!            ◀──EVT_MEDIA transcode.completed|failed┘  (stable event id, then the job is acked)
//! ```
//!
//! Rules:
//! - a replica holds one job at a time (no prefetch: a buffered job would wait out its
//!   `ack_wait` behind a long encode), and keeps it with in-progress acks every `ack_wait / 3`;
//! - the job is acknowledged only after JetStream stored its result event; the event id is
//!   derived from the asset, so a job finished twice (a replica died after publishing) yields one
//!   event, and outputs have fixed keys, so a repeated run overwrites them;
//! - a bad input (not a video, no picture, ffmpeg refuses it) fails at once with a reason for
//!   the uploader; anything else (S3, NATS, disk) is retried with growing delays up to
//!   `max_deliver`, then failed; a failed job is copied to the `DLQ` stream;
//! - on shutdown the running ffmpeg is killed and the job handed back at once (`-NAK`).

pub mod ffmpeg;
pub mod store;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer, message::PublishMessage};
use coursebus_bus::s3::S3Config;
use coursebus_bus::{Bus, BusError, CallContext, MicroService, ServiceSpec, streams};
use coursebus_contracts::content::{
    Rendition, ReportProgress, TranscodeCompleted, TranscodeFailed, TranscodeJob, TranscodeProgress,
};
use coursebus_contracts::subjects::media;
use coursebus_contracts::{Actor, Event, EventEnvelope};
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::ffmpeg::{Ffmpeg, FfmpegError};
use crate::store::{Store, StoreError};

/// The micro-service name of the media replicas (`$SRV.PING.media`).
pub use coursebus_contracts::subjects::media::SERVICE;

/// No endpoints: registered so `$SRV.PING|INFO` show the replicas to operators.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Transcodes uploaded videos to HLS and MPEG-DASH ladders with posters and preview strips (ffmpeg)",
};

/// How long one pull waits for a job before asking again (short: a job delivered to a replica
/// that stopped meanwhile waits out `ack_wait`).
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// The deadline of a progress report to content.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(1);
/// Progress reports are at least this far apart.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// A failure event quotes at most this many characters of its reason.
const REASON_CHARS: usize = 500;

/// Failures that stop the worker (as opposed to failed jobs).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("ffmpeg at {path} is not usable: {reason}")]
    Ffmpeg { path: PathBuf, reason: String },
    #[error("work directory {path}: {source}")]
    WorkDir { path: PathBuf, source: std::io::Error },
}

#[derive(Clone)]
pub struct Config {
    pub nats_url: String,
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
    /// JetStream replicas for the streams this worker owns (1 on a single node, 3 on a cluster).
    pub stream_replicas: usize,
    /// The x264 preset (`ultrafast` … `veryslow`).
    pub preset: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The NATS URL may carry a password.
        f.debug_struct("Config")
            .field("s3", &self.s3)
            .field("ffmpeg", &self.ffmpeg)
            .field("work_dir", &self.work_dir)
            .field("ack_wait", &self.ack_wait)
            .field("max_deliver", &self.max_deliver)
            .field("stream_replicas", &self.stream_replicas)
            .field("preset", &self.preset)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(nats_url: impl Into<String>, s3: S3Config, ffmpeg: impl Into<PathBuf>) -> Self {
        Self {
            nats_url: nats_url.into(),
            s3,
            ffmpeg: ffmpeg.into(),
            work_dir: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 4,
            stream_replicas: 1,
            preset: "veryfast".into(),
        }
    }
}

/// Check ffmpeg, connect, provision `JOB_MEDIA`, `EVT_MEDIA` and `DLQ`, register the micro
/// service, and work on jobs until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), MediaError> {
    let ffmpeg = Ffmpeg::new(&config.ffmpeg, &config.preset);
    let version = ffmpeg
        .version()
        .await
        .map_err(|err| MediaError::Ffmpeg { path: config.ffmpeg.clone(), reason: err.to_string() })?;
    tracing::info!(ffmpeg = %version, preset = %config.preset, "ffmpeg found");
    if let Some(dir) = &config.work_dir {
        tokio::fs::create_dir_all(dir).await.map_err(|source| MediaError::WorkDir { path: dir.clone(), source })?;
    }

    let client = coursebus_bus::connect(&config.nats_url, SERVICE, Duration::from_secs(30)).await?;
    let js = jetstream::new(client.clone());
    let replicas = config.stream_replicas;
    streams::ensure_stream(&js, streams::job_stream(media::JOB_STREAM, media::JOB_SUBJECTS, replicas)).await?;
    streams::ensure_stream(&js, streams::event_stream(media::EVENT_STREAM, media::EVENT_SUBJECTS, replicas)).await?;
    streams::ensure_stream(&js, coursebus_bus::dlq::stream_config(replicas)).await?;
    // Content owns the bucket; creating it here too only matters when media starts first.
    if let Err(err) = config.s3.ensure_bucket().await {
        tracing::warn!(error = %err, bucket = %config.s3.bucket, "bucket not reachable yet; jobs will retry");
    }

    let service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    let worker = Arc::new(Worker {
        js: js.clone(),
        bus: Bus::new(client.clone(), PROGRESS_DEADLINE),
        store: Store::new(config.s3.client(), config.s3.bucket.clone()),
        ffmpeg,
        work_dir: config.work_dir.clone(),
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
    });
    let dlq = tokio::spawn(coursebus_bus::dlq::capture(
        js.clone(),
        media::JOB_STREAM,
        media::TRANSCODE_CONSUMER,
        Some(given_up(js.clone())),
        shutdown.clone(),
    ));
    let jobs = tokio::spawn(worker.run(shutdown.clone()));

    service.run().await;
    for task in [jobs, dlq] {
        if let Err(err) = task.await {
            tracing::error!(error = %err, "a media task panicked");
        }
    }
    client.flush().await.ok();
    tracing::info!("media stopped");
    Ok(())
}

/// A job JetStream gave up on without an answer from any replica (each one stopped or died
/// while transcoding it, `max_deliver` times): its asset fails with that reason (the same
/// stable id as any other failure of the asset, so it is recorded once).
fn given_up(js: jetstream::Context) -> coursebus_bus::dlq::GivenUpHook {
    Arc::new(move |payload, deliveries| {
        let js = js.clone();
        Box::pin(async move {
            let Ok(job) = serde_json::from_slice::<EventEnvelope<TranscodeJob>>(&payload) else {
                // Not a job: nothing to fail; the copy still goes to the DLQ.
                return Ok(());
            };
            let asset_id = job.data.asset_id;
            let event = TranscodeFailed {
                asset_id,
                reason: format!(
                    "gave up after {deliveries} attempts: the media worker stopped every time while transcoding it"
                ),
                attempts: u64::try_from(deliveries).unwrap_or(0),
            };
            let id = stable_id("transcode.failed", asset_id);
            let mut envelope = event.envelope(Actor::Service { name: SERVICE.to_owned() });
            envelope.id = id;
            let payload = serde_json::to_vec(&envelope).map_err(|e| e.to_string())?;
            let message = PublishMessage::build().payload(payload.into()).message_id(id.to_string());
            js.send_publish(TranscodeFailed::SUBJECT, message)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            tracing::warn!(asset_id = %asset_id, deliveries, "transcode given up: no replica finished it");
            Ok(())
        })
    })
}

/// How a job went wrong.
#[derive(Debug)]
enum JobError {
    /// Running it again cannot help; the reason is for the uploader.
    Permanent(String),
    /// Worth another try.
    Transient(String),
    /// The replica is stopping.
    Cancelled,
}

impl From<FfmpegError> for JobError {
    fn from(err: FfmpegError) -> Self {
        match err {
            FfmpegError::Cancelled => JobError::Cancelled,
            err if err.is_permanent() => JobError::Permanent(err.to_string()),
            err => JobError::Transient(err.to_string()),
        }
    }
}

impl From<StoreError> for JobError {
    fn from(err: StoreError) -> Self {
        if let StoreError::Missing(key) = &err {
            tracing::warn!(key = %key, "source object not found");
        }
        if err.is_permanent() { JobError::Permanent(err.to_string()) } else { JobError::Transient(err.to_string()) }
    }
}

/// `future`, unless `cancel` fires first.
async fn cancellable<T>(cancel: &CancellationToken, future: impl Future<Output = T>) -> Result<T, JobError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(JobError::Cancelled),
        value = future => Ok(value),
    }
}

/// A stable event id: the same inputs give the same UUID (v8, from SHA-256), so a result
/// published twice is deduplicated by JetStream (`Nats-Msg-Id`) and by its consumers.
pub fn stable_id(kind: &str, asset_id: Uuid) -> Uuid {
    coursebus_bus::ids::stable_id(&[format!("{kind}:{asset_id}").as_bytes()])
}

/// The delay before a transient failure is retried: 2 s × the attempt, at most a minute.
fn retry_delay(delivered: i64) -> Duration {
    Duration::from_secs(2 * u64::try_from(delivered.clamp(1, 30)).unwrap_or(1))
}

struct Worker {
    js: jetstream::Context,
    bus: Bus,
    store: Store,
    ffmpeg: Ffmpeg,
    work_dir: Option<PathBuf>,
    ack_wait: Duration,
    max_deliver: i64,
}

impl Worker {
    /// Pull one job at a time until `shutdown`.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        'consumer: loop {
            let Some(consumer) = self.consumer(&shutdown).await else { return };
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                // One message per pull: the next job stays on the server for whichever replica
                // is free first.
                let mut batch = match consumer.batch().max_messages(1).expires(PULL_EXPIRES).messages().await {
                    Ok(batch) => batch,
                    Err(err) => {
                        tracing::warn!(error = %err, consumer = media::TRANSCODE_CONSUMER, "cannot pull jobs; retrying");
                        if pause(&shutdown).await {
                            continue 'consumer;
                        }
                        return;
                    }
                };
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = batch.next() => next,
                };
                drop(batch);
                match next {
                    Some(Ok(message)) => self.handle(message, &shutdown).await,
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, consumer = media::TRANSCODE_CONSUMER, "job pull failed; retrying");
                        if pause(&shutdown).await {
                            continue 'consumer;
                        }
                        return;
                    }
                    // The pull expired without a job.
                    None => {}
                }
            }
        }
    }

    /// The shared durable consumer, created or brought to this configuration (retried every
    /// second while the server refuses); `None` once `shutdown` fires.
    async fn consumer(&self, shutdown: &CancellationToken) -> Option<consumer::PullConsumer> {
        let config = consumer::pull::Config {
            durable_name: Some(media::TRANSCODE_CONSUMER.to_owned()),
            filter_subject: media::JOB_TRANSCODE.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            ..Default::default()
        };
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let attempt = async {
                let stream = self.js.get_stream(media::JOB_STREAM).await.map_err(|e| e.to_string())?;
                stream.create_consumer(config.clone()).await.map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(consumer) => return Some(consumer),
                Err(err) => {
                    tracing::warn!(error = %err, consumer = media::TRANSCODE_CONSUMER, "cannot create the consumer yet")
                }
            }
            if !pause(shutdown).await {
                return None;
            }
        }
    }

    /// Handle one job and acknowledge it as its outcome says.
    async fn handle(&self, message: jetstream::Message, shutdown: &CancellationToken) {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let envelope = match serde_json::from_slice::<EventEnvelope<TranscodeJob>>(&message.payload) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::error!(error = %err, subject = %message.subject, "malformed transcode job");
                let reason = format!("malformed transcode job: {err}");
                let ack = coursebus_bus::dlq::give_up(&self.js, &message, &reason, retry_delay(delivered)).await;
                acknowledge(&message, ack).await;
                return;
            }
        };
        let job = envelope.data;
        // The job's trace and request id follow its result; a user's token would not.
        let mut ctx = CallContext::from_headers(message.headers.as_ref());
        ctx.authorization = None;
        ctx.idempotency_key = None;
        let span = tracing::info_span!(
            "transcode",
            asset_id = %job.asset_id,
            attempt = delivered,
            request_id = %ctx.request_id,
            trace_id = ctx.trace_id().unwrap_or_default(),
        );
        self.transcode(&message, &job, delivered, &ctx, shutdown).instrument(span).await;
    }

    async fn transcode(
        &self,
        message: &jetstream::Message,
        job: &TranscodeJob,
        delivered: i64,
        ctx: &CallContext,
        shutdown: &CancellationToken,
    ) {
        let started = Instant::now();
        tracing::info!(source_key = %job.source_key, "transcode started");
        let result = self.work(message, job, ctx, shutdown).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(completed) => {
                let renditions = completed.renditions.len();
                let duration_s = completed.duration_seconds;
                let id = stable_id("transcode.completed", job.asset_id);
                match self.publish(completed, id, ctx).await {
                    Ok(()) => {
                        if let Err(err) = message.double_ack().await {
                            // The job comes back; its event is a duplicate by then.
                            tracing::warn!(error = %err, "could not acknowledge a finished job");
                        }
                        tracing::info!(elapsed_ms, renditions, duration_s, "transcode completed");
                    }
                    Err(err) => {
                        self.retry_or_fail(message, job, delivered, ctx, format!("could not publish the result: {err}"))
                            .await
                    }
                }
            }
            Err(JobError::Cancelled) => {
                // Another replica takes it now rather than after `ack_wait`.
                acknowledge(message, AckKind::Nak(None)).await;
                tracing::info!(elapsed_ms, "transcode interrupted by shutdown; job handed back");
            }
            Err(JobError::Permanent(reason)) => {
                tracing::warn!(elapsed_ms, reason = %reason, "transcode failed for good");
                self.fail(message, job, delivered, ctx, reason).await;
            }
            Err(JobError::Transient(err)) => {
                tracing::warn!(elapsed_ms, error = %err, "transcode attempt failed");
                self.retry_or_fail(message, job, delivered, ctx, err).await;
            }
        }
    }

    /// Retry after a growing delay, or fail the job when this was its last delivery.
    async fn retry_or_fail(
        &self,
        message: &jetstream::Message,
        job: &TranscodeJob,
        delivered: i64,
        ctx: &CallContext,
        error: String,
    ) {
        if delivered >= self.max_deliver {
            return self
                .fail(message, job, delivered, ctx, format!("gave up after {delivered} attempts: {error}"))
                .await;
        }
        let delay = retry_delay(delivered);
        tracing::info!(retry_in_ms = delay.as_millis() as u64, "transcode will be retried");
        acknowledge(message, AckKind::Nak(Some(delay))).await;
    }

    /// Publish `TranscodeFailed`, copy the job to the DLQ and terminate it; if the event cannot
    /// be published, the job comes back (a failure is never dropped unsaid).
    async fn fail(
        &self,
        message: &jetstream::Message,
        job: &TranscodeJob,
        delivered: i64,
        ctx: &CallContext,
        reason: String,
    ) {
        let reason = ffmpeg::shorten(&reason, REASON_CHARS);
        let event = TranscodeFailed {
            asset_id: job.asset_id,
            reason: reason.clone(),
            attempts: u64::try_from(delivered).unwrap_or(1),
        };
        match self.publish(event, stable_id("transcode.failed", job.asset_id), ctx).await {
            Ok(()) => {
                let ack = coursebus_bus::dlq::give_up(&self.js, message, &reason, retry_delay(delivered)).await;
                acknowledge(message, ack).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not publish the failure; the job will come back");
                acknowledge(message, AckKind::Nak(Some(retry_delay(delivered)))).await;
            }
        }
    }

    /// Publish `event` on `EVT_MEDIA` with envelope id and `Nats-Msg-Id` `id`, and wait until
    /// JetStream stored it.
    async fn publish<E: Event>(&self, event: E, id: Uuid, ctx: &CallContext) -> Result<(), String> {
        let mut envelope = event.envelope(Actor::Service { name: SERVICE.to_owned() });
        envelope.id = id;
        let payload = serde_json::to_vec(&envelope).map_err(|e| e.to_string())?;
        let message =
            PublishMessage::build().payload(payload.into()).headers(ctx.to_headers()).message_id(id.to_string());
        let ack = self
            .js
            .send_publish(E::SUBJECT, message)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        tracing::debug!(event_id = %id, subject = E::SUBJECT, duplicate = ack.duplicate, "result published");
        Ok(())
    }

    /// The job in a fresh temp folder, kept alive with in-progress acks and reported to content
    /// as it advances; the folder is removed afterwards whatever happened.
    async fn work(
        &self,
        message: &jetstream::Message,
        job: &TranscodeJob,
        ctx: &CallContext,
        shutdown: &CancellationToken,
    ) -> Result<TranscodeCompleted, JobError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("coursebus-media-");
        let dir = match &self.work_dir {
            Some(root) => builder.tempdir_in(root),
            None => builder.tempdir(),
        }
        .map_err(|err| JobError::Transient(format!("cannot create a work folder: {err}")))?;
        let (progress, watcher) = watch::channel(0u8);
        let every = (self.ack_wait / 3).max(Duration::from_secs(1));
        let result = tokio::select! {
            result = self.process(job, dir.path(), &progress, shutdown) => result,
            never = heartbeat(message, every) => match never {},
            never = report_progress(&self.bus, ctx, job.asset_id, watcher) => match never {},
        };
        let path = dir.path().to_path_buf();
        match tokio::task::spawn_blocking(move || dir.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, path = %path.display(), "work folder not removed"),
            Err(err) => tracing::warn!(error = %err, path = %path.display(), "work folder not removed"),
        }
        result
    }

    /// Download, transcode, upload.
    async fn process(
        &self,
        job: &TranscodeJob,
        dir: &std::path::Path,
        progress: &watch::Sender<u8>,
        shutdown: &CancellationToken,
    ) -> Result<TranscodeCompleted, JobError> {
        let source = dir.join("source");
        let out = dir.join("out");
        let started = Instant::now();
        let downloaded = cancellable(shutdown, self.store.download(&job.source_key, &source)).await??;
        tracing::info!(
            bytes = downloaded.bytes,
            sha256 = %downloaded.sha256,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "source downloaded"
        );

        let started = Instant::now();
        let on_progress = |percent: u8| {
            progress.send_if_modified(|current| {
                let raised = percent > *current;
                if raised {
                    *current = percent;
                }
                raised
            });
        };
        let done = self.ffmpeg.transcode(&source, &out, on_progress, shutdown).await?;
        tracing::info!(
            duration_s = done.duration,
            width = done.probe.width,
            height = done.probe.height,
            rungs = done.ladder.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "encoded"
        );

        let started = Instant::now();
        let (files, bytes) = cancellable(shutdown, self.store.upload_dir(&out, &job.output_prefix)).await??;
        tracing::info!(
            files,
            bytes,
            prefix = %job.output_prefix,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "outputs uploaded"
        );

        Ok(TranscodeCompleted {
            asset_id: job.asset_id,
            duration_seconds: done.duration,
            width: done.probe.width,
            height: done.probe.height,
            renditions: renditions(&done.ladder),
            source_sha256: downloaded.sha256,
            segment_seconds: ffmpeg::SEGMENT_SECONDS,
        })
    }
}

/// The contract's view of a ladder, top rung first.
fn renditions(ladder: &[ffmpeg::Rung]) -> Vec<Rendition> {
    ladder
        .iter()
        .enumerate()
        .map(|(i, rung)| Rendition {
            width: rung.width,
            height: rung.height,
            bandwidth: rung.bandwidth(),
            playlist: ffmpeg::media_playlist(i),
        })
        .collect()
}

/// Wait a second; false if `shutdown` fired meanwhile.
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_secs(1)) => true,
    }
}

async fn acknowledge(message: &jetstream::Message, kind: AckKind) {
    if let Err(err) = message.ack_with(kind).await {
        tracing::warn!(error = %err, ack = ?kind, "could not acknowledge a job");
    }
}

/// Tell JetStream the job is still being worked on, every `every`, for as long as it is.
async fn heartbeat(message: &jetstream::Message, every: Duration) -> Infallible {
    loop {
        tokio::time::sleep(every).await;
        if let Err(err) = message.ack_with(AckKind::Progress).await {
            tracing::debug!(error = %err, "in-progress ack not sent");
        }
    }
}

/// Report the percentage to content when it changed, at most once a second (best effort).
async fn report_progress(bus: &Bus, ctx: &CallContext, asset_id: Uuid, mut watcher: watch::Receiver<u8>) -> Infallible {
    loop {
        if watcher.changed().await.is_err() {
            // The job is over (the sender is gone): nothing more to say.
            std::future::pending::<()>().await;
        }
        let percent = *watcher.borrow_and_update();
        let request = TranscodeProgress { asset_id, percent };
        if let Err(err) = bus.request_within::<ReportProgress>(ctx, &request, PROGRESS_DEADLINE).await {
            tracing::debug!(code = %err.code, message = %err.message, "progress not reported");
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ids_depend_on_kind_and_asset_only() {
        let asset = Uuid::now_v7();
        let completed = stable_id("transcode.completed", asset);
        assert_eq!(completed, stable_id("transcode.completed", asset));
        assert_ne!(completed, stable_id("transcode.failed", asset));
        assert_ne!(completed, stable_id("transcode.completed", Uuid::now_v7()));
        assert_eq!(completed.get_version_num(), 8);
        // SHA-256 of "transcode.completed:<asset>", first 16 bytes, as a UUID v8.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("transcode.completed:{asset}").as_bytes());
        assert_eq!(completed.as_bytes()[..6], digest[..6]);
    }

    #[test]
    fn retry_delays_grow_and_stay_bounded() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(6));
        assert_eq!(retry_delay(1000), Duration::from_secs(60));
        assert_eq!(retry_delay(0), Duration::from_secs(2));
    }

    #[test]
    fn renditions_follow_the_ladder() {
        let list = renditions(&ffmpeg::ladder(1920, 1080));
        let shown: Vec<(u32, u32, u64, &str)> =
            list.iter().map(|r| (r.width, r.height, r.bandwidth, r.playlist.as_str())).collect();
        assert_eq!(
            shown,
            [
                (1920, 1080, 5_500_000, "media_0.m3u8"),
                (1280, 720, 3_080_000, "media_1.m3u8"),
                (640, 360, 880_000, "media_2.m3u8")
            ]
        );
    }

    #[test]
    fn failures_are_sorted() {
        assert!(matches!(JobError::from(FfmpegError::NotPlayable("x".into())), JobError::Permanent(_)));
        assert!(matches!(JobError::from(FfmpegError::Stalled), JobError::Transient(_)));
        assert!(matches!(JobError::from(FfmpegError::Cancelled), JobError::Cancelled));
        assert!(matches!(JobError::from(StoreError::Missing("k".into())), JobError::Permanent(_)));
        assert!(matches!(JobError::from(StoreError::S3("503".into())), JobError::Transient(_)));
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
}
