//! Assessment messages: question banks, quizzes, attempts and their grading, and assessment
//! events.
//!
//! A learner's paper is drawn and shuffled from a seed of (quiz, learner, attempt number), so a
//! resumed attempt shows the same paper; correct answers are never part of a paper or an attempt
//! before it is submitted. Submitted attempts are graded by the grading queue group (`JOB_GRADING`);
//! essays wait for the instructor.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::Event;
use crate::rpc::rpc;
use crate::subjects::assessment as subj;
use crate::validate::ValidationError;

/// One criterion of an essay's rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RubricCriterion {
    pub name: String,
    pub max_points: u32,
}

/// What a question asks and, for the author, what is right. Options and ordering items are
/// given in their correct order by the author; learners see them shuffled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum QuestionBody {
    /// One right option (`correct` indexes `options`).
    SingleChoice {
        options: Vec<String>,
        correct: usize,
    },
    /// Every right option, no wrong one.
    MultipleChoice {
        options: Vec<String>,
        correct: Vec<usize>,
    },
    TrueFalse {
        correct: bool,
    },
    /// Right when within `tolerance` of `answer`.
    Numeric {
        answer: f64,
        tolerance: f64,
    },
    /// Right when equal to an accepted answer, ignoring case and extra whitespace.
    ShortText {
        accepted: Vec<String>,
    },
    /// Put `items` (given here in the right order) in order.
    Ordering {
        items: Vec<String>,
    },
    /// Free text, graded by the instructor with the rubric.
    Essay {
        rubric: Vec<RubricCriterion>,
    },
}

impl QuestionBody {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SingleChoice { .. } => "single_choice",
            Self::MultipleChoice { .. } => "multiple_choice",
            Self::TrueFalse { .. } => "true_false",
            Self::Numeric { .. } => "numeric",
            Self::ShortText { .. } => "short_text",
            Self::Ordering { .. } => "ordering",
            Self::Essay { .. } => "essay",
        }
    }

    /// Check the author's question.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let options_ok = |options: &[String]| {
            (2..=10).contains(&options.len()) && options.iter().all(|o| !o.trim().is_empty() && o.len() <= 500)
        };
        match self {
            Self::SingleChoice { options, correct } => {
                if !options_ok(options) || *correct >= options.len() {
                    return Err(ValidationError::new(
                        "body",
                        "2 to 10 non-empty options and a correct index among them",
                    ));
                }
            }
            Self::MultipleChoice { options, correct } => {
                let mut seen = correct.clone();
                seen.sort_unstable();
                seen.dedup();
                if !options_ok(options)
                    || correct.is_empty()
                    || seen.len() != correct.len()
                    || correct.iter().any(|c| *c >= options.len())
                {
                    return Err(ValidationError::new(
                        "body",
                        "2 to 10 options and at least one distinct correct index among them",
                    ));
                }
            }
            Self::TrueFalse { .. } => {}
            Self::Numeric { answer, tolerance } => {
                if !answer.is_finite() || !tolerance.is_finite() || *tolerance < 0.0 {
                    return Err(ValidationError::new("body", "a finite answer and a tolerance of 0 or more"));
                }
            }
            Self::ShortText { accepted } => {
                if accepted.is_empty()
                    || accepted.len() > 20
                    || accepted.iter().any(|a| a.trim().is_empty() || a.len() > 200)
                {
                    return Err(ValidationError::new("body", "1 to 20 non-empty accepted answers"));
                }
            }
            Self::Ordering { items } => {
                if !options_ok(items) {
                    return Err(ValidationError::new("body", "2 to 10 non-empty items"));
                }
            }
            Self::Essay { rubric } => {
                if rubric.is_empty()
                    || rubric.len() > 10
                    || rubric.iter().any(|c| c.name.trim().is_empty() || c.max_points == 0)
                {
                    return Err(ValidationError::new(
                        "body",
                        "a rubric of 1 to 10 named criteria worth at least 1 point",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Graded by the instructor rather than automatically.
    pub fn is_manual(&self) -> bool {
        matches!(self, Self::Essay { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionInput {
    pub prompt: String,
    pub points: u32,
    pub body: QuestionBody,
}

/// A question in a bank, as its authors see it (with the answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Question {
    pub id: Uuid,
    pub prompt: String,
    pub points: u32,
    pub body: QuestionBody,
}

/// `POST /v1/courses/{id}/question-banks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBankRequest {
    /// Set by the gateway from the path.
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    pub title: String,
    pub questions: Vec<QuestionInput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bank {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub questions: Vec<Question>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoringPolicy {
    Highest,
    Latest,
    Average,
}

/// Draw `count` questions from a bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Draw {
    pub bank_id: Uuid,
    pub count: u32,
}

/// `POST /v1/courses/{id}/quizzes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQuizRequest {
    /// Set by the gateway from the path.
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    pub title: String,
    pub draws: Vec<Draw>,
    /// 10 s to 24 h; none: untimed.
    #[serde(default)]
    pub time_limit_secs: Option<u32>,
    /// 1 to 100.
    pub max_attempts: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opens_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closes_at: Option<OffsetDateTime>,
    pub scoring: ScoringPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quiz {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub draws: Vec<Draw>,
    pub time_limit_secs: Option<u32>,
    pub max_attempts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opens_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closes_at: Option<OffsetDateTime>,
    pub scoring: ScoringPolicy,
    /// Questions on every paper.
    pub question_count: u32,
}

/// A question as a learner sees it on their paper: no answers; options and ordering items in
/// the learner's own shuffled order, each with the id to answer with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaperQuestion {
    pub question_id: Uuid,
    pub prompt: String,
    pub points: u32,
    /// `single_choice`, `multiple_choice`, `true_false`, `numeric`, `short_text`, `ordering`, `essay`.
    pub kind: String,
    /// Choice options or ordering items, shuffled: `[{id, text}]` (ids are the author's indexes).
    pub choices: Vec<Choice>,
    /// Essays: the rubric criteria (names and points), so learners know how they are graded.
    pub rubric: Vec<RubricCriterion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Choice {
    pub id: u32,
    pub text: String,
}

/// A learner's answer to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AnswerValue {
    /// True/false.
    Bool(bool),
    /// Numeric.
    Number(f64),
    /// Short text or essay.
    Text(String),
    /// Choice ids: one for single choice, several for multiple choice, every item for ordering
    /// (in the learner's order).
    Choices(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub question_id: Uuid,
    pub value: AnswerValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    InProgress,
    /// Submitted, in the grading queue.
    Submitted,
    /// Auto-graded; essays wait for the instructor.
    NeedsManualGrading,
    Graded,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Submitted => "submitted",
            Self::NeedsManualGrading => "needs_manual_grading",
            Self::Graded => "graded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::InProgress, Self::Submitted, Self::NeedsManualGrading, Self::Graded]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// A graded question, shown once the attempt is submitted and graded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuestionResult {
    pub question_id: Uuid,
    /// Hundredths of a point; `None` while an essay waits for the instructor.
    pub points_hundredths: Option<u32>,
    pub max_points: u32,
    pub correct: Option<bool>,
    /// What was right (the author's answer), shown after grading.
    pub solution: QuestionBody,
    pub feedback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub id: Uuid,
    pub quiz_id: Uuid,
    pub user_id: Uuid,
    /// 1 for the first attempt.
    pub number: u32,
    pub status: AttemptStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    /// Answers saved after this are not counted.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub submitted_at: Option<OffsetDateTime>,
    pub paper: Vec<PaperQuestion>,
    /// The answers saved so far (counted ones only once submitted).
    pub answers: Vec<Answer>,
    /// Hundredths of a point, once graded.
    pub score_hundredths: Option<u32>,
    pub max_points: u32,
    /// Per question, once graded (never before submission).
    pub results: Vec<QuestionResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuizIdRequest {
    pub quiz_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptIdRequest {
    pub attempt_id: Uuid,
}

/// `PUT /v1/attempts/{id}/answers`: upsert these answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveAnswersRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub attempt_id: Uuid,
    pub answers: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SavedAnswers {
    pub saved: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub saved_at: OffsetDateTime,
}

/// The learner's grade on a quiz under its scoring policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuizGrade {
    pub quiz_id: Uuid,
    pub user_id: Uuid,
    pub scoring: ScoringPolicy,
    pub attempts_graded: u32,
    /// Basis points of the quiz's points (8537 = 85.37 %).
    pub percent_bp: Option<u32>,
}

/// Grade one submitted attempt (a job on `JOB_GRADING`, `Nats-Msg-Id` = the attempt id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeAttemptJob {
    pub attempt_id: Uuid,
}

impl Event for GradeAttemptJob {
    const SUBJECT: &'static str = subj::JOB_GRADE_ATTEMPT;
    const TYPE: &'static str = "assessment.grade.requested";
}

/// `cb.evt.assessment.attempt.graded`: an attempt's score (auto-graded part, or final).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptGraded {
    pub attempt_id: Uuid,
    pub quiz_id: Uuid,
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub score_hundredths: u32,
    pub max_points: u32,
    /// Essays still wait for the instructor.
    pub complete: bool,
}

impl Event for AttemptGraded {
    const SUBJECT: &'static str = subj::EVT_ATTEMPT_GRADED;
    const TYPE: &'static str = "assessment.attempt.graded";
}

/// What a grade is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GradedItemKind {
    Quiz,
    Assignment,
}

/// `cb.evt.assessment.grade.released`: a learner's grade on an item as the learner now sees it.
/// Quizzes: the quiz grade under its scoring policy, each time an attempt is fully graded.
/// Assignments: the penalised submission grade, when the instructor releases the grades (and
/// for every grading after that). The latest event per (learner, item) is the grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeReleased {
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub item_id: Uuid,
    pub item_kind: GradedItemKind,
    /// The grade in basis points of the item's maximum (7000 = 70.00 %).
    pub percent_bp: u32,
}

impl Event for GradeReleased {
    const SUBJECT: &'static str = subj::EVT_GRADE_RELEASED;
    const TYPE: &'static str = "assessment.grade.released";
}

// -- the gradebook -----------------------------------------------------------------------------

/// A category of graded items, e.g. "Quizzes" 40 %, "Assignments" 60 %.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Category {
    /// The category's id.
    pub id: Uuid,
    /// Display name, e.g. "Quizzes".
    pub name: String,
    /// Weight in percent points (integers); the weights of a course's categories sum to 100.
    pub weight_percent: u32,
    /// Drop this many lowest item percentages of each learner in this category (0 = none).
    pub drop_lowest: u32,
}

/// One gradable item (a quiz or an assignment) in a category, worth `max_points`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Item {
    /// The item's id.
    pub id: Uuid,
    /// The [`Category`] the item belongs to.
    pub category_id: Uuid,
    /// Display title, e.g. "Quiz 1".
    pub title: String,
    /// Points the item is worth; an item worth 0 points is ignored.
    pub max_points: u32,
}

/// A released score of a learner on an item (points may be fractional: use integer hundredths,
/// e.g. 8.5 points = 850).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Score {
    /// The learner who earned the score.
    pub learner_id: Uuid,
    /// The [`Item`] scored.
    pub item_id: Uuid,
    /// Points earned in hundredths (850 = 8.50 points).
    pub points_hundredths: u32,
}

/// How missing (ungraded) scores count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// Not graded yet: left out, neither counted nor droppable (the grade so far).
    Exclude,
    /// Counts as 0 % and can be dropped (the final grade after the due dates).
    Zero,
}

/// One learner's result in one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CategoryResult {
    /// The category's id.
    pub category_id: Uuid,
    /// The category's name.
    pub name: String,
    /// The category's weight in percent points.
    pub weight_percent: u32,
    /// The category's percentage for this learner in basis points (0..=10000; 8537 = 85.37 %),
    /// `None` when no item counts.
    pub percent_bp: Option<u32>,
    /// Items dropped as the lowest, in `items` order.
    pub dropped: Vec<Uuid>,
}

/// One learner's view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LearnerGrade {
    /// The learner.
    pub learner_id: Uuid,
    /// One result per category, in the given categories' order.
    pub categories: Vec<CategoryResult>,
    /// Weighted total in basis points; categories without any counting item are left out and
    /// the remaining weights re-normalised (so a learner with only quizzes graded so far sees
    /// their quiz percentage). `None` if nothing counts.
    pub total_bp: Option<u32>,
}

// -- manual grading and the gradebook endpoints ------------------------------------------------

/// An essay waiting for the instructor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EssayToGrade {
    pub question_id: Uuid,
    pub prompt: String,
    pub rubric: Vec<RubricCriterion>,
    /// What the learner wrote by the deadline (`None`: nothing).
    pub answer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ManualGradingItem {
    pub attempt_id: Uuid,
    pub user_id: Uuid,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub submitted_at: Option<OffsetDateTime>,
    pub essays: Vec<EssayToGrade>,
}

/// `GET /v1/quizzes/{id}/grading-queue`: attempts with essays to grade, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ManualGradingQueue {
    pub items: Vec<ManualGradingItem>,
}

/// `POST /v1/attempts/{id}/essays/{question}/grade`: one score per rubric criterion, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GradeEssayRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub attempt_id: Uuid,
    #[serde(default)]
    #[schema(ignore)]
    pub question_id: Uuid,
    pub scores: Vec<u32>,
    #[serde(default)]
    pub feedback: Option<String>,
}

/// One gradebook category and the quizzes it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GradebookCategoryInput {
    pub name: String,
    pub weight_percent: u32,
    #[serde(default)]
    pub drop_lowest: u32,
    #[serde(default)]
    pub quiz_ids: Vec<Uuid>,
    /// Assignments in this category (each worth its rubric's points; released grades count).
    #[serde(default)]
    pub assignment_ids: Vec<Uuid>,
}

/// `PUT /v1/courses/{id}/gradebook`: the weights sum to 100.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGradebookRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    pub categories: Vec<GradebookCategoryInput>,
}

/// A course's gradebook: categories and their items (each quiz is worth 100 points; its score
/// is the learner's quiz grade under the quiz's scoring policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GradebookSetup {
    pub course_id: Uuid,
    pub categories: Vec<Category>,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseIdRequest {
    pub course_id: Uuid,
}

/// `GET /v1/courses/{id}/gradebook/me`: the learner's own view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MyGradebook {
    pub setup: GradebookSetup,
    pub scores: Vec<Score>,
    pub grade: LearnerGrade,
}

/// `GET /v1/courses/{id}/gradebook`: every learner with a graded attempt (the instructor's view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CourseGradebook {
    pub setup: GradebookSetup,
    pub grades: Vec<LearnerGrade>,
    /// The same as CSV (RFC 4180).
    pub csv: String,
}

// -- assignments -------------------------------------------------------------------------------

/// What a learner hands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionType {
    /// Text typed in (checked for plagiarism).
    Text,
    /// One file uploaded through content (an asset of kind `submission`).
    File,
    /// Text, a file, or both.
    TextOrFile,
}

impl SubmissionType {
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionType::Text => "text",
            SubmissionType::File => "file",
            SubmissionType::TextOrFile => "text_or_file",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "text" => Some(SubmissionType::Text),
            "file" => Some(SubmissionType::File),
            "text_or_file" => Some(SubmissionType::TextOrFile),
            _ => None,
        }
    }
}

/// How late work is treated. A submission within `grace_minutes` after the due date is on time;
/// later, each started day after the due date costs `penalty_percent_per_day` percent of the
/// grade (at most 100); after `cutoff_at` nothing is accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LatePolicy {
    /// 0 to 10080 (a week).
    #[serde(default)]
    pub grace_minutes: u32,
    /// 0 to 100.
    #[serde(default)]
    pub penalty_percent_per_day: u32,
    /// The hard cut-off (at or after the due date); none: late work is accepted any time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cutoff_at: Option<OffsetDateTime>,
}

/// `POST /v1/courses/{id}/assignments` (the course's instructor or an admin).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAssignmentRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    /// 1 to 200 characters.
    pub title: String,
    /// Up to 20000 characters.
    #[serde(default)]
    pub instructions: String,
    pub submission_type: SubmissionType,
    /// 1 to 20 criteria; the assignment is worth their sum.
    pub rubric: Vec<RubricCriterion>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: OffsetDateTime,
    #[serde(default)]
    pub late_policy: LatePolicy,
    /// Compare text submissions with each other (default true).
    #[serde(default = "yes")]
    pub check_plagiarism: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub instructions: String,
    pub submission_type: SubmissionType,
    pub rubric: Vec<RubricCriterion>,
    pub max_points: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: OffsetDateTime,
    pub late_policy: LatePolicy,
    pub check_plagiarism: bool,
    /// When the instructor released the grades (learners see theirs from then on).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub released_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentIdRequest {
    pub assignment_id: Uuid,
}

/// `PUT /v1/assignments/{id}/submission`: hand in (or, until the due date, hand in again).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitAssignmentRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub assignment_id: Uuid,
    /// Up to 50000 characters.
    #[serde(default)]
    pub text: Option<String>,
    /// A `ready` asset of kind `submission` the learner uploaded to this course.
    #[serde(default)]
    pub asset_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionStatus {
    Submitted,
    Graded,
}

/// One rubric criterion's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CriterionScore {
    pub points: u32,
    #[serde(default)]
    pub feedback: Option<String>,
}

/// A submission's grade. The late penalty is applied to the rubric total, exactly:
/// `points_hundredths = raw_points × (100 − penalty_percent)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubmissionGrade {
    /// One per rubric criterion, in order.
    pub scores: Vec<CriterionScore>,
    pub feedback: Option<String>,
    pub raw_points: u32,
    pub penalty_percent: u32,
    /// The grade after the penalty, in hundredths of a point.
    pub points_hundredths: u32,
    pub max_points: u32,
    /// `points_hundredths` in basis points of `max_points` (rounded half up).
    pub percent_bp: u32,
    pub released: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Submission {
    pub id: Uuid,
    pub assignment_id: Uuid,
    pub user_id: Uuid,
    /// 1 for the first hand-in, +1 for each resubmission.
    pub version: u32,
    pub text: Option<String>,
    pub asset_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub submitted_at: OffsetDateTime,
    /// Started days after the due date (0: on time or within the grace period).
    pub late_days: u32,
    pub penalty_percent: u32,
    pub status: SubmissionStatus,
    /// The learner sees it only once released; the instructor always.
    pub grade: Option<SubmissionGrade>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionIdRequest {
    pub submission_id: Uuid,
}

/// `POST /v1/submissions/{id}/grade`: one score per rubric criterion, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GradeSubmissionRequest {
    #[serde(default)]
    #[schema(ignore)]
    pub submission_id: Uuid,
    pub scores: Vec<CriterionScore>,
    #[serde(default)]
    pub feedback: Option<String>,
}

/// `GET /v1/assignments/{id}/submissions`: every learner's current submission (instructor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentSubmissions {
    pub assignment: Assignment,
    pub submissions: Vec<Submission>,
}

/// A passage two submissions share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SharedPassage {
    /// The passage as it stands in this submission.
    pub text: String,
    /// The passage as it stands in the other one.
    pub other_text: String,
    pub words: u32,
}

/// Another submission close to this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimilarityMatch {
    pub submission_id: Uuid,
    pub user_id: Uuid,
    /// Jaccard similarity of the two texts' five-word shingles, in basis points (8100 = 81 %).
    pub similarity_bp: u32,
    /// Longest first, at most 10.
    pub passages: Vec<SharedPassage>,
}

/// One submission's similarity report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubmissionSimilarity {
    pub submission_id: Uuid,
    pub user_id: Uuid,
    /// The version the report was computed for (behind `Submission::version` while a check runs).
    pub version: u32,
    /// Closest first; empty: no other submission shares at least half its phrases.
    pub matches: Vec<SimilarityMatch>,
}

/// `GET /v1/assignments/{id}/similarity`: the plagiarism reports of an assignment (instructor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimilarityReport {
    pub assignment_id: Uuid,
    /// Text submissions whose current version has been checked.
    pub checked: u32,
    /// Text submissions still waiting for the check job.
    pub pending: u32,
    /// Flagged submissions first (highest similarity first), then the rest.
    pub submissions: Vec<SubmissionSimilarity>,
}

/// Compare an assignment's text submissions (a job on `JOB_GRADING`; `Nats-Msg-Id` is stable
/// per submission version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSimilarityJob {
    pub assignment_id: Uuid,
    pub submission_id: Uuid,
    pub version: u32,
}

impl Event for CheckSimilarityJob {
    const SUBJECT: &'static str = subj::JOB_CHECK_SIMILARITY;
    const TYPE: &'static str = "assessment.similarity.requested";
}

/// `cb.evt.assessment.submission.graded`: an instructor graded a submission (learners see it
/// once released).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionGraded {
    pub submission_id: Uuid,
    pub assignment_id: Uuid,
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub version: u32,
    pub points_hundredths: u32,
    pub max_points: u32,
}

impl Event for SubmissionGraded {
    const SUBJECT: &'static str = subj::EVT_SUBMISSION_GRADED;
    const TYPE: &'static str = "assessment.submission.graded";
}

rpc!(CreateBank, CreateBankRequest, Bank, subj::BANK_CREATE);
rpc!(CreateQuiz, CreateQuizRequest, Quiz, subj::QUIZ_CREATE);
rpc!(GetQuiz, QuizIdRequest, Quiz, subj::QUIZ_GET);
rpc!(StartAttempt, QuizIdRequest, Attempt, subj::ATTEMPT_START);
rpc!(GetAttempt, AttemptIdRequest, Attempt, subj::ATTEMPT_GET);
rpc!(SaveAnswers, SaveAnswersRequest, SavedAnswers, subj::ATTEMPT_SAVE);
rpc!(SubmitAttempt, AttemptIdRequest, Attempt, subj::ATTEMPT_SUBMIT);
rpc!(GetQuizGrade, QuizIdRequest, QuizGrade, subj::QUIZ_GRADE);
rpc!(ManualQueue, QuizIdRequest, ManualGradingQueue, subj::QUIZ_MANUAL_QUEUE);
rpc!(GradeEssay, GradeEssayRequest, Attempt, subj::ESSAY_GRADE);
rpc!(SetGradebook, SetGradebookRequest, GradebookSetup, subj::GRADEBOOK_SET);
rpc!(MyGrades, CourseIdRequest, MyGradebook, subj::GRADEBOOK_MINE);
rpc!(CourseGrades, CourseIdRequest, CourseGradebook, subj::GRADEBOOK_COURSE);
rpc!(CreateAssignment, CreateAssignmentRequest, Assignment, subj::ASSIGNMENT_CREATE);
rpc!(GetAssignment, AssignmentIdRequest, Assignment, subj::ASSIGNMENT_GET);
rpc!(SubmitAssignment, SubmitAssignmentRequest, Submission, subj::ASSIGNMENT_SUBMIT);
rpc!(MySubmission, AssignmentIdRequest, Submission, subj::SUBMISSION_MINE);
rpc!(ListSubmissions, AssignmentIdRequest, AssignmentSubmissions, subj::SUBMISSION_LIST);
rpc!(GradeSubmission, GradeSubmissionRequest, Submission, subj::SUBMISSION_GRADE);
rpc!(ReleaseGrades, AssignmentIdRequest, Assignment, subj::ASSIGNMENT_RELEASE);
rpc!(GetSimilarity, AssignmentIdRequest, SimilarityReport, subj::ASSIGNMENT_SIMILARITY);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_validated_by_kind() {
        let ok: Vec<QuestionBody> = serde_json::from_value(serde_json::json!([
            {"kind": "single_choice", "options": ["a", "b"], "correct": 1},
            {"kind": "multiple_choice", "options": ["a", "b", "c"], "correct": [0, 2]},
            {"kind": "true_false", "correct": true},
            {"kind": "numeric", "answer": 2.5, "tolerance": 0.01},
            {"kind": "short_text", "accepted": ["Paris"]},
            {"kind": "ordering", "items": ["one", "two", "three"]},
            {"kind": "essay", "rubric": [{"name": "argument", "max_points": 5}]}
        ]))
        .unwrap();
        assert!(ok.iter().all(|q| q.validate().is_ok()));
        let bad: Vec<QuestionBody> = serde_json::from_value(serde_json::json!([
            {"kind": "single_choice", "options": ["a", "b"], "correct": 2},
            {"kind": "single_choice", "options": ["a"], "correct": 0},
            {"kind": "multiple_choice", "options": ["a", "b"], "correct": [1, 1]},
            {"kind": "multiple_choice", "options": ["a", "b"], "correct": []},
            {"kind": "numeric", "answer": 1.0, "tolerance": -1.0},
            {"kind": "short_text", "accepted": [" "]},
            {"kind": "essay", "rubric": []}
        ]))
        .unwrap();
        assert!(bad.iter().all(|q| q.validate().is_err()));
        assert!(
            serde_json::from_value::<QuestionBody>(serde_json::json!({"kind": "true_false", "correct": true, "x": 1}))
                .is_err()
        );
    }

    #[test]
    fn answers_read_every_shape() {
        let answers: Vec<AnswerValue> = serde_json::from_str(r#"[true, 2.5, "Paris", [3, 1]]"#).unwrap();
        assert_eq!(
            answers,
            [
                AnswerValue::Bool(true),
                AnswerValue::Number(2.5),
                AnswerValue::Text("Paris".into()),
                AnswerValue::Choices(vec![3, 1])
            ]
        );
    }
}
