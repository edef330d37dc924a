//! The notifications part of `cargo xtask bench` (`--only notifications` runs it alone):
//!
//! 1. An announcement to a course with [`LEARNERS`] enrolled learners: the time until every
//!    in-app notification is stored (the announcement reports `done`), until the last of
//!    [`SOCKETS`] connected learners' WebSockets received its push, and until every learner's
//!    email/SMS job is settled (the queue is empty).
//! 2. Email throughput to the local SMTP server (aiosmtpd): [`EMAILS`] email jobs queued at once,
//!    delivered by 1 and then 2 sender replicas.
//!
//! [`SOCKETS`] learners are real (registered, enrolled and connected through the gateway); the
//! rest are enrolment rows inserted straight into enrollment's database, with user ids that sort
//! before the real ones (the fan-out pages in user id order, so the connected learners are
//! reached last: the push time is the worst case) (registering 10,000
//! accounts through argon2 would measure identity, not notifications), with announcement emails
//! turned off, as many learners do, so the fan-out is measured, not the SMTP server. Phase 2
//! measures the SMTP path separately.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use coursebus_contracts::notifications::{Channel, NotificationJob, NotificationKind};
use coursebus_contracts::subjects::notifications as subj;
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{PASSWORD, publish_course, send, start, token, wait_replicas};
use crate::process::{Server, wait_http_ok};
use crate::stack::{Durability, Mongo, Nats, Postgres, Smtp, Tools, free_port};

/// Learners enrolled in the announced course.
pub const LEARNERS: usize = 10_000;
/// Of them, registered learners with an open WebSocket.
pub const SOCKETS: usize = 100;
/// Emails per throughput run.
pub const EMAILS: usize = 2_000;
/// Target: every in-app notification stored within this.
const TARGET: Duration = Duration::from_secs(10);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Run both measurements on a stack of their own; returns the report section.
pub fn run(tools: &Tools, release: &Path, logs: &Path) -> Result<String> {
    let dir = tempfile::Builder::new().prefix("coursebus-bench-notify-").tempdir()?;
    let nats = Nats::start(tools, &dir.path().join("nats"), 0, 0, &logs.join("notify-nats.log"))?;
    let pg = Postgres::start(tools, &dir.path().join("pg"), 0, Durability::Durable, &logs.join("notify-pg.log"))?;
    let mongo = Mongo::start(tools, &dir.path().join("mongo"), 0, &logs.join("notify-mongo.log"))?;
    let mut smtp = Smtp::start(tools, &dir.path().join("maildir"), 0, &logs.join("notify-smtp.log"))?;
    for db in ["identity", "enrollment", "notifications"] {
        pg.create_database(db)?;
    }
    let gateway = format!("127.0.0.1:{}", free_port()?);
    let bin = |name: &str| release.join(name);
    let mut procs: Vec<Server> = super::start_core(release, &nats, &pg, &mongo, "notify", logs)?;
    let notifications = |replica: usize| -> Result<Server> {
        let mut cmd = Command::new(bin("coursebus-worker-notifications"));
        cmd.env("CB_NATS_URL", nats.url())
            .env("CB_NOTIFICATIONS_DATABASE_URL", pg.url("notifications"))
            .env("CB_SMTP_URL", smtp.url())
            .env("CB_APP_URL", format!("http://{gateway}"));
        start(cmd, &format!("notify-notifications-{replica}"), logs)
    };
    procs.push(notifications(1)?);
    let mut cmd = Command::new(bin("coursebus-gateway"));
    cmd.env("CB_NATS_URL", nats.url()).env("CB_GATEWAY_LISTEN", &gateway).env("CB_GATEWAY_TRUST_FORWARDED_FOR", "true");
    procs.push(start(cmd, "notify-gateway", logs)?);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let base = format!("http://{gateway}");
        wait_http_ok(&format!("{base}/readyz"), &mut procs).await?;
        let nats = async_nats::connect(nats.url()).await?;
        let js = async_nats::jetstream::new(nats.clone());
        wait_replicas(&nats, subj::SERVICE, 1).await?;
        let enrollment_db = sqlx::PgPool::connect(&pg.url("enrollment")).await?;
        let notifications_db = sqlx::PgPool::connect(&pg.url("notifications")).await?;
        let fanout = announcement(&base, &js, &enrollment_db, &notifications_db).await?;
        let one = email_throughput(&js, &notifications_db).await?;
        procs.push(notifications(2)?);
        wait_replicas(&nats, subj::SERVICE, 2).await?;
        let two = email_throughput(&js, &notifications_db).await?;
        Ok::<_, anyhow::Error>(report(&fanout, one, two))
    });
    for mut p in procs.into_iter().rev() {
        p.stop(Duration::from_secs(5));
    }
    smtp.stop();
    outcome
}

/// What the announcement took.
struct Fanout {
    stored: Duration,
    pushed: Duration,
    settled: Duration,
    recipients: u64,
}

async fn announcement(
    base: &str,
    js: &async_nats::jetstream::Context,
    enrollment_db: &sqlx::PgPool,
    notifications_db: &sqlx::PgPool,
) -> Result<Fanout> {
    let http = reqwest::Client::new();
    let teacher =
        super::instructor(&http, base, "notify-teacher@coursebus.test", "Announcing Teacher", "10.2.0").await?;
    let (course, _) = publish_course(&http, base, &teacher, 0).await?;

    eprintln!("bench: {SOCKETS} learners register, enrol and open a WebSocket");
    let learners: Vec<Result<Socket>> = futures::stream::iter(0..SOCKETS)
        .map(|i| {
            let (http, course) = (http.clone(), course.clone());
            async move {
                let email = format!("notify-learner-{i}@coursebus.test");
                let client = format!("10.3.{}.{}", i / 250, i % 250 + 1);
                send(
                    http.post(format!("{base}/v1/auth/register"))
                        .header("x-forwarded-for", &client)
                        .json(&json!({"email": email, "password": PASSWORD, "display_name": format!("Learner {i}")})),
                    201,
                )
                .await?;
                let token = token(&http, base, &email, &client).await?;
                send(
                    http.post(format!("{base}/v1/enrollments")).bearer_auth(&token).json(&json!({"course_id": course})),
                    201,
                )
                .await?;
                let url = format!("{}/v1/ws?access_token={token}", base.replacen("http", "ws", 1));
                let (socket, _) = tokio_tungstenite::connect_async(url).await?;
                Ok(socket)
            }
        })
        .buffered(8)
        .collect()
        .await;
    let sockets = learners.into_iter().collect::<Result<Vec<_>>>()?;

    let seeded = i64::try_from(LEARNERS - SOCKETS)?;
    eprintln!("bench: inserting {seeded} more enrolments (announcement emails off for them)");
    let users: Vec<Uuid> = sqlx::query_scalar(
        "WITH pinned AS (SELECT course_version FROM enrollments WHERE course_id = $1::uuid LIMIT 1) \
         INSERT INTO enrollments (id, user_id, course_id, course_version, status, required_total) \
         SELECT gen_random_uuid(), ('00' || substr(md5(random()::text), 3))::uuid, $1::uuid, \
                pinned.course_version, 'active', 3 \
         FROM pinned, generate_series(1, $2) RETURNING user_id",
    )
    .bind(&course)
    .bind(seeded)
    .fetch_all(enrollment_db)
    .await?;
    sqlx::query(
        "INSERT INTO preferences (user_id, kind, channel, enabled) \
         SELECT u, 'announcement', 'email', false FROM UNNEST($1::uuid[]) AS u",
    )
    .bind(&users)
    .execute(notifications_db)
    .await?;
    // The welcome and enrolment emails of the real learners go first.
    drained(js, Duration::from_secs(120)).await?;

    eprintln!("bench: announcing to {LEARNERS} learners");
    let started = Instant::now();
    let body = json!({"title": "Exam date", "body": "The final exam is on 15 December at 10:00 UTC."});
    let created =
        send(http.post(format!("{base}/v1/courses/{course}/announcements")).bearer_auth(&teacher).json(&body), 202)
            .await?;
    let id = created["id"].as_str().context("announcement id")?.to_owned();
    let waits = sockets.into_iter().map(|socket| async move { announcement_push(socket, started).await });
    let pushes = futures::future::join_all(waits);
    let status = async {
        loop {
            let reply =
                send(http.get(format!("{base}/v1/courses/{course}/announcements/{id}")).bearer_auth(&teacher), 200)
                    .await?;
            if reply["status"] == "done" {
                return Ok::<_, anyhow::Error>((started.elapsed(), reply["recipients"].as_u64().unwrap_or(0)));
            }
            ensure!(started.elapsed() < Duration::from_secs(120), "the fan-out did not finish in 2 minutes: {reply}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (pushed, stored) = tokio::join!(pushes, status);
    let (stored, recipients) = stored?;
    let pushed = pushed.into_iter().collect::<Result<Vec<_>>>()?.into_iter().max().unwrap_or_default();
    drained(js, Duration::from_secs(300)).await?;
    let settled = started.elapsed();
    ensure!(recipients == LEARNERS as u64, "{recipients} of {LEARNERS} learners got the announcement");
    Ok(Fanout { stored, pushed, settled, recipients })
}

/// When `socket` received the announcement's push, counted from `started`.
async fn announcement_push(mut socket: Socket, started: Instant) -> Result<Duration> {
    let deadline = Duration::from_secs(120);
    loop {
        let frame = tokio::time::timeout(deadline.saturating_sub(started.elapsed()), socket.next())
            .await
            .context("no announcement push within 2 minutes")?
            .context("the socket closed")??;
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let push: Value = serde_json::from_str(&text)?;
            if push["notification"]["kind"] == "announcement" {
                let at = started.elapsed();
                let _ = socket.close(None).await;
                return Ok(at);
            }
        }
    }
}

/// Wait until `JOB_NOTIFY` is empty (every job acknowledged).
async fn drained(js: &async_nats::jetstream::Context, within: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let mut stream = js.get_stream(subj::JOB_STREAM).await?;
        if stream.info().await?.state.messages == 0 {
            return Ok(());
        }
        ensure!(started.elapsed() < within, "JOB_NOTIFY did not drain within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Queue [`EMAILS`] email jobs to fresh recipients at once; emails per second until all are sent.
async fn email_throughput(js: &async_nats::jetstream::Context, db: &sqlx::PgPool) -> Result<f64> {
    let users: Vec<Uuid> = (0..EMAILS).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO recipients (user_id, email, display_name) \
         SELECT u, 'bench-' || u || '@example.com', 'Bench Learner' FROM UNNEST($1::uuid[]) AS u",
    )
    .bind(&users)
    .execute(db)
    .await?;
    let ids: Vec<Uuid> = users.iter().map(|_| Uuid::now_v7()).collect();
    eprintln!("bench: {EMAILS} emails to the SMTP server");
    let started = Instant::now();
    let mut acks = Vec::with_capacity(EMAILS);
    for (id, user) in ids.iter().zip(&users) {
        let job = NotificationJob {
            id: *id,
            kind: NotificationKind::Enrolled,
            user_id: *user,
            channels: vec![Channel::Email],
            data: json!({"course_id": Uuid::nil(), "course_title": "Throughput", "link": "/courses/throughput"}),
            source_event: None,
            created_at: time::OffsetDateTime::now_utc(),
        };
        let message = async_nats::jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(&job)?.into())
            .message_id(id.to_string());
        acks.push(js.send_publish(subj::JOB_DELIVER, message).await?);
    }
    for ack in acks {
        ack.await?;
    }
    loop {
        let sent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE notification_id = ANY($1) AND channel = 'email' AND status = 'sent'",
        )
        .bind(&ids)
        .fetch_one(db)
        .await?;
        if sent == EMAILS as i64 {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(600), "only {sent} of {EMAILS} emails sent in 10 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = EMAILS as f64 / started.elapsed().as_secs_f64();
    eprintln!("bench:   {rate:.0} emails/s");
    Ok(rate)
}

fn report(f: &Fanout, one: f64, two: f64) -> String {
    let secs = |d: Duration| format!("{:.2}", d.as_secs_f64());
    let verdict = if f.stored < TARGET { "met" } else { "NOT met" };
    format!(
        "\n### Notifications: announcement fan-out and email\n\n\
         | measure | value | target |\n|---|---:|---|\n\
         | announcement to {LEARNERS} enrolled learners: all {} in-app notifications stored (s) | {} | < {} s: {verdict} |\n\
         | … the last of {SOCKETS} connected WebSockets got the push (s) | {} | — |\n\
         | … every learner's email/SMS job settled, queue empty (s) | {} | — |\n\
         | email throughput to aiosmtpd, 1 sender replica (emails/s, {EMAILS} queued) | {one:.0} | — |\n\
         | email throughput, 2 sender replicas (emails/s) | {two:.0} | — |\n\
         | 2 replicas ÷ 1 | {:.2} | — |\n",
        f.recipients,
        secs(f.stored),
        TARGET.as_secs(),
        secs(f.pushed),
        secs(f.settled),
        two / one,
    )
}
