//! One method per endpoint. Every method verifies the caller's token itself, checks ownership
//! (a learner sees only their own enrolments: another's is "not found"), and writes events
//! through the outbox in the same transaction as the data.

use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::auth::JwtVerifier;
use coursebus_bus::cache::SnapshotCache;
use coursebus_bus::consume::Handled;
use coursebus_bus::idempotency::Idempotency;
use coursebus_bus::{Bus, CallContext, outbox};
use coursebus_contracts::assessment::GradeReleased;
use coursebus_contracts::catalog::{
    Course, CourseStatus, GetCourse, GetCourseRequest, course_cache_key, course_cache_keys,
};
use coursebus_contracts::enrollment::{
    AccessCheckRequest, AccessReply, Certificate, CompletionRules, CompletionRulesRequest, CreateEnrollmentRequest,
    Enroll, EnrollReply, Enrollment, EnrollmentCancelled, EnrollmentCompleted, EnrollmentCreated, EnrollmentDetail,
    EnrollmentIdRequest, EnrollmentPage, EnrollmentRejected, EnrollmentStatus, LearnersPage, LearnersRequest,
    ListEnrollmentsRequest, ProgressReply, ProgressUpdated, RosterPage, RosterRequest, RuleProgress,
    SetCompletionRulesRequest, UpdateProgressRequest, VerifyCertificateRequest,
};
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::payments::{OrderPaid, OrderRefunded};
use coursebus_contracts::validate::Role;
use coursebus_contracts::{Actor, ErrorBody, Event, EventEnvelope, Rpc};
use sqlx::PgPool;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::domain::{self, PinnedOutline, Report};
use crate::store::{self, EnrollmentRow, PinnedCourse};

/// The enrollment service's state, shared by all endpoint handlers of one replica.
#[derive(Debug)]
pub struct Enrollments {
    pub pool: PgPool,
    pub verifier: Arc<JwtVerifier>,
    /// For calls to the catalog.
    pub bus: Bus,
    /// Deadline of a catalog call (shorter than the gateway's own deadline).
    pub catalog_deadline: Duration,
    /// Wakes this replica's outbox relay after a commit with events.
    pub outbox: outbox::Waker,
    /// Course versions this replica has seen committed to `course_versions`, with their number
    /// of required lessons (rows there are never changed or deleted, so neither the outline nor
    /// its insert is needed again).
    pub pinned: std::sync::Mutex<std::collections::HashMap<(Uuid, u64), u32>>,
    /// Published course snapshots read from the catalog, dropped by every catalog event about
    /// the course (as the catalog's own cache is), so an enrolment needs no catalog call.
    pub courses: Arc<SnapshotCache<Course>>,
}

/// How long a published snapshot is kept should an invalidation be missed (a reconnect).
pub const COURSE_CACHE_TTL: Duration = Duration::from_secs(60);
/// Published snapshots kept at most per replica.
pub const COURSE_CACHE_ENTRIES: usize = 20_000;

/// Log a database error and answer `internal` (the client never sees database details).
use coursebus_bus::db;

fn bus(err: coursebus_bus::BusError) -> ErrorBody {
    tracing::error!(error = %err, "database or outbox error");
    ErrorBody::internal()
}

fn no_enrollment() -> ErrorBody {
    ErrorBody::not_found("no such enrolment")
}

fn no_course() -> ErrorBody {
    ErrorBody::not_found("no such course")
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

fn user_actor(me: &AccessClaims) -> Actor {
    Actor::User { id: me.sub }
}

fn service_actor() -> Actor {
    Actor::Service { name: coursebus_contracts::subjects::enrollment::SERVICE.into() }
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// The course's completion rules with the learner's latest grades on their items (empty when
/// the course has none). With `lock`, the rules are held (FOR SHARE) until the transaction ends,
/// so they cannot change under a completion decision.
async fn rules_of(
    conn: &mut sqlx::PgConnection,
    course: Uuid,
    user: Uuid,
    lock: bool,
) -> Result<Vec<RuleProgress>, ErrorBody> {
    let Some((rules, _)) = store::rules(conn, course, lock).await.map_err(db)? else {
        return Ok(Vec::new());
    };
    let items: Vec<Uuid> = rules.iter().map(|r| r.item_id).collect();
    let grades = store::grades(conn, user, &items).await.map_err(db)?;
    Ok(domain::rule_progress(&rules, &grades))
}

impl Enrollments {
    async fn caller(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        self.verifier.verify_ctx(ctx).await
    }

    /// A course from the catalog. `as_caller: false` asks anonymously, which yields only a
    /// published snapshot (never an instructor's working copy).
    async fn course(&self, ctx: &CallContext, id_or_slug: String, as_caller: bool) -> Result<Arc<Course>, ErrorBody> {
        let call = CallContext {
            request_id: ctx.request_id.clone(),
            traceparent: ctx.traceparent.clone(),
            authorization: if as_caller { ctx.authorization.clone() } else { None },
            idempotency_key: None,
        };
        // What anyone may see (the published snapshot) is cached; a caller's own view is not.
        let key = (!as_caller).then(|| course_cache_key(&id_or_slug));
        if let Some(key) = &key
            && let Some(course) = self.courses.get(key).await
        {
            return Ok(course);
        }
        let loaded_at = self.courses.generation();
        let req = GetCourseRequest { id_or_slug, draft: false };
        let course = Arc::new(self.bus.request_within::<GetCourse>(&call, &req, self.catalog_deadline).await?);
        if key.is_some() {
            self.courses.put(&course_cache_keys(&course), course.id, course.clone(), loaded_at).await;
        }
        Ok(course)
    }

    async fn pinned_outline(
        &self,
        conn: &mut sqlx::PgConnection,
        row: &EnrollmentRow,
    ) -> Result<PinnedOutline, ErrorBody> {
        store::outline(conn, row.course_id, row.course_version).await.map_err(db)?.ok_or_else(|| {
            tracing::error!(enrollment_id = %row.id, "enrolment without its pinned course version");
            ErrorBody::internal()
        })
    }

    pub async fn enroll(&self, ctx: CallContext, req: CreateEnrollmentRequest) -> Result<EnrollReply, ErrorBody> {
        let me = self.caller(&ctx).await?;
        // A retry with the same key gets the first answer (the key is the caller's own).
        let idem = ctx
            .idempotency_key
            .as_deref()
            .map(|key| {
                Idempotency::new(format!("{}:{}", <Enroll as Rpc>::ENDPOINT.subject(), me.sub), key, &req.course_id)
            })
            .transpose()?;
        if let Some(idem) = &idem
            && let Some(reply) = idem.replay::<EnrollReply>(&self.pool).await?
        {
            return Ok(reply);
        }
        // The course first (cached): a new enrolment in a free course is then one transaction.
        // Whenever this request cannot enrol, the learner's existing enrolment (in a course
        // since archived, bought, or with prerequisites met then) is the answer, if there is one.
        let refusal = match self.course(&ctx, req.course_id.to_string(), false).await {
            Ok(course) if course.id != req.course_id || course.status != CourseStatus::Published => Err(no_course()),
            Ok(course) if !course.price.is_free() => Err(ErrorBody::new(
                coursebus_contracts::ErrorCode::PaymentRequired,
                "this course must be bought before enrolling",
            )
            .with_details(serde_json::json!({
                "course_id": course.id,
                "price": { "amount_minor": course.price.amount_minor, "currency": course.price.currency },
            }))),
            Ok(course) => self.missing_prerequisites(me.sub, &course).await.map(|()| course),
            Err(err) => Err(err),
        };
        let course = match refusal {
            Ok(course) => course,
            Err(err) => {
                let mut conn = self.pool.acquire().await.map_err(db)?;
                return match store::live_enrollment(&mut conn, me.sub, req.course_id).await.map_err(db)? {
                    Some(existing) => {
                        Ok(EnrollReply { created: false, enrollment: existing.to_enrollment().map_err(db)? })
                    }
                    None => Err(err),
                };
            }
        };

        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(row) = self.insert_new(&mut tx, me.sub, &course, None, user_actor(&me), Some(&ctx)).await? else {
            // A concurrent request enrolled first: answer with its enrolment.
            let existing = store::live_enrollment(&mut tx, me.sub, course.id).await.map_err(db)?.ok_or_else(|| {
                tracing::error!(course_id = %course.id, "enrolment conflict without a live enrolment");
                ErrorBody::internal()
            })?;
            tx.commit().await.map_err(db)?;
            return Ok(EnrollReply { created: false, enrollment: existing.to_enrollment().map_err(db)? });
        };
        let id = row.id;
        let version = course.published_version.unwrap_or(course.version);
        let required_total = u32::try_from(row.required_total).unwrap_or(0);
        let reply = EnrollReply { created: true, enrollment: row.to_enrollment().map_err(db)? };
        if let Some(idem) = &idem {
            idem.record(&mut tx, &reply).await?;
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        if let Ok(mut p) = self.pinned.lock() {
            p.insert((course.id, version), required_total);
        }
        tracing::info!(enrollment_id = %id, user_id = %me.sub, course_id = %course.id, course_version = version, "enrolled");
        Ok(reply)
    }

    /// `conflict` naming the prerequisite courses the learner has not completed.
    async fn missing_prerequisites(&self, user: Uuid, course: &Course) -> Result<(), ErrorBody> {
        if course.prerequisites.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let met = store::completed_courses(&mut conn, user, &course.prerequisites).await.map_err(db)?;
        let missing: Vec<Uuid> = course.prerequisites.iter().filter(|p| !met.contains(p)).copied().collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ErrorBody::conflict("complete the prerequisite courses first")
                .with_details(serde_json::json!({ "missing_prerequisites": missing })))
        }
    }

    /// Pin the course's published version and insert a new active enrolment with its
    /// `enrolment.created` event, in `tx`. `None` when the learner already has a live one.
    async fn insert_new(
        &self,
        tx: &mut sqlx::PgConnection,
        user: Uuid,
        course: &Course,
        order_id: Option<Uuid>,
        actor: Actor,
        ctx: Option<&CallContext>,
    ) -> Result<Option<EnrollmentRow>, ErrorBody> {
        let version = course.published_version.unwrap_or(course.version);
        let now = domain::to_micros(OffsetDateTime::now_utc());
        let id = Uuid::now_v7();
        // A version this replica pinned before needs neither its outline nor the pin again.
        let known = self.pinned.lock().ok().and_then(|p| p.get(&(course.id, version)).copied());
        let outline = known.is_none().then(|| domain::pin(course));
        let required_total = known.or_else(|| outline.as_ref().map(|o| o.required_total())).unwrap_or(0);
        let pinned = outline.as_ref().map(|outline| PinnedCourse {
            course_id: course.id,
            version,
            instructor_id: course.instructor_id,
            title: &course.title,
            slug: &course.slug,
            outline,
        });
        let new =
            store::NewEnrollment { id, user, course: course.id, version, required_total, enrolled_at: now, order_id };
        let event = EnrollmentCreated {
            enrollment_id: id,
            user_id: user,
            course_id: course.id,
            course_version: version,
            enrolled_at: now,
            order_id,
        }
        .envelope(actor);
        if !store::create_enrollment(tx, pinned.as_ref(), &new, &event, ctx).await.map_err(bus)? {
            return Ok(None);
        }
        // The new row is exactly what was inserted: answer without reading it back.
        Ok(Some(EnrollmentRow {
            id,
            user_id: user,
            course_id: course.id,
            course_version: i64::try_from(version).unwrap_or(i64::MAX),
            status: "active".into(),
            required_total: i32::try_from(required_total).unwrap_or(i32::MAX),
            required_done: 0,
            enrolled_at: now,
            completed_at: None,
            cancelled_at: None,
            last_activity_at: None,
            course_title: course.title.clone(),
            course_slug: course.slug.clone(),
            certificate_code: None,
        }))
    }

    /// Saga step (payments' `order.paid`): enrol the buyer, once per order. An order that cannot
    /// become an enrolment is answered with `enrolment.rejected` (payments refunds it).
    pub async fn enroll_paid(&self, paid: OrderPaid) -> Handled {
        let mut conn = match self.pool.acquire().await {
            Ok(c) => c,
            Err(err) => return Handled::Retry(err.to_string()),
        };
        match store::enrollment_of_order(&mut conn, paid.order_id).await {
            Ok(Some(_)) => return Handled::Done,
            Ok(None) => {}
            Err(err) => return Handled::Retry(err.to_string()),
        }
        drop(conn);
        let anonymous = CallContext::new_root();
        let course = match self.course(&anonymous, paid.course_id.to_string(), false).await {
            Ok(c) if c.id == paid.course_id && c.status == CourseStatus::Published => Some(c),
            Ok(_) => None,
            Err(e) if e.code == coursebus_contracts::ErrorCode::NotFound => None,
            Err(e) => return Handled::Retry(format!("catalog: {}", e.message)),
        };
        let outcome = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let Some(course) = course else {
                return self.reject(tx, &paid, "the course is no longer open to new learners").await;
            };
            if !course.prerequisites.is_empty() {
                let met = store::completed_courses(&mut tx, paid.user_id, &course.prerequisites).await.map_err(db)?;
                if course.prerequisites.iter().any(|p| !met.contains(p)) {
                    return self.reject(tx, &paid, "the prerequisite courses are not completed").await;
                }
            }
            let actor = Actor::User { id: paid.user_id };
            match self.insert_new(&mut tx, paid.user_id, &course, Some(paid.order_id), actor, None).await? {
                Some(row) => {
                    tx.commit().await.map_err(db)?;
                    self.outbox.wake();
                    tracing::info!(enrollment_id = %row.id, order_id = %paid.order_id, user_id = %paid.user_id, course_id = %course.id, "enrolled after payment");
                    Ok(())
                }
                None => self.reject(tx, &paid, "already enrolled in this course").await,
            }
        };
        match outcome.await {
            Ok(()) => Handled::Done,
            Err(e) => Handled::Retry(e.message),
        }
    }

    async fn reject(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        paid: &OrderPaid,
        reason: &str,
    ) -> Result<(), ErrorBody> {
        if store::record_rejection(&mut tx, paid.order_id, reason).await.map_err(db)? {
            let event = EnrollmentRejected {
                order_id: paid.order_id,
                user_id: paid.user_id,
                course_id: paid.course_id,
                reason: reason.to_owned(),
            }
            .envelope(Actor::Service { name: coursebus_contracts::subjects::enrollment::SERVICE.into() });
            outbox::enqueue(&mut tx, &event, None).await.map_err(bus)?;
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::warn!(order_id = %paid.order_id, user_id = %paid.user_id, reason, "paid order rejected");
        Ok(())
    }

    /// Saga step (payments' `order.refunded` in full): revoke the order's active enrolment.
    pub async fn revoke_refunded(&self, refunded: OrderRefunded) -> Handled {
        if !refunded.full {
            return Handled::Done;
        }
        let outcome = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let Some(id) = store::enrollment_of_order(&mut tx, refunded.order_id).await.map_err(db)? else {
                return Ok(()); // never enrolled (rejected): nothing to revoke
            };
            if store::cancel(&mut tx, id, OffsetDateTime::now_utc()).await.map_err(db)? {
                let event = EnrollmentCancelled {
                    enrollment_id: id,
                    user_id: refunded.user_id,
                    course_id: refunded.course_id,
                    order_id: Some(refunded.order_id),
                }
                .envelope(Actor::Service { name: coursebus_contracts::subjects::enrollment::SERVICE.into() });
                outbox::enqueue(&mut tx, &event, None).await.map_err(bus)?;
                tracing::info!(enrollment_id = %id, order_id = %refunded.order_id, "enrolment revoked by a refund");
            }
            tx.commit().await.map_err(db)?;
            self.outbox.wake();
            Ok::<(), ErrorBody>(())
        };
        match outcome.await {
            Ok(()) => Handled::Done,
            Err(e) => Handled::Retry(e.message),
        }
    }

    /// The enrolment if the caller may read it (its learner, or an admin); else not found.
    fn readable(me: &AccessClaims, row: Option<EnrollmentRow>) -> Result<EnrollmentRow, ErrorBody> {
        row.filter(|r| r.user_id == me.sub || me.has_role(Role::Admin)).ok_or_else(no_enrollment)
    }

    pub async fn get(&self, ctx: CallContext, req: EnrollmentIdRequest) -> Result<EnrollmentDetail, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = Self::readable(&me, store::enrollment(&mut conn, req.id).await.map_err(db)?)?;
        let outline = self.pinned_outline(&mut conn, &row).await?;
        let progress = store::progress(&mut conn, row.id).await.map_err(db)?;
        let rules = rules_of(&mut conn, row.course_id, row.user_id, false).await?;
        let enrollment = row.to_enrollment().map_err(db)?;
        Ok(domain::detail(enrollment, &outline, &progress, rules, OffsetDateTime::now_utc()))
    }

    /// Unenrol. Cancelling twice answers the cancelled enrolment; a completed one stays.
    pub async fn cancel(&self, ctx: CallContext, req: EnrollmentIdRequest) -> Result<Enrollment, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = store::enrollment_for_update(&mut tx, req.id).await.map_err(db)?;
        let row = row.filter(|r| r.user_id == me.sub).ok_or_else(no_enrollment)?;
        match row.status().map_err(db)? {
            EnrollmentStatus::Cancelled => return row.to_enrollment().map_err(db),
            EnrollmentStatus::Completed => {
                return Err(ErrorBody::conflict(
                    "a completed course cannot be unenrolled; its certificate stays valid",
                ));
            }
            EnrollmentStatus::Active => {}
        }
        store::cancel(&mut tx, row.id, OffsetDateTime::now_utc()).await.map_err(db)?;
        let event = EnrollmentCancelled {
            enrollment_id: row.id,
            user_id: row.user_id,
            course_id: row.course_id,
            order_id: None,
        }
        .envelope(user_actor(&me));
        outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(bus)?;
        let row = store::enrollment(&mut tx, row.id).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(enrollment_id = %row.id, user_id = %me.sub, course_id = %row.course_id, "unenrolled");
        row.to_enrollment().map_err(db)
    }

    pub async fn mine(&self, ctx: CallContext, req: ListEnrollmentsRequest) -> Result<EnrollmentPage, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let limit = domain::page_limit(req.limit, 20)?;
        let before = req.cursor.as_deref().map(domain::decode_cursor).transpose()?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut rows = store::list_mine(&mut conn, me.sub, req.status, before, limit + 1).await.map_err(db)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| domain::encode_cursor(r.id)) } else { None };
        let items = rows.iter().map(EnrollmentRow::to_enrollment).collect::<Result<_, _>>().map_err(db)?;
        Ok(EnrollmentPage { items, next_cursor })
    }

    /// Record progress in one lesson. Monotonic; completing the last required lesson completes
    /// the enrolment (when the course's completion rules are met too), issues its certificate and
    /// emits `completed`, all in this transaction.
    pub async fn update_progress(
        &self,
        ctx: CallContext,
        req: UpdateProgressRequest,
    ) -> Result<ProgressReply, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let report = Report::parse(req.state, req.percent, req.position_secs)?;
        let now = OffsetDateTime::now_utc();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = store::enrollment_for_update(&mut tx, req.enrollment_id).await.map_err(db)?;
        let row = row.filter(|r| r.user_id == me.sub).ok_or_else(no_enrollment)?;
        if row.status().map_err(db)? == EnrollmentStatus::Cancelled {
            return Err(ErrorBody::conflict("this enrolment was cancelled; enrol again to continue"));
        }
        let outline = self.pinned_outline(&mut tx, &row).await?;
        let Some((module, lesson)) = outline.find_lesson(req.lesson_id) else {
            return Err(ErrorBody::not_found("no such lesson in this course")
                .with_details(serde_json::json!({ "field": "lesson_id" })));
        };
        let opens = domain::available_at(row.enrolled_at, module.release_after_days);
        if now < opens {
            return Err(ErrorBody::forbidden(format!(
                "module \"{}\" opens on {} ({} days after enrolment)",
                module.title,
                rfc3339(opens),
                module.release_after_days
            ))
            .with_details(serde_json::json!({ "module_id": module.id, "available_at": rfc3339(opens) })));
        }

        let old = store::lesson_progress(&mut tx, row.id, lesson.id).await.map_err(db)?;
        let merged = domain::merge(old.as_ref(), report, now);
        let mut required_done = u32::try_from(row.required_done).unwrap_or(0);
        if merged.changed {
            store::save_progress(&mut tx, row.id, lesson.id, &merged.record, now).await.map_err(db)?;
            if merged.newly_completed && lesson.required {
                required_done =
                    store::count_completed(&mut tx, row.id, &outline.required_lessons()).await.map_err(db)?;
            }
            store::touch(&mut tx, row.id, required_done, now).await.map_err(db)?;
        }
        let progress = domain::course_progress(required_done, u32::try_from(row.required_total).unwrap_or(0));
        if merged.progressed {
            let event = ProgressUpdated {
                enrollment_id: row.id,
                user_id: row.user_id,
                course_id: row.course_id,
                lesson_id: lesson.id,
                state: merged.record.state,
                percent: merged.record.percent,
                progress,
            }
            .envelope(user_actor(&me));
            outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(bus)?;
        }
        self.complete_if_done(&mut tx, &row, required_done, user_actor(&me), Some(&ctx), now).await?;
        let after = store::enrollment(&mut tx, row.id).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        Ok(ProgressReply {
            lesson: domain::lesson_view(lesson, &merged.record),
            enrollment: after.to_enrollment().map_err(db)?,
        })
    }

    /// Complete the enrolment `row` (locked by the caller's transaction) if it is active, every
    /// required lesson is done (`required_done`, as of this transaction) and every completion
    /// rule is met: mark it, issue its certificate and queue `completed`, in `tx`. The row lock
    /// makes this happen once; `true` when it happened now.
    async fn complete_if_done(
        &self,
        tx: &mut sqlx::PgConnection,
        row: &EnrollmentRow,
        required_done: u32,
        actor: Actor,
        ctx: Option<&CallContext>,
        now: OffsetDateTime,
    ) -> Result<bool, ErrorBody> {
        if row.status().map_err(db)? != EnrollmentStatus::Active {
            return Ok(false);
        }
        let progress = domain::course_progress(required_done, count(row.required_total));
        if !domain::is_complete(&progress) {
            return Ok(false);
        }
        let rules = rules_of(tx, row.course_id, row.user_id, true).await?;
        if !domain::is_course_complete(&progress, &rules) {
            let unmet = rules.iter().filter(|r| !r.met).count();
            tracing::debug!(enrollment_id = %row.id, unmet, "lessons done; completion rules not met yet");
            return Ok(false);
        }
        let code = domain::certificate_code();
        if !store::complete(tx, row, &code, now).await.map_err(db)? {
            return Ok(false);
        }
        let event = EnrollmentCompleted {
            enrollment_id: row.id,
            user_id: row.user_id,
            course_id: row.course_id,
            certificate_code: code,
            completed_at: now,
        }
        .envelope(actor);
        outbox::enqueue(tx, &event, ctx).await.map_err(bus)?;
        tracing::info!(enrollment_id = %row.id, user_id = %row.user_id, course_id = %row.course_id, rules = rules.len(), "course completed");
        Ok(true)
    }

    /// The course if the caller is its instructor or an admin (asked of the catalog with the
    /// caller's token, so a course that is not published is found too); else `forbidden`.
    async fn authored_course(
        &self,
        ctx: &CallContext,
        me: &AccessClaims,
        course_id: Uuid,
        what: &str,
    ) -> Result<Arc<Course>, ErrorBody> {
        let course = self.course(ctx, course_id.to_string(), true).await?;
        if course.id != course_id {
            return Err(no_course());
        }
        if course.instructor_id != me.sub && !me.has_role(Role::Admin) {
            return Err(ErrorBody::forbidden(format!("only the course's instructor or an admin can {what}")));
        }
        Ok(course)
    }

    /// Replace a course's completion rules (its instructor and admins). Learners already
    /// completed stay completed; active ones whose lessons are all done are judged against the
    /// new rules at once (relaxed rules complete them).
    pub async fn set_completion_rules(
        &self,
        ctx: CallContext,
        req: SetCompletionRulesRequest,
    ) -> Result<CompletionRules, ErrorBody> {
        let me = self.caller(&ctx).await?;
        self.authored_course(&ctx, &me, req.course_id, "set its completion rules").await?;
        let rules = domain::parse_rules(req.rules)?;
        let now = domain::to_micros(OffsetDateTime::now_utc());
        let mut tx = self.pool.begin().await.map_err(db)?;
        store::replace_rules(&mut tx, req.course_id, &rules, me.sub, now).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(course_id = %req.course_id, user_id = %me.sub, rules = rules.len(), "completion rules set");
        // After the commit, so each decision below (and every later one) reads the new rules.
        if let Err(err) = self.complete_waiting(req.course_id, &me, &ctx).await {
            // The rules stand; these learners complete with their next grade or progress report.
            tracing::warn!(course_id = %req.course_id, error = %err.message, "re-judging waiting learners failed");
        }
        Ok(CompletionRules { course_id: req.course_id, rules, updated_at: Some(now) })
    }

    /// Judge the course's active enrolments whose lessons are all done against its rules, one
    /// transaction (and row lock) each.
    async fn complete_waiting(&self, course: Uuid, me: &AccessClaims, ctx: &CallContext) -> Result<(), ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let waiting = store::waiting_on_rules(&mut conn, course).await.map_err(db)?;
        drop(conn);
        let mut completed = 0_usize;
        for id in &waiting {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let Some(row) = store::enrollment_for_update(&mut tx, *id).await.map_err(db)? else { continue };
            let now = domain::to_micros(OffsetDateTime::now_utc());
            let done = count(row.required_done);
            if self.complete_if_done(&mut tx, &row, done, user_actor(me), Some(ctx), now).await? {
                completed += 1;
            }
            tx.commit().await.map_err(db)?;
        }
        if completed > 0 {
            self.outbox.wake();
        }
        if !waiting.is_empty() {
            tracing::info!(course_id = %course, waiting = waiting.len(), completed, "waiting learners judged against new rules");
        }
        Ok(())
    }

    /// A course's completion rules: its instructor, admins, and learners enrolled in it.
    pub async fn completion_rules(
        &self,
        ctx: CallContext,
        req: CompletionRulesRequest,
    ) -> Result<CompletionRules, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let enrolled = store::live_enrollment(&mut conn, me.sub, req.course_id).await.map_err(db)?.is_some();
        drop(conn);
        if !enrolled {
            self.authored_course(&ctx, &me, req.course_id, "see completion rules without enrolling").await?;
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let (rules, updated_at) = match store::rules(&mut conn, req.course_id, false).await.map_err(db)? {
            Some((rules, at)) => (rules, Some(at)),
            None => (Vec::new(), None),
        };
        Ok(CompletionRules { course_id: req.course_id, rules, updated_at })
    }

    /// Assessment's `grade.released`: keep the learner's latest grade on the item, then judge
    /// their enrolment in the course again (the grade may meet its last completion rule). One
    /// transaction; a redelivered event finds the enrolment completed and changes nothing.
    pub async fn grade_released(&self, event: EventEnvelope<GradeReleased>) -> Handled {
        let grade = store::ReleasedGrade {
            user: event.data.user_id,
            item: event.data.item_id,
            kind: event.data.item_kind,
            course: event.data.course_id,
            percent_bp: event.data.percent_bp,
            graded_at: domain::to_micros(event.occurred_at),
            event_id: event.id,
        };
        // `None`: an older grade than the stored one (nothing changed); else whether it completed.
        let outcome = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            if !store::upsert_grade(&mut tx, &grade).await.map_err(db)? {
                return Ok(None);
            }
            let mut completed = false;
            if let Some(row) = store::live_enrollment_for_update(&mut tx, grade.user, grade.course).await.map_err(db)? {
                let now = domain::to_micros(OffsetDateTime::now_utc());
                let done = count(row.required_done);
                completed = self.complete_if_done(&mut tx, &row, done, service_actor(), None, now).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok::<_, ErrorBody>(Some(completed))
        };
        match outcome.await {
            Ok(None) => {
                tracing::debug!(event_id = %event.id, user_id = %grade.user, item_id = %grade.item, "older than the stored grade; ignored");
                Handled::Done
            }
            Ok(Some(completed)) => {
                if completed {
                    self.outbox.wake();
                }
                tracing::debug!(event_id = %event.id, user_id = %grade.user, item_id = %grade.item, percent_bp = grade.percent_bp, completed, "grade recorded");
                Handled::Done
            }
            Err(e) => Handled::Retry(e.message),
        }
    }

    /// A course's learners with their progress: its instructor and admins only.
    pub async fn roster(&self, ctx: CallContext, req: RosterRequest) -> Result<RosterPage, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let limit = domain::page_limit(req.limit, 50)?;
        let after = req.cursor.as_deref().map(domain::decode_cursor).transpose()?;
        // Asked as the caller, so an instructor also finds a course that is not published (any more).
        let course = self.course(&ctx, req.course.clone(), true).await?;
        if course.instructor_id != me.sub && !me.has_role(Role::Admin) {
            return Err(ErrorBody::forbidden("only the course's instructor or an admin can see its roster"));
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut rows = store::roster(&mut conn, course.id, req.status, after, limit + 1).await.map_err(db)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| domain::encode_cursor(r.id)) } else { None };
        let items = rows.iter().map(EnrollmentRow::to_roster_entry).collect::<Result<_, _>>().map_err(db)?;
        Ok(RosterPage { course_id: course.id, items, next_cursor })
    }

    /// Internal (NATS permissions keep the gateway out): a page of the course's learners, for
    /// notifications' announcement fan-out (which checked the author itself).
    pub async fn learners(&self, _ctx: CallContext, req: LearnersRequest) -> Result<LearnersPage, ErrorBody> {
        if !(1..=5_000).contains(&req.limit) {
            return Err(ErrorBody::invalid_field("limit", "limit must be between 1 and 5000"));
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let user_ids =
            store::learners(&mut conn, req.course_id, req.after, req.enrolled_by, req.limit).await.map_err(db)?;
        let next = (user_ids.len() == req.limit as usize).then(|| user_ids.last().copied()).flatten();
        Ok(LearnersPage { user_ids, next })
    }

    /// Public: anyone holding a code can check the certificate behind it.
    pub async fn verify_certificate(
        &self,
        _ctx: CallContext,
        req: VerifyCertificateRequest,
    ) -> Result<Certificate, ErrorBody> {
        let not_found = || ErrorBody::not_found("no certificate with this code");
        let code = domain::normalize_code(&req.code).ok_or_else(not_found)?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        store::certificate(&mut conn, &code).await.map_err(db)?.ok_or_else(not_found)
    }

    /// For other services acting for a user: is the user enrolled, and is a lesson released?
    pub async fn check_access(&self, ctx: CallContext, req: AccessCheckRequest) -> Result<AccessReply, ErrorBody> {
        let me = self.caller(&ctx).await?;
        if me.sub != req.user_id && !me.has_role(Role::Admin) {
            return Err(ErrorBody::forbidden("only the user themself or an admin can check this access"));
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let Some(row) = store::live_enrollment(&mut conn, req.user_id, req.course_id).await.map_err(db)? else {
            return Ok(AccessReply {
                enrolled: false,
                enrollment_id: None,
                lesson_available: None,
                available_at: None,
            });
        };
        let (lesson_available, available_at) = match req.lesson_id {
            None => (None, None),
            Some(lesson) => {
                let outline = self.pinned_outline(&mut conn, &row).await?;
                match outline.find_lesson(lesson) {
                    None => (Some(false), None),
                    Some((module, _)) => {
                        let opens = domain::available_at(row.enrolled_at, module.release_after_days);
                        (Some(OffsetDateTime::now_utc() >= opens), Some(opens))
                    }
                }
            }
        };
        Ok(AccessReply { enrolled: true, enrollment_id: Some(row.id), lesson_available, available_at })
    }
}
