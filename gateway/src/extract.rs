//! Extractors: the call context of a request, JSON bodies with our error shape, and the verified
//! caller.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use coursebus_bus::CallContext;
use coursebus_contracts::identity::AccessClaims;
use coursebus_contracts::{ErrorBody, ErrorCode, headers};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// The request id assigned by the `observe` middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The [`CallContext`] forwarded on the bus: request id, trace, bearer token, idempotency key.
#[derive(Debug, Clone)]
pub struct Ctx(pub CallContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let idempotency_key = header(headers::IDEMPOTENCY_KEY);
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(ErrorBody::invalid_field(
                "Idempotency-Key",
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
            .into());
        }
        Ok(Ctx(CallContext {
            request_id,
            traceparent: header(headers::TRACEPARENT),
            authorization: header(headers::AUTHORIZATION),
            idempotency_key,
        }))
    }
}

/// The caller, verified at the gateway (workers verify again).
#[derive(Debug, Clone)]
pub struct Caller(pub AccessClaims);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ctx(ctx) = Ctx::from_request_parts(parts, state).await?;
        Ok(Caller(state.verifier.verify_ctx(&ctx).await?))
    }
}

/// `axum::Json`, with rejections in the platform's error shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError(json_rejection(rejection))),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ErrorBody {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ErrorBody::new(ErrorCode::PayloadTooLarge, "request body is too large");
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ErrorBody::invalid_input("expected a JSON body with Content-Type: application/json")
        }
        JsonRejection::JsonSyntaxError(_) => ErrorBody::invalid_input("request body is not valid JSON"),
        JsonRejection::JsonDataError(err) => {
            let text = err.body_text();
            let detail = text.split_once(": ").map(|(_, d)| d).unwrap_or(&text).to_owned();
            match missing_or_bad_field(&detail) {
                Some(field) => ErrorBody::invalid_field(&field, detail),
                None => ErrorBody::invalid_input(detail),
            }
        }
        other => ErrorBody::invalid_input(other.body_text()),
    }
}

/// The field a serde error is about: "missing field `email`" or "email: invalid type ...".
fn missing_or_bad_field(detail: &str) -> Option<String> {
    if let Some(rest) = detail.split("missing field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    let (path, _) = detail.split_once(": ")?;
    (!path.is_empty() && path.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c))).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_their_field() {
        assert_eq!(missing_or_bad_field("missing field `email` at line 1 column 2").as_deref(), Some("email"));
        assert_eq!(
            missing_or_bad_field("password: invalid type: integer `1`, expected a string").as_deref(),
            Some("password")
        );
        assert_eq!(missing_or_bad_field("trailing characters at line 1"), None);
    }
}

/// `axum::extract::Path`, with rejections in the platform's error shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError(ErrorBody::invalid_input(rejection.body_text()))),
        }
    }
}

/// `axum::extract::Query`, with rejections in the platform's error shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError(ErrorBody::invalid_input(rejection.body_text()))),
        }
    }
}
