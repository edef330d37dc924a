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

rpc!(CreateBank, CreateBankRequest, Bank, subj::BANK_CREATE);
rpc!(CreateQuiz, CreateQuizRequest, Quiz, subj::QUIZ_CREATE);
rpc!(GetQuiz, QuizIdRequest, Quiz, subj::QUIZ_GET);
rpc!(StartAttempt, QuizIdRequest, Attempt, subj::ATTEMPT_START);
rpc!(GetAttempt, AttemptIdRequest, Attempt, subj::ATTEMPT_GET);
rpc!(SaveAnswers, SaveAnswersRequest, SavedAnswers, subj::ATTEMPT_SAVE);
rpc!(SubmitAttempt, AttemptIdRequest, Attempt, subj::ATTEMPT_SUBMIT);
rpc!(GetQuizGrade, QuizIdRequest, QuizGrade, subj::QUIZ_GRADE);

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
