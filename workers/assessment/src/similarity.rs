//! The plagiarism check as a job: each hand-in (of an assignment checked for plagiarism) queues a
//! `CheckSimilarityJob` on `JOB_GRADING` (own durable consumer, `assessment_similarity`, shared
//! by the replicas). A job re-checks the whole assignment — every current text submission
//! against every other, with shingling + MinHash/LSH (`plagiarism.rs`) — and stores one report
//! per submission, so an earlier hand-in also learns of a later copy. Checks of one assignment
//! run one at a time (advisory lock); a redelivered job just computes the same reports again.

use coursebus_bus::CallContext;
use coursebus_bus::consume::{Delivery, Handled};
use coursebus_contracts::ErrorBody;
use coursebus_contracts::EventEnvelope;
use coursebus_contracts::assessment::{
    AssignmentIdRequest, CheckSimilarityJob, SharedPassage, SimilarityMatch, SimilarityReport, SubmissionSimilarity,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::handlers::{Assessments, db};
use crate::plagiarism::{self, Fingerprint, Params};
use crate::store;

/// (submission, learner, text) of one assignment.
type Doc = (Uuid, Uuid, String);

/// Every document's matches, in the order of `docs`.
pub fn compare(docs: &[Doc]) -> Vec<Vec<SimilarityMatch>> {
    let params = Params::default();
    let prints: Vec<Fingerprint> = docs.iter().map(|(_, _, text)| Fingerprint::new(text, &params)).collect();
    let texts: Vec<&str> = docs.iter().map(|(_, _, text)| text.as_str()).collect();
    (0..docs.len())
        .map(|i| {
            plagiarism::closest_matches(i, &prints, &texts, &params)
                .into_iter()
                .map(|m| SimilarityMatch {
                    submission_id: docs[m.other].0,
                    user_id: docs[m.other].1,
                    similarity_bp: (m.similarity * 10_000.0).round() as u32,
                    passages: m
                        .passages
                        .iter()
                        .map(|p| SharedPassage {
                            text: texts[i][p.a.clone()].to_owned(),
                            other_text: texts[m.other][p.b.clone()].to_owned(),
                            words: u32::try_from(p.words).unwrap_or(u32::MAX),
                        })
                        .collect(),
                })
                .collect()
        })
        .collect()
}

impl Assessments {
    /// One job from `JOB_GRADING` on `cb.job.assessment.similarity`.
    pub async fn on_similarity_job(&self, delivery: Delivery) -> Handled {
        let job: EventEnvelope<CheckSimilarityJob> = match delivery.json() {
            Ok(job) => job,
            Err(rejected) => return rejected,
        };
        match self.check_assignment(job.data.assignment_id).await {
            Ok(checked) => {
                tracing::info!(assignment_id = %job.data.assignment_id, submission_id = %job.data.submission_id, version = job.data.version, checked, "similarity checked");
                Handled::Done
            }
            Err(err) => Handled::Retry(err.to_string()),
        }
    }

    /// Compare every current text submission of `assignment`; returns how many were checked.
    async fn check_assignment(&self, assignment: Uuid) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        store::lock_assignment_checks(&mut tx, assignment).await?;
        let rows = store::submissions(&mut tx, assignment).await?;
        let rows: Vec<_> = rows.into_iter().filter(|s| s.text.is_some()).collect();
        let docs: Vec<Doc> = rows.iter().map(|s| (s.id, s.user_id, s.text.clone().unwrap_or_default())).collect();
        let reports = tokio::task::spawn_blocking(move || compare(&docs))
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("similarity check panicked: {e}")))?;
        let now = OffsetDateTime::now_utc();
        for (row, matches) in rows.iter().zip(&reports) {
            store::save_report(&mut tx, row.id, row.version, matches, now).await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// The assignment's plagiarism reports (its instructor or an admin).
    pub async fn similarity_report(
        &self,
        ctx: CallContext,
        req: AssignmentIdRequest,
    ) -> Result<SimilarityReport, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let assignment = self.assignment_row(req.assignment_id).await?;
        self.require_author(&ctx, &me, assignment.course_id).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let texts: Vec<_> = store::submissions(&mut conn, assignment.id)
            .await
            .map_err(db)?
            .into_iter()
            .filter(|s| s.text.is_some())
            .collect();
        let stored = store::reports(&mut conn, assignment.id).await.map_err(db)?;
        let (mut checked, mut pending) = (0, 0);
        let mut submissions = Vec::new();
        for s in &texts {
            match stored.iter().find(|(id, _, _)| *id == s.id) {
                Some((_, version, matches)) => {
                    if *version == s.version {
                        checked += 1;
                    } else {
                        pending += 1;
                    }
                    submissions.push(SubmissionSimilarity {
                        submission_id: s.id,
                        user_id: s.user_id,
                        version: u32::try_from(*version).unwrap_or(0),
                        matches: matches.0.clone(),
                    });
                }
                None => pending += 1,
            }
        }
        let top = |s: &SubmissionSimilarity| s.matches.first().map_or(0, |m| m.similarity_bp);
        submissions.sort_by(|a, b| top(b).cmp(&top(a)).then(a.submission_id.cmp(&b.submission_id)));
        Ok(SimilarityReport { assignment_id: assignment.id, checked, pending, submissions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "Ownership in Rust means every value has a single owner, and when the owner goes out \
        of scope the value is dropped. Borrowing lets other code use a value without taking ownership, and \
        the borrow checker makes sure no reference outlives the data it points to.";

    #[test]
    fn near_copies_are_reported_both_ways_with_passages_and_others_are_not() {
        let copy = ORIGINAL.replace("Ownership in Rust means", "In Rust, ownership means");
        let other = "Tokio is an asynchronous runtime: tasks are scheduled cooperatively on a pool of worker \
            threads, and I/O readiness is delivered by the operating system's event queue.";
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let docs: Vec<Doc> = vec![
            (ids[0], Uuid::nil(), ORIGINAL.to_owned()),
            (ids[1], Uuid::nil(), copy),
            (ids[2], Uuid::nil(), other.to_owned()),
        ];
        let reports = compare(&docs);
        assert_eq!(reports[0].len(), 1);
        assert_eq!(reports[0][0].submission_id, ids[1]);
        assert!(reports[0][0].similarity_bp >= 7_000, "{}", reports[0][0].similarity_bp);
        assert_eq!(reports[1][0].submission_id, ids[0]);
        assert_eq!(reports[1][0].similarity_bp, reports[0][0].similarity_bp);
        let passage = &reports[0][0].passages[0];
        assert!(passage.text.contains("the borrow checker makes sure no reference outlives"), "{passage:?}");
        assert_eq!(passage.text, passage.other_text);
        assert!(reports[2].is_empty());
    }
}
