//! Catalog rules: what a valid course, outline and transition is.

use std::collections::HashMap;

use coursebus_contracts::ErrorBody;
use coursebus_contracts::catalog::{
    Course, CourseStatus, CreateCourseRequest, Lesson, LessonInput, LessonKind, Module, ModuleInput, Price,
    UpdateCourseRequest,
};
use coursebus_contracts::validate::ValidationError;
use time::OffsetDateTime;
use uuid::Uuid;

pub const MAX_MODULES: usize = 100;
pub const MAX_LESSONS_PER_MODULE: usize = 200;
pub const MAX_TAGS: usize = 10;
pub const MAX_PREREQUISITES: usize = 10;

fn text(field: &'static str, raw: &str, min: usize, max: usize) -> Result<String, ValidationError> {
    let value = raw.trim();
    let chars = value.chars().count();
    if chars < min {
        return Err(ValidationError::new(field, format!("{field} must be at least {min} characters")));
    }
    if chars > max {
        return Err(ValidationError::new(field, format!("{field} must be at most {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(field, format!("{field} must not contain control characters")));
    }
    Ok(value.to_owned())
}

pub fn title(raw: &str) -> Result<String, ValidationError> {
    text("title", raw, 3, 120)
}

pub fn summary(raw: &str) -> Result<String, ValidationError> {
    text("summary", raw, 0, 280)
}

pub fn description(raw: &str) -> Result<String, ValidationError> {
    text("description", raw, 0, 20_000)
}

/// `[a-z0-9-]`, 3 to 80 characters, no leading, trailing or double dash.
pub fn slug(raw: &str) -> Result<String, ValidationError> {
    let slug = raw.trim();
    let ok = (3..=80).contains(&slug.len())
        && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && !slug.contains("--");
    if !ok {
        return Err(ValidationError::new("slug", "slug must be 3-80 characters of a-z, 0-9 and single dashes"));
    }
    if Uuid::parse_str(slug).is_ok() {
        return Err(ValidationError::new("slug", "slug must not look like an id"));
    }
    Ok(slug.to_owned())
}

/// A slug made from a title ("Rust for Pythonistas!" → "rust-for-pythonistas").
pub fn slugify(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out = out.trim_end_matches('-').chars().take(72).collect::<String>();
    out = out.trim_end_matches('-').to_owned();
    if out.len() < 3 {
        out = format!("course-{}", &Uuid::now_v7().simple().to_string()[..8]);
    }
    out
}

/// ISO 639-1: two lower-case letters.
pub fn language(raw: &str) -> Result<String, ValidationError> {
    let lang = raw.trim().to_lowercase();
    if lang.len() != 2 || !lang.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(ValidationError::new("language", "language must be an ISO 639-1 code like en"));
    }
    Ok(lang)
}

/// Lower-cased, de-duplicated, `[a-z0-9-]{1,32}`, at most 10.
pub fn tags(raw: &[String]) -> Result<Vec<String>, ValidationError> {
    let mut tags: Vec<String> = Vec::new();
    for tag in raw {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || tag.len() > 32 || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ValidationError::new("tags", "each tag must be 1-32 characters of a-z, 0-9 and dashes"));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::new("tags", format!("at most {MAX_TAGS} tags")));
    }
    Ok(tags)
}

pub fn prerequisites(course: Option<Uuid>, raw: &[Uuid]) -> Result<Vec<Uuid>, ValidationError> {
    let mut out: Vec<Uuid> = Vec::new();
    for id in raw {
        if Some(*id) == course {
            return Err(ValidationError::new("prerequisites", "a course cannot require itself"));
        }
        if !out.contains(id) {
            out.push(*id);
        }
    }
    if out.len() > MAX_PREREQUISITES {
        return Err(ValidationError::new("prerequisites", format!("at most {MAX_PREREQUISITES} prerequisites")));
    }
    Ok(out)
}

/// A new draft course from a create request.
pub fn new_course(req: &CreateCourseRequest, instructor: Uuid, now: OffsetDateTime) -> Result<Course, ValidationError> {
    let title = title(&req.title)?;
    let slug = match &req.slug {
        Some(s) => slug(s)?,
        None => slugify(&title),
    };
    req.price.validate()?;
    Price::validate_others(&req.price, &req.other_prices)?;
    let id = Uuid::now_v7();
    Ok(Course {
        id,
        slug,
        instructor_id: instructor,
        status: CourseStatus::Draft,
        version: 1,
        published_version: None,
        title,
        summary: summary(&req.summary)?,
        description: description(&req.description)?,
        language: language(&req.language)?,
        level: req.level,
        tags: tags(&req.tags)?,
        price: req.price.clone(),
        other_prices: req.other_prices.clone(),
        cover_image_id: req.cover_image_id,
        prerequisites: prerequisites(Some(id), &req.prerequisites)?,
        modules: Vec::new(),
        created_at: now,
        updated_at: now,
        published_at: None,
    })
}

/// Apply an update to the working copy (the caller checked the version).
pub fn apply_update(course: &mut Course, req: &UpdateCourseRequest) -> Result<(), ValidationError> {
    if let Some(v) = &req.title {
        course.title = title(v)?;
    }
    if let Some(v) = &req.slug {
        course.slug = slug(v)?;
    }
    if let Some(v) = &req.summary {
        course.summary = summary(v)?;
    }
    if let Some(v) = &req.description {
        course.description = description(v)?;
    }
    if let Some(v) = &req.language {
        course.language = language(v)?;
    }
    if let Some(v) = req.level {
        course.level = v;
    }
    if let Some(v) = &req.tags {
        course.tags = tags(v)?;
    }
    if let Some(v) = &req.price {
        v.validate()?;
        course.price = v.clone();
    }
    if let Some(v) = &req.other_prices {
        course.other_prices = v.clone();
    }
    if req.price.is_some() || req.other_prices.is_some() {
        Price::validate_others(&course.price, &course.other_prices)?;
    }
    if let Some(v) = req.cover_image_id {
        course.cover_image_id = Some(v);
    }
    if let Some(v) = &req.prerequisites {
        course.prerequisites = prerequisites(Some(course.id), v)?;
    }
    Ok(())
}

/// Build the new outline. Ids sent back must belong to this course (a lesson keeps its id, so
/// learners' progress keeps pointing at it); new items get new ids.
pub fn outline(existing: &[Module], input: &[ModuleInput]) -> Result<Vec<Module>, ValidationError> {
    if input.len() > MAX_MODULES {
        return Err(ValidationError::new("modules", format!("at most {MAX_MODULES} modules")));
    }
    let known_modules: Vec<Uuid> = existing.iter().map(|m| m.id).collect();
    let known_lessons: HashMap<Uuid, ()> = existing.iter().flat_map(|m| &m.lessons).map(|l| (l.id, ())).collect();
    let mut seen = Vec::new();
    let mut modules = Vec::with_capacity(input.len());
    for (i, m) in input.iter().enumerate() {
        let id = known_id(m.id, |id| known_modules.contains(&id), &format!("modules[{i}].id"))?;
        if m.lessons.len() > MAX_LESSONS_PER_MODULE {
            return Err(ValidationError::new(
                "modules",
                format!("at most {MAX_LESSONS_PER_MODULE} lessons per module"),
            ));
        }
        if m.release_after_days > 3650 {
            return Err(ValidationError::new("release_after_days", "release_after_days must be at most 3650"));
        }
        let mut lessons = Vec::with_capacity(m.lessons.len());
        for l in &m.lessons {
            let lesson = lesson(l, &known_lessons)?;
            if seen.contains(&lesson.id) {
                return Err(ValidationError::new("lessons", "a lesson appears twice"));
            }
            seen.push(lesson.id);
            lessons.push(lesson);
        }
        modules.push(Module { id, title: title(&m.title)?, release_after_days: m.release_after_days, lessons });
    }
    let mut module_ids: Vec<Uuid> = modules.iter().map(|m| m.id).collect();
    module_ids.sort();
    module_ids.dedup();
    if module_ids.len() != modules.len() {
        return Err(ValidationError::new("modules", "a module appears twice"));
    }
    Ok(modules)
}

fn known_id(id: Option<Uuid>, known: impl Fn(Uuid) -> bool, field: &str) -> Result<Uuid, ValidationError> {
    match id {
        None => Ok(Uuid::now_v7()),
        Some(id) if known(id) => Ok(id),
        Some(_) => Err(ValidationError { field: "id", message: format!("{field} is not part of this course") }),
    }
}

fn lesson(input: &LessonInput, known: &HashMap<Uuid, ()>) -> Result<Lesson, ValidationError> {
    let id = known_id(input.id, |id| known.contains_key(&id), "lesson id")?;
    let body = match (&input.body, input.kind) {
        (Some(body), LessonKind::Article) => Some(text("body", body, 1, 100_000)?),
        (Some(_), _) => return Err(ValidationError::new("body", "only article lessons have a body")),
        (None, _) => None,
    };
    if input.duration_secs.is_some_and(|d| d > 24 * 3600) {
        return Err(ValidationError::new("duration_secs", "duration_secs must be at most a day"));
    }
    Ok(Lesson {
        id,
        title: title(&input.title)?,
        kind: input.kind,
        required: input.required,
        duration_secs: input.duration_secs,
        asset_id: input.asset_id,
        body,
    })
}

/// Can this course be published now?
pub fn check_publishable(course: &Course) -> Result<(), ErrorBody> {
    if course.lesson_count() == 0 {
        return Err(ErrorBody::conflict("a course needs at least one lesson before it can be published"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Rust for Pythonistas!"), "rust-for-pythonistas");
        assert_eq!(slugify("  Ünïcode -- Course  "), "n-code-course");
        assert!(slugify("!!").starts_with("course-"));
        assert!(slug("ok-slug-1").is_ok());
        for bad in ["No", "UPPER", "a--b", "-ab", "ab-", "with space", "01a21275-e6b3-7497-b775-4cb79eafe3d4"] {
            assert_eq!(slug(bad).unwrap_err().field, "slug", "{bad}");
        }
    }

    #[test]
    fn tags_are_normalised() {
        assert_eq!(tags(&["Rust".into(), "rust".into(), "web-dev".into()]).unwrap(), vec!["rust", "web-dev"]);
        assert!(tags(&["no spaces".into()]).is_err());
        assert!(tags(&(0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()).is_err());
    }

    #[test]
    fn outline_keeps_known_ids_and_rejects_foreign_ones() {
        let input = vec![ModuleInput {
            id: None,
            title: "Basics".into(),
            release_after_days: 0,
            lessons: vec![LessonInput {
                id: None,
                title: "Hello".into(),
                kind: LessonKind::Article,
                required: true,
                duration_secs: None,
                asset_id: None,
                body: Some("Hi".into()),
            }],
        }];
        let first = outline(&[], &input).unwrap();
        let lesson_id = first[0].lessons[0].id;
        let mut again = input.clone();
        again[0].id = Some(first[0].id);
        again[0].lessons[0].id = Some(lesson_id);
        let second = outline(&first, &again).unwrap();
        assert_eq!(second[0].lessons[0].id, lesson_id);
        let mut foreign = input;
        foreign[0].lessons[0].id = Some(Uuid::now_v7());
        assert!(outline(&first, &foreign).is_err());
    }
}
