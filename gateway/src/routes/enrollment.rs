//! Enrollment routes: enrolling, "my courses", progress, unenrolling, rosters, completion rules
//! and certificates.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coursebus_contracts::ErrorBody;
use coursebus_contracts::enrollment::{
    CancelEnrollment, Certificate, CompletionRules, CompletionRulesRequest, CreateEnrollmentRequest, Enroll,
    Enrollment, EnrollmentDetail, EnrollmentIdRequest, EnrollmentPage, GetCompletionRules, GetEnrollment,
    ListEnrollmentsRequest, ListMyEnrollments, ListRoster, ProgressInput, ProgressReply, RosterPage, RosterQuery,
    RosterRequest, SetCompletionRules, SetCompletionRulesRequest, UpdateProgress, UpdateProgressRequest,
    VerifyCertificate, VerifyCertificateRequest,
};
use uuid::Uuid;

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, Ctx};

/// Enrol the caller in a free published course. An existing enrolment in the course is returned
/// with 200 (enrolling twice never makes two); a retry with the same `Idempotency-Key` gets the
/// first answer back.
#[utoipa::path(post, path = "/v1/enrollments", tag = "enrollment", security(("bearer" = [])),
    request_body = CreateEnrollmentRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 201, description = "Enrolled", body = Enrollment),
        (status = 200, description = "Already enrolled: the existing enrolment", body = Enrollment),
        (status = 402, description = "A paid course", body = ErrorBody),
        (status = 404, description = "No such published course", body = ErrorBody),
        (status = 409, description = "Prerequisites missing (`details.missing_prerequisites`)", body = ErrorBody),
    ))]
pub async fn enroll(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<CreateEnrollmentRequest>,
) -> ApiResult<Response> {
    let reply = s.bus.request::<Enroll>(&ctx, &req).await?;
    let status = if reply.created { StatusCode::CREATED } else { StatusCode::OK };
    let location = HeaderValue::from_str(&format!("/v1/enrollments/{}", reply.enrollment.id)).ok();
    let mut response = (status, Json(reply.enrollment)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The caller's enrolments ("my courses"), newest first.
#[utoipa::path(get, path = "/v1/enrollments", tag = "enrollment", security(("bearer" = [])),
    params(ListEnrollmentsRequest),
    responses((status = 200, description = "A page of enrolments", body = EnrollmentPage), (status = 400, description = "Bad filter", body = ErrorBody)))]
pub async fn list_my_enrollments(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<ListEnrollmentsRequest>,
) -> ApiResult<Json<EnrollmentPage>> {
    Ok(Json(s.bus.request::<ListMyEnrollments>(&ctx, &req).await?))
}

/// One of the caller's enrolments with every module (and when it opens) and lesson progress.
#[utoipa::path(get, path = "/v1/enrollments/{id}", tag = "enrollment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The enrolment", body = EnrollmentDetail), (status = 404, description = "No such enrolment of yours", body = ErrorBody)))]
pub async fn get_enrollment(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<EnrollmentDetail>> {
    Ok(Json(s.bus.request::<GetEnrollment>(&ctx, &EnrollmentIdRequest { id }).await?))
}

/// Unenrol. Unenrolling twice is harmless; a completed course cannot be unenrolled.
#[utoipa::path(delete, path = "/v1/enrollments/{id}", tag = "enrollment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The cancelled enrolment", body = Enrollment),
        (status = 404, description = "No such enrolment of yours", body = ErrorBody),
        (status = 409, description = "Already completed", body = ErrorBody),
    ))]
pub async fn cancel_enrollment(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Enrollment>> {
    Ok(Json(s.bus.request::<CancelEnrollment>(&ctx, &EnrollmentIdRequest { id }).await?))
}

/// Report progress in a lesson. Progress never goes back; completing the last required lesson
/// completes the course and issues a certificate.
#[utoipa::path(put, path = "/v1/enrollments/{id}/lessons/{lesson_id}/progress", tag = "enrollment",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("lesson_id" = Uuid, Path)), request_body = ProgressInput,
    responses(
        (status = 200, description = "The lesson and the enrolment after the update", body = ProgressReply),
        (status = 403, description = "The lesson's module has not opened yet (`details.available_at`)", body = ErrorBody),
        (status = 404, description = "No such enrolment of yours or no such lesson in it", body = ErrorBody),
        (status = 409, description = "The enrolment was cancelled", body = ErrorBody),
    ))]
pub async fn update_progress(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath((id, lesson_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(input): ApiJson<ProgressInput>,
) -> ApiResult<Json<ProgressReply>> {
    let req = UpdateProgressRequest::new(id, lesson_id, input);
    Ok(Json(s.bus.request::<UpdateProgress>(&ctx, &req).await?))
}

/// A course's learners with their progress (the course's instructor and admins).
#[utoipa::path(get, path = "/v1/courses/{course}/roster", tag = "enrollment", security(("bearer" = [])),
    params(("course" = String, Path, description = "Id or slug"), RosterQuery),
    responses(
        (status = 200, description = "A page of learners", body = RosterPage),
        (status = 403, description = "Not the course's instructor", body = ErrorBody),
        (status = 404, description = "No such course", body = ErrorBody),
    ))]
pub async fn course_roster(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course): ApiPath<String>,
    ApiQuery(query): ApiQuery<RosterQuery>,
) -> ApiResult<Json<RosterPage>> {
    Ok(Json(s.bus.request::<ListRoster>(&ctx, &RosterRequest::new(course, query)).await?))
}

/// Replace the course's completion rules (its instructor and admins): besides every required
/// lesson, completing the course takes the learner's latest grade on each listed quiz or
/// assignment at or above its minimum. Learners already completed stay completed.
#[utoipa::path(put, path = "/v1/courses/{course}/completion-rules", tag = "enrollment", security(("bearer" = [])),
    params(("course" = Uuid, Path)), request_body = SetCompletionRulesRequest,
    responses(
        (status = 200, description = "The rules now in force", body = CompletionRules),
        (status = 400, description = "A bad rule (`details.field`: `min_percent_bp`, `title`, `item_id`, `rules`)", body = ErrorBody),
        (status = 403, description = "Not the course's instructor", body = ErrorBody),
        (status = 404, description = "No such course", body = ErrorBody),
    ))]
pub async fn set_completion_rules(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<SetCompletionRulesRequest>,
) -> ApiResult<Json<CompletionRules>> {
    req.course_id = course_id;
    Ok(Json(s.bus.request::<SetCompletionRules>(&ctx, &req).await?))
}

/// The course's completion rules (its instructor, admins and enrolled learners; a learner's own
/// grades on them are in `GET /v1/enrollments/{id}`).
#[utoipa::path(get, path = "/v1/courses/{course}/completion-rules", tag = "enrollment", security(("bearer" = [])),
    params(("course" = Uuid, Path)),
    responses(
        (status = 200, description = "The rules (none: lessons only)", body = CompletionRules),
        (status = 403, description = "Neither enrolled nor the course's instructor", body = ErrorBody),
        (status = 404, description = "No such course", body = ErrorBody),
    ))]
pub async fn get_completion_rules(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
) -> ApiResult<Json<CompletionRules>> {
    Ok(Json(s.bus.request::<GetCompletionRules>(&ctx, &CompletionRulesRequest { course_id }).await?))
}

/// Verify a certificate of completion by its code (public: no token needed).
#[utoipa::path(get, path = "/v1/certificates/{code}", tag = "enrollment",
    params(("code" = String, Path, description = "The verification code")),
    responses((status = 200, description = "The certificate", body = Certificate), (status = 404, description = "No certificate with this code", body = ErrorBody)))]
pub async fn verify_certificate(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<Json<Certificate>> {
    Ok(Json(s.bus.request::<VerifyCertificate>(&ctx, &VerifyCertificateRequest { code }).await?))
}
