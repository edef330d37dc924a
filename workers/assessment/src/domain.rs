//! Pure rules: seeded papers, grading of each question kind, scoring policies, validation.

use coursebus_contracts::assessment::{
    AnswerValue, Choice, CreateAssignmentRequest, CreateQuizRequest, LatePolicy, PaperQuestion, Question, QuestionBody,
    QuestionResult, ScoringPolicy,
};
use coursebus_contracts::validate::ValidationError;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// The seed of a learner's paper: the same quiz, learner and attempt number always give the
/// same paper; another learner or attempt gets another.
pub fn paper_seed(quiz: Uuid, user: Uuid, number: u32) -> u64 {
    let digest = Sha256::new()
        .chain_update(quiz.as_bytes())
        .chain_update(user.as_bytes())
        .chain_update(number.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// Draw `count` questions from each bank (in draw order) and shuffle the paper and every
/// question's choices, from `seed`.
pub fn draw_paper(banks: &[(&[Question], u32)], seed: u64) -> Vec<PaperQuestion> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut paper: Vec<&Question> = Vec::new();
    for (questions, count) in banks {
        let picked: Vec<&Question> = questions.choose_multiple(&mut rng, *count as usize).collect();
        paper.extend(picked);
    }
    paper.shuffle(&mut rng);
    paper.into_iter().map(|q| present(q, &mut rng)).collect()
}

fn present(q: &Question, rng: &mut rand::rngs::StdRng) -> PaperQuestion {
    let texts: &[String] = match &q.body {
        QuestionBody::SingleChoice { options, .. } | QuestionBody::MultipleChoice { options, .. } => options,
        QuestionBody::Ordering { items } => items,
        _ => &[],
    };
    let mut choices: Vec<Choice> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Choice { id: u32::try_from(i).unwrap_or(u32::MAX), text: t.clone() })
        .collect();
    choices.shuffle(rng);
    let rubric = match &q.body {
        QuestionBody::Essay { rubric } => rubric.clone(),
        _ => Vec::new(),
    };
    PaperQuestion {
        question_id: q.id,
        prompt: q.prompt.clone(),
        points: q.points,
        kind: q.body.kind().to_owned(),
        choices,
        rubric,
    }
}

/// Short answers compare without case and extra whitespace.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Whether `answer` is right for `body`; `None` for essays (graded by hand).
pub fn is_correct(body: &QuestionBody, answer: Option<&AnswerValue>) -> Option<bool> {
    if body.is_manual() {
        return None;
    }
    let Some(answer) = answer else { return Some(false) };
    let right = match (body, answer) {
        (QuestionBody::SingleChoice { correct, .. }, AnswerValue::Choices(ids)) => {
            ids.len() == 1 && ids[0] as usize == *correct
        }
        (QuestionBody::MultipleChoice { correct, .. }, AnswerValue::Choices(ids)) => {
            let mut given: Vec<usize> = ids.iter().map(|i| *i as usize).collect();
            let mut want = correct.clone();
            given.sort_unstable();
            given.dedup();
            want.sort_unstable();
            given == want
        }
        (QuestionBody::TrueFalse { correct }, AnswerValue::Bool(b)) => b == correct,
        (QuestionBody::Numeric { answer, tolerance }, AnswerValue::Number(n)) => {
            n.is_finite() && (n - answer).abs() <= tolerance + 1e-9
        }
        (QuestionBody::ShortText { accepted }, AnswerValue::Text(t)) => {
            let given = normalise(t);
            accepted.iter().any(|a| normalise(a) == given)
        }
        (QuestionBody::Ordering { items }, AnswerValue::Choices(ids)) => {
            ids.len() == items.len() && ids.iter().enumerate().all(|(i, id)| *id as usize == i)
        }
        _ => false,
    };
    Some(right)
}

/// Grade a paper: each auto-gradable question all or nothing; essays wait (`None` points).
/// Returns the results and the auto-graded score in hundredths of a point.
pub fn grade(questions: &[Question], answers: &[(Uuid, AnswerValue)]) -> (Vec<QuestionResult>, u32) {
    let mut total = 0u32;
    let results = questions
        .iter()
        .map(|q| {
            let answer = answers.iter().find(|(id, _)| *id == q.id).map(|(_, v)| v);
            let correct = is_correct(&q.body, answer);
            let points = correct.map(|ok| if ok { q.points * 100 } else { 0 });
            total += points.unwrap_or(0);
            QuestionResult {
                question_id: q.id,
                points_hundredths: points,
                max_points: q.points,
                correct,
                solution: q.body.clone(),
                feedback: None,
            }
        })
        .collect();
    (results, total)
}

/// The quiz grade in basis points from graded attempts (score, max), oldest first.
pub fn quiz_percent(policy: ScoringPolicy, attempts: &[(u32, u32)]) -> Option<u32> {
    let bp = |(score, max): (u32, u32)| -> Option<u64> {
        (max > 0).then(|| (u64::from(score) * 10_000 / 100 + u64::from(max) / 2) / u64::from(max))
    };
    let values: Vec<u64> = attempts.iter().filter_map(|a| bp(*a)).collect();
    let value = match policy {
        ScoringPolicy::Highest => values.iter().copied().max()?,
        ScoringPolicy::Latest => *values.last()?,
        ScoringPolicy::Average => {
            let n = u64::try_from(values.len()).ok().filter(|n| *n > 0)?;
            (values.iter().sum::<u64>() + n / 2) / n
        }
    };
    u32::try_from(value).ok()
}

/// Check a quiz's settings (bank sizes are checked against the store).
pub fn validate_quiz(req: &CreateQuizRequest) -> Result<(), ValidationError> {
    if req.title.trim().is_empty() || req.title.chars().count() > 200 {
        return Err(ValidationError::new("title", "1 to 200 characters"));
    }
    if req.draws.is_empty() || req.draws.len() > 20 || req.draws.iter().any(|d| d.count == 0 || d.count > 200) {
        return Err(ValidationError::new("draws", "1 to 20 draws of 1 to 200 questions"));
    }
    if req.time_limit_secs.is_some_and(|t| !(10..=86_400).contains(&t)) {
        return Err(ValidationError::new("time_limit_secs", "10 s to 24 h"));
    }
    if !(1..=100).contains(&req.max_attempts) {
        return Err(ValidationError::new("max_attempts", "1 to 100"));
    }
    if let (Some(open), Some(close)) = (req.opens_at, req.closes_at)
        && close <= open
    {
        return Err(ValidationError::new("closes_at", "after opens_at"));
    }
    Ok(())
}

/// Check a question as its author wrote it.
pub fn validate_question(prompt: &str, points: u32, body: &QuestionBody) -> Result<(), ValidationError> {
    if prompt.trim().is_empty() || prompt.chars().count() > 5_000 {
        return Err(ValidationError::new("prompt", "1 to 5000 characters"));
    }
    if points > 1_000 {
        return Err(ValidationError::new("points", "at most 1000"));
    }
    if let QuestionBody::Essay { rubric } = body
        && rubric.iter().map(|c| c.max_points).sum::<u32>() != points
    {
        return Err(ValidationError::new("points", "an essay is worth the sum of its rubric's points"));
    }
    body.validate()
}

// -- assignments -------------------------------------------------------------------------------

/// How late a hand-in is, and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lateness {
    /// Started days after the due date (0 within the grace period).
    pub late_days: u32,
    pub penalty_percent: u32,
}

/// Why a hand-in is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// After the hard cut-off.
    CutOff,
    /// A resubmission after the due date (and its grace period).
    NoResubmission,
}

/// The lateness of a hand-in at `at`: on time until `due + grace`; after that every started day
/// after the due date costs `penalty_percent_per_day` (at most 100 %). After the cut-off nothing
/// is accepted; a resubmission only while the hand-in would be on time.
pub fn lateness(
    due: OffsetDateTime,
    policy: &LatePolicy,
    at: OffsetDateTime,
    resubmission: bool,
) -> Result<Lateness, Closed> {
    if policy.cutoff_at.is_some_and(|c| at > c) {
        return Err(Closed::CutOff);
    }
    let late_by = at - due;
    if late_by <= time::Duration::minutes(i64::from(policy.grace_minutes)) {
        return Ok(Lateness { late_days: 0, penalty_percent: 0 });
    }
    if resubmission {
        return Err(Closed::NoResubmission);
    }
    // Started days: 1 ns late is one day; exactly 24 h late is one day.
    let whole = late_by.whole_days();
    let days = if late_by > time::Duration::days(whole) { whole + 1 } else { whole };
    let late_days = u32::try_from(days).unwrap_or(u32::MAX);
    let penalty_percent = late_days.saturating_mul(policy.penalty_percent_per_day).min(100);
    Ok(Lateness { late_days, penalty_percent })
}

/// The rubric total after the late penalty, in hundredths of a point (exact: no rounding).
pub fn penalised_hundredths(raw_points: u32, penalty_percent: u32) -> u32 {
    raw_points.saturating_mul(100 - penalty_percent.min(100))
}

/// `hundredths` of a point in basis points of `max_points`, rounded half up.
pub fn percent_bp(hundredths: u32, max_points: u32) -> u32 {
    if max_points == 0 {
        return 0;
    }
    let (h, max) = (u64::from(hundredths), u64::from(max_points));
    u32::try_from((h * 100 + max / 2) / max).unwrap_or(u32::MAX)
}

/// Check an assignment's settings.
pub fn validate_assignment(req: &CreateAssignmentRequest) -> Result<(), ValidationError> {
    if req.title.trim().is_empty() || req.title.chars().count() > 200 {
        return Err(ValidationError::new("title", "1 to 200 characters"));
    }
    if req.instructions.chars().count() > 20_000 {
        return Err(ValidationError::new("instructions", "at most 20000 characters"));
    }
    if req.rubric.is_empty() || req.rubric.len() > 20 {
        return Err(ValidationError::new("rubric", "1 to 20 criteria"));
    }
    for (i, c) in req.rubric.iter().enumerate() {
        if c.name.trim().is_empty() || c.name.chars().count() > 200 {
            return Err(ValidationError::new("rubric", format!("criterion {}: a name of 1 to 200 characters", i + 1)));
        }
        if c.max_points == 0 || c.max_points > 1000 {
            return Err(ValidationError::new("rubric", format!("criterion {}: 1 to 1000 points", i + 1)));
        }
    }
    let policy = &req.late_policy;
    if policy.grace_minutes > 7 * 24 * 60 {
        return Err(ValidationError::new("late_policy", "grace_minutes: at most 10080 (a week)"));
    }
    if policy.penalty_percent_per_day > 100 {
        return Err(ValidationError::new("late_policy", "penalty_percent_per_day: 0 to 100"));
    }
    if policy.cutoff_at.is_some_and(|c| c < req.due_at) {
        return Err(ValidationError::new("late_policy", "cutoff_at: not before the due date"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coursebus_contracts::assessment::RubricCriterion;

    fn q(body: QuestionBody) -> Question {
        Question { id: Uuid::now_v7(), prompt: "?".into(), points: 2, body }
    }

    fn bank(n: usize) -> Vec<Question> {
        (0..n)
            .map(|i| {
                q(QuestionBody::SingleChoice {
                    options: vec![format!("a{i}"), "b".into(), "c".into(), "d".into()],
                    correct: 0,
                })
            })
            .collect()
    }

    #[test]
    fn papers_are_stable_per_seed_and_differ_between_learners() {
        let questions = bank(20);
        let (quiz, ada, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let a1 = draw_paper(&[(&questions, 10)], paper_seed(quiz, ada, 1));
        let a1_again = draw_paper(&[(&questions, 10)], paper_seed(quiz, ada, 1));
        let b1 = draw_paper(&[(&questions, 10)], paper_seed(quiz, bob, 1));
        let a2 = draw_paper(&[(&questions, 10)], paper_seed(quiz, ada, 2));
        assert_eq!(a1, a1_again);
        assert_eq!(a1.len(), 10);
        assert_ne!(a1, b1);
        assert_ne!(a1, a2);
        let mut ids: Vec<Uuid> = a1.iter().map(|p| p.question_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "no question twice");
    }

    #[test]
    fn every_kind_is_graded_by_its_rule() {
        use AnswerValue::*;
        let single = QuestionBody::SingleChoice { options: vec!["x".into(), "y".into()], correct: 1 };
        assert_eq!(is_correct(&single, Some(&Choices(vec![1]))), Some(true));
        assert_eq!(is_correct(&single, Some(&Choices(vec![1, 0]))), Some(false));
        let multi =
            QuestionBody::MultipleChoice { options: vec!["x".into(), "y".into(), "z".into()], correct: vec![0, 2] };
        assert_eq!(is_correct(&multi, Some(&Choices(vec![2, 0]))), Some(true));
        assert_eq!(is_correct(&multi, Some(&Choices(vec![0]))), Some(false));
        assert_eq!(is_correct(&multi, Some(&Choices(vec![0, 1, 2]))), Some(false));
        assert_eq!(is_correct(&QuestionBody::TrueFalse { correct: false }, Some(&Bool(false))), Some(true));
        let numeric = QuestionBody::Numeric { answer: 2.72, tolerance: 0.01 };
        assert_eq!(is_correct(&numeric, Some(&Number(2.73))), Some(true));
        assert_eq!(is_correct(&numeric, Some(&Number(2.74))), Some(false));
        assert_eq!(is_correct(&numeric, Some(&Text("2.72".into()))), Some(false));
        let short = QuestionBody::ShortText { accepted: vec!["New  York".into()] };
        assert_eq!(is_correct(&short, Some(&Text("  new york ".into()))), Some(true));
        assert_eq!(is_correct(&short, Some(&Text("newyork".into()))), Some(false));
        let order = QuestionBody::Ordering { items: vec!["1".into(), "2".into(), "3".into()] };
        assert_eq!(is_correct(&order, Some(&Choices(vec![0, 1, 2]))), Some(true));
        assert_eq!(is_correct(&order, Some(&Choices(vec![1, 0, 2]))), Some(false));
        let essay = QuestionBody::Essay { rubric: vec![RubricCriterion { name: "clarity".into(), max_points: 5 }] };
        assert_eq!(is_correct(&essay, Some(&Text("...".into()))), None);
        assert_eq!(is_correct(&single, None), Some(false), "unanswered is wrong");
    }

    #[test]
    fn grading_sums_auto_points_and_leaves_essays_open() {
        let right = q(QuestionBody::TrueFalse { correct: true });
        let wrong = q(QuestionBody::TrueFalse { correct: true });
        let essay = q(QuestionBody::Essay { rubric: vec![RubricCriterion { name: "c".into(), max_points: 2 }] });
        let (results, score) = grade(
            &[right.clone(), wrong.clone(), essay.clone()],
            &[(right.id, AnswerValue::Bool(true)), (wrong.id, AnswerValue::Bool(false))],
        );
        assert_eq!(score, 200);
        assert_eq!(results[2].points_hundredths, None);
        assert_eq!(results[1].correct, Some(false));
    }

    #[test]
    fn scoring_policies() {
        let attempts = [(600, 10), (900, 10), (700, 10)]; // 60 %, 90 %, 70 %
        assert_eq!(quiz_percent(ScoringPolicy::Highest, &attempts), Some(9_000));
        assert_eq!(quiz_percent(ScoringPolicy::Latest, &attempts), Some(7_000));
        assert_eq!(quiz_percent(ScoringPolicy::Average, &attempts), Some(7_333));
        assert_eq!(quiz_percent(ScoringPolicy::Average, &[]), None);
    }

    #[test]
    fn lateness_follows_grace_daily_penalty_and_cut_off() {
        let due = time::macros::datetime!(2026-12-01 09:00 UTC);
        let policy = LatePolicy {
            grace_minutes: 15,
            penalty_percent_per_day: 10,
            cutoff_at: Some(due + time::Duration::days(5)),
        };
        let at = |mins: i64| due + time::Duration::minutes(mins);
        let on_time = Lateness { late_days: 0, penalty_percent: 0 };
        assert_eq!(lateness(due, &policy, at(-60), false), Ok(on_time));
        assert_eq!(lateness(due, &policy, at(15), false), Ok(on_time), "the grace period is on time");
        assert_eq!(lateness(due, &policy, at(16), false), Ok(Lateness { late_days: 1, penalty_percent: 10 }));
        assert_eq!(lateness(due, &policy, at(24 * 60), false), Ok(Lateness { late_days: 1, penalty_percent: 10 }));
        assert_eq!(lateness(due, &policy, at(24 * 60 + 1), false), Ok(Lateness { late_days: 2, penalty_percent: 20 }));
        assert_eq!(lateness(due, &policy, at(5 * 24 * 60), false), Ok(Lateness { late_days: 5, penalty_percent: 50 }));
        assert_eq!(lateness(due, &policy, at(5 * 24 * 60 + 1), false), Err(Closed::CutOff));
        // Resubmitting: while on time only.
        assert_eq!(lateness(due, &policy, at(10), true), Ok(on_time));
        assert_eq!(lateness(due, &policy, at(16), true), Err(Closed::NoResubmission));
        // Penalties stop at 100 %; no cut-off accepts any lateness.
        let harsh = LatePolicy { grace_minutes: 0, penalty_percent_per_day: 40, cutoff_at: None };
        assert_eq!(
            lateness(due, &harsh, at(60 * 24 * 30), false),
            Ok(Lateness { late_days: 30, penalty_percent: 100 })
        );
    }

    #[test]
    fn penalties_are_exact_in_hundredths() {
        assert_eq!(penalised_hundredths(8, 30), 560);
        assert_eq!(penalised_hundredths(7, 15), 595);
        assert_eq!(penalised_hundredths(9, 100), 0);
        assert_eq!(percent_bp(560, 10), 5600);
        assert_eq!(percent_bp(595, 12), 4958, "49.583 % rounds to 49.58 %");
        assert_eq!(percent_bp(1, 3), 33);
        assert_eq!(percent_bp(5, 0), 0);
    }
}
