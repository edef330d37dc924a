//! Idempotent JetStream provisioning: the code that owns a stream creates (or updates) it at
//! start-up, so a fresh server and an existing one converge to the same configuration.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// How long JetStream remembers a `Nats-Msg-Id` to drop duplicates. It bounds how late an outbox
/// relay may re-publish after a crash and still be deduplicated.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(30 * 60);

/// How long domain events are kept.
pub const EVENT_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The configuration of a domain event stream `EVT_<DOMAIN>`: file storage, limits retention with
/// a max age, a long duplicate window.
pub fn event_stream(name: &str, subjects: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: EVENT_MAX_AGE,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: replicas.max(1),
        allow_direct: true,
        ..Default::default()
    }
}

/// Create the stream or bring an existing one to `config`.
pub async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<stream::Stream, BusError> {
    let name = config.name.clone();
    js.create_or_update_stream(config).await.map_err(|e| BusError::JetStream(format!("stream {name}: {e}")))?;
    let stream = js.get_stream(&name).await.map_err(|e| BusError::JetStream(format!("stream {name}: {e}")))?;
    tracing::info!(stream = %name, "stream ready");
    Ok(stream)
}

/// How long an undelivered job is kept in its work queue.
pub const JOB_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The configuration of a job stream `JOB_<DOMAIN>`: work-queue retention (a message is gone
/// once a consumer acknowledged it), file storage, the same duplicate window as events so a job
/// published twice with one `Nats-Msg-Id` is stored once.
pub fn job_stream(name: &str, subjects: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        max_age: JOB_MAX_AGE,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: replicas.max(1),
        allow_direct: true,
        ..Default::default()
    }
}

/// Durable pull consumer `config` on `stream`, created or brought to `config`. An existing
/// consumer keeps where it delivers from (its deliver policy: replicas that raced to create it
/// agree on the first one's) and takes the rest of `config`. While the stream is missing (its
/// owner has not started yet) or the server refuses, retries every second; `None` once
/// `shutdown` is cancelled.
pub async fn durable(
    js: &jetstream::Context,
    stream: &str,
    config: &consumer::pull::Config,
    shutdown: &CancellationToken,
) -> Option<consumer::PullConsumer> {
    let name = config.durable_name.as_deref().unwrap_or("?");
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        let attempt = async {
            let stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
            let mut config = config.clone();
            if let Some(name) = &config.durable_name
                && let Ok(mut existing) = stream.get_consumer::<consumer::pull::Config>(name).await
                && let Ok(info) = existing.info().await
            {
                config.deliver_policy = info.config.deliver_policy;
            }
            stream.create_consumer(config).await.map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(consumer) => return Some(consumer),
            Err(err) => tracing::debug!(error = %err, stream, consumer = name, "cannot pull yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
