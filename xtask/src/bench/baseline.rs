//! What the platform is measured against, each run as its own process from the release xtask
//! binary (`xtask __bench-serve <kind> ...`):
//! - `monolith`: axum + sqlx doing the platform's read and write directly against PostgreSQL
//!   (the same JWT check — `bus::auth::JwtVerifier`, which remembers verified tokens —, the same
//!   pool settings — `bus::worker::pool_options` —, and the enrollment worker's own write:
//!   its migrations, its outbox table, `store::create_enrollment` in one transaction; only the
//!   course comes from the monolith's PostgreSQL `courses` table instead of the catalog);
//! - `hello`: axum hello-world, the HTTP ceiling;
//! - `echo`: an async-nats micro service with an empty handler, the request-reply ceiling.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coursebus_bus::BusError;
use coursebus_bus::auth::{JwksSource, JwtVerifier};
use coursebus_contracts::catalog::Course;
use coursebus_contracts::enrollment::{Enrollment, EnrollmentCreated};
use coursebus_contracts::identity::Jwks;
use coursebus_contracts::{Actor, ErrorBody, Event};
use coursebus_worker_enrollment::domain;
use coursebus_worker_enrollment::store::{self, EnrollmentRow, NewEnrollment, PinnedCourse};
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// `xtask __bench-serve <kind> <args>`.
pub fn serve(args: &[String]) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args {
        [kind, listen, db, jwks] if kind == "monolith" => runtime.block_on(monolith(listen.parse()?, db, jwks)),
        [kind, listen] if kind == "hello" => runtime.block_on(hello(listen.parse()?)),
        [kind, nats] if kind == "echo" => runtime.block_on(echo(nats)),
        _ => bail!("usage: __bench-serve monolith <addr> <db-url> <jwks-url> | hello <addr> | echo <nats-url>"),
    }
}

async fn hello(listen: SocketAddr) -> Result<()> {
    let app = axum::Router::new().route("/", get(|| async { "Hello, World!" }));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn echo(nats: &str) -> Result<()> {
    use async_nats::service::ServiceExt;
    let client = async_nats::connect(nats).await?;
    let service = client
        .service_builder()
        .description("request-reply ceiling")
        .start(coursebus_contracts::subjects::bench::ECHO_SERVICE, "0.0.0")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut endpoint =
        service.endpoint(coursebus_contracts::subjects::bench::ECHO).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    while let Some(request) = endpoint.next().await {
        let _ = request.respond(Ok(bytes::Bytes::new())).await;
    }
    Ok(())
}

/// The monolith's own catalog: the published courses, with what an enrolment needs in columns.
/// Its enrolment tables are enrollment's own (its migrations and the outbox table).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS courses (
    id UUID PRIMARY KEY,
    status TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    version BIGINT NOT NULL,
    required_total INTEGER NOT NULL,
    title TEXT NOT NULL,
    slug TEXT NOT NULL,
    doc JSONB NOT NULL
);
"#;

struct Monolith {
    pool: PgPool,
    verifier: Arc<JwtVerifier>,
    /// The (course, version) pairs already pinned, as each enrollment replica remembers them.
    pinned: Mutex<HashSet<(Uuid, u64)>>,
}

/// The identity JWKS, fetched once over HTTP at start.
struct StaticJwks(Jwks);

impl JwksSource for StaticJwks {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Jwks, ErrorBody>> + Send + '_>> {
        let keys = self.0.clone();
        Box::pin(async move { Ok(keys) })
    }
}

async fn monolith(listen: SocketAddr, db: &str, jwks: &str) -> Result<()> {
    let pool = coursebus_bus::worker::pool_options(super::MONOLITH_DB_CONNECTIONS).connect(db).await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;
    coursebus_worker_enrollment::MIGRATOR.run(&pool).await?;
    coursebus_bus::outbox::install(&pool).await?;
    let keys: Jwks = reqwest::get(jwks).await?.json().await.context("reading the JWKS")?;
    let state = Arc::new(Monolith { pool, verifier: JwtVerifier::new(StaticJwks(keys)), pinned: Mutex::default() });
    let app = axum::Router::new()
        .route("/v1/courses/{id}", get(read))
        .route("/v1/enrollments", post(write))
        .route("/load", post(load))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({"code": code, "message": code}))).into_response()
}

/// Load the courses the bench created on the platform (their published snapshots).
async fn load(State(m): State<Arc<Monolith>>, Json(courses): Json<Vec<Value>>) -> Response {
    for doc in courses {
        let Ok(course) = serde_json::from_value::<Course>(doc.clone()) else {
            return error(StatusCode::BAD_REQUEST, "invalid_input");
        };
        let required = coursebus_worker_enrollment::domain::pin(&course).required_total();
        let done = sqlx::query(
            "INSERT INTO courses (id, status, price_minor, version, required_total, title, slug, doc) \
             VALUES ($1, 'published', $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(course.id)
        .bind(course.price.amount_minor)
        .bind(i64::try_from(course.published_version.unwrap_or(course.version)).unwrap_or(i64::MAX))
        .bind(i32::try_from(required).unwrap_or(i32::MAX))
        .bind(&course.title)
        .bind(&course.slug)
        .bind(&doc)
        .execute(&m.pool)
        .await;
        if done.is_err() {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn read(State(m): State<Arc<Monolith>>, Path(id): Path<Uuid>) -> Response {
    let row: Result<Option<(Value,)>, _> =
        sqlx::query_as("SELECT doc FROM courses WHERE id = $1 AND status = 'published'")
            .bind(id)
            .fetch_optional(&m.pool)
            .await;
    match row {
        Ok(Some((doc,))) => Json(doc).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found"),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

async fn write(State(m): State<Arc<Monolith>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else { return error(StatusCode::UNAUTHORIZED, "unauthenticated") };
    let Ok(claims) = m.verifier.verify(token).await else {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated");
    };
    let Some(course) = body["course_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
        return error(StatusCode::BAD_REQUEST, "invalid_input");
    };
    match enrol(&m, claims.sub, course).await {
        Ok(Enrolled::Created(enrolment)) => (StatusCode::CREATED, Json(enrolment)).into_response(),
        Ok(Enrolled::Already(row)) => match row.to_enrollment() {
            Ok(enrolment) => (StatusCode::OK, Json(enrolment)).into_response(),
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        },
        Ok(Enrolled::NoCourse) => error(StatusCode::NOT_FOUND, "not_found"),
        Ok(Enrolled::NotFree) => error(StatusCode::PAYMENT_REQUIRED, "payment_required"),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

enum Enrolled {
    Created(Enrollment),
    /// The learner's live enrolment, made earlier.
    Already(EnrollmentRow),
    NoCourse,
    NotFree,
}

#[derive(sqlx::FromRow)]
struct CourseRow {
    price_minor: i64,
    version: i64,
    required_total: i32,
    title: String,
    slug: String,
}

/// The enrollment worker's write for a new enrolment (`store::create_enrollment`: the pinned
/// version the first time, the row, the `enrolment.created` event in the outbox, one
/// transaction), with the course read from PostgreSQL instead of the catalog.
async fn enrol(m: &Monolith, user: Uuid, course_id: Uuid) -> Result<Enrolled, BusError> {
    let course: Option<CourseRow> = sqlx::query_as(
        "SELECT price_minor, version, required_total, title, slug FROM courses WHERE id = $1 AND status = 'published'",
    )
    .bind(course_id)
    .fetch_optional(&m.pool)
    .await?;
    let Some(course) = course else { return Ok(Enrolled::NoCourse) };
    if course.price_minor != 0 {
        return Ok(Enrolled::NotFree);
    }
    let version = u64::try_from(course.version).unwrap_or(0);
    let known = m.pinned.lock().is_ok_and(|p| p.contains(&(course_id, version)));
    let snapshot = if known {
        None
    } else {
        let (doc,): (Value,) =
            sqlx::query_as("SELECT doc FROM courses WHERE id = $1").bind(course_id).fetch_one(&m.pool).await?;
        let snapshot: Course = serde_json::from_value(doc)?;
        let outline = domain::pin(&snapshot);
        Some((snapshot, outline))
    };
    let pin = snapshot.as_ref().map(|(c, outline)| PinnedCourse {
        course_id,
        version,
        instructor_id: c.instructor_id,
        title: &c.title,
        slug: &c.slug,
        outline,
    });
    let now = domain::to_micros(OffsetDateTime::now_utc());
    let new = NewEnrollment {
        id: Uuid::now_v7(),
        user,
        course: course_id,
        version,
        required_total: u32::try_from(course.required_total).unwrap_or(0),
        enrolled_at: now,
        order_id: None,
    };
    let event = EnrollmentCreated {
        enrollment_id: new.id,
        user_id: user,
        course_id,
        course_version: version,
        enrolled_at: now,
        order_id: None,
    }
    .envelope(Actor::User { id: user });
    let mut tx = m.pool.begin().await?;
    if !store::create_enrollment(&mut tx, pin.as_ref(), &new, &event, None).await? {
        let existing = store::live_enrollment(&mut tx, user, course_id).await?;
        tx.commit().await?;
        return Ok(existing.map_or(Enrolled::NoCourse, Enrolled::Already));
    }
    tx.commit().await?;
    if let Ok(mut p) = m.pinned.lock() {
        p.insert((course_id, version));
    }
    let row = EnrollmentRow {
        id: new.id,
        user_id: user,
        course_id,
        course_version: course.version,
        status: "active".into(),
        required_total: course.required_total,
        required_done: 0,
        enrolled_at: now,
        completed_at: None,
        cancelled_at: None,
        last_activity_at: None,
        course_title: course.title,
        course_slug: course.slug,
        certificate_code: None,
    };
    Ok(Enrolled::Created(row.to_enrollment()?))
}
