//! Error replies as HTTP responses (the code → status mapping is `ErrorCode::http_status`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coursebus_contracts::{ErrorBody, ErrorCode};

/// An error reply on its way to an HTTP client.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        Self(body)
    }
}

/// The HTTP status of `code` (the mapping itself is `ErrorCode::http_status`, in contracts).
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code;
        let mut response = (status_of(code), Json(self.0)).into_response();
        let headers = response.headers_mut();
        match code {
            ErrorCode::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ErrorCode::Unavailable | ErrorCode::RateLimited => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// A JSON error response with an explicit `Retry-After` (rate limiting).
pub fn rate_limited(wait_secs: u64) -> Response {
    let mut response =
        ApiError(ErrorBody::new(ErrorCode::RateLimited, "too many requests; retry later")).into_response();
    if let Ok(value) = HeaderValue::from_str(&wait_secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_an_error_status() {
        for code in ErrorCode::ALL {
            let status = status_of(code);
            assert!(status.is_client_error() || status.is_server_error(), "{code}");
        }
        assert_eq!(status_of(ErrorCode::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn unauthenticated_asks_for_a_bearer_token_and_unavailable_says_when_to_retry() {
        let r = ApiError(ErrorBody::unauthenticated("x")).into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let r = ApiError(ErrorBody::unavailable("x")).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(rate_limited(7).headers()[header::RETRY_AFTER], "7");
    }
}
