//! Assessment's PostgreSQL store. Every function takes a connection so callers compose them in
//! one transaction with the outbox.

use coursebus_contracts::assessment::{
    Answer, AnswerValue, Assignment, Attempt, AttemptStatus, Bank, Category, CriterionScore, Draw, GradebookSetup,
    Item, LatePolicy, PaperQuestion, Question, QuestionBody, QuestionResult, Quiz, RubricCriterion, ScoringPolicy,
    SimilarityMatch, Submission, SubmissionGrade, SubmissionStatus, SubmissionType,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

pub type Result<T> = std::result::Result<T, sqlx::Error>;

fn corrupt(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected stored {what}").into())
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Hold the lock named `name` until the transaction on `conn` ends: creating requests with one
/// `Idempotency-Key` take it, so they run one after the other.
pub async fn lock_key(conn: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(name).execute(conn).await?;
    Ok(())
}

pub async fn insert_bank(conn: &mut PgConnection, bank: &Bank, by: Uuid) -> Result<()> {
    sqlx::query("INSERT INTO banks (id, course_id, title, created_by) VALUES ($1, $2, $3, $4)")
        .bind(bank.id)
        .bind(bank.course_id)
        .bind(&bank.title)
        .bind(by)
        .execute(&mut *conn)
        .await?;
    for (position, q) in bank.questions.iter().enumerate() {
        sqlx::query(
            "INSERT INTO questions (id, bank_id, position, prompt, points, body) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(q.id)
        .bind(bank.id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(&q.prompt)
        .bind(int(q.points))
        .bind(Json(&q.body))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The course a bank belongs to and its questions (in authoring order).
pub async fn bank(conn: &mut PgConnection, id: Uuid) -> Result<Option<(Uuid, Vec<Question>)>> {
    let course: Option<Uuid> =
        sqlx::query_scalar("SELECT course_id FROM banks WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
    let Some(course) = course else { return Ok(None) };
    let rows: Vec<(Uuid, String, i32, Json<QuestionBody>)> =
        sqlx::query_as("SELECT id, prompt, points, body FROM questions WHERE bank_id = $1 ORDER BY position")
            .bind(id)
            .fetch_all(conn)
            .await?;
    let questions = rows
        .into_iter()
        .map(|(id, prompt, points, body)| Question { id, prompt, points: count(points), body: body.0 })
        .collect();
    Ok(Some((course, questions)))
}

/// Questions by id, in the order of `ids`.
pub async fn questions(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Question>> {
    let rows: Vec<(Uuid, String, i32, Json<QuestionBody>)> =
        sqlx::query_as("SELECT id, prompt, points, body FROM questions WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let (id, prompt, points, body) =
            rows.iter().find(|r| r.0 == *id).cloned().ok_or_else(|| corrupt("paper question"))?;
        out.push(Question { id, prompt, points: count(points), body: body.0 });
    }
    Ok(out)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QuizRow {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub draws: Json<Vec<Draw>>,
    pub time_limit_secs: Option<i32>,
    pub max_attempts: i32,
    pub opens_at: Option<OffsetDateTime>,
    pub closes_at: Option<OffsetDateTime>,
    pub scoring: String,
    pub question_count: i32,
}

impl QuizRow {
    pub fn scoring(&self) -> Result<ScoringPolicy> {
        match self.scoring.as_str() {
            "highest" => Ok(ScoringPolicy::Highest),
            "latest" => Ok(ScoringPolicy::Latest),
            "average" => Ok(ScoringPolicy::Average),
            _ => Err(corrupt("scoring policy")),
        }
    }

    pub fn to_quiz(&self) -> Result<Quiz> {
        Ok(Quiz {
            id: self.id,
            course_id: self.course_id,
            title: self.title.clone(),
            draws: self.draws.0.clone(),
            time_limit_secs: self.time_limit_secs.and_then(|t| u32::try_from(t).ok()),
            max_attempts: count(self.max_attempts),
            opens_at: self.opens_at,
            closes_at: self.closes_at,
            scoring: self.scoring()?,
            question_count: count(self.question_count),
        })
    }
}

pub async fn insert_quiz(conn: &mut PgConnection, quiz: &Quiz, by: Uuid) -> Result<()> {
    let scoring = match quiz.scoring {
        ScoringPolicy::Highest => "highest",
        ScoringPolicy::Latest => "latest",
        ScoringPolicy::Average => "average",
    };
    sqlx::query(
        "INSERT INTO quizzes (id, course_id, title, draws, time_limit_secs, max_attempts, opens_at, closes_at, scoring, \
         question_count, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(quiz.id)
    .bind(quiz.course_id)
    .bind(&quiz.title)
    .bind(Json(&quiz.draws))
    .bind(quiz.time_limit_secs.map(int))
    .bind(int(quiz.max_attempts))
    .bind(quiz.opens_at)
    .bind(quiz.closes_at)
    .bind(scoring)
    .bind(int(quiz.question_count))
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn quiz(conn: &mut PgConnection, id: Uuid) -> Result<Option<QuizRow>> {
    sqlx::query_as(
        "SELECT id, course_id, title, draws, time_limit_secs, max_attempts, opens_at, closes_at, scoring, question_count \
         FROM quizzes WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: Uuid,
    pub quiz_id: Uuid,
    pub user_id: Uuid,
    pub number: i32,
    pub status: String,
    pub paper: Json<Vec<PaperQuestion>>,
    pub max_points: i32,
    pub started_at: OffsetDateTime,
    pub deadline: Option<OffsetDateTime>,
    pub submitted_at: Option<OffsetDateTime>,
    pub score_hundredths: Option<i32>,
    pub results: Option<Json<Vec<QuestionResult>>>,
}

impl AttemptRow {
    pub fn status(&self) -> Result<AttemptStatus> {
        AttemptStatus::parse(&self.status).ok_or_else(|| corrupt("attempt status"))
    }

    /// As its learner sees it: results only once graded.
    pub fn to_attempt(&self, answers: Vec<Answer>) -> Result<Attempt> {
        let status = self.status()?;
        let graded = matches!(status, AttemptStatus::Graded | AttemptStatus::NeedsManualGrading);
        Ok(Attempt {
            id: self.id,
            quiz_id: self.quiz_id,
            user_id: self.user_id,
            number: count(self.number),
            status,
            started_at: self.started_at,
            deadline: self.deadline,
            submitted_at: self.submitted_at,
            paper: self.paper.0.clone(),
            answers,
            score_hundredths: if graded { self.score_hundredths.map(count) } else { None },
            max_points: count(self.max_points),
            results: if graded { self.results.as_ref().map(|r| r.0.clone()).unwrap_or_default() } else { Vec::new() },
        })
    }
}

const ATTEMPT_COLUMNS: &str = "id, quiz_id, user_id, number, status, paper, max_points, started_at, deadline, \
     submitted_at, score_hundredths, results";

pub async fn attempt(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<Option<AttemptRow>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = $1{lock}")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The learner's attempts at a quiz, oldest first, locked (starting one is serialised).
pub async fn attempts_of(conn: &mut PgConnection, quiz: Uuid, user: Uuid, lock: bool) -> Result<Vec<AttemptRow>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE quiz_id = $1 AND user_id = $2 ORDER BY number{lock}"
    )))
    .bind(quiz)
    .bind(user)
    .fetch_all(conn)
    .await
}

/// A learner's first attempt, in one statement: inserted only if `learner_enrolments` knows the
/// learner enrolled in `course` and the learner has no attempt at the quiz yet (`false`
/// otherwise: the caller takes the long way).
pub async fn insert_first_attempt(pool: &PgPool, a: &AttemptRow, course: Uuid) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO attempts (id, quiz_id, user_id, number, status, paper, max_points, started_at, deadline) \
         SELECT $1, $2, $3, 1, 'in_progress', $4, $5, $6, $7 \
         WHERE EXISTS (SELECT 1 FROM learner_enrolments WHERE user_id = $3 AND course_id = $8 AND live) \
         ON CONFLICT DO NOTHING",
    )
    .bind(a.id)
    .bind(a.quiz_id)
    .bind(a.user_id)
    .bind(&a.paper)
    .bind(a.max_points)
    .bind(a.started_at)
    .bind(a.deadline)
    .bind(course)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `learner_enrolments` knows the learner enrolled in the course.
pub async fn known_enrolled(pool: &PgPool, user: Uuid, course: Uuid) -> Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM learner_enrolments WHERE user_id = $1 AND course_id = $2 AND live)",
    )
    .bind(user)
    .bind(course)
    .fetch_one(pool)
    .await
}

/// Record what enrollment said of an enrolment: live (created) or not (cancelled). A cancelled
/// enrolment stays cancelled whatever arrives later; a live one is recorded once.
pub async fn project_enrolment(pool: &PgPool, enrollment: Uuid, user: Uuid, course: Uuid, live: bool) -> Result<()> {
    let query = if live {
        "INSERT INTO learner_enrolments (enrollment_id, user_id, course_id, live) VALUES ($1, $2, $3, true) \
         ON CONFLICT (enrollment_id) DO NOTHING"
    } else {
        "INSERT INTO learner_enrolments (enrollment_id, user_id, course_id, live) VALUES ($1, $2, $3, false) \
         ON CONFLICT (enrollment_id) DO UPDATE SET live = false"
    };
    sqlx::query(query).bind(enrollment).bind(user).bind(course).execute(pool).await?;
    Ok(())
}

pub async fn insert_attempt(conn: &mut PgConnection, a: &AttemptRow) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO attempts (id, quiz_id, user_id, number, status, paper, max_points, started_at, deadline) \
         VALUES ($1, $2, $3, $4, 'in_progress', $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(a.id)
    .bind(a.quiz_id)
    .bind(a.user_id)
    .bind(a.number)
    .bind(&a.paper)
    .bind(a.max_points)
    .bind(a.started_at)
    .bind(a.deadline)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn mark_submitted(conn: &mut PgConnection, id: Uuid, at: OffsetDateTime) -> Result<()> {
    sqlx::query("UPDATE attempts SET status = 'submitted', submitted_at = $2 WHERE id = $1 AND status = 'in_progress'")
        .bind(id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Save (or replace) answers, in one statement.
pub async fn save_answers(
    conn: &mut PgConnection,
    attempt: Uuid,
    answers: &[Answer],
    at: OffsetDateTime,
) -> Result<()> {
    if answers.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = answers.iter().map(|a| a.question_id).collect();
    let values: Vec<Json<&AnswerValue>> = answers.iter().map(|a| Json(&a.value)).collect();
    sqlx::query(
        "INSERT INTO answers (attempt_id, question_id, value, saved_at) \
         SELECT $1, q, v, $4 FROM unnest($2::uuid[], $3::jsonb[]) AS t(q, v) \
         ON CONFLICT (attempt_id, question_id) DO UPDATE SET value = EXCLUDED.value, saved_at = EXCLUDED.saved_at",
    )
    .bind(attempt)
    .bind(&ids)
    .bind(&values)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The answers saved, with when.
pub async fn answers(conn: &mut PgConnection, attempt: Uuid) -> Result<Vec<(Answer, OffsetDateTime)>> {
    let rows: Vec<(Uuid, Json<AnswerValue>, OffsetDateTime)> =
        sqlx::query_as("SELECT question_id, value, saved_at FROM answers WHERE attempt_id = $1 ORDER BY question_id")
            .bind(attempt)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(question_id, value, at)| (Answer { question_id, value: value.0 }, at)).collect())
}

pub async fn record_grade(
    conn: &mut PgConnection,
    id: Uuid,
    status: AttemptStatus,
    score: u32,
    results: &[QuestionResult],
    by: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE attempts SET status = $2, score_hundredths = $3, results = $4, graded_by = $5, graded_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(int(score))
    .bind(Json(results))
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

/// In-progress attempts whose deadline passed (submitted by the sweeper).
pub async fn overdue(conn: &mut PgConnection, now: OffsetDateTime, limit: i64) -> Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM attempts WHERE status = 'in_progress' AND deadline < $1 ORDER BY deadline LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Attempts whose essays wait for the instructor, oldest submission first.
pub async fn manual_queue(conn: &mut PgConnection, quiz: Uuid) -> Result<Vec<AttemptRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE quiz_id = $1 AND status = 'needs_manual_grading' \
         ORDER BY submitted_at, id"
    )))
    .bind(quiz)
    .fetch_all(conn)
    .await
}

pub async fn save_gradebook(conn: &mut PgConnection, setup: &GradebookSetup, by: Uuid) -> Result<()> {
    sqlx::query(
        "INSERT INTO gradebooks (course_id, categories, items, updated_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (course_id) DO UPDATE SET categories = EXCLUDED.categories, items = EXCLUDED.items, \
         updated_by = EXCLUDED.updated_by, updated_at = now()",
    )
    .bind(setup.course_id)
    .bind(Json(&setup.categories))
    .bind(Json(&setup.items))
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct GradebookRow {
    categories: Json<Vec<Category>>,
    items: Json<Vec<Item>>,
}

pub async fn gradebook(conn: &mut PgConnection, course: Uuid) -> Result<Option<GradebookSetup>> {
    let row: Option<GradebookRow> = sqlx::query_as("SELECT categories, items FROM gradebooks WHERE course_id = $1")
        .bind(course)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| GradebookSetup { course_id: course, categories: r.categories.0, items: r.items.0 }))
}

/// Graded attempts at the course's quizzes: (quiz, learner, score hundredths, max points, scoring),
/// oldest first per learner and quiz.
pub async fn graded_attempts(
    conn: &mut PgConnection,
    course: Uuid,
    learner: Option<Uuid>,
) -> Result<Vec<(Uuid, Uuid, i32, i32, String)>> {
    sqlx::query_as(
        "SELECT a.quiz_id, a.user_id, coalesce(a.score_hundredths, 0), a.max_points, q.scoring \
         FROM attempts a JOIN quizzes q ON q.id = a.quiz_id \
         WHERE q.course_id = $1 AND a.status = 'graded' AND ($2::uuid IS NULL OR a.user_id = $2) \
         ORDER BY a.user_id, a.quiz_id, a.number",
    )
    .bind(course)
    .bind(learner)
    .fetch_all(conn)
    .await
}

// -- assignments -------------------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssignmentRow {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub instructions: String,
    pub submission_type: String,
    pub rubric: Json<Vec<RubricCriterion>>,
    pub max_points: i32,
    pub due_at: OffsetDateTime,
    pub grace_minutes: i32,
    pub penalty_percent_per_day: i32,
    pub cutoff_at: Option<OffsetDateTime>,
    pub check_plagiarism: bool,
    pub released_at: Option<OffsetDateTime>,
}

const ASSIGNMENT_COLUMNS: &str = "id, course_id, title, instructions, submission_type, rubric, max_points, due_at, \
     grace_minutes, penalty_percent_per_day, cutoff_at, check_plagiarism, released_at";

impl AssignmentRow {
    pub fn late_policy(&self) -> LatePolicy {
        LatePolicy {
            grace_minutes: count(self.grace_minutes),
            penalty_percent_per_day: count(self.penalty_percent_per_day),
            cutoff_at: self.cutoff_at,
        }
    }

    pub fn submission_type(&self) -> Result<SubmissionType> {
        SubmissionType::parse(&self.submission_type).ok_or_else(|| corrupt("submission type"))
    }

    pub fn to_assignment(&self) -> Result<Assignment> {
        Ok(Assignment {
            id: self.id,
            course_id: self.course_id,
            title: self.title.clone(),
            instructions: self.instructions.clone(),
            submission_type: self.submission_type()?,
            rubric: self.rubric.0.clone(),
            max_points: count(self.max_points),
            due_at: self.due_at,
            late_policy: self.late_policy(),
            check_plagiarism: self.check_plagiarism,
            released_at: self.released_at,
        })
    }
}

pub async fn insert_assignment(conn: &mut PgConnection, a: &Assignment, by: Uuid) -> Result<()> {
    sqlx::query(
        "INSERT INTO assignments (id, course_id, title, instructions, submission_type, rubric, max_points, due_at, \
         grace_minutes, penalty_percent_per_day, cutoff_at, check_plagiarism, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(a.id)
    .bind(a.course_id)
    .bind(&a.title)
    .bind(&a.instructions)
    .bind(a.submission_type.as_str())
    .bind(Json(&a.rubric))
    .bind(int(a.max_points))
    .bind(a.due_at)
    .bind(int(a.late_policy.grace_minutes))
    .bind(int(a.late_policy.penalty_percent_per_day))
    .bind(a.late_policy.cutoff_at)
    .bind(a.check_plagiarism)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn assignment(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<Option<AssignmentRow>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = $1{lock}")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Release the grades of an assignment (once); the release time.
pub async fn release(conn: &mut PgConnection, id: Uuid, at: OffsetDateTime) -> Result<OffsetDateTime> {
    sqlx::query_scalar(
        "UPDATE assignments SET released_at = coalesce(released_at, $2) WHERE id = $1 RETURNING released_at",
    )
    .bind(id)
    .bind(at)
    .fetch_one(conn)
    .await
}

/// An instructor's grade of a submission as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredGrade {
    pub scores: Vec<CriterionScore>,
    pub feedback: Option<String>,
    pub raw_points: u32,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubmissionRow {
    pub id: Uuid,
    pub assignment_id: Uuid,
    pub user_id: Uuid,
    pub version: i32,
    pub text: Option<String>,
    pub asset_id: Option<Uuid>,
    pub submitted_at: OffsetDateTime,
    pub late_days: i32,
    pub penalty_percent: i32,
    pub grade: Option<Json<StoredGrade>>,
    pub points_hundredths: Option<i32>,
}

const SUBMISSION_COLUMNS: &str = "id, assignment_id, user_id, version, text, asset_id, submitted_at, late_days, \
     penalty_percent, grade, points_hundredths";

impl SubmissionRow {
    /// The submission; its grade only when `show_grade` (the instructor, or released).
    pub fn to_submission(&self, max_points: u32, released: bool, show_grade: bool) -> Submission {
        let grade = self.grade.as_ref().filter(|_| show_grade).map(|g| {
            let points = count(self.points_hundredths.unwrap_or(0));
            SubmissionGrade {
                scores: g.0.scores.clone(),
                feedback: g.0.feedback.clone(),
                raw_points: g.0.raw_points,
                penalty_percent: count(self.penalty_percent),
                points_hundredths: points,
                max_points,
                percent_bp: crate::domain::percent_bp(points, max_points),
                released,
            }
        });
        Submission {
            id: self.id,
            assignment_id: self.assignment_id,
            user_id: self.user_id,
            version: count(self.version),
            text: self.text.clone(),
            asset_id: self.asset_id,
            submitted_at: self.submitted_at,
            late_days: count(self.late_days),
            penalty_percent: count(self.penalty_percent),
            status: if self.grade.is_some() { SubmissionStatus::Graded } else { SubmissionStatus::Submitted },
            grade,
        }
    }
}

pub async fn submission_of(
    conn: &mut PgConnection,
    assignment: Uuid,
    user: Uuid,
    lock: bool,
) -> Result<Option<SubmissionRow>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE assignment_id = $1 AND user_id = $2{lock}"
    )))
    .bind(assignment)
    .bind(user)
    .fetch_optional(conn)
    .await
}

pub async fn submission(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<Option<SubmissionRow>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE id = $1{lock}")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Every learner's current submission, oldest hand-in first.
pub async fn submissions(conn: &mut PgConnection, assignment: Uuid) -> Result<Vec<SubmissionRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE assignment_id = $1 ORDER BY submitted_at, id"
    )))
    .bind(assignment)
    .fetch_all(conn)
    .await
}

/// A first hand-in (`false` when the learner's row already exists: lock it and resubmit).
pub async fn insert_submission(conn: &mut PgConnection, s: &SubmissionRow) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO submissions (id, assignment_id, user_id, version, text, asset_id, submitted_at, late_days, \
         penalty_percent) VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8) ON CONFLICT (assignment_id, user_id) DO NOTHING",
    )
    .bind(s.id)
    .bind(s.assignment_id)
    .bind(s.user_id)
    .bind(&s.text)
    .bind(s.asset_id)
    .bind(s.submitted_at)
    .bind(s.late_days)
    .bind(s.penalty_percent)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A resubmission: the new content, the next version, no grade.
pub async fn resubmit(
    conn: &mut PgConnection,
    id: Uuid,
    text: Option<&str>,
    asset: Option<Uuid>,
    at: OffsetDateTime,
) -> Result<SubmissionRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE submissions SET version = version + 1, text = $2, asset_id = $3, submitted_at = $4, late_days = 0, \
         penalty_percent = 0, grade = NULL, points_hundredths = NULL, graded_by = NULL, graded_at = NULL \
         WHERE id = $1 RETURNING {SUBMISSION_COLUMNS}"
    )))
    .bind(id)
    .bind(text)
    .bind(asset)
    .bind(at)
    .fetch_one(conn)
    .await
}

pub async fn grade_submission(
    conn: &mut PgConnection,
    id: Uuid,
    grade: &StoredGrade,
    points_hundredths: u32,
    by: Uuid,
    at: OffsetDateTime,
) -> Result<SubmissionRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE submissions SET grade = $2, points_hundredths = $3, graded_by = $4, graded_at = $5 \
         WHERE id = $1 RETURNING {SUBMISSION_COLUMNS}"
    )))
    .bind(id)
    .bind(Json(grade))
    .bind(int(points_hundredths))
    .bind(by)
    .bind(at)
    .fetch_one(conn)
    .await
}

/// Released assignment grades of a course: (assignment, learner, points hundredths).
pub async fn released_submissions(
    conn: &mut PgConnection,
    course: Uuid,
    learner: Option<Uuid>,
) -> Result<Vec<(Uuid, Uuid, i32)>> {
    sqlx::query_as(
        "SELECT s.assignment_id, s.user_id, s.points_hundredths FROM submissions s \
         JOIN assignments a ON a.id = s.assignment_id \
         WHERE a.course_id = $1 AND a.released_at IS NOT NULL AND s.points_hundredths IS NOT NULL \
         AND ($2::uuid IS NULL OR s.user_id = $2) ORDER BY s.user_id, s.assignment_id",
    )
    .bind(course)
    .bind(learner)
    .fetch_all(conn)
    .await
}

/// Serialise the plagiarism checks of one assignment (transaction-scoped).
pub async fn lock_assignment_checks(conn: &mut PgConnection, assignment: Uuid) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))").bind(assignment).execute(conn).await?;
    Ok(())
}

pub async fn save_report(
    conn: &mut PgConnection,
    submission: Uuid,
    version: i32,
    matches: &[SimilarityMatch],
    at: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO similarity_reports (submission_id, version, matches, checked_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (submission_id) DO UPDATE SET version = $2, matches = $3, checked_at = $4",
    )
    .bind(submission)
    .bind(version)
    .bind(Json(matches))
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The stored reports of an assignment's submissions: (submission, version, matches).
pub async fn reports(
    conn: &mut PgConnection,
    assignment: Uuid,
) -> Result<Vec<(Uuid, i32, Json<Vec<SimilarityMatch>>)>> {
    sqlx::query_as(
        "SELECT r.submission_id, r.version, r.matches FROM similarity_reports r \
         JOIN submissions s ON s.id = r.submission_id WHERE s.assignment_id = $1",
    )
    .bind(assignment)
    .fetch_all(conn)
    .await
}

// -- the replica's cache of what never changes -------------------------------------------------

type Shelf<V> = Mutex<HashMap<Uuid, V>>;

/// A bank's course and its questions.
pub type BankRow = (Uuid, Vec<Question>);

/// Quizzes and questions are never edited (a changed question is a new one), so each replica
/// keeps the ones it has read: a quiz start or a grading job then reads only the attempt's own
/// rows. Bounded: past [`Cache::LIMIT`] entries a map starts over.
#[derive(Debug, Default)]
pub struct Cache {
    quizzes: Shelf<Arc<QuizRow>>,
    banks: Shelf<Arc<BankRow>>,
    questions: Shelf<Question>,
}

fn remember<V: Clone>(map: &Shelf<V>, id: Uuid, value: &V) {
    let mut map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if map.len() >= Cache::LIMIT {
        map.clear();
    }
    map.insert(id, value.clone());
}

fn recall<V: Clone>(map: &Shelf<V>, id: &Uuid) -> Option<V> {
    map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
}

impl Cache {
    pub const LIMIT: usize = 10_000;

    pub async fn quiz(&self, conn: &mut PgConnection, id: Uuid) -> Result<Option<Arc<QuizRow>>> {
        if let Some(quiz) = recall(&self.quizzes, &id) {
            return Ok(Some(quiz));
        }
        let Some(quiz) = quiz(conn, id).await? else { return Ok(None) };
        let quiz = Arc::new(quiz);
        remember(&self.quizzes, id, &quiz);
        Ok(Some(quiz))
    }

    /// [`Cache::quiz`] taking a connection from `pool` only when it is not in memory.
    pub async fn quiz_from(&self, pool: &PgPool, id: Uuid) -> Result<Option<Arc<QuizRow>>> {
        match recall(&self.quizzes, &id) {
            Some(quiz) => Ok(Some(quiz)),
            None => self.quiz(&mut *pool.acquire().await?, id).await,
        }
    }

    /// A bank's course and questions (see [`bank`]).
    pub async fn bank(&self, conn: &mut PgConnection, id: Uuid) -> Result<Option<Arc<BankRow>>> {
        if let Some(bank) = recall(&self.banks, &id) {
            return Ok(Some(bank));
        }
        let Some(bank) = bank(conn, id).await? else { return Ok(None) };
        let bank = Arc::new(bank);
        remember(&self.banks, id, &bank);
        Ok(Some(bank))
    }

    /// [`Cache::bank`] taking a connection from `pool` only when it is not in memory.
    pub async fn bank_from(&self, pool: &PgPool, id: Uuid) -> Result<Option<Arc<BankRow>>> {
        match recall(&self.banks, &id) {
            Some(bank) => Ok(Some(bank)),
            None => self.bank(&mut *pool.acquire().await?, id).await,
        }
    }

    /// Questions by id, in the order of `ids` (see [`questions`]).
    pub async fn questions(&self, conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Question>> {
        let known: Vec<Option<Question>> = ids.iter().map(|id| recall(&self.questions, id)).collect();
        if known.iter().all(Option::is_some) {
            return Ok(known.into_iter().flatten().collect());
        }
        let read = questions(conn, ids).await?;
        for q in &read {
            remember(&self.questions, q.id, q);
        }
        Ok(read)
    }
}
