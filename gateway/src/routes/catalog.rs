//! Catalog routes: courses, their outline and the publish workflow.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coursebus_contracts::ErrorBody;
use coursebus_contracts::catalog::{
    ArchiveCourse, Course, CoursePage, CreateCourse, CreateCourseRequest, GetCourse, GetCourseRequest, ListCourses,
    ListCoursesRequest, PublishCourse, PutOutline, PutOutlineRequest, TransitionRequest, UpdateCourse,
    UpdateCourseRequest,
};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, Ctx};

/// Create a draft course (instructors and admins).
#[utoipa::path(post, path = "/v1/courses", tag = "catalog", security(("bearer" = [])), request_body = CreateCourseRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 201, description = "The new draft", body = Course),
        (status = 400, description = "A field breaks a rule", body = ErrorBody),
        (status = 403, description = "Not an instructor", body = ErrorBody),
        (status = 409, description = "The slug is taken", body = ErrorBody),
    ))]
pub async fn create_course(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<CreateCourseRequest>,
) -> ApiResult<Response> {
    let course = s.bus.request::<CreateCourse>(&ctx, &req).await?;
    Ok((StatusCode::CREATED, Json(course)).into_response())
}

/// Published courses, newest first, filtered; `mine=true` lists the caller's own in every status.
#[utoipa::path(get, path = "/v1/courses", tag = "catalog", params(ListCoursesRequest),
    responses((status = 200, description = "A page of courses", body = CoursePage), (status = 400, description = "Bad filter", body = ErrorBody)))]
pub async fn list_courses(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<ListCoursesRequest>,
) -> ApiResult<Json<CoursePage>> {
    Ok(Json(s.bus.request::<ListCourses>(&ctx, &req).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetCourseQuery {
    /// The working copy instead of the published snapshot (its instructor and admins).
    #[serde(default)]
    draft: bool,
}

/// A course by id or slug: the published snapshot (anyone), or the working copy (`draft=true`).
#[utoipa::path(get, path = "/v1/courses/{course}", tag = "catalog",
    params(("course" = String, Path, description = "Id or slug"), GetCourseQuery),
    responses((status = 200, description = "The course", body = Course), (status = 404, description = "No such (visible) course", body = ErrorBody)))]
pub async fn get_course(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiPath(id_or_slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<GetCourseQuery>,
) -> ApiResult<Response> {
    let req = GetCourseRequest { id_or_slug, draft: query.draft };
    // The hottest read: the catalog's JSON is passed on as it came, not parsed and re-encoded.
    let course = s.bus.request_forward::<GetCourse>(&ctx, &req).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], course).into_response())
}

/// Edit the working copy; send the `version` you loaded (a stale one is 409).
#[utoipa::path(patch, path = "/v1/courses/{course}", tag = "catalog", security(("bearer" = [])),
    params(("course" = Uuid, Path)), request_body = UpdateCourseRequest,
    responses(
        (status = 200, description = "The working copy", body = Course),
        (status = 403, description = "Not its instructor", body = ErrorBody),
        (status = 409, description = "Stale version or slug taken", body = ErrorBody),
    ))]
pub async fn update_course(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<UpdateCourseRequest>,
) -> ApiResult<Json<Course>> {
    req.id = id;
    Ok(Json(s.bus.request::<UpdateCourse>(&ctx, &req).await?))
}

/// Replace the outline: modules and lessons in their new order.
#[utoipa::path(put, path = "/v1/courses/{course}/outline", tag = "catalog", security(("bearer" = [])),
    params(("course" = Uuid, Path)), request_body = PutOutlineRequest,
    responses((status = 200, description = "The working copy", body = Course), (status = 409, description = "Stale version", body = ErrorBody)))]
pub async fn put_outline(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<PutOutlineRequest>,
) -> ApiResult<Json<Course>> {
    req.course_id = id;
    Ok(Json(s.bus.request::<PutOutline>(&ctx, &req).await?))
}

/// Publish the working copy: learners see this version until the next publish.
#[utoipa::path(post, path = "/v1/courses/{course}/publish", tag = "catalog", security(("bearer" = [])),
    params(("course" = Uuid, Path)), request_body = TransitionRequest,
    responses((status = 200, description = "Published", body = Course), (status = 409, description = "Stale version or nothing to publish", body = ErrorBody)))]
pub async fn publish_course(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<TransitionRequest>,
) -> ApiResult<Json<Course>> {
    req.course_id = id;
    Ok(Json(s.bus.request::<PublishCourse>(&ctx, &req).await?))
}

/// Archive: no longer offered.
#[utoipa::path(post, path = "/v1/courses/{course}/archive", tag = "catalog", security(("bearer" = [])),
    params(("course" = Uuid, Path)), request_body = TransitionRequest,
    responses((status = 200, description = "Archived", body = Course), (status = 409, description = "Stale version or already archived", body = ErrorBody)))]
pub async fn archive_course(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<TransitionRequest>,
) -> ApiResult<Json<Course>> {
    req.course_id = id;
    Ok(Json(s.bus.request::<ArchiveCourse>(&ctx, &req).await?))
}
