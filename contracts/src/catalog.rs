//! Catalog messages: courses with modules and lessons, the publish workflow, listing, events.
//!
//! A course has a working copy that instructors edit (each edit bumps `version`; a stale
//! `version` is a conflict) and, once published, a published snapshot that learners see. Edits
//! never touch the snapshot: publishing again replaces it, so what enrolled learners see only
//! changes when the instructor publishes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::Event;
use crate::rpc::rpc;
use crate::subjects::catalog as subj;
use crate::validate::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Beginner,
    Intermediate,
    Advanced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CourseStatus {
    Draft,
    Published,
    Archived,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LessonKind {
    Video,
    Article,
    Resource,
    Quiz,
}

/// Money as integer minor units and an ISO 4217 code; 0 means free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub amount_minor: i64,
    #[schema(example = "EUR")]
    pub currency: String,
}

impl Price {
    pub fn is_free(&self) -> bool {
        self.amount_minor == 0
    }

    /// Check `others` against the main price `main`: each a valid paid price, each currency
    /// once, none in the main currency, none at all for a free course.
    pub fn validate_others(main: &Price, others: &[Price]) -> Result<(), ValidationError> {
        if main.is_free() && !others.is_empty() {
            return Err(ValidationError::new("other_prices", "a free course has no other prices"));
        }
        if others.len() > 20 {
            return Err(ValidationError::new("other_prices", "at most 20 other prices"));
        }
        let mut seen = vec![main.currency.as_str()];
        for p in others {
            p.validate().map_err(|e| ValidationError::new("other_prices", e.message))?;
            if p.is_free() {
                return Err(ValidationError::new("other_prices", "other prices must not be 0"));
            }
            if seen.contains(&p.currency.as_str()) {
                return Err(ValidationError::new("other_prices", format!("{} is priced twice", p.currency)));
            }
            seen.push(&p.currency);
        }
        Ok(())
    }

    /// The price in `currency` among `main` and `others`.
    pub fn in_currency<'a>(main: &'a Price, others: &'a [Price], currency: &str) -> Option<&'a Price> {
        std::iter::once(main).chain(others).find(|p| p.currency == currency)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(0..=100_000_000).contains(&self.amount_minor) {
            return Err(ValidationError::new(
                "price.amount_minor",
                "price must be between 0 and 100000000 minor units",
            ));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ValidationError::new("price.currency", "currency must be an ISO 4217 code like EUR"));
        }
        Ok(())
    }
}

/// A lesson as learners and instructors see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lesson {
    pub id: Uuid,
    pub title: String,
    pub kind: LessonKind,
    /// Required lessons count towards completion.
    pub required: bool,
    pub duration_secs: Option<u32>,
    /// The content asset (video, downloadable resource).
    pub asset_id: Option<Uuid>,
    /// The text of an article.
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Module {
    pub id: Uuid,
    pub title: String,
    /// Drip release: available this many days after the learner's enrolment (0 = at once).
    pub release_after_days: u32,
    pub lessons: Vec<Lesson>,
}

/// A course: its working copy (for its instructor and admins) or its published snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Course {
    pub id: Uuid,
    pub slug: String,
    pub instructor_id: Uuid,
    pub status: CourseStatus,
    /// The working copy's version (send it back with an edit).
    pub version: u64,
    /// The version learners see, once published.
    pub published_version: Option<u64>,
    pub title: String,
    pub summary: String,
    pub description: String,
    pub language: String,
    pub level: Level,
    pub tags: Vec<String>,
    pub price: Price,
    /// The price in other currencies (checkout in any of them); none when the course is free.
    #[serde(default)]
    pub other_prices: Vec<Price>,
    pub cover_image_id: Option<Uuid>,
    pub prerequisites: Vec<Uuid>,
    pub modules: Vec<Module>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub published_at: Option<OffsetDateTime>,
}

impl Course {
    /// Ids of the lessons that count towards completion.
    pub fn required_lessons(&self) -> Vec<Uuid> {
        self.modules.iter().flat_map(|m| &m.lessons).filter(|l| l.required).map(|l| l.id).collect()
    }

    pub fn lesson_count(&self) -> usize {
        self.modules.iter().map(|m| m.lessons.len()).sum()
    }
}

/// `POST /v1/courses`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCourseRequest {
    pub title: String,
    /// Generated from the title when absent.
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub description: String,
    #[schema(example = "en")]
    pub language: String,
    pub level: Level,
    #[serde(default)]
    pub tags: Vec<String>,
    pub price: Price,
    /// The price in other currencies (each currency once, never the main price's).
    #[serde(default)]
    pub other_prices: Vec<Price>,
    #[serde(default)]
    pub cover_image_id: Option<Uuid>,
    #[serde(default)]
    pub prerequisites: Vec<Uuid>,
}

/// `PATCH /v1/courses/{id}`: the fields present change; `version` must be current.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCourseRequest {
    /// Set by the gateway from the path (a value in the body is overwritten).
    #[serde(default)]
    #[schema(ignore)]
    pub id: Uuid,
    pub version: u64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub price: Option<Price>,
    #[serde(default)]
    pub other_prices: Option<Vec<Price>>,
    #[serde(default)]
    pub cover_image_id: Option<Uuid>,
    #[serde(default)]
    pub prerequisites: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LessonInput {
    /// Keep an existing lesson's id (progress refers to it); omit for a new lesson.
    #[serde(default)]
    pub id: Option<Uuid>,
    pub title: String,
    pub kind: LessonKind,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub duration_secs: Option<u32>,
    #[serde(default)]
    pub asset_id: Option<Uuid>,
    #[serde(default)]
    pub body: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleInput {
    #[serde(default)]
    pub id: Option<Uuid>,
    pub title: String,
    #[serde(default)]
    pub release_after_days: u32,
    #[serde(default)]
    pub lessons: Vec<LessonInput>,
}

/// `PUT /v1/courses/{id}/outline`: the whole outline in its new order (add, edit, reorder and
/// remove modules and lessons in one versioned write).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutOutlineRequest {
    /// Set by the gateway from the path (a value in the body is overwritten).
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    pub version: u64,
    pub modules: Vec<ModuleInput>,
}

/// `POST /v1/courses/{id}/publish` and `/archive`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    /// Set by the gateway from the path (a value in the body is overwritten).
    #[serde(default)]
    #[schema(ignore)]
    pub course_id: Uuid,
    pub version: u64,
}

/// `GET /v1/courses/{id_or_slug}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCourseRequest {
    pub id_or_slug: String,
    /// The working copy instead of the published snapshot (owner and admins only).
    #[serde(default)]
    pub draft: bool,
}

/// Free or paid, for listing filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriceFilter {
    Free,
    Paid,
}

/// `GET /v1/courses?tag=&level=&language=&price=&cursor=&limit=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListCoursesRequest {
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub price: Option<PriceFilter>,
    /// The caller's own courses, in every status (instructors).
    #[serde(default)]
    pub mine: Option<bool>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// 1 to 100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One course in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CourseSummary {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub language: String,
    pub level: Level,
    pub tags: Vec<String>,
    pub price: Price,
    pub instructor_id: Uuid,
    pub status: CourseStatus,
    pub lesson_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CoursePage {
    pub items: Vec<CourseSummary>,
    pub next_cursor: Option<String>,
}

rpc!(CreateCourse, CreateCourseRequest, Course, subj::COURSE_CREATE);
rpc!(UpdateCourse, UpdateCourseRequest, Course, subj::COURSE_UPDATE);
rpc!(PutOutline, PutOutlineRequest, Course, subj::COURSE_OUTLINE);
rpc!(PublishCourse, TransitionRequest, Course, subj::COURSE_PUBLISH);
rpc!(ArchiveCourse, TransitionRequest, Course, subj::COURSE_ARCHIVE);
rpc!(GetCourse, GetCourseRequest, Course, subj::COURSE_GET);
rpc!(ListCourses, ListCoursesRequest, CoursePage, subj::COURSE_LIST);

/// The course a catalog event is about (`data.course.id` or `data.course_id`), from its raw
/// payload: what caches of course snapshots invalidate by.
pub fn course_of_event(payload: &[u8]) -> Option<Uuid> {
    let event: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let data = &event["data"];
    data["course"]["id"].as_str().or_else(|| data["course_id"].as_str()).and_then(|s| s.parse().ok())
}

/// The course a [`crate::subjects::catalog::COURSE_CHANGED_HINT`] (its id as text) or a catalog
/// event names.
pub fn course_of_notice(payload: &[u8]) -> Option<Uuid> {
    std::str::from_utf8(payload).ok().and_then(|s| Uuid::parse_str(s).ok()).or_else(|| course_of_event(payload))
}

/// The cache keys of a course: `id:<uuid>` and `slug:<slug>`.
pub fn course_cache_keys(course: &Course) -> [String; 2] {
    [format!("id:{}", course.id), format!("slug:{}", course.slug)]
}

/// The cache key an id-or-slug lookup reads.
pub fn course_cache_key(id_or_slug: &str) -> String {
    match Uuid::parse_str(id_or_slug) {
        Ok(id) => format!("id:{id}"),
        Err(_) => format!("slug:{id_or_slug}"),
    }
}

/// `cb.evt.catalog.course.changed`: the working copy changed (instructor-facing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseChanged {
    pub course: Course,
}

impl Event for CourseChanged {
    const SUBJECT: &'static str = subj::EVT_COURSE_CHANGED;
    const TYPE: &'static str = "catalog.course.changed";
}

/// `cb.evt.catalog.course.published`: the published snapshot learners now see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoursePublished {
    pub course: Course,
}

impl Event for CoursePublished {
    const SUBJECT: &'static str = subj::EVT_COURSE_PUBLISHED;
    const TYPE: &'static str = "catalog.course.published";
}

/// `cb.evt.catalog.course.archived`: no longer offered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseArchived {
    pub course_id: Uuid,
    pub slug: String,
}

impl Event for CourseArchived {
    const SUBJECT: &'static str = subj::EVT_COURSE_ARCHIVED;
    const TYPE: &'static str = "catalog.course.archived";
}
