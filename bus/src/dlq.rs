//! Dead letters: what a consumer gives up on is copied to the `DLQ` stream
//! (`cb.dlq.<stream>.<consumer>`, original headers and payload, plus where it came from, how often
//! it was tried and why it was given up), where an operator inspects it (`nats stream view DLQ`)
//! and can replay it.
//!
//! Two ways in:
//! - [`park`]: a handler that decides to give up (a malformed job, the last attempt failed)
//!   copies the message itself, before terminating or acknowledging it;
//! - [`capture`]: when JetStream itself gives up (`max_deliver` exhausted without an answer,
//!   e.g. the replica crashed every time), its advisory lands in the `DLQ` stream; a durable
//!   consumer of the job's owner copies the original by stream sequence and deletes it from the
//!   work queue, where it would otherwise stay forever.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, message::PublishMessage, stream};
use coursebus_contracts::subjects::dlq;
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// How long dead letters are kept.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The `DLQ` stream: copies and max-deliveries advisories.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: dlq::STREAM.to_owned(),
        subjects: vec![dlq::COPIES.to_owned(), dlq::MAX_DELIVERIES.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: MAX_AGE,
        duplicate_window: crate::streams::DUPLICATE_WINDOW,
        num_replicas: replicas.max(1),
        allow_direct: true,
        ..Default::default()
    }
}

fn js_err(e: impl std::fmt::Display) -> BusError {
    BusError::JetStream(e.to_string())
}

/// One message to copy.
struct Letter<'a> {
    stream: &'a str,
    consumer: &'a str,
    sequence: u64,
    deliveries: i64,
    subject: &'a str,
    headers: Option<&'a HeaderMap>,
    payload: bytes::Bytes,
    reason: &'a str,
}

async fn copy(js: &jetstream::Context, letter: Letter<'_>) -> Result<(), BusError> {
    let mut headers = letter.headers.cloned().unwrap_or_default();
    headers.insert(dlq::HEADER_SUBJECT, letter.subject);
    headers.insert(dlq::HEADER_STREAM, letter.stream);
    headers.insert(dlq::HEADER_SEQUENCE, letter.sequence.to_string().as_str());
    headers.insert(dlq::HEADER_DELIVERIES, letter.deliveries.to_string().as_str());
    // Header values are one line.
    let reason: String = letter.reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect();
    headers.insert(dlq::HEADER_REASON, reason.as_str());
    // `message_id` replaces the original's own id: a second copy of the same message is then
    // a duplicate.
    let message = PublishMessage::build()
        .headers(headers)
        .payload(letter.payload)
        .message_id(format!("dlq:{}:{}", letter.stream, letter.sequence));
    js.send_publish(dlq::copy(letter.stream, letter.consumer), message).await.map_err(js_err)?.await.map_err(js_err)?;
    tracing::warn!(stream = letter.stream, consumer = letter.consumer, sequence = letter.sequence, deliveries = letter.deliveries, reason = %reason, "message parked in the DLQ");
    Ok(())
}

/// Copy `message` to the DLQ because of `reason`; call it before terminating or acknowledging.
pub async fn park(js: &jetstream::Context, message: &jetstream::Message, reason: &str) -> Result<(), BusError> {
    let info = message.info().map_err(js_err)?;
    copy(
        js,
        Letter {
            stream: info.stream,
            consumer: info.consumer,
            sequence: info.stream_sequence,
            deliveries: info.delivered,
            subject: message.subject.as_str(),
            headers: message.headers.as_ref(),
            payload: message.payload.clone(),
            reason,
        },
    )
    .await
}

/// Give up on `message`: how to acknowledge it once [`park`] was tried — terminate it when the
/// copy is in the DLQ, else negatively acknowledge it so it comes back after `retry` (a message
/// is never dropped without its copy).
pub async fn give_up(js: &jetstream::Context, message: &jetstream::Message, reason: &str, retry: Duration) -> AckKind {
    match park(js, message, reason).await {
        Ok(()) => AckKind::Term,
        Err(err) => {
            tracing::warn!(error = %err, subject = %message.subject, "could not park a message in the DLQ; it will come back");
            AckKind::Nak(Some(retry))
        }
    }
}

/// The fields of a max-deliveries advisory this module uses.
#[derive(Debug, serde::Deserialize)]
struct Advisory {
    stream_seq: u64,
    deliveries: i64,
}

/// Copy every message of `stream` that exhausted `consumer`'s deliveries to the DLQ and delete it
/// from `stream` (a work queue). Runs until `shutdown`; the durable consumer `<consumer>_dlq`
/// on `DLQ` is shared by the owner's replicas. `on_given_up`, when given, hears of each original
/// first (see [`GivenUpHook`]).
pub async fn capture(
    js: jetstream::Context,
    stream: &'static str,
    consumer: &'static str,
    on_given_up: Option<GivenUpHook>,
    shutdown: CancellationToken,
) {
    let durable = format!("{consumer}_dlq");
    let subject = dlq::max_deliveries(stream, consumer);
    let mut spec = crate::consume::Consumer::events(dlq::STREAM, &durable, &[subject.as_str()])
        .retry(crate::consume::RetryPolicy { first: Duration::from_secs(5), cap: Duration::from_secs(5) });
    // Tried until it works: an advisory is the only trace of the message it names.
    spec.config.max_deliver = -1;
    let on_given_up = std::sync::Arc::new(on_given_up);
    let handler_js = js.clone();
    crate::consume::consume(js, spec, shutdown, move |advisory| {
        let (js, on_given_up) = (handler_js.clone(), on_given_up.clone());
        async move {
            match handle_advisory(&js, stream, consumer, on_given_up.as_ref().as_ref(), &advisory.payload).await {
                Ok(()) => crate::consume::Handled::Done,
                Err(err) => {
                    crate::consume::Handled::Retry(format!("max-deliveries advisory of {stream}/{consumer}: {err}"))
                }
            }
        }
    })
    .await;
}

/// Told of a message JetStream gave up on (its payload and how often it was delivered) before
/// the message is parked: its owner can record the failure in its own terms (a job that killed
/// its worker every time has no other way to say so). It must be idempotent: an error (or a
/// crash) makes the advisory come back and the hook run again.
pub type GivenUpHook =
    std::sync::Arc<dyn Fn(bytes::Bytes, i64) -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

async fn handle_advisory(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    on_given_up: Option<&GivenUpHook>,
    advisory: &[u8],
) -> Result<(), BusError> {
    let Ok(parsed) = serde_json::from_slice::<Advisory>(advisory) else {
        tracing::error!(stream, consumer, "malformed max-deliveries advisory skipped");
        return Ok(());
    };
    let source = js.get_stream(stream).await.map_err(js_err)?;
    let original = match source.get_raw_message(parsed.stream_seq).await {
        Ok(original) => original,
        Err(err) if err.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            // Handled meanwhile (or copied and deleted by an earlier attempt).
            return Ok(());
        }
        Err(err) => return Err(js_err(err)),
    };
    if let Some(hook) = on_given_up {
        hook(original.payload.clone(), parsed.deliveries)
            .await
            .map_err(|err| BusError::JetStream(format!("the given-up hook failed: {err}")))?;
    }
    let reason = format!("no answer after {} deliveries", parsed.deliveries);
    copy(
        js,
        Letter {
            stream,
            consumer,
            sequence: parsed.stream_seq,
            deliveries: parsed.deliveries,
            subject: original.subject.as_str(),
            headers: Some(&original.headers),
            payload: original.payload,
            reason: &reason,
        },
    )
    .await?;
    source.delete_message(parsed.stream_seq).await.map_err(js_err)?;
    Ok(())
}
