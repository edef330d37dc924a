//! Operational endpoints: health, readiness, metrics, JWKS, OpenAPI.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coursebus_contracts::identity::{GetJwks, Jwks};
use coursebus_contracts::rpc::Empty;
use coursebus_contracts::subjects::{identity, srv};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Ctx;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: NATS is connected and the identity service answers a ping.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready"), (status = 503, description = "A dependency is missing")))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    let nats_ok = s.bus.is_connected();
    let identity_ok = nats_ok
        && s.bus
            .raw_request(
                &srv::ping(identity::SERVICE),
                Default::default(),
                Vec::new(),
                Duration::from_millis(500),
                identity::SERVICE,
            )
            .await
            .is_ok();
    let check = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": check(nats_ok && identity_ok),
        "checks": { "nats": check(nats_ok), "identity": check(identity_ok) },
    });
    let status = if nats_ok && identity_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Prometheus text exposition: request counts and latency histograms by route and status.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let mut response = s.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// The public keys access tokens are signed with (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JSON Web Key Set", body = Jwks)))]
pub async fn jwks(State(s): State<AppState>, Ctx(ctx): Ctx) -> Result<Response, ApiError> {
    let jwks = s.bus.request::<GetJwks>(&ctx, &Empty {}).await?;
    let mut response = Json(jwks).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(response)
}
