//! `cargo xtask bench`: the platform against a monolith baseline and the raw ceilings, measured
//! in one run on this machine.
//!
//! Everything runs from release builds as separate processes on loopback: NATS, PostgreSQL, the
//! MongoDB-wire server, two replicas each of identity, catalog and enrollment, one gateway, the
//! monolith baseline (axum + sqlx), an axum hello-world and two NATS echo services. The load
//! generator (this process) keeps 64 requests in flight, one per connection, and records
//! every latency. Each scenario runs `--runs` times (default 3), interleaved, and the run with
//! the median throughput is reported.
//!
//! The notifications, media and quiz measurements run on stacks of their own (`notify.rs`,
//! `media.rs`, `quiz.rs`: 3,000 learners start the same quiz within one second).

mod baseline;
pub mod cpu;
pub mod load;
mod media;
mod notify;
mod quiz;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::process::{Server, start_logged, wait_http_ok};
use crate::stack::{Durability, Mongo, Nats, Postgres, Tools, free_port, workspace_root};
use load::{Sample, closed_loop, median};

pub use baseline::serve;

const CONCURRENCY: usize = 64;
/// The monolith's database pool; the platform's enrollment replicas share the same number.
pub(crate) const MONOLITH_DB_CONNECTIONS: u32 = 32;
const COURSES: usize = 500;
/// Learners per connection: with [`COURSES`] courses each connection has 4 × 500 distinct
/// (learner, course) pairs, so every enrolment the bench sends is a new one.
const LEARNERS_PER_CONNECTION: usize = 4;
const ADMIN_EMAIL: &str = "bench-admin@coursebus.test";
const PASSWORD: &str = "bench-password-2026";

const PACKAGES: &[&str] = &[
    "xtask",
    "coursebus-gateway",
    "coursebus-worker-identity",
    "coursebus-worker-catalog",
    "coursebus-worker-enrollment",
    "coursebus-worker-notifications",
    "coursebus-worker-content",
    "coursebus-worker-media",
    "coursebus-worker-assessment",
];

#[derive(Debug, Clone, Copy)]
struct Settings {
    runs: usize,
    warmup: Duration,
    duration: Duration,
    /// Run the HTTP scenarios (read, write, ceilings).
    http: bool,
    /// Run the notifications measurements (announcement fan-out, email throughput).
    notifications: bool,
    /// Run the media measurements (pipeline overhead over raw ffmpeg, transcode throughput).
    media: bool,
    /// Run the synchronised quiz start.
    quiz: bool,
    /// Learners who take the quiz (`--learners N`).
    learners: usize,
    /// How long after its start a quiz learner answers (`--think-ms N`).
    think: Duration,
}

fn settings(args: &[String]) -> Result<Settings> {
    let mut s = Settings {
        runs: 5,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        http: true,
        notifications: true,
        media: true,
        quiz: true,
        learners: quiz::LEARNERS,
        think: quiz::THINK,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value =
            || it.next().context("a value is missing").and_then(|v| v.parse::<u64>().context("not a number"));
        match arg.as_str() {
            "--runs" => s.runs = value()?.max(1) as usize,
            "--seconds" => s.duration = Duration::from_secs(value()?.max(1)),
            "--learners" => s.learners = value()?.max(1) as usize,
            "--think-ms" => s.think = Duration::from_millis(value()?),
            "--quick" => {
                s = Settings { runs: 1, warmup: Duration::from_millis(500), duration: Duration::from_secs(2), ..s }
            }
            "--only" => {
                let only = it.next().map(String::as_str);
                ensure!(
                    matches!(only, Some("http" | "notifications" | "media" | "quiz")),
                    "--only takes http, notifications, media or quiz"
                );
                s.http = only == Some("http");
                s.notifications = only == Some("notifications");
                s.media = only == Some("media");
                s.quiz = only == Some("quiz");
            }
            other => {
                bail!(
                    "unknown bench option {other} (--runs N, --seconds S, --quick, --learners N, --think-ms N, \
                     --only http|notifications|media|quiz)"
                )
            }
        }
    }
    Ok(s)
}

/// `cargo xtask bench [--runs N] [--seconds S] [--quick] [--learners N] [--think-ms N] [--only http|notifications|media|quiz]`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let settings = settings(args)?;
    let root = workspace_root();
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let release = target.join("release");
    if cfg!(debug_assertions) {
        // Measure optimised code only: build the release binaries and let the release xtask run.
        eprintln!("xtask: building release binaries for the benchmark");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root).args(["build", "--release", "--locked"]);
        for p in PACKAGES {
            cmd.args(["-p", p]);
        }
        ensure!(cmd.status().context("running cargo build")?.success(), "cargo build --release failed");
        let status = Command::new(release.join("xtask")).arg("bench").args(args).status()?;
        return Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let tools = Tools::ensure(&root)?;
    // Logs outlive the run (the servers' data does not).
    let logs = target.join("bench/logs");
    std::fs::create_dir_all(&logs)?;
    let mut report = String::new();
    if settings.http {
        report.push_str(&http(settings, &tools, &release, &logs)?);
    }
    if settings.notifications {
        eprintln!("bench: notifications (logs in {})", logs.display());
        report.push_str(&notify::run(&tools, &release, &logs)?);
    }
    if settings.media {
        eprintln!("bench: media (logs in {})", logs.display());
        report.push_str(&media::run(&tools, &release, &logs, settings.runs)?);
    }
    if settings.quiz {
        eprintln!("bench: quiz (logs in {})", logs.display());
        report.push_str(&quiz::run(&tools, &release, &logs, settings.learners, settings.think)?);
    }
    println!("{report}");
    let out = target.join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("latest.md"), &report)?;
    eprintln!("bench: written to {}", out.join("latest.md").display());
    Ok(ExitCode::SUCCESS)
}

/// The HTTP scenarios on a stack of their own; returns their report section.
fn http(settings: Settings, tools: &Tools, release: &Path, logs: &Path) -> Result<String> {
    let dir = tempfile::Builder::new().prefix("coursebus-bench-").tempdir()?;
    eprintln!("bench: starting the stack (logs in {})", logs.display());
    let nats = Nats::start(tools, &dir.path().join("nats"), 0, 0, &logs.join("nats.log"))?;
    let pg = Postgres::start(tools, &dir.path().join("pg"), 0, Durability::Durable, &logs.join("pg.log"))?;
    let mongo = Mongo::start(tools, &dir.path().join("mongo"), 0, &logs.join("mongo.log"))?;
    for db in ["identity", "enrollment", "monolith"] {
        pg.create_database(db)?;
    }
    let gateway = format!("127.0.0.1:{}", free_port()?);
    let monolith = format!("127.0.0.1:{}", free_port()?);
    let hello = format!("127.0.0.1:{}", free_port()?);

    let mut procs = Vec::new();
    let bin = |name: &str| release.join(name);
    for replica in 1..=2 {
        let mut cmd = Command::new(bin("coursebus-worker-identity"));
        cmd.env("CB_NATS_URL", nats.url())
            .env("CB_IDENTITY_DATABASE_URL", pg.url("identity"))
            .env("CB_IDENTITY_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("CB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD);
        procs.push(start(cmd, &format!("identity-{replica}"), logs)?);
        let mut cmd = Command::new(bin("coursebus-worker-catalog"));
        cmd.env("CB_NATS_URL", nats.url()).env("CB_CATALOG_MONGODB_URL", mongo.url());
        procs.push(start(cmd, &format!("catalog-{replica}"), logs)?);
        let mut cmd = Command::new(bin("coursebus-worker-enrollment"));
        // Both replicas together get the monolith's 32 database connections.
        cmd.env("CB_NATS_URL", nats.url())
            .env("CB_ENROLLMENT_DATABASE_URL", pg.url("enrollment"))
            .env("CB_ENROLLMENT_DB_MAX_CONNECTIONS", (MONOLITH_DB_CONNECTIONS / 2).to_string());
        procs.push(start(cmd, &format!("enrollment-{replica}"), logs)?);
        let mut cmd = Command::new(bin("xtask"));
        cmd.args(["__bench-serve", "echo", &nats.url()]);
        procs.push(start(cmd, &format!("echo-{replica}"), logs)?);
    }
    let mut cmd = Command::new(bin("coursebus-gateway"));
    // Each simulated client sends its own X-Forwarded-For, as behind a load balancer, so the
    // per-client limit on auth endpoints sees distinct clients during setup.
    cmd.env("CB_NATS_URL", nats.url()).env("CB_GATEWAY_LISTEN", &gateway).env("CB_GATEWAY_TRUST_FORWARDED_FOR", "true");
    procs.push(start(cmd, "gateway", logs)?);
    let mut cmd = Command::new(bin("xtask"));
    cmd.args(["__bench-serve", "hello", &hello]);
    procs.push(start(cmd, "hello", logs)?);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let gateway = format!("http://{gateway}");
        wait_http_ok(&format!("{gateway}/readyz"), &mut procs).await?;
        let fixture = setup(&gateway).await?;
        let mut cmd = Command::new(bin("xtask"));
        cmd.args([
            "__bench-serve",
            "monolith",
            &monolith,
            &pg.url("monolith"),
            &format!("{gateway}/.well-known/jwks.json"),
        ]);
        procs.push(start(cmd, "monolith", logs)?);
        let monolith = format!("http://{monolith}");
        wait_http_ok(&format!("{monolith}/v1/courses/{}", fixture.courses[0]), &mut procs).await.ok();
        load_monolith(&monolith, &fixture.snapshots).await?;
        let nats_client = async_nats::connect(nats.url()).await?;
        let mut meter = cpu::CpuMeter::default();
        for p in procs.iter() {
            if let Some(pid) = p.pid() {
                meter.add(p.name.split('-').next().unwrap_or(&p.name), pid);
            }
        }
        for (name, server) in [("nats-server", &nats.server), ("postgres", &pg.server), ("mongodb", &mongo.server)] {
            if let Some(pid) = server.pid() {
                meter.add(name, pid);
            }
        }
        meter.add_alone("load generator", std::process::id());
        let targets = Targets { gateway: &gateway, monolith: &monolith, hello: &format!("http://{hello}/") };
        measure(settings, &fixture, targets, &pg.url("postgres"), nats_client, &meter).await
    });
    for mut p in procs.into_iter().rev() {
        p.stop(Duration::from_secs(5));
    }
    outcome
}

/// Wait until `n` replicas of `service` answer the micro-service ping.
async fn wait_replicas(nats: &async_nats::Client, service: &str, n: usize) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        let inbox = nats.new_inbox();
        let mut replies = nats.subscribe(inbox.clone()).await?;
        nats.publish_with_reply(coursebus_contracts::subjects::srv::ping(service), inbox, bytes::Bytes::new()).await?;
        let mut found = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), replies.next()).await {
            found += 1;
        }
        if found >= n {
            return Ok(());
        }
        ensure!(started.elapsed() < Duration::from_secs(30), "{found} of {n} {service} replicas answer");
    }
}

/// One replica each of identity (with the benchmark admin), catalog and enrollment, from the
/// release binaries, named `<prefix>-<service>`: what the notifications and media benchmarks
/// stand on. `pg` must hold the databases `identity` and `enrollment`.
fn start_core(
    release: &Path,
    nats: &Nats,
    pg: &Postgres,
    mongo: &Mongo,
    prefix: &str,
    logs: &Path,
) -> Result<Vec<Server>> {
    let mut cmd = Command::new(release.join("coursebus-worker-identity"));
    cmd.env("CB_NATS_URL", nats.url())
        .env("CB_IDENTITY_DATABASE_URL", pg.url("identity"))
        .env("CB_IDENTITY_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("CB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD);
    let identity = start(cmd, &format!("{prefix}-identity"), logs)?;
    let mut cmd = Command::new(release.join("coursebus-worker-catalog"));
    cmd.env("CB_NATS_URL", nats.url()).env("CB_CATALOG_MONGODB_URL", mongo.url());
    let catalog = start(cmd, &format!("{prefix}-catalog"), logs)?;
    let mut cmd = Command::new(release.join("coursebus-worker-enrollment"));
    cmd.env("CB_NATS_URL", nats.url()).env("CB_ENROLLMENT_DATABASE_URL", pg.url("enrollment"));
    let enrollment = start(cmd, &format!("{prefix}-enrollment"), logs)?;
    Ok(vec![identity, catalog, enrollment])
}

/// Start a bench server quietly (warnings only: logging is not what is measured).
fn start(mut cmd: Command, name: &str, logs: &Path) -> Result<Server> {
    cmd.env("RUST_LOG", "warn");
    start_logged(cmd, name, logs)
}

/// What the scenarios need: published courses and logged-in learners.
struct Fixture {
    courses: Vec<String>,
    /// The published snapshots, for the monolith.
    snapshots: Vec<Value>,
    /// Access tokens, [`CONCURRENCY`] × [`LEARNERS_PER_CONNECTION`].
    learners: Vec<String>,
}

async fn send(req: reqwest::RequestBuilder, expect: u16) -> Result<Value> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    ensure!(status == expect, "expected {expect}, got {status}: {body}");
    Ok(body)
}

async fn token(http: &reqwest::Client, gateway: &str, email: &str, client: &str) -> Result<String> {
    let body = send(
        http.post(format!("{gateway}/v1/auth/login"))
            .header("x-forwarded-for", client)
            .json(&json!({"email": email, "password": PASSWORD})),
        200,
    )
    .await?;
    body["access_token"].as_str().map(str::to_owned).context("no access_token")
}

/// Register `email` as an instructor (the benchmark admin grants the role; requests come from
/// client addresses `{net}.1` and `{net}.2`); their access token.
async fn instructor(http: &reqwest::Client, gateway: &str, email: &str, name: &str, net: &str) -> Result<String> {
    let admin = token(http, gateway, ADMIN_EMAIL, &format!("{net}.1")).await?;
    let client = format!("{net}.2");
    let teacher = send(
        http.post(format!("{gateway}/v1/auth/register")).header("x-forwarded-for", &client).json(&json!({
            "email": email, "password": PASSWORD, "display_name": name})),
        201,
    )
    .await?;
    let teacher_id = teacher["id"].as_str().context("teacher id")?;
    send(http.put(format!("{gateway}/v1/users/{teacher_id}/roles/instructor")).bearer_auth(&admin), 200).await?;
    token(http, gateway, email, &client).await
}

async fn setup(gateway: &str) -> Result<Fixture> {
    let http = reqwest::Client::new();
    let teacher = instructor(&http, gateway, "bench-teacher@coursebus.test", "Bench Teacher", "10.0.0").await?;

    eprintln!("bench: creating and publishing {COURSES} courses");
    let courses: Vec<Result<(String, Value)>> = futures::stream::iter(0..COURSES)
        .map(|i| {
            let (http, teacher) = (http.clone(), teacher.clone());
            async move { publish_course(&http, gateway, &teacher, i).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let (courses, snapshots): (Vec<String>, Vec<Value>) =
        courses.into_iter().collect::<Result<Vec<_>>>()?.into_iter().unzip();

    let n = CONCURRENCY * LEARNERS_PER_CONNECTION;
    eprintln!("bench: registering {n} learners");
    let learners: Vec<Result<String>> = futures::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            async move {
                let email = format!("learner-{i}@coursebus.test");
                let client = format!("10.1.{}.{}", i / 250, i % 250 + 1);
                send(
                    http.post(format!("{gateway}/v1/auth/register"))
                        .header("x-forwarded-for", &client)
                        .json(&json!({"email": email, "password": PASSWORD, "display_name": format!("Learner {i}")})),
                    201,
                )
                .await?;
                token(&http, gateway, &email, &client).await
            }
        })
        .buffered(8)
        .collect()
        .await;
    let learners = learners.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(Fixture { courses, snapshots, learners })
}

/// Create, outline (one module, three video lessons) and publish benchmark course `i`; its id
/// and published snapshot.
async fn publish_course(http: &reqwest::Client, gateway: &str, teacher: &str, i: usize) -> Result<(String, Value)> {
    let course = send(
        http.post(format!("{gateway}/v1/courses")).bearer_auth(teacher).json(&json!({
        "title": format!("Benchmark course {i}"), "summary": "A course the benchmark reads and enrols in",
        "description": "Three lessons.", "language": "en", "level": "beginner", "tags": ["bench"],
        "price": {"amount_minor": 0, "currency": "EUR"}})),
        201,
    )
    .await?;
    let id = course["id"].as_str().context("course id")?.to_owned();
    let lessons: Vec<Value> = (1..=3).map(|l| json!({"title": format!("Lesson {l}"), "kind": "video"})).collect();
    let outlined = send(
        http.put(format!("{gateway}/v1/courses/{id}/outline"))
            .bearer_auth(teacher)
            .json(&json!({"version": course["version"], "modules": [{"title": "Module", "lessons": lessons}]})),
        200,
    )
    .await?;
    send(
        http.post(format!("{gateway}/v1/courses/{id}/publish"))
            .bearer_auth(teacher)
            .json(&json!({"version": outlined["version"]})),
        200,
    )
    .await?;
    let snapshot = send(http.get(format!("{gateway}/v1/courses/{id}")), 200).await?;
    Ok((id, snapshot))
}

async fn load_monolith(monolith: &str, snapshots: &[Value]) -> Result<()> {
    let http = reqwest::Client::new();
    for chunk in snapshots.chunks(100) {
        let resp = http.post(format!("{monolith}/load")).json(&chunk).send().await?;
        ensure!(resp.status().is_success(), "loading courses into the monolith: {}", resp.status());
    }
    Ok(())
}

/// One closed-loop run of `kind` against `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    PlatformRead,
    PlatformWrite,
    MonolithRead,
    MonolithWrite,
    NatsEcho,
    AxumHello,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::PlatformRead,
        Scenario::MonolithRead,
        Scenario::PlatformWrite,
        Scenario::MonolithWrite,
        Scenario::NatsEcho,
        Scenario::AxumHello,
    ];

    fn label(self) -> &'static str {
        match self {
            Scenario::PlatformRead => "1. platform `GET /v1/courses/{id}` (gateway → NATS → catalog, cached)",
            Scenario::PlatformWrite => "2. platform `POST /v1/enrollments` (durable write + outbox event)",
            Scenario::MonolithRead => "3a. monolith read (axum + sqlx → PostgreSQL)",
            Scenario::MonolithWrite => "3b. monolith write (axum + sqlx, enrollment's rows + outbox event in one tx)",
            Scenario::NatsEcho => "4a. NATS request-reply, empty handler (2-member queue group)",
            Scenario::AxumHello => "4b. axum hello-world",
        }
    }
}

/// One run of a scenario: its latencies and throughput, and the CPU µs per request of each part.
type Measured = (Sample, Vec<(String, f64)>);

/// Per-connection cursors into the (learner, course) pairs, so no pair is sent twice.
struct Pairs {
    next: Vec<AtomicUsize>,
}

impl Pairs {
    fn new() -> Self {
        Self { next: (0..CONCURRENCY).map(|_| AtomicUsize::new(0)).collect() }
    }

    /// (learner index, course index) of connection `task`'s next enrolment.
    fn next(&self, task: usize) -> Option<(usize, usize)> {
        let k = self.next[task].fetch_add(1, Ordering::Relaxed);
        if k >= LEARNERS_PER_CONNECTION * COURSES {
            return None;
        }
        Some((task + CONCURRENCY * (k % LEARNERS_PER_CONNECTION), k / LEARNERS_PER_CONNECTION))
    }
}

/// The HTTP servers a run measures.
#[derive(Debug, Clone, Copy)]
struct Targets<'a> {
    gateway: &'a str,
    monolith: &'a str,
    hello: &'a str,
}

/// Before a write scenario: flush PostgreSQL's dirty pages (`CHECKPOINT`) and wait, up to 30 s,
/// until no autovacuum is running, so neither write starts in the other's wake (a checkpoint or
/// a vacuum of the previous scenario's rows would be billed to whichever runs next).
async fn quiesce(db: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query("CHECKPOINT").execute(&mut *db).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let running: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
                .fetch_one(&mut *db)
                .await?;
        if running == 0 || std::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(
    settings: Settings,
    fixture: &Fixture,
    targets: Targets<'_>,
    pg_admin: &str,
    nats: async_nats::Client,
    meter: &cpu::CpuMeter,
) -> Result<String> {
    use sqlx::Connection;
    let Targets { gateway, monolith, hello } = targets;
    let mut db = sqlx::PgConnection::connect(pg_admin).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build()?;
    let courses = Arc::new(fixture.courses.clone());
    let learners = Arc::new(fixture.learners.clone());
    let platform_pairs = Arc::new(Pairs::new());
    let monolith_pairs = Arc::new(Pairs::new());
    let mut samples: Vec<(Scenario, Vec<Measured>)> = Scenario::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for run in 1..=settings.runs {
        for (scenario, results) in &mut samples {
            eprintln!("bench: run {run}/{}: {}", settings.runs, scenario.label());
            if matches!(*scenario, Scenario::PlatformWrite | Scenario::MonolithWrite) {
                quiesce(&mut db).await?;
            }
            let reads = Arc::new(AtomicUsize::new(0));
            let cpu_before = meter.snapshot();
            let (warmup, duration) = (settings.warmup, settings.duration);
            let sample = match *scenario {
                Scenario::PlatformRead | Scenario::MonolithRead => {
                    let base = if *scenario == Scenario::PlatformRead { gateway } else { monolith }.to_owned();
                    let (http, courses) = (http.clone(), courses.clone());
                    closed_loop(CONCURRENCY, warmup, duration, move |_| {
                        let i = reads.fetch_add(1, Ordering::Relaxed) % courses.len();
                        let req = http.get(format!("{base}/v1/courses/{}", courses[i]));
                        async move { ok(req, 200).await }
                    })
                    .await
                }
                Scenario::PlatformWrite | Scenario::MonolithWrite => {
                    let (base, pairs) = if *scenario == Scenario::PlatformWrite {
                        (gateway.to_owned(), platform_pairs.clone())
                    } else {
                        (monolith.to_owned(), monolith_pairs.clone())
                    };
                    let (http, courses, learners) = (http.clone(), courses.clone(), learners.clone());
                    closed_loop(CONCURRENCY, warmup, duration, move |task| {
                        let req = pairs.next(task).map(|(learner, course)| {
                            http.post(format!("{base}/v1/enrollments"))
                                .bearer_auth(&learners[learner])
                                .json(&json!({"course_id": courses[course]}))
                        });
                        // A new enrolment is 201; anything else (incl. running out of pairs) fails.
                        async move {
                            match req {
                                Some(req) => ok(req, 201).await,
                                None => false,
                            }
                        }
                    })
                    .await
                }
                Scenario::NatsEcho => {
                    let nats = nats.clone();
                    closed_loop(CONCURRENCY, warmup, duration, move |_| {
                        let nats = nats.clone();
                        async move {
                            nats.request(coursebus_contracts::subjects::bench::ECHO, bytes::Bytes::new()).await.is_ok()
                        }
                    })
                    .await
                }
                Scenario::AxumHello => {
                    let (http, url) = (http.clone(), hello.to_owned());
                    closed_loop(CONCURRENCY, warmup, duration, move |_| {
                        let req = http.get(&url);
                        async move { ok(req, 200).await }
                    })
                    .await
                }
            };
            // Warm-up requests are not counted, but their CPU is: scale to the whole run.
            let total = sample.requests as f64 * (warmup + duration).as_secs_f64() / duration.as_secs_f64();
            let cpu = cpu::per_request(&cpu_before, &meter.snapshot(), total as u64);
            eprintln!(
                "bench:   {:.0} req/s, p50 {:?}, p99 {:?}, errors {}; CPU µs/request: {cpu:.0?}",
                sample.rps, sample.p50, sample.p99, sample.errors
            );
            results.push((sample, cpu));
        }
    }
    let paired = |a: Scenario, b: Scenario| -> Vec<f64> {
        let runs = |k: Scenario| samples.iter().find(|(s, _)| *s == k).map(|(_, v)| v.clone()).unwrap_or_default();
        runs(a).iter().zip(runs(b).iter()).map(|((x, _), (y, _))| x.rps / y.rps).collect()
    };
    let ratios = Ratios {
        read: paired(Scenario::PlatformRead, Scenario::MonolithRead),
        write: paired(Scenario::PlatformWrite, Scenario::MonolithWrite),
    };
    let medians: Vec<(Scenario, Measured)> = samples.into_iter().map(|(s, v)| (s, median(v))).collect();
    Ok(report(settings, &medians, &ratios))
}

/// Each run's platform ÷ monolith throughput: the two ran back to back in that run, on the
/// machine as it was then, so their ratio is steadier than a ratio of medians from different runs.
struct Ratios {
    read: Vec<f64>,
    write: Vec<f64>,
}

/// The median of `values` and the values in run order, for the report.
fn median_of(values: &[f64]) -> (f64, String) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let runs: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
    (sorted.get(sorted.len() / 2).copied().unwrap_or(0.0), runs.join(", "))
}

async fn ok(req: reqwest::RequestBuilder, expect: u16) -> bool {
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Read the whole body, as a client would.
            resp.bytes().await.is_ok() && status == expect
        }
        Err(_) => false,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn report(settings: Settings, medians: &[(Scenario, Measured)], ratios: &Ratios) -> String {
    let get = |s: Scenario| medians.iter().find(|(k, _)| *k == s).map(|(_, (v, _))| *v);
    let mut out = format!(
        "### `cargo xtask bench` ({} connections, median of {} runs of {} s, release build, {} cores)\n\n\
         | scenario | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|\n",
        CONCURRENCY,
        settings.runs,
        settings.duration.as_secs(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    );
    for (scenario, (s, _)) in medians {
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} |\n",
            scenario.label(),
            s.rps,
            ms(s.p50),
            ms(s.p99),
            s.errors
        ));
    }
    if let (Some(pr), Some(ne)) = (get(Scenario::PlatformRead), get(Scenario::NatsEcho))
        && !ratios.read.is_empty()
        && !ratios.write.is_empty()
    {
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let (read_ratio, read_runs) = median_of(&ratios.read);
        let (write_ratio, write_runs) = median_of(&ratios.write);
        out.push_str(&format!(
            "\n| ratio (median of the runs' own ratios) | value | each run | target |\n|---|---:|---|---|\n\
             | 1 ÷ 3a (cached read vs monolith read) | {read_ratio:.2} | {read_runs} | ≥ 1.00 and p99 < 10 ms: {} |\n\
             | 2 ÷ 3b (durable write vs monolith write) | {write_ratio:.2} | {write_runs} | ≥ 0.80: {} |\n\
             | 1 ÷ 4a (cached read vs NATS ceiling) | {:.2} | | — |\n",
            verdict(read_ratio >= 1.0 && pr.p99 < Duration::from_millis(10)),
            verdict(write_ratio >= 0.8),
            pr.rps / ne.rps,
        ));
    }
    out.push_str("\nCPU time per request (µs, user + system of each process tree, the load generator included; on 2 cores the machine is CPU-bound in the write scenarios, so throughput follows the total):\n\n");
    for (scenario, (_, cpu)) in medians {
        let parts: Vec<String> = cpu.iter().map(|(group, us)| format!("{group} {us:.0}")).collect();
        let total: f64 = cpu.iter().map(|(_, us)| us).sum();
        out.push_str(&format!("- {}: {total:.0} in all — {}\n", scenario.label(), parts.join(", ")));
    }
    out
}
