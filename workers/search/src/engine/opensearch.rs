//! The OpenSearch engine, for installs too large for an index per replica.
//!
//! One index (default `coursebus_courses`) shared by every replica, fed through one durable
//! consumer. Writes go through the bulk API with external versions equal to the event's stream
//! sequence, so an older event applied late (another replica, a redelivery) cannot overwrite a
//! newer one: OpenSearch answers 409 and the item is skipped.
//!
//! Search is a `bool` query: a `multi_match` over `title^3`, `summary`, `description`, `lessons`
//! and `tags` with `fuzziness: AUTO` (or `match_all` without words), `filter` clauses for the
//! filters, and `terms` aggregations for the facets.
//!
//! No OpenSearch server runs where this is developed: the tests check the requests and parse
//! replies against the documented shapes with an HTTP mock, not against a live cluster.

use coursebus_contracts::catalog::PriceFilter;
use coursebus_contracts::search::{FacetCount, Facets, PriceBand};
use opensearch::auth::Credentials;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::http::{StatusCode, Url};
use opensearch::indices::{IndicesCreateParts, IndicesExistsParts};
use opensearch::params::VersionType;
use opensearch::{BulkOperation, BulkParts, OpenSearch, SearchParts};
use serde_json::{Value, json};

use super::{Change, EngineError, Feed, Page, SearchEngine};
use crate::domain::{CourseDoc, MAX_TAG_FACETS, SearchQuery, TITLE_BOOST, level_str};

/// Every request gets an answer or an error within this time.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct OpenSearchEngine {
    client: OpenSearch,
    index: String,
}

impl std::fmt::Debug for OpenSearchEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchEngine").field("index", &self.index).finish_non_exhaustive()
    }
}

impl From<opensearch::Error> for EngineError {
    fn from(err: opensearch::Error) -> Self {
        EngineError::Unavailable(err.to_string())
    }
}

impl OpenSearchEngine {
    /// A client of the cluster at `url` (`https://user:password@host:9200`; credentials in the
    /// URL become basic auth and are never logged) using index `index`.
    pub fn new(url: &str, index: impl Into<String>) -> Result<Self, EngineError> {
        let mut url = Url::parse(url).map_err(|e| EngineError::Unavailable(format!("invalid OpenSearch URL: {e}")))?;
        let credentials = (!url.username().is_empty())
            .then(|| Credentials::Basic(url.username().to_owned(), url.password().unwrap_or_default().to_owned()));
        // Paths are joined to the URL: without a trailing slash its last segment would be lost.
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT);
        if let Some(credentials) = credentials {
            transport = transport.auth(credentials);
        }
        let transport = transport.build().map_err(|e| EngineError::Unavailable(e.to_string()))?;
        Ok(Self { client: OpenSearch::new(transport), index: index.into() })
    }

    /// The index settings and mapping (`PUT /<index>`).
    pub fn mapping() -> Value {
        let text = json!({"type": "text"});
        let keyword = json!({"type": "keyword"});
        json!({
            "mappings": {
                "dynamic": false,
                "properties": {
                    "id": keyword,
                    "slug": keyword,
                    "title": text,
                    "summary": text,
                    "description": text,
                    "lessons": text,
                    "tags": {"type": "text", "fields": {"keyword": keyword}},
                    "level": keyword,
                    "language": keyword,
                    "price": {"properties": {"amount_minor": {"type": "long"}, "currency": keyword}},
                    "price_band": keyword,
                    "instructor_id": keyword,
                    "lesson_count": {"type": "integer"},
                    "published_at": {"type": "date"}
                }
            }
        })
    }

    /// The `_search` body for `query`.
    pub fn search_body(query: &SearchQuery) -> Value {
        let words = if query.text.is_empty() {
            json!({"match_all": {}})
        } else {
            json!({"multi_match": {
                "query": query.text,
                "fields": [format!("title^{TITLE_BOOST}"), "summary", "description", "lessons", "tags"],
                "fuzziness": "AUTO"
            }})
        };
        let f = &query.filters;
        let mut filter = Vec::new();
        if let Some(tag) = &f.tag {
            filter.push(json!({"term": {"tags.keyword": tag}}));
        }
        if let Some(level) = f.level {
            filter.push(json!({"term": {"level": level_str(level)}}));
        }
        if let Some(language) = &f.language {
            filter.push(json!({"term": {"language": language}}));
        }
        match f.price {
            Some(PriceFilter::Free) => filter.push(json!({"term": {"price_band": PriceBand::Free.as_str()}})),
            Some(PriceFilter::Paid) => {
                filter.push(json!({"bool": {"must_not": [{"term": {"price_band": PriceBand::Free.as_str()}}]}}))
            }
            None => {}
        }
        if let Some(band) = f.price_band {
            filter.push(json!({"term": {"price_band": band.as_str()}}));
        }
        let sort = if query.text.is_empty() {
            json!([{"published_at": "desc"}, {"id": "asc"}])
        } else {
            json!([{"_score": "desc"}, {"id": "asc"}])
        };
        json!({
            "from": query.offset,
            "size": query.limit,
            "track_total_hits": true,
            "_source": {"excludes": ["description", "lessons"]},
            "query": {"bool": {"must": [words], "filter": filter}},
            "sort": sort,
            "aggs": {
                "tag": {"terms": {"field": "tags.keyword", "size": MAX_TAG_FACETS}},
                "level": {"terms": {"field": "level", "size": 10}},
                "language": {"terms": {"field": "language", "size": 100}},
                "price_band": {"terms": {"field": "price_band", "size": PriceBand::ALL.len()}}
            }
        })
    }

    /// Read a `_search` reply: `hits.total.value`, `hits.hits[]._score/_source`,
    /// `aggregations.<facet>.buckets[].key/doc_count`.
    pub fn parse_search(reply: &Value) -> Result<Page, EngineError> {
        let bad = |what: &str| EngineError::Protocol(format!("search reply: {what}"));
        let total = reply["hits"]["total"]["value"].as_u64().ok_or_else(|| bad("no hits.total.value"))?;
        let hits = reply["hits"]["hits"]
            .as_array()
            .ok_or_else(|| bad("no hits.hits"))?
            .iter()
            .map(|hit| {
                let doc: CourseDoc = serde_json::from_value(hit["_source"].clone())
                    .map_err(|e| bad(&format!("a hit's _source does not fit: {e}")))?;
                Ok(doc.hit(hit["_score"].as_f64().unwrap_or(0.0) as f32))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let buckets = |name: &str, keep: usize| -> Result<Vec<FacetCount>, EngineError> {
            let Some(buckets) = reply["aggregations"][name]["buckets"].as_array() else {
                return Err(bad(&format!("no aggregations.{name}.buckets")));
            };
            let mut counts = buckets
                .iter()
                .map(|b| {
                    let value = match &b["key"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let count = b["doc_count"].as_u64().ok_or_else(|| bad("a bucket without doc_count"))?;
                    Ok(FacetCount { value, count })
                })
                .collect::<Result<Vec<_>, EngineError>>()?;
            crate::domain::sort_facet(&mut counts, keep);
            Ok(counts)
        };
        Ok(Page {
            hits,
            total,
            facets: Facets {
                tag: buckets("tag", MAX_TAG_FACETS)?,
                level: buckets("level", usize::MAX)?,
                language: buckets("language", usize::MAX)?,
                price_band: buckets("price_band", usize::MAX)?,
            },
        })
    }

    async fn failure(response: opensearch::http::response::Response) -> EngineError {
        let status = response.status_code().as_u16();
        let reason = match response.json::<Value>().await {
            Ok(body) => body["error"]["type"].as_str().unwrap_or("unknown").to_owned(),
            Err(_) => "unreadable error body".to_owned(),
        };
        EngineError::Backend { status, reason }
    }
}

impl SearchEngine for OpenSearchEngine {
    fn name(&self) -> &'static str {
        "opensearch"
    }

    fn feed(&self) -> Feed {
        Feed::Shared
    }

    async fn prepare(&self) -> Result<(), EngineError> {
        let exists = self.client.indices().exists(IndicesExistsParts::Index(&[&self.index])).send().await?;
        match exists.status_code() {
            StatusCode::OK => return Ok(()),
            StatusCode::NOT_FOUND => {}
            _ => return Err(Self::failure(exists).await),
        }
        let created =
            self.client.indices().create(IndicesCreateParts::Index(&self.index)).body(Self::mapping()).send().await?;
        if created.status_code().is_success() {
            tracing::info!(index = %self.index, "OpenSearch index created");
            return Ok(());
        }
        match Self::failure(created).await {
            // Another replica created it in between.
            EngineError::Backend { reason, .. } if reason == "resource_already_exists_exception" => Ok(()),
            err => Err(err),
        }
    }

    async fn apply(&self, changes: Vec<Change>, _through_seq: u64) -> Result<(), EngineError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut ops: Vec<BulkOperation<CourseDoc>> = Vec::with_capacity(changes.len());
        for change in changes {
            let version = i64::try_from(change.seq()).map_err(|_| EngineError::Protocol("sequence overflow".into()))?;
            ops.push(match change {
                Change::Upsert { doc, .. } => {
                    let id = doc.id.to_string();
                    BulkOperation::index(*doc).id(id).version(version).version_type(VersionType::External).into()
                }
                Change::Delete { id, .. } => {
                    BulkOperation::delete(id.to_string()).version(version).version_type(VersionType::External).into()
                }
            });
        }
        let response = self.client.bulk(BulkParts::Index(&self.index)).body(ops).send().await?;
        if !response.status_code().is_success() {
            return Err(Self::failure(response).await);
        }
        let reply: Value = response.json().await.map_err(|e| EngineError::Protocol(e.to_string()))?;
        check_bulk(&reply)
    }

    async fn search(&self, query: SearchQuery) -> Result<Page, EngineError> {
        let response =
            self.client.search(SearchParts::Index(&[&self.index])).body(Self::search_body(&query)).send().await?;
        if !response.status_code().is_success() {
            return Err(Self::failure(response).await);
        }
        let reply: Value = response.json().await.map_err(|e| EngineError::Protocol(e.to_string()))?;
        let mut page = Self::parse_search(&reply)?;
        // Highlighted here, by the same rules as the embedded engine, so both answer alike.
        let words = crate::domain::query_words(&query.text);
        for hit in &mut page.hits {
            hit.highlights = crate::domain::highlights(hit, &words);
        }
        Ok(page)
    }
}

/// A bulk reply is 200 even when items failed: look at each item. Deleting a missing document
/// (404) and a version conflict (409: a newer event was applied already) are fine.
fn check_bulk(reply: &Value) -> Result<(), EngineError> {
    if reply["errors"].as_bool() != Some(true) {
        return Ok(());
    }
    let items = reply["items"].as_array().ok_or_else(|| EngineError::Protocol("bulk reply without items".into()))?;
    for item in items {
        let Some(result) = item.as_object().and_then(|o| o.values().next()) else { continue };
        let status = result["status"].as_u64().unwrap_or(0);
        if (200..300).contains(&status) || status == 404 || status == 409 {
            continue;
        }
        let reason = result["error"]["type"].as_str().unwrap_or("unknown").to_owned();
        return Err(EngineError::Backend { status: status as u16, reason });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
