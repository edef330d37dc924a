//! The instructor's side: the queue of essays to grade with their rubrics, grading an essay
//! (which completes its attempt once no essay is left), and the gradebook (weighted categories
//! of quizzes and assignments, drop-lowest; the learner's own view and the whole course's, with
//! CSV).

use coursebus_bus::{CallContext, outbox};
use coursebus_contracts::assessment::{
    AnswerValue, Attempt, AttemptGraded, AttemptStatus, Category, CourseGradebook, CourseIdRequest, EssayToGrade,
    GradeEssayRequest, GradebookSetup, Item, LearnerGrade, ManualGradingItem, ManualGradingQueue, Missing, MyGradebook,
    QuestionBody, QuizIdRequest, Score, ScoringPolicy, SetGradebookRequest,
};
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::{Actor, ErrorBody, Event};
use uuid::Uuid;

use crate::handlers::{Assessments, db};
use crate::{domain, gradebook, store};

fn policy(raw: &str) -> ScoringPolicy {
    match raw {
        "latest" => ScoringPolicy::Latest,
        "average" => ScoringPolicy::Average,
        _ => ScoringPolicy::Highest,
    }
}

impl Assessments {
    async fn quiz_as_author(
        &self,
        ctx: &CallContext,
        me: &AccessClaims,
        quiz: Uuid,
    ) -> Result<store::QuizRow, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let quiz =
            store::quiz(&mut conn, quiz).await.map_err(db)?.ok_or_else(|| ErrorBody::not_found("no such quiz"))?;
        drop(conn);
        self.require_author(ctx, me, quiz.course_id).await?;
        Ok(quiz)
    }

    pub async fn manual_queue(&self, ctx: CallContext, req: QuizIdRequest) -> Result<ManualGradingQueue, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let quiz = self.quiz_as_author(&ctx, &me, req.quiz_id).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut items = Vec::new();
        for row in store::manual_queue(&mut conn, quiz.id).await.map_err(db)? {
            let answers = store::answers(&mut conn, row.id).await.map_err(db)?;
            let results = row.results.as_ref().map(|r| r.0.clone()).unwrap_or_default();
            let essays = results
                .iter()
                .filter(|r| r.points_hundredths.is_none())
                .filter_map(|r| {
                    let paper = row.paper.0.iter().find(|q| q.question_id == r.question_id)?;
                    let QuestionBody::Essay { rubric } = &r.solution else { return None };
                    let answer = answers
                        .iter()
                        .find(|(a, at)| a.question_id == r.question_id && row.deadline.is_none_or(|d| *at <= d));
                    let answer = answer.and_then(|(a, _)| match &a.value {
                        AnswerValue::Text(t) => Some(t.clone()),
                        _ => None,
                    });
                    Some(EssayToGrade {
                        question_id: r.question_id,
                        prompt: paper.prompt.clone(),
                        rubric: rubric.clone(),
                        answer,
                    })
                })
                .collect();
            items.push(ManualGradingItem {
                attempt_id: row.id,
                user_id: row.user_id,
                submitted_at: row.submitted_at,
                essays,
            });
        }
        Ok(ManualGradingQueue { items })
    }

    /// Grade one essay by its rubric; the attempt is `graded` once no essay is left.
    pub async fn grade_essay(&self, ctx: CallContext, req: GradeEssayRequest) -> Result<Attempt, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let feedback = req.feedback.as_deref().map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned);
        if feedback.as_ref().is_some_and(|f| f.chars().count() > 5_000) {
            return Err(ErrorBody::invalid_field("feedback", "at most 5000 characters"));
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = store::attempt(&mut conn, req.attempt_id, false)
            .await
            .map_err(db)?
            .ok_or_else(|| ErrorBody::not_found("no such attempt"))?;
        drop(conn);
        let quiz = self.quiz_as_author(&ctx, &me, row.quiz_id).await?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Every attempt of the learner at this quiz, in attempt order (as grading locks them).
        let locked = store::attempts_of(&mut tx, row.quiz_id, row.user_id, true).await.map_err(db)?;
        let row = locked.into_iter().find(|a| a.id == row.id).ok_or_else(ErrorBody::internal)?;
        if row.status().map_err(db)? != AttemptStatus::NeedsManualGrading {
            return Err(ErrorBody::conflict("this attempt has no essay waiting to be graded"));
        }
        let mut results = row.results.as_ref().map(|r| r.0.clone()).unwrap_or_default();
        let Some(result) = results.iter_mut().find(|r| r.question_id == req.question_id) else {
            return Err(ErrorBody::not_found("no such essay in this attempt"));
        };
        let QuestionBody::Essay { rubric } = &result.solution else {
            return Err(ErrorBody::invalid_field("question_id", "not an essay"));
        };
        if req.scores.len() != rubric.len() {
            return Err(ErrorBody::invalid_field(
                "scores",
                format!("one score per rubric criterion ({})", rubric.len()),
            ));
        }
        if let Some((c, s)) = rubric.iter().zip(&req.scores).find(|(c, s)| **s > c.max_points) {
            return Err(ErrorBody::invalid_field(
                "scores",
                format!("{} is worth at most {} (not {s})", c.name, c.max_points),
            ));
        }
        result.points_hundredths = Some(req.scores.iter().sum::<u32>() * 100);
        result.feedback = feedback;
        let complete = results.iter().all(|r| r.points_hundredths.is_some());
        let score: u32 = results.iter().filter_map(|r| r.points_hundredths).sum();
        let status = if complete { AttemptStatus::Graded } else { AttemptStatus::NeedsManualGrading };
        store::record_grade(&mut tx, row.id, status, score, &results, &format!("instructor:{}", me.sub))
            .await
            .map_err(db)?;
        if complete {
            let mut event = AttemptGraded {
                attempt_id: row.id,
                quiz_id: row.quiz_id,
                course_id: quiz.course_id,
                user_id: row.user_id,
                score_hundredths: score,
                max_points: u32::try_from(row.max_points).unwrap_or(0),
                complete: true,
            }
            .envelope(Actor::User { id: me.sub });
            event.id = coursebus_bus::ids::stable_id(&[row.id.as_bytes(), b"graded-final"]);
            outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(|e| {
                tracing::error!(error = %e, "outbox error");
                ErrorBody::internal()
            })?;
            crate::grading::release_quiz_grade(&mut tx, &quiz, row.user_id, row.id, Some(&ctx)).await.map_err(db)?;
        }
        let row = store::attempt(&mut tx, row.id, false).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        let answers = store::answers(&mut tx, row.id).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(attempt_id = %row.id, question_id = %req.question_id, complete, "essay graded");
        row.to_attempt(answers.into_iter().map(|(a, _)| a).collect()).map_err(db)
    }

    pub async fn set_gradebook(&self, ctx: CallContext, req: SetGradebookRequest) -> Result<GradebookSetup, ErrorBody> {
        let me = self.caller(&ctx).await?;
        self.require_author(&ctx, &me, req.course_id).await?;
        let mut categories = Vec::new();
        let mut items = Vec::new();
        let mut conn = self.pool.acquire().await.map_err(db)?;
        for input in &req.categories {
            let name = input.name.trim();
            if name.is_empty() || name.chars().count() > 100 {
                return Err(ErrorBody::invalid_field("categories", "each category has a name of 1 to 100 characters"));
            }
            let id = coursebus_bus::ids::stable_id(&[req.course_id.as_bytes(), name.as_bytes()]);
            categories.push(Category {
                id,
                name: name.to_owned(),
                weight_percent: input.weight_percent,
                drop_lowest: input.drop_lowest,
            });
            for quiz_id in &input.quiz_ids {
                let quiz = store::quiz(&mut conn, *quiz_id).await.map_err(db)?;
                let Some(quiz) = quiz.filter(|q| q.course_id == req.course_id) else {
                    return Err(ErrorBody::invalid_field("categories", format!("quiz {quiz_id} is not this course's")));
                };
                if items.iter().any(|i: &Item| i.id == quiz.id) {
                    return Err(ErrorBody::invalid_field("categories", format!("quiz {quiz_id} is in two categories")));
                }
                items.push(Item { id: quiz.id, category_id: id, title: quiz.title.clone(), max_points: 100 });
            }
            for assignment_id in &input.assignment_ids {
                let found = store::assignment(&mut conn, *assignment_id, false).await.map_err(db)?;
                let Some(a) = found.filter(|a| a.course_id == req.course_id) else {
                    return Err(ErrorBody::invalid_field(
                        "categories",
                        format!("assignment {assignment_id} is not this course's"),
                    ));
                };
                if items.iter().any(|i: &Item| i.id == a.id) {
                    return Err(ErrorBody::invalid_field(
                        "categories",
                        format!("assignment {assignment_id} is in two categories"),
                    ));
                }
                let max_points = u32::try_from(a.max_points).unwrap_or(0);
                items.push(Item { id: a.id, category_id: id, title: a.title.clone(), max_points });
            }
        }
        gradebook::validate(&categories, &items).map_err(|e| ErrorBody::invalid_field("categories", e.to_string()))?;
        let setup = GradebookSetup { course_id: req.course_id, categories, items };
        store::save_gradebook(&mut conn, &setup, me.sub).await.map_err(db)?;
        Ok(setup)
    }

    async fn setup(&self, course: Uuid) -> Result<GradebookSetup, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        store::gradebook(&mut conn, course)
            .await
            .map_err(db)?
            .ok_or_else(|| ErrorBody::not_found("this course has no gradebook yet"))
    }

    /// Scores: each quiz is worth 100 points; the learner's quiz grade (under its scoring policy,
    /// in basis points) is their score in hundredths of a point. An assignment is worth its
    /// rubric's points; its released, penalised grade counts.
    async fn scores(&self, course: Uuid, learner: Option<Uuid>) -> Result<Vec<Score>, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let rows = store::graded_attempts(&mut conn, course, learner).await.map_err(db)?;
        let mut scores = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let (quiz, user, _, _, scoring) = rows[i].clone();
            let group: Vec<(u32, u32)> = rows[i..]
                .iter()
                .take_while(|r| r.0 == quiz && r.1 == user)
                .map(|r| (u32::try_from(r.2).unwrap_or(0), u32::try_from(r.3).unwrap_or(0)))
                .collect();
            i += group.len();
            if let Some(bp) = domain::quiz_percent(policy(&scoring), &group) {
                scores.push(Score { learner_id: user, item_id: quiz, points_hundredths: bp });
            }
        }
        // Assignments: the penalised rubric total, once released.
        for (assignment, user, points) in store::released_submissions(&mut conn, course, learner).await.map_err(db)? {
            scores.push(Score {
                learner_id: user,
                item_id: assignment,
                points_hundredths: u32::try_from(points).unwrap_or(0),
            });
        }
        Ok(scores)
    }

    pub async fn my_grades(&self, ctx: CallContext, req: CourseIdRequest) -> Result<MyGradebook, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let setup = self.setup(req.course_id).await?;
        let scores = self.scores(req.course_id, Some(me.sub)).await?;
        let grade = gradebook::learner_grade(me.sub, &setup.categories, &setup.items, &scores, Missing::Exclude);
        Ok(MyGradebook { setup, scores, grade })
    }

    pub async fn course_grades(&self, ctx: CallContext, req: CourseIdRequest) -> Result<CourseGradebook, ErrorBody> {
        let me = self.caller(&ctx).await?;
        self.require_author(&ctx, &me, req.course_id).await?;
        let setup = self.setup(req.course_id).await?;
        let scores = self.scores(req.course_id, None).await?;
        let mut learners: Vec<Uuid> = scores.iter().map(|s| s.learner_id).collect();
        learners.sort();
        learners.dedup();
        let grades: Vec<LearnerGrade> =
            gradebook::course_grades(&learners, &setup.categories, &setup.items, &scores, Missing::Exclude);
        let labels: Vec<String> = learners.iter().map(Uuid::to_string).collect();
        let csv = gradebook::csv(&grades, &labels, &setup.categories, &setup.items, &scores);
        Ok(CourseGradebook { setup, grades, csv })
    }
}
