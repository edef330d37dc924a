//! Enrollment's PostgreSQL store. Every function takes a connection so callers compose them in
//! one transaction with the outbox.

use std::collections::HashMap;

use coursebus_bus::{BusError, CallContext, outbox};
use coursebus_contracts::EventEnvelope;
use coursebus_contracts::assessment::GradedItemKind;
use coursebus_contracts::enrollment::{
    Certificate, CompletionRule, Enrollment, EnrollmentCreated, EnrollmentStatus, LessonState, RosterEntry,
};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{self, ItemGrade, LessonRecord, PinnedOutline};

pub type Result<T> = std::result::Result<T, sqlx::Error>;

fn corrupt(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected stored {what}").into())
}

fn status(raw: &str) -> Result<EnrollmentStatus> {
    EnrollmentStatus::parse(raw).ok_or_else(|| corrupt("enrolment status"))
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn version(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// One enrolment joined with its pinned course and its certificate.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrollmentRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub course_version: i64,
    pub status: String,
    pub required_total: i32,
    pub required_done: i32,
    pub enrolled_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub cancelled_at: Option<OffsetDateTime>,
    pub last_activity_at: Option<OffsetDateTime>,
    pub course_title: String,
    pub course_slug: String,
    pub certificate_code: Option<String>,
}

impl EnrollmentRow {
    pub fn status(&self) -> Result<EnrollmentStatus> {
        status(&self.status)
    }

    pub fn to_enrollment(&self) -> Result<Enrollment> {
        Ok(Enrollment {
            id: self.id,
            user_id: self.user_id,
            course_id: self.course_id,
            course_version: version(self.course_version),
            course_title: self.course_title.clone(),
            course_slug: self.course_slug.clone(),
            status: self.status()?,
            progress: domain::course_progress(count(self.required_done), count(self.required_total)),
            enrolled_at: self.enrolled_at,
            completed_at: self.completed_at,
            cancelled_at: self.cancelled_at,
            certificate_code: self.certificate_code.clone(),
        })
    }

    pub fn to_roster_entry(&self) -> Result<RosterEntry> {
        Ok(RosterEntry {
            enrollment_id: self.id,
            user_id: self.user_id,
            status: self.status()?,
            course_version: version(self.course_version),
            progress: domain::course_progress(count(self.required_done), count(self.required_total)),
            enrolled_at: self.enrolled_at,
            completed_at: self.completed_at,
            last_activity_at: self.last_activity_at,
        })
    }
}

/// The enrolment query's head (a macro so queries stay `'static` literals for `concat!`).
macro_rules! select_enrollment {
    () => {
        "SELECT e.id, e.user_id, e.course_id, e.course_version, e.status, e.required_total, \
            e.required_done, e.enrolled_at, e.completed_at, e.cancelled_at, e.last_activity_at, \
            v.title AS course_title, v.slug AS course_slug, c.code AS certificate_code \
     FROM enrollments e \
     JOIN course_versions v ON v.course_id = e.course_id AND v.version = e.course_version \
     LEFT JOIN certificates c ON c.enrollment_id = e.id"
    };
}

/// What a pinned version records besides its outline.
#[derive(Debug, Clone)]
pub struct PinnedCourse<'a> {
    pub course_id: Uuid,
    pub version: u64,
    pub instructor_id: Uuid,
    pub title: &'a str,
    pub slug: &'a str,
    pub outline: &'a PinnedOutline,
}

/// Record a published version (a no-op when it is already pinned: versions never change).
pub async fn pin_version(conn: &mut PgConnection, pinned: &PinnedCourse<'_>) -> Result<()> {
    let outline = serde_json::to_value(pinned.outline).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO course_versions (course_id, version, instructor_id, title, slug, outline) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (course_id, version) DO NOTHING",
    )
    .bind(pinned.course_id)
    .bind(i64::try_from(pinned.version).unwrap_or(i64::MAX))
    .bind(pinned.instructor_id)
    .bind(pinned.title)
    .bind(pinned.slug)
    .bind(outline)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn outline(conn: &mut PgConnection, course: Uuid, version: i64) -> Result<Option<PinnedOutline>> {
    let value: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT outline FROM course_versions WHERE course_id = $1 AND version = $2")
            .bind(course)
            .bind(version)
            .fetch_optional(conn)
            .await?;
    value.map(|v| serde_json::from_value(v).map_err(|_| corrupt("outline"))).transpose()
}

/// Insert a live enrolment unless the learner already has one in the course (then `false`; a
/// concurrent insert waits for the other transaction and then does nothing).
/// A new active enrolment.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub id: Uuid,
    pub user: Uuid,
    pub course: Uuid,
    pub version: u64,
    pub required_total: u32,
    pub enrolled_at: OffsetDateTime,
    /// The paid order it fulfils (one enrolment per order).
    pub order_id: Option<Uuid>,
}

/// Insert it; `false` when the learner already has a live enrolment in the course.
pub async fn insert_enrollment(conn: &mut PgConnection, new: &NewEnrollment) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO enrollments (id, user_id, course_id, course_version, status, required_total, enrolled_at, order_id) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7) \
         ON CONFLICT (user_id, course_id) WHERE status <> 'cancelled' DO NOTHING",
    )
    .bind(new.id)
    .bind(new.user)
    .bind(new.course)
    .bind(i64::try_from(new.version).unwrap_or(i64::MAX))
    .bind(i32::try_from(new.required_total).unwrap_or(i32::MAX))
    .bind(new.enrolled_at)
    .bind(new.order_id)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// A new enrolment as one write: the pinned version when this replica has not pinned it yet,
/// the enrolment row, and its `enrolment.created` event in the outbox, all in the caller's
/// transaction. `false` (and nothing written but the pin) when the learner already has a live
/// enrolment in the course. The bench's monolith baseline makes exactly this write too.
pub async fn create_enrollment(
    tx: &mut PgConnection,
    pin: Option<&PinnedCourse<'_>>,
    new: &NewEnrollment,
    event: &EventEnvelope<EnrollmentCreated>,
    ctx: Option<&CallContext>,
) -> std::result::Result<bool, BusError> {
    if let Some(pinned) = pin {
        pin_version(tx, pinned).await?;
    }
    if !insert_enrollment(tx, new).await? {
        return Ok(false);
    }
    outbox::enqueue(tx, event, ctx).await?;
    Ok(true)
}

/// The enrolment made for a paid order, if any.
pub async fn enrollment_of_order(conn: &mut PgConnection, order: Uuid) -> Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT id FROM enrollments WHERE order_id = $1").bind(order).fetch_optional(conn).await
}

/// Remember that a paid order was rejected; `false` if it was before (the event went out then).
pub async fn record_rejection(conn: &mut PgConnection, order: Uuid, reason: &str) -> Result<bool> {
    let done = sqlx::query("INSERT INTO order_rejections (order_id, reason) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(order)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The learner's live (active or completed) enrolment in a course.
pub async fn live_enrollment(conn: &mut PgConnection, user: Uuid, course: Uuid) -> Result<Option<EnrollmentRow>> {
    sqlx::query_as(concat!(
        select_enrollment!(),
        " WHERE e.user_id = $1 AND e.course_id = $2 AND e.status <> 'cancelled'"
    ))
    .bind(user)
    .bind(course)
    .fetch_optional(conn)
    .await
}

pub async fn enrollment(conn: &mut PgConnection, id: Uuid) -> Result<Option<EnrollmentRow>> {
    sqlx::query_as(concat!(select_enrollment!(), " WHERE e.id = $1")).bind(id).fetch_optional(conn).await
}

/// The enrolment, its row locked for the rest of the transaction (progress and completion of one
/// enrolment are serialised, so `completed` is decided exactly once).
pub async fn enrollment_for_update(conn: &mut PgConnection, id: Uuid) -> Result<Option<EnrollmentRow>> {
    sqlx::query_as(concat!(select_enrollment!(), " WHERE e.id = $1 FOR UPDATE OF e"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The learner's live enrolment in a course, its row locked for the rest of the transaction.
pub async fn live_enrollment_for_update(
    conn: &mut PgConnection,
    user: Uuid,
    course: Uuid,
) -> Result<Option<EnrollmentRow>> {
    sqlx::query_as(concat!(
        select_enrollment!(),
        " WHERE e.user_id = $1 AND e.course_id = $2 AND e.status <> 'cancelled' FOR UPDATE OF e"
    ))
    .bind(user)
    .bind(course)
    .fetch_optional(conn)
    .await
}

/// Of `courses`, those the learner has completed.
pub async fn completed_courses(conn: &mut PgConnection, user: Uuid, courses: &[Uuid]) -> Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT DISTINCT course_id FROM enrollments WHERE user_id = $1 AND course_id = ANY($2) AND status = 'completed'",
    )
    .bind(user)
    .bind(courses)
    .fetch_all(conn)
    .await
}

#[derive(Debug, sqlx::FromRow)]
struct ProgressRow {
    lesson_id: Uuid,
    state: String,
    percent: i32,
    position_secs: Option<i32>,
    started_at: OffsetDateTime,
    completed_at: Option<OffsetDateTime>,
}

impl ProgressRow {
    fn record(&self) -> Result<LessonRecord> {
        Ok(LessonRecord {
            state: LessonState::parse(&self.state).ok_or_else(|| corrupt("lesson state"))?,
            percent: count(self.percent),
            position_secs: self.position_secs.map(count),
            started_at: Some(self.started_at),
            completed_at: self.completed_at,
        })
    }
}

macro_rules! select_progress {
    () => {
        "SELECT lesson_id, state, percent, position_secs, started_at, completed_at FROM lesson_progress"
    };
}

/// Every lesson the learner has started in an enrolment.
pub async fn progress(conn: &mut PgConnection, enrollment: Uuid) -> Result<HashMap<Uuid, LessonRecord>> {
    let rows: Vec<ProgressRow> = sqlx::query_as(concat!(select_progress!(), " WHERE enrollment_id = $1"))
        .bind(enrollment)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok((r.lesson_id, r.record()?))).collect()
}

pub async fn lesson_progress(conn: &mut PgConnection, enrollment: Uuid, lesson: Uuid) -> Result<Option<LessonRecord>> {
    let row: Option<ProgressRow> =
        sqlx::query_as(concat!(select_progress!(), " WHERE enrollment_id = $1 AND lesson_id = $2"))
            .bind(enrollment)
            .bind(lesson)
            .fetch_optional(conn)
            .await?;
    row.map(|r| r.record()).transpose()
}

pub async fn save_progress(
    conn: &mut PgConnection,
    enrollment: Uuid,
    lesson: Uuid,
    record: &LessonRecord,
    now: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO lesson_progress (enrollment_id, lesson_id, state, percent, position_secs, started_at, completed_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (enrollment_id, lesson_id) DO UPDATE SET state = EXCLUDED.state, percent = EXCLUDED.percent, \
             position_secs = EXCLUDED.position_secs, completed_at = EXCLUDED.completed_at, updated_at = EXCLUDED.updated_at",
    )
    .bind(enrollment)
    .bind(lesson)
    .bind(record.state.as_str())
    .bind(i32::try_from(record.percent).unwrap_or(100))
    .bind(record.position_secs.map(|p| i32::try_from(p).unwrap_or(i32::MAX)))
    .bind(record.started_at.unwrap_or(now))
    .bind(record.completed_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many of `required` lessons are completed in an enrolment.
pub async fn count_completed(conn: &mut PgConnection, enrollment: Uuid, required: &[Uuid]) -> Result<u32> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM lesson_progress WHERE enrollment_id = $1 AND state = 'completed' AND lesson_id = ANY($2)",
    )
    .bind(enrollment)
    .bind(required)
    .fetch_one(conn)
    .await?;
    Ok(u32::try_from(n).unwrap_or(0))
}

pub async fn touch(conn: &mut PgConnection, enrollment: Uuid, required_done: u32, now: OffsetDateTime) -> Result<()> {
    sqlx::query("UPDATE enrollments SET required_done = $2, last_activity_at = $3 WHERE id = $1")
        .bind(enrollment)
        .bind(i32::try_from(required_done).unwrap_or(i32::MAX))
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Mark an active enrolment completed and issue its certificate; `false` if it was not active.
pub async fn complete(conn: &mut PgConnection, row: &EnrollmentRow, code: &str, now: OffsetDateTime) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE enrollments SET status = 'completed', completed_at = $2 WHERE id = $1 AND status = 'active'",
    )
    .bind(row.id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO certificates (enrollment_id, code, user_id, course_id, course_title, issued_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(row.id)
    .bind(code)
    .bind(row.user_id)
    .bind(row.course_id)
    .bind(&row.course_title)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Cancel an active enrolment; `false` if it was not active.
pub async fn cancel(conn: &mut PgConnection, enrollment: Uuid, now: OffsetDateTime) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE enrollments SET status = 'cancelled', cancelled_at = $2 WHERE id = $1 AND status = 'active'",
    )
    .bind(enrollment)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A filter on status: one status, or every live one (active and completed) when `None`.
fn status_param(filter: Option<EnrollmentStatus>) -> Option<&'static str> {
    filter.map(EnrollmentStatus::as_str)
}

/// A learner's enrolments, newest first, after the cursor id.
pub async fn list_mine(
    conn: &mut PgConnection,
    user: Uuid,
    filter: Option<EnrollmentStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<EnrollmentRow>> {
    sqlx::query_as(concat!(
        select_enrollment!(),
        " WHERE e.user_id = $1 \
         AND (($2::text IS NULL AND e.status <> 'cancelled') OR e.status = $2) \
         AND ($3::uuid IS NULL OR e.id < $3) ORDER BY e.id DESC LIMIT $4"
    ))
    .bind(user)
    .bind(status_param(filter))
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
}

/// A course's enrolments, oldest first, after the cursor id.
pub async fn roster(
    conn: &mut PgConnection,
    course: Uuid,
    filter: Option<EnrollmentStatus>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<EnrollmentRow>> {
    sqlx::query_as(concat!(
        select_enrollment!(),
        " WHERE e.course_id = $1 \
         AND (($2::text IS NULL AND e.status <> 'cancelled') OR e.status = $2) \
         AND ($3::uuid IS NULL OR e.id > $3) ORDER BY e.id ASC LIMIT $4"
    ))
    .bind(course)
    .bind(status_param(filter))
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
}

/// Users with a live enrolment in `course`, in id order, after `after`.
pub async fn learners(
    conn: &mut PgConnection,
    course: Uuid,
    after: Option<Uuid>,
    enrolled_by: Option<OffsetDateTime>,
    limit: u32,
) -> Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT user_id FROM enrollments WHERE course_id = $1 AND status <> 'cancelled' \
         AND ($2::uuid IS NULL OR user_id > $2) AND ($4::timestamptz IS NULL OR enrolled_at <= $4) \
         ORDER BY user_id ASC LIMIT $3",
    )
    .bind(course)
    .bind(after)
    .bind(i64::from(limit))
    .bind(enrolled_by)
    .fetch_all(conn)
    .await
}

#[derive(Debug, sqlx::FromRow)]
struct CertificateRow {
    code: String,
    enrollment_id: Uuid,
    user_id: Uuid,
    course_id: Uuid,
    course_title: String,
    issued_at: OffsetDateTime,
}

pub async fn certificate(conn: &mut PgConnection, code: &str) -> Result<Option<Certificate>> {
    let row: Option<CertificateRow> = sqlx::query_as(
        "SELECT code, enrollment_id, user_id, course_id, course_title, issued_at FROM certificates WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Certificate {
        code: r.code,
        enrollment_id: r.enrollment_id,
        user_id: r.user_id,
        course_id: r.course_id,
        course_title: r.course_title,
        issued_at: r.issued_at,
    }))
}

fn kind_str(kind: GradedItemKind) -> &'static str {
    match kind {
        GradedItemKind::Quiz => "quiz",
        GradedItemKind::Assignment => "assignment",
    }
}

fn parse_kind(raw: &str) -> Result<GradedItemKind> {
    match raw {
        "quiz" => Ok(GradedItemKind::Quiz),
        "assignment" => Ok(GradedItemKind::Assignment),
        _ => Err(corrupt("item kind")),
    }
}

#[derive(Debug, sqlx::FromRow)]
struct RuleRow {
    item_id: Uuid,
    item_kind: String,
    title: String,
    min_percent_bp: i32,
}

/// A course's completion rules in their order and when they were set; `None` if never set.
/// With `lock`, the course's rule set is held FOR SHARE until the transaction ends, so rules
/// cannot be replaced while a completion is decided on them ([`replace_rules`] waits).
pub async fn rules(
    conn: &mut PgConnection,
    course: Uuid,
    lock: bool,
) -> Result<Option<(Vec<CompletionRule>, OffsetDateTime)>> {
    let query = if lock {
        "SELECT updated_at FROM completion_rule_sets WHERE course_id = $1 FOR SHARE"
    } else {
        "SELECT updated_at FROM completion_rule_sets WHERE course_id = $1"
    };
    let updated_at: Option<OffsetDateTime> = sqlx::query_scalar(query).bind(course).fetch_optional(&mut *conn).await?;
    let Some(updated_at) = updated_at else { return Ok(None) };
    let rows: Vec<RuleRow> = sqlx::query_as(
        "SELECT item_id, item_kind, title, min_percent_bp FROM completion_rules WHERE course_id = $1 ORDER BY position",
    )
    .bind(course)
    .fetch_all(conn)
    .await?;
    let rules = rows
        .into_iter()
        .map(|r| {
            Ok(CompletionRule {
                item_id: r.item_id,
                item_kind: parse_kind(&r.item_kind)?,
                title: r.title,
                min_percent_bp: count(r.min_percent_bp),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((rules, updated_at)))
}

/// Replace a course's completion rules (a row lock on its rule set: waits for completion
/// decisions reading the old rules, and the next ones read the new).
pub async fn replace_rules(
    conn: &mut PgConnection,
    course: Uuid,
    rules: &[CompletionRule],
    by: Uuid,
    now: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO completion_rule_sets (course_id, updated_by, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (course_id) DO UPDATE SET updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at",
    )
    .bind(course)
    .bind(by)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM completion_rules WHERE course_id = $1").bind(course).execute(&mut *conn).await?;
    if rules.is_empty() {
        return Ok(());
    }
    let positions: Vec<i32> = (0..rules.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect();
    let items: Vec<Uuid> = rules.iter().map(|r| r.item_id).collect();
    let kinds: Vec<&str> = rules.iter().map(|r| kind_str(r.item_kind)).collect();
    let titles: Vec<&str> = rules.iter().map(|r| r.title.as_str()).collect();
    let mins: Vec<i32> = rules.iter().map(|r| i32::try_from(r.min_percent_bp).unwrap_or(i32::MAX)).collect();
    sqlx::query(
        "INSERT INTO completion_rules (course_id, position, item_id, item_kind, title, min_percent_bp) \
         SELECT $1, * FROM UNNEST($2::int[], $3::uuid[], $4::text[], $5::text[], $6::int[])",
    )
    .bind(course)
    .bind(&positions)
    .bind(&items)
    .bind(&kinds)
    .bind(&titles)
    .bind(&mins)
    .execute(conn)
    .await?;
    Ok(())
}

/// A grade as assessment released it.
#[derive(Debug, Clone, Copy)]
pub struct ReleasedGrade {
    pub user: Uuid,
    pub item: Uuid,
    pub kind: GradedItemKind,
    pub course: Uuid,
    pub percent_bp: u32,
    /// The event's time: the latest wins.
    pub graded_at: OffsetDateTime,
    pub event_id: Uuid,
}

/// Store the learner's grade on the item unless the stored one is from a later event; `true`
/// when stored (a redelivery of the stored event stores the same again).
pub async fn upsert_grade(conn: &mut PgConnection, grade: &ReleasedGrade) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO item_grades (user_id, item_id, item_kind, course_id, percent_bp, graded_at, event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (user_id, item_id) DO UPDATE SET item_kind = EXCLUDED.item_kind, course_id = EXCLUDED.course_id, \
             percent_bp = EXCLUDED.percent_bp, graded_at = EXCLUDED.graded_at, event_id = EXCLUDED.event_id, \
             updated_at = now() \
         WHERE item_grades.graded_at <= EXCLUDED.graded_at",
    )
    .bind(grade.user)
    .bind(grade.item)
    .bind(kind_str(grade.kind))
    .bind(grade.course)
    .bind(i32::try_from(grade.percent_bp).unwrap_or(i32::MAX))
    .bind(grade.graded_at)
    .bind(grade.event_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, sqlx::FromRow)]
struct GradeRow {
    item_id: Uuid,
    item_kind: String,
    percent_bp: i32,
    graded_at: OffsetDateTime,
}

/// The learner's latest grades on `items`, by item id.
pub async fn grades(conn: &mut PgConnection, user: Uuid, items: &[Uuid]) -> Result<HashMap<Uuid, ItemGrade>> {
    if items.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<GradeRow> = sqlx::query_as(
        "SELECT item_id, item_kind, percent_bp, graded_at FROM item_grades WHERE user_id = $1 AND item_id = ANY($2)",
    )
    .bind(user)
    .bind(items)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let grade =
                ItemGrade { kind: parse_kind(&r.item_kind)?, percent_bp: count(r.percent_bp), graded_at: r.graded_at };
            Ok((r.item_id, grade))
        })
        .collect()
}

/// A course's active enrolments with every required lesson done: those that wait on completion
/// rules (ids in order, to lock them one by one).
pub async fn waiting_on_rules(conn: &mut PgConnection, course: Uuid) -> Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM enrollments WHERE course_id = $1 AND status = 'active' AND required_done >= required_total \
         ORDER BY id",
    )
    .bind(course)
    .fetch_all(conn)
    .await
}
