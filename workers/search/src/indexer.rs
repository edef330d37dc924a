//! Feeding the index from `EVT_CATALOG`.
//!
//! - `catalog.course.published` → index the published snapshot (replacing the earlier one);
//! - `catalog.course.archived` → remove the course;
//! - `catalog.course.changed` is the instructor's working copy, never public: not even fetched.
//!
//! Events are applied in small batches (what arrives within [`BATCH_WINDOW`], at most
//! [`MAX_BATCH`]), each committed and made searchable at once, so a course is searchable well
//! within a second of its event.
//!
//! A per-replica index (tantivy) is fed by [`replay`], an ordered (ack-less, ephemeral) consumer
//! of the replica's own. A shared index (OpenSearch) is fed by one durable consumer shared by the
//! replicas, on the platform's consumer engine ([`shared_consumer`]): its deliveries are handled
//! concurrently and gathered into batches by [`Batches`], and each is acknowledged once the batch
//! it went into is applied.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use coursebus_bus::consume::{Consumer, Delivery, Handled, RetryPolicy};
use coursebus_contracts::EventEnvelope;
use coursebus_contracts::catalog::{CourseArchived, CoursePublished};
use coursebus_contracts::subjects::{catalog as catalog_subj, search as subj};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::domain::CourseDoc;
use crate::engine::{Change, SearchEngine};

/// A batch closes this long after its first event.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// A batch closes when no further event arrived for this long.
const BATCH_GAP: Duration = Duration::from_millis(10);
pub const MAX_BATCH: usize = 500;
/// The wait before retrying after a failure (consumer lost, engine down).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The wait before a shared index gets a batch it could not apply again.
const SHARED_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How far the index got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The stream sequence of the last event applied.
    pub applied: u64,
    /// The index holds everything the stream held when this replica started (sticky).
    pub caught_up: bool,
}

/// The subjects the indexer reads.
const SUBJECTS: [&str; 2] = [catalog_subj::EVT_COURSE_PUBLISHED, catalog_subj::EVT_COURSE_ARCHIVED];

fn subjects() -> Vec<String> {
    SUBJECTS.iter().map(|s| (*s).to_owned()).collect()
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

/// The next batch of items: waits for one, then takes what follows closely. A stop comes with
/// what was gathered before it.
async fn next_batch<S, T, E>(items: &mut S, shutdown: &CancellationToken) -> (Vec<T>, Option<Stop>)
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut batch = Vec::new();
    let first = tokio::select! {
        // Stopping wins over what is waiting.
        biased;
        _ = shutdown.cancelled() => return (batch, Some(Stop::Shutdown)),
        next = items.next() => next,
    };
    match first {
        Some(Ok(item)) => batch.push(item),
        Some(Err(err)) => return (batch, Some(Stop::Failed(err.to_string()))),
        None => return (batch, Some(Stop::Failed("the consumer ended".into()))),
    }
    let closes = tokio::time::Instant::now() + BATCH_WINDOW;
    while batch.len() < MAX_BATCH {
        let wait = closes.saturating_duration_since(tokio::time::Instant::now()).min(BATCH_GAP);
        match tokio::time::timeout(wait, items.next()).await {
            Ok(Some(Ok(item))) => batch.push(item),
            Ok(Some(Err(err))) => return (batch, Some(Stop::Failed(err.to_string()))),
            Ok(None) => return (batch, Some(Stop::Failed("the consumer ended".into()))),
            Err(_) => break,
        }
    }
    (batch, None)
}

/// What event `seq` on `subject` changes, or `None` when nothing (an unreadable event is logged
/// and skipped: retrying cannot make it readable).
fn change_of(subject: &str, payload: &[u8], seq: u64) -> Option<Change> {
    match decode(subject, payload, seq) {
        Ok(change) => change,
        Err(err) => {
            tracing::error!(error = %err, seq, subject, "skipping an unreadable catalog event");
            None
        }
    }
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
        changes.extend(change_of(message.subject.as_str(), &message.payload, seq));
        last = last.max(seq);
        drained = pending == 0;
    }
    (changes, last, drained)
}

/// Each replica's own index: an ordered consumer replays the stream from the start (or from
/// after `resume_after`, where a persistent index stopped), then follows it. A lost consumer is
/// recreated after the last applied event. Returns on `shutdown` (dropping `progress`).
pub async fn replay<E: SearchEngine>(
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

/// The durable consumer of a shared index, handled by [`Batches::index`]: as many deliveries at
/// once as a batch holds, delivered again [`SHARED_RETRY_AFTER`] after a failed batch, as many
/// times as it takes (the index may be down for a while; nothing is parked).
pub fn shared_consumer() -> Consumer {
    let mut consumer = Consumer::events(catalog_subj::EVENT_STREAM, subj::SHARED_INDEXER_CONSUMER, &SUBJECTS)
        .in_flight(MAX_BATCH)
        .max_deliver(-1)
        .retry(RetryPolicy { first: SHARED_RETRY_AFTER, cap: SHARED_RETRY_AFTER })
        .deliver_policy(consumer::DeliverPolicy::All);
    consumer.config.description = Some("search index shared by every replica".into());
    consumer.config.max_ack_pending = MAX_BATCH as i64 * 2;
    consumer
}

/// A change waiting for its batch, and where to say how the batch went.
type Waiting = (Change, oneshot::Sender<Result<(), String>>);

/// Gathers the changes of the deliveries handled at once into batches for a shared index
/// (applied by the task [`batches`] returns).
#[derive(Debug, Clone)]
pub struct Batches {
    waiting: mpsc::Sender<Waiting>,
}

/// The batcher of a shared index and its task, which applies the batches until `shutdown`.
pub fn batches<E: SearchEngine>(
    engine: Arc<E>,
    shutdown: CancellationToken,
) -> (Batches, impl std::future::Future<Output = ()> + Send + 'static) {
    let (waiting, received) = mpsc::channel(MAX_BATCH);
    (Batches { waiting }, apply_batches(engine, received, shutdown))
}

impl Batches {
    /// One delivery: its change goes into the next batch, and it is done once that batch is
    /// applied (retried if it failed; handed back if the replica stops first).
    pub async fn index(&self, delivery: Delivery) -> Handled {
        let Some(change) = change_of(&delivery.subject, &delivery.payload, delivery.stream_sequence) else {
            return Handled::Done;
        };
        let (done, applied) = oneshot::channel();
        if self.waiting.send((change, done)).await.is_err() {
            return Handled::Release;
        }
        match applied.await {
            Ok(Ok(())) => Handled::Done,
            Ok(Err(reason)) => Handled::Retry(reason),
            Err(_) => Handled::Release,
        }
    }
}

/// Apply the waiting changes in batches, in stream order within each, until `shutdown`; changes
/// still waiting then are handed back (their senders are dropped).
async fn apply_batches<E: SearchEngine>(
    engine: Arc<E>,
    mut received: mpsc::Receiver<Waiting>,
    shutdown: CancellationToken,
) {
    let mut waiting = futures::stream::poll_fn(move |cx| received.poll_recv(cx)).map(Ok::<_, Infallible>);
    tracing::info!(consumer = subj::SHARED_INDEXER_CONSUMER, engine = engine.name(), "indexing catalog events");
    loop {
        let (mut batch, stop) = next_batch(&mut waiting, &shutdown).await;
        if !batch.is_empty() {
            batch.sort_by_key(|(change, _)| change.seq());
            let (changes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let last = changes.last().map_or(0, Change::seq);
            let outcome = engine.apply(changes, last).await.map_err(|err| {
                tracing::error!(error = %err, through_seq = last, "indexing failed; the batch will be redelivered");
                err.to_string()
            });
            for reply in replies {
                let _ = reply.send(outcome.clone());
            }
        }
        if stop.is_some() {
            return;
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

    /// A shared index that records what it is asked to apply, or fails.
    struct Recording {
        fail: bool,
        applied: std::sync::Mutex<Vec<(Vec<u64>, u64)>>,
    }

    impl SearchEngine for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }

        fn feed(&self) -> crate::engine::Feed {
            crate::engine::Feed::Shared
        }

        async fn prepare(&self) -> Result<(), crate::engine::EngineError> {
            Ok(())
        }

        async fn apply(&self, changes: Vec<Change>, through_seq: u64) -> Result<(), crate::engine::EngineError> {
            self.applied.lock().unwrap().push((changes.iter().map(Change::seq).collect(), through_seq));
            if self.fail { Err(crate::engine::EngineError::Unavailable("down".into())) } else { Ok(()) }
        }

        async fn search(
            &self,
            _query: crate::domain::SearchQuery,
        ) -> Result<crate::engine::Page, crate::engine::EngineError> {
            Err(crate::engine::EngineError::Unavailable("not in this test".into()))
        }
    }

    fn delivery(subject: &str, payload: Vec<u8>, seq: u64) -> Delivery {
        Delivery {
            subject: subject.into(),
            headers: None,
            ctx: coursebus_bus::CallContext::default(),
            payload: payload.into(),
            delivered: 1,
            max_deliver: -1,
            stream_sequence: seq,
            shutdown: CancellationToken::new(),
        }
    }

    async fn index_at_once(engine: Arc<Recording>, shutdown: CancellationToken) -> Vec<Handled> {
        let published = serde_json::to_vec(&CoursePublished { course: course() }.envelope(actor())).unwrap();
        let archived =
            serde_json::to_vec(&CourseArchived { course_id: course().id, slug: "rust".into() }.envelope(actor()))
                .unwrap();
        let (batches, apply) = batches(engine, shutdown.clone());
        let applier = tokio::spawn(apply);
        let handled = futures::future::join_all([
            batches.index(delivery(CourseArchived::SUBJECT, archived, 12)),
            batches.index(delivery(CoursePublished::SUBJECT, b"{not json".to_vec(), 11)),
            batches.index(delivery(CoursePublished::SUBJECT, published, 10)),
        ])
        .await;
        shutdown.cancel();
        applier.await.unwrap();
        handled
    }

    #[tokio::test]
    async fn deliveries_handled_at_once_are_applied_as_one_batch_in_stream_order() {
        let engine = Arc::new(Recording { fail: false, applied: Default::default() });
        let handled = index_at_once(engine.clone(), CancellationToken::new()).await;
        assert_eq!(handled, [Handled::Done, Handled::Done, Handled::Done], "an unreadable event is skipped");
        assert_eq!(*engine.applied.lock().unwrap(), [(vec![10, 12], 12)]);
    }

    #[tokio::test]
    async fn a_failed_batch_is_retried_and_a_stopping_replica_hands_back() {
        let engine = Arc::new(Recording { fail: true, applied: Default::default() });
        let handled = index_at_once(engine.clone(), CancellationToken::new()).await;
        assert!(matches!(&handled[0], Handled::Retry(reason) if reason.contains("down")), "{handled:?}");
        assert_eq!(handled[1], Handled::Done);
        assert!(matches!(&handled[2], Handled::Retry(_)), "{handled:?}");

        let stopped = CancellationToken::new();
        stopped.cancel();
        let handled = index_at_once(engine, stopped).await;
        assert_eq!(handled, [Handled::Release, Handled::Done, Handled::Release]);
    }
}
