//! Notifications: events become jobs on `JOB_NOTIFY`, sender replicas deliver them in-app and by
//! email to a real SMTP server (aiosmtpd writing a maildir the tests read back).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use coursebus_bus::consume::RetryPolicy;
use coursebus_contracts::notifications::{Channel, NotificationJob, NotificationKind};
use coursebus_contracts::subjects::notifications as subj;
use coursebus_tests::{Builder, Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use xtask::stack::Smtp;

use crate::support::{call, create_course, instructor, publish_with_lessons, user};

const WAIT: Duration = Duration::from_secs(30);

fn options(notifications_replicas: usize) -> Builder {
    Platform::builder().with(Service::Notifications, notifications_replicas)
}

/// A unique address per test run, so tests sharing the SMTP server tell their emails apart.
fn address(name: &str) -> String {
    format!("{name}-{}@example.com", Uuid::new_v4().simple())
}

/// The header block of a raw message.
fn headers(raw: &str) -> &str {
    raw.split("\n\n").next().unwrap_or(raw)
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    headers(raw).lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Every email the SMTP server accepted for `to`.
fn emails_to(smtp: &Smtp, to: &str) -> Result<Vec<String>> {
    Ok(smtp.messages()?.into_iter().filter(|raw| header(raw, "X-RcptTo").is_some_and(|r| r.contains(to))).collect())
}

/// Wait until `n` emails to `to` arrived; returns them.
async fn wait_emails(smtp: &Smtp, to: &str, n: usize) -> Result<Vec<String>> {
    eventually(WAIT, &format!("{n} email(s) to {to}"), || async {
        let found = emails_to(smtp, to)?;
        Ok((found.len() >= n).then_some(found))
    })
    .await
}

/// Whether `kind` on `channel` is on in a preferences answer (`None`: the pair is not listed).
fn preference(body: &Value, kind: &str, channel: &str) -> Option<bool> {
    body["items"].as_array()?.iter().find(|p| p["kind"] == kind && p["channel"] == channel)?["enabled"].as_bool()
}

/// Wait until every job on `JOB_NOTIFY` was acknowledged (the work queue is empty).
async fn jobs_drained(p: &Platform) -> Result<()> {
    let js = async_nats::jetstream::new(p.nats_client().await?);
    eventually(WAIT, "JOB_NOTIFY to drain", || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream(subj::JOB_STREAM).await?;
            let info = stream.info().await?;
            Ok((info.state.messages == 0).then_some(()))
        }
    })
    .await
}

async fn notifications_db(p: &Platform) -> Result<sqlx::PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&p.notifications_database_url).await?)
}

/// The delivery log row on `channel` of `user`'s only notification of `kind`:
/// (status, attempts, last_error).
async fn delivery(
    db: &sqlx::PgPool,
    user_id: &str,
    kind: &str,
    channel: &str,
) -> Result<Option<(String, i32, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT status, attempts, last_error FROM deliveries WHERE user_id = $1::uuid AND kind = $2 AND channel = $3",
    )
    .bind(user_id)
    .bind(kind)
    .bind(channel)
    .fetch_optional(db)
    .await?)
}

async fn email_delivery(db: &sqlx::PgPool, user_id: &str, kind: &str) -> Result<Option<(String, i32, Option<String>)>> {
    delivery(db, user_id, kind, "email").await
}

pub async fn registration_sends_exactly_one_verification_email(infra: Arc<Infra>) -> Result<()> {
    let p = options(2).start(&infra).await?;
    let email = address("welcome");
    let reply = crate::support::register(&p, &email, crate::support::PASSWORD, "Ada Lovelace").await?;
    ensure!(reply.status == StatusCode::CREATED, "{reply:?}");
    let user_id = reply.body["id"].as_str().context("id")?.to_owned();

    let mail = wait_emails(&infra.smtp, &email, 1).await?.remove(0);
    assert_eq!(header(&mail, "Subject"), Some("Welcome to coursebus, Ada Lovelace"));
    assert!(header(&mail, "From").is_some_and(|f| f.contains("no-reply@coursebus.localhost")), "{mail}");
    assert!(mail.contains("multipart/alternative"), "HTML and text bodies: {mail}");
    assert!(mail.contains("text/plain") && mail.contains("text/html"), "{mail}");
    let db = notifications_db(&p).await?;
    let notification_id: (Uuid,) =
        sqlx::query_as("SELECT notification_id FROM deliveries WHERE user_id = $1::uuid AND channel = 'email'")
            .bind(&user_id)
            .fetch_one(&db)
            .await?;
    assert!(
        header(&mail, "Message-ID").is_some_and(|m| m.contains(&notification_id.0.to_string())),
        "the Message-ID names the notification: {mail}"
    );

    // Everything settled: still one email, logged as sent once; no in-app notification.
    jobs_drained(&p).await?;
    assert_eq!(emails_to(&infra.smtp, &email)?.len(), 1);
    let (status, attempts, _) = email_delivery(&db, &user_id, "welcome").await?.context("delivery logged")?;
    assert_eq!((status.as_str(), attempts), ("sent", 1));
    let (token,) = (crate::support::access_token(&p, &email, crate::support::PASSWORD).await?,);
    let inbox = call(&p, Method::GET, "/v1/notifications", Some(&token), None).await?;
    assert_eq!(inbox.status, StatusCode::OK, "{inbox:?}");
    assert_eq!(inbox.body["items"], json!([]));

    // The email's link confirms the address, without logging in; following it again answers the
    // same; a made-up token is refused.
    let me = call(&p, Method::GET, "/v1/me", Some(&token), None).await?;
    assert_eq!(me.body["email_verified"], false, "{me:?}");
    let link = link_token(&mail, "verify-email?token=").context("a verification link in the email")?;
    let path = format!("/v1/auth/verify-email?token={link}");
    let verified = call(&p, Method::GET, &path, None, None).await?;
    assert_eq!(verified.status, StatusCode::OK, "{verified:?}");
    assert_eq!(
        (verified.body["user_id"].as_str(), verified.body["email"].as_str()),
        (Some(user_id.as_str()), Some(email.as_str()))
    );
    let again = call(&p, Method::GET, &path, None, None).await?;
    assert_eq!((again.status, &again.body), (StatusCode::OK, &verified.body), "a used link answers the same");
    let bogus = call(&p, Method::GET, "/v1/auth/verify-email?token=not-a-token", None, None).await?;
    assert_eq!((bogus.status, bogus.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{bogus:?}");
    let me = call(&p, Method::GET, "/v1/me", Some(&token), None).await?;
    assert_eq!(me.body["email_verified"], true, "{me:?}");
    // Verified: no other email; asking for another link is a conflict.
    let resend = call(&p, Method::POST, "/v1/me/verify-email", Some(&token), None).await?;
    assert_eq!((resend.status, resend.code()), (StatusCode::CONFLICT, "conflict"), "{resend:?}");
    jobs_drained(&p).await?;
    assert_eq!(emails_to(&infra.smtp, &email)?.len(), 1, "exactly one verification email");
    p.shutdown().await;
    Ok(())
}

/// An unverified user asks for another link: a second email whose link works; the first
/// email's link still works too until it expires.
pub async fn a_resent_verification_link_confirms_the_address(infra: Arc<Infra>) -> Result<()> {
    let p = options(1).start(&infra).await?;
    let email = address("resend");
    let (_, token) = user(&p, &email).await?;
    wait_emails(&infra.smtp, &email, 1).await?;
    let resend = call(&p, Method::POST, "/v1/me/verify-email", Some(&token), None).await?;
    assert_eq!(resend.status, StatusCode::ACCEPTED, "{resend:?}");
    let mails = wait_emails(&infra.smtp, &email, 2).await?;
    let second = mails
        .iter()
        .find(|m| header(m, "Subject") == Some("Confirm your email address for coursebus"))
        .context("the verification email")?;
    let first = mails.iter().find(|m| !std::ptr::eq(*m, second)).context("the welcome email")?;
    let (a, b) = (
        link_token(first, "verify-email?token=").context("link 1")?,
        link_token(second, "verify-email?token=").context("link 2")?,
    );
    assert_ne!(a, b, "every email has its own link");
    let done = call(&p, Method::GET, &format!("/v1/auth/verify-email?token={b}"), None, None).await?;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    let me = call(&p, Method::GET, "/v1/me", Some(&token), None).await?;
    assert_eq!(me.body["email_verified"], true, "{me:?}");
    p.shutdown().await;
    Ok(())
}

pub async fn enrolment_notifies_in_app_and_the_inbox_is_private(infra: Arc<Infra>) -> Result<()> {
    let p = options(2).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let mut courses = Vec::new();
    for title in ["Rust for Humans", "Async in Depth"] {
        let course = create_course(&p, &teacher, title, json!({})).await?;
        courses.push(publish_with_lessons(&p, &teacher, &course, 1).await?);
    }
    let learner_email = address("learner");
    let (_, learner) = user(&p, &learner_email).await?;
    let (_, other) = user(&p, &address("other")).await?;

    let enrolled =
        call(&p, Method::POST, "/v1/enrollments", Some(&learner), Some(json!({"course_id": courses[0]["id"]}))).await?;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{enrolled:?}");
    let page = eventually(WAIT, "the enrolled notification in the inbox", || async {
        let page = call(&p, Method::GET, "/v1/notifications", Some(&learner), None).await?;
        Ok((page.body["items"].as_array().is_some_and(|i| !i.is_empty())).then_some(page.body))
    })
    .await?;
    let item = &page["items"][0];
    assert_eq!(item["kind"], "enrolled");
    assert_eq!(item["title"], "You are enrolled in Rust for Humans");
    assert_eq!(item["link"], format!("/courses/{}", courses[0]["slug"].as_str().context("slug")?));
    assert_eq!(item["read_at"], Value::Null);
    let mail = wait_emails(&infra.smtp, &learner_email, 2).await?;
    assert!(
        mail.iter().any(|m| header(m, "Subject") == Some("You are enrolled in Rust for Humans")),
        "an enrolment email besides the welcome"
    );

    let unread = call(&p, Method::GET, "/v1/notifications/unread-count", Some(&learner), None).await?;
    assert_eq!(unread.body, json!({"unread": 1}));

    // Another user sees nothing of it and cannot mark it read.
    let id = item["id"].as_str().context("id")?;
    let theirs = call(&p, Method::GET, "/v1/notifications", Some(&other), None).await?;
    assert_eq!(theirs.body["items"], json!([]));
    let stolen = call(&p, Method::POST, &format!("/v1/notifications/{id}/read"), Some(&other), None).await?;
    assert_eq!((stolen.status, stolen.code()), (StatusCode::NOT_FOUND, "not_found"), "{stolen:?}");
    let anonymous = call(&p, Method::GET, "/v1/notifications", None, None).await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // Mark read: once, idempotently.
    let read = call(&p, Method::POST, &format!("/v1/notifications/{id}/read"), Some(&learner), None).await?;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    let read_at = read.body["read_at"].clone();
    assert!(read_at.is_string(), "{read:?}");
    let again = call(&p, Method::POST, &format!("/v1/notifications/{id}/read"), Some(&learner), None).await?;
    assert_eq!(again.body["read_at"], read_at, "the first read time stays");
    let unread = call(&p, Method::GET, "/v1/notifications/unread-count", Some(&learner), None).await?;
    assert_eq!(unread.body, json!({"unread": 0}));

    // A second enrolment: newest first, cursor paging, read-all.
    let enrolled =
        call(&p, Method::POST, "/v1/enrollments", Some(&learner), Some(json!({"course_id": courses[1]["id"]}))).await?;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{enrolled:?}");
    eventually(WAIT, "the second notification", || async {
        let unread = call(&p, Method::GET, "/v1/notifications/unread-count", Some(&learner), None).await?;
        Ok((unread.body["unread"] == 1).then_some(()))
    })
    .await?;
    let first = call(&p, Method::GET, "/v1/notifications?limit=1", Some(&learner), None).await?;
    assert_eq!(first.body["items"][0]["title"], "You are enrolled in Async in Depth");
    let cursor = first.body["next_cursor"].as_str().context("a next cursor")?;
    let second =
        call(&p, Method::GET, &format!("/v1/notifications?limit=1&cursor={cursor}"), Some(&learner), None).await?;
    assert_eq!(second.body["items"][0]["id"], id);
    assert_eq!(second.body["next_cursor"], Value::Null);
    let unread_only = call(&p, Method::GET, "/v1/notifications?unread=true", Some(&learner), None).await?;
    assert_eq!(unread_only.body["items"].as_array().map(Vec::len), Some(1));
    let bad = call(&p, Method::GET, "/v1/notifications?cursor=nope!", Some(&learner), None).await?;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_input"));

    let all = call(&p, Method::POST, "/v1/notifications/read-all", Some(&learner), None).await?;
    assert_eq!(all.body, json!({"marked": 1}));
    let unread = call(&p, Method::GET, "/v1/notifications/unread-count", Some(&learner), None).await?;
    assert_eq!(unread.body, json!({"unread": 0}));
    p.shutdown().await;
    Ok(())
}

pub async fn a_duplicate_job_sends_one_email(infra: Arc<Infra>) -> Result<()> {
    let p = options(2).start(&infra).await?;
    let email = address("dup");
    let (user_id, _) = user(&p, &email).await?;
    wait_emails(&infra.smtp, &email, 1).await?;

    let job = NotificationJob {
        id: Uuid::now_v7(),
        kind: NotificationKind::Welcome,
        user_id: user_id.parse()?,
        channels: vec![Channel::Email],
        data: json!({}),
        source_event: None,
        created_at: time::OffsetDateTime::now_utc(),
    };
    let payload = serde_json::to_vec(&job)?;
    let js = async_nats::jetstream::new(p.nats_client().await?);
    let publish = |msg_id: String| {
        let (js, payload) = (js.clone(), payload.clone());
        async move {
            let message =
                async_nats::jetstream::message::PublishMessage::build().payload(payload.into()).message_id(msg_id);
            anyhow::Ok(js.send_publish(subj::JOB_DELIVER, message).await?.await?)
        }
    };
    // The same Nats-Msg-Id twice: JetStream stores one job.
    assert!(!publish(job.id.to_string()).await?.duplicate);
    assert!(publish(job.id.to_string()).await?.duplicate);
    let mails = wait_emails(&infra.smtp, &email, 2).await?;
    jobs_drained(&p).await?;
    // The same notification again under another message id (a redelivery after the duplicate
    // window, or a replayed job): the delivery log says sent, nothing is sent.
    assert!(!publish(format!("{}-replayed", job.id)).await?.duplicate);
    jobs_drained(&p).await?;
    let all = emails_to(&infra.smtp, &email)?;
    assert_eq!(all.len(), 2, "the welcome and one copy of the job: {mails:?}");
    let with_id = all.iter().filter(|m| header(m, "Message-ID").is_some_and(|h| h.contains(&job.id.to_string())));
    assert_eq!(with_id.count(), 1);
    let db = notifications_db(&p).await?;
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM deliveries WHERE notification_id = $1 AND channel = 'email'")
            .bind(job.id)
            .fetch_one(&db)
            .await?;
    assert_eq!((status.as_str(), attempts), ("sent", 1));
    p.shutdown().await;
    Ok(())
}

pub async fn smtp_down_is_retried_and_delivered_once_it_is_back(infra: Arc<Infra>) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("coursebus-smtp-").tempdir()?;
    let mut smtp = tokio::task::block_in_place(|| {
        Smtp::start(&infra.tools, &dir.path().join("maildir"), 0, &dir.path().join("smtp.log"))
    })?;
    let mut p = options(0).start(&infra).await?;
    let mut config = p.notifications_config();
    config.smtp_url = smtp.url().into();
    config.smtp_timeout = Duration::from_secs(2);
    p.start_notifications_replica_with(config);
    p.wait_replicas("notifications", 1).await?;

    tokio::task::block_in_place(|| smtp.stop());
    let email = address("later");
    let (user_id, _) = user(&p, &email).await?;
    let db = notifications_db(&p).await?;
    let (attempts, error) = eventually(WAIT, "failed attempts while SMTP is down", || async {
        Ok(match email_delivery(&db, &user_id, "welcome").await? {
            Some((status, attempts, Some(error))) if status == "queued" && attempts >= 2 => Some((attempts, error)),
            _ => None,
        })
    })
    .await?;
    assert!(error.contains("SMTP"), "the reason is logged: {error}");
    assert!(emails_to(&smtp, &email)?.is_empty());

    tokio::task::block_in_place(|| smtp.start_again())?;
    let mails = wait_emails(&smtp, &email, 1).await?;
    jobs_drained(&p).await?;
    assert_eq!(emails_to(&smtp, &email)?.len(), 1, "delivered once: {mails:?}");
    let (status, total, _) = email_delivery(&db, &user_id, "welcome").await?.context("delivery logged")?;
    assert_eq!(status, "sent");
    assert!(total > attempts, "{total} attempts in all, {attempts} failed ones seen");
    p.shutdown().await;
    drop(smtp);
    Ok(())
}

pub async fn preferences_turn_channels_off(infra: Arc<Infra>) -> Result<()> {
    let p = options(1).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let course = create_course(&p, &teacher, "Quiet Course", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let learner_email = address("quiet");
    let (learner_id, learner) = user(&p, &learner_email).await?;
    let (_, other) = user(&p, &address("loud")).await?;

    let prefs = call(&p, Method::GET, "/v1/notifications/preferences", Some(&learner), None).await?;
    let defaults = prefs.clone();
    assert_eq!(prefs.status, StatusCode::OK, "{prefs:?}");
    for (kind, channel) in
        [("welcome", "email"), ("verify_email", "email"), ("enrolled", "in_app"), ("enrolled", "email")]
    {
        assert_eq!(
            preference(&prefs.body, kind, channel),
            Some(true),
            "{kind} by {channel} is on by default: {prefs:?}"
        );
    }
    let off = json!({"items": [{"kind": "enrolled", "channel": "email", "enabled": false}]});
    let changed = call(&p, Method::PUT, "/v1/notifications/preferences", Some(&learner), Some(off)).await?;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(preference(&changed.body, "enrolled", "email"), Some(false), "{changed:?}");
    assert_eq!(preference(&changed.body, "enrolled", "in_app"), Some(true), "{changed:?}");
    for (bad, field) in [
        (json!({"kind": "welcome", "channel": "email", "enabled": false}), "enabled"),
        (json!({"kind": "welcome", "channel": "in_app", "enabled": false}), "channel"),
    ] {
        let refused =
            call(&p, Method::PUT, "/v1/notifications/preferences", Some(&learner), Some(json!({"items": [bad]})))
                .await?;
        assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{refused:?}");
        assert_eq!(refused.body["details"]["field"], field);
    }
    let others = call(&p, Method::GET, "/v1/notifications/preferences", Some(&other), None).await?;
    assert_eq!(others.body, defaults.body, "preferences are per user");
    wait_emails(&infra.smtp, &learner_email, 1).await?;

    let enrolled =
        call(&p, Method::POST, "/v1/enrollments", Some(&learner), Some(json!({"course_id": course["id"]}))).await?;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{enrolled:?}");
    eventually(WAIT, "the in-app notification", || async {
        let unread = call(&p, Method::GET, "/v1/notifications/unread-count", Some(&learner), None).await?;
        Ok((unread.body["unread"] == 1).then_some(()))
    })
    .await?;
    jobs_drained(&p).await?;
    let mails = emails_to(&infra.smtp, &learner_email)?;
    assert_eq!(mails.len(), 1, "only the welcome email: {mails:?}");
    let db = notifications_db(&p).await?;
    let (status, _, _) = email_delivery(&db, &learner_id, "enrolled").await?.context("logged")?;
    assert_eq!(status, "skipped");
    p.shutdown().await;
    Ok(())
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open `/v1/ws` with the token in the `Authorization` header or (`in_query`) the query string.
async fn socket(p: &Platform, token: &str, in_query: bool) -> Result<Socket> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let base = p.base_url.replacen("http", "ws", 1);
    let mut request = if in_query {
        format!("{base}/v1/ws?access_token={token}").into_client_request()?
    } else {
        let mut request = format!("{base}/v1/ws").into_client_request()?;
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
        request
    };
    request.headers_mut().insert("x-request-id", "ws-test".parse()?);
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    ensure!(response.status().as_u16() == 101, "{response:?}");
    Ok(socket)
}

/// The next text frame as JSON, within `wait`.
async fn next_push(socket: &mut Socket, wait: Duration) -> Result<Option<Value>> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => anyhow::bail!("the socket closed"),
            Ok(Some(message)) => match message? {
                Message::Text(text) => return Ok(Some(serde_json::from_str(text.as_str())?)),
                Message::Close(frame) => anyhow::bail!("the socket closed: {frame:?}"),
                _ => continue,
            },
        }
    }
}

pub async fn a_websocket_gets_its_own_pushes_only(infra: Arc<Infra>) -> Result<()> {
    let p = options(2).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let course = create_course(&p, &teacher, "Live Course", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let (_, learner) = user(&p, &address("live")).await?;
    let (_, other) = user(&p, &address("bystander")).await?;

    // No token, or not an upgrade: refused in the platform's error shape.
    let anonymous = call(&p, Method::GET, "/v1/ws", None, None).await?;
    assert_eq!((anonymous.status, anonymous.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    let plain = call(&p, Method::GET, "/v1/ws", Some(&learner), None).await?;
    assert_eq!((plain.status, plain.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{plain:?}");
    assert!(
        tokio_tungstenite::connect_async(format!("{}/v1/ws?access_token=junk", p.base_url.replacen("http", "ws", 1)))
            .await
            .is_err()
    );

    let mut mine = socket(&p, &learner, false).await?;
    let mut theirs = socket(&p, &other, true).await?;
    let enrolled =
        call(&p, Method::POST, "/v1/enrollments", Some(&learner), Some(json!({"course_id": course["id"]}))).await?;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{enrolled:?}");
    let started = std::time::Instant::now();
    let push = next_push(&mut mine, WAIT).await?.context("a push for the learner")?;
    let latency = started.elapsed();
    assert_eq!(push["type"], "notification");
    assert_eq!(push["notification"]["title"], "You are enrolled in Live Course");
    // What was pushed is what the inbox lists.
    let inbox = call(&p, Method::GET, "/v1/notifications", Some(&learner), None).await?;
    assert_eq!(inbox.body["items"][0], push["notification"]);
    // The bystander's socket stays silent.
    assert_eq!(next_push(&mut theirs, Duration::from_millis(500)).await?, None);
    eprintln!("notifications: enrolment answered → push received in {latency:?}");
    assert!(latency < Duration::from_secs(1), "push took {latency:?}");
    mine.close(None).await?;
    theirs.close(None).await?;
    p.shutdown().await;
    Ok(())
}

/// The token of the first link containing `marker` in a raw email (its text part may be
/// quoted-printable: soft line breaks and `=3D` for `=`).
fn link_token(raw: &str, marker: &str) -> Option<String> {
    let text = raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let start = text.find(marker)? + marker.len();
    let token: String =
        text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    (!token.is_empty()).then_some(token)
}

fn unsubscribe_token(raw: &str) -> Option<String> {
    link_token(raw, "unsubscribe?token=")
}

pub async fn unsubscribe_link_works_once_and_a_tampered_one_is_rejected(infra: Arc<Infra>) -> Result<()> {
    let p = options(1).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let course = create_course(&p, &teacher, "Unsubscribable", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let learner_email = address("leaver");
    let (_, learner) = user(&p, &learner_email).await?;
    let enrolled =
        call(&p, Method::POST, "/v1/enrollments", Some(&learner), Some(json!({"course_id": course["id"]}))).await?;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{enrolled:?}");
    let mails = wait_emails(&infra.smtp, &learner_email, 2).await?;
    let welcome =
        mails.iter().find(|m| header(m, "Subject").is_some_and(|s| s.starts_with("Welcome"))).context("welcome")?;
    assert_eq!(unsubscribe_token(welcome), None, "account emails carry no unsubscribe link");
    let enrolment_mail = mails.iter().find(|m| unsubscribe_token(m).is_some()).context("an email with a link")?;
    let token = unsubscribe_token(enrolment_mail).context("token")?;

    // A tampered link (another user's id under the same tag) and garbage are rejected.
    let (payload, tag) = token.split_once('.').context("token shape")?;
    let mut forged = payload.to_owned();
    let last = if forged.ends_with('A') { 'B' } else { 'A' };
    forged.replace_range(forged.len() - 1.., &last.to_string());
    for bad in [format!("{forged}.{tag}"), "garbage".to_owned()] {
        let reply = call(&p, Method::GET, &format!("/v1/notifications/unsubscribe?token={bad}"), None, None).await?;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{reply:?}");
    }

    // The genuine link works without logging in, once.
    let path = format!("/v1/notifications/unsubscribe?token={token}");
    let done = call(&p, Method::GET, &path, None, None).await?;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.body, json!({"kind": "enrolled", "channel": "email"}));
    let again = call(&p, Method::GET, &path, None, None).await?;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "conflict"), "{again:?}");
    let prefs = call(&p, Method::GET, "/v1/notifications/preferences", Some(&learner), None).await?;
    assert_eq!(preference(&prefs.body, "enrolled", "email"), Some(false), "{prefs:?}");
    p.shutdown().await;
    Ok(())
}

/// Enrol `token`'s user in `course` (201).
async fn enrol(p: &Platform, token: &str, course: &Value) -> Result<()> {
    let reply = call(p, Method::POST, "/v1/enrollments", Some(token), Some(json!({"course_id": course["id"]}))).await?;
    ensure!(reply.status == StatusCode::CREATED, "enrol: {reply:?}");
    Ok(())
}

pub async fn an_announcement_reaches_every_learner_once(infra: Arc<Infra>) -> Result<()> {
    let mut p = options(0).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    // Two replicas, pages of 2 learners: the fan-out walks several pages.
    for _ in 0..2 {
        let mut config = p.notifications_config();
        config.fanout_page = 2;
        p.start_notifications_replica_with(config);
    }
    p.wait_replicas("notifications", 2).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let course = create_course(&p, &teacher, "Announced Course", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let mut learners = Vec::new();
    for i in 0..5 {
        let email = address(&format!("learner{i}"));
        let (id, token) = user(&p, &email).await?;
        enrol(&p, &token, &course).await?;
        learners.push((id, token, email));
    }
    let (_, outsider) = user(&p, &address("outsider")).await?;
    let mut socket = socket(&p, &learners[0].1, false).await?;
    // The enrolment push may still come: wait for it before the announcement.
    let _ = next_push(&mut socket, Duration::from_secs(2)).await?;

    let path = format!("/v1/courses/{}/announcements", course["id"].as_str().context("id")?);
    let body = json!({"title": "Live session moved", "body": "Thursday 18:00 UTC instead of Wednesday."});
    let refused = call(&p, Method::POST, &path, Some(&learners[1].1), Some(body.clone())).await?;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "forbidden"), "{refused:?}");
    let empty = call(&p, Method::POST, &path, Some(&teacher), Some(json!({"title": " ", "body": "x"}))).await?;
    assert_eq!((empty.status, empty.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("title")));
    let unknown = format!("/v1/courses/{}/announcements", Uuid::now_v7());
    let missing = call(&p, Method::POST, &unknown, Some(&teacher), Some(body.clone())).await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");

    // Posted twice with one key: one announcement.
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let reply = client
            .post(p.url(&path))
            .bearer_auth(&teacher)
            .header("Idempotency-Key", "announce-1")
            .json(&body)
            .send()
            .await?;
        assert_eq!(reply.status(), StatusCode::ACCEPTED);
        ids.push(reply.json::<Value>().await?["id"].as_str().context("id")?.to_owned());
    }
    assert_eq!(ids[0], ids[1], "the same key posts once");
    let status_path = format!("{path}/{}", ids[0]);
    let done = eventually(WAIT, "the fan-out to finish", || async {
        let reply = call(&p, Method::GET, &status_path, Some(&teacher), None).await?;
        Ok((reply.body["status"] == "done").then_some(reply.body))
    })
    .await?;
    assert_eq!(done["recipients"], 5, "{done}");
    let hidden = call(&p, Method::GET, &status_path, Some(&learners[0].1), None).await?;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "only its author sees the fan-out: {hidden:?}");

    let push = next_push(&mut socket, WAIT).await?.context("the announcement pushed")?;
    assert_eq!(push["notification"]["title"], "Announced Course: Live session moved");
    for (_, token, email) in &learners {
        let inbox = call(&p, Method::GET, "/v1/notifications", Some(token), None).await?;
        let announcements: Vec<&Value> =
            inbox.body["items"].as_array().context("items")?.iter().filter(|n| n["kind"] == "announcement").collect();
        assert_eq!(announcements.len(), 1, "{inbox:?}");
        assert_eq!(announcements[0]["body"], "Thursday 18:00 UTC instead of Wednesday.");
        let mails = wait_emails(&infra.smtp, email, 3).await?;
        let subject = "Announced Course: Live session moved";
        assert_eq!(mails.iter().filter(|m| header(m, "Subject") == Some(subject)).count(), 1, "{email}");
    }
    let inbox = call(&p, Method::GET, "/v1/notifications", Some(&outsider), None).await?;
    assert_eq!(inbox.body["items"], json!([]), "not enrolled, not told");
    jobs_drained(&p).await?;
    for (_, _, email) in &learners {
        assert_eq!(emails_to(&infra.smtp, email)?.len(), 3, "welcome, enrolled, announcement: once each");
    }
    socket.close(None).await?;
    p.shutdown().await;
    Ok(())
}

pub async fn texts_go_to_twilio_rejections_fail_and_outages_retry(infra: Arc<Infra>) -> Result<()> {
    use wiremock::matchers::{body_string_contains, header as header_is, method, path as path_is};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let twilio = MockServer::start().await;
    let api = "/2010-04-01/Accounts/ACtest123/Messages.json";
    let auth =
        format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ACtest123:tw-secret"));
    let refused = json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400});
    Mock::given(method("POST"))
        .and(path_is(api))
        .and(header_is("authorization", auth.as_str()))
        .and(body_string_contains("To=%2B15005550001"))
        .respond_with(ResponseTemplate::new(400).set_body_json(refused))
        .mount(&twilio)
        .await;
    // The other number: Twilio fails once, then accepts.
    Mock::given(method("POST"))
        .and(path_is(api))
        .and(body_string_contains("To=%2B15005550006"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path_is(api))
        .and(header_is("authorization", auth.as_str()))
        .and(body_string_contains("To=%2B15005550006"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM123", "status": "queued"})))
        .with_priority(2)
        .mount(&twilio)
        .await;

    let mut p = options(0).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let mut config = p.notifications_config();
    config.twilio = Some(coursebus_worker_notifications::sms::TwilioConfig {
        base_url: twilio.uri(),
        account_sid: "ACtest123".into(),
        auth_token: "tw-secret".into(),
        from: "+15005550000".into(),
        timeout: Duration::from_secs(5),
    });
    p.start_notifications_replica_with(config);
    p.wait_replicas("notifications", 1).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let course = create_course(&p, &teacher, "Texted Course", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;

    let (bad_id, bad) = user(&p, &address("badnumber")).await?;
    let (good_id, good) = user(&p, &address("goodnumber")).await?;
    let (quiet_id, quiet) = user(&p, &address("nosms")).await?;
    let invalid =
        call(&p, Method::PUT, "/v1/notifications/phone", Some(&bad), Some(json!({"phone": "0800 123"}))).await?;
    assert_eq!((invalid.status, invalid.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("phone")));
    for (token, phone) in [(&bad, "+1 500 555 0001"), (&good, "+15005550006"), (&quiet, "+15005550007")] {
        let set = call(&p, Method::PUT, "/v1/notifications/phone", Some(token), Some(json!({"phone": phone}))).await?;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
    }
    // SMS is opt-in: the third user keeps the default.
    let prefs = call(&p, Method::GET, "/v1/notifications/preferences", Some(&quiet), None).await?;
    assert_eq!(preference(&prefs.body, "enrolled", "sms"), Some(false), "{prefs:?}");
    for token in [&bad, &good] {
        let on = json!({"items": [{"kind": "enrolled", "channel": "sms", "enabled": true}]});
        let changed = call(&p, Method::PUT, "/v1/notifications/preferences", Some(token), Some(on)).await?;
        assert_eq!(preference(&changed.body, "enrolled", "sms"), Some(true), "{changed:?}");
    }
    for token in [&bad, &good, &quiet] {
        enrol(&p, token, &course).await?;
    }

    let db = notifications_db(&p).await?;
    let settled = |user: String| {
        let db = db.clone();
        async move {
            eventually(WAIT, "the text message to settle", || async {
                Ok(delivery(&db, &user, "enrolled", "sms").await?.filter(|(status, _, _)| status != "queued"))
            })
            .await
        }
    };
    let (status, attempts, error) = settled(bad_id.clone()).await?;
    assert_eq!((status.as_str(), attempts), ("failed", 1), "a 400 is not retried");
    assert!(error.as_deref().is_some_and(|e| e.contains("21211")), "Twilio's reason is logged: {error:?}");
    let (status, attempts, _) = settled(good_id.clone()).await?;
    assert_eq!((status.as_str(), attempts), ("sent", 2), "a 500 is retried");
    let (status, _, _) = settled(quiet_id.clone()).await?;
    assert_eq!(status, "skipped", "not opted in");
    jobs_drained(&p).await?;
    // The user sees their own delivery log: the text failed, and why.
    let log = call(&p, Method::GET, "/v1/notifications/deliveries", Some(&bad), None).await?;
    assert_eq!(log.status, StatusCode::OK, "{log:?}");
    let sms = log.body["items"]
        .as_array()
        .context("items")?
        .iter()
        .find(|d| d["kind"] == "enrolled" && d["channel"] == "sms")
        .context("the text in the log")?;
    assert_eq!((sms["status"].as_str(), sms["attempts"].as_u64()), (Some("failed"), Some(1)), "{sms}");
    assert!(sms["last_error"].as_str().is_some_and(|e| e.contains("21211")), "{sms}");
    let theirs = call(&p, Method::GET, "/v1/notifications/deliveries", Some(&quiet), None).await?;
    assert!(
        theirs.body["items"]
            .as_array()
            .context("items")?
            .iter()
            .all(|d| d["notification_id"] != sms["notification_id"]),
        "another user's log does not show it"
    );

    // Exactly what Twilio's Messages API expects, and nothing for the user who did not opt in.
    let requests = twilio.received_requests().await.context("recorded")?;
    assert_eq!(requests.len(), 3, "1 refused + 2 for the retried one: {requests:?}");
    let slug = course["slug"].as_str().context("slug")?;
    for request in &requests {
        assert_eq!(request.headers.get("authorization").and_then(|v| v.to_str().ok()), Some(auth.as_str()));
        assert_eq!(
            request.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-www-form-urlencoded")
        );
        let form: Vec<(String, String)> = form_urlencoded::parse(&request.body).into_owned().collect();
        assert_eq!(form.len(), 3, "{form:?}");
        assert_eq!(form[1], ("From".to_owned(), "+15005550000".to_owned()));
        assert_eq!(
            form[2],
            (
                "Body".to_owned(),
                format!("coursebus: you are enrolled in \"Texted Course\". http://127.0.0.1:8080/courses/{slug}")
            )
        );
        assert!(["+15005550001", "+15005550006"].contains(&form[0].1.as_str()), "{form:?}");
    }
    p.shutdown().await;
    Ok(())
}

/// The deliveries of `user`'s notifications of `kind` on email: (status, last_error) each.
async fn email_deliveries(db: &sqlx::PgPool, user_id: &str, kind: &str) -> Result<Vec<(String, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT status, last_error FROM deliveries WHERE user_id = $1::uuid AND kind = $2 AND channel = 'email' \
         ORDER BY queued_at",
    )
    .bind(user_id)
    .bind(kind)
    .fetch_all(db)
    .await?)
}

/// Publish a tick on the timer stream by hand (what the cron schedule does at 07:00 UTC) and
/// wait until the scheduler consumed it and every job it caused is done.
async fn tick(p: &Platform, subject: String) -> Result<()> {
    let js = async_nats::jetstream::new(p.nats_client().await?);
    js.publish(subject, bytes::Bytes::new()).await?.await?;
    eventually(WAIT, "the tick to be handled", || {
        let js = js.clone();
        async move {
            let stream = js.get_stream(subj::SCHEDULE_STREAM).await?;
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(subj::SCHEDULER_CONSUMER).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let info = consumer.info().await?;
            Ok((info.num_pending == 0 && info.num_ack_pending == 0).then_some(()))
        }
    })
    .await?;
    jobs_drained(p).await
}

pub async fn a_digest_gathers_emails_into_one(infra: Arc<Infra>) -> Result<()> {
    let p = options(1).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let mut courses = Vec::new();
    for title in ["Digest Course One", "Digest Course Two"] {
        let course = create_course(&p, &teacher, title, json!({})).await?;
        courses.push(publish_with_lessons(&p, &teacher, &course, 1).await?);
    }
    let email = address("digester");
    let (user_id, learner) = user(&p, &email).await?;
    wait_emails(&infra.smtp, &email, 1).await?;

    let defaults = call(&p, Method::GET, "/v1/notifications/schedule", Some(&learner), None).await?;
    assert_eq!(defaults.body, json!({"digest": "off", "quiet_hours": null}), "{defaults:?}");
    let bad = json!({"digest": "hourly"});
    let refused = call(&p, Method::PUT, "/v1/notifications/schedule", Some(&learner), Some(bad)).await?;
    assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{refused:?}");
    let daily = json!({"digest": "daily", "quiet_hours": null});
    let set = call(&p, Method::PUT, "/v1/notifications/schedule", Some(&learner), Some(daily.clone())).await?;
    assert_eq!((set.status, &set.body), (StatusCode::OK, &daily), "{set:?}");

    for course in &courses {
        enrol(&p, &learner, course).await?;
    }
    let db = notifications_db(&p).await?;
    eventually(WAIT, "both enrolment emails held for the digest", || async {
        let held = email_deliveries(&db, &user_id, "enrolled").await?;
        Ok((held.len() == 2 && held.iter().all(|(status, _)| status == "digested")).then_some(()))
    })
    .await?;
    jobs_drained(&p).await?;
    let inbox = call(&p, Method::GET, "/v1/notifications", Some(&learner), None).await?;
    assert_eq!(inbox.body["items"].as_array().map(Vec::len), Some(2), "in-app does not wait: {inbox:?}");
    assert_eq!(emails_to(&infra.smtp, &email)?.len(), 1, "only the welcome so far");

    // 07:00 UTC comes (the tick published by hand): one email with both enrolments.
    tick(&p, subj::digest_tick("daily")).await?;
    let mails = wait_emails(&infra.smtp, &email, 2).await?;
    let digest = mails
        .iter()
        .find(|m| header(m, "Subject") == Some("Your daily coursebus digest: 2 updates"))
        .context("the digest email")?;
    let text = digest.replace("=\r\n", "").replace("=\n", "");
    for title in ["You are enrolled in Digest Course One", "You are enrolled in Digest Course Two"] {
        assert!(text.contains(title), "{title} in {digest}");
    }
    // The next run finds nothing new: no second digest.
    tick(&p, subj::digest_tick("daily")).await?;
    assert_eq!(emails_to(&infra.smtp, &email)?.len(), 2, "one digest");
    p.shutdown().await;
    Ok(())
}

pub async fn quiet_hours_hold_emails_until_they_end(infra: Arc<Infra>) -> Result<()> {
    let p = options(1).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let course = create_course(&p, &teacher, "Night Course", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let email = address("sleeper");
    let (user_id, learner) = user(&p, &email).await?;
    wait_emails(&infra.smtp, &email, 1).await?;

    // Quiet hours in Kolkata (UTC+05:30) from an hour ago until the next whole minute that is at
    // least 20 s away.
    let zone = time::macros::offset!(+5:30);
    let now = time::OffsetDateTime::now_utc().to_offset(zone);
    let mut end = now.replace_second(0)?.replace_nanosecond(0)? + Duration::from_secs(60);
    if end - now < time::Duration::seconds(20) {
        end += Duration::from_secs(60);
    }
    let start = now - Duration::from_secs(3600);
    let hhmm = |t: time::OffsetDateTime| format!("{:02}:{:02}", t.hour(), t.minute());
    let schedule =
        json!({"digest": "off", "quiet_hours": {"start": hhmm(start), "end": hhmm(end), "time_zone": "Asia/Kolkata"}});
    let set = call(&p, Method::PUT, "/v1/notifications/schedule", Some(&learner), Some(schedule.clone())).await?;
    assert_eq!((set.status, &set.body), (StatusCode::OK, &schedule), "{set:?}");

    enrol(&p, &learner, &course).await?;
    let db = notifications_db(&p).await?;
    let note = eventually(WAIT, "the email to be held", || async {
        Ok(email_deliveries(&db, &user_id, "enrolled").await?.pop().and_then(|(status, note)| {
            (status == "queued").then_some(note).flatten().filter(|n| n.contains("quiet hours"))
        }))
    })
    .await?;
    eprintln!("notifications: {note}");
    let inbox = call(&p, Method::GET, "/v1/notifications", Some(&learner), None).await?;
    assert_eq!(inbox.body["items"].as_array().map(Vec::len), Some(1), "in-app arrives at once: {inbox:?}");
    assert_eq!(emails_to(&infra.smtp, &email)?.len(), 1, "the email waits");

    // The schedule fires at the end of the quiet hours and the email goes out then, once.
    let wait = (end - time::OffsetDateTime::now_utc()).unsigned_abs() + Duration::from_secs(30);
    eventually(wait, "the held email", || async {
        let found = emails_to(&infra.smtp, &email)?;
        Ok((found.len() >= 2).then_some(()))
    })
    .await?;
    let arrived = time::OffsetDateTime::now_utc();
    assert!(arrived >= end - Duration::from_secs(1), "sent at {arrived}, quiet hours end at {end}");
    jobs_drained(&p).await?;
    assert_eq!(emails_to(&infra.smtp, &email)?.len(), 2);
    assert_eq!(email_deliveries(&db, &user_id, "enrolled").await?.pop().map(|(s, _)| s).as_deref(), Some("sent"));
    p.shutdown().await;
    Ok(())
}

/// Every dead letter in the `DLQ` stream: (subject, headers as name → value, payload).
async fn dead_letters(p: &Platform) -> Result<Vec<(String, Vec<(String, String)>, Vec<u8>)>> {
    let js = async_nats::jetstream::new(p.nats_client().await?);
    let mut stream = js.get_stream(coursebus_contracts::subjects::dlq::STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut letters = Vec::new();
    for seq in 1..=last {
        let Ok(message) = stream.get_raw_message(seq).await else { continue };
        if !message.subject.starts_with("cb.dlq.") {
            continue;
        }
        let headers = message
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.first().map(|v| v.to_string()).unwrap_or_default()))
            .collect();
        letters.push((message.subject.to_string(), headers, message.payload.to_vec()));
    }
    Ok(letters)
}

fn dlq_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

pub async fn poison_jobs_land_in_the_dlq_never_looping(infra: Arc<Infra>) -> Result<()> {
    use coursebus_contracts::subjects::dlq;
    let mut p = options(0).start(&infra).await?;
    let mut config = p.notifications_config();
    config.max_deliver = 3;
    config.retry = RetryPolicy { first: Duration::from_millis(50), cap: Duration::from_millis(50) };
    p.start_notifications_replica_with(config);
    p.wait_replicas("notifications", 1).await?;
    let js = async_nats::jetstream::new(p.nats_client().await?);

    // Not a job at all: parked at once with the reason.
    js.publish(subj::JOB_DELIVER, bytes::Bytes::from_static(b"{\"not\": \"a job\"}")).await?.await?;
    // A job no replica can handle (an in-app welcome has no template): it fails every time, and
    // its third (last) delivery parks it in the DLQ with the failure.
    let poison = NotificationJob {
        id: Uuid::now_v7(),
        kind: NotificationKind::Welcome,
        user_id: Uuid::now_v7(),
        channels: vec![Channel::InApp],
        data: json!({}),
        source_event: None,
        created_at: time::OffsetDateTime::now_utc(),
    };
    let message = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&poison)?.into())
        .message_id(poison.id.to_string());
    js.send_publish(subj::JOB_DELIVER, message).await?.await?;

    let letters = eventually(WAIT, "two dead letters", || async {
        let letters = dead_letters(&p).await?;
        Ok((letters.len() >= 2).then_some(letters))
    })
    .await?;
    jobs_drained(&p).await?;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let copy = dlq::copy(subj::JOB_STREAM, subj::SENDER_CONSUMER);
    let malformed = letters.iter().find(|(_, _, body)| body.starts_with(b"{\"not\"")).context("the malformed one")?;
    assert_eq!(malformed.0, copy);
    assert!(
        dlq_header(&malformed.1, dlq::HEADER_REASON).is_some_and(|r| r.starts_with("malformed job")),
        "{malformed:?}"
    );
    assert_eq!(dlq_header(&malformed.1, dlq::HEADER_SUBJECT), Some(subj::JOB_DELIVER));
    let stuck = letters.iter().find(|(_, _, body)| !body.starts_with(b"{\"not\"")).context("the poison job")?;
    assert_eq!(stuck.0, copy);
    assert_eq!(serde_json::from_slice::<NotificationJob>(&stuck.2)?, poison, "the original payload, unchanged");
    assert!(
        dlq_header(&stuck.1, dlq::HEADER_REASON).is_some_and(
            |r| r.starts_with(&format!("given up after 3 deliveries: notification {}: template", poison.id))
        ),
        "{stuck:?}"
    );
    assert_eq!(dlq_header(&stuck.1, dlq::HEADER_DELIVERIES), Some("3"));
    assert_eq!(dlq_header(&stuck.1, dlq::HEADER_STREAM), Some(subj::JOB_STREAM));
    p.shutdown().await;
    Ok(())
}

pub async fn a_new_deployment_does_not_greet_old_accounts(infra: Arc<Infra>) -> Result<()> {
    // Accounts from before notifications was deployed.
    let mut p = options(0).start(&infra).await?;
    let old = address("veteran");
    let (old_id, _) = user(&p, &old).await?;
    let nats = p.nats_client().await?;
    eventually(WAIT, "the old registration in EVT_IDENTITY", || async {
        let events = crate::support::stream_events(
            &nats,
            coursebus_contracts::subjects::identity::EVENT_STREAM,
            coursebus_contracts::subjects::identity::EVT_USER_REGISTERED,
        )
        .await?;
        Ok(events.iter().any(|(e, _)| e["data"]["user_id"] == old_id.as_str()).then_some(()))
    })
    .await?;
    // Deployed now, looking back no further than now: the stored registration is history.
    let mut config = p.notifications_config();
    config.source_lookback = Duration::ZERO;
    p.start_notifications_replica_with(config.clone());
    p.wait_replicas("notifications", 1).await?;
    // A new account is news; a second replica joins the same consumer where it stands.
    let new = address("newcomer");
    user(&p, &new).await?;
    wait_emails(&infra.smtp, &new, 1).await?;
    p.start_notifications_replica_with(config);
    p.wait_replicas("notifications", 2).await?;
    let newer = address("newest");
    user(&p, &newer).await?;
    wait_emails(&infra.smtp, &newer, 1).await?;
    jobs_drained(&p).await?;
    assert!(emails_to(&infra.smtp, &old)?.is_empty(), "history is not news");
    assert_eq!(emails_to(&infra.smtp, &new)?.len(), 1);
    p.shutdown().await;
    Ok(())
}

pub async fn a_republished_course_tells_its_learners(infra: Arc<Infra>) -> Result<()> {
    let p = options(1).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let course = create_course(&p, &teacher, "Evolving Course", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let email = address("follower");
    let (_, learner) = user(&p, &email).await?;
    let (_, bystander) = user(&p, &address("bystander")).await?;
    enrol(&p, &learner, &course).await?;
    wait_emails(&infra.smtp, &email, 2).await?;

    // The instructor adds a lesson and publishes again.
    publish_with_lessons(&p, &teacher, &course, 2).await?;
    let update = eventually(WAIT, "the course update in the learner's inbox", || async {
        let inbox = call(&p, Method::GET, "/v1/notifications", Some(&learner), None).await?;
        Ok(inbox.body["items"]
            .as_array()
            .and_then(|items| items.iter().find(|n| n["kind"] == "course_updated").cloned()))
    })
    .await?;
    assert_eq!(update["title"], "Evolving Course: New version published", "{update}");
    assert_eq!(update["body"], "\"Evolving Course\" was updated: the course now has 2 lessons.");
    let mails = wait_emails(&infra.smtp, &email, 3).await?;
    assert_eq!(mails.iter().filter(|m| header(m, "Subject") == Some("Evolving Course was updated")).count(), 1);
    jobs_drained(&p).await?;
    let theirs = call(&p, Method::GET, "/v1/notifications", Some(&bystander), None).await?;
    assert_eq!(theirs.body["items"], json!([]), "not enrolled, not told");
    assert_eq!(emails_to(&infra.smtp, &email)?.len(), 3, "welcome, enrolled, updated: once each");
    p.shutdown().await;
    Ok(())
}

pub async fn an_event_given_up_on_is_kept_in_the_dlq(infra: Arc<Infra>) -> Result<()> {
    use coursebus_contracts::subjects::{dlq, enrollment};
    let mut p = options(0).with(Service::Catalog, 1).with(Service::Enrollment, 1).start(&infra).await?;
    let (_, teacher) = instructor(&p, &address("teacher")).await?;
    let course = create_course(&p, &teacher, "Unreachable Catalog", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let (_, learner) = user(&p, &address("stranded")).await?;
    enrol(&p, &learner, &course).await?;
    // The enrolment email needs the course from the catalog, which is gone when notifications
    // starts: the event fails every time and, after 3 deliveries, is parked.
    p.stop_replicas("catalog").await;
    let mut config = p.notifications_config();
    config.max_deliver = 3;
    config.retry = RetryPolicy { first: Duration::from_millis(50), cap: Duration::from_millis(50) };
    config.common.call_deadline = Duration::from_millis(300);
    p.start_notifications_replica_with(config);
    p.wait_replicas("notifications", 1).await?;
    let copy = dlq::copy(enrollment::EVENT_STREAM, subj::ENROLLMENT_CONSUMER);
    let letter = eventually(WAIT, "the enrolment event in the DLQ", || async {
        Ok(dead_letters(&p).await?.into_iter().find(|(subject, _, _)| *subject == copy))
    })
    .await?;
    assert_eq!(dlq_header(&letter.1, dlq::HEADER_SUBJECT), Some(enrollment::EVT_ENROLMENT_CREATED));
    assert_eq!(dlq_header(&letter.1, dlq::HEADER_DELIVERIES), Some("3"));
    assert!(
        dlq_header(&letter.1, dlq::HEADER_REASON).is_some_and(|r| r.starts_with("event given up after 3 deliveries")),
        "{letter:?}"
    );
    let event: Value = serde_json::from_slice(&letter.2)?;
    assert_eq!(event["data"]["course_id"], course["id"], "the original event, unchanged");
    p.shutdown().await;
    Ok(())
}
