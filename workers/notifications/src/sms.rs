//! SMS through Twilio's Messages REST API: `POST /2010-04-01/Accounts/{sid}/Messages.json` with
//! a form body (`To`, `From`, `Body`) and HTTP basic auth (account SID, auth token).
//!
//! Outcomes follow the sender's rules: a 2xx is sent (Twilio's message `sid` is kept), a 4xx is a
//! rejection that no retry can fix (bad number, unverified sender), except 429; a 5xx, a 429 or a
//! transport failure is retried.
//!
//! The `sms` channel uses it for users who gave a number (`PUT /v1/notifications/phone`) and
//! turned texts on for a kind (they are opt-in).

use std::time::Duration;

use coursebus_bus::config::Secret;
use serde::Deserialize;

use crate::mailer::SendError;

/// Twilio's production API.
pub const TWILIO_API: &str = "https://api.twilio.com";

/// How long one request to Twilio may take, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom to send.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// `https://api.twilio.com` (tests point it at a local mock).
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Secret<String>,
    /// The sending number (E.164) or messaging service.
    pub from: String,
    pub timeout: Duration,
}

/// Sends text messages.
#[derive(Debug, Clone)]
pub struct Twilio {
    http: reqwest::Client,
    config: TwilioConfig,
}

#[derive(Deserialize)]
struct Sent {
    sid: String,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

impl Twilio {
    pub fn new(config: TwilioConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(config.timeout).build()?;
        Ok(Self { http, config })
    }

    /// Send `body` to `to` (E.164); returns Twilio's message sid.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_sid
        );
        let response = self
            .http
            .post(url)
            .basic_auth(&self.config.account_sid, Some(self.config.auth_token.expose()))
            .form(&[("To", to), ("From", self.config.from.as_str()), ("Body", body)])
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("Twilio unreachable: {}", e.without_url())))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| SendError::Retry(format!("Twilio answer lost: {e}")))?;
        if status.is_success() {
            let sent: Sent = serde_json::from_slice(&bytes)
                .map_err(|e| SendError::Retry(format!("Twilio answered {status} without a message sid: {e}")))?;
            return Ok(sent.sid);
        }
        let refusal: Option<Refusal> = serde_json::from_slice(&bytes).ok();
        let detail = refusal
            .map(|r| format!("{} {}", r.code.map(|c| c.to_string()).unwrap_or_default(), r.message.unwrap_or_default()))
            .unwrap_or_default();
        let reason = format!("Twilio answered {status}: {}", detail.trim());
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Reject(reason))
        } else {
            Err(SendError::Retry(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{body_string, header, method, path};
    use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn twilio(server: &MockServer) -> Twilio {
        Twilio::new(TwilioConfig {
            base_url: server.uri(),
            account_sid: SID.into(),
            auth_token: Secret::new("secret-token".into()),
            from: "+15005550006".into(),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    fn messages() -> MockBuilder {
        // base64("AC0123456789abcdef0123456789abcdef:secret-token")
        let auth = "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjpzZWNyZXQtdG9rZW4=";
        Mock::given(method("POST"))
            .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
            .and(header("authorization", auth))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .and(body_string("To=%2B15551234567&From=%2B15005550006&Body=You+are+enrolled+in+Rust+%26+more"))
    }

    #[tokio::test]
    async fn the_exact_messages_request_is_sent_and_the_sid_kept() {
        let server = MockServer::start().await;
        messages()
            .respond_with(
                ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": "SM1", "status": "queued"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let sid = twilio(&server).send("+15551234567", "You are enrolled in Rust & more").await.unwrap();
        assert_eq!(sid, "SM1");
    }

    #[tokio::test]
    async fn a_4xx_is_rejected_and_a_5xx_or_429_is_retried() {
        let server = MockServer::start().await;
        let client = twilio(&server);
        let refusal = serde_json::json!({"code": 21211, "message": "The 'To' number is not a valid phone number."});
        messages()
            .respond_with(ResponseTemplate::new(400).set_body_json(refusal))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let err = client.send("+15551234567", "You are enrolled in Rust & more").await.unwrap_err();
        assert!(matches!(&err, SendError::Reject(r) if r.contains("21211")), "{err:?}");

        for status in [500, 503, 429] {
            server.reset().await;
            messages().respond_with(ResponseTemplate::new(status)).mount(&server).await;
            let err = client.send("+15551234567", "You are enrolled in Rust & more").await.unwrap_err();
            assert!(matches!(err, SendError::Retry(_)), "{status}: {err:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_api_is_retried() {
        // A port nobody listens on (wiremock keeps dropped servers alive in a pool).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Twilio::new(TwilioConfig {
            base_url: format!("http://127.0.0.1:{port}"),
            account_sid: SID.into(),
            auth_token: Secret::new("secret-token".into()),
            from: "+15005550006".into(),
            timeout: Duration::from_secs(2),
        })
        .unwrap();
        let err = client.send("+15551234567", "hi").await.unwrap_err();
        assert!(matches!(err, SendError::Retry(_)), "{err:?}");
    }

    #[test]
    fn the_auth_token_is_not_debug_printed() {
        let config = TwilioConfig {
            base_url: TWILIO_API.into(),
            account_sid: SID.into(),
            auth_token: Secret::new("secret-token".into()),
            from: "+15005550006".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{config:?}").contains("secret-token"));
    }
}
