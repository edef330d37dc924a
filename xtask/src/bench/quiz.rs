//! The quiz part of `cargo xtask bench` (`--only quiz` runs it alone, `--learners N` sets the
//! class size): the synchronised quiz start.
//!
//! [`LEARNERS`] enrolled learners start the same [`QUESTIONS`]-question quiz within one second
//! (learner `i` at `i / N` of [`SPREAD`], each on a task of its own), save all their answers in
//! one call [`THINK`] after their start was due (`--think-ms`) and submit at once, all through the gateway, on a stack of its own: nats-server,
//! PostgreSQL, the MongoDB-wire server, one replica each of identity, catalog and enrollment,
//! [`ASSESSMENT_REPLICAS`] assessment replicas (which also form the grading queue group) and the
//! gateway, from the release binaries.
//!
//! The learners' requests share [`CONNECTIONS`] connections (a semaphore in front of one reqwest
//! client); every latency counts from the moment the learner's request was due, so a wait for a
//! free connection is part of it. When an attempt is graded is observed on NATS: this process
//! subscribes to `cb.evt.assessment.attempt.graded` before the first start and timestamps each
//! event as it arrives (the event is published by the grading replica's outbox relay after the
//! grade is committed).
//!
//! Checked, or the bench fails: every request answered 2xx; every attempt's paper has the
//! [`QUESTIONS`] questions; every attempt graded with full marks (all answers are right), once:
//! one `attempt.graded` event per attempt stored in `EVT_ASSESSMENT`, as many graded rows in
//! assessment's database as learners.
//!
//! The learners are real accounts: registered and logged in through the gateway (argon2id twice
//! per learner, identity's cost, timed and reported but not part of the measurement), enrolled
//! through `POST /v1/enrollments` (assessment learns of the enrolments from enrollment's events,
//! as it would on a platform that has been running: the learners enrolled before the quiz).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use coursebus_contracts::EventEnvelope;
use coursebus_contracts::assessment::AttemptGraded;
use coursebus_contracts::subjects::assessment as subj;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use super::{PASSWORD, cpu, publish_course, send, start, token, wait_replicas};
use crate::process::{Server, wait_http_ok};
use crate::stack::{Durability, Mongo, Nats, Postgres, Tools, free_port};

/// Learners who start the quiz (the default of `--learners`).
pub const LEARNERS: usize = 3_000;
/// Questions on the quiz (one point each, all auto-graded).
const QUESTIONS: usize = 10;
/// Every learner's start is due within this.
const SPREAD: Duration = Duration::from_secs(1);
/// How long after its start was due a learner sends its answers (the default of `--think-ms`):
/// ten questions read and answered in 3 s — faster than any class, yet the answers of the whole
/// class still arrive within the 10 s the grading target allows. `--think-ms 0` is the stress
/// case in which every save and submit lands inside the start wave.
pub const THINK: Duration = Duration::from_secs(3);
/// Connections the learners' requests share.
const CONNECTIONS: usize = 128;
const ASSESSMENT_REPLICAS: usize = 2;
/// Targets: every attempt graded within this of the first start …
const TARGET_GRADED: Duration = Duration::from_secs(10);
/// … and the start's p99 under this.
const TARGET_START_P99: Duration = Duration::from_millis(500);
/// Give up waiting for grades after this.
const GRADING_WAIT: Duration = Duration::from_secs(300);

/// Run the measurement on a stack of its own; returns the report section.
/// `think`: each learner answers this long after its start was due (0: at once).
pub fn run(tools: &Tools, release: &Path, logs: &Path, learners: usize, think: Duration) -> Result<String> {
    ensure!(learners > 0, "--learners must be at least 1");
    let dir = tempfile::Builder::new().prefix("coursebus-bench-quiz-").tempdir()?;
    let nats = Nats::start(tools, &dir.path().join("nats"), 0, 0, &logs.join("quiz-nats.log"))?;
    let pg = Postgres::start(tools, &dir.path().join("pg"), 0, Durability::Durable, &logs.join("quiz-pg.log"))?;
    let mongo = Mongo::start(tools, &dir.path().join("mongo"), 0, &logs.join("quiz-mongo.log"))?;
    for db in ["identity", "enrollment", "assessment"] {
        pg.create_database(db)?;
    }
    let gateway = format!("127.0.0.1:{}", free_port()?);
    let mut procs: Vec<Server> = super::start_core(release, &nats, &pg, &mongo, "quiz", logs)?;
    for replica in 1..=ASSESSMENT_REPLICAS {
        // The worker's defaults: 10 database connections and 8 grading jobs at once per replica.
        let mut cmd = Command::new(release.join("coursebus-worker-assessment"));
        cmd.env("CB_NATS_URL", nats.url()).env("CB_ASSESSMENT_DATABASE_URL", pg.url("assessment"));
        procs.push(start(cmd, &format!("quiz-assessment-{replica}"), logs)?);
    }
    let mut cmd = Command::new(release.join("coursebus-gateway"));
    // Each learner sends its own X-Forwarded-For, as behind a load balancer, so the per-client
    // limit on the auth endpoints sees distinct clients during setup.
    cmd.env("CB_NATS_URL", nats.url()).env("CB_GATEWAY_LISTEN", &gateway).env("CB_GATEWAY_TRUST_FORWARDED_FOR", "true");
    procs.push(start(cmd, "quiz-gateway", logs)?);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let base = format!("http://{gateway}");
        wait_http_ok(&format!("{base}/readyz"), &mut procs).await?;
        let client = async_nats::connect(nats.url()).await?;
        wait_replicas(&client, subj::SERVICE, ASSESSMENT_REPLICAS).await?;
        let mut meter = cpu::CpuMeter::default();
        for p in &procs {
            if let Some(pid) = p.pid() {
                // quiz-assessment-1 → assessment
                meter.add(p.name.split('-').nth(1).unwrap_or(&p.name), pid);
            }
        }
        for (name, server) in [("nats-server", &nats.server), ("postgres", &pg.server), ("mongodb", &mongo.server)] {
            if let Some(pid) = server.pid() {
                meter.add(name, pid);
            }
        }
        meter.add_alone("load generator", std::process::id());
        let fixture = setup(&base, learners).await?;
        let measured = measure(&base, &client, &fixture, &meter, think).await?;
        let db = sqlx::PgPool::connect(&pg.url("assessment")).await?;
        let checked = verify(&client, &db, &fixture, &measured).await?;
        let report = report(&fixture, &measured, &checked, think);
        if !checked.problems.is_empty() {
            eprintln!("{report}");
            bail!("the quiz benchmark failed its checks:\n- {}", checked.problems.join("\n- "));
        }
        Ok::<_, anyhow::Error>(report)
    });
    for mut p in procs.into_iter().rev() {
        p.stop(Duration::from_secs(5));
    }
    outcome
}

/// The quiz and its learners.
struct Fixture {
    quiz: Uuid,
    /// The right answer to each bank question, by question id.
    answers: HashMap<Uuid, Value>,
    /// The learners' access tokens.
    learners: Vec<String>,
    /// Registering and logging in every learner took this …
    accounts: Duration,
    /// … and enrolling them this.
    enrolments: Duration,
}

/// Ten auto-gradable questions of every kind, one point each, with their right answers as a
/// learner sends them.
fn questions() -> Vec<(Value, Value)> {
    let q = |prompt: &str, body: Value| json!({"prompt": prompt, "points": 1, "body": body});
    vec![
        (
            q(
                "Pick the right option",
                json!({"kind": "single_choice", "options": ["right", "wrong", "also wrong"], "correct": 0}),
            ),
            json!([0]),
        ),
        (
            q(
                "Which one is a borrow?",
                json!({"kind": "single_choice", "options": ["Box<T>", "Rc<T>", "&T", "Vec<T>"], "correct": 2}),
            ),
            json!([2]),
        ),
        (
            q("Primes", json!({"kind": "multiple_choice", "options": ["2", "4", "5", "9"], "correct": [0, 2]})),
            json!([0, 2]),
        ),
        (q("Rust is memory safe", json!({"kind": "true_false", "correct": true})), json!(true)),
        (q("Rust has a garbage collector", json!({"kind": "true_false", "correct": false})), json!(false)),
        (q("7 divided by 4", json!({"kind": "numeric", "answer": 1.75, "tolerance": 0.005})), json!(1.75)),
        (q("6 times 7", json!({"kind": "numeric", "answer": 42.0, "tolerance": 0.0})), json!(42)),
        (q("Capital of France", json!({"kind": "short_text", "accepted": ["Paris"]})), json!("paris")),
        (
            q("Who frees a value in Rust?", json!({"kind": "short_text", "accepted": ["its owner", "the owner"]})),
            json!("The owner"),
        ),
        (q("Order the steps", json!({"kind": "ordering", "items": ["edit", "compile", "run"]})), json!([0, 1, 2])),
    ]
}

async fn setup(base: &str, n: usize) -> Result<Fixture> {
    let http = reqwest::Client::new();
    let teacher = super::instructor(&http, base, "quiz-teacher@coursebus.test", "Quiz Teacher", "10.4.0").await?;
    let (course, _) = publish_course(&http, base, &teacher, 0).await?;

    let (questions, right): (Vec<Value>, Vec<Value>) = questions().into_iter().unzip();
    let bank = send(
        http.post(format!("{base}/v1/courses/{course}/question-banks"))
            .bearer_auth(&teacher)
            .json(&json!({"title": "Synchronised quiz", "questions": questions})),
        201,
    )
    .await?;
    let ids = bank["questions"]
        .as_array()
        .context("bank questions")?
        .iter()
        .map(|q| q["id"].as_str().context("question id")?.parse::<Uuid>().context("question id"))
        .collect::<Result<Vec<_>>>()?;
    ensure!(ids.len() == QUESTIONS, "the bank has {} questions", ids.len());
    let answers: HashMap<Uuid, Value> = ids.into_iter().zip(right).collect();
    let quiz = send(
        http.post(format!("{base}/v1/courses/{course}/quizzes")).bearer_auth(&teacher).json(&json!({
            "title": "Synchronised quiz", "draws": [{"bank_id": bank["id"], "count": QUESTIONS}],
            "time_limit_secs": 600, "max_attempts": 1, "scoring": "highest"})),
        201,
    )
    .await?;
    let quiz = quiz["id"].as_str().context("quiz id")?.parse()?;

    eprintln!("bench: registering and logging in {n} learners");
    let started = Instant::now();
    let learners: Vec<Result<String>> = futures::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            async move {
                let email = format!("quiz-learner-{i}@coursebus.test");
                let client = format!("10.5.{}.{}", i / 250, i % 250 + 1);
                send(
                    http.post(format!("{base}/v1/auth/register"))
                        .header("x-forwarded-for", &client)
                        .json(&json!({"email": email, "password": PASSWORD, "display_name": format!("Learner {i}")})),
                    201,
                )
                .await?;
                token(&http, base, &email, &client).await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let learners = learners.into_iter().collect::<Result<Vec<_>>>()?;
    let accounts = started.elapsed();
    eprintln!("bench:   {:.1} s; enrolling them", accounts.as_secs_f64());
    let started = Instant::now();
    let enrolled: Vec<Result<Value>> = futures::stream::iter(&learners)
        .map(|learner| {
            let req =
                http.post(format!("{base}/v1/enrollments")).bearer_auth(learner).json(&json!({"course_id": course}));
            send(req, 201)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    enrolled.into_iter().collect::<Result<Vec<_>>>()?;
    let enrolments = started.elapsed();
    eprintln!("bench:   {:.1} s", enrolments.as_secs_f64());
    // A platform that has been running a while: both assessment replicas have the JWKS and a
    // database connection (learners look at the quiz before it starts).
    for learner in learners.iter().take(16) {
        send(http.get(format!("{base}/v1/quizzes/{quiz}")).bearer_auth(learner), 200).await?;
    }
    Ok(Fixture { quiz, answers, learners, accounts, enrolments })
}

/// What the learners share.
struct Shared {
    http: reqwest::Client,
    connections: Semaphore,
    base: String,
    quiz: Uuid,
    answers: HashMap<Uuid, Value>,
    /// How long after its start was due a learner sends its answers.
    think: Duration,
}

/// One learner's way through the quiz.
struct Done {
    attempt: Uuid,
    /// From when the start was due until its reply.
    start: Duration,
    /// When the start request got a connection and was sent.
    start_sent: Instant,
    save: Duration,
    submit: Duration,
    submit_sent: Instant,
}

/// One request on one of the shared connections; its JSON reply and when it was sent, or what
/// went wrong.
async fn call(shared: &Shared, req: reqwest::RequestBuilder, what: &str) -> Result<(Value, Instant), String> {
    let _connection = shared.connections.acquire().await.map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| format!("{what}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{what}: {status} {}", String::from_utf8_lossy(body.get(..300).unwrap_or(&body))));
    }
    Ok((serde_json::from_slice(&body).map_err(|e| format!("{what}: {e}"))?, sent))
}

/// Start at `due`, answer every question right in one save, submit.
async fn learner(shared: Arc<Shared>, token: String, due: Instant) -> Result<Done, String> {
    tokio::time::sleep_until(due).await;
    let (base, quiz) = (&shared.base, shared.quiz);
    let (attempt, start_sent) =
        call(&shared, shared.http.post(format!("{base}/v1/quizzes/{quiz}/attempts")).bearer_auth(&token), "start")
            .await?;
    let start = due.elapsed();
    // Keep only the attempt id and the answers (the reply's JSON is dropped before the wait, so
    // thousands of waiting learners do not grow this process's heap during the measurement).
    let id = attempt["id"].as_str().and_then(|id| id.parse::<Uuid>().ok()).ok_or("start: no attempt id")?;
    let paper = attempt["paper"].as_array().ok_or("start: no paper")?;
    if paper.len() != QUESTIONS {
        return Err(format!("start: a paper of {} questions", paper.len()));
    }
    let answers = paper
        .iter()
        .map(|q| {
            let question = q["question_id"].as_str().and_then(|id| id.parse::<Uuid>().ok());
            let value = question.and_then(|id| shared.answers.get(&id)).ok_or("start: a question not in the bank")?;
            Ok(json!({"question_id": q["question_id"], "value": value}))
        })
        .collect::<Result<Vec<_>, String>>()?;
    drop(attempt);
    // Reading the paper and answering (the save waits for this if the start came back sooner).
    tokio::time::sleep_until(due + shared.think).await;
    let sent = Instant::now();
    let (saved, _) = call(
        &shared,
        shared
            .http
            .put(format!("{base}/v1/attempts/{id}/answers"))
            .bearer_auth(&token)
            .json(&json!({"answers": answers})),
        "save",
    )
    .await?;
    let save = sent.elapsed();
    if saved["saved"].as_u64() != Some(QUESTIONS as u64) {
        return Err(format!("save: {saved}"));
    }
    let submit_sent = Instant::now();
    let (submitted, _) =
        call(&shared, shared.http.post(format!("{base}/v1/attempts/{id}/submit")).bearer_auth(&token), "submit")
            .await?;
    let submit = submit_sent.elapsed();
    if !matches!(submitted["status"].as_str(), Some("submitted" | "graded")) {
        return Err(format!("submit: status {}", submitted["status"]));
    }
    Ok(Done { attempt: id, start, start_sent, save, submit, submit_sent })
}

/// An `attempt.graded` event as this process saw it.
struct Graded {
    at: Instant,
    score_hundredths: u32,
    max_points: u32,
    complete: bool,
    /// Times it was seen on the subject (a relay re-publish shows up here, not in the stream).
    copies: u32,
}

/// The run: every learner's outcome, the grades seen, the CPU used.
struct Measured {
    /// When the first learner's start was due.
    first_start: Instant,
    done: Vec<Done>,
    errors: Vec<String>,
    graded: HashMap<Uuid, Graded>,
    malformed_events: usize,
    /// CPU seconds per process group from the first start until the last grade was seen.
    cpu: Vec<(String, f64)>,
    window: Duration,
}

async fn measure(
    base: &str,
    nats: &async_nats::Client,
    fixture: &Fixture,
    meter: &cpu::CpuMeter,
    think: Duration,
) -> Result<Measured> {
    let n = fixture.learners.len();
    let http = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build()?;
    let shared = Arc::new(Shared {
        http,
        connections: Semaphore::new(CONNECTIONS),
        base: base.to_owned(),
        quiz: fixture.quiz,
        answers: fixture.answers.clone(),
        think,
    });

    let mut events = nats.subscribe(subj::EVT_ATTEMPT_GRADED).await?;
    nats.flush().await?;
    let (expect, mut expected) = tokio::sync::watch::channel(n);
    let collector = tokio::spawn(async move {
        let deadline = Instant::now() + GRADING_WAIT;
        let mut graded: HashMap<Uuid, Graded> = HashMap::new();
        let mut malformed = 0;
        while graded.len() < *expected.borrow_and_update() {
            tokio::select! {
                msg = events.next() => {
                    let Some(msg) = msg else { break };
                    let at = Instant::now();
                    match serde_json::from_slice::<EventEnvelope<AttemptGraded>>(&msg.payload) {
                        Ok(event) => {
                            let e = event.data;
                            graded
                                .entry(e.attempt_id)
                                .and_modify(|g| g.copies += 1)
                                .or_insert(Graded {
                                    at,
                                    score_hundredths: e.score_hundredths,
                                    max_points: e.max_points,
                                    complete: e.complete,
                                    copies: 1,
                                });
                        }
                        Err(_) => malformed += 1,
                    }
                }
                changed = expected.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        (graded, malformed)
    });

    eprintln!("bench: {n} learners start the quiz within {} ms, answer and submit", SPREAD.as_millis());
    let cpu_before = meter.snapshot();
    // A moment to spawn the tasks before the first start is due.
    let first_start = Instant::now() + Duration::from_millis(200);
    let tasks: Vec<_> = fixture
        .learners
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let due = first_start + SPREAD.mul_f64(i as f64 / n as f64);
            tokio::spawn(learner(shared.clone(), token.clone(), due))
        })
        .collect();
    let mut done = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for task in futures::future::join_all(tasks).await {
        match task {
            Ok(Ok(d)) => done.push(d),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("learner task: {e}")),
        }
    }
    eprintln!("bench:   every learner submitted; waiting for the grades");
    expect.send_replace(done.len());
    let (graded, malformed_events) = collector.await?;
    let window = first_start.elapsed();
    let cpu = cpu::per_request(&cpu_before, &meter.snapshot(), 1).into_iter().map(|(g, us)| (g, us / 1e6)).collect();
    Ok(Measured { first_start, done, errors, graded, malformed_events, cpu, window })
}

/// What the checks found.
struct Checked {
    /// Graded attempts per grading replica (from assessment's database).
    replicas: Vec<(String, i64)>,
    /// `attempt.graded` events stored in `EVT_ASSESSMENT`.
    stored_events: usize,
    problems: Vec<String>,
}

async fn verify(nats: &async_nats::Client, db: &sqlx::PgPool, fixture: &Fixture, m: &Measured) -> Result<Checked> {
    let n = fixture.learners.len();
    let mut problems = Vec::new();
    if !m.errors.is_empty() {
        let mut kinds: HashMap<&str, usize> = HashMap::new();
        for e in &m.errors {
            *kinds.entry(e.as_str()).or_default() += 1;
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
        let sample: Vec<String> = kinds.iter().take(5).map(|(e, c)| format!("{c} × {e}")).collect();
        problems.push(format!("{} of {n} learners failed: {}", m.errors.len(), sample.join("; ")));
    }
    let full = (QUESTIONS * 100) as u32;
    let missing = m.done.iter().filter(|d| !m.graded.contains_key(&d.attempt)).count();
    if missing > 0 {
        problems.push(format!("{missing} submitted attempts were not seen graded within {GRADING_WAIT:?}"));
    }
    let wrong = m
        .graded
        .values()
        .filter(|g| g.score_hundredths != full || g.max_points != QUESTIONS as u32 || !g.complete)
        .count();
    if wrong > 0 {
        problems.push(format!("{wrong} attempts graded without full marks (or not complete)"));
    }
    if m.graded.len() != m.done.len() {
        problems.push(format!("{} attempts graded, {} submitted", m.graded.len(), m.done.len()));
    }
    if m.malformed_events > 0 {
        problems.push(format!("{} unreadable attempt.graded events", m.malformed_events));
    }
    let js = async_nats::jetstream::new(nats.clone());
    let stream = js.get_stream(subj::EVENT_STREAM).await?;
    let mut subjects = stream.info_with_subjects(subj::EVT_ATTEMPT_GRADED).await?;
    let mut stored_events = 0;
    while let Some((_, count)) = subjects.try_next().await? {
        stored_events += count;
    }
    if stored_events != n {
        problems.push(format!("EVT_ASSESSMENT holds {stored_events} attempt.graded events for {n} learners"));
    }
    let (graded, right): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'graded' AND graded_at IS NOT NULL), \
                count(*) FILTER (WHERE status = 'graded' AND score_hundredths = max_points * 100) \
         FROM attempts WHERE quiz_id = $1",
    )
    .bind(fixture.quiz)
    .fetch_one(db)
    .await?;
    if graded != n as i64 || right != n as i64 {
        problems.push(format!("assessment's database: {graded} graded attempts, {right} with full marks, of {n}"));
    }
    let replicas: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(graded_by, '-'), count(*) FROM attempts WHERE quiz_id = $1 GROUP BY 1 ORDER BY 2 DESC",
    )
    .bind(fixture.quiz)
    .fetch_all(db)
    .await?;
    Ok(Checked { replicas, stored_events, problems })
}

/// The `p`th percentile (nearest rank) of `values`.
fn pct(values: &[Duration], p: f64) -> Duration {
    let mut v = values.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn report(f: &Fixture, m: &Measured, c: &Checked, think: Duration) -> String {
    let n = f.learners.len();
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    let secs = |d: Duration| format!("{:.2}", d.as_secs_f64());
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let starts: Vec<Duration> = m.done.iter().map(|d| d.start).collect();
    let saves: Vec<Duration> = m.done.iter().map(|d| d.save).collect();
    let submits: Vec<Duration> = m.done.iter().map(|d| d.submit).collect();
    let to_graded: Vec<Duration> = m
        .done
        .iter()
        .filter_map(|d| m.graded.get(&d.attempt).map(|g| g.at.saturating_duration_since(d.submit_sent)))
        .collect();
    let first_submit = m.done.iter().map(|d| d.submit_sent).min().unwrap_or(m.first_start);
    let last_graded = m.graded.values().map(|g| g.at).max().unwrap_or(m.first_start);
    let grading = last_graded.saturating_duration_since(first_submit);
    let rate = m.graded.len() as f64 / grading.as_secs_f64().max(1e-9);
    let all = last_graded.saturating_duration_since(m.first_start);
    let start_p99 = pct(&starts, 0.99);
    let all_graded = m.graded.len() == n && c.problems.is_empty();
    let duplicates: u32 = m.graded.values().map(|g| g.copies - 1).sum();
    let total_cpu: f64 = m.cpu.iter().map(|(_, s)| s).sum();
    let cpu: Vec<String> = m.cpu.iter().map(|(g, s)| format!("{g} {s:.1}")).collect();
    let last_sent = m.done.iter().map(|d| d.start_sent).max().unwrap_or(m.first_start);
    let last_submitted = m.done.iter().map(|d| d.submit_sent + d.submit).max().unwrap_or(m.first_start);
    format!(
        "\n### Quiz: {n} learners start the same {QUESTIONS}-question quiz within {} s, answer {} s after their start was due\n\n\
         | measure | value | target |\n|---|---:|---|\n\
         | start attempt `POST /v1/quizzes/{{id}}/attempts`: p50 / p99 / max (ms, from when it was due) | {} / {} / {} | p99 < {} ms: {} |\n\
         | … the last start request was sent (s after the first was due) | {} | — |\n\
         | save the {QUESTIONS} answers `PUT /v1/attempts/{{id}}/answers`: p50 / p99 (ms) | {} / {} | — |\n\
         | submit `POST /v1/attempts/{{id}}/submit`: p50 / p99 (ms) | {} / {} | — |\n\
         | … the last submit answered (s after the first start was due) | {} | — |\n\
         | submit sent → `attempt.graded` seen, per attempt: p50 / p99 (ms) | {} / {} | — |\n\
         | graded per second ({} ÷ (last graded − first submit, {} s)) | {rate:.0} | — |\n\
         | first start → last of {} graded (s) | {} | < {} s: {} |\n\
         | failed requests (non-2xx or no answer; a learner stops at its first) | {} | 0 |\n\n\
         {} connections shared by the learners; every attempt checked: graded with full marks, one \
         `attempt.graded` event each in `EVT_ASSESSMENT` ({} stored, {duplicates} duplicate deliveries \
         on the subject), graded by replica: {}. Setup (not measured): {n} learners registered and \
         logged in through the gateway in {:.0} s (argon2id), enrolled in {:.1} s.\n\n\
         CPU seconds from the first start to the last grade ({} s, {total_cpu:.1} CPU-s in all, \
         {:.2} cores busy on average): {}\n",
        SPREAD.as_secs(),
        secs(think),
        ms(pct(&starts, 0.5)),
        ms(start_p99),
        ms(pct(&starts, 1.0)),
        TARGET_START_P99.as_millis(),
        verdict(start_p99 < TARGET_START_P99 && m.done.len() == n),
        secs(last_sent.saturating_duration_since(m.first_start)),
        ms(pct(&saves, 0.5)),
        ms(pct(&saves, 0.99)),
        ms(pct(&submits, 0.5)),
        ms(pct(&submits, 0.99)),
        secs(last_submitted.saturating_duration_since(m.first_start)),
        ms(pct(&to_graded, 0.5)),
        ms(pct(&to_graded, 0.99)),
        m.graded.len(),
        secs(grading),
        m.graded.len(),
        secs(all),
        TARGET_GRADED.as_secs(),
        verdict(all_graded && all < TARGET_GRADED),
        m.errors.len(),
        CONNECTIONS,
        c.stored_events,
        c.replicas.iter().map(|(_, k)| k.to_string()).collect::<Vec<_>>().join(" / "),
        f.accounts.as_secs_f64(),
        f.enrolments.as_secs_f64(),
        secs(m.window),
        total_cpu / m.window.as_secs_f64().max(1e-9),
        cpu.join(", "),
    )
}
