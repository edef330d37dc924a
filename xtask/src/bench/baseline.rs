//! What the platform is measured against, each run as its own process from the release xtask
//! binary (`xtask __bench-serve <kind> ...`):
//! - `monolith`: axum + sqlx doing the platform's read and write directly against PostgreSQL
//!   (the same JWT check — `bus::auth::JwtVerifier`, which remembers verified tokens —, the same
//!   pool settings — `bus::worker::pool_options` —, the same course lookup, the same enrolment
//!   row + outbox row in one transaction);
//! - `hello`: axum hello-world, the HTTP ceiling;
//! - `echo`: an async-nats micro service with an empty handler, the request-reply ceiling.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coursebus_bus::auth::{JwksSource, JwtVerifier};
use coursebus_contracts::ErrorBody;
use coursebus_contracts::identity::Jwks;
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
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

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS courses (
    id UUID PRIMARY KEY,
    status TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    doc JSONB NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollments (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL,
    course_id UUID NOT NULL REFERENCES courses (id),
    enrolled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, course_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    payload BYTEA NOT NULL,
    published_at TIMESTAMPTZ
);
"#;

/// The monolith records the same event the enrollment worker does.
const ENROLLED_SUBJECT: &str = coursebus_contracts::subjects::enrollment::EVT_ENROLMENT_CREATED;

struct Monolith {
    pool: PgPool,
    verifier: Arc<JwtVerifier>,
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
    let keys: Jwks = reqwest::get(jwks).await?.json().await.context("reading the JWKS")?;
    let state = Arc::new(Monolith { pool, verifier: JwtVerifier::new(StaticJwks(keys)) });
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

/// Load the courses the bench created on the platform (their published JSON).
async fn load(State(m): State<Arc<Monolith>>, Json(courses): Json<Vec<Value>>) -> Response {
    for course in courses {
        let Some(id) = course["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
            return error(StatusCode::BAD_REQUEST, "invalid_input");
        };
        let price = course["price"]["amount_minor"].as_i64().unwrap_or(0);
        let done = sqlx::query("INSERT INTO courses (id, status, price_minor, doc) VALUES ($1, 'published', $2, $3) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(price)
            .bind(&course)
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
    match enrol(&m.pool, claims.sub, course).await {
        Ok(Some((status, enrolment))) => (status, Json(enrolment)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found"),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

async fn enrol(pool: &PgPool, user: Uuid, course: Uuid) -> Result<Option<(StatusCode, Value)>, sqlx::Error> {
    let found: Option<(i64,)> =
        sqlx::query_as("SELECT price_minor FROM courses WHERE id = $1 AND status = 'published'")
            .bind(course)
            .fetch_optional(pool)
            .await?;
    if found.is_none() {
        return Ok(None);
    }
    let mut tx = pool.begin().await?;
    let id = Uuid::now_v7();
    let inserted: Option<(Uuid,)> = sqlx::query_as(
        "INSERT INTO enrollments (id, user_id, course_id) VALUES ($1, $2, $3) ON CONFLICT (user_id, course_id) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(user)
    .bind(course)
    .fetch_optional(&mut *tx)
    .await?;
    let enrolment = json!({"id": id, "user_id": user, "course_id": course, "status": "active"});
    let status = if inserted.is_some() {
        let event = json!({"id": Uuid::now_v7(), "type": "enrollment.enrolment.created", "data": &enrolment});
        sqlx::query("INSERT INTO outbox (id, subject, payload) VALUES ($1, $2, $3)")
            .bind(Uuid::now_v7())
            .bind(ENROLLED_SUBJECT)
            .bind(serde_json::to_vec(&event).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    tx.commit().await?;
    Ok(Some((status, enrolment)))
}
