//! Contract tests of the OpenSearch adapter against an HTTP mock: each test asserts the exact
//! request (method, path, JSON body) the adapter sends and feeds it a reply in the shape the
//! OpenSearch documentation gives (create index, bulk, search with aggregations). They prove the
//! adapter speaks the documented protocol; they cannot prove what a real cluster ranks or counts.

use coursebus_bus::CallContext;
use coursebus_contracts::ErrorCode;
use coursebus_contracts::catalog::{Level, Price};
use coursebus_contracts::search::{PriceBand, SearchCoursesRequest};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;
use crate::handlers::Search;

const INDEX: &str = "courses";

fn doc(n: u128, title: &str) -> CourseDoc {
    let price = Price { amount_minor: 2_500, currency: "EUR".into() };
    CourseDoc {
        id: Uuid::from_u128(n),
        slug: format!("course-{n}"),
        title: title.into(),
        summary: "A summary".into(),
        description: "A long description".into(),
        lessons: vec!["Module 1".into(), "Lesson 1".into()],
        tags: vec!["rust".into()],
        level: Level::Beginner,
        language: "en".into(),
        price_band: PriceBand::of(&price),
        price,
        instructor_id: Uuid::from_u128(999),
        lesson_count: 1,
        published_at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
    }
}

/// What `_source` holds for `doc` (the documented shape of the mapping).
fn source(doc: &CourseDoc) -> Value {
    json!({
        "id": doc.id, "slug": doc.slug, "title": doc.title, "summary": doc.summary,
        "description": doc.description, "lessons": doc.lessons, "tags": doc.tags,
        "level": "beginner", "language": doc.language,
        "price": {"amount_minor": doc.price.amount_minor, "currency": doc.price.currency},
        "price_band": doc.price_band.as_str(), "instructor_id": doc.instructor_id,
        "lesson_count": doc.lesson_count, "published_at": "2024-10-04T00:00:00Z"
    })
}

fn query(json: Value) -> SearchQuery {
    SearchQuery::parse(serde_json::from_value::<SearchCoursesRequest>(json).unwrap()).unwrap()
}

fn engine(server: &MockServer) -> OpenSearchEngine {
    OpenSearchEngine::new(&server.uri(), INDEX).unwrap()
}

/// The body as NDJSON: one JSON value per line, each line ending with a newline.
fn ndjson(request: &Request) -> Vec<Value> {
    let body = std::str::from_utf8(&request.body).unwrap();
    assert!(body.ends_with('\n'), "a bulk body ends with a newline: {body:?}");
    body.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test]
async fn prepare_creates_a_missing_index_with_its_mapping() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/courses"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/courses"))
        .and(body_json(json!({"mappings": {"dynamic": false, "properties": {
            "id": {"type": "keyword"}, "slug": {"type": "keyword"},
            "title": {"type": "text"}, "summary": {"type": "text"}, "description": {"type": "text"},
            "lessons": {"type": "text"},
            "tags": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
            "level": {"type": "keyword"}, "language": {"type": "keyword"},
            "price": {"properties": {"amount_minor": {"type": "long"}, "currency": {"type": "keyword"}}},
            "price_band": {"type": "keyword"}, "instructor_id": {"type": "keyword"},
            "lesson_count": {"type": "integer"}, "published_at": {"type": "date"}
        }}})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"acknowledged": true, "shards_acknowledged": true, "index": "courses"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    engine(&server).prepare().await.unwrap();
}

#[tokio::test]
async fn prepare_keeps_an_existing_index_and_tolerates_a_concurrent_creation() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/courses"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    engine(&server).prepare().await.unwrap();

    let server = MockServer::start().await;
    Mock::given(method("HEAD")).and(path("/courses")).respond_with(ResponseTemplate::new(404)).mount(&server).await;
    Mock::given(method("PUT"))
        .and(path("/courses"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {
                "root_cause": [{"type": "resource_already_exists_exception", "reason": "index [courses/abc] already exists", "index": "courses"}],
                "type": "resource_already_exists_exception", "reason": "index [courses/abc] already exists", "index": "courses"
            },
            "status": 400
        })))
        .expect(1)
        .mount(&server)
        .await;
    engine(&server).prepare().await.unwrap();
}

#[tokio::test]
async fn apply_sends_one_bulk_request_versioned_by_stream_sequence() {
    let server = MockServer::start().await;
    let published = doc(1, "Rust for beginners");
    let archived = Uuid::from_u128(2);
    Mock::given(method("POST"))
        .and(path("/courses/_bulk"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "took": 11,
            "errors": true,
            "items": [
                {"index": {"_index": "courses", "_id": published.id, "_version": 5, "result": "created",
                    "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1, "status": 201}},
                // An older event than what the index holds: skipped, not an error.
                {"delete": {"_index": "courses", "_id": archived, "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": "[2]: version conflict, current version [9] is higher or equal to the one provided [6]",
                    "index": "courses"}}}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let changes =
        vec![Change::Upsert { seq: 5, doc: Box::new(published.clone()) }, Change::Delete { seq: 6, id: archived }];
    engine(&server).apply(changes, 6).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        ndjson(&requests[0]),
        [
            json!({"index": {"_id": published.id, "version": 5, "version_type": "external"}}),
            source(&published),
            json!({"delete": {"_id": archived, "version": 6, "version_type": "external"}}),
        ]
    );
}

#[tokio::test]
async fn apply_fails_when_an_item_fails_and_sends_nothing_without_changes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/courses/_bulk"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "took": 3, "errors": true,
            "items": [{"index": {"_index": "courses", "_id": "x", "status": 400, "error": {
                "type": "mapper_parsing_exception", "reason": "failed to parse field [published_at]"}}}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let engine = engine(&server);
    engine.apply(vec![], 3).await.unwrap();
    let err = engine.apply(vec![Change::Upsert { seq: 7, doc: Box::new(doc(1, "x")) }], 7).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Backend { status: 400, reason } if reason == "mapper_parsing_exception"),
        "{err:?}"
    );
}

/// A `_search` reply in the documented shape.
fn search_reply(hits: Value, total: u64) -> Value {
    json!({
        "took": 5, "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": total, "relation": "eq"}, "max_score": null, "hits": hits},
        "aggregations": {
            "tag": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0,
                "buckets": [{"key": "web", "doc_count": 1}, {"key": "rust", "doc_count": 2}]},
            "level": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0,
                "buckets": [{"key": "beginner", "doc_count": 2}]},
            "language": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0,
                "buckets": [{"key": "en", "doc_count": 2}]},
            "price_band": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0,
                "buckets": [{"key": "20_to_50", "doc_count": 2}]}
        }
    })
}

fn aggs() -> Value {
    json!({
        "tag": {"terms": {"field": "tags.keyword", "size": 50}},
        "level": {"terms": {"field": "level", "size": 10}},
        "language": {"terms": {"field": "language", "size": 100}},
        "price_band": {"terms": {"field": "price_band", "size": 4}}
    })
}

#[tokio::test]
async fn search_sends_a_fuzzy_multi_match_with_filters_and_aggregations() {
    let server = MockServer::start().await;
    let (a, b) = (doc(1, "Rust for beginners"), doc(2, "Systems in Rust"));
    let hit = |d: &CourseDoc, score: f64| {
        let mut source = source(d);
        if let Some(source) = source.as_object_mut() {
            source.remove("description");
            source.remove("lessons");
        }
        json!({"_index": "courses", "_id": d.id, "_score": score, "_source": source, "sort": [score, d.id]})
    };
    Mock::given(method("POST"))
        .and(path("/courses/_search"))
        .and(body_json(json!({
            "from": 2, "size": 2, "track_total_hits": true,
            "_source": {"excludes": ["description", "lessons"]},
            "query": {"bool": {
                "must": [{"multi_match": {
                    "query": "rsut beginners",
                    "fields": ["title^3", "summary", "description", "lessons", "tags"],
                    "fuzziness": "AUTO"
                }}],
                "filter": [
                    {"term": {"tags.keyword": "rust"}},
                    {"term": {"level": "beginner"}},
                    {"term": {"language": "en"}},
                    {"term": {"price_band": "20_to_50"}}
                ]
            }},
            "sort": [{"_score": "desc"}, {"id": "asc"}],
            "aggs": aggs()
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(search_reply(json!([hit(&a, 4.5), hit(&b, 1.25)]), 5)))
        .expect(1)
        .mount(&server)
        .await;
    let q = query(json!({"q": "rsut beginners", "tag": "rust", "level": "beginner", "language": "en",
        "price_band": "20_to_50", "limit": 2, "cursor": "o2"}));
    let page = engine(&server).search(q).await.unwrap();

    assert_eq!(page.total, 5);
    // Highlighted by the same rules as the embedded engine: "rsut" within one typo of "Rust".
    let mut expected = vec![a.hit(4.5), b.hit(1.25)];
    expected[0].highlights.title = vec![[0, 4], [9, 18]];
    expected[1].highlights.title = vec![[11, 15]];
    assert_eq!(page.hits, expected);
    let counts = |f: &[FacetCount]| f.iter().map(|c| (c.value.clone(), c.count)).collect::<Vec<_>>();
    assert_eq!(counts(&page.facets.tag), [("rust".into(), 2), ("web".into(), 1)], "most frequent first");
    assert_eq!(counts(&page.facets.level), [("beginner".into(), 2)]);
    assert_eq!(counts(&page.facets.language), [("en".into(), 2)]);
    assert_eq!(counts(&page.facets.price_band), [("20_to_50".into(), 2)]);
}

#[tokio::test]
async fn search_without_words_lists_newest_first_and_paid_excludes_free() {
    let server = MockServer::start().await;
    let a = doc(1, "Anything");
    let mut source = source(&a);
    if let Some(source) = source.as_object_mut() {
        source.remove("description");
        source.remove("lessons");
    }
    Mock::given(method("POST"))
        .and(path("/courses/_search"))
        .and(body_json(json!({
            "from": 0, "size": 10, "track_total_hits": true,
            "_source": {"excludes": ["description", "lessons"]},
            "query": {"bool": {
                "must": [{"match_all": {}}],
                "filter": [{"bool": {"must_not": [{"term": {"price_band": "free"}}]}}]
            }},
            "sort": [{"published_at": "desc"}, {"id": "asc"}],
            "aggs": aggs()
        })))
        // Sorted by a field, hits carry `_score: null`.
        .respond_with(ResponseTemplate::new(200).set_body_json(search_reply(
            json!([{"_index": "courses", "_id": a.id, "_score": null, "_source": source, "sort": [1_728_000_000_000_i64, a.id]}]),
            1,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let page = engine(&server).search(query(json!({"price": "paid"}))).await.unwrap();
    assert_eq!(page.hits, vec![a.hit(0.0)]);
}

#[tokio::test]
async fn malformed_replies_are_protocol_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/courses/_search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"hits": {"hits": []}})))
        .mount(&server)
        .await;
    let err = engine(&server).search(query(json!({}))).await.unwrap_err();
    assert!(matches!(err, EngineError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn url_credentials_become_basic_auth_and_a_path_prefix_is_kept() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/proxy/os/courses"))
        .and(header("authorization", "Basic ZWxhc3RpYzpzM2NyZXQ="))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let url = server.uri().replace("http://", "http://elastic:s3cret@") + "/proxy/os";
    let engine = OpenSearchEngine::new(&url, INDEX).unwrap();
    assert!(!format!("{engine:?}").contains("s3cret"));
    engine.prepare().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_cluster_is_unavailable_to_callers() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let engine = OpenSearchEngine::new(&format!("http://127.0.0.1:{port}"), INDEX).unwrap();
    let search = Search { engine: std::sync::Arc::new(engine) };
    let err = search.search(CallContext::new_root(), SearchCoursesRequest::default()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(!err.message.contains("127.0.0.1"), "no internals in the reply: {}", err.message);
}
