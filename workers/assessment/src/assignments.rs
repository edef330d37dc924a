//! Assignments: the instructor sets one (rubric, due date, late policy); enrolled learners hand
//! in text or a file uploaded through content (and again until the due date); the instructor
//! grades each submission by the rubric and releases the grades, which learners see from then on
//! and which `grade.released` carries to enrollment. Text submissions are queued for the
//! plagiarism check (`similarity.rs`).

use coursebus_bus::{CallContext, outbox};
use coursebus_contracts::assessment::{
    Assignment, AssignmentIdRequest, AssignmentSubmissions, CheckSimilarityJob, CreateAssignment,
    CreateAssignmentRequest, GradeReleased, GradeSubmissionRequest, GradedItemKind, Submission, SubmissionGraded,
    SubmissionType, SubmitAssignmentRequest,
};
use coursebus_contracts::content::{AssetIdRequest, AssetKind, AssetStatus, GetAsset};
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::{Actor, ErrorBody, ErrorCode, Event, EventEnvelope};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{self, Closed};
use crate::handlers::{Assessments, Keyed, db};
use crate::store::{self, AssignmentRow, StoredGrade, SubmissionRow};

const MAX_TEXT: usize = 50_000;

fn no_assignment() -> ErrorBody {
    ErrorBody::not_found("no such assignment")
}

fn outbox_error(err: coursebus_bus::BusError) -> ErrorBody {
    tracing::error!(error = %err, "outbox error");
    ErrorBody::internal()
}

/// The plagiarism check of `submission` at `version` (one job per version).
pub fn similarity_job(assignment: Uuid, submission: Uuid, version: u32) -> EventEnvelope<CheckSimilarityJob> {
    let mut job = CheckSimilarityJob { assignment_id: assignment, submission_id: submission, version }
        .envelope(Actor::Service { name: coursebus_contracts::subjects::assessment::SERVICE.into() });
    job.id = coursebus_bus::ids::stable_id(&[submission.as_bytes(), &version.to_be_bytes(), b"similarity"]);
    job
}

/// `grade.released` for a graded submission of a released assignment.
fn released_event(a: &AssignmentRow, s: &SubmissionRow) -> EventEnvelope<GradeReleased> {
    let points = u32::try_from(s.points_hundredths.unwrap_or(0)).unwrap_or(0);
    GradeReleased {
        course_id: a.course_id,
        user_id: s.user_id,
        item_id: a.id,
        item_kind: GradedItemKind::Assignment,
        percent_bp: domain::percent_bp(points, u32::try_from(a.max_points).unwrap_or(0)),
    }
    .envelope(Actor::Service { name: coursebus_contracts::subjects::assessment::SERVICE.into() })
}

impl Assessments {
    pub(crate) async fn assignment_row(&self, id: Uuid) -> Result<AssignmentRow, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        store::assignment(&mut conn, id, false).await.map_err(db)?.ok_or_else(no_assignment)
    }

    /// The assignment, if the caller teaches its course (or is an admin).
    async fn assignment_as_author(
        &self,
        ctx: &CallContext,
        me: &AccessClaims,
        id: Uuid,
    ) -> Result<AssignmentRow, ErrorBody> {
        let row = self.assignment_row(id).await?;
        self.require_author(ctx, me, row.course_id).await?;
        Ok(row)
    }

    pub async fn create_assignment(
        &self,
        ctx: CallContext,
        req: CreateAssignmentRequest,
    ) -> Result<Assignment, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let key = Keyed::<CreateAssignment>::new(&ctx, &me, &req)?;
        if let Some(key) = &key
            && let Some(assignment) = key.replay(&self.pool).await?
        {
            return Ok(assignment);
        }
        domain::validate_assignment(&req)?;
        self.require_author(&ctx, &me, req.course_id).await?;
        let assignment = Assignment {
            id: Uuid::now_v7(),
            course_id: req.course_id,
            title: req.title.trim().to_owned(),
            instructions: req.instructions,
            submission_type: req.submission_type,
            max_points: req.rubric.iter().map(|c| c.max_points).sum(),
            rubric: req.rubric,
            due_at: req.due_at,
            late_policy: req.late_policy,
            check_plagiarism: req.check_plagiarism,
            released_at: None,
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        if let Some(key) = &key
            && let Some(first) = key.claim(&mut tx).await?
        {
            return Ok(first);
        }
        store::insert_assignment(&mut tx, &assignment, me.sub).await.map_err(db)?;
        if let Some(key) = &key {
            key.record(&mut tx, &assignment).await?;
        }
        tx.commit().await.map_err(db)?;
        tracing::info!(assignment_id = %assignment.id, course_id = %assignment.course_id, max_points = assignment.max_points, "assignment created");
        Ok(assignment)
    }

    /// Enrolled learners, the course's instructor and admins.
    pub async fn get_assignment(&self, ctx: CallContext, req: AssignmentIdRequest) -> Result<Assignment, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.assignment_row(req.assignment_id).await?;
        if !self.may_read(&ctx, &me, row.course_id).await? {
            return Err(no_assignment());
        }
        row.to_assignment().map_err(db)
    }

    /// The file must be the caller's own `ready` submission upload in this course (asked of
    /// content with the caller's token).
    async fn check_upload(
        &self,
        ctx: &CallContext,
        me: &AccessClaims,
        course: Uuid,
        asset: Uuid,
    ) -> Result<(), ErrorBody> {
        let bad = |why: &str| ErrorBody::invalid_field("asset_id", why.to_owned());
        let found = self
            .bus
            .request_within::<GetAsset>(&Self::as_caller(ctx), &AssetIdRequest { asset_id: asset }, self.call_deadline)
            .await;
        let asset = match found {
            Ok(asset) => asset,
            Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::Forbidden) => {
                return Err(bad("no such upload of yours"));
            }
            Err(e) => return Err(e),
        };
        if asset.owner_id != me.sub || asset.course_id != course {
            return Err(bad("no such upload of yours in this course"));
        }
        if asset.kind != AssetKind::Submission {
            return Err(bad("upload the file as an asset of kind `submission`"));
        }
        if asset.status != AssetStatus::Ready {
            return Err(bad("the upload is not complete"));
        }
        Ok(())
    }

    /// Hand in, or hand in again while on time (a new version; its grade is cleared). The same
    /// content again changes nothing.
    pub async fn submit_assignment(
        &self,
        ctx: CallContext,
        req: SubmitAssignmentRequest,
    ) -> Result<Submission, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let text = req.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
            return Err(ErrorBody::invalid_field("text", format!("at most {MAX_TEXT} characters")));
        }
        let row = self.assignment_row(req.assignment_id).await?;
        if !self.is_enrolled(&ctx, &me, row.course_id).await? {
            return Err(no_assignment());
        }
        match (row.submission_type().map_err(db)?, &text, req.asset_id) {
            (SubmissionType::Text, None, _) => {
                return Err(ErrorBody::invalid_field("text", "this assignment takes text"));
            }
            (SubmissionType::Text, Some(_), Some(_)) => {
                return Err(ErrorBody::invalid_field("asset_id", "this assignment takes text only"));
            }
            (SubmissionType::File, _, None) => {
                return Err(ErrorBody::invalid_field("asset_id", "this assignment takes a file"));
            }
            (SubmissionType::File, Some(_), Some(_)) => {
                return Err(ErrorBody::invalid_field("text", "this assignment takes a file only"));
            }
            (SubmissionType::TextOrFile, None, None) => {
                return Err(ErrorBody::invalid_field("text", "hand in text, a file, or both"));
            }
            _ => {}
        }
        if let Some(asset) = req.asset_id {
            self.check_upload(&ctx, &me, row.course_id, asset).await?;
        }
        let now = OffsetDateTime::now_utc();
        let max_points = u32::try_from(row.max_points).unwrap_or(0);
        let released = row.released_at.is_some();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let current = store::submission_of(&mut tx, row.id, me.sub, true).await.map_err(db)?;
        if let Some(current) = &current
            && current.text == text
            && current.asset_id == req.asset_id
        {
            tx.commit().await.map_err(db)?;
            return Ok(current.to_submission(max_points, released, released));
        }
        let lateness = match domain::lateness(row.due_at, &row.late_policy(), now, current.is_some()) {
            Ok(lateness) => lateness,
            Err(Closed::CutOff) => {
                return Err(ErrorBody::conflict("the assignment's cut-off has passed")
                    .with_details(serde_json::json!({ "cutoff_at": row.cutoff_at })));
            }
            Err(Closed::NoResubmission) => {
                return Err(ErrorBody::conflict("resubmissions close at the due date")
                    .with_details(serde_json::json!({ "due_at": row.due_at })));
            }
        };
        let saved = match current {
            Some(current) => {
                store::resubmit(&mut tx, current.id, text.as_deref(), req.asset_id, now).await.map_err(db)?
            }
            None => {
                let new = SubmissionRow {
                    id: Uuid::now_v7(),
                    assignment_id: row.id,
                    user_id: me.sub,
                    version: 1,
                    text: text.clone(),
                    asset_id: req.asset_id,
                    submitted_at: now,
                    late_days: i32::try_from(lateness.late_days).unwrap_or(i32::MAX),
                    penalty_percent: i32::try_from(lateness.penalty_percent).unwrap_or(100),
                    grade: None,
                    points_hundredths: None,
                };
                if !store::insert_submission(&mut tx, &new).await.map_err(db)? {
                    // A concurrent first hand-in of the same learner won: retry as a resubmission.
                    return Err(ErrorBody::conflict("another hand-in of yours was saved at the same time: retry"));
                }
                new
            }
        };
        let version = u32::try_from(saved.version).unwrap_or(0);
        // Also when the new version has no text: the others' reports must forget the old text.
        if row.check_plagiarism {
            outbox::enqueue(&mut tx, &similarity_job(row.id, saved.id, version), None).await.map_err(outbox_error)?;
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(assignment_id = %row.id, submission_id = %saved.id, user_id = %me.sub, version, late_days = saved.late_days, "assignment handed in");
        Ok(saved.to_submission(max_points, released, false))
    }

    /// The caller's submission; its grade once the instructor has released the grades.
    pub async fn my_submission(&self, ctx: CallContext, req: AssignmentIdRequest) -> Result<Submission, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.assignment_row(req.assignment_id).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mine = store::submission_of(&mut conn, row.id, me.sub, false)
            .await
            .map_err(db)?
            .ok_or_else(|| ErrorBody::not_found("you have not handed this assignment in"))?;
        let released = row.released_at.is_some();
        Ok(mine.to_submission(u32::try_from(row.max_points).unwrap_or(0), released, released))
    }

    pub async fn list_submissions(
        &self,
        ctx: CallContext,
        req: AssignmentIdRequest,
    ) -> Result<AssignmentSubmissions, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.assignment_as_author(&ctx, &me, req.assignment_id).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let max_points = u32::try_from(row.max_points).unwrap_or(0);
        let released = row.released_at.is_some();
        let submissions = store::submissions(&mut conn, row.id)
            .await
            .map_err(db)?
            .iter()
            .map(|s| s.to_submission(max_points, released, true))
            .collect();
        Ok(AssignmentSubmissions { assignment: row.to_assignment().map_err(db)?, submissions })
    }

    /// Grade (or re-grade) a submission by the rubric; the late penalty is applied exactly.
    pub async fn grade_submission(
        &self,
        ctx: CallContext,
        req: GradeSubmissionRequest,
    ) -> Result<Submission, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let clean = |f: &Option<String>| f.as_deref().map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned);
        let feedback = clean(&req.feedback);
        if feedback.as_ref().is_some_and(|f| f.chars().count() > 5_000) {
            return Err(ErrorBody::invalid_field("feedback", "at most 5000 characters"));
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let found = store::submission(&mut conn, req.submission_id, false)
            .await
            .map_err(db)?
            .ok_or_else(|| ErrorBody::not_found("no such submission"))?;
        drop(conn);
        let row = self.assignment_as_author(&ctx, &me, found.assignment_id).await?;
        let rubric = &row.rubric.0;
        if req.scores.len() != rubric.len() {
            return Err(ErrorBody::invalid_field(
                "scores",
                format!("one score per rubric criterion ({})", rubric.len()),
            ));
        }
        let mut scores = Vec::with_capacity(rubric.len());
        for (criterion, score) in rubric.iter().zip(&req.scores) {
            if score.points > criterion.max_points {
                return Err(ErrorBody::invalid_field(
                    "scores",
                    format!("{} is worth at most {} (not {})", criterion.name, criterion.max_points, score.points),
                ));
            }
            let feedback = clean(&score.feedback);
            if feedback.as_ref().is_some_and(|f| f.chars().count() > 2_000) {
                return Err(ErrorBody::invalid_field("scores", "criterion feedback: at most 2000 characters"));
            }
            scores.push(coursebus_contracts::assessment::CriterionScore { points: score.points, feedback });
        }
        let raw_points: u32 = scores.iter().map(|s| s.points).sum();
        let now = OffsetDateTime::now_utc();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let locked = store::submission(&mut tx, found.id, true).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        let penalty = u32::try_from(locked.penalty_percent).unwrap_or(100);
        let points = domain::penalised_hundredths(raw_points, penalty);
        let grade = StoredGrade { scores, feedback, raw_points };
        let saved = store::grade_submission(&mut tx, locked.id, &grade, points, me.sub, now).await.map_err(db)?;
        let max_points = u32::try_from(row.max_points).unwrap_or(0);
        let version = u32::try_from(saved.version).unwrap_or(0);
        let graded = SubmissionGraded {
            submission_id: saved.id,
            assignment_id: row.id,
            course_id: row.course_id,
            user_id: saved.user_id,
            version,
            points_hundredths: points,
            max_points,
        }
        .envelope(Actor::User { id: me.sub });
        outbox::enqueue(&mut tx, &graded, Some(&ctx)).await.map_err(outbox_error)?;
        // Re-read under the lock: a release that committed meanwhile makes this grade visible now.
        let row = store::assignment(&mut tx, row.id, false).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        if row.released_at.is_some() {
            outbox::enqueue(&mut tx, &released_event(&row, &saved), Some(&ctx)).await.map_err(outbox_error)?;
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(submission_id = %saved.id, assignment_id = %row.id, raw_points, penalty_percent = penalty, points_hundredths = points, "submission graded");
        Ok(saved.to_submission(max_points, row.released_at.is_some(), true))
    }

    /// Publish the grades to the learners (once; again changes nothing). Every graded
    /// submission's grade goes out as `grade.released`; later gradings go out as they happen.
    pub async fn release_grades(&self, ctx: CallContext, req: AssignmentIdRequest) -> Result<Assignment, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.assignment_as_author(&ctx, &me, req.assignment_id).await?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let locked = store::assignment(&mut tx, row.id, true).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        if locked.released_at.is_some() {
            tx.commit().await.map_err(db)?;
            return locked.to_assignment().map_err(db);
        }
        let at = store::release(&mut tx, row.id, OffsetDateTime::now_utc()).await.map_err(db)?;
        let released = AssignmentRow { released_at: Some(at), ..locked };
        let mut count = 0;
        for s in store::submissions(&mut tx, row.id).await.map_err(db)? {
            if s.grade.is_some() {
                let mut event = released_event(&released, &s);
                event.id = coursebus_bus::ids::stable_id(&[s.id.as_bytes(), &s.version.to_be_bytes(), b"released"]);
                outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(outbox_error)?;
                count += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(assignment_id = %row.id, grades = count, "assignment grades released");
        released.to_assignment().map_err(db)
    }
}
