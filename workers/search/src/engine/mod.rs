//! The search engine behind the worker: embedded tantivy by default, OpenSearch for large
//! installs. Both are fed the same [`Change`]s and answer the same [`SearchQuery`].

pub mod opensearch;
pub mod tantivy;

use std::future::Future;

use coursebus_contracts::search::{Facets, SearchHit};
use uuid::Uuid;

use crate::domain::{CourseDoc, SearchQuery};

/// One change to the index, from the catalog event at stream sequence `seq`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A course was published (again): index this snapshot in place of any earlier one.
    Upsert { seq: u64, doc: Box<CourseDoc> },
    /// A course was archived: it is no longer searchable.
    Delete { seq: u64, id: Uuid },
}

impl Change {
    pub fn seq(&self) -> u64 {
        match self {
            Change::Upsert { seq, .. } | Change::Delete { seq, .. } => *seq,
        }
    }
}

/// What an engine found: one page of hits, the total and the facet counts over every match.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub hits: Vec<SearchHit>,
    pub total: u64,
    pub facets: Facets,
}

/// How the engine's index is fed from `EVT_CATALOG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Every replica has its own index and replays the stream into it with its own ordered
    /// consumer (after `resume_after` when the index kept its position on disk).
    PerReplica { resume_after: Option<u64> },
    /// The index is shared (external): replicas share one durable consumer, and a change is
    /// acknowledged only once the engine applied it.
    Shared,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("index error: {0}")]
    Index(String),
    #[error("search backend unreachable: {0}")]
    Unavailable(String),
    #[error("search backend answered {status}: {reason}")]
    Backend { status: u16, reason: String },
    #[error("unexpected answer from the search backend: {0}")]
    Protocol(String),
}

/// A search engine: an index of published courses that can be changed and searched.
///
/// Ranking contract shared by the implementations: title matches weigh
/// [`TITLE_BOOST`](crate::domain::TITLE_BOOST) times more than matches in the summary,
/// description, lesson titles and tags; a word of 4 or more letters also matches words one typo
/// away (a transposition counts as one typo), scored below exact matches; an empty query lists
/// every match newest first. Facet counts cover every match, not only the page.
pub trait SearchEngine: Send + Sync + 'static {
    /// For logs (`tantivy`, `opensearch`).
    fn name(&self) -> &'static str;

    fn feed(&self) -> Feed;

    /// Create what the index needs (schema, mapping); idempotent.
    fn prepare(&self) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Apply `changes` in order and make them searchable. `through_seq` is the stream sequence
    /// of the last event they cover (events without a change count too).
    fn apply(&self, changes: Vec<Change>, through_seq: u64) -> impl Future<Output = Result<(), EngineError>> + Send;

    fn search(&self, query: SearchQuery) -> impl Future<Output = Result<Page, EngineError>> + Send;
}
