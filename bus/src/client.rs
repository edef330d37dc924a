//! Connecting, and typed request-reply with explicit deadlines.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{Client, ConnectOptions, HeaderMap, Message};
use bytes::Bytes;
use coursebus_contracts::{ErrorBody, ErrorCode, Rpc, headers};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::{BusError, CallContext};

/// Connect to NATS, retrying with backoff until `give_up_after`; later disconnects are retried
/// forever by the client itself. `url` may list several servers of a cluster, comma-separated
/// (`nats://user:pw@nats-1:4222,nats://user:pw@nats-2:4222`).
pub async fn connect(url: &str, name: &str, give_up_after: Duration) -> Result<Client, BusError> {
    let servers: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| BusError::Connect { url: redact(url), reason: e.to_string() })?;
    // async-nats ignores credentials in server URLs: pass the first one found explicitly.
    let credentials = servers.iter().find_map(|s| {
        let user = s.username()?;
        Some((percent_decode(user), percent_decode(s.password().unwrap_or(""))))
    });
    let shown = redact(url);
    let url = shown.as_str();
    let deadline = Instant::now() + give_up_after;
    let mut delay = Duration::from_millis(100);
    loop {
        let mut options =
            ConnectOptions::new().name(name).connection_timeout(Duration::from_secs(2)).max_reconnects(None::<usize>);
        if let Some((user, password)) = &credentials {
            options = options.user_and_password(user.clone(), password.clone());
        }
        match options.connect(servers.clone()).await {
            Ok(client) => {
                tracing::info!(nats.url = url, client.name = name, "connected to NATS");
                return Ok(client);
            }
            Err(err) if Instant::now() + delay < deadline => {
                tracing::warn!(nats.url = url, error = %err, retry_in_ms = delay.as_millis() as u64, "NATS not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                return Err(BusError::Connect { url: url.to_owned(), reason: err.to_string() });
            }
        }
    }
}

/// `%XX` escapes of a URL's user or password decoded (a password may hold `@` or `:`).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex()) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` without passwords, for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    url.split(',')
        .map(|server| match (server.find("://"), server.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &server[..scheme + 3], &server[at..]),
            _ => server.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A NATS client that speaks the platform's typed request-reply.
#[derive(Clone, Debug)]
pub struct Bus {
    client: Client,
    deadline: Duration,
}

impl Bus {
    /// `deadline` is the default time a request may take before it is answered `unavailable`.
    pub fn new(client: Client, deadline: Duration) -> Self {
        Self { client, deadline }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// True while the connection to the NATS server is up.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Send `request` to `R`'s endpoint within the default deadline.
    pub async fn request<R: Rpc>(&self, ctx: &CallContext, request: &R::Request) -> Result<R::Reply, ErrorBody> {
        self.request_within::<R>(ctx, request, self.deadline).await
    }

    /// Send `request` to `R`'s endpoint; no responders or no answer within `deadline` gives
    /// `unavailable` (never a hang).
    pub async fn request_within<R: Rpc>(
        &self,
        ctx: &CallContext,
        request: &R::Request,
        deadline: Duration,
    ) -> Result<R::Reply, ErrorBody> {
        let message = self.send::<R>(ctx, request, deadline).await?;
        decode_reply(&message)
    }

    /// [`Bus::request`] for a caller that only passes the reply on: its JSON as it came, not
    /// parsed (an error reply is still `Err`). The gateway's hottest read forwards it this way.
    pub async fn request_forward<R: Rpc>(&self, ctx: &CallContext, request: &R::Request) -> Result<Bytes, ErrorBody> {
        let message = self.send::<R>(ctx, request, self.deadline).await?;
        match reply_error(&message) {
            Some(error) => Err(error),
            None => Ok(message.payload),
        }
    }

    async fn send<R: Rpc>(
        &self,
        ctx: &CallContext,
        request: &R::Request,
        deadline: Duration,
    ) -> Result<Message, ErrorBody> {
        let endpoint = R::ENDPOINT;
        let payload = serde_json::to_vec(request).map_err(|err| {
            tracing::error!(error = %err, subject = endpoint.name, "could not serialise a request");
            ErrorBody::internal()
        })?;
        self.raw_request(&endpoint.subject(), ctx.to_headers(), payload, deadline, endpoint.service).await
    }

    /// An untyped request (used for `$SRV.*` probes and the like).
    pub async fn raw_request(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
        deadline: Duration,
        service: &str,
    ) -> Result<Message, ErrorBody> {
        let request = async_nats::Request::new().payload(payload.into()).headers(headers).timeout(Some(deadline));
        self.client.send_request(subject.to_owned(), request).await.map_err(|err| match err.kind() {
            RequestErrorKind::NoResponders => {
                tracing::warn!(subject, service, "no responders");
                ErrorBody::unavailable(format!("the {service} service is not available"))
            }
            RequestErrorKind::TimedOut => {
                tracing::warn!(subject, service, deadline_ms = deadline.as_millis() as u64, "request timed out");
                ErrorBody::unavailable(format!("the {service} service did not answer in time"))
            }
            _ => {
                tracing::warn!(subject, service, error = %err, "request failed");
                ErrorBody::unavailable("the message bus is not reachable")
            }
        })
    }
}

/// Turn a reply into the typed answer or the error it carries.
pub fn decode_reply<T: DeserializeOwned>(message: &Message) -> Result<T, ErrorBody> {
    if let Some(error) = reply_error(message) {
        return Err(error);
    }
    serde_json::from_slice(&message.payload).map_err(|err| {
        tracing::error!(subject = %message.subject, error = %err, "undecodable reply");
        ErrorBody::internal()
    })
}

/// The error a micro-service reply carries, if any: our `cb-error` header when present, else the
/// standard `Nats-Service-Error` / `Nats-Service-Error-Code` pair.
pub fn reply_error(message: &Message) -> Option<ErrorBody> {
    let headers = message.headers.as_ref()?;
    if let Some(body) = headers.get(headers::ERROR).and_then(|v| serde_json::from_str::<ErrorBody>(v.as_str()).ok()) {
        return Some(body);
    }
    let status = headers.get(async_nats::service::NATS_SERVICE_ERROR)?;
    let code = headers
        .get(async_nats::service::NATS_SERVICE_ERROR_CODE)
        .and_then(|c| c.as_str().parse::<u16>().ok())
        .map(ErrorCode::from_http_status)
        .unwrap_or(ErrorCode::Internal);
    Some(ErrorBody::new(code, status.as_str()))
}

/// The numeric `Nats-Service-Error-Code` for a code (HTTP-like numbers, as the micro protocol
/// conventionally uses; operators see them in `nats micro stats`).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_not_shown() {
        assert_eq!(
            redact("nats://gw:secret@nats-1:4222,nats://nats-2:4222"),
            "nats://***@nats-1:4222,nats://nats-2:4222"
        );
    }

    #[test]
    fn escaped_credentials_are_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
