//! The enrollment rules, free of I/O: what an enrolment pins of a course, drip availability,
//! monotonic lesson progress, course progress, completion rules, certificate codes and list
//! cursors.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coursebus_contracts::assessment::GradedItemKind;
use coursebus_contracts::catalog::Course;
use coursebus_contracts::enrollment::{
    CompletionRule, CompletionRuleInput, CourseProgress, Enrollment, EnrollmentDetail, LessonProgress, LessonState,
    ModuleProgress, ProgressState, RuleProgress,
};
use coursebus_contracts::validate::ValidationError;
use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The part of a published course an enrolment is held to: modules in order with their drip
/// delay, lessons in order with whether they count towards completion. Pinned at enrol time,
/// shared by every enrolment made against the same published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedOutline {
    pub modules: Vec<PinnedModule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedModule {
    pub id: Uuid,
    pub title: String,
    pub release_after_days: u32,
    pub lessons: Vec<PinnedLesson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedLesson {
    pub id: Uuid,
    pub title: String,
    /// Counts towards completion (see [`pin`] for a course without required lessons).
    pub required: bool,
}

/// Pin a published course. A course that marks no lesson as required requires all of them (so
/// completion always means something); the catalog refuses to publish a course without lessons.
pub fn pin(course: &Course) -> PinnedOutline {
    let any_required = course.modules.iter().flat_map(|m| &m.lessons).any(|l| l.required);
    PinnedOutline {
        modules: course
            .modules
            .iter()
            .map(|m| PinnedModule {
                id: m.id,
                title: m.title.clone(),
                release_after_days: m.release_after_days,
                lessons: m
                    .lessons
                    .iter()
                    .map(|l| PinnedLesson { id: l.id, title: l.title.clone(), required: l.required || !any_required })
                    .collect(),
            })
            .collect(),
    }
}

impl PinnedOutline {
    pub fn required_lessons(&self) -> Vec<Uuid> {
        self.modules.iter().flat_map(|m| &m.lessons).filter(|l| l.required).map(|l| l.id).collect()
    }

    pub fn required_total(&self) -> u32 {
        u32::try_from(self.required_lessons().len()).unwrap_or(u32::MAX)
    }

    /// The lesson and the module holding it.
    pub fn find_lesson(&self, lesson: Uuid) -> Option<(&PinnedModule, &PinnedLesson)> {
        self.modules.iter().find_map(|m| m.lessons.iter().find(|l| l.id == lesson).map(|l| (m, l)))
    }
}

/// When a module opens for a learner who enrolled at `enrolled_at` (drip release).
pub fn available_at(enrolled_at: OffsetDateTime, release_after_days: u32) -> OffsetDateTime {
    enrolled_at + time::Duration::days(i64::from(release_after_days))
}

/// Course progress from done and total required lessons (percent rounded down, so 100 means done).
pub fn course_progress(done: u32, total: u32) -> CourseProgress {
    let done = done.min(total);
    let percent = if total == 0 { 100 } else { u32::try_from(u64::from(done) * 100 / u64::from(total)).unwrap_or(100) };
    CourseProgress { required_done: done, required_total: total, percent }
}

/// True when every required lesson is done.
pub fn is_complete(progress: &CourseProgress) -> bool {
    progress.required_done >= progress.required_total
}

/// The most completion rules a course may have.
pub const MAX_RULES: usize = 50;
/// The longest rule title, in characters.
pub const MAX_RULE_TITLE: usize = 200;
/// 100 % in basis points: the highest minimum a rule may ask for.
pub const FULL_MARKS_BP: u32 = 10_000;

/// Check a course's rules as the instructor sent them: at most [`MAX_RULES`], one per item, a
/// title of 1 to [`MAX_RULE_TITLE`] characters (trimmed), a minimum of 0 to 100 %. The message
/// names the rule (1-based), the field names what is wrong with it.
pub fn parse_rules(input: Vec<CompletionRuleInput>) -> Result<Vec<CompletionRule>, ValidationError> {
    if input.len() > MAX_RULES {
        return Err(ValidationError::new("rules", format!("at most {MAX_RULES} completion rules")));
    }
    let mut rules: Vec<CompletionRule> = Vec::with_capacity(input.len());
    for (i, rule) in input.into_iter().enumerate() {
        let n = i + 1;
        let title = rule.title.trim();
        let chars = title.chars().count();
        if chars == 0 || chars > MAX_RULE_TITLE || title.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "title",
                format!("rule {n}: the title must be 1 to {MAX_RULE_TITLE} characters without control characters"),
            ));
        }
        if rule.min_percent_bp > FULL_MARKS_BP {
            return Err(ValidationError::new(
                "min_percent_bp",
                format!("rule {n}: min_percent_bp must be between 0 and {FULL_MARKS_BP} (basis points)"),
            ));
        }
        if rules.iter().any(|r| r.item_id == rule.item_id) {
            return Err(ValidationError::new("item_id", format!("rule {n}: item {} has a rule already", rule.item_id)));
        }
        rules.push(CompletionRule {
            item_id: rule.item_id,
            item_kind: rule.item_kind,
            title: title.to_owned(),
            min_percent_bp: rule.min_percent_bp,
        });
    }
    Ok(rules)
}

/// A learner's latest grade on an assessment item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemGrade {
    pub kind: GradedItemKind,
    pub percent_bp: u32,
    pub graded_at: OffsetDateTime,
}

/// Each rule with the learner's grade on its item (`grades` by item id). A rule is met when the
/// learner has a grade on that item (of that kind) of at least the minimum; without a grade it
/// is not met, even with a minimum of 0 ("take the quiz").
pub fn rule_progress(rules: &[CompletionRule], grades: &HashMap<Uuid, ItemGrade>) -> Vec<RuleProgress> {
    rules
        .iter()
        .map(|rule| {
            let grade = grades.get(&rule.item_id).filter(|g| g.kind == rule.item_kind);
            RuleProgress {
                rule: rule.clone(),
                percent_bp: grade.map(|g| g.percent_bp),
                graded_at: grade.map(|g| g.graded_at),
                met: grade.is_some_and(|g| g.percent_bp >= rule.min_percent_bp),
            }
        })
        .collect()
}

/// Completion: every required lesson done and every completion rule met.
pub fn is_course_complete(progress: &CourseProgress, rules: &[RuleProgress]) -> bool {
    is_complete(progress) && rules.iter().all(|r| r.met)
}

/// The longest playback position accepted (a week of video).
pub const MAX_POSITION_SECS: u32 = 7 * 24 * 3600;

/// A progress report as the learner sent it, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub state: ProgressState,
    pub percent: u32,
    pub position_secs: Option<u32>,
}

impl Report {
    pub fn parse(state: ProgressState, percent: u32, position_secs: Option<u32>) -> Result<Self, ValidationError> {
        if percent > 100 {
            return Err(ValidationError::new("percent", "percent must be between 0 and 100"));
        }
        if position_secs.is_some_and(|p| p > MAX_POSITION_SECS) {
            return Err(ValidationError::new("position_secs", "position_secs is too large"));
        }
        Ok(Self { state, percent, position_secs })
    }
}

/// A learner's stored progress in one lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LessonRecord {
    pub state: LessonState,
    pub percent: u32,
    pub position_secs: Option<u32>,
    pub started_at: Option<OffsetDateTime>,
    pub completed_at: Option<OffsetDateTime>,
}

impl LessonRecord {
    pub const NOT_STARTED: LessonRecord = LessonRecord {
        state: LessonState::NotStarted,
        percent: 0,
        position_secs: None,
        started_at: None,
        completed_at: None,
    };
}

/// The outcome of applying a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub record: LessonRecord,
    /// The state or the percent went up (worth an event).
    pub progressed: bool,
    /// This report completed the lesson.
    pub newly_completed: bool,
    /// Anything changed at all (the position may move either way).
    pub changed: bool,
}

/// Apply `report` to `old`: state and percent never go back (completed stays completed, a lower
/// percent is ignored); completing means 100 %; the playback position follows the learner.
pub fn merge(old: Option<&LessonRecord>, report: Report, now: OffsetDateTime) -> Merged {
    let old = old.copied().unwrap_or(LessonRecord::NOT_STARTED);
    let state = old.state.max(report.state.into());
    let percent = if state == LessonState::Completed { 100 } else { old.percent.max(report.percent) };
    let record = LessonRecord {
        state,
        percent,
        position_secs: report.position_secs.or(old.position_secs),
        started_at: old.started_at.or(Some(now)),
        completed_at: old.completed_at.or((state == LessonState::Completed).then_some(now)),
    };
    let progressed = state > old.state || percent > old.percent;
    Merged {
        record,
        progressed,
        newly_completed: state == LessonState::Completed && old.state != LessonState::Completed,
        changed: progressed || record.position_secs != old.position_secs,
    }
}

/// The learner's view: every module with its opening time and every lesson with its progress,
/// and the completion rules with the learner's grades.
pub fn detail(
    enrollment: Enrollment,
    outline: &PinnedOutline,
    progress: &HashMap<Uuid, LessonRecord>,
    completion_rules: Vec<RuleProgress>,
    now: OffsetDateTime,
) -> EnrollmentDetail {
    let modules = outline
        .modules
        .iter()
        .map(|m| {
            let opens = available_at(enrollment.enrolled_at, m.release_after_days);
            ModuleProgress {
                module_id: m.id,
                title: m.title.clone(),
                release_after_days: m.release_after_days,
                available_at: opens,
                available: now >= opens,
                lessons: m
                    .lessons
                    .iter()
                    .map(|l| {
                        let record = progress.get(&l.id).copied().unwrap_or(LessonRecord::NOT_STARTED);
                        lesson_view(l, &record)
                    })
                    .collect(),
            }
        })
        .collect();
    EnrollmentDetail { enrollment, modules, completion_rules }
}

pub fn lesson_view(lesson: &PinnedLesson, record: &LessonRecord) -> LessonProgress {
    LessonProgress {
        lesson_id: lesson.id,
        title: lesson.title.clone(),
        required: lesson.required,
        state: record.state,
        percent: record.percent,
        position_secs: record.position_secs,
        started_at: record.started_at,
        completed_at: record.completed_at,
    }
}

/// RFC 4648 base32 alphabet (no padding, no lower case, no 0/1/8/9 to misread).
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters in a certificate code: 20 × 5 = 100 random bits.
pub const CODE_LEN: usize = 20;

/// A fresh, unguessable certificate verification code from the OS random generator.
pub fn certificate_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..CODE_LEN).map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())])).collect()
}

/// A code as someone typed it (any case, dashes or spaces between groups) in canonical form, or
/// `None` if it cannot be a code.
pub fn normalize_code(raw: &str) -> Option<String> {
    let code: String = raw.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// An opaque list cursor: the last item's id.
pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn decode_cursor(cursor: &str) -> Result<Uuid, ValidationError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| ValidationError::new("cursor", "cursor is not valid"))
}

pub use coursebus_contracts::validate::page_limit;

#[cfg(test)]
mod tests {
    use coursebus_contracts::catalog::{CourseStatus, Lesson, LessonKind, Level, Module, Price};
    use time::macros::datetime;

    use super::*;

    fn lesson(title: &str, required: bool) -> Lesson {
        Lesson {
            id: Uuid::now_v7(),
            title: title.into(),
            kind: LessonKind::Video,
            required,
            duration_secs: None,
            asset_id: None,
            body: None,
        }
    }

    fn course(modules: Vec<(u32, Vec<Lesson>)>) -> Course {
        let now = OffsetDateTime::now_utc();
        Course {
            id: Uuid::now_v7(),
            slug: "c".into(),
            instructor_id: Uuid::now_v7(),
            status: CourseStatus::Published,
            version: 3,
            published_version: Some(3),
            title: "C".into(),
            summary: String::new(),
            description: String::new(),
            language: "en".into(),
            level: Level::Beginner,
            tags: vec![],
            price: Price { amount_minor: 0, currency: "EUR".into() },
            other_prices: Vec::new(),
            cover_image_id: None,
            prerequisites: vec![],
            modules: modules
                .into_iter()
                .enumerate()
                .map(|(i, (days, lessons))| Module {
                    id: Uuid::now_v7(),
                    title: format!("M{i}"),
                    release_after_days: days,
                    lessons,
                })
                .collect(),
            created_at: now,
            updated_at: now,
            published_at: Some(now),
        }
    }

    #[test]
    fn pinning_keeps_required_flags_and_the_drip_schedule() {
        let c = course(vec![(0, vec![lesson("a", true), lesson("b", false)]), (7, vec![lesson("c", true)])]);
        let outline = pin(&c);
        assert_eq!(outline.required_lessons(), c.required_lessons());
        assert_eq!(outline.required_total(), 2);
        assert_eq!(outline.modules[1].release_after_days, 7);
        let third = c.modules[1].lessons[0].id;
        let (module, found) = outline.find_lesson(third).unwrap();
        assert_eq!((module.id, found.id), (c.modules[1].id, third));
        assert!(outline.find_lesson(Uuid::now_v7()).is_none());
        let back: PinnedOutline = serde_json::from_value(serde_json::to_value(&outline).unwrap()).unwrap();
        assert_eq!(back, outline);
    }

    #[test]
    fn a_course_without_required_lessons_requires_them_all() {
        let c = course(vec![(0, vec![lesson("a", false), lesson("b", false)])]);
        assert_eq!(pin(&c).required_total(), 2);
    }

    #[test]
    fn course_progress_rounds_down_and_completes_at_all_required() {
        assert_eq!(course_progress(0, 3), CourseProgress { required_done: 0, required_total: 3, percent: 0 });
        assert_eq!(course_progress(2, 3).percent, 66);
        assert!(!is_complete(&course_progress(2, 3)));
        let done = course_progress(3, 3);
        assert_eq!(done.percent, 100);
        assert!(is_complete(&done));
        assert_eq!(course_progress(5, 3).required_done, 3, "never more than the total");
    }

    #[test]
    fn drip_modules_open_days_after_enrolment() {
        let enrolled = datetime!(2026-01-30 10:00 UTC);
        assert_eq!(available_at(enrolled, 0), enrolled);
        assert_eq!(available_at(enrolled, 7), datetime!(2026-02-06 10:00 UTC));
        let c = course(vec![(0, vec![lesson("a", true)]), (7, vec![lesson("b", true)])]);
        let outline = pin(&c);
        let enrollment = Enrollment {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            course_id: c.id,
            course_version: 3,
            course_title: "C".into(),
            course_slug: "c".into(),
            status: coursebus_contracts::enrollment::EnrollmentStatus::Active,
            progress: course_progress(0, 2),
            enrolled_at: enrolled,
            completed_at: None,
            cancelled_at: None,
            certificate_code: None,
        };
        let view = detail(enrollment, &outline, &HashMap::new(), Vec::new(), datetime!(2026-02-01 00:00 UTC));
        assert!(view.modules[0].available);
        assert!(!view.modules[1].available);
        assert_eq!(view.modules[1].available_at, datetime!(2026-02-06 10:00 UTC));
        assert_eq!(view.modules[1].lessons[0].state, LessonState::NotStarted);
    }

    #[test]
    fn progress_never_goes_back() {
        let t0 = datetime!(2026-01-01 0:00 UTC);
        let t1 = datetime!(2026-01-02 0:00 UTC);
        let started = merge(None, Report::parse(ProgressState::Started, 40, Some(120)).unwrap(), t0);
        assert!(started.progressed && started.changed && !started.newly_completed);
        assert_eq!(
            (started.record.state, started.record.percent, started.record.started_at),
            (LessonState::Started, 40, Some(t0))
        );

        let lower = merge(Some(&started.record), Report::parse(ProgressState::Started, 10, Some(30)).unwrap(), t1);
        assert!(!lower.progressed && lower.changed, "only the position moved");
        assert_eq!((lower.record.percent, lower.record.position_secs), (40, Some(30)));

        let same = merge(Some(&lower.record), Report::parse(ProgressState::Started, 40, None).unwrap(), t1);
        assert!(!same.changed && !same.progressed);

        let done = merge(Some(&lower.record), Report::parse(ProgressState::Completed, 0, None).unwrap(), t1);
        assert!(done.progressed && done.newly_completed);
        assert_eq!((done.record.state, done.record.percent), (LessonState::Completed, 100));
        assert_eq!((done.record.started_at, done.record.completed_at), (Some(t0), Some(t1)));

        let again = merge(Some(&done.record), Report::parse(ProgressState::Started, 5, None).unwrap(), t1);
        assert!(!again.progressed && !again.newly_completed);
        assert_eq!(
            (again.record.state, again.record.percent),
            (LessonState::Completed, 100),
            "completed stays completed"
        );
    }

    #[test]
    fn reports_are_checked() {
        assert_eq!(Report::parse(ProgressState::Started, 101, None).unwrap_err().field, "percent");
        assert_eq!(
            Report::parse(ProgressState::Started, 1, Some(MAX_POSITION_SECS + 1)).unwrap_err().field,
            "position_secs"
        );
        assert!(Report::parse(ProgressState::Completed, 100, Some(0)).is_ok());
    }

    #[test]
    fn certificate_codes_are_long_random_and_forgiving_to_type() {
        let a = certificate_code();
        let b = certificate_code();
        assert_eq!(a.len(), CODE_LEN);
        assert_ne!(a, b);
        assert_eq!(normalize_code(&a).as_deref(), Some(a.as_str()));
        let typed = format!("{}-{} {}", &a[..4], &a[4..8], &a[8..]).to_lowercase();
        assert_eq!(normalize_code(&typed).as_deref(), Some(a.as_str()));
        assert_eq!(normalize_code("ABC"), None);
        assert_eq!(normalize_code(&"0".repeat(CODE_LEN)), None, "0 is not in the alphabet");
    }

    fn rule(kind: GradedItemKind, min: u32) -> CompletionRuleInput {
        CompletionRuleInput {
            item_id: Uuid::now_v7(),
            item_kind: kind,
            title: "  Final quiz ".into(),
            min_percent_bp: min,
        }
    }

    fn stored(input: &[CompletionRuleInput]) -> Vec<CompletionRule> {
        parse_rules(input.to_vec()).unwrap()
    }

    #[test]
    fn completion_rules_are_checked_and_name_the_broken_field() {
        let ok = stored(&[rule(GradedItemKind::Quiz, 7_000), rule(GradedItemKind::Assignment, 10_000)]);
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].title, "Final quiz", "titles are trimmed");
        assert!(parse_rules(Vec::new()).unwrap().is_empty(), "no rules: lessons only");
        assert!(parse_rules(vec![rule(GradedItemKind::Quiz, 0)]).is_ok());

        let too_high = parse_rules(vec![rule(GradedItemKind::Quiz, 10_001)]).unwrap_err();
        assert_eq!(too_high.field, "min_percent_bp");
        assert!(too_high.message.starts_with("rule 1:"), "{too_high}");
        let mut blank = rule(GradedItemKind::Quiz, 1);
        blank.title = "   ".into();
        assert_eq!(
            parse_rules(vec![rule(GradedItemKind::Quiz, 1), blank]).unwrap_err().message.get(..7),
            Some("rule 2:")
        );
        let mut long = rule(GradedItemKind::Quiz, 1);
        long.title = "é".repeat(MAX_RULE_TITLE);
        assert!(parse_rules(vec![long.clone()]).is_ok(), "200 characters, not bytes");
        long.title.push('é');
        assert_eq!(parse_rules(vec![long]).unwrap_err().field, "title");
        let twice = rule(GradedItemKind::Quiz, 1);
        assert_eq!(parse_rules(vec![twice.clone(), twice]).unwrap_err().field, "item_id");
        let many: Vec<_> = (0..=MAX_RULES).map(|_| rule(GradedItemKind::Quiz, 1)).collect();
        assert_eq!(parse_rules(many[..MAX_RULES].to_vec()).map(|r| r.len()), Ok(MAX_RULES));
        assert_eq!(parse_rules(many).unwrap_err().field, "rules");
    }

    #[test]
    fn a_rule_is_met_by_a_grade_of_its_item_at_or_above_the_minimum() {
        let rules = stored(&[rule(GradedItemKind::Quiz, 7_000), rule(GradedItemKind::Assignment, 5_000)]);
        let (quiz, assignment) = (rules[0].item_id, rules[1].item_id);
        let at = datetime!(2026-03-01 12:00 UTC);
        let grade = |kind, percent_bp| ItemGrade { kind, percent_bp, graded_at: at };
        let lessons_done = course_progress(2, 2);

        // Nothing graded yet: no rule met, even with every lesson done.
        let none = rule_progress(&rules, &HashMap::new());
        assert_eq!((none[0].percent_bp, none[0].graded_at, none[0].met), (None, None, false));
        assert!(!is_course_complete(&lessons_done, &none));

        // 69.99 % is below 70 %; 70.00 % is enough.
        let mut grades = HashMap::from([(quiz, grade(GradedItemKind::Quiz, 6_999))]);
        grades.insert(assignment, grade(GradedItemKind::Assignment, 9_000));
        let below = rule_progress(&rules, &grades);
        assert_eq!((below[0].percent_bp, below[0].met, below[1].met), (Some(6_999), false, true));
        assert!(!is_course_complete(&lessons_done, &below));
        grades.insert(quiz, grade(GradedItemKind::Quiz, 7_000));
        let passed = rule_progress(&rules, &grades);
        assert!(passed.iter().all(|r| r.met));
        assert_eq!(passed[0].graded_at, Some(at));
        assert!(is_course_complete(&lessons_done, &passed));
        // Rules met but a required lesson left: not complete.
        assert!(!is_course_complete(&course_progress(1, 2), &passed));
        // No rules: lessons alone decide, as before.
        assert!(is_course_complete(&lessons_done, &[]));
        assert!(!is_course_complete(&course_progress(1, 2), &[]));

        // A grade of another kind on the same id does not count.
        grades.insert(quiz, grade(GradedItemKind::Assignment, 10_000));
        let other_kind = rule_progress(&rules, &grades);
        assert_eq!((other_kind[0].percent_bp, other_kind[0].met), (None, false));

        // A minimum of 0 still needs a grade.
        let zero = stored(&[rule(GradedItemKind::Quiz, 0)]);
        assert!(!rule_progress(&zero, &HashMap::new())[0].met);
        let taken = HashMap::from([(zero[0].item_id, grade(GradedItemKind::Quiz, 0))]);
        assert!(rule_progress(&zero, &taken)[0].met);
    }

    #[test]
    fn cursors_and_limits() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        assert_eq!(decode_cursor("nope!").unwrap_err().field, "cursor");
        assert_eq!(page_limit(None, 20).unwrap(), 20);
        assert_eq!(page_limit(Some(0), 20).unwrap_err().field, "limit");
        assert_eq!(page_limit(Some(101), 20).unwrap_err().field, "limit");
    }
}

/// `t` at PostgreSQL's precision (microseconds), so what a write answers equals what a later
/// read returns.
pub fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).unwrap_or(t)
}

#[cfg(test)]
mod precision_tests {
    #[test]
    fn timestamps_are_cut_to_microseconds() {
        let t = time::macros::datetime!(2026-11-25 10:00:00.123_456_789 UTC);
        assert_eq!(super::to_micros(t), time::macros::datetime!(2026-11-25 10:00:00.123_456 UTC));
    }
}
