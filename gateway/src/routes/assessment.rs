//! Assessment routes: question banks and quizzes (a course's instructor), attempts (enrolled
//! learners): start or resume, save answers as they go, submit, read the graded result.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::assessment::{
    Attempt, AttemptIdRequest, Bank, CourseGradebook, CourseGrades, CourseIdRequest, CreateBank, CreateBankRequest,
    CreateQuiz, CreateQuizRequest, GetAttempt, GetQuiz, GetQuizGrade, GradeEssay, GradeEssayRequest, GradebookSetup,
    ManualGradingQueue, ManualQueue, MyGradebook, MyGrades, Quiz, QuizGrade, QuizIdRequest, SaveAnswers,
    SaveAnswersRequest, SavedAnswers, SetGradebook, SetGradebookRequest, StartAttempt, SubmitAttempt,
};
use uuid::Uuid;

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, Ctx};

/// Create a question bank of a course (its instructor or an admin): single and multiple choice,
/// true/false, numeric with tolerance, short text, ordering, essay with a rubric.
#[utoipa::path(post, path = "/v1/courses/{course}/question-banks", tag = "assessment", security(("bearer" = [])),
    params(("course" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    request_body = CreateBankRequest,
    responses(
        (status = 201, description = "The bank with question ids", body = Bank),
        (status = 400, description = "A bad question (named)", body = ErrorBody),
        (status = 403, description = "Not the course's instructor", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another request", body = ErrorBody),
    ))]
pub async fn create_bank(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<CreateBankRequest>,
) -> ApiResult<(StatusCode, Json<Bank>)> {
    req.course_id = course_id;
    Ok((StatusCode::CREATED, Json(s.bus.request::<CreateBank>(&ctx, &req).await?)))
}

/// Create a quiz drawing questions from the course's banks.
#[utoipa::path(post, path = "/v1/courses/{course}/quizzes", tag = "assessment", security(("bearer" = [])),
    params(("course" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    request_body = CreateQuizRequest,
    responses(
        (status = 201, description = "The quiz", body = Quiz),
        (status = 400, description = "Bad settings or draws", body = ErrorBody),
        (status = 403, description = "Not the course's instructor", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another request", body = ErrorBody),
    ))]
pub async fn create_quiz(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<CreateQuizRequest>,
) -> ApiResult<(StatusCode, Json<Quiz>)> {
    req.course_id = course_id;
    Ok((StatusCode::CREATED, Json(s.bus.request::<CreateQuiz>(&ctx, &req).await?)))
}

/// A quiz (enrolled learners, the instructor, admins).
#[utoipa::path(get, path = "/v1/quizzes/{id}", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The quiz", body = Quiz), (status = 404, description = "No such quiz for you", body = ErrorBody)))]
pub async fn get_quiz(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(quiz_id): ApiPath<Uuid>,
) -> ApiResult<Json<Quiz>> {
    Ok(Json(s.bus.request::<GetQuiz>(&ctx, &QuizIdRequest { quiz_id }).await?))
}

/// My grade on a quiz under its scoring policy (highest, latest or average of graded attempts).
#[utoipa::path(get, path = "/v1/quizzes/{id}/grade", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The grade in basis points", body = QuizGrade)))]
pub async fn quiz_grade(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(quiz_id): ApiPath<Uuid>,
) -> ApiResult<Json<QuizGrade>> {
    Ok(Json(s.bus.request::<GetQuizGrade>(&ctx, &QuizIdRequest { quiz_id }).await?))
}

/// Start an attempt, or resume the one in progress (the same paper and deadline). No answers
/// are in the paper.
#[utoipa::path(post, path = "/v1/quizzes/{id}/attempts", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The attempt and its paper", body = Attempt), (status = 409, description = "No attempts left, not open or closed", body = ErrorBody)))]
pub async fn start_attempt(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(quiz_id): ApiPath<Uuid>,
) -> ApiResult<Json<Attempt>> {
    Ok(Json(s.bus.request::<StartAttempt>(&ctx, &QuizIdRequest { quiz_id }).await?))
}

/// One of my attempts: paper and saved answers; once graded, the score and each question's result.
#[utoipa::path(get, path = "/v1/attempts/{id}", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The attempt", body = Attempt), (status = 404, description = "No such attempt of yours", body = ErrorBody)))]
pub async fn get_attempt(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(attempt_id): ApiPath<Uuid>,
) -> ApiResult<Json<Attempt>> {
    Ok(Json(s.bus.request::<GetAttempt>(&ctx, &AttemptIdRequest { attempt_id }).await?))
}

/// Save answers as I go (a reload loses nothing); after the deadline → 409, not counted.
#[utoipa::path(put, path = "/v1/attempts/{id}/answers", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SaveAnswersRequest,
    responses((status = 200, description = "Saved", body = SavedAnswers), (status = 409, description = "Submitted, or time is up", body = ErrorBody)))]
pub async fn save_answers(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(attempt_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<SaveAnswersRequest>,
) -> ApiResult<Json<SavedAnswers>> {
    req.attempt_id = attempt_id;
    Ok(Json(s.bus.request::<SaveAnswers>(&ctx, &req).await?))
}

/// Submit for grading (the grading queue group grades it; essays wait for the instructor).
#[utoipa::path(post, path = "/v1/attempts/{id}/submit", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The submitted attempt", body = Attempt), (status = 404, description = "No such attempt of yours", body = ErrorBody)))]
pub async fn submit_attempt(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(attempt_id): ApiPath<Uuid>,
) -> ApiResult<Json<Attempt>> {
    Ok(Json(s.bus.request::<SubmitAttempt>(&ctx, &AttemptIdRequest { attempt_id }).await?))
}

/// The instructor's queue of essays to grade (with rubric and the learner's text).
#[utoipa::path(get, path = "/v1/quizzes/{id}/grading-queue", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Oldest submission first", body = ManualGradingQueue), (status = 403, description = "Not the course's instructor", body = ErrorBody)))]
pub async fn grading_queue(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(quiz_id): ApiPath<Uuid>,
) -> ApiResult<Json<ManualGradingQueue>> {
    Ok(Json(s.bus.request::<ManualQueue>(&ctx, &QuizIdRequest { quiz_id }).await?))
}

/// Grade an essay by its rubric (one score per criterion) with feedback; the attempt is graded
/// once no essay is left.
#[utoipa::path(post, path = "/v1/attempts/{id}/essays/{question}/grade", tag = "assessment", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("question" = Uuid, Path)), request_body = GradeEssayRequest,
    responses((status = 200, description = "The attempt", body = Attempt), (status = 400, description = "A score above its criterion", body = ErrorBody), (status = 403, description = "Not the course's instructor", body = ErrorBody)))]
pub async fn grade_essay(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath((attempt_id, question_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(mut req): ApiJson<GradeEssayRequest>,
) -> ApiResult<Json<Attempt>> {
    req.attempt_id = attempt_id;
    req.question_id = question_id;
    Ok(Json(s.bus.request::<GradeEssay>(&ctx, &req).await?))
}

/// Set the course's gradebook: weighted categories (summing to 100 %) of quizzes, drop-lowest.
#[utoipa::path(put, path = "/v1/courses/{course}/gradebook", tag = "assessment", security(("bearer" = [])),
    params(("course" = Uuid, Path)), request_body = SetGradebookRequest,
    responses((status = 200, description = "The gradebook", body = GradebookSetup), (status = 400, description = "Weights not 100, unknown quiz", body = ErrorBody)))]
pub async fn set_gradebook(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<SetGradebookRequest>,
) -> ApiResult<Json<GradebookSetup>> {
    req.course_id = course_id;
    Ok(Json(s.bus.request::<SetGradebook>(&ctx, &req).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GradebookQuery {
    /// `csv` for a download.
    #[serde(default)]
    pub format: Option<String>,
}

/// The whole course's gradebook (instructor, admins), as JSON or CSV (`format=csv`).
#[utoipa::path(get, path = "/v1/courses/{course}/gradebook", tag = "assessment", security(("bearer" = [])),
    params(("course" = Uuid, Path), GradebookQuery),
    responses((status = 200, description = "Every learner's grade", body = CourseGradebook), (status = 403, description = "Not the course's instructor", body = ErrorBody)))]
pub async fn course_gradebook(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<GradebookQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let book = s.bus.request::<CourseGrades>(&ctx, &CourseIdRequest { course_id }).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(book).into_response()),
        Some("csv") => {
            let mut response = book.csv.into_response();
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            Ok(response)
        }
        Some(_) => Err(ErrorBody::invalid_field("format", "json or csv").into()),
    }
}

/// My own gradebook in a course: each category, what was dropped, the weighted total so far.
#[utoipa::path(get, path = "/v1/courses/{course}/gradebook/me", tag = "assessment", security(("bearer" = [])),
    params(("course" = Uuid, Path)),
    responses((status = 200, description = "My grades", body = MyGradebook), (status = 404, description = "No gradebook yet", body = ErrorBody)))]
pub async fn my_gradebook(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
) -> ApiResult<Json<MyGradebook>> {
    Ok(Json(s.bus.request::<MyGrades>(&ctx, &CourseIdRequest { course_id }).await?))
}
