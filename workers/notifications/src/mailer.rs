//! Email over SMTP (lettre, tokio, rustls). The transport comes from a URL:
//! `smtp://host:port` (plain, for a local relay or test server), `smtp://host?tls=required`
//! (STARTTLS), `smtps://user:password@host` (implicit TLS); credentials in the URL are used for
//! AUTH and never logged.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use crate::domain::EmailContent;

/// Why the mailer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("SMTP URL: {0}")]
    Url(String),
    #[error("sender address {0:?} is not a valid mailbox")]
    From(String),
}

/// Why one email was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the server is down or said "try later" (4xx), a timeout.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help: a rejected address (5xx) or a message that cannot be built.
    #[error("{0}")]
    Reject(String),
}

/// Sends rendered emails.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The host part of Message-IDs.
    domain: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str, timeout: Duration) -> Result<Self, MailerError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            // lettre's message may echo the URL; do not pass it on (it can hold a password).
            .map_err(|e| MailerError::Url(redact(&e.to_string(), smtp_url)))?
            .timeout(Some(timeout))
            .build();
        let from: Mailbox = from.parse().map_err(|_| MailerError::From(from.to_owned()))?;
        let domain = from.email.domain().to_owned();
        Ok(Self { transport, from, domain })
    }

    /// Send `content` to `to`. The Message-ID is derived from the notification id, so a receiver
    /// can tell a duplicate apart even if one ever slipped through.
    pub async fn send(
        &self,
        to_email: &str,
        to_name: &str,
        content: &EmailContent,
        notification_id: Uuid,
    ) -> Result<(), SendError> {
        let to = Mailbox::new(
            Some(to_name.to_owned()),
            to_email.parse().map_err(|e| SendError::Reject(format!("invalid recipient address: {e}")))?,
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject.clone())
            .message_id(Some(format!("<{notification_id}@{}>", self.domain)))
            .multipart(MultiPart::alternative_plain_html(content.text.clone(), content.html.clone()))
            .map_err(|e| SendError::Reject(format!("message could not be built: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_permanent() => Err(SendError::Reject(format!("SMTP rejected: {err}"))),
            Err(err) => Err(SendError::Retry(format!("SMTP failed: {err}"))),
        }
    }
}

/// `text` with any copy of `secret` (and the URL's user info) replaced.
fn redact(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "<smtp url>");
    if let Some((userinfo, _)) = url.split_once("://").and_then(|(_, rest)| rest.split_once('@')) {
        out = out.replace(userinfo, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_and_senders_are_checked_without_leaking_passwords() {
        assert!(
            Mailer::new("smtp://127.0.0.1:2525", "coursebus <no-reply@coursebus.test>", Duration::from_secs(1)).is_ok()
        );
        let err = Mailer::new("ftp://user:hunter2@host", "a@b.test", Duration::from_secs(1)).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(matches!(
            Mailer::new("smtp://127.0.0.1:2525", "not an address", Duration::from_secs(1)),
            Err(MailerError::From(_))
        ));
    }
}
