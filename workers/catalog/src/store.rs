//! The catalog's MongoDB store: one document per course holding the working copy, the published
//! snapshot, the course's pending events (its outbox) and the answers to the idempotency keys
//! that created it.
//!
//! Every write is a single-document operation, atomic in MongoDB without a multi-document
//! transaction: the course and its events commit together, and the relay (`lib.rs`) publishes
//! events and then pulls them from the document. (Multi-document transactions would work on a
//! MongoDB replica set, but the MongoDB-wire server used in tests and `xtask up` does not
//! isolate concurrent transactions, so the design does not rely on them.)

use coursebus_bus::CallContext;
use coursebus_contracts::catalog::{Course, CourseStatus, Level, PriceFilter};
use coursebus_contracts::{Event, EventEnvelope, headers};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, Database, IndexModel};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Store failures (the handlers log them and answer `internal`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("document mapping: {0}")]
    Mapping(String),
    #[error("duplicate key")]
    Duplicate,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Through JSON, so ids and timestamps are stored as the strings the API shows (queryable and
/// readable with any MongoDB tool).
fn to_doc<T: Serialize>(value: &T) -> Result<Document> {
    let json = serde_json::to_value(value).map_err(|e| StoreError::Mapping(e.to_string()))?;
    mongodb::bson::to_document(&json).map_err(|e| StoreError::Mapping(e.to_string()))
}

fn from_bson<T: DeserializeOwned>(value: Bson) -> Result<T> {
    serde_json::from_value(value.into_relaxed_extjson()).map_err(|e| StoreError::Mapping(e.to_string()))
}

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

fn is_duplicate(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e.write_errors.iter().flatten().any(|e| e.code == DUPLICATE_KEY),
        _ => false,
    }
}

/// A course as stored: what its instructor edits, and what learners see.
#[derive(Debug, Clone)]
pub struct CourseDoc {
    pub working: Course,
    pub published: Option<Course>,
    /// Events not yet relayed, oldest first (as loaded; a write appends its own).
    pub outbox: Vec<Pending>,
}

impl CourseDoc {
    pub fn new(working: Course) -> Self {
        Self { working, published: None, outbox: Vec::new() }
    }

    /// The stored document with `events` appended to the outbox (`_id` included).
    fn to_document(&self, events: Vec<Pending>) -> Result<Document> {
        let w = &self.working;
        let outbox = outbox_entries(self.outbox.iter().cloned().chain(events))?;
        Ok(doc! {
            "outbox_pending": !outbox.is_empty(),
            "outbox": outbox,
            "_id": w.id.to_string(),
            "slug": &w.slug,
            "instructor_id": w.instructor_id.to_string(),
            "status": status_str(w.status),
            "version": w.version as i64,
            "working": to_doc(w)?,
            "published": match &self.published { Some(p) => Bson::Document(to_doc(p)?), None => Bson::Null },
        })
    }

    fn from_document(mut d: Document) -> Result<Self> {
        let working = from_bson(d.remove("working").ok_or_else(|| StoreError::Mapping("no working copy".into()))?)?;
        let published = match d.remove("published") {
            None | Some(Bson::Null) => None,
            Some(p) => Some(from_bson(p)?),
        };
        let outbox = match d.get_array("outbox") {
            Ok(entries) => entries.iter().filter_map(|e| pending_from(e.as_document()?)).collect(),
            Err(_) => Vec::new(),
        };
        Ok(Self { working, published, outbox })
    }
}

fn status_str(status: CourseStatus) -> &'static str {
    match status {
        CourseStatus::Draft => "draft",
        CourseStatus::Published => "published",
        CourseStatus::Archived => "archived",
    }
}

fn level_str(level: Level) -> &'static str {
    match level {
        Level::Beginner => "beginner",
        Level::Intermediate => "intermediate",
        Level::Advanced => "advanced",
    }
}

/// The answer to a creating request, stored under its caller-scoped idempotency key.
#[derive(Debug, Clone)]
pub struct IdempotentAnswer {
    pub key: String,
    /// Hex SHA-256 of the request: the same key with another request is a conflict.
    pub fingerprint: String,
    /// The reply, as JSON.
    pub response: String,
}

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
}

/// Listing filters (already validated).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub tag: Option<String>,
    pub level: Option<Level>,
    pub language: Option<String>,
    pub price: Option<PriceFilter>,
    /// Only this instructor's courses, in every status (else: published ones only).
    pub instructor: Option<uuid::Uuid>,
    /// Ids sort by creation time (UUID v7); the cursor is the last id seen.
    pub after: Option<String>,
    pub limit: u32,
}

impl Store {
    pub async fn connect(uri: &str, db: &str) -> Result<Self> {
        let client = Client::with_uri_str(uri).await?;
        let db = client.database(db);
        let store = Self { db };
        store
            .courses()
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "slug": 1 })
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await?;
        store.courses().create_index(IndexModel::builder().keys(doc! { "instructor_id": 1 }).build()).await?;
        // No index on `idempotency.key`: the MongoDB-wire server used here answers nothing for a
        // query on an indexed path inside an array (a course has at most one answer, from its
        // creation, and the lookup is rare: only retries).
        store.courses().create_index(IndexModel::builder().keys(doc! { "outbox_pending": 1 }).build()).await?;
        Ok(store)
    }

    fn courses(&self) -> Collection<Document> {
        self.db.collection("courses")
    }

    pub async fn ping(&self) -> Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    pub async fn get(&self, id_or_slug: &str) -> Result<Option<CourseDoc>> {
        let filter = if uuid::Uuid::parse_str(id_or_slug).is_ok() {
            doc! { "_id": id_or_slug }
        } else {
            doc! { "slug": id_or_slug }
        };
        match self.courses().find_one(filter).await? {
            Some(d) => Ok(Some(CourseDoc::from_document(d)?)),
            None => Ok(None),
        }
    }

    /// Insert a new course with its events (and the answer to its idempotency key), atomically.
    /// A taken slug, or a concurrent request with the same key, fails with [`StoreError::Duplicate`].
    pub async fn insert(&self, course: &CourseDoc, events: Vec<Pending>, key: Option<&IdempotentAnswer>) -> Result<()> {
        let mut document = course.to_document(events)?;
        let answers: Vec<Bson> = key
            .map(|k| {
                Bson::Document(doc! {
                    "key": &k.key, "fingerprint": &k.fingerprint, "response": &k.response,
                    "created_at": time::OffsetDateTime::now_utc().unix_timestamp(),
                })
            })
            .into_iter()
            .collect();
        document.insert("idempotency", answers);
        match self.courses().insert_one(document).await {
            Ok(_) => Ok(()),
            Err(err) if is_duplicate(&err) => Err(StoreError::Duplicate),
            Err(err) => Err(err.into()),
        }
    }

    /// Replace a course if it is still at `expected_version`, its outbox (as loaded) followed by
    /// `events`; false when someone else wrote first.
    pub async fn replace(&self, course: &CourseDoc, expected_version: u64, events: Vec<Pending>) -> Result<bool> {
        let filter = doc! { "_id": course.working.id.to_string(), "version": expected_version as i64 };
        let mut set = course.to_document(events)?;
        set.remove("_id");
        match self.courses().update_one(filter, doc! { "$set": set }).await {
            Ok(r) => Ok(r.matched_count == 1),
            Err(err) if is_duplicate(&err) => Err(StoreError::Duplicate),
            Err(err) => Err(err.into()),
        }
    }

    /// The stored answer to an earlier request with this idempotency key, and its fingerprint.
    pub async fn idempotent_answer(&self, key: &str, not_before_unix: i64) -> Result<Option<(String, String)>> {
        let Some(found) = self.courses().find_one(doc! { "idempotency.key": key }).await? else {
            return Ok(None);
        };
        let answers = found.get_array("idempotency").map_err(|e| StoreError::Mapping(e.to_string()))?;
        Ok(answers.iter().filter_map(Bson::as_document).find_map(|a| {
            let created_at = match a.get("created_at") {
                Some(Bson::Int64(t)) => *t,
                Some(Bson::Int32(t)) => i64::from(*t),
                _ => return None,
            };
            let fresh = created_at >= not_before_unix;
            (a.get_str("key").ok()? == key && fresh)
                .then(|| Some((a.get_str("fingerprint").ok()?.to_owned(), a.get_str("response").ok()?.to_owned())))?
        }))
    }

    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<CourseDoc>> {
        let mut query = Document::new();
        match filter.instructor {
            Some(instructor) => {
                query.insert("instructor_id", instructor.to_string());
            }
            None => {
                query.insert("status", "published");
                if let Some(tag) = &filter.tag {
                    query.insert("published.tags", tag);
                }
                if let Some(level) = filter.level {
                    query.insert("published.level", level_str(level));
                }
                if let Some(language) = &filter.language {
                    query.insert("published.language", language);
                }
                match filter.price {
                    Some(PriceFilter::Free) => {
                        query.insert("published.price.amount_minor", 0i64);
                    }
                    Some(PriceFilter::Paid) => {
                        query.insert("published.price.amount_minor", doc! { "$gt": 0i64 });
                    }
                    None => {}
                }
            }
        }
        if let Some(after) = &filter.after {
            query.insert("_id", doc! { "$lt": after });
        }
        let cursor = self.courses().find(query).sort(doc! { "_id": -1 }).limit(i64::from(filter.limit)).await?;
        let docs: Vec<Document> = cursor.try_collect().await?;
        docs.into_iter().map(CourseDoc::from_document).collect()
    }

    /// Which of `ids` exist.
    pub async fn existing(&self, ids: &[uuid::Uuid]) -> Result<Vec<String>> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let cursor = self.courses().find(doc! { "_id": { "$in": &ids } }).projection(doc! { "_id": 1 }).await?;
        let docs: Vec<Document> = cursor.try_collect().await?;
        Ok(docs.iter().filter_map(|d| d.get_str("_id").ok().map(str::to_owned)).collect())
    }

    /// Courses with events waiting (at most `limit`): id, version, events in order.
    pub async fn pending(&self, limit: i64) -> Result<Vec<(String, i64, Vec<Pending>)>> {
        let cursor = self
            .courses()
            .find(doc! { "outbox_pending": true })
            .projection(doc! { "_id": 1, "version": 1, "outbox": 1 })
            .limit(limit)
            .await?;
        let docs: Vec<Document> = cursor.try_collect().await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| {
                let id = d.get_str("_id").ok()?.to_owned();
                let version = match d.get("version")? {
                    Bson::Int64(v) => *v,
                    Bson::Int32(v) => i64::from(*v),
                    _ => return None,
                };
                let events =
                    d.get_array("outbox").ok()?.iter().filter_map(|e| pending_from(e.as_document()?)).collect();
                Some((id, version, events))
            })
            .collect())
    }

    /// Empty a course's outbox after relaying it, unless the course was written since it was
    /// read (then the next sweep relays again; JetStream drops the repeats by `Nats-Msg-Id`).
    pub async fn mark_published(&self, course: &str, version: i64) -> Result<bool> {
        let cleared = self
            .courses()
            .update_one(
                doc! { "_id": course, "version": version },
                doc! { "$set": { "outbox": Vec::<Bson>::new(), "outbox_pending": false } },
            )
            .await?;
        Ok(cleared.matched_count == 1)
    }
}

fn outbox_entries(events: impl Iterator<Item = Pending>) -> Result<Vec<Bson>> {
    events
        .map(|e| {
            let headers: Document = e.headers.into_iter().map(|(k, v)| (k, Bson::String(v))).collect();
            let payload = String::from_utf8(e.payload).map_err(|err| StoreError::Mapping(err.to_string()))?;
            Ok(Bson::Document(doc! { "id": e.id, "subject": e.subject, "payload": payload, "headers": headers }))
        })
        .collect()
}

fn pending_from(d: &Document) -> Option<Pending> {
    Some(Pending {
        id: d.get_str("id").ok()?.to_owned(),
        subject: d.get_str("subject").ok()?.to_owned(),
        payload: d.get_str("payload").ok()?.as_bytes().to_vec(),
        headers: d
            .get_document("headers")
            .map(|h| h.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default(),
    })
}

/// An event for the outbox, with the caller's request id and trace.
pub fn pending<E: Event>(event: &EventEnvelope<E>, ctx: &CallContext) -> Result<Pending> {
    let payload = serde_json::to_vec(event).map_err(|e| StoreError::Mapping(e.to_string()))?;
    let mut headers = vec![(headers::REQUEST_ID.to_owned(), ctx.request_id.clone())];
    if let Some(tp) = &ctx.traceparent {
        headers.push((headers::TRACEPARENT.to_owned(), tp.clone()));
    }
    Ok(Pending { id: event.id.to_string(), subject: E::SUBJECT.to_owned(), payload, headers })
}
