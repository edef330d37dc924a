//! The embedded engine: a tantivy index per replica, in memory (or in a folder of its own).
//!
//! Text fields share one analyzer (split on non-alphanumerics, lower-case, fold accents). A
//! query word matches exactly (BM25, boosted per field) or within one typo (Levenshtein distance
//! 1, transpositions costing 1) for words of 4 or more letters; typo matches are constant-score
//! and weigh less than exact ones, so BM25 still ranks. The last word also matches as a prefix
//! (search as you type). Words are alternatives: a course matching more of them ranks higher.

use std::path::Path;
use std::sync::{Arc, Mutex};

use coursebus_contracts::catalog::PriceFilter;
use coursebus_contracts::search::{FacetCount, Facets, PriceBand};
use tantivy::collector::sort_key::{SortBySimilarityScore, SortByStaticFastValue, SortByString};
use tantivy::collector::{Count, FacetCollector, FacetCounts, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Facet, FacetOptions, Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
    Value as _,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, TantivyDocument, Term};

use super::{Change, EngineError, Feed, Page, SearchEngine};
use crate::domain::{
    CourseDoc, MAX_TAG_FACETS, MIN_FUZZY_CHARS, MIN_PREFIX_CHARS, SearchQuery, TITLE_BOOST, analyzer, level_str,
};

const ANALYZER: &str = "cb_text";
/// Indexing memory budget of the single indexing thread.
const WRITER_MEMORY: usize = 32_000_000;
/// The weight of a typo match relative to an exact match in the same field (a constant score,
/// so it must stay below typical BM25 scores).
const FUZZY_WEIGHT: f32 = 0.3;
/// The weight of a prefix match of the last word.
const PREFIX_WEIGHT: f32 = 0.2;

impl From<tantivy::TantivyError> for EngineError {
    fn from(err: tantivy::TantivyError) -> Self {
        EngineError::Index(err.to_string())
    }
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    summary: Field,
    description: Field,
    lessons: Field,
    tags_text: Field,
    tag: Field,
    level: Field,
    language: Field,
    price_band: Field,
    published_at: Field,
    stored: Field,
}

impl Fields {
    /// Full-text fields and their boosts.
    fn text(&self) -> [(Field, f32); 5] {
        [
            (self.title, TITLE_BOOST),
            (self.summary, 1.0),
            (self.description, 1.0),
            (self.lessons, 1.0),
            (self.tags_text, 1.0),
        ]
    }
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: builder.add_text_field("id", STRING | FAST),
        title: builder.add_text_field("title", text.clone()),
        summary: builder.add_text_field("summary", text.clone()),
        description: builder.add_text_field("description", text.clone()),
        lessons: builder.add_text_field("lessons", text.clone()),
        tags_text: builder.add_text_field("tags_text", text),
        tag: builder.add_facet_field("tag", FacetOptions::default()),
        level: builder.add_facet_field("level", FacetOptions::default()),
        language: builder.add_facet_field("language", FacetOptions::default()),
        price_band: builder.add_facet_field("price_band", FacetOptions::default()),
        published_at: builder.add_i64_field("published_at", FAST),
        stored: builder.add_bytes_field("stored", STORED),
    };
    (builder.build(), fields)
}

fn facet(value: &str) -> Facet {
    Facet::from_path([value])
}

struct Inner {
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    fields: Fields,
    resume_after: Option<u64>,
}

/// The embedded engine. Cheap to clone (shared index).
#[derive(Clone)]
pub struct TantivyEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TantivyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyEngine").field("resume_after", &self.inner.resume_after).finish_non_exhaustive()
    }
}

impl TantivyEngine {
    /// An index in memory, rebuilt from the stream at every start.
    pub fn in_ram() -> Result<Self, EngineError> {
        let (schema, fields) = schema();
        let index = Index::builder().schema(schema).create_in_ram()?;
        Self::with_index(index, fields)
    }

    /// An index in `dir` (created if needed) that remembers how far it got, so a restart only
    /// replays what it missed. One replica per folder: a second one fails on the lock.
    pub fn in_dir(dir: &Path) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Index(format!("{}: {e}", dir.display())))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| EngineError::Index(e.to_string()))?;
        let index = Index::builder().schema(schema).open_or_create(directory)?;
        Self::with_index(index, fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self, EngineError> {
        index.tokenizers().register(ANALYZER, analyzer());
        let resume_after = index.load_metas()?.payload.and_then(|p| p.parse::<u64>().ok());
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self { inner: Arc::new(Inner { reader, writer: Mutex::new(writer), fields, resume_after }) })
    }

    /// How many courses the index holds (for logs and tests).
    pub fn len(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SearchEngine for TantivyEngine {
    fn name(&self) -> &'static str {
        "tantivy"
    }

    fn feed(&self) -> Feed {
        Feed::PerReplica { resume_after: self.inner.resume_after }
    }

    async fn prepare(&self) -> Result<(), EngineError> {
        Ok(())
    }

    async fn apply(&self, changes: Vec<Change>, through_seq: u64) -> Result<(), EngineError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.apply(changes, through_seq))
            .await
            .map_err(|e| EngineError::Index(format!("indexing task failed: {e}")))?
    }

    async fn search(&self, query: SearchQuery) -> Result<Page, EngineError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.search(&query))
            .await
            .map_err(|e| EngineError::Index(format!("search task failed: {e}")))?
    }
}

impl Inner {
    fn apply(&self, changes: Vec<Change>, through_seq: u64) -> Result<(), EngineError> {
        let mut writer = self.writer.lock().map_err(|_| EngineError::Index("index writer lock poisoned".into()))?;
        let result = (|| {
            for change in &changes {
                match change {
                    Change::Upsert { doc, .. } => {
                        writer.delete_term(Term::from_field_text(self.fields.id, &doc.id.to_string()));
                        writer.add_document(self.document(doc)?)?;
                    }
                    Change::Delete { id, .. } => {
                        writer.delete_term(Term::from_field_text(self.fields.id, &id.to_string()));
                    }
                }
            }
            let mut commit = writer.prepare_commit()?;
            commit.set_payload(&through_seq.to_string());
            commit.commit()?;
            Ok::<_, EngineError>(())
        })();
        if let Err(err) = result {
            // Drop the half-applied batch: the caller retries it whole.
            if let Err(rollback) = writer.rollback() {
                tracing::error!(error = %rollback, "index rollback failed");
            }
            return Err(err);
        }
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    fn document(&self, doc: &CourseDoc) -> Result<TantivyDocument, EngineError> {
        let f = &self.fields;
        let mut d = TantivyDocument::new();
        d.add_text(f.id, doc.id.to_string());
        d.add_text(f.title, &doc.title);
        d.add_text(f.summary, &doc.summary);
        d.add_text(f.description, &doc.description);
        for lesson in &doc.lessons {
            d.add_text(f.lessons, lesson);
        }
        for tag in &doc.tags {
            d.add_text(f.tags_text, tag);
            d.add_facet(f.tag, facet(tag));
        }
        d.add_facet(f.level, facet(level_str(doc.level)));
        d.add_facet(f.language, facet(&doc.language));
        d.add_facet(f.price_band, facet(doc.price_band.as_str()));
        d.add_i64(f.published_at, doc.published_at_millis());
        let stored = serde_json::to_vec(&doc.stored()).map_err(|e| EngineError::Index(e.to_string()))?;
        d.add_bytes(f.stored, &stored);
        Ok(d)
    }

    fn text_query(&self, text: &str) -> Box<dyn Query> {
        let words = crate::domain::query_words(text);
        let last = words.len().saturating_sub(1);
        let mut per_word: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let chars = word.chars().count();
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, boost) in self.fields.text() {
                let term = Term::from_field_text(field, word);
                let exact = TermQuery::new(term.clone(), IndexRecordOption::WithFreqs);
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(exact), boost))));
                if chars >= MIN_FUZZY_CHARS {
                    let fuzzy = FuzzyTermQuery::new(term.clone(), 1, true);
                    clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), boost * FUZZY_WEIGHT))));
                }
                if i == last && chars >= MIN_PREFIX_CHARS {
                    let prefix = FuzzyTermQuery::new_prefix(term, 0, true);
                    clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(prefix), boost * PREFIX_WEIGHT))));
                }
            }
            per_word.push((Occur::Should, Box::new(BooleanQuery::new(clauses))));
        }
        Box::new(BooleanQuery::new(per_word))
    }

    fn query(&self, query: &SearchQuery) -> Box<dyn Query> {
        let f = &self.fields;
        let matching: Box<dyn Query> =
            if query.text.is_empty() { Box::new(AllQuery) } else { self.text_query(&query.text) };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, matching)];
        let filter = |field: Field, value: &str| -> Box<dyn Query> {
            let term = Term::from_facet(field, &facet(value));
            Box::new(ConstScoreQuery::new(Box::new(TermQuery::new(term, IndexRecordOption::Basic)), 0.0))
        };
        let filters = &query.filters;
        if let Some(tag) = &filters.tag {
            clauses.push((Occur::Must, filter(f.tag, tag)));
        }
        if let Some(level) = filters.level {
            clauses.push((Occur::Must, filter(f.level, level_str(level))));
        }
        if let Some(language) = &filters.language {
            clauses.push((Occur::Must, filter(f.language, language)));
        }
        match filters.price {
            Some(PriceFilter::Free) => clauses.push((Occur::Must, filter(f.price_band, PriceBand::Free.as_str()))),
            Some(PriceFilter::Paid) => clauses.push((Occur::MustNot, filter(f.price_band, PriceBand::Free.as_str()))),
            None => {}
        }
        if let Some(band) = filters.price_band {
            clauses.push((Occur::Must, filter(f.price_band, band.as_str())));
        }
        Box::new(BooleanQuery::new(clauses))
    }

    fn search(&self, query: &SearchQuery) -> Result<Page, EngineError> {
        let searcher = self.reader.searcher();
        let q = self.query(query);
        let facets = || {
            ["tag", "level", "language", "price_band"].map(|name| {
                let mut collector = FacetCollector::for_field(name);
                collector.add_facet(Facet::root());
                collector
            })
        };
        let [tag, level, language, price_band] = facets();
        let top = TopDocs::with_limit(query.limit).and_offset(query.offset);
        let id_order = (SortByString::for_field("id"), Order::Asc);
        let (total, ranked, counts) = if query.text.is_empty() {
            let newest =
                top.order_by(((SortByStaticFastValue::<i64>::for_field("published_at"), Order::Desc), id_order));
            let (total, docs, counts) = searcher.search(&q, &(Count, newest, (tag, level, language, price_band)))?;
            (total, docs.into_iter().map(|(_, addr)| (0.0, addr)).collect::<Vec<_>>(), counts)
        } else {
            let best = top.order_by(((SortBySimilarityScore, Order::Desc), id_order));
            let (total, docs, counts) = searcher.search(&q, &(Count, best, (tag, level, language, price_band)))?;
            (total, docs.into_iter().map(|((score, _), addr)| (score, addr)).collect::<Vec<_>>(), counts)
        };
        let words = crate::domain::query_words(&query.text);
        let mut hits =
            ranked.into_iter().map(|(score, addr)| self.hit(&searcher, addr, score)).collect::<Result<Vec<_>, _>>()?;
        for hit in &mut hits {
            hit.highlights = crate::domain::highlights(hit, &words);
        }
        let (tag, level, language, price_band) = counts;
        Ok(Page {
            hits,
            total: total as u64,
            facets: Facets {
                tag: facet_counts(&tag, MAX_TAG_FACETS),
                level: facet_counts(&level, usize::MAX),
                language: facet_counts(&language, usize::MAX),
                price_band: facet_counts(&price_band, usize::MAX),
            },
        })
    }

    fn hit(
        &self,
        searcher: &Searcher,
        addr: DocAddress,
        score: f32,
    ) -> Result<coursebus_contracts::search::SearchHit, EngineError> {
        let doc: TantivyDocument = searcher.doc(addr)?;
        let bytes = doc
            .get_first(self.fields.stored)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| EngineError::Index("a document lacks its stored form".into()))?;
        let course: CourseDoc = serde_json::from_slice(bytes).map_err(|e| EngineError::Index(e.to_string()))?;
        Ok(course.hit(score))
    }
}

fn facet_counts(counts: &FacetCounts, keep: usize) -> Vec<FacetCount> {
    let mut values: Vec<FacetCount> = counts
        .get(Facet::root())
        .filter(|(_, count)| *count > 0)
        .map(|(facet, count)| FacetCount { value: facet.to_path().join("/"), count })
        .collect();
    crate::domain::sort_facet(&mut values, keep);
    values
}

#[cfg(test)]
mod tests {
    use coursebus_contracts::catalog::{Level, Price};
    use coursebus_contracts::search::SearchCoursesRequest;
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;

    struct Spec {
        title: &'static str,
        summary: &'static str,
        description: &'static str,
        lessons: &'static [&'static str],
        tags: &'static [&'static str],
        level: Level,
        language: &'static str,
        price: i64,
    }

    const BASE: Spec = Spec {
        title: "A course",
        summary: "",
        description: "",
        lessons: &[],
        tags: &[],
        level: Level::Beginner,
        language: "en",
        price: 0,
    };

    fn doc(n: u128, spec: Spec) -> CourseDoc {
        let price = Price { amount_minor: spec.price, currency: "EUR".into() };
        CourseDoc {
            id: Uuid::from_u128(n),
            slug: format!("course-{n}"),
            title: spec.title.into(),
            summary: spec.summary.into(),
            description: spec.description.into(),
            lessons: spec.lessons.iter().map(|s| s.to_string()).collect(),
            tags: spec.tags.iter().map(|s| s.to_string()).collect(),
            level: spec.level,
            language: spec.language.into(),
            price_band: PriceBand::of(&price),
            price,
            instructor_id: Uuid::from_u128(999),
            lesson_count: spec.lessons.len(),
            published_at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(n as i64),
        }
    }

    async fn engine(docs: Vec<CourseDoc>) -> TantivyEngine {
        let engine = TantivyEngine::in_ram().unwrap();
        let changes = docs
            .into_iter()
            .enumerate()
            .map(|(i, doc)| Change::Upsert { seq: i as u64 + 1, doc: Box::new(doc) })
            .collect();
        engine.apply(changes, 100).await.unwrap();
        engine
    }

    fn query(json: serde_json::Value) -> SearchQuery {
        SearchQuery::parse(serde_json::from_value::<SearchCoursesRequest>(json).unwrap()).unwrap()
    }

    async fn titles(engine: &TantivyEngine, json: serde_json::Value) -> Vec<String> {
        engine.search(query(json)).await.unwrap().hits.into_iter().map(|h| h.title).collect()
    }

    fn counts(facet: &[FacetCount]) -> Vec<(&str, u64)> {
        facet.iter().map(|f| (f.value.as_str(), f.count)).collect()
    }

    #[tokio::test]
    async fn a_title_match_ranks_above_a_description_match() {
        let engine = engine(vec![
            doc(1, Spec { title: "Systems programming", description: "We use Rust throughout.", ..BASE }),
            doc(2, Spec { title: "Rust for beginners", description: "A gentle start.", ..BASE }),
            doc(3, Spec { title: "Cooking", description: "Nothing about programming languages.", ..BASE }),
        ])
        .await;
        let page = engine.search(query(serde_json::json!({"q": "rust"}))).await.unwrap();
        let titles: Vec<&str> = page.hits.iter().map(|h| h.title.as_str()).collect();
        assert_eq!(titles, ["Rust for beginners", "Systems programming"]);
        assert!(page.hits[0].score > page.hits[1].score);
        assert_eq!(page.total, 2);
    }

    #[tokio::test]
    async fn one_typo_is_forgiven_including_a_transposition() {
        let engine = engine(vec![
            doc(1, Spec { title: "Rust for beginners", ..BASE }),
            doc(2, Spec { title: "Gardening", lessons: &["Composting basics"], ..BASE }),
        ])
        .await;
        assert_eq!(titles(&engine, serde_json::json!({"q": "rsut"})).await, ["Rust for beginners"]);
        assert_eq!(titles(&engine, serde_json::json!({"q": "beginers"})).await, ["Rust for beginners"]);
        // Lesson titles are searched too, with typos.
        assert_eq!(titles(&engine, serde_json::json!({"q": "compostng"})).await, ["Gardening"]);
        // Two typos are too many; short words must match exactly.
        assert!(titles(&engine, serde_json::json!({"q": "rsutt"})).await.is_empty());
        assert!(titles(&engine, serde_json::json!({"q": "fro"})).await.is_empty());
    }

    #[tokio::test]
    async fn an_exact_match_beats_a_typo_match_in_the_same_field() {
        let engine =
            engine(vec![doc(1, Spec { title: "Rest APIs", ..BASE }), doc(2, Spec { title: "Rust APIs", ..BASE })])
                .await;
        assert_eq!(titles(&engine, serde_json::json!({"q": "rust"})).await, ["Rust APIs", "Rest APIs"]);
    }

    #[tokio::test]
    async fn the_last_word_matches_as_a_prefix_and_accents_fold() {
        let engine = engine(vec![
            doc(1, Spec { title: "Kubernetes in production", ..BASE }),
            doc(2, Spec { title: "Café culture", language: "fr", ..BASE }),
        ])
        .await;
        assert_eq!(titles(&engine, serde_json::json!({"q": "kuber"})).await, ["Kubernetes in production"]);
        assert_eq!(titles(&engine, serde_json::json!({"q": "cafe"})).await, ["Café culture"]);
        assert_eq!(titles(&engine, serde_json::json!({"q": "CAFÉ"})).await, ["Café culture"]);
    }

    #[tokio::test]
    async fn summary_description_lessons_and_tags_are_searched() {
        let engine = engine(vec![
            doc(1, Spec { title: "One", summary: "about ownership", ..BASE }),
            doc(2, Spec { title: "Two", description: "borrowing explained", ..BASE }),
            doc(3, Spec { title: "Three", lessons: &["Lifetimes"], ..BASE }),
            doc(4, Spec { title: "Four", tags: &["web-assembly"], ..BASE }),
        ])
        .await;
        assert_eq!(titles(&engine, serde_json::json!({"q": "ownership"})).await, ["One"]);
        assert_eq!(titles(&engine, serde_json::json!({"q": "borrowing"})).await, ["Two"]);
        assert_eq!(titles(&engine, serde_json::json!({"q": "lifetimes"})).await, ["Three"]);
        assert_eq!(titles(&engine, serde_json::json!({"q": "assembly"})).await, ["Four"]);
    }

    #[tokio::test]
    async fn facets_count_every_match_not_only_the_page() {
        let engine = engine(vec![
            doc(1, Spec { title: "Rust one", tags: &["rust", "systems"], price: 0, ..BASE }),
            doc(2, Spec { title: "Rust two", tags: &["rust"], level: Level::Advanced, price: 1_500, ..BASE }),
            doc(3, Spec { title: "Rust three", tags: &["rust", "web"], language: "de", price: 2_000, ..BASE }),
            doc(4, Spec { title: "Rust four", tags: &["web"], price: 9_900, ..BASE }),
            doc(5, Spec { title: "Python", tags: &["python"], ..BASE }),
        ])
        .await;
        let page = engine.search(query(serde_json::json!({"q": "rust", "limit": 1}))).await.unwrap();
        assert_eq!(page.hits.len(), 1);
        assert_eq!(page.total, 4);
        assert_eq!(counts(&page.facets.tag), [("rust", 3), ("web", 2), ("systems", 1)]);
        assert_eq!(counts(&page.facets.level), [("beginner", 3), ("advanced", 1)]);
        assert_eq!(counts(&page.facets.language), [("en", 3), ("de", 1)]);
        assert_eq!(counts(&page.facets.price_band), [("20_to_50", 1), ("free", 1), ("over_50", 1), ("under_20", 1)]);
        // Facets follow the filters.
        let page = engine.search(query(serde_json::json!({"q": "rust", "tag": "web"}))).await.unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(counts(&page.facets.tag), [("web", 2), ("rust", 1)]);
    }

    #[tokio::test]
    async fn filters_narrow_the_matches() {
        let engine = engine(vec![
            doc(1, Spec { title: "Free beginner en", tags: &["rust"], ..BASE }),
            doc(2, Spec { title: "Cheap advanced en", tags: &["rust"], level: Level::Advanced, price: 999, ..BASE }),
            doc(
                3,
                Spec { title: "Mid intermediate de", level: Level::Intermediate, language: "de", price: 4_900, ..BASE },
            ),
            doc(4, Spec { title: "Dear beginner en", price: 12_000, ..BASE }),
        ])
        .await;
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(
            sorted(titles(&engine, serde_json::json!({"tag": "rust"})).await),
            ["Cheap advanced en", "Free beginner en"]
        );
        assert_eq!(titles(&engine, serde_json::json!({"level": "intermediate"})).await, ["Mid intermediate de"]);
        assert_eq!(titles(&engine, serde_json::json!({"language": "DE"})).await, ["Mid intermediate de"]);
        assert_eq!(titles(&engine, serde_json::json!({"price": "free"})).await, ["Free beginner en"]);
        assert_eq!(titles(&engine, serde_json::json!({"price": "paid"})).await.len(), 3);
        assert_eq!(titles(&engine, serde_json::json!({"price_band": "over_50"})).await, ["Dear beginner en"]);
        assert_eq!(
            titles(&engine, serde_json::json!({"q": "beginner", "price": "paid", "language": "en"})).await,
            ["Dear beginner en"]
        );
        assert!(titles(&engine, serde_json::json!({"tag": "nope"})).await.is_empty());
    }

    #[tokio::test]
    async fn archived_courses_disappear_and_republishing_replaces_the_snapshot() {
        let engine =
            engine(vec![doc(1, Spec { title: "Rust basics", ..BASE }), doc(2, Spec { title: "Rust web", ..BASE })])
                .await;
        engine.apply(vec![Change::Delete { seq: 101, id: Uuid::from_u128(1) }], 101).await.unwrap();
        assert_eq!(titles(&engine, serde_json::json!({"q": "rust"})).await, ["Rust web"]);
        let page = engine.search(query(serde_json::json!({}))).await.unwrap();
        assert_eq!((page.total, counts(&page.facets.level)), (1, vec![("beginner", 1)]));

        engine
            .apply(
                vec![Change::Upsert { seq: 102, doc: Box::new(doc(2, Spec { title: "Rust on the web", ..BASE })) }],
                102,
            )
            .await
            .unwrap();
        assert_eq!(titles(&engine, serde_json::json!({"q": "rust"})).await, ["Rust on the web"]);
        assert_eq!(engine.len(), 1);
        // Deleting what is not there is fine (replays see archive events of courses they never had).
        engine.apply(vec![Change::Delete { seq: 103, id: Uuid::from_u128(77) }], 103).await.unwrap();
    }

    #[tokio::test]
    async fn no_words_lists_everything_newest_first_in_pages() {
        let engine = engine((1..=5).map(|n| doc(n, Spec { title: "Course", ..BASE })).collect()).await;
        let first = engine.search(query(serde_json::json!({"limit": 2}))).await.unwrap();
        let ids: Vec<Uuid> = first.hits.iter().map(|h| h.id).collect();
        assert_eq!(ids, [Uuid::from_u128(5), Uuid::from_u128(4)]);
        assert_eq!(first.total, 5);
        assert!(first.hits.iter().all(|h| h.score == 0.0));
        let third = engine.search(query(serde_json::json!({"limit": 2, "cursor": "o4"}))).await.unwrap();
        assert_eq!(third.hits.iter().map(|h| h.id).collect::<Vec<_>>(), [Uuid::from_u128(1)]);
    }

    #[tokio::test]
    async fn a_folder_index_remembers_how_far_it_got() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = TantivyEngine::in_dir(dir.path()).unwrap();
            assert_eq!(engine.feed(), Feed::PerReplica { resume_after: None });
            engine
                .apply(vec![Change::Upsert { seq: 41, doc: Box::new(doc(1, Spec { title: "Rust", ..BASE })) }], 42)
                .await
                .unwrap();
        }
        let engine = TantivyEngine::in_dir(dir.path()).unwrap();
        assert_eq!(engine.feed(), Feed::PerReplica { resume_after: Some(42) });
        assert_eq!(titles(&engine, serde_json::json!({"q": "rust"})).await, ["Rust"]);
    }
}
