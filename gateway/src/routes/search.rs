//! Search routes: full-text course search over the published catalog.

use axum::Json;
use axum::extract::State;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::search::{SearchCourses, SearchCoursesRequest, SearchResults};

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiQuery, Ctx};

/// Search published courses: words in titles (weighted most), summaries, descriptions, lesson
/// titles and tags, one typo per word forgiven; filters; facet counts over every match. Public.
#[utoipa::path(get, path = "/v1/search/courses", tag = "search", params(SearchCoursesRequest),
    responses(
        (status = 200, description = "A page of matching courses with facet counts", body = SearchResults),
        (status = 400, description = "A bad parameter (named in details.field) or an unknown one", body = ErrorBody),
        (status = 503, description = "No search replica answered", body = ErrorBody),
    ))]
pub async fn search_courses(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<SearchCoursesRequest>,
) -> ApiResult<Json<SearchResults>> {
    Ok(Json(s.bus.request::<SearchCourses>(&ctx, &req).await?))
}
