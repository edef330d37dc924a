//! One method per endpoint. Every method verifies the caller's token itself: banks and quizzes
//! are authored by the course's instructor (or an admin, asked of catalog with the caller's
//! token); attempts belong to enrolled learners (asked of enrollment) and are "not found" to
//! everyone else.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::auth::JwtVerifier;
use coursebus_bus::consume::Handled;
use coursebus_bus::idempotency::Idempotency;
use coursebus_bus::{Bus, CallContext, outbox};
use coursebus_contracts::assessment::{
    Attempt, AttemptIdRequest, AttemptStatus, Bank, CreateBank, CreateBankRequest, CreateQuiz, CreateQuizRequest,
    GradeAttemptJob, Question, Quiz, QuizGrade, QuizIdRequest, SaveAnswersRequest, SavedAnswers,
};
use coursebus_contracts::catalog::{GetCourse, GetCourseRequest};
use coursebus_contracts::enrollment::{AccessCheckRequest, CheckAccess};
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::validate::Role;
use coursebus_contracts::{Actor, ErrorBody, ErrorCode, Event, EventEnvelope, Rpc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain;
use crate::store::{self, AttemptRow};

/// The assessment service's state, shared by the endpoint handlers and the graders of one replica.
#[derive(Debug)]
pub struct Assessments {
    pub pool: PgPool,
    pub verifier: Arc<JwtVerifier>,
    pub bus: Bus,
    pub call_deadline: Duration,
    pub outbox: outbox::Waker,
    /// Names this replica in `graded_by`.
    pub replica: String,
    /// Quizzes and questions this replica has read (they never change).
    pub cache: store::Cache,
}

pub(crate) use coursebus_bus::db;

fn bus(err: coursebus_bus::BusError) -> ErrorBody {
    tracing::error!(error = %err, "outbox error");
    ErrorBody::internal()
}

fn no_quiz() -> ErrorBody {
    ErrorBody::not_found("no such quiz")
}

fn no_attempt() -> ErrorBody {
    ErrorBody::not_found("no such attempt")
}

/// 409 before the quiz opens and once it has closed.
fn open_window(quiz: &store::QuizRow, now: OffsetDateTime) -> Result<(), ErrorBody> {
    if quiz.opens_at.is_some_and(|o| now < o) {
        return Err(ErrorBody::conflict("this quiz has not opened yet")
            .with_details(serde_json::json!({ "opens_at": quiz.opens_at })));
    }
    if quiz.closes_at.is_some_and(|c| now >= c) {
        return Err(ErrorBody::conflict("this quiz has closed"));
    }
    Ok(())
}

/// A creating request's `Idempotency-Key`, scoped to the endpoint and the caller, fingerprinted
/// by the whole request: the first answer is stored in the write's transaction and replayed to
/// retries; the same key with another request is a `conflict`.
pub(crate) struct Keyed<R> {
    idem: Idempotency,
    /// Names the advisory lock that makes requests with this key wait for each other.
    lock: String,
    rpc: PhantomData<R>,
}

impl<R: Rpc> Keyed<R> {
    /// `None` without an `Idempotency-Key`.
    pub(crate) fn new(ctx: &CallContext, me: &AccessClaims, req: &R::Request) -> Result<Option<Self>, ErrorBody> {
        let Some(key) = ctx.idempotency_key.as_deref() else { return Ok(None) };
        let scope = format!("{}:{}", R::ENDPOINT.subject(), me.sub);
        let lock = format!("{scope} {key}");
        Ok(Some(Self { idem: Idempotency::new(scope, key, req)?, lock, rpc: PhantomData }))
    }

    /// The answer to an earlier request with this key, if any.
    pub(crate) async fn replay(&self, pool: &PgPool) -> Result<Option<R::Reply>, ErrorBody> {
        self.idem.replay(pool).await
    }

    /// Hold the key until `tx` ends and look again: the answer of a request with the same key
    /// that committed since [`Self::replay`] (a concurrent retry) instead of a second creation.
    pub(crate) async fn claim(&self, tx: &mut PgConnection) -> Result<Option<R::Reply>, ErrorBody> {
        store::lock_key(tx, &self.lock).await.map_err(db)?;
        // In the same transaction: under READ COMMITTED it sees what the holder committed, and
        // it needs no second connection from a pool the concurrent retries may have drained.
        self.idem.replay(&mut *tx).await
    }

    /// Store `reply` in `tx`, the transaction of the write.
    pub(crate) async fn record(&self, tx: &mut PgConnection, reply: &R::Reply) -> Result<(), ErrorBody> {
        self.idem.record(tx, reply).await
    }
}

/// The job that grades `attempt`: its envelope id is the attempt's, so queuing it twice stores
/// one job (JetStream deduplicates by `Nats-Msg-Id`).
pub fn grading_job(attempt: Uuid) -> EventEnvelope<GradeAttemptJob> {
    let mut job = GradeAttemptJob { attempt_id: attempt }
        .envelope(Actor::Service { name: coursebus_contracts::subjects::assessment::SERVICE.into() });
    job.id = attempt;
    job
}

impl Assessments {
    pub(crate) async fn caller(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        self.verifier.verify_ctx(ctx).await
    }

    pub(crate) fn as_caller(ctx: &CallContext) -> CallContext {
        CallContext {
            request_id: ctx.request_id.clone(),
            traceparent: ctx.traceparent.clone(),
            authorization: ctx.authorization.clone(),
            idempotency_key: None,
        }
    }

    /// The caller teaches `course` (or is an admin).
    pub(crate) async fn require_author(
        &self,
        ctx: &CallContext,
        me: &AccessClaims,
        course: Uuid,
    ) -> Result<(), ErrorBody> {
        if me.has_role(Role::Admin) {
            return Ok(());
        }
        let req = GetCourseRequest { id_or_slug: course.to_string(), draft: true };
        match self.bus.request_within::<GetCourse>(&Self::as_caller(ctx), &req, self.call_deadline).await {
            Ok(c) if c.instructor_id == me.sub => Ok(()),
            Ok(_) => Err(ErrorBody::forbidden("only the course's instructor or an admin authors its assessments")),
            Err(e) if e.code == ErrorCode::NotFound => {
                Err(ErrorBody::forbidden("only the course's instructor or an admin authors its assessments"))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the caller is enrolled in `course`: known from `learner_enrolments`, else asked of
    /// enrollment (with the caller's token) and, if so, recorded there.
    pub(crate) async fn is_enrolled(
        &self,
        ctx: &CallContext,
        me: &AccessClaims,
        course: Uuid,
    ) -> Result<bool, ErrorBody> {
        if store::known_enrolled(&self.pool, me.sub, course).await.map_err(db)? {
            return Ok(true);
        }
        let req = AccessCheckRequest { user_id: me.sub, course_id: course, lesson_id: None };
        let reply = self.bus.request_within::<CheckAccess>(&Self::as_caller(ctx), &req, self.call_deadline).await?;
        if let (true, Some(enrollment)) = (reply.enrolled, reply.enrollment_id) {
            store::project_enrolment(&self.pool, enrollment, me.sub, course, true).await.map_err(db)?;
        }
        Ok(reply.enrolled)
    }

    /// Keep `learner_enrolments` up to date from `EVT_ENROLLMENT` (created and cancelled).
    pub async fn on_enrolment_event(&self, delivery: coursebus_bus::consume::Delivery) -> Handled {
        use coursebus_contracts::enrollment::{EnrollmentCancelled, EnrollmentCreated};
        use coursebus_contracts::subjects::enrollment as enr;
        let change = match delivery.subject.as_str() {
            enr::EVT_ENROLMENT_CREATED => delivery
                .json::<EventEnvelope<EnrollmentCreated>>()
                .map(|e| (e.data.enrollment_id, e.data.user_id, e.data.course_id, true)),
            enr::EVT_ENROLMENT_CANCELLED => delivery
                .json::<EventEnvelope<EnrollmentCancelled>>()
                .map(|e| (e.data.enrollment_id, e.data.user_id, e.data.course_id, false)),
            _ => return Handled::Done,
        };
        let (enrollment, user, course, live) = match change {
            Ok(change) => change,
            Err(rejected) => return rejected,
        };
        match store::project_enrolment(&self.pool, enrollment, user, course, live).await {
            Ok(()) => Handled::Done,
            Err(err) => Handled::Retry(format!("recording enrolment {enrollment}: {err}")),
        }
    }

    /// Enrolled learners, the course's instructor and admins read a course's assessments.
    pub(crate) async fn may_read(&self, ctx: &CallContext, me: &AccessClaims, course: Uuid) -> Result<bool, ErrorBody> {
        Ok(self.is_enrolled(ctx, me, course).await? || self.require_author(ctx, me, course).await.is_ok())
    }

    pub async fn create_bank(&self, ctx: CallContext, req: CreateBankRequest) -> Result<Bank, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let key = Keyed::<CreateBank>::new(&ctx, &me, &req)?;
        if let Some(key) = &key
            && let Some(bank) = key.replay(&self.pool).await?
        {
            return Ok(bank);
        }
        if req.title.trim().is_empty() || req.title.chars().count() > 200 {
            return Err(ErrorBody::invalid_field("title", "1 to 200 characters"));
        }
        if req.questions.is_empty() || req.questions.len() > 500 {
            return Err(ErrorBody::invalid_field("questions", "1 to 500 questions"));
        }
        for (i, q) in req.questions.iter().enumerate() {
            domain::validate_question(&q.prompt, q.points, &q.body).map_err(|e| {
                ErrorBody::invalid_field("questions", format!("question {}: {}: {}", i + 1, e.field, e.message))
            })?;
        }
        self.require_author(&ctx, &me, req.course_id).await?;
        let bank = Bank {
            id: Uuid::now_v7(),
            course_id: req.course_id,
            title: req.title.trim().to_owned(),
            questions: req
                .questions
                .into_iter()
                .map(|q| Question { id: Uuid::now_v7(), prompt: q.prompt, points: q.points, body: q.body })
                .collect(),
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        if let Some(key) = &key
            && let Some(first) = key.claim(&mut tx).await?
        {
            return Ok(first);
        }
        store::insert_bank(&mut tx, &bank, me.sub).await.map_err(db)?;
        if let Some(key) = &key {
            key.record(&mut tx, &bank).await?;
        }
        tx.commit().await.map_err(db)?;
        tracing::info!(bank_id = %bank.id, course_id = %bank.course_id, questions = bank.questions.len(), "question bank created");
        Ok(bank)
    }

    pub async fn create_quiz(&self, ctx: CallContext, req: CreateQuizRequest) -> Result<Quiz, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let key = Keyed::<CreateQuiz>::new(&ctx, &me, &req)?;
        if let Some(key) = &key
            && let Some(quiz) = key.replay(&self.pool).await?
        {
            return Ok(quiz);
        }
        domain::validate_quiz(&req)?;
        self.require_author(&ctx, &me, req.course_id).await?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        if let Some(key) = &key
            && let Some(first) = key.claim(&mut tx).await?
        {
            return Ok(first);
        }
        let mut count = 0u32;
        for draw in &req.draws {
            let Some((course, questions)) = store::bank(&mut tx, draw.bank_id).await.map_err(db)? else {
                return Err(ErrorBody::invalid_field("draws", format!("no bank {}", draw.bank_id)));
            };
            if course != req.course_id {
                return Err(ErrorBody::invalid_field("draws", format!("bank {} is another course's", draw.bank_id)));
            }
            if draw.count as usize > questions.len() {
                return Err(ErrorBody::invalid_field(
                    "draws",
                    format!("bank {} has {} questions, not {}", draw.bank_id, questions.len(), draw.count),
                ));
            }
            count += draw.count;
        }
        let quiz = Quiz {
            id: Uuid::now_v7(),
            course_id: req.course_id,
            title: req.title.trim().to_owned(),
            draws: req.draws,
            time_limit_secs: req.time_limit_secs,
            max_attempts: req.max_attempts,
            opens_at: req.opens_at,
            closes_at: req.closes_at,
            scoring: req.scoring,
            question_count: count,
        };
        store::insert_quiz(&mut tx, &quiz, me.sub).await.map_err(db)?;
        if let Some(key) = &key {
            key.record(&mut tx, &quiz).await?;
        }
        tx.commit().await.map_err(db)?;
        tracing::info!(quiz_id = %quiz.id, course_id = %quiz.course_id, questions = count, "quiz created");
        Ok(quiz)
    }

    /// Enrolled learners, the course's instructor and admins.
    async fn readable_quiz(&self, ctx: &CallContext, me: &AccessClaims, id: Uuid) -> Result<store::QuizRow, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let quiz = store::quiz(&mut conn, id).await.map_err(db)?.ok_or_else(no_quiz)?;
        drop(conn);
        if self.may_read(ctx, me, quiz.course_id).await? { Ok(quiz) } else { Err(no_quiz()) }
    }

    pub async fn get_quiz(&self, ctx: CallContext, req: QuizIdRequest) -> Result<Quiz, ErrorBody> {
        let me = self.caller(&ctx).await?;
        self.readable_quiz(&ctx, &me, req.quiz_id).await?.to_quiz().map_err(db)
    }

    /// Start an attempt, or resume the one in progress (same paper, same deadline).
    ///
    /// A learner's first attempt at an open quiz (the synchronised start of a whole class) is one
    /// statement: the paper is drawn from the cached quiz and banks and inserted if
    /// `learner_enrolments` knows the learner enrolled and no attempt exists yet. Anything else
    /// (a resume, a later attempt, a learner the projection does not know yet, a closed quiz)
    /// takes the long way under a lock on the learner's attempts.
    pub async fn start(&self, ctx: CallContext, req: QuizIdRequest) -> Result<Attempt, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let quiz = self.cache.quiz_from(&self.pool, req.quiz_id).await.map_err(db)?.ok_or_else(no_quiz)?;
        let now = OffsetDateTime::now_utc();
        if open_window(&quiz, now).is_ok() {
            let first = self.new_attempt(&quiz, me.sub, 1, now).await?;
            if store::insert_first_attempt(&self.pool, &first, quiz.course_id).await.map_err(db)? {
                tracing::info!(attempt_id = %first.id, quiz_id = %quiz.id, user_id = %me.sub, number = 1, "attempt started");
                return first.to_attempt(Vec::new()).map_err(db);
            }
        }
        if !self.is_enrolled(&ctx, &me, quiz.course_id).await? {
            return Err(no_quiz());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let attempts = store::attempts_of(&mut tx, quiz.id, me.sub, true).await.map_err(db)?;
        if let Some(open) = attempts.iter().find(|a| a.status == AttemptStatus::InProgress.as_str()) {
            if open.deadline.is_none_or(|d| now <= d) {
                let answers = store::answers(&mut tx, open.id).await.map_err(db)?;
                tx.commit().await.map_err(db)?;
                return open.to_attempt(answers.into_iter().map(|(a, _)| a).collect()).map_err(db);
            }
            // Time ran out: it is submitted as it stood at its deadline.
            self.submit_in(&mut tx, open.id, now).await?;
        }
        open_window(&quiz, now)?;
        let used = u32::try_from(attempts.len()).unwrap_or(u32::MAX);
        if used >= u32::try_from(quiz.max_attempts).unwrap_or(0) {
            tx.commit().await.map_err(db)?;
            return Err(ErrorBody::conflict(format!("all {} attempts are used", quiz.max_attempts))
                .with_details(serde_json::json!({ "max_attempts": quiz.max_attempts })));
        }
        let number = used + 1;
        let row = self.new_attempt(&quiz, me.sub, number, now).await?;
        store::insert_attempt(&mut tx, &row).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(attempt_id = %row.id, quiz_id = %quiz.id, user_id = %me.sub, number, "attempt started");
        row.to_attempt(Vec::new()).map_err(db)
    }

    /// Attempt `number` of the learner at `quiz`, started `now`: its paper drawn and shuffled from
    /// the seed of (quiz, learner, number), its deadline from the time limit and the close.
    async fn new_attempt(
        &self,
        quiz: &store::QuizRow,
        user: Uuid,
        number: u32,
        now: OffsetDateTime,
    ) -> Result<AttemptRow, ErrorBody> {
        let mut banks = Vec::with_capacity(quiz.draws.0.len());
        for draw in &quiz.draws.0 {
            let bank =
                self.cache.bank_from(&self.pool, draw.bank_id).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
            banks.push((bank, draw.count));
        }
        let draws: Vec<(&[Question], u32)> = banks.iter().map(|(bank, count)| (bank.1.as_slice(), *count)).collect();
        let paper = domain::draw_paper(&draws, domain::paper_seed(quiz.id, user, number));
        let max_points: u32 = paper.iter().map(|q| q.points).sum();
        let deadline = quiz.time_limit_secs.map(|secs| {
            let end = now + time::Duration::seconds(i64::from(secs));
            quiz.closes_at.map_or(end, |c| end.min(c))
        });
        Ok(AttemptRow {
            id: Uuid::now_v7(),
            quiz_id: quiz.id,
            user_id: user,
            number: i32::try_from(number).unwrap_or(i32::MAX),
            status: AttemptStatus::InProgress.as_str().into(),
            paper: Json(paper),
            max_points: i32::try_from(max_points).unwrap_or(i32::MAX),
            started_at: now,
            deadline: deadline.or(quiz.closes_at),
            submitted_at: None,
            score_hundredths: None,
            results: None,
        })
    }

    /// The attempt if it is the caller's (admins: anyone's); else not found.
    async fn own_attempt(&self, me: &AccessClaims, id: Uuid) -> Result<AttemptRow, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        store::attempt(&mut conn, id, false)
            .await
            .map_err(db)?
            .filter(|a| a.user_id == me.sub || me.has_role(Role::Admin))
            .ok_or_else(no_attempt)
    }

    pub async fn get_attempt(&self, ctx: CallContext, req: AttemptIdRequest) -> Result<Attempt, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.own_attempt(&me, req.attempt_id).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let answers = store::answers(&mut conn, row.id).await.map_err(db)?;
        row.to_attempt(answers.into_iter().map(|(a, _)| a).collect()).map_err(db)
    }

    pub async fn save(&self, ctx: CallContext, req: SaveAnswersRequest) -> Result<SavedAnswers, ErrorBody> {
        let me = self.caller(&ctx).await?;
        if req.answers.len() > 500 {
            return Err(ErrorBody::invalid_field("answers", "at most 500 answers at once"));
        }
        let now = OffsetDateTime::now_utc();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = store::attempt(&mut tx, req.attempt_id, true)
            .await
            .map_err(db)?
            .filter(|a| a.user_id == me.sub)
            .ok_or_else(no_attempt)?;
        if row.status().map_err(db)? != AttemptStatus::InProgress {
            return Err(ErrorBody::conflict("this attempt was submitted"));
        }
        if row.deadline.is_some_and(|d| now > d) {
            return Err(ErrorBody::conflict("time is up: answers after the deadline are not counted")
                .with_details(serde_json::json!({ "deadline": row.deadline })));
        }
        let mut seen = std::collections::HashSet::new();
        for answer in &req.answers {
            if !seen.insert(answer.question_id) {
                return Err(ErrorBody::invalid_field(
                    "answers",
                    format!("question {} is answered twice", answer.question_id),
                ));
            }
            let Some(question) = row.paper.0.iter().find(|q| q.question_id == answer.question_id) else {
                return Err(ErrorBody::invalid_field(
                    "answers",
                    format!("question {} is not on this paper", answer.question_id),
                ));
            };
            if let coursebus_contracts::assessment::AnswerValue::Text(t) = &answer.value
                && t.chars().count() > 20_000
            {
                return Err(ErrorBody::invalid_field(
                    "answers",
                    format!("the answer to {} is over 20000 characters", question.question_id),
                ));
            }
        }
        store::save_answers(&mut tx, row.id, &req.answers, now).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(SavedAnswers { saved: u32::try_from(req.answers.len()).unwrap_or(u32::MAX), saved_at: now })
    }

    /// Mark submitted and queue its grading job (in the caller's transaction).
    async fn submit_in(&self, tx: &mut sqlx::PgConnection, id: Uuid, now: OffsetDateTime) -> Result<(), ErrorBody> {
        store::mark_submitted(tx, id, now).await.map_err(db)?;
        outbox::enqueue(tx, &grading_job(id), None).await.map_err(bus)?;
        Ok(())
    }

    pub async fn submit(&self, ctx: CallContext, req: AttemptIdRequest) -> Result<Attempt, ErrorBody> {
        let me = self.caller(&ctx).await?;
        // Microseconds, as stored: the reply is built from memory.
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).unwrap_or(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = store::attempt(&mut tx, req.attempt_id, true)
            .await
            .map_err(db)?
            .filter(|a| a.user_id == me.sub)
            .ok_or_else(no_attempt)?;
        let mut row = row;
        if row.status().map_err(db)? == AttemptStatus::InProgress {
            self.submit_in(&mut tx, row.id, now).await?;
            // The row is locked: it now reads exactly so.
            row.status = AttemptStatus::Submitted.as_str().into();
            row.submitted_at = Some(now);
            tracing::info!(attempt_id = %row.id, user_id = %me.sub, "attempt submitted");
        }
        let answers = store::answers(&mut tx, row.id).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        row.to_attempt(answers.into_iter().map(|(a, _)| a).collect()).map_err(db)
    }

    pub async fn grade_of(&self, ctx: CallContext, req: QuizIdRequest) -> Result<QuizGrade, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let quiz = self.readable_quiz(&ctx, &me, req.quiz_id).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let attempts = store::attempts_of(&mut conn, quiz.id, me.sub, false).await.map_err(db)?;
        let graded = attempts.iter().filter(|a| a.status == AttemptStatus::Graded.as_str()).count();
        Ok(QuizGrade {
            quiz_id: quiz.id,
            user_id: me.sub,
            scoring: quiz.scoring().map_err(db)?,
            attempts_graded: u32::try_from(graded).unwrap_or(u32::MAX),
            percent_bp: crate::grading::quiz_grade(&quiz, &attempts).map_err(db)?,
        })
    }
}
