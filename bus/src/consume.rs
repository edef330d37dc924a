//! Durable event consumers shared by a worker's replicas: pull, hand each message to the
//! worker, acknowledge after the worker committed, retry transient failures with growing delays,
//! and park what can never succeed in the DLQ (a message is never dropped without its copy).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{dlq, streams};

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done (or already done before: handlers are idempotent); acknowledge it.
    Done,
    /// Failed for a reason that may pass (a dependency down, a lock timeout): deliver it again
    /// later, up to the consumer's `max_deliver`, then park it in the DLQ.
    Retry(String),
    /// Can never succeed (malformed, unknown subject): park it in the DLQ at once.
    Reject(String),
}

/// A durable consumer of domain events shared by a worker's replicas: `filter_subjects` of the
/// stream, acknowledged explicitly within 30 s, delivered at most 12 times (the retry delays of
/// [`retry_delay`] add up to several minutes) before the last attempt parks it in the DLQ.
pub fn event_consumer(durable: &str, filter_subjects: &[&str]) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(durable.into()),
        filter_subjects: filter_subjects.iter().map(|s| (*s).to_owned()).collect(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: 12,
        ..Default::default()
    }
}

/// The delay before the `delivered`-th redelivery: 1 s, 2 s, 4 s, … capped at 60 s.
pub fn retry_delay(delivered: i64) -> Duration {
    let exp = u32::try_from(delivered.clamp(1, 7) - 1).unwrap_or(0);
    Duration::from_secs((1u64 << exp).min(60))
}

/// Consume durable pull consumer `config` on `stream` until `shutdown`: `handle(subject,
/// payload)` each message, one at a time and in order, then acknowledge it as [`Handled`] says.
/// `config.max_deliver` must be set (the last retry parks the message). Resubscribes after a
/// broken pull.
pub async fn run<F, Fut>(
    js: jetstream::Context,
    stream: &str,
    config: consumer::pull::Config,
    shutdown: CancellationToken,
    handle: F,
) where
    F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send + 'static,
{
    run_many(js, stream, config, shutdown, 1, handle).await;
}

/// [`run`] with up to `in_flight` messages handled at once (work queues whose jobs are
/// independent, e.g. grading): the next message is pulled as soon as a slot is free, and each is
/// acknowledged when its own handler is done. With 1, messages are handled in order. A replica
/// stopping drops its unfinished handlers: their messages come back to another replica.
pub async fn run_many<F, Fut>(
    js: jetstream::Context,
    stream: &str,
    config: consumer::pull::Config,
    shutdown: CancellationToken,
    in_flight: usize,
    handle: F,
) where
    F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send + 'static,
{
    let name: Arc<str> = config.durable_name.clone().unwrap_or_default().into();
    let max_deliver = config.max_deliver;
    let handle = Arc::new(handle);
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    // Dropped on return: aborts the handlers still running (their messages stay unacknowledged).
    let mut running = JoinSet::new();
    loop {
        let Some(mut messages) = streams::pull_durable(&js, stream, &config, &shutdown).await else {
            return;
        };
        loop {
            let slot = tokio::select! {
                _ = shutdown.cancelled() => return,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            while running.try_join_next().is_some() {}
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, consumer = %name, "pull failed; resubscribing");
                    break;
                }
                None => break,
            };
            let (js, name, handle) = (js.clone(), name.clone(), handle.clone());
            running.spawn(async move {
                let _slot = slot;
                let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
                let outcome = handle(message.subject.to_string(), message.payload.clone()).await;
                let ack = match outcome {
                    Handled::Done => AckKind::Ack,
                    Handled::Retry(reason) if max_deliver <= 0 || delivered < max_deliver => {
                        tracing::warn!(consumer = %name, subject = %message.subject, delivered, %reason, "will be retried");
                        AckKind::Nak(Some(retry_delay(delivered)))
                    }
                    Handled::Retry(reason) => {
                        let reason = format!("given up after {delivered} deliveries: {reason}");
                        tracing::error!(consumer = %name, subject = %message.subject, %reason, "parking in the DLQ");
                        dlq::give_up(&js, &message, &reason, Duration::from_secs(30)).await
                    }
                    Handled::Reject(reason) => {
                        tracing::error!(consumer = %name, subject = %message.subject, %reason, "rejected; parking in the DLQ");
                        dlq::give_up(&js, &message, &reason, Duration::from_secs(30)).await
                    }
                };
                if let Err(err) = message.ack_with(ack).await {
                    tracing::warn!(error = %err, consumer = %name, "could not acknowledge");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let delays: Vec<u64> = (1..=9).map(|d| retry_delay(d).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0).as_secs(), 1);
    }
}
