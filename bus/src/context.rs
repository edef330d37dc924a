//! The context every bus message carries: trace, request id, the user's bearer token and the
//! client's idempotency key.

use async_nats::HeaderMap;
use coursebus_contracts::headers;
use uuid::Uuid;

/// Per-call context, read from incoming headers and written to outgoing ones.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    pub request_id: String,
    /// W3C `traceparent` of the caller's span.
    pub traceparent: Option<String>,
    /// The raw `Authorization` header value (`Bearer <jwt>`).
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("request_id", &self.request_id)
            .field("traceparent", &self.traceparent)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .field("idempotency_key", &self.idempotency_key)
            .finish()
    }
}

impl CallContext {
    /// A context for work a service starts on its own (no user, fresh trace).
    pub fn new_root() -> Self {
        Self { request_id: Uuid::now_v7().to_string(), traceparent: Some(new_traceparent(None)), ..Self::default() }
    }

    pub fn with_authorization(mut self, authorization: Option<String>) -> Self {
        self.authorization = authorization;
        self
    }

    pub fn with_bearer(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// Read the context of an incoming message; a missing request id or trace gets a fresh one.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Self {
        let get =
            |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_owned()).filter(|v| !v.is_empty());
        Self {
            request_id: get(headers::REQUEST_ID).unwrap_or_else(|| Uuid::now_v7().to_string()),
            traceparent: get(headers::TRACEPARENT).filter(|t| parse_traceparent(t).is_some()),
            authorization: get(headers::AUTHORIZATION),
            idempotency_key: get(headers::IDEMPOTENCY_KEY),
        }
    }

    /// Headers for an outgoing call made on behalf of this context: same trace id, a new span id.
    pub fn to_headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(headers::REQUEST_ID, self.request_id.as_str());
        map.insert(headers::TRACEPARENT, new_traceparent(self.traceparent.as_deref()).as_str());
        if let Some(auth) = &self.authorization {
            map.insert(headers::AUTHORIZATION, auth.as_str());
        }
        if let Some(key) = &self.idempotency_key {
            map.insert(headers::IDEMPOTENCY_KEY, key.as_str());
        }
        map
    }

    /// The bearer token, if the `Authorization` header holds one.
    pub fn bearer(&self) -> Option<&str> {
        let auth = self.authorization.as_deref()?.trim();
        let (scheme, token) = auth.split_once(' ')?;
        (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
    }

    /// The trace id (32 hex digits), for log fields.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref().and_then(parse_traceparent).map(|(trace, _)| trace)
    }
}

/// Split a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) into trace id and flags.
fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && trace.chars().any(|c| c != '0')
                && span.chars().any(|c| c != '0') =>
        {
            Some((trace, flags))
        }
        _ => None,
    }
}

/// A child `traceparent` of `parent` (same trace id, new span id), or a new root trace.
pub fn new_traceparent(parent: Option<&str>) -> String {
    let span = Uuid::new_v4().simple().to_string();
    let span = &span[..16];
    match parent.and_then(parse_traceparent) {
        Some((trace, flags)) => format!("00-{trace}-{span}-{flags}"),
        None => format!("00-{}-{span}-01", Uuid::new_v4().simple()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_trace_continues() {
        let ctx = CallContext {
            request_id: "req-1".into(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            authorization: Some("Bearer abc.def.ghi".into()),
            idempotency_key: Some("k1".into()),
        };
        let back = CallContext::from_headers(Some(&ctx.to_headers()));
        assert_eq!(back.request_id, "req-1");
        assert_eq!(back.authorization, ctx.authorization);
        assert_eq!(back.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(back.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_ne!(back.traceparent, ctx.traceparent, "each hop gets a new span id");
        assert_eq!(back.bearer(), Some("abc.def.ghi"));
    }

    #[test]
    fn invalid_traceparent_is_replaced_and_secrets_are_not_debug_printed() {
        let mut map = HeaderMap::new();
        map.insert(headers::TRACEPARENT, "garbage");
        let ctx = CallContext::from_headers(Some(&map)).with_bearer("secret-token");
        assert!(ctx.traceparent.is_none());
        assert!(!ctx.request_id.is_empty());
        assert!(!format!("{ctx:?}").contains("secret-token"));
        assert_eq!(CallContext::default().with_authorization(Some("Basic x".into())).bearer(), None);
    }
}
