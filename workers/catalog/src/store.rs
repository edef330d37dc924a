//! The catalog's MongoDB store: one document per course (working copy + published snapshot)
//! and a transactional outbox collection relayed to JetStream.

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
}

impl CourseDoc {
    fn to_document(&self) -> Result<Document> {
        let w = &self.working;
        Ok(doc! {
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
        Ok(Self { working, published })
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
    client: Client,
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
        let store = Self { client, db };
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
        store.outbox().create_index(IndexModel::builder().keys(doc! { "published": 1, "seq": 1 }).build()).await?;
        Ok(store)
    }

    fn courses(&self) -> Collection<Document> {
        self.db.collection("courses")
    }

    fn outbox(&self) -> Collection<Document> {
        self.db.collection("outbox")
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

    /// Insert a new course with its events, atomically.
    pub async fn insert(&self, course: &CourseDoc, events: Vec<Pending>) -> Result<()> {
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let inserted = self.courses().insert_one(course.to_document()?).session(&mut session).await;
        if let Err(err) = inserted {
            let _ = session.abort_transaction().await;
            return Err(if is_duplicate(&err) { StoreError::Duplicate } else { err.into() });
        }
        self.enqueue(&mut session, events).await?;
        session.commit_transaction().await?;
        Ok(())
    }

    /// Replace a course if it is still at `expected_version`; false when someone else wrote first.
    pub async fn replace(&self, course: &CourseDoc, expected_version: u64, events: Vec<Pending>) -> Result<bool> {
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let filter = doc! { "_id": course.working.id.to_string(), "version": expected_version as i64 };
        let replaced = match self.courses().replace_one(filter, course.to_document()?).session(&mut session).await {
            Ok(r) => r,
            Err(err) => {
                let _ = session.abort_transaction().await;
                return Err(if is_duplicate(&err) { StoreError::Duplicate } else { err.into() });
            }
        };
        if replaced.matched_count == 0 {
            let _ = session.abort_transaction().await;
            return Ok(false);
        }
        self.enqueue(&mut session, events).await?;
        session.commit_transaction().await?;
        Ok(true)
    }

    async fn enqueue(&self, session: &mut mongodb::ClientSession, events: Vec<Pending>) -> Result<()> {
        let now = time::OffsetDateTime::now_utc();
        for (i, e) in events.into_iter().enumerate() {
            let headers: Document = e.headers.into_iter().map(|(k, v)| (k, Bson::String(v))).collect();
            let seq = now.unix_timestamp_nanos() as i64 + i as i64;
            let payload = String::from_utf8(e.payload).map_err(|err| StoreError::Mapping(err.to_string()))?;
            self.outbox()
                .insert_one(doc! { "_id": e.id, "subject": e.subject, "payload": payload, "headers": headers, "seq": seq, "published": false })
                .session(&mut *session)
                .await?;
        }
        Ok(())
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

    pub async fn pending(&self, limit: i64) -> Result<Vec<Pending>> {
        let cursor = self.outbox().find(doc! { "published": false }).sort(doc! { "seq": 1 }).limit(limit).await?;
        let docs: Vec<Document> = cursor.try_collect().await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| {
                Some(Pending {
                    id: d.get_str("_id").ok()?.to_owned(),
                    subject: d.get_str("subject").ok()?.to_owned(),
                    payload: d.get_str("payload").ok()?.as_bytes().to_vec(),
                    headers: d
                        .get_document("headers")
                        .map(|h| h.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    pub async fn mark_published(&self, ids: &[String]) -> Result<()> {
        self.outbox().update_many(doc! { "_id": { "$in": ids } }, doc! { "$set": { "published": true } }).await?;
        Ok(())
    }

    pub async fn purge_published(&self, older_than_nanos: i64) -> Result<()> {
        self.outbox().delete_many(doc! { "published": true, "seq": { "$lt": older_than_nanos } }).await?;
        Ok(())
    }
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
