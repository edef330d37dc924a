//! Enrollment messages: enrolments, lesson and course progress, completion and certificates,
//! rosters, access checks, and enrollment events.
//!
//! An enrolment is pinned to the published version of the course it was made against: its
//! modules, lessons, required flags and drip schedule do not change when the instructor
//! publishes again, so what a learner must complete never moves mid-flight.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::assessment::GradedItemKind;
use crate::event::Event;
use crate::rpc::rpc;
use crate::subjects::enrollment as subj;

/// Where an enrolment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentStatus {
    /// Enrolled, not finished.
    Active,
    /// Every required lesson is done and every completion rule met; a certificate exists.
    Completed,
    /// Unenrolled.
    Cancelled,
}

impl EnrollmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentStatus::Active => "active",
            EnrollmentStatus::Completed => "completed",
            EnrollmentStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(EnrollmentStatus::Active),
            "completed" => Some(EnrollmentStatus::Completed),
            "cancelled" => Some(EnrollmentStatus::Cancelled),
            _ => None,
        }
    }
}

/// A learner's state in one lesson. Ordered: progress never goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LessonState {
    NotStarted,
    Started,
    Completed,
}

impl LessonState {
    pub fn as_str(self) -> &'static str {
        match self {
            LessonState::NotStarted => "not_started",
            LessonState::Started => "started",
            LessonState::Completed => "completed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "not_started" => Some(LessonState::NotStarted),
            "started" => Some(LessonState::Started),
            "completed" => Some(LessonState::Completed),
            _ => None,
        }
    }
}

/// What a progress report says about a lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgressState {
    Started,
    Completed,
}

impl From<ProgressState> for LessonState {
    fn from(state: ProgressState) -> Self {
        match state {
            ProgressState::Started => LessonState::Started,
            ProgressState::Completed => LessonState::Completed,
        }
    }
}

/// Course progress: done required lessons over all required lessons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CourseProgress {
    pub required_done: u32,
    pub required_total: u32,
    /// `required_done * 100 / required_total`, rounded down.
    pub percent: u32,
}

/// One enrolment, as its learner sees it in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Enrollment {
    pub id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    /// The published version of the course this enrolment follows.
    pub course_version: u64,
    pub course_title: String,
    pub course_slug: String,
    pub status: EnrollmentStatus,
    pub progress: CourseProgress,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub enrolled_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<OffsetDateTime>,
    /// The verification code of the certificate, once completed.
    pub certificate_code: Option<String>,
}

/// A lesson of an enrolment with the learner's progress in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LessonProgress {
    pub lesson_id: Uuid,
    pub title: String,
    pub required: bool,
    pub state: LessonState,
    /// 0 to 100; never decreases.
    pub percent: u32,
    /// Where playback stopped, in seconds.
    pub position_secs: Option<u32>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<OffsetDateTime>,
}

/// A module of an enrolment: when it opens (drip release) and its lessons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModuleProgress {
    pub module_id: Uuid,
    pub title: String,
    pub release_after_days: u32,
    /// Enrolment time plus `release_after_days`.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub available_at: OffsetDateTime,
    /// True once `available_at` has passed.
    pub available: bool,
    pub lessons: Vec<LessonProgress>,
}

/// `GET /v1/enrollments/{id}`: the enrolment with every module and lesson, and the course's
/// completion rules with the learner's grades on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentDetail {
    #[serde(flatten)]
    pub enrollment: Enrollment,
    pub modules: Vec<ModuleProgress>,
    /// Besides the required lessons, what completing the course takes (empty: lessons only).
    #[serde(default)]
    pub completion_rules: Vec<RuleProgress>,
}

/// One completion rule as the instructor sets it: the learner's latest grade on an assessment
/// item must reach `min_percent_bp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionRuleInput {
    /// The quiz or assignment (assessment's id).
    pub item_id: Uuid,
    pub item_kind: GradedItemKind,
    /// Shown to learners, 1 to 200 characters ("Final quiz").
    pub title: String,
    /// The lowest passing grade in basis points, 0 to 10000 (7000 = 70 %).
    pub min_percent_bp: u32,
}

/// `PUT /v1/courses/{id}/completion-rules`: replace the course's rules (at most 50, one per item).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCompletionRulesRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    pub rules: Vec<CompletionRuleInput>,
}

/// `GET /v1/courses/{id}/completion-rules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRulesRequest {
    pub course_id: Uuid,
}

/// A stored completion rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompletionRule {
    pub item_id: Uuid,
    pub item_kind: GradedItemKind,
    pub title: String,
    pub min_percent_bp: u32,
}

/// A course's completion rules, in the order they were given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionRules {
    pub course_id: Uuid,
    pub rules: Vec<CompletionRule>,
    /// When they were last set (none: never).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<OffsetDateTime>,
}

/// A completion rule with the learner's latest grade on its item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuleProgress {
    #[serde(flatten)]
    pub rule: CompletionRule,
    /// The learner's latest grade on the item (none: not graded yet).
    #[serde(default)]
    pub percent_bp: Option<u32>,
    /// When that grade was given.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub graded_at: Option<OffsetDateTime>,
    /// The grade reaches the rule's minimum.
    pub met: bool,
}

/// `POST /v1/enrollments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentRequest {
    pub course_id: Uuid,
}

/// The answer to an enrol request: the enrolment, and whether this request created it (an
/// existing enrolment of the caller in the course is returned as is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollReply {
    pub created: bool,
    pub enrollment: Enrollment,
}

/// `GET`/`DELETE /v1/enrollments/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentIdRequest {
    pub id: Uuid,
}

/// `GET /v1/enrollments?status=&cursor=&limit=`: the caller's enrolments, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEnrollmentsRequest {
    /// Only this status (default: active and completed).
    #[serde(default)]
    pub status: Option<EnrollmentStatus>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// 1 to 100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentPage {
    pub items: Vec<Enrollment>,
    pub next_cursor: Option<String>,
}

/// The body of `PUT /v1/enrollments/{id}/lessons/{lesson_id}/progress`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressInput {
    pub state: ProgressState,
    /// 0 to 100 (a completed lesson counts as 100). A lower value than before is ignored.
    #[serde(default)]
    pub percent: u32,
    /// Where playback stopped, in seconds.
    #[serde(default)]
    pub position_secs: Option<u32>,
}

/// `cb.enrollment.progress.update`: a progress report for one lesson of an enrolment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProgressRequest {
    pub enrollment_id: Uuid,
    pub lesson_id: Uuid,
    pub state: ProgressState,
    #[serde(default)]
    pub percent: u32,
    #[serde(default)]
    pub position_secs: Option<u32>,
}

impl UpdateProgressRequest {
    pub fn new(enrollment_id: Uuid, lesson_id: Uuid, input: ProgressInput) -> Self {
        Self {
            enrollment_id,
            lesson_id,
            state: input.state,
            percent: input.percent,
            position_secs: input.position_secs,
        }
    }
}

/// The lesson after the update and the enrolment it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressReply {
    pub lesson: LessonProgress,
    pub enrollment: Enrollment,
}

/// The query of `GET /v1/courses/{course}/roster?status=&cursor=&limit=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RosterQuery {
    /// Only this status (default: active and completed).
    #[serde(default)]
    pub status: Option<EnrollmentStatus>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// 1 to 100 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `cb.enrollment.roster.list`: the learners of a course (its instructor and admins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterRequest {
    /// The course's id or slug.
    pub course: String,
    #[serde(default)]
    pub status: Option<EnrollmentStatus>,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

impl RosterRequest {
    pub fn new(course: String, query: RosterQuery) -> Self {
        Self { course, status: query.status, cursor: query.cursor, limit: query.limit }
    }
}

/// One learner of a course.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RosterEntry {
    pub enrollment_id: Uuid,
    pub user_id: Uuid,
    pub status: EnrollmentStatus,
    pub course_version: u64,
    pub progress: CourseProgress,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub enrolled_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_activity_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RosterPage {
    pub course_id: Uuid,
    pub items: Vec<RosterEntry>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/certificates/{code}` (public).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyCertificateRequest {
    pub code: String,
}

/// A certificate of completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Certificate {
    /// The verification code (20 characters of base32).
    pub code: String,
    pub enrollment_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub course_title: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: OffsetDateTime,
}

/// `cb.enrollment.access.check`: may `user_id` use `course_id` (and, if given, `lesson_id`)?
/// Callers forward the user's token; only that user or an admin may ask.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessCheckRequest {
    pub user_id: Uuid,
    pub course_id: Uuid,
    #[serde(default)]
    pub lesson_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessReply {
    /// An active or completed enrolment exists.
    pub enrolled: bool,
    pub enrollment_id: Option<Uuid>,
    /// With `lesson_id`: the lesson belongs to the enrolment and its module is released.
    pub lesson_available: Option<bool>,
    /// With `lesson_id`: when the lesson's module opens.
    #[serde(with = "time::serde::rfc3339::option")]
    pub available_at: Option<OffsetDateTime>,
}

rpc!(Enroll, CreateEnrollmentRequest, EnrollReply, subj::ENROLLMENT_CREATE);
rpc!(GetEnrollment, EnrollmentIdRequest, EnrollmentDetail, subj::ENROLLMENT_GET);
rpc!(CancelEnrollment, EnrollmentIdRequest, Enrollment, subj::ENROLLMENT_CANCEL);
rpc!(ListMyEnrollments, ListEnrollmentsRequest, EnrollmentPage, subj::ENROLLMENT_MINE);
rpc!(UpdateProgress, UpdateProgressRequest, ProgressReply, subj::PROGRESS_UPDATE);
rpc!(ListRoster, RosterRequest, RosterPage, subj::ROSTER_LIST);
rpc!(VerifyCertificate, VerifyCertificateRequest, Certificate, subj::CERTIFICATE_VERIFY);
rpc!(CheckAccess, AccessCheckRequest, AccessReply, subj::ACCESS_CHECK);
rpc!(ListLearners, LearnersRequest, LearnersPage, subj::INTERNAL_LEARNERS);
rpc!(SetCompletionRules, SetCompletionRulesRequest, CompletionRules, subj::COMPLETION_RULES_SET);
rpc!(GetCompletionRules, CompletionRulesRequest, CompletionRules, subj::COMPLETION_RULES_GET);

/// Internal: a page of the users with a live (active or completed) enrolment in `course_id`, in
/// user id order, strictly after `after`; with `enrolled_by`, only those enrolled at or before it
/// (an announcement reaches the learners enrolled when it was made).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnersRequest {
    pub course_id: Uuid,
    #[serde(default)]
    pub after: Option<Uuid>,
    /// 1 to 5,000.
    pub limit: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub enrolled_by: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnersPage {
    pub user_ids: Vec<Uuid>,
    /// Pass as `after` for the next page; `None` on the last one.
    pub next: Option<Uuid>,
}

/// `cb.evt.enrollment.enrolment.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentCreated {
    pub enrollment_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub course_version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
    /// The paid order this enrolment fulfils (none for a free course).
    #[serde(default)]
    pub order_id: Option<Uuid>,
}

impl Event for EnrollmentCreated {
    const SUBJECT: &'static str = subj::EVT_ENROLMENT_CREATED;
    const TYPE: &'static str = "enrollment.enrolment.created";
}

/// `cb.evt.enrollment.enrolment.cancelled`: the learner unenrolled, or a full refund of the
/// order it came from revoked it (`order_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentCancelled {
    pub enrollment_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    #[serde(default)]
    pub order_id: Option<Uuid>,
}

impl Event for EnrollmentCancelled {
    const SUBJECT: &'static str = subj::EVT_ENROLMENT_CANCELLED;
    const TYPE: &'static str = "enrollment.enrolment.cancelled";
}

/// `cb.evt.enrollment.enrolment.completed`: every required lesson is done and every completion
/// rule met; emitted once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentCompleted {
    pub enrollment_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub certificate_code: String,
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
}

impl Event for EnrollmentCompleted {
    const SUBJECT: &'static str = subj::EVT_ENROLMENT_COMPLETED;
    const TYPE: &'static str = "enrollment.enrolment.completed";
}

/// `cb.evt.enrollment.enrolment.rejected`: a paid order could not become an enrolment; payments
/// refunds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentRejected {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub reason: String,
}

impl Event for EnrollmentRejected {
    const SUBJECT: &'static str = subj::EVT_ENROLMENT_REJECTED;
    const TYPE: &'static str = "enrollment.enrolment.rejected";
}

/// `cb.evt.enrollment.progress.updated`: a lesson's state or percent went up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressUpdated {
    pub enrollment_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub lesson_id: Uuid,
    pub state: LessonState,
    pub percent: u32,
    pub progress: CourseProgress,
}

impl Event for ProgressUpdated {
    const SUBJECT: &'static str = subj::EVT_PROGRESS_UPDATED;
    const TYPE: &'static str = "enrollment.progress.updated";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Rpc;

    #[test]
    fn subjects_follow_the_naming_scheme() {
        assert_eq!(<Enroll as Rpc>::ENDPOINT.subject(), "cb.enrollment.enrollment.create");
        assert_eq!(<CheckAccess as Rpc>::ENDPOINT.subject(), "cb.enrollment.access.check");
        for subject in [
            EnrollmentCreated::SUBJECT,
            EnrollmentCancelled::SUBJECT,
            EnrollmentCompleted::SUBJECT,
            EnrollmentRejected::SUBJECT,
            ProgressUpdated::SUBJECT,
        ] {
            assert!(subject.starts_with("cb.evt.enrollment."), "{subject}");
            assert_eq!(subject.split('.').count(), 5, "{subject}");
        }
    }

    #[test]
    fn states_are_ordered_and_round_trip() {
        assert!(LessonState::NotStarted < LessonState::Started && LessonState::Started < LessonState::Completed);
        for s in [LessonState::NotStarted, LessonState::Started, LessonState::Completed] {
            assert_eq!(LessonState::parse(s.as_str()), Some(s));
        }
        for s in [EnrollmentStatus::Active, EnrollmentStatus::Completed, EnrollmentStatus::Cancelled] {
            assert_eq!(EnrollmentStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
    }

    #[test]
    fn progress_requests_reject_unknown_fields_and_travel_whole() {
        let ok: ProgressInput = serde_json::from_str(r#"{"state":"started","percent":40}"#).unwrap();
        assert_eq!((ok.state, ok.percent, ok.position_secs), (ProgressState::Started, 40, None));
        assert!(serde_json::from_str::<ProgressInput>(r#"{"state":"started","pct":1}"#).is_err());
        assert!(serde_json::from_str::<ProgressInput>(r#"{"state":"done"}"#).is_err());
        assert!(serde_json::from_str::<ProgressInput>(r#"{"state":"started","enrollment_id":"x"}"#).is_err());
        let (e, l) = (Uuid::now_v7(), Uuid::now_v7());
        let req = UpdateProgressRequest::new(e, l, ok);
        let back: UpdateProgressRequest = serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
        assert_eq!((back.enrollment_id, back.lesson_id, back.percent), (e, l, 40));
        let roster = RosterRequest::new("rust-101".into(), RosterQuery { limit: Some(5), ..Default::default() });
        let back: RosterRequest = serde_json::from_slice(&serde_json::to_vec(&roster).unwrap()).unwrap();
        assert_eq!((back.course.as_str(), back.limit), ("rust-101", Some(5)));
        assert!(serde_json::from_str::<CreateEnrollmentRequest>(r#"{"course_id":"x"}"#).is_err());
    }

    #[test]
    fn completion_rules_reject_unknown_fields_and_details_stay_readable_without_them() {
        let item = Uuid::now_v7();
        let body = serde_json::json!({"rules": [
            {"item_id": item, "item_kind": "quiz", "title": "Final quiz", "min_percent_bp": 7000}]});
        let req: SetCompletionRulesRequest = serde_json::from_value(body).unwrap();
        assert_eq!(
            (req.course_id, req.rules[0].item_kind, req.rules[0].min_percent_bp),
            (Uuid::nil(), GradedItemKind::Quiz, 7000)
        );
        let extra = serde_json::json!({"rules": [
            {"item_id": item, "item_kind": "quiz", "title": "t", "min_percent_bp": 1, "weight": 2}]});
        assert!(serde_json::from_value::<SetCompletionRulesRequest>(extra).is_err());
        assert!(serde_json::from_value::<SetCompletionRulesRequest>(serde_json::json!({"rules": [], "x": 1})).is_err());
        // A detail from before completion rules existed still reads.
        let now = OffsetDateTime::now_utc();
        let detail = EnrollmentDetail {
            enrollment: Enrollment {
                id: item,
                user_id: item,
                course_id: item,
                course_version: 1,
                course_title: "C".into(),
                course_slug: "c".into(),
                status: EnrollmentStatus::Active,
                progress: CourseProgress { required_done: 0, required_total: 1, percent: 0 },
                enrolled_at: now,
                completed_at: None,
                cancelled_at: None,
                certificate_code: None,
            },
            modules: vec![],
            completion_rules: vec![RuleProgress {
                rule: CompletionRule {
                    item_id: item,
                    item_kind: GradedItemKind::Quiz,
                    title: "t".into(),
                    min_percent_bp: 7000,
                },
                percent_bp: Some(6000),
                graded_at: Some(now),
                met: false,
            }],
        };
        let mut value = serde_json::to_value(&detail).unwrap();
        assert_eq!(value["completion_rules"][0]["title"], "t", "the rule is flattened");
        assert_eq!(value["completion_rules"][0]["percent_bp"], 6000);
        let back: EnrollmentDetail = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(back.completion_rules, detail.completion_rules);
        value.as_object_mut().unwrap().remove("completion_rules");
        let old: EnrollmentDetail = serde_json::from_value(value).unwrap();
        assert!(old.completion_rules.is_empty());
    }
}
