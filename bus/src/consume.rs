//! The one consumer engine of the platform: every durable event consumer and every work-queue
//! consumer (grading, transcoding, notification delivery) runs on [`run`].
//!
//! - It pulls no more messages than it has free slots (`in_flight`), so no message waits out its
//!   `ack_wait` in a buffer while another replica is idle.
//! - Each message is handled inside a span `consume` with the stream, consumer, stream sequence,
//!   subject and delivery count, and the trace of the publisher (`traceparent` header, which the
//!   outbox copies from the request that caused the event): the handler's logs carry the
//!   request's `trace_id`, and [`Delivery::ctx`] continues the trace in what it calls or emits.
//! - The handler answers with one [`Handled`]; the engine acknowledges, retries with the
//!   consumer's [`RetryPolicy`] (capped growing delays), hands the message back, or parks it in
//!   the DLQ with the reason (on the last allowed delivery a retry becomes a give-up, so nothing
//!   is dropped without its copy).
//! - While a handler runs longer than a third of `ack_wait`, the engine tells JetStream it is
//!   still working (`+WPI`), so a long job (an encode) is not handed to a second replica.
//! - On shutdown it stops pulling and waits for the handlers in flight; a long handler watches
//!   [`Delivery::shutdown`] and answers [`Handled::Release`] to hand its message back at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::{CallContext, dlq};

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done (or already done before: handlers are idempotent); acknowledge it.
    Done,
    /// Failed for a reason that may pass (a dependency down, a lock timeout): deliver it again
    /// after the consumer's [`RetryPolicy`] delay, up to its `max_deliver`, then park it in the
    /// DLQ.
    Retry(String),
    /// As [`Handled::Retry`], after this delay (a provider's `Retry-After`, a quiet period).
    RetryAfter(Duration, String),
    /// Not handled, through no fault of the message (the replica is stopping): hand it back at
    /// once for another replica.
    Release,
    /// Can never succeed (malformed, unknown subject, refused for good): park it in the DLQ at
    /// once with this reason.
    Reject(String),
}

/// Capped growing delays between deliveries: `first`, then doubled at each delivery, at most
/// `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// 1 s, 2 s, 4 s, … capped at 60 s.
    fn default() -> Self {
        Self { first: Duration::from_secs(1), cap: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// The delay before the redelivery that follows the `delivered`-th delivery.
    pub fn delay(&self, delivered: i64) -> Duration {
        let doublings = u32::try_from(delivered.clamp(1, 32) - 1).unwrap_or(0);
        self.first.saturating_mul(1u32 << doublings.min(31)).min(self.cap.max(self.first))
    }
}

/// One message as a handler sees it.
#[derive(Debug)]
pub struct Delivery {
    pub subject: String,
    pub headers: Option<HeaderMap>,
    /// The publisher's context: its trace continues here (a child span per call made with it).
    /// A user's token and idempotency key never travel with events; they are cleared.
    pub ctx: CallContext,
    pub payload: Bytes,
    /// 1 for the first delivery.
    pub delivered: i64,
    /// The consumer's `max_deliver` (0 or less: unlimited).
    pub max_deliver: i64,
    /// The message's sequence in its stream.
    pub stream_sequence: u64,
    /// Cancelled when the replica stops: a long handler gives up and answers
    /// [`Handled::Release`].
    pub shutdown: CancellationToken,
}

impl Delivery {
    /// This is the last delivery JetStream will make: a retry now parks the message.
    pub fn is_last_attempt(&self) -> bool {
        self.max_deliver > 0 && self.delivered >= self.max_deliver
    }

    /// The payload as JSON, or a [`Handled::Reject`] that names what is malformed.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Handled> {
        serde_json::from_slice(&self.payload)
            .map_err(|err| Handled::Reject(format!("malformed message on {}: {err}", self.subject)))
    }
}

/// A consumer to run: where it reads, how it is configured, how many messages at once.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub stream: String,
    pub config: consumer::pull::Config,
    /// Messages handled at once by one replica; with 1 they are handled in stream order.
    pub in_flight: usize,
    pub retry: RetryPolicy,
    /// How long one pull waits for messages before asking again.
    pub pull_expires: Duration,
}

/// How many times a message is delivered before it is parked, unless a consumer says otherwise.
pub const MAX_DELIVER: i64 = 12;

impl Consumer {
    /// A durable consumer of domain events shared by a worker's replicas: `filter_subjects` of
    /// `stream`, acknowledged explicitly within 30 s, delivered at most [`MAX_DELIVER`] times
    /// (the default retry delays add up to several minutes), one message at a time in order.
    pub fn events(stream: &str, durable: &str, filter_subjects: &[&str]) -> Self {
        Self {
            stream: stream.to_owned(),
            config: consumer::pull::Config {
                durable_name: Some(durable.into()),
                filter_subjects: filter_subjects.iter().map(|s| (*s).to_owned()).collect(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: MAX_DELIVER,
                ..Default::default()
            },
            in_flight: 1,
            retry: RetryPolicy::default(),
            pull_expires: Duration::from_secs(5),
        }
    }

    /// A work-queue consumer (`JOB_*` streams) shared by a worker's replicas: the same defaults
    /// as [`Consumer::events`].
    pub fn jobs(stream: &str, durable: &str, filter_subjects: &[&str]) -> Self {
        Self::events(stream, durable, filter_subjects)
    }

    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = n.max(1);
        self
    }

    pub fn max_deliver(mut self, n: i64) -> Self {
        self.config.max_deliver = n;
        self
    }

    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.config.ack_wait = wait;
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Where a consumer created for the first time starts (an existing one keeps its place).
    pub fn deliver_policy(mut self, policy: consumer::DeliverPolicy) -> Self {
        self.config.deliver_policy = policy;
        self
    }

    pub fn name(&self) -> &str {
        self.config.durable_name.as_deref().unwrap_or("?")
    }
}

/// Run `spec` until `shutdown`: pull, hand each message to `handle`, settle it as the handler
/// says. Waits (retrying every second) while the stream does not exist yet; re-creates the pull
/// after a broken connection. Returns after the handlers in flight finished.
pub async fn consume<F, Fut>(js: jetstream::Context, spec: Consumer, shutdown: CancellationToken, handle: F)
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send + 'static,
{
    let spec = Arc::new(spec);
    let name: Arc<str> = spec.name().into();
    let handle = Arc::new(handle);
    let slots = Arc::new(Semaphore::new(spec.in_flight.max(1)));
    let running = TaskTracker::new();
    'consumer: while let Some(consumer) = crate::streams::durable(&js, &spec.stream, &spec.config, &shutdown).await {
        tracing::info!(consumer = %name, stream = %spec.stream, "consumer ready");
        loop {
            // Wait for a free slot, then take every free slot: pull at most that many.
            let first = tokio::select! {
                _ = shutdown.cancelled() => break 'consumer,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break 'consumer,
                },
            };
            let mut permits = vec![first];
            while let Ok(more) = slots.clone().try_acquire_owned() {
                permits.push(more);
            }
            let batch = consumer.batch().max_messages(permits.len()).expires(spec.pull_expires).messages().await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(error = %err, consumer = %name, "cannot pull; retrying");
                    if !pause(&shutdown).await {
                        break 'consumer;
                    }
                    continue 'consumer;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break 'consumer,
                    next = batch.next() => next,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, consumer = %name, "pull failed; retrying");
                        if !pause(&shutdown).await {
                            break 'consumer;
                        }
                        continue 'consumer;
                    }
                    // The pull expired or delivered all it asked for.
                    None => break,
                };
                let Some(permit) = permits.pop() else { break };
                let (js, spec, name, handle, shutdown) =
                    (js.clone(), spec.clone(), name.clone(), handle.clone(), shutdown.clone());
                if spec.in_flight <= 1 {
                    settle(&js, &spec, &name, message, handle.as_ref(), shutdown).await;
                    drop(permit);
                } else {
                    running.spawn(async move {
                        settle(&js, &spec, &name, message, handle.as_ref(), shutdown).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    running.close();
    running.wait().await;
}

/// One second, unless `shutdown` fires first (then `false`).
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_secs(1)) => true,
    }
}

async fn settle<F, Fut>(
    js: &jetstream::Context,
    spec: &Consumer,
    name: &str,
    message: jetstream::Message,
    handle: &F,
    shutdown: CancellationToken,
) where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send + 'static,
{
    let (delivered, stream_sequence) = message.info().map(|i| (i.delivered, i.stream_sequence)).unwrap_or((1, 0));
    let mut ctx = CallContext::from_headers(message.headers.as_ref());
    ctx.authorization = None;
    ctx.idempotency_key = None;
    let span = tracing::info_span!(
        "consume",
        stream = %spec.stream,
        consumer = %name,
        seq = stream_sequence,
        subject = %message.subject,
        delivered,
        request_id = %ctx.request_id,
        trace_id = ctx.trace_id().unwrap_or_default(),
    );
    async {
        let delivery = Delivery {
            subject: message.subject.to_string(),
            headers: message.headers.clone(),
            ctx,
            payload: message.payload.clone(),
            delivered,
            max_deliver: spec.config.max_deliver,
            stream_sequence,
            shutdown,
        };
        let last = delivery.is_last_attempt();
        let started = std::time::Instant::now();
        // The handler runs in a task of its own (a panic is an outcome, not a dead consumer), inside
        // this span: its logs carry the stream, sequence and trace id.
        let work = tokio::spawn(handle(delivery).instrument(tracing::Span::current()));
        let outcome = with_heartbeat(&message, spec.config.ack_wait, work).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let ack = match outcome {
            Ok(Handled::Done) => {
                tracing::debug!(elapsed_ms, "handled");
                AckKind::Ack
            }
            Ok(Handled::Release) => {
                tracing::info!(elapsed_ms, "handed back");
                AckKind::Nak(None)
            }
            Ok(Handled::Retry(reason)) if !last => {
                let delay = spec.retry.delay(delivered);
                tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "will be retried");
                AckKind::Nak(Some(delay))
            }
            Ok(Handled::RetryAfter(delay, reason)) if !last => {
                tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "will be retried");
                AckKind::Nak(Some(delay))
            }
            Ok(Handled::Retry(reason) | Handled::RetryAfter(_, reason)) => {
                let reason = format!("given up after {delivered} deliveries: {reason}");
                tracing::error!(%reason, "parking in the DLQ");
                dlq::give_up(js, &message, &reason, spec.retry.delay(delivered)).await
            }
            Ok(Handled::Reject(reason)) => {
                tracing::error!(%reason, "rejected; parking in the DLQ");
                dlq::give_up(js, &message, &reason, spec.retry.delay(delivered)).await
            }
            Err(panic) => {
                // Like a crash of the replica, but the replica lives on: try again later.
                tracing::error!(error = %panic, "handler panicked; will be retried");
                AckKind::Nak(Some(spec.retry.delay(delivered)))
            }
        };
        if let Err(err) = message.ack_with(ack).await {
            tracing::warn!(error = %err, "could not acknowledge");
        }
    }
    .instrument(span)
    .await;
}

/// Await `work`, telling JetStream every third of `ack_wait` that the message is still being
/// worked on.
async fn with_heartbeat<T>(
    message: &jetstream::Message,
    ack_wait: Duration,
    work: tokio::task::JoinHandle<T>,
) -> Result<T, tokio::task::JoinError> {
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    let mut work = std::pin::pin!(work);
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = beat.tick() => {
                if let Err(err) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %err, "in-progress ack failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..=9).map(|d| policy.delay(d).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(policy.delay(0).as_secs(), 1);
        assert_eq!(policy.delay(i64::MAX), Duration::from_secs(60));
        let flat = RetryPolicy { first: Duration::from_millis(50), cap: Duration::from_millis(50) };
        assert_eq!(flat.delay(5), Duration::from_millis(50));
    }

    #[test]
    fn the_last_delivery_is_known() {
        let delivery = |delivered, max_deliver| Delivery {
            subject: "s".into(),
            headers: None,
            ctx: CallContext::default(),
            payload: Bytes::from_static(b"{}"),
            delivered,
            max_deliver,
            stream_sequence: 1,
            shutdown: CancellationToken::new(),
        };
        assert!(!delivery(1, 3).is_last_attempt());
        assert!(delivery(3, 3).is_last_attempt());
        assert!(!delivery(100, 0).is_last_attempt(), "no limit");
        assert!(matches!(delivery(1, 3).json::<Vec<u8>>(), Err(Handled::Reject(_))));
    }
}
