//! One method per endpoint. Authorisation is checked here: instructors and admins create; only
//! the owning instructor or an admin edits; everyone else sees published snapshots only.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coursebus_bus::CallContext;
use coursebus_bus::auth::JwtVerifier;
use coursebus_bus::cache::SnapshotCache;
use coursebus_contracts::catalog::{
    Course, CourseArchived, CourseChanged, CoursePage, CoursePublished, CourseStatus, CourseSummary,
    CreateCourseRequest, GetCourseRequest, ListCoursesRequest, PutOutlineRequest, TransitionRequest,
    UpdateCourseRequest, course_cache_key, course_cache_keys,
};
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::validate::{Role, ValidationError, page_limit};
use coursebus_contracts::{Actor, ErrorBody, Event, headers};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain;
use crate::store::{CourseDoc, IdempotentAnswer, ListFilter, Pending, Store, StoreError, pending};

/// How long a cached published snapshot may be served without an event confirming it.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
pub const CACHE_ENTRIES: usize = 20_000;

#[derive(Debug)]
pub struct Catalog {
    pub store: Store,
    pub verifier: Arc<JwtVerifier>,
    /// Published snapshots, dropped when an event about the course arrives (every replica).
    pub cache: Arc<SnapshotCache<Course>>,
    /// Wakes the outbox relay after a commit.
    pub relay: Arc<Notify>,
    /// Publishes the change hints (`COURSE_CHANGED_HINT`).
    pub client: async_nats::Client,
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_RETENTION: time::Duration = time::Duration::hours(24);

/// A creating request's `Idempotency-Key`, scoped to its caller, with the request's fingerprint.
struct IdempotencyKey {
    key: String,
    fingerprint: String,
}

impl IdempotencyKey {
    fn new(caller: Uuid, key: &str, request: &impl serde::Serialize) -> Result<Self, ErrorBody> {
        if key.is_empty() || key.len() > 255 {
            return Err(
                ValidationError::new(headers::IDEMPOTENCY_KEY, "Idempotency-Key must be 1-255 characters").into()
            );
        }
        let bytes = serde_json::to_vec(request).map_err(|_| ErrorBody::internal())?;
        let fingerprint = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { key: format!("course.create:{caller}:{key}"), fingerprint })
    }

    fn answer(&self, course: &Course) -> Result<IdempotentAnswer, ErrorBody> {
        let response = serde_json::to_string(course).map_err(|_| ErrorBody::internal())?;
        Ok(IdempotentAnswer { key: self.key.clone(), fingerprint: self.fingerprint.clone(), response })
    }
}

fn store_err(err: StoreError) -> ErrorBody {
    match err {
        StoreError::Duplicate => {
            ErrorBody::conflict("this slug is taken").with_details(serde_json::json!({ "field": "slug" }))
        }
        other => {
            tracing::error!(error = %other, "catalog store error");
            ErrorBody::internal()
        }
    }
}

fn stale() -> ErrorBody {
    ErrorBody::conflict("the course changed since you loaded it; reload and retry")
        .with_details(serde_json::json!({ "field": "version" }))
}

fn may_edit(caller: &AccessClaims, course: &Course) -> bool {
    caller.has_role(Role::Admin) || (caller.sub == course.instructor_id && caller.has_role(Role::Instructor))
}

fn summary(course: &Course) -> CourseSummary {
    CourseSummary {
        id: course.id,
        slug: course.slug.clone(),
        title: course.title.clone(),
        summary: course.summary.clone(),
        language: course.language.clone(),
        level: course.level,
        tags: course.tags.clone(),
        price: course.price.clone(),
        instructor_id: course.instructor_id,
        status: course.status,
        lesson_count: course.lesson_count(),
    }
}

impl Catalog {
    async fn caller(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        self.verifier.verify_ctx(ctx).await
    }

    /// The caller if a token was sent (anonymous reads are allowed); a bad token is still a 401.
    async fn maybe_caller(&self, ctx: &CallContext) -> Result<Option<AccessClaims>, ErrorBody> {
        match ctx.bearer() {
            Some(_) => self.caller(ctx).await.map(Some),
            None => Ok(None),
        }
    }

    async fn check_prerequisites(&self, ids: &[Uuid]) -> Result<(), ErrorBody> {
        if ids.is_empty() {
            return Ok(());
        }
        let found = self.store.existing(ids).await.map_err(store_err)?;
        if let Some(missing) = ids.iter().find(|id| !found.contains(&id.to_string())) {
            return Err(ValidationError::new("prerequisites", format!("no course {missing}")).into());
        }
        Ok(())
    }

    pub async fn create(&self, ctx: CallContext, req: CreateCourseRequest) -> Result<Course, ErrorBody> {
        let me = self.caller(&ctx).await?;
        if !me.has_role(Role::Instructor) && !me.has_role(Role::Admin) {
            return Err(ErrorBody::forbidden("only instructors create courses"));
        }
        let key = match &ctx.idempotency_key {
            Some(key) => Some(IdempotencyKey::new(me.sub, key, &req)?),
            None => None,
        };
        if let Some(key) = &key
            && let Some(course) = self.replay(key).await?
        {
            return Ok(course);
        }
        let course = domain::new_course(&req, me.sub, OffsetDateTime::now_utc())?;
        self.check_prerequisites(&course.prerequisites).await?;
        let event = CourseChanged { course: course.clone() }.envelope(Actor::User { id: me.sub });
        let doc = CourseDoc::new(course.clone());
        let answer = match &key {
            Some(key) => Some(key.answer(&course)?),
            None => None,
        };
        let events = vec![pending(&event, &ctx).map_err(store_err)?];
        match self.store.insert(&doc, events, answer.as_ref()).await {
            Ok(()) => {}
            // A concurrent retry with the same key won the race: answer what it answered.
            Err(StoreError::Duplicate) if key.is_some() => {
                if let Some(key) = &key
                    && let Some(course) = self.replay(key).await?
                {
                    return Ok(course);
                }
                return Err(store_err(StoreError::Duplicate));
            }
            Err(err) => return Err(store_err(err)),
        }
        self.relay.notify_one();
        tracing::info!(course_id = %course.id, slug = %course.slug, "course created");
        Ok(course)
    }

    /// The course an earlier request with this key created (within [`IDEMPOTENCY_RETENTION`]).
    async fn replay(&self, key: &IdempotencyKey) -> Result<Option<Course>, ErrorBody> {
        let not_before = (OffsetDateTime::now_utc() - IDEMPOTENCY_RETENTION).unix_timestamp();
        match self.store.idempotent_answer(&key.key, not_before).await.map_err(store_err)? {
            None => Ok(None),
            Some((fingerprint, _)) if fingerprint != key.fingerprint => {
                Err(ErrorBody::conflict("this Idempotency-Key was already used with a different request")
                    .with_details(serde_json::json!({ "field": headers::IDEMPOTENCY_KEY })))
            }
            Some((_, response)) => serde_json::from_str(&response).map(Some).map_err(|err| {
                tracing::error!(error = %err, "stored idempotent answer does not decode");
                ErrorBody::internal()
            }),
        }
    }

    /// Load a course for an edit by the caller at `version`.
    async fn for_edit(
        &self,
        ctx: &CallContext,
        id: Uuid,
        version: u64,
    ) -> Result<(AccessClaims, CourseDoc), ErrorBody> {
        let me = self.caller(ctx).await?;
        let doc = self.store.get(&id.to_string()).await.map_err(store_err)?;
        let Some(doc) = doc else { return Err(ErrorBody::not_found("no such course")) };
        if !may_edit(&me, &doc.working) {
            // Courses nobody else may see stay invisible.
            return Err(match doc.published {
                Some(_) => ErrorBody::forbidden("only the course's instructor or an admin can change it"),
                None => ErrorBody::not_found("no such course"),
            });
        }
        if doc.working.version != version {
            return Err(stale());
        }
        Ok((me, doc))
    }

    /// Write the new state with its events; a concurrent writer makes it a conflict.
    async fn save(&self, doc: CourseDoc, expected: u64, events: Vec<Pending>) -> Result<Course, ErrorBody> {
        if !self.store.replace(&doc, expected, events).await.map_err(store_err)? {
            return Err(stale());
        }
        self.relay.notify_one();
        self.cache.invalidate(doc.working.id).await;
        // Before the reply, on the same connection: every other cache hears of it first.
        if let Err(err) = self
            .client
            .publish(coursebus_contracts::subjects::catalog::COURSE_CHANGED_HINT, doc.working.id.to_string().into())
            .await
        {
            tracing::warn!(error = %err, course_id = %doc.working.id, "course change hint not sent");
        }
        Ok(doc.working)
    }

    fn changed(course: &mut Course, me: &AccessClaims, ctx: &CallContext) -> Result<Vec<Pending>, ErrorBody> {
        course.version += 1;
        course.updated_at = OffsetDateTime::now_utc();
        let event = CourseChanged { course: course.clone() }.envelope(Actor::User { id: me.sub });
        Ok(vec![pending(&event, ctx).map_err(store_err)?])
    }

    pub async fn update(&self, ctx: CallContext, req: UpdateCourseRequest) -> Result<Course, ErrorBody> {
        let (me, mut doc) = self.for_edit(&ctx, req.id, req.version).await?;
        domain::apply_update(&mut doc.working, &req)?;
        if req.prerequisites.is_some() {
            self.check_prerequisites(&doc.working.prerequisites).await?;
        }
        if let Some(published) = &mut doc.published {
            // The address is shared by both copies; content waits for the next publish.
            published.slug = doc.working.slug.clone();
        }
        let events = Self::changed(&mut doc.working, &me, &ctx)?;
        self.save(doc, req.version, events).await
    }

    pub async fn put_outline(&self, ctx: CallContext, req: PutOutlineRequest) -> Result<Course, ErrorBody> {
        let (me, mut doc) = self.for_edit(&ctx, req.course_id, req.version).await?;
        doc.working.modules = domain::outline(&doc.working.modules, &req.modules)?;
        let events = Self::changed(&mut doc.working, &me, &ctx)?;
        self.save(doc, req.version, events).await
    }

    pub async fn publish(&self, ctx: CallContext, req: TransitionRequest) -> Result<Course, ErrorBody> {
        let (me, mut doc) = self.for_edit(&ctx, req.course_id, req.version).await?;
        domain::check_publishable(&doc.working)?;
        let now = OffsetDateTime::now_utc();
        let w = &mut doc.working;
        w.status = CourseStatus::Published;
        w.published_version = Some(w.version);
        w.published_at = Some(now);
        let snapshot = w.clone();
        w.version += 1;
        w.updated_at = now;
        doc.published = Some(snapshot.clone());
        let event = CoursePublished { course: snapshot }.envelope(Actor::User { id: me.sub });
        let events = vec![pending(&event, &ctx).map_err(store_err)?];
        let course = self.save(doc, req.version, events).await?;
        tracing::info!(course_id = %course.id, version = ?course.published_version, "course published");
        Ok(course)
    }

    pub async fn archive(&self, ctx: CallContext, req: TransitionRequest) -> Result<Course, ErrorBody> {
        let (me, mut doc) = self.for_edit(&ctx, req.course_id, req.version).await?;
        if doc.working.status == CourseStatus::Archived {
            return Err(ErrorBody::conflict("the course is already archived"));
        }
        doc.working.status = CourseStatus::Archived;
        doc.working.version += 1;
        doc.working.updated_at = OffsetDateTime::now_utc();
        if let Some(published) = &mut doc.published {
            published.status = CourseStatus::Archived;
        }
        let event = CourseArchived { course_id: doc.working.id, slug: doc.working.slug.clone() }
            .envelope(Actor::User { id: me.sub });
        let events = vec![pending(&event, &ctx).map_err(store_err)?];
        self.save(doc, req.version, events).await
    }

    pub async fn get(&self, ctx: CallContext, req: GetCourseRequest) -> Result<Course, ErrorBody> {
        let key = course_cache_key(&req.id_or_slug);
        if !req.draft
            && let Some(course) = self.cache.get(&key).await
        {
            return Ok((*course).clone());
        }
        let me = self.maybe_caller(&ctx).await?;
        let generation = self.cache.generation();
        let Some(doc) = self.store.get(&req.id_or_slug).await.map_err(store_err)? else {
            return Err(ErrorBody::not_found("no such course"));
        };
        let editor = me.as_ref().is_some_and(|me| may_edit(me, &doc.working));
        if req.draft {
            return if editor { Ok(doc.working) } else { Err(ErrorBody::not_found("no such course")) };
        }
        match doc.published {
            Some(published) if published.status == CourseStatus::Published => {
                let published = Arc::new(published);
                self.cache.put(&course_cache_keys(&published), published.id, published.clone(), generation).await;
                Ok((*published).clone())
            }
            _ if editor => Ok(doc.working),
            _ => Err(ErrorBody::not_found("no such course")),
        }
    }

    pub async fn list(&self, ctx: CallContext, req: ListCoursesRequest) -> Result<CoursePage, ErrorBody> {
        let limit = page_limit(req.limit, 20)?;
        let after = match &req.cursor {
            Some(c) => Some(decode_cursor(c)?),
            None => None,
        };
        let instructor = if req.mine == Some(true) { Some(self.caller(&ctx).await?.sub) } else { None };
        let tag = match &req.tag {
            Some(t) => domain::tags(std::slice::from_ref(t))?.pop(),
            None => None,
        };
        let language = req.language.as_deref().map(domain::language).transpose()?;
        let filter =
            ListFilter { tag, level: req.level, language, price: req.price, instructor, after, limit: limit + 1 };
        let mut docs = self.store.list(&filter).await.map_err(store_err)?;
        let more = docs.len() > limit as usize;
        docs.truncate(limit as usize);
        let items: Vec<CourseSummary> = docs
            .iter()
            .map(|d| match (&d.published, instructor) {
                (Some(p), None) => summary(p),
                _ => summary(&d.working),
            })
            .collect();
        let next_cursor = if more { items.last().map(|c| URL_SAFE_NO_PAD.encode(c.id.to_string())) } else { None };
        Ok(CoursePage { items, next_cursor })
    }
}

fn decode_cursor(cursor: &str) -> Result<String, ErrorBody> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| Uuid::parse_str(s).is_ok())
        .ok_or_else(|| ValidationError::new("cursor", "cursor is not valid").into())
}
