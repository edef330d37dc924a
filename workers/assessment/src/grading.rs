//! The grading queue group: every replica pulls `GradeAttemptJob`s from the shared durable
//! consumer on `JOB_GRADING`, grades the attempt under its row lock and commits the grade with its
//! `attempt.graded` event before acknowledging. A job that comes back (its replica died before the
//! ack) finds the attempt graded and changes nothing; an attempt is graded once.

use coursebus_bus::consume::{Delivery, Handled};
use coursebus_bus::{CallContext, outbox};
use coursebus_contracts::assessment::{AttemptGraded, AttemptStatus, GradeAttemptJob, GradeReleased, GradedItemKind};
use coursebus_contracts::{Actor, Event, EventEnvelope};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain;
use crate::handlers::Assessments;
use crate::store;

impl Assessments {
    /// One job from `JOB_GRADING`.
    pub async fn on_grading_job(&self, delivery: Delivery) -> Handled {
        let job: EventEnvelope<GradeAttemptJob> = match delivery.json() {
            Ok(job) => job,
            Err(rejected) => return rejected,
        };
        match self.grade_attempt(job.data.attempt_id, &delivery.ctx).await {
            Ok(()) => Handled::Done,
            Err(err) => Handled::Retry(err.to_string()),
        }
    }

    /// `ctx` is the job's publisher's: `attempt.graded` and `grade.released` continue its trace.
    async fn grade_attempt(&self, id: Uuid, ctx: &CallContext) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = store::attempt(&mut tx, id, false).await? else { return Ok(()) };
        // All the learner's attempts at this quiz, locked in attempt order: the quiz grade sent
        // with this one sees every other grading of theirs committed (replicas grade at once).
        let locked = store::attempts_of(&mut tx, row.quiz_id, row.user_id, true).await?;
        let Some(row) = locked.into_iter().find(|a| a.id == id) else { return Ok(()) };
        if row.status()? != AttemptStatus::Submitted {
            return Ok(()); // graded before (a redelivered job)
        }
        // Only answers saved by the deadline count.
        let answers: Vec<_> = store::answers(&mut tx, id)
            .await?
            .into_iter()
            .filter(|(_, at)| row.deadline.is_none_or(|d| *at <= d))
            .map(|(a, _)| (a.question_id, a.value))
            .collect();
        let ids: Vec<Uuid> = row.paper.0.iter().map(|q| q.question_id).collect();
        let questions = self.cache.questions(&mut tx, &ids).await?;
        let (results, score) = domain::grade(&questions, &answers);
        let complete = questions.iter().all(|q| !q.body.is_manual());
        let status = if complete { AttemptStatus::Graded } else { AttemptStatus::NeedsManualGrading };
        store::record_grade(&mut tx, id, status, score, &results, &self.replica).await?;
        let quiz = self.cache.quiz(&mut tx, row.quiz_id).await?.ok_or(sqlx::Error::RowNotFound)?;
        let course_id = quiz.course_id;
        let mut event = AttemptGraded {
            attempt_id: id,
            quiz_id: row.quiz_id,
            course_id,
            user_id: row.user_id,
            score_hundredths: score,
            max_points: u32::try_from(row.max_points).unwrap_or(0),
            complete,
        }
        .envelope(Actor::Service { name: coursebus_contracts::subjects::assessment::SERVICE.into() });
        event.id = coursebus_bus::ids::stable_id(&[id.as_bytes(), b"graded"]);
        outbox::enqueue(&mut tx, &event, Some(ctx)).await.map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        if complete {
            release_quiz_grade(&mut tx, &quiz, row.user_id, id, Some(ctx)).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(attempt_id = %id, score_hundredths = score, complete, replica = %self.replica, "attempt graded");
        Ok(())
    }

    /// Submit attempts whose time ran out (the learner closed the tab): graded as they stood.
    pub async fn submit_overdue(&self) -> Result<usize, sqlx::Error> {
        let now = OffsetDateTime::now_utc();
        let mut conn = self.pool.acquire().await?;
        let ids = store::overdue(&mut conn, now, 500).await?;
        drop(conn);
        for id in &ids {
            let mut tx = self.pool.begin().await?;
            if let Some(row) = store::attempt(&mut tx, *id, true).await?
                && row.status()? == AttemptStatus::InProgress
            {
                store::mark_submitted(&mut tx, *id, now).await?;
                outbox::enqueue(&mut tx, &crate::handlers::grading_job(*id), None)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            }
            tx.commit().await?;
        }
        if !ids.is_empty() {
            self.outbox.wake();
            tracing::info!(attempts = ids.len(), "overdue attempts submitted");
        }
        Ok(ids.len())
    }
}

/// The learner's grade on `quiz` under its scoring policy from their fully graded attempts.
pub(crate) fn quiz_grade(quiz: &store::QuizRow, attempts: &[store::AttemptRow]) -> Result<Option<u32>, sqlx::Error> {
    let graded: Vec<(u32, u32)> = attempts
        .iter()
        .filter(|a| a.status == AttemptStatus::Graded.as_str())
        .map(|a| {
            (u32::try_from(a.score_hundredths.unwrap_or(0)).unwrap_or(0), u32::try_from(a.max_points).unwrap_or(0))
        })
        .collect();
    Ok(domain::quiz_percent(quiz.scoring()?, &graded))
}

/// Queue `grade.released` with the learner's quiz grade after `attempt` became fully graded (in
/// the grading transaction; the event's id is stable per attempt, so a retried grading sends it
/// once).
pub(crate) async fn release_quiz_grade(
    tx: &mut sqlx::PgConnection,
    quiz: &store::QuizRow,
    user: Uuid,
    attempt: Uuid,
    ctx: Option<&coursebus_bus::CallContext>,
) -> Result<(), sqlx::Error> {
    let attempts = store::attempts_of(tx, quiz.id, user, false).await?;
    let Some(percent_bp) = quiz_grade(quiz, &attempts)? else { return Ok(()) };
    let mut event = GradeReleased {
        course_id: quiz.course_id,
        user_id: user,
        item_id: quiz.id,
        item_kind: GradedItemKind::Quiz,
        percent_bp,
    }
    .envelope(Actor::Service { name: coursebus_contracts::subjects::assessment::SERVICE.into() });
    event.id = coursebus_bus::ids::stable_id(&[attempt.as_bytes(), b"released"]);
    outbox::enqueue(tx, &event, ctx).await.map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    Ok(())
}
