//! Header names carried on bus messages. `Nats-` is reserved to NATS itself.

/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// The request id the gateway assigned (or accepted from the client).
pub const REQUEST_ID: &str = "cb-request-id";
/// The end user's bearer token, forwarded verbatim so the owning worker verifies it itself.
pub const AUTHORIZATION: &str = "Authorization";
/// The client's idempotency key for POSTs that create something.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// An error reply's full [`crate::ErrorBody`] as compact JSON (micro-service error replies have an
/// empty body; `Nats-Service-Error` carries only the message).
pub const ERROR: &str = "cb-error";
/// The HTTP header the gateway reads and returns the request id in.
pub const HTTP_REQUEST_ID: &str = "x-request-id";
