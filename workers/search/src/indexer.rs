//! Feeding the index from `EVT_CATALOG`.
//!
//! - `catalog.course.published` → index the published snapshot (replacing the earlier one);
//! - `catalog.course.archived` → remove the course;
//! - `catalog.course.changed` is the instructor's working copy, never public: not even fetched.
//!
//! Events are applied in small batches (what arrives within [`BATCH_WINDOW`], at most
//! [`MAX_BATCH`]), each committed and made searchable at once, so a course is searchable well
//! within a second of its event.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use coursebus_contracts::EventEnvelope;
use coursebus_contracts::catalog::{CourseArchived, CoursePublished};
use coursebus_contracts::subjects::{catalog as catalog_subj, search as subj};
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::CourseDoc;
use crate::engine::{Change, Feed, SearchEngine};

/// A batch closes this long after its first event.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// A batch closes when no further event arrived for this long.
const BATCH_GAP: Duration = Duration::from_millis(10);
pub const MAX_BATCH: usize = 500;
/// The wait before retrying after a failure (consumer lost, engine down).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How far the index got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The stream sequence of the last event applied.
    pub applied: u64,
    /// The index holds everything the stream held when this replica started (sticky).
    pub caught_up: bool,
}

/// The subjects the indexer reads.
fn subjects() -> Vec<String> {
    vec![catalog_subj::EVT_COURSE_PUBLISHED.to_owned(), catalog_subj::EVT_COURSE_ARCHIVED.to_owned()]
}

/// What an event means for the index (`None`: nothing).
pub fn decode(subject: &str, payload: &[u8], seq: u64) -> Result<Option<Change>, serde_json::Error> {
    Ok(match subject {
        catalog_subj::EVT_COURSE_PUBLISHED => {
            let event: EventEnvelope<CoursePublished> = serde_json::from_slice(payload)?;
            Some(Change::Upsert { seq, doc: Box::new(CourseDoc::from_course(&event.data.course)) })
        }
        catalog_subj::EVT_COURSE_ARCHIVED => {
            let event: EventEnvelope<CourseArchived> = serde_json::from_slice(payload)?;
            Some(Change::Delete { seq, id: event.data.course_id })
        }
        _ => None,
    })
}

/// Feed `engine` until shutdown, reporting progress.
pub async fn run<E: SearchEngine>(
    engine: Arc<E>,
    js: jetstream::Context,
    progress: watch::Sender<Progress>,
    shutdown: CancellationToken,
) {
    match engine.feed() {
        Feed::PerReplica { resume_after } => replay(engine, js, resume_after, progress, shutdown).await,
        Feed::Shared => {
            progress.send_modify(|p| p.caught_up = true);
            shared(engine, js, shutdown).await
        }
    }
}

/// Sleep unless shutdown comes first; `false` on shutdown.
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(RETRY_AFTER) => true,
    }
}

/// Why a batch ended the consumption.
enum Stop {
    Shutdown,
    Failed(String),
}

/// The next batch of messages: waits for one, then takes what follows closely. A stop comes
/// with what was gathered before it.
async fn next_batch<S, E>(messages: &mut S, shutdown: &CancellationToken) -> (Vec<jetstream::Message>, Option<Stop>)
where
    S: Stream<Item = Result<jetstream::Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut batch = Vec::new();
    let first = tokio::select! {
        _ = shutdown.cancelled() => return (batch, Some(Stop::Shutdown)),
        next = messages.next() => next,
    };
    match first {
        Some(Ok(message)) => batch.push(message),
        Some(Err(err)) => return (batch, Some(Stop::Failed(err.to_string()))),
        None => return (batch, Some(Stop::Failed("the consumer ended".into()))),
    }
    let closes = tokio::time::Instant::now() + BATCH_WINDOW;
    while batch.len() < MAX_BATCH {
        let wait = closes.saturating_duration_since(tokio::time::Instant::now()).min(BATCH_GAP);
        match tokio::time::timeout(wait, messages.next()).await {
            Ok(Some(Ok(message))) => batch.push(message),
            Ok(Some(Err(err))) => return (batch, Some(Stop::Failed(err.to_string()))),
            Ok(None) => return (batch, Some(Stop::Failed("the consumer ended".into()))),
            Err(_) => break,
        }
    }
    (batch, None)
}

/// The changes in `batch`, the last sequence it covers and whether nothing was pending after it.
fn changes_of(batch: &[jetstream::Message]) -> (Vec<Change>, u64, bool) {
    let mut changes = Vec::with_capacity(batch.len());
    let (mut last, mut drained) = (0, false);
    for message in batch {
        let (seq, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(err) => {
                tracing::error!(error = %err, subject = %message.subject, "a catalog event without JetStream metadata");
                continue;
            }
        };
        match decode(message.subject.as_str(), &message.payload, seq) {
            Ok(Some(change)) => changes.push(change),
            Ok(None) => {}
            // Retrying cannot make it readable: skip it, loudly.
            Err(err) => {
                tracing::error!(error = %err, seq, subject = %message.subject, "skipping an unreadable catalog event")
            }
        }
        last = last.max(seq);
        drained = pending == 0;
    }
    (changes, last, drained)
}

/// Each replica's own index: an ordered consumer replays the stream from the start (or from
/// where a persistent index stopped), then follows it. A lost consumer is recreated after the
/// last applied event.
async fn replay<E: SearchEngine>(
    engine: Arc<E>,
    js: jetstream::Context,
    resume_after: Option<u64>,
    progress: watch::Sender<Progress>,
    shutdown: CancellationToken,
) {
    let mut applied = resume_after.unwrap_or(0);
    progress.send_modify(|p| p.applied = applied);
    loop {
        let name = format!("{}_{}", subj::INDEXER_CONSUMER_PREFIX, uuid::Uuid::new_v4().simple());
        let deliver_policy = match applied {
            0 => consumer::DeliverPolicy::All,
            n => consumer::DeliverPolicy::ByStartSequence { start_sequence: n + 1 },
        };
        let config = consumer::pull::OrderedConfig {
            name: Some(name.clone()),
            description: Some("search index of this replica".into()),
            filter_subjects: subjects(),
            deliver_policy,
            ..Default::default()
        };
        let created = async {
            let stream = js.get_stream(catalog_subj::EVENT_STREAM).await.map_err(|e| e.to_string())?;
            stream.create_consumer(config).await.map_err(|e| e.to_string())
        };
        let consumer = match created.await {
            Ok(consumer) => consumer,
            Err(err) => {
                tracing::warn!(error = %err, stream = catalog_subj::EVENT_STREAM, "could not create the index consumer; retrying");
                if !pause(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        if consumer.cached_info().num_pending == 0 {
            progress.send_modify(|p| p.caught_up = true);
        }
        tracing::info!(consumer = %name, after = applied, engine = engine.name(), "indexing catalog events");
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the index consumer; retrying");
                if !pause(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let (batch, stop) = next_batch(&mut messages, &shutdown).await;
            if !batch.is_empty() {
                let (changes, last, drained) = changes_of(&batch);
                let count = changes.len();
                loop {
                    match engine.apply(changes.clone(), last).await {
                        Ok(()) => break,
                        Err(err) => {
                            tracing::error!(error = %err, through_seq = last, "indexing failed; retrying");
                            if !pause(&shutdown).await {
                                return;
                            }
                        }
                    }
                }
                applied = applied.max(last);
                tracing::debug!(changes = count, through_seq = last, drained, "index updated");
                progress.send_modify(|p| {
                    p.applied = applied;
                    if drained && !p.caught_up {
                        p.caught_up = true;
                        tracing::info!(through_seq = applied, "index caught up with the catalog");
                    }
                });
            }
            match stop {
                None => continue,
                Some(Stop::Shutdown) => return,
                Some(Stop::Failed(err)) => {
                    tracing::warn!(error = %err, after = applied, "index consumer failed; recreating it");
                    if !pause(&shutdown).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// A shared (external) index: replicas share one durable consumer and acknowledge an event once
/// the engine applied it; a failed batch is redelivered later.
async fn shared<E: SearchEngine>(engine: Arc<E>, js: jetstream::Context, shutdown: CancellationToken) {
    loop {
        let config = consumer::pull::Config {
            durable_name: Some(subj::SHARED_INDEXER_CONSUMER.to_owned()),
            description: Some("search index shared by every replica".into()),
            filter_subjects: subjects(),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: MAX_BATCH as i64 * 2,
            ..Default::default()
        };
        let messages = async {
            let stream = js.get_stream(catalog_subj::EVENT_STREAM).await.map_err(|e| e.to_string())?;
            let consumer = stream
                .get_or_create_consumer(subj::SHARED_INDEXER_CONSUMER, config)
                .await
                .map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        };
        let mut messages = match messages.await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, consumer = subj::SHARED_INDEXER_CONSUMER, "could not read the shared index consumer; retrying");
                if !pause(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(consumer = subj::SHARED_INDEXER_CONSUMER, engine = engine.name(), "indexing catalog events");
        loop {
            let (batch, stop) = next_batch(&mut messages, &shutdown).await;
            if !batch.is_empty() {
                let (changes, last, _) = changes_of(&batch);
                let ack = match engine.apply(changes, last).await {
                    Ok(()) => AckKind::Ack,
                    Err(err) => {
                        tracing::error!(error = %err, through_seq = last, "indexing failed; the batch will be redelivered");
                        AckKind::Nak(Some(RETRY_AFTER * 5))
                    }
                };
                for message in &batch {
                    if let Err(err) = message.ack_with(ack).await {
                        tracing::warn!(error = %err, "could not acknowledge a catalog event");
                    }
                }
            }
            match stop {
                None => continue,
                Some(Stop::Shutdown) => return,
                Some(Stop::Failed(err)) => {
                    tracing::warn!(error = %err, "shared index consumer failed; reopening it");
                    if !pause(&shutdown).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coursebus_contracts::Event as _;
    use coursebus_contracts::catalog::{Course, CourseChanged};

    fn course() -> Course {
        serde_json::from_value(serde_json::json!({
            "id": "0190f7c4-1111-7000-8000-000000000001", "slug": "rust", "instructor_id": "0190f7c4-1111-7000-8000-000000000002",
            "status": "published", "version": 3, "published_version": 3, "title": "Rust", "summary": "s", "description": "d",
            "language": "en", "level": "beginner", "tags": ["rust"], "price": {"amount_minor": 0, "currency": "EUR"},
            "cover_image_id": null, "prerequisites": [],
            "modules": [{"id": "0190f7c4-1111-7000-8000-000000000003", "title": "Basics", "release_after_days": 0, "lessons": [
                {"id": "0190f7c4-1111-7000-8000-000000000004", "title": "Ownership", "kind": "video", "required": true,
                 "duration_secs": null, "asset_id": null, "body": null}]}],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z", "published_at": "2026-01-02T00:00:00Z"
        }))
        .unwrap()
    }

    fn actor() -> coursebus_contracts::Actor {
        coursebus_contracts::Actor::Service { name: "test".into() }
    }

    #[test]
    fn published_upserts_archived_deletes_changed_is_ignored() {
        let published = serde_json::to_vec(&CoursePublished { course: course() }.envelope(actor())).unwrap();
        let Some(Change::Upsert { seq: 7, doc }) = decode(CoursePublished::SUBJECT, &published, 7).unwrap() else {
            panic!("a published course is upserted");
        };
        assert_eq!(doc.lessons, vec!["Basics", "Ownership"]);
        assert_eq!(doc.lesson_count, 1);

        let archived =
            serde_json::to_vec(&CourseArchived { course_id: course().id, slug: "rust".into() }.envelope(actor()))
                .unwrap();
        assert_eq!(
            decode(CourseArchived::SUBJECT, &archived, 8).unwrap(),
            Some(Change::Delete { seq: 8, id: course().id })
        );

        let changed = serde_json::to_vec(&CourseChanged { course: course() }.envelope(actor())).unwrap();
        assert_eq!(decode(CourseChanged::SUBJECT, &changed, 9).unwrap(), None);
        assert!(decode(CoursePublished::SUBJECT, b"{}", 10).is_err());
    }
}
