//! The transcode job: what one delivery of `cb.job.media.transcode` does (download the source,
//! run ffmpeg, upload the outputs, report progress to content, publish the result on `EVT_MEDIA`)
//! and how its outcome answers the consumer engine ([`Handled`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use coursebus_bus::consume::{Delivery, Handled};
use coursebus_bus::{Bus, CallContext};
use coursebus_contracts::content::{ReportProgress, TranscodeCompleted, TranscodeJob, TranscodeProgress};
use coursebus_contracts::{Event, EventEnvelope};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::domain::{self, JobError};
use crate::ffmpeg::{self, Ffmpeg};
use crate::store::{Store, StoreError};

/// The deadline of a progress report to content.
pub const PROGRESS_DEADLINE: Duration = Duration::from_secs(1);
/// Progress reports are at least this far apart.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a replica transcodes with.
pub struct Transcoder {
    /// Where results are published (`EVT_MEDIA`).
    pub js: jetstream::Context,
    /// Progress reports to content.
    pub bus: Bus,
    pub store: Store,
    pub ffmpeg: Ffmpeg,
    /// Where each job's temporary folder goes; `None`: the system temp folder.
    pub work_dir: Option<PathBuf>,
}

impl Transcoder {
    /// One delivery of a job:
    /// - done and its `transcode.completed` stored: [`Handled::Done`];
    /// - the replica is stopping (ffmpeg killed): [`Handled::Release`], another replica takes it
    ///   at once;
    /// - a bad input, or a transient failure on the last delivery: `transcode.failed` is
    ///   published, then [`Handled::Reject`] parks the job in the DLQ;
    /// - a transient failure (S3, NATS, disk) before the last delivery: [`Handled::Retry`];
    /// - not a job: [`Handled::Reject`] at once.
    pub async fn transcode(&self, delivery: Delivery) -> Handled {
        let job = match serde_json::from_slice::<EventEnvelope<TranscodeJob>>(&delivery.payload) {
            Ok(envelope) => envelope.data,
            Err(err) => {
                tracing::error!(error = %err, subject = %delivery.subject, "malformed transcode job");
                return Handled::Reject(domain::malformed_reason(&err));
            }
        };
        let span = tracing::info_span!("transcode", asset_id = %job.asset_id);
        self.attempt(&delivery, &job).instrument(span).await
    }

    async fn attempt(&self, delivery: &Delivery, job: &TranscodeJob) -> Handled {
        let started = Instant::now();
        tracing::info!(source_key = %job.source_key, "transcode started");
        // The job's trace and request id (its publisher's context) follow its progress reports
        // and its result.
        let ctx = &delivery.ctx;
        let result = self.work(job, ctx, &delivery.shutdown).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(completed) => {
                let renditions = completed.renditions.len();
                let duration_s = completed.duration_seconds;
                match self.publish(domain::completed_event(completed), ctx).await {
                    Ok(()) => {
                        tracing::info!(elapsed_ms, renditions, duration_s, "transcode completed");
                        Handled::Done
                    }
                    Err(err) => self.retry_or_fail(delivery, job, format!("could not publish the result: {err}")).await,
                }
            }
            Err(JobError::Cancelled) => {
                tracing::info!(elapsed_ms, "transcode interrupted by shutdown; job handed back");
                Handled::Release
            }
            Err(JobError::Permanent(reason)) => {
                tracing::warn!(elapsed_ms, reason = %reason, "transcode failed for good");
                self.fail(delivery, job, reason).await
            }
            Err(JobError::Transient(err)) => {
                tracing::warn!(elapsed_ms, error = %err, "transcode attempt failed");
                self.retry_or_fail(delivery, job, err).await
            }
        }
    }

    /// Retry (the engine's delays), or fail the job when this was its last delivery.
    async fn retry_or_fail(&self, delivery: &Delivery, job: &TranscodeJob, error: String) -> Handled {
        if delivery.is_last_attempt() {
            return self.fail(delivery, job, domain::gave_up_reason(delivery.delivered, &error)).await;
        }
        Handled::Retry(error)
    }

    /// Publish `transcode.failed`, then park the job in the DLQ; if the event cannot be
    /// published the job comes back (a failure is never dropped unsaid).
    async fn fail(&self, delivery: &Delivery, job: &TranscodeJob, reason: String) -> Handled {
        let reason = domain::failure_reason(&reason);
        let event = domain::failed_event(job.asset_id, reason.clone(), delivery.delivered);
        match self.publish(event, &delivery.ctx).await {
            Ok(()) => Handled::Reject(reason),
            Err(err) => {
                tracing::warn!(error = %err, "could not publish the failure; the job will come back");
                if delivery.is_last_attempt() {
                    // A retry now would park the job without its failure event; handed back on
                    // its last delivery, JetStream gives up on it and `given_up` fails the asset.
                    Handled::Release
                } else {
                    Handled::Retry(format!("could not publish the failure: {err}"))
                }
            }
        }
    }

    /// Publish `envelope` on `EVT_MEDIA` with its (stable) id as `Nats-Msg-Id`, and wait until
    /// JetStream stored it.
    async fn publish<E: Event>(&self, envelope: EventEnvelope<E>, ctx: &CallContext) -> Result<(), String> {
        publish(&self.js, &envelope, Some(ctx)).await
    }

    /// The job in a fresh temp folder, reported to content as it advances; the folder is
    /// removed afterwards whatever happened.
    async fn work(
        &self,
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
        let result = tokio::select! {
            result = self.process(job, dir.path(), &progress, shutdown) => result,
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
        let downloaded =
            cancellable(shutdown, self.store.download(&job.source_key, &source)).await?.inspect_err(|err| {
                if let StoreError::Missing(key) = err {
                    tracing::warn!(key = %key, "source object not found");
                }
            })?;
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
            renditions: domain::renditions(&done.ladder),
            source_sha256: downloaded.sha256,
            segment_seconds: ffmpeg::SEGMENT_SECONDS,
        })
    }
}

/// What JetStream gave up on (no replica answered a job `max_deliver` times): the asset fails
/// ([`domain::given_up_event`]) before the job's copy goes to the DLQ.
pub fn given_up(js: jetstream::Context) -> coursebus_bus::dlq::GivenUpHook {
    Arc::new(move |payload, deliveries| {
        let js = js.clone();
        Box::pin(async move {
            let Some(event) = domain::given_up_event(&payload, deliveries) else {
                // Not a job: nothing to fail; the copy still goes to the DLQ.
                return Ok(());
            };
            publish(&js, &event, None).await?;
            tracing::warn!(asset_id = %event.data.asset_id, deliveries, "transcode given up: no replica finished it");
            Ok(())
        })
    })
}

/// Publish `envelope` on its subject with `Nats-Msg-Id` its id (and `ctx`'s trace headers when
/// given), and wait until JetStream stored it.
async fn publish<E: Event>(
    js: &jetstream::Context,
    envelope: &EventEnvelope<E>,
    ctx: Option<&CallContext>,
) -> Result<(), String> {
    let payload = serde_json::to_vec(envelope).map_err(|e| e.to_string())?;
    let mut message = PublishMessage::build().payload(payload.into());
    if let Some(ctx) = ctx {
        // Before the id: `headers` replaces the whole map.
        message = message.headers(ctx.to_headers());
    }
    let message = message.message_id(envelope.id.to_string());
    let ack =
        js.send_publish(E::SUBJECT, message).await.map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
    tracing::debug!(event_id = %envelope.id, subject = E::SUBJECT, duplicate = ack.duplicate, "result published");
    Ok(())
}

/// `future`, unless `cancel` fires first.
async fn cancellable<T>(cancel: &CancellationToken, future: impl Future<Output = T>) -> Result<T, JobError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(JobError::Cancelled),
        value = future => Ok(value),
    }
}

/// Report the percentage to content when it changed, at most once a second (best effort).
async fn report_progress(
    bus: &Bus,
    ctx: &CallContext,
    asset_id: Uuid,
    mut watcher: watch::Receiver<u8>,
) -> std::convert::Infallible {
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
