//! The endpoint: validate, ask the engine, page.

use std::sync::Arc;

use coursebus_bus::CallContext;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::search::{SearchCoursesRequest, SearchResults};

use crate::domain::SearchQuery;
use crate::engine::{EngineError, SearchEngine};

/// Search is public: a bearer token, if any, is not needed and not checked (only published
/// courses are searchable, the same for everyone).
pub struct Search<E> {
    pub engine: Arc<E>,
}

impl<E: SearchEngine> Search<E> {
    pub async fn search(&self, _ctx: CallContext, req: SearchCoursesRequest) -> Result<SearchResults, ErrorBody> {
        let query = SearchQuery::parse(req)?;
        let page = self.engine.search(query.clone()).await.map_err(|err| match err {
            EngineError::Unavailable(_) | EngineError::Backend { status: 500.., .. } => {
                tracing::warn!(error = %err, engine = self.engine.name(), "search backend unavailable");
                ErrorBody::unavailable("search is unavailable; retry later")
            }
            err => {
                tracing::error!(error = %err, engine = self.engine.name(), "search failed");
                ErrorBody::internal()
            }
        })?;
        let next_cursor = query.next_cursor(page.hits.len(), page.total);
        tracing::debug!(total = page.total, returned = page.hits.len(), "searched");
        Ok(SearchResults { items: page.hits, total: page.total, facets: page.facets, next_cursor })
    }
}
