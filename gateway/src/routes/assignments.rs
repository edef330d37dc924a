//! Assignment routes: the instructor creates an assignment, grades hand-ins by its rubric,
//! releases the grades and reads the plagiarism reports; enrolled learners hand in text or an
//! uploaded file (a content asset of kind `submission`) and read their own submission.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::assessment::{
    Assignment, AssignmentIdRequest, AssignmentSubmissions, CreateAssignment, CreateAssignmentRequest, GetAssignment,
    GetSimilarity, GradeSubmission, GradeSubmissionRequest, ListSubmissions, MySubmission, ReleaseGrades,
    SimilarityReport, Submission, SubmitAssignment, SubmitAssignmentRequest,
};
use uuid::Uuid;

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, Caller, Ctx};

/// Create an assignment of a course (its instructor or an admin): a rubric, a due date, a late
/// policy (grace period, penalty per day, hard cut-off).
#[utoipa::path(post, path = "/v1/courses/{course}/assignments", tag = "assessment", security(("bearer" = [])),
    params(("course" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    request_body = CreateAssignmentRequest,
    responses(
        (status = 201, description = "The assignment", body = Assignment),
        (status = 400, description = "Bad settings (named)", body = ErrorBody),
        (status = 403, description = "Not the course's instructor", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another request", body = ErrorBody),
    ))]
pub async fn create_assignment(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<CreateAssignmentRequest>,
) -> ApiResult<(StatusCode, Json<Assignment>)> {
    req.course_id = course_id;
    Ok((StatusCode::CREATED, Json(s.bus.request::<CreateAssignment>(&ctx, &req).await?)))
}

/// An assignment (enrolled learners, the instructor, admins).
#[utoipa::path(get, path = "/v1/assignments/{id}", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The assignment", body = Assignment), (status = 404, description = "No such assignment for you", body = ErrorBody)))]
pub async fn get_assignment(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(assignment_id): ApiPath<Uuid>,
) -> ApiResult<Json<Assignment>> {
    Ok(Json(s.bus.request::<GetAssignment>(&ctx, &AssignmentIdRequest { assignment_id }).await?))
}

/// Hand in (or hand in again until the due date). Late hand-ins carry their penalty; after the
/// cut-off → 409.
#[utoipa::path(put, path = "/v1/assignments/{id}/submission", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SubmitAssignmentRequest,
    responses((status = 200, description = "The submission", body = Submission), (status = 400, description = "Missing text or file, a bad upload", body = ErrorBody), (status = 409, description = "Past the cut-off, or resubmitting after the due date", body = ErrorBody)))]
pub async fn submit(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(assignment_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<SubmitAssignmentRequest>,
) -> ApiResult<Json<Submission>> {
    req.assignment_id = assignment_id;
    Ok(Json(s.bus.request::<SubmitAssignment>(&ctx, &req).await?))
}

/// My submission (its grade once released).
#[utoipa::path(get, path = "/v1/assignments/{id}/submission", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "My submission", body = Submission), (status = 404, description = "Not handed in", body = ErrorBody)))]
pub async fn my_submission(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(assignment_id): ApiPath<Uuid>,
) -> ApiResult<Json<Submission>> {
    Ok(Json(s.bus.request::<MySubmission>(&ctx, &AssignmentIdRequest { assignment_id }).await?))
}

/// Every learner's submission with its grade (the instructor).
#[utoipa::path(get, path = "/v1/assignments/{id}/submissions", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The submissions", body = AssignmentSubmissions), (status = 403, description = "Not the course's instructor", body = ErrorBody)))]
pub async fn list_submissions(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(assignment_id): ApiPath<Uuid>,
) -> ApiResult<Json<AssignmentSubmissions>> {
    Ok(Json(s.bus.request::<ListSubmissions>(&ctx, &AssignmentIdRequest { assignment_id }).await?))
}

/// Grade a submission by the rubric (one score per criterion, with feedback); the late penalty
/// is applied.
#[utoipa::path(post, path = "/v1/submissions/{id}/grade", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = GradeSubmissionRequest,
    responses((status = 200, description = "The graded submission", body = Submission), (status = 400, description = "Scores do not fit the rubric", body = ErrorBody), (status = 403, description = "Not the course's instructor", body = ErrorBody)))]
pub async fn grade_submission(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(submission_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<GradeSubmissionRequest>,
) -> ApiResult<Json<Submission>> {
    req.submission_id = submission_id;
    Ok(Json(s.bus.request::<GradeSubmission>(&ctx, &req).await?))
}

/// Release the assignment's grades to its learners.
#[utoipa::path(post, path = "/v1/assignments/{id}/release", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The assignment, released", body = Assignment), (status = 403, description = "Not the course's instructor", body = ErrorBody)))]
pub async fn release_grades(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(assignment_id): ApiPath<Uuid>,
) -> ApiResult<Json<Assignment>> {
    Ok(Json(s.bus.request::<ReleaseGrades>(&ctx, &AssignmentIdRequest { assignment_id }).await?))
}

/// The plagiarism reports: for each text submission its closest matches and the passages they
/// share.
#[utoipa::path(get, path = "/v1/assignments/{id}/similarity", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The reports", body = SimilarityReport), (status = 403, description = "Not the course's instructor", body = ErrorBody)))]
pub async fn similarity(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(assignment_id): ApiPath<Uuid>,
) -> ApiResult<Json<SimilarityReport>> {
    Ok(Json(s.bus.request::<GetSimilarity>(&ctx, &AssignmentIdRequest { assignment_id }).await?))
}
