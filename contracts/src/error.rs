//! The one error vocabulary of the platform: every reply that fails carries an [`ErrorBody`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, machine-readable error codes. Clients switch on these; [`ErrorCode::http_status`] is
/// their HTTP status (the gateway answers with it); workers never speak HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a field breaks a rule; `details.field` names the field.
    InvalidInput,
    /// No valid credentials were presented (missing, expired, tampered or revoked token, wrong password).
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// The resource does not exist (or the caller may not know that it does).
    NotFound,
    /// The request conflicts with the current state (duplicate, stale version, last admin).
    Conflict,
    /// The resource must be paid for first.
    PaymentRequired,
    /// Too many requests from this client; retry later.
    RateLimited,
    /// The request body is larger than the platform accepts.
    PayloadTooLarge,
    /// A service needed to answer is not reachable or did not answer in time; retry later.
    Unavailable,
    /// A bug or an unexpected failure on our side; details are in the server logs, never in the reply.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::InvalidInput,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PaymentRequired,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The HTTP status of the code: the one mapping of codes to a transport (the gateway answers
    /// with it; the bus carries it as the micro-service error code).
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PaymentRequired => 402,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The code whose [`ErrorCode::http_status`] is `status` (`internal` for any other).
    pub fn from_http_status(status: u16) -> ErrorCode {
        ErrorCode::ALL.into_iter().find(|c| c.http_status() == status).unwrap_or(ErrorCode::Internal)
    }

    /// The wire spelling of the code (`invalid_input`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PaymentRequired => "payment_required",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error reply, on the bus and over HTTP:
/// `{"code": "invalid_input", "message": "...", "details": {"field": "email"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: None }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `invalid_input` naming the offending field in `details.field`.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message).with_details(serde_json::json!({ "field": field }))
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// An internal error. The message reaches the client, so it must never carry internals:
    /// log the cause where it happened and pass a generic message here.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_status() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_http_status(code.http_status()), code);
        }
        assert_eq!(ErrorCode::from_http_status(418), ErrorCode::Internal);
    }

    #[test]
    fn codes_serialise_to_their_wire_spelling() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn invalid_field_names_the_field() {
        let body = ErrorBody::invalid_field("email", "not an email address");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["code"], "invalid_input");
        assert_eq!(json["details"]["field"], "email");
    }
}
