//! Assessment's PostgreSQL store. Every function takes a connection so callers compose them in
//! one transaction with the outbox.

use coursebus_contracts::assessment::{
    Answer, AnswerValue, Attempt, AttemptStatus, Bank, Category, Draw, GradebookSetup, Item, PaperQuestion, Question,
    QuestionBody, QuestionResult, Quiz, ScoringPolicy,
};
use sqlx::PgConnection;
use sqlx::types::Json;
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

pub async fn save_answer(conn: &mut PgConnection, attempt: Uuid, answer: &Answer, at: OffsetDateTime) -> Result<()> {
    sqlx::query(
        "INSERT INTO answers (attempt_id, question_id, value, saved_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (attempt_id, question_id) DO UPDATE SET value = EXCLUDED.value, saved_at = EXCLUDED.saved_at",
    )
    .bind(attempt)
    .bind(answer.question_id)
    .bind(Json(&answer.value))
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
