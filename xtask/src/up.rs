//! `cargo xtask up`: the whole platform on this machine, with demo data.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use xtask::process::{start_logged, wait_http_ok};
use xtask::stack::{Durability, Maildev, Mongo, Nats, Postgres, Smtp, Stripe, StripeWebhook, Tools, workspace_root};

const NATS_PORT: u16 = 4222;
const NATS_MONITOR_PORT: u16 = 8222;
const PG_PORT: u16 = 54329;
const MONGO_PORT: u16 = 27018;
const SMTP_PORT: u16 = 2525;
const MAILDEV_WEB_PORT: u16 = 1080;
const S3_PORT: u16 = 9000;
const STRIPE_PORT: u16 = 8420;
/// The local Stripe's keys (localstripe accepts any `sk_`/`pk_` key; it listens on loopback only).
const STRIPE_SECRET_KEY: &str = "sk_test_coursebus_dev";
const STRIPE_WEBHOOK_SECRET: &str = "whsec_coursebus_dev";
/// The local S3's key pair (the server only listens on loopback).
const S3_ACCESS_KEY: &str = "coursebus-dev";
const S3_SECRET_KEY: &str = "coursebus-dev-secret-2026";
const GATEWAY: &str = "127.0.0.1:8080";
const ADMIN_EMAIL: &str = "admin@coursebus.local";
const DEMO_PASSWORD: &str = "coursebus-demo-2026";

const WORKERS: [&str; 9] = [
    "coursebus-worker-identity",
    "coursebus-worker-catalog",
    "coursebus-worker-search",
    "coursebus-worker-enrollment",
    "coursebus-worker-notifications",
    "coursebus-worker-content",
    "coursebus-worker-media",
    "coursebus-worker-payments",
    "coursebus-worker-assessment",
];

fn port(var: &str, default: u16) -> Result<u16> {
    match std::env::var(var) {
        Ok(v) => v.parse().with_context(|| format!("{var} must be a port number")),
        Err(_) => Ok(default),
    }
}

pub fn run() -> Result<ExitCode> {
    let root = workspace_root();
    let tools = Tools::ensure(&root)?;
    eprintln!("xtask: building the gateway and the workers");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-p", "coursebus-gateway"])
        .args(WORKERS.iter().flat_map(|w| ["-p", w]))
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let bin =
        std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target")).join("debug");

    let data = root.join(".stack/data");
    let logs = root.join(".stack/logs");
    std::fs::create_dir_all(&logs)?;
    let nats = Nats::start(
        &tools,
        &data.join("nats"),
        port("CB_UP_NATS_PORT", NATS_PORT)?,
        port("CB_UP_NATS_MONITOR_PORT", NATS_MONITOR_PORT)?,
        &logs.join("nats.log"),
    )
    .context("starting nats-server (is another one using the port? set CB_UP_NATS_PORT)")?;
    let pg = Postgres::start(
        &tools,
        &data.join("pg"),
        port("CB_UP_PG_PORT", PG_PORT)?,
        Durability::Durable,
        &logs.join("postgres.log"),
    )
    .context("starting PostgreSQL (set CB_UP_PG_PORT to use another port)")?;
    let mongo =
        Mongo::start(&tools, &data.join("mongo"), port("CB_UP_MONGO_PORT", MONGO_PORT)?, &logs.join("mongo.log"))
            .context("starting the MongoDB-wire server (set CB_UP_MONGO_PORT to use another port)")?;
    pg.create_database("identity")?;
    pg.create_database("enrollment")?;
    pg.create_database("notifications")?;
    pg.create_database("content")?;
    pg.create_database("payments")?;
    pg.create_database("assessment")?;
    let s3 =
        xtask::s3::S3Server::start(&data.join("s3"), port("CB_UP_S3_PORT", S3_PORT)?, S3_ACCESS_KEY, S3_SECRET_KEY)
            .context("starting the S3 server (set CB_UP_S3_PORT to use another port)")?;
    // Where the platform's emails go: MailDev with its web UI, or (without Node.js) aiosmtpd
    // writing a maildir.
    let smtp_port = port("CB_UP_SMTP_PORT", SMTP_PORT)?;
    let smtp = match Maildev::install(&root) {
        Ok(bin) => Mail::Maildev(
            Maildev::start(
                &bin,
                &data.join("maildev"),
                smtp_port,
                port("CB_UP_MAILDEV_PORT", MAILDEV_WEB_PORT)?,
                &logs.join("maildev.log"),
            )
            .context("starting MailDev (set CB_UP_SMTP_PORT / CB_UP_MAILDEV_PORT to use other ports)")?,
        ),
        Err(err) => {
            eprintln!("xtask: MailDev is not available ({err:#}); emails go to a maildir instead");
            Mail::Maildir(
                Smtp::start(&tools, &data.join("maildir"), smtp_port, &logs.join("smtp.log"))
                    .context("starting the SMTP sink (set CB_UP_SMTP_PORT to use another port)")?,
            )
        }
    };
    let gateway_addr = std::env::var("CB_UP_GATEWAY").unwrap_or_else(|_| GATEWAY.into());
    // Stripe: localstripe, delivering webhooks to the gateway, its store kept in .stack/data.
    let webhook = StripeWebhook {
        url: format!("http://{gateway_addr}/v1/payments/webhooks/stripe"),
        secret: STRIPE_WEBHOOK_SECRET.into(),
    };
    let mut stripe = Stripe::start(
        &tools,
        port("CB_UP_STRIPE_PORT", STRIPE_PORT)?,
        Some(&webhook),
        Some(&data.join("localstripe.pickle")),
        &logs.join("localstripe.log"),
    )
    .context("starting localstripe (set CB_UP_STRIPE_PORT to use another port)")?;

    let mut workers = Vec::new();
    for replica in 1..=2 {
        let mut cmd = Command::new(bin.join("coursebus-worker-identity"));
        cmd.env("CB_NATS_URL", nats.url())
            .env("CB_IDENTITY_DATABASE_URL", pg.url("identity"))
            .env("CB_IDENTITY_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("CB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD", DEMO_PASSWORD);
        workers.push(start_logged(cmd, &format!("identity-{replica}"), &logs)?);
        let mut cmd = Command::new(bin.join("coursebus-worker-catalog"));
        cmd.env("CB_NATS_URL", nats.url()).env("CB_CATALOG_MONGODB_URL", mongo.url());
        workers.push(start_logged(cmd, &format!("catalog-{replica}"), &logs)?);
        let mut cmd = Command::new(bin.join("coursebus-worker-search"));
        cmd.env("CB_NATS_URL", nats.url());
        workers.push(start_logged(cmd, &format!("search-{replica}"), &logs)?);
        let mut cmd = Command::new(bin.join("coursebus-worker-enrollment"));
        cmd.env("CB_NATS_URL", nats.url()).env("CB_ENROLLMENT_DATABASE_URL", pg.url("enrollment"));
        workers.push(start_logged(cmd, &format!("enrollment-{replica}"), &logs)?);
        let mut cmd = Command::new(bin.join("coursebus-worker-notifications"));
        cmd.env("CB_NATS_URL", nats.url())
            .env("CB_NOTIFICATIONS_DATABASE_URL", pg.url("notifications"))
            .env("CB_SMTP_URL", smtp.url())
            .env("CB_APP_URL", format!("http://{gateway_addr}"));
        workers.push(start_logged(cmd, &format!("notifications-{replica}"), &logs)?);
        let s3_env = [
            ("CB_S3_ENDPOINT", s3.endpoint.as_str()),
            ("CB_S3_ACCESS_KEY", S3_ACCESS_KEY),
            ("CB_S3_SECRET_KEY", S3_SECRET_KEY),
        ];
        let mut cmd = Command::new(bin.join("coursebus-worker-content"));
        cmd.env("CB_NATS_URL", nats.url()).env("CB_CONTENT_DATABASE_URL", pg.url("content")).envs(s3_env);
        workers.push(start_logged(cmd, &format!("content-{replica}"), &logs)?);
        let mut cmd = Command::new(bin.join("coursebus-worker-media"));
        cmd.env("CB_NATS_URL", nats.url()).env("CB_FFMPEG", &tools.ffmpeg).envs(s3_env);
        workers.push(start_logged(cmd, &format!("media-{replica}"), &logs)?);
        let mut cmd = Command::new(bin.join("coursebus-worker-payments"));
        cmd.env("CB_NATS_URL", nats.url())
            .env("CB_PAYMENTS_DATABASE_URL", pg.url("payments"))
            .env("CB_STRIPE_SECRET_KEY", STRIPE_SECRET_KEY)
            .env("CB_STRIPE_API_BASE", stripe.url());
        workers.push(start_logged(cmd, &format!("payments-{replica}"), &logs)?);
        let mut cmd = Command::new(bin.join("coursebus-worker-assessment"));
        cmd.env("CB_NATS_URL", nats.url()).env("CB_ASSESSMENT_DATABASE_URL", pg.url("assessment"));
        workers.push(start_logged(cmd, &format!("assessment-{replica}"), &logs)?);
    }
    let mut cmd = Command::new(bin.join("coursebus-gateway"));
    cmd.env("CB_NATS_URL", nats.url())
        .env("CB_GATEWAY_LISTEN", &gateway_addr)
        .env("CB_STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET);
    workers.push(start_logged(cmd, "gateway", &logs)?);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let base = format!("http://{gateway_addr}");
    runtime.block_on(async {
        wait_http_ok(&format!("{base}/readyz"), &mut workers)
            .await
            .context("the platform did not become ready (logs in .stack/logs)")?;
        seed(&base).await
    })?;

    println!(
        "\ncoursebus is up.\n\
         \n  REST API      {base}/v1\
         \n  API docs      {base}/docs   (OpenAPI: {base}/openapi.json)\
         \n  Metrics       {base}/metrics\
         \n  Health        {base}/healthz  {base}/readyz\
         \n  NATS          {}   (monitoring: http://127.0.0.1:{}/)\
         \n  PostgreSQL    {}\
         \n  MongoDB wire  {}\
         \n  S3            {}   (key {S3_ACCESS_KEY}, bucket coursebus-content)\
         \n  Stripe        {}   (localstripe; secret key {STRIPE_SECRET_KEY}, any pk_ key for Stripe.js)\
         \n  Emails        {}\
         \n  Logs          {}\
         \n\n  Demo users (password {DEMO_PASSWORD}):\
         \n    {ADMIN_EMAIL}  admin\
         \n    ada@coursebus.local    instructor\
         \n    sam@coursebus.local    student (enrolled in rust-from-scratch)\
         \n  Paid course async-rust-with-tokio (EUR 49.00, USD 55.00); coupon LAUNCH20 takes 20 % off.\
         \n\n  Try: curl '{base}/v1/search/courses?q=rsut'   (typo-tolerant search)\
         \n\nCtrl-C stops everything; data stays in {}.",
        nats.url(),
        nats.monitor_port,
        pg.url("identity"),
        mongo.url(),
        s3.endpoint,
        stripe.url(),
        smtp.describe(),
        logs.display(),
        data.display(),
    );

    let outcome = runtime.block_on(async {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            for w in &mut workers {
                if let Some(status) = w.exited() {
                    bail!("{} exited ({status}); last lines of {}:\n{}", w.name, w.log.display(), w.log_tail(20));
                }
            }
        }
    });
    eprintln!("\nxtask: stopping");
    for mut w in workers.into_iter().rev() {
        w.stop(Duration::from_secs(10));
    }
    drop(nats);
    drop(mongo);
    drop(s3);
    stripe.stop();
    smtp.stop();
    drop(pg);
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// Demo users; a second `up` finds them already there.
async fn seed(base: &str) -> Result<()> {
    let http = reqwest::Client::new();
    for (email, name) in [("ada@coursebus.local", "Ada Lovelace"), ("sam@coursebus.local", "Sam Student")] {
        let resp = http
            .post(format!("{base}/v1/auth/register"))
            .json(&json!({ "email": email, "password": DEMO_PASSWORD, "display_name": name }))
            .send()
            .await?;
        if !(resp.status().is_success() || resp.status() == reqwest::StatusCode::CONFLICT) {
            bail!("seeding {email}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
    }
    let token = |email: &'static str| {
        let http = http.clone();
        async move {
            let resp = http
                .post(format!("{base}/v1/auth/login"))
                .json(&json!({ "email": email, "password": DEMO_PASSWORD }))
                .send()
                .await?;
            let body: serde_json::Value = resp.json().await?;
            body["access_token"].as_str().map(str::to_owned).with_context(|| format!("login of {email}: {body}"))
        }
    };
    let admin = token(ADMIN_EMAIL).await?;
    let ada = token("ada@coursebus.local").await?;
    let me: serde_json::Value = http.get(format!("{base}/v1/me")).bearer_auth(&ada).send().await?.json().await?;
    let ada_id = me["id"].as_str().context("ada's id")?;
    let resp = http.put(format!("{base}/v1/users/{ada_id}/roles/instructor")).bearer_auth(&admin).send().await?;
    if !resp.status().is_success() {
        bail!("granting instructor to ada: {}", resp.status());
    }
    // A fresh token carries the new role.
    let ada = token("ada@coursebus.local").await?;
    wait_answering(&http, &format!("{base}/v1/courses?mine=true"), &ada, "catalog").await?;
    let mut first = None;
    for course in demo_courses() {
        let slug = course["slug"].as_str().unwrap_or_default().to_owned();
        let existing = http.get(format!("{base}/v1/courses/{slug}")).send().await?;
        let id = if existing.status().is_success() {
            existing.json::<serde_json::Value>().await?["id"].as_str().unwrap_or_default().to_owned()
        } else {
            publish_demo(&http, base, &ada, course).await?
        };
        first.get_or_insert(id);
    }
    // A launch coupon for the paid course (a second `up` finds it: 409).
    wait_answering(&http, &format!("{base}/v1/payments/orders"), &admin, "payments").await?;
    let resp = http
        .post(format!("{base}/v1/payments/coupons"))
        .bearer_auth(&admin)
        .json(&json!({"code": "LAUNCH20", "discount": {"percent": 20}}))
        .send()
        .await?;
    if !(resp.status().is_success() || resp.status() == reqwest::StatusCode::CONFLICT) {
        bail!("creating the demo coupon: {} {}", resp.status(), resp.text().await.unwrap_or_default());
    }
    // Sam enrols in the first one (a second `up` finds the enrolment and gets it back).
    let sam = token("sam@coursebus.local").await?;
    wait_answering(&http, &format!("{base}/v1/enrollments"), &sam, "enrollment").await?;
    if let Some(course) = first {
        let resp = http
            .post(format!("{base}/v1/enrollments"))
            .bearer_auth(&sam)
            .json(&json!({"course_id": course}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("enrolling sam: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
    }
    Ok(())
}

/// Poll `GET url` as the holder of `token` until it succeeds (the worker behind it is serving),
/// for up to 60 s.
async fn wait_answering(http: &reqwest::Client, url: &str, token: &str, what: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if http.get(url).bearer_auth(token).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the {what} worker did not answer within 60 s; see .stack/logs");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn demo_courses() -> Vec<serde_json::Value> {
    let lessons = |titles: &[&str]| -> Vec<serde_json::Value> {
        titles.iter().map(|t| json!({"title": t, "kind": "video", "duration_secs": 600})).collect()
    };
    vec![
        json!({"course": {"title": "Rust from Scratch", "slug": "rust-from-scratch", "language": "en", "level": "beginner",
            "summary": "Ownership, borrowing and the type system, one small program at a time.",
            "description": "A hands-on introduction to Rust for programmers coming from other languages.",
            "tags": ["rust", "programming"], "price": {"amount_minor": 0, "currency": "EUR"}},
          "modules": [{"title": "Getting started", "lessons": lessons(&["Installing Rust", "Hello, cargo"])},
                      {"title": "Ownership", "release_after_days": 7, "lessons": lessons(&["Moves", "Borrows"])}],
          "slug": "rust-from-scratch"}),
        json!({"course": {"title": "Async Rust with Tokio", "slug": "async-rust-with-tokio", "language": "en", "level": "advanced",
            "summary": "Futures, tasks and channels for network services.",
            "description": "Build a chat server and learn how async executors schedule work.",
            "tags": ["rust", "async"], "price": {"amount_minor": 4900, "currency": "EUR"},
            "other_prices": [{"amount_minor": 5500, "currency": "USD"}]},
          "modules": [{"title": "Futures", "lessons": lessons(&["What a future is", "Pinning"])}],
          "slug": "async-rust-with-tokio"}),
        json!({"course": {"title": "SQL for Analysts", "slug": "sql-for-analysts", "language": "en", "level": "intermediate",
            "summary": "Joins, window functions and query plans.", "description": "Answer real questions with PostgreSQL.",
            "tags": ["sql", "data"], "price": {"amount_minor": 0, "currency": "EUR"}},
          "modules": [{"title": "Queries", "lessons": lessons(&["SELECT", "JOIN", "Window functions"])}],
          "slug": "sql-for-analysts"}),
    ]
}

/// Create, outline and publish one demo course; its id.
async fn publish_demo(http: &reqwest::Client, base: &str, token: &str, demo: serde_json::Value) -> Result<String> {
    async fn send(req: reqwest::RequestBuilder, what: &str) -> Result<serde_json::Value> {
        let resp = req.send().await?;
        if !resp.status().is_success() {
            bail!("{what}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        Ok(resp.json().await?)
    }
    let course = send(
        http.post(format!("{base}/v1/courses")).bearer_auth(token).json(&demo["course"]),
        "creating a demo course",
    )
    .await?;
    let id = course["id"].as_str().context("course id")?.to_owned();
    let outlined = send(
        http.put(format!("{base}/v1/courses/{id}/outline"))
            .bearer_auth(token)
            .json(&json!({"version": course["version"], "modules": demo["modules"]})),
        "outlining a demo course",
    )
    .await?;
    send(
        http.post(format!("{base}/v1/courses/{id}/publish"))
            .bearer_auth(token)
            .json(&json!({"version": outlined["version"]})),
        "publishing a demo course",
    )
    .await?;
    Ok(id)
}

/// The SMTP server `up` runs.
enum Mail {
    Maildev(Maildev),
    Maildir(Smtp),
}

impl Mail {
    fn url(&self) -> String {
        match self {
            Mail::Maildev(m) => m.url(),
            Mail::Maildir(s) => s.url(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Mail::Maildev(m) => format!("MailDev web UI http://127.0.0.1:{}/   (SMTP {})", m.web_port, m.url()),
            Mail::Maildir(s) => format!("SMTP sink {}   (emails land in {}/new)", s.url(), s.maildir.display()),
        }
    }

    fn stop(self) {
        match self {
            Mail::Maildev(mut m) => m.stop(),
            Mail::Maildir(mut s) => s.stop(),
        }
    }
}
