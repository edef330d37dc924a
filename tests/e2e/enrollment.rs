//! Enrollment: enrolling (idempotent, paid, draft, prerequisites), progress to completion with a
//! certificate and events, drip release, privacy, rosters, unenrolling and pinned versions,
//! through the gateway with two enrollment replicas.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use coursebus_bus::{Bus, CallContext};
use coursebus_contracts::ErrorCode;
use coursebus_contracts::enrollment::{AccessCheckRequest, CheckAccess, EnrollmentDetail};
use coursebus_contracts::subjects::enrollment as subj;
use coursebus_tests::{Builder, Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    ADMIN, Reply, access_token, call, create_course, instructor, publish_outline, publish_with_lessons, stream_events,
    user,
};

fn options() -> Builder {
    Platform::builder().with(Service::Catalog, 1).with(Service::Enrollment, 2)
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

/// `POST /v1/enrollments`, with an `Idempotency-Key` when given.
async fn enrol(p: &Platform, token: &str, course: &str, key: Option<&str>) -> Result<Reply> {
    let mut req = p.http.post(p.url("/v1/enrollments")).bearer_auth(token).json(&json!({ "course_id": course }));
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
    Ok(Reply { status, headers, body })
}

/// Enrol and insist on a new enrolment; returns its id.
async fn enrolled(p: &Platform, token: &str, course: &str) -> Result<String> {
    let reply = enrol(p, token, course, None).await?;
    anyhow::ensure!(reply.status == StatusCode::CREATED, "enrolling in {course} failed: {reply:?}");
    Ok(id(&reply.body))
}

async fn progress(p: &Platform, token: &str, enrollment: &str, lesson: &str, body: Value) -> Result<Reply> {
    call(p, Method::PUT, &format!("/v1/enrollments/{enrollment}/lessons/{lesson}/progress"), Some(token), Some(body))
        .await
}

async fn detail(p: &Platform, token: &str, enrollment: &str) -> Result<Reply> {
    call(p, Method::GET, &format!("/v1/enrollments/{enrollment}"), Some(token), None).await
}

/// The id of lesson `l` of module `m` of a course JSON.
fn lesson(course: &Value, m: usize, l: usize) -> String {
    course["modules"][m]["lessons"][l]["id"].as_str().unwrap_or_default().to_owned()
}

/// Events on `subject` about `enrollment`, as envelopes (each checked to carry its id as `Nats-Msg-Id`).
async fn events(p: &Platform, subject: &str, enrollment: &str) -> Result<Vec<Value>> {
    let nats = p.nats_client().await?;
    let all = stream_events(&nats, subj::EVENT_STREAM, subject).await?;
    let mut found = Vec::new();
    for (event, msg_id) in all {
        if event["data"]["enrollment_id"] == enrollment {
            anyhow::ensure!(event["id"] == msg_id.as_str(), "Nats-Msg-Id is the event id: {event}");
            found.push(event);
        }
    }
    Ok(found)
}

/// Wait until exactly-or-more `n` events on `subject` about `enrollment` are in the stream.
async fn await_events(p: &Platform, subject: &str, enrollment: &str, n: usize) -> Result<Vec<Value>> {
    eventually(Duration::from_secs(15), &format!("{n} {subject} events"), || async {
        let found = events(p, subject, enrollment).await?;
        Ok((found.len() >= n).then_some(found))
    })
    .await
}

pub async fn enrolling_is_idempotent_and_refuses_paid_and_draft_courses(infra: Arc<Infra>) -> Result<()> {
    let p = options().start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (student_id, student) = user(&p, "student@example.com").await?;
    let free = create_course(&p, &teacher, "Free Rust", json!({})).await?;
    let free = publish_with_lessons(&p, &teacher, &free, 1).await?;
    let free_id = id(&free);

    let anon = call(&p, Method::POST, "/v1/enrollments", None, Some(json!({"course_id": free_id}))).await?;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let bad = call(&p, Method::POST, "/v1/enrollments", Some(&student), Some(json!({"course_id": "nope"}))).await?;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{bad:?}");

    // First enrolment: 201; again: 200 with the same enrolment; the same key replays the first answer.
    let first = enrol(&p, &student, &free_id, Some("enrol-free-1")).await?;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    let enrollment = id(&first.body);
    assert_eq!(first.headers["location"], format!("/v1/enrollments/{enrollment}").as_str());
    assert_eq!(first.body["user_id"], student_id.as_str());
    assert_eq!(first.body["course_id"], free_id.as_str());
    assert_eq!(first.body["status"], "active");
    assert_eq!(first.body["progress"], json!({"required_done": 0, "required_total": 1, "percent": 0}));
    let again = enrol(&p, &student, &free_id, None).await?;
    assert_eq!((again.status, id(&again.body)), (StatusCode::OK, enrollment.clone()), "{again:?}");
    let replay = enrol(&p, &student, &free_id, Some("enrol-free-1")).await?;
    assert_eq!((replay.status, &replay.body), (StatusCode::CREATED, &first.body), "the first answer, replayed");

    // Paid, draft and unknown courses.
    let paid =
        create_course(&p, &teacher, "Paid Rust", json!({"price": {"amount_minor": 4900, "currency": "EUR"}})).await?;
    let paid = publish_with_lessons(&p, &teacher, &paid, 1).await?;
    let refused = enrol(&p, &student, &id(&paid), None).await?;
    assert_eq!((refused.status, refused.code()), (StatusCode::PAYMENT_REQUIRED, "payment_required"), "{refused:?}");
    assert_eq!(refused.body["details"]["price"]["amount_minor"], 4900);
    let reused = enrol(&p, &student, &id(&paid), Some("enrol-free-1")).await?;
    assert_eq!((reused.status, reused.code()), (StatusCode::CONFLICT, "conflict"), "same key, other request");
    let draft = create_course(&p, &teacher, "Draft Rust", json!({})).await?;
    let hidden = enrol(&p, &student, &id(&draft), None).await?;
    assert_eq!((hidden.status, hidden.code()), (StatusCode::NOT_FOUND, "not_found"), "{hidden:?}");
    let own_draft = enrol(&p, &teacher, &id(&draft), None).await?;
    assert_eq!(own_draft.status, StatusCode::NOT_FOUND, "not even its instructor enrols in a draft");
    let unknown = enrol(&p, &student, &uuid::Uuid::now_v7().to_string(), None).await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // A burst of concurrent enrolments by one learner makes one enrolment.
    let (racer_id, racer) = user(&p, "racer@example.com").await?;
    let replies = futures::future::join_all((0..8).map(|_| enrol(&p, &racer, &free_id, None))).await;
    let replies: Vec<Reply> = replies.into_iter().collect::<Result<_>>()?;
    assert!(replies.iter().all(|r| r.status.is_success()), "{replies:?}");
    assert_eq!(replies.iter().filter(|r| r.status == StatusCode::CREATED).count(), 1, "{replies:?}");
    let ids: std::collections::HashSet<String> = replies.iter().map(|r| id(&r.body)).collect();
    assert_eq!(ids.len(), 1, "every answer names the same enrolment");
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&p.enrollment_database_url).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM enrollments WHERE user_id = $1::uuid")
        .bind(&racer_id)
        .fetch_one(&db)
        .await?;
    assert_eq!(rows, 1);

    let created = await_events(&p, subj::EVT_ENROLMENT_CREATED, &enrollment, 1).await?;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["type"], "enrollment.enrolment.created");
    assert_eq!(created[0]["data"]["course_id"], free_id.as_str());
    assert_eq!(created[0]["actor"], json!({"kind": "user", "id": student_id}));
    p.shutdown().await;
    Ok(())
}

pub async fn prerequisites_are_enforced_until_completed(infra: Arc<Infra>) -> Result<()> {
    let p = options().start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (_, student) = user(&p, "student@example.com").await?;
    let basics = create_course(&p, &teacher, "Rust Basics", json!({})).await?;
    let basics = publish_with_lessons(&p, &teacher, &basics, 1).await?;
    let advanced = create_course(&p, &teacher, "Advanced Rust", json!({"prerequisites": [id(&basics)]})).await?;
    let advanced = publish_with_lessons(&p, &teacher, &advanced, 1).await?;

    let blocked = enrol(&p, &student, &id(&advanced), None).await?;
    assert_eq!((blocked.status, blocked.code()), (StatusCode::CONFLICT, "conflict"), "{blocked:?}");
    assert_eq!(blocked.body["details"]["missing_prerequisites"], json!([id(&basics)]));

    // Enrolled but not completed is not enough.
    let first = enrolled(&p, &student, &id(&basics)).await?;
    let still = enrol(&p, &student, &id(&advanced), None).await?;
    assert_eq!(still.status, StatusCode::CONFLICT);
    let done = progress(&p, &student, &first, &lesson(&basics, 0, 0), json!({"state": "completed"})).await?;
    assert_eq!(done.body["enrollment"]["status"], "completed", "{done:?}");

    let admitted = enrol(&p, &student, &id(&advanced), None).await?;
    assert_eq!(admitted.status, StatusCode::CREATED, "{admitted:?}");
    p.shutdown().await;
    Ok(())
}

pub async fn progress_to_completion_issues_a_certificate_and_events_once(infra: Arc<Infra>) -> Result<()> {
    let p = options().start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (student_id, student) = user(&p, "student@example.com").await?;
    let course = create_course(&p, &teacher, "Ownership in Depth", json!({})).await?;
    let course = publish_outline(
        &p,
        &teacher,
        &course,
        json!([{"title": "Basics", "lessons": [
            {"title": "Moves", "kind": "video"},
            {"title": "Borrows", "kind": "video"},
            {"title": "Extra reading", "kind": "article", "required": false},
        ]}]),
    )
    .await?;
    let (moves, borrows, extra) = (lesson(&course, 0, 0), lesson(&course, 0, 1), lesson(&course, 0, 2));
    let enrollment = enrolled(&p, &student, &id(&course)).await?;

    let view = detail(&p, &student, &enrollment).await?;
    assert_eq!(view.status, StatusCode::OK, "{view:?}");
    assert_eq!(view.body["progress"], json!({"required_done": 0, "required_total": 2, "percent": 0}));
    let lessons = &view.body["modules"][0]["lessons"];
    assert_eq!(lessons.as_array().map(Vec::len), Some(3));
    assert_eq!((&lessons[0]["state"], &lessons[2]["required"]), (&json!("not_started"), &json!(false)));
    assert_eq!(view.body["modules"][0]["available"], true);

    // Progress is monotonic: a lower percent is ignored, completed stays completed.
    let started =
        progress(&p, &student, &enrollment, &moves, json!({"state": "started", "percent": 30, "position_secs": 12}))
            .await?;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    assert_eq!((&started.body["lesson"]["state"], &started.body["lesson"]["percent"]), (&json!("started"), &json!(30)));
    let lower =
        progress(&p, &student, &enrollment, &moves, json!({"state": "started", "percent": 10, "position_secs": 5}))
            .await?;
    assert_eq!((&lower.body["lesson"]["percent"], &lower.body["lesson"]["position_secs"]), (&json!(30), &json!(5)));
    let optional = progress(&p, &student, &enrollment, &extra, json!({"state": "completed"})).await?;
    assert_eq!(optional.body["enrollment"]["progress"]["required_done"], 0, "optional lessons do not count");
    let half = progress(&p, &student, &enrollment, &moves, json!({"state": "completed"})).await?;
    assert_eq!(half.body["enrollment"]["progress"], json!({"required_done": 1, "required_total": 2, "percent": 50}));
    assert_eq!(half.body["lesson"]["percent"], 100);
    let back = progress(&p, &student, &enrollment, &moves, json!({"state": "started", "percent": 1})).await?;
    assert_eq!((&back.body["lesson"]["state"], &back.body["lesson"]["percent"]), (&json!("completed"), &json!(100)));

    let bad = progress(&p, &student, &enrollment, &borrows, json!({"state": "started", "percent": 101})).await?;
    assert_eq!((bad.status, bad.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("percent")));
    let stranger =
        progress(&p, &student, &enrollment, &uuid::Uuid::now_v7().to_string(), json!({"state": "started"})).await?;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);

    // The last required lesson completes the course, with a certificate.
    let done = progress(&p, &student, &enrollment, &borrows, json!({"state": "completed"})).await?;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    let finished = &done.body["enrollment"];
    assert_eq!((&finished["status"], &finished["progress"]["percent"]), (&json!("completed"), &json!(100)));
    assert!(finished["completed_at"].is_string());
    let code = finished["certificate_code"].as_str().context("certificate code")?.to_owned();
    assert!(code.len() >= 16, "{code}");
    let twice = progress(&p, &student, &enrollment, &borrows, json!({"state": "completed"})).await?;
    assert_eq!(twice.body["enrollment"]["certificate_code"], code.as_str(), "one certificate");

    // Anyone can verify the certificate, typed in any case.
    let cert = call(&p, Method::GET, &format!("/v1/certificates/{code}"), None, None).await?;
    assert_eq!(cert.status, StatusCode::OK, "{cert:?}");
    assert_eq!(
        (&cert.body["course_id"], &cert.body["user_id"], &cert.body["enrollment_id"], &cert.body["course_title"]),
        (&json!(id(&course)), &json!(student_id), &json!(enrollment), &json!("Ownership in Depth"))
    );
    let lower_case = call(&p, Method::GET, &format!("/v1/certificates/{}", code.to_lowercase()), None, None).await?;
    assert_eq!(lower_case.status, StatusCode::OK);
    let forged = call(&p, Method::GET, "/v1/certificates/AAAAAAAAAAAAAAAAAAAA", None, None).await?;
    assert_eq!((forged.status, forged.code()), (StatusCode::NOT_FOUND, "not_found"));

    // A completed course stays: no unenrolling; "my courses" shows it completed.
    let leave = call(&p, Method::DELETE, &format!("/v1/enrollments/{enrollment}"), Some(&student), None).await?;
    assert_eq!((leave.status, leave.code()), (StatusCode::CONFLICT, "conflict"));
    let mine = call(&p, Method::GET, "/v1/enrollments", Some(&student), None).await?;
    assert_eq!(mine.body["items"][0]["status"], "completed", "{mine:?}");

    // Events: enrolled once, completed once, one progressed per effective change (4), no duplicates.
    let completed = await_events(&p, subj::EVT_ENROLMENT_COMPLETED, &enrollment, 1).await?;
    let progressed = await_events(&p, subj::EVT_PROGRESS_UPDATED, &enrollment, 4).await?;
    let created = await_events(&p, subj::EVT_ENROLMENT_CREATED, &enrollment, 1).await?;
    assert_eq!((created.len(), completed.len(), progressed.len()), (1, 1, 4), "{progressed:#?}");
    assert_eq!(completed[0]["data"]["certificate_code"], code.as_str());
    assert_eq!(completed[0]["type"], "enrollment.enrolment.completed");
    let ids: std::collections::HashSet<&str> = progressed.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 4);
    let last = progressed.iter().find(|e| e["data"]["lesson_id"] == borrows.as_str()).context("borrows event")?;
    assert_eq!(last["data"]["progress"]["percent"], 100);
    // Nothing more arrives later (the relay does not re-publish).
    let settled = events(&p, subj::EVT_ENROLMENT_COMPLETED, &enrollment).await?;
    assert_eq!(settled.len(), 1);
    p.shutdown().await;
    Ok(())
}

pub async fn drip_locked_modules_refuse_progress_until_they_open(infra: Arc<Infra>) -> Result<()> {
    let p = options().start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (student_id, student) = user(&p, "student@example.com").await?;
    let (_, other) = user(&p, "other@example.com").await?;
    let course = create_course(&p, &teacher, "Weekly Rust", json!({})).await?;
    let course = publish_outline(
        &p,
        &teacher,
        &course,
        json!([
            {"title": "Week 1", "lessons": [{"title": "Hello", "kind": "video"}]},
            {"title": "Week 2", "release_after_days": 3, "lessons": [{"title": "Traits", "kind": "video"}]},
        ]),
    )
    .await?;
    let (hello, traits) = (lesson(&course, 0, 0), lesson(&course, 1, 0));
    let enrollment = enrolled(&p, &student, &id(&course)).await?;

    let view = detail(&p, &student, &enrollment).await?;
    let typed: EnrollmentDetail = serde_json::from_value(view.body.clone())?;
    assert!(typed.modules[0].available);
    assert!(!typed.modules[1].available);
    assert_eq!((typed.modules[0].available_at - typed.enrollment.enrolled_at).whole_seconds(), 0);
    assert_eq!((typed.modules[1].available_at - typed.enrollment.enrolled_at).whole_seconds(), 3 * 24 * 3600);

    let locked = progress(&p, &student, &enrollment, &traits, json!({"state": "started", "percent": 5})).await?;
    assert_eq!((locked.status, locked.code()), (StatusCode::FORBIDDEN, "forbidden"), "{locked:?}");
    assert_eq!(locked.body["details"]["available_at"], view.body["modules"][1]["available_at"]);
    assert!(locked.body["message"].as_str().unwrap_or_default().contains("opens on"), "{locked:?}");
    let open = progress(&p, &student, &enrollment, &hello, json!({"state": "started", "percent": 5})).await?;
    assert_eq!(open.status, StatusCode::OK, "{open:?}");

    // The access check other services will use says the same.
    let bus = Bus::new(p.nats_client().await?, Duration::from_secs(3));
    let ctx = CallContext::new_root().with_bearer(&student);
    let ask = |lesson: &str| AccessCheckRequest {
        user_id: student_id.parse().unwrap_or_default(),
        course_id: id(&course).parse().unwrap_or_default(),
        lesson_id: lesson.parse().ok(),
    };
    let week2 = bus.request::<CheckAccess>(&ctx, &ask(&traits)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!((week2.enrolled, week2.lesson_available), (true, Some(false)));
    assert_eq!(week2.available_at, Some(typed.modules[1].available_at));
    let week1 = bus.request::<CheckAccess>(&ctx, &ask(&hello)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(
        (week1.enrolled, week1.lesson_available, week1.enrollment_id),
        (true, Some(true), enrollment.parse().ok())
    );
    let nosy = bus.request::<CheckAccess>(&CallContext::new_root().with_bearer(&other), &ask(&hello)).await;
    assert_eq!(nosy.map_err(|e| e.code).err(), Some(ErrorCode::Forbidden));
    p.shutdown().await;
    Ok(())
}

pub async fn learners_see_only_their_own_and_rosters_are_for_instructors(infra: Arc<Infra>) -> Result<()> {
    let p = options().start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (_, rival) = instructor(&p, "rival@example.com").await?;
    let (ada_id, ada) = user(&p, "ada@example.com").await?;
    let (bob_id, bob) = user(&p, "bob@example.com").await?;
    let course = create_course(&p, &teacher, "Async Rust", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 2).await?;
    let other = create_course(&p, &teacher, "Unsafe Rust", json!({})).await?;
    let other = publish_with_lessons(&p, &teacher, &other, 1).await?;
    let ada_async = enrolled(&p, &ada, &id(&course)).await?;
    let ada_unsafe = enrolled(&p, &ada, &id(&other)).await?;
    let bob_async = enrolled(&p, &bob, &id(&course)).await?;

    // Bob cannot see, change or cancel Ada's enrolment: it does not exist for him.
    let peek = detail(&p, &bob, &ada_async).await?;
    assert_eq!((peek.status, peek.code()), (StatusCode::NOT_FOUND, "not_found"));
    let meddle = progress(&p, &bob, &ada_async, &lesson(&course, 0, 0), json!({"state": "completed"})).await?;
    assert_eq!(meddle.status, StatusCode::NOT_FOUND);
    let cancel = call(&p, Method::DELETE, &format!("/v1/enrollments/{ada_async}"), Some(&bob), None).await?;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);
    let anon = call(&p, Method::GET, "/v1/enrollments", None, None).await?;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);

    // "My courses": Ada's two, newest first, page by page.
    let page1 = call(&p, Method::GET, "/v1/enrollments?limit=1", Some(&ada), None).await?;
    assert_eq!(page1.status, StatusCode::OK, "{page1:?}");
    assert_eq!(page1.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(id(&page1.body["items"][0]), ada_unsafe);
    assert_eq!(page1.body["items"][0]["course_title"], "Unsafe Rust");
    let cursor = page1.body["next_cursor"].as_str().context("next_cursor")?;
    let page2 = call(&p, Method::GET, &format!("/v1/enrollments?limit=1&cursor={cursor}"), Some(&ada), None).await?;
    assert_eq!(id(&page2.body["items"][0]), ada_async);
    assert!(page2.body["next_cursor"].is_null(), "{page2:?}");
    let bobs = call(&p, Method::GET, "/v1/enrollments", Some(&bob), None).await?;
    assert_eq!(bobs.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(bobs.body["items"][0]["user_id"], bob_id.as_str());

    // The roster: the course's instructor (by id or slug) and admins; nobody else.
    let half = progress(&p, &ada, &ada_async, &lesson(&course, 0, 0), json!({"state": "completed"})).await?;
    assert_eq!(half.status, StatusCode::OK, "{half:?}");
    let roster = call(&p, Method::GET, &format!("/v1/courses/{}/roster", id(&course)), Some(&teacher), None).await?;
    assert_eq!(roster.status, StatusCode::OK, "{roster:?}");
    let items = roster.body["items"].as_array().context("items")?;
    assert_eq!(items.len(), 2);
    let ada_row = items.iter().find(|e| e["user_id"] == ada_id.as_str()).context("ada on the roster")?;
    assert_eq!(ada_row["progress"], json!({"required_done": 1, "required_total": 2, "percent": 50}));
    assert_eq!(ada_row["enrollment_id"], ada_async.as_str());
    assert!(ada_row["last_activity_at"].is_string());
    let bob_row = items.iter().find(|e| e["user_id"] == bob_id.as_str()).context("bob on the roster")?;
    assert_eq!((&bob_row["enrollment_id"], &bob_row["progress"]["percent"]), (&json!(bob_async), &json!(0)));
    let by_slug = call(
        &p,
        Method::GET,
        &format!("/v1/courses/{}/roster", course["slug"].as_str().unwrap_or_default()),
        Some(&teacher),
        None,
    )
    .await?;
    assert_eq!(by_slug.body["items"].as_array().map(Vec::len), Some(2));
    for (who, token) in [("a learner", &ada), ("another instructor", &rival)] {
        let denied = call(&p, Method::GET, &format!("/v1/courses/{}/roster", id(&course)), Some(token), None).await?;
        assert_eq!((denied.status, denied.code()), (StatusCode::FORBIDDEN, "forbidden"), "{who}: {denied:?}");
    }
    let admin = access_token(&p, ADMIN.0, ADMIN.1).await?;
    let as_admin = call(&p, Method::GET, &format!("/v1/courses/{}/roster", id(&course)), Some(&admin), None).await?;
    assert_eq!(as_admin.status, StatusCode::OK);
    let page =
        call(&p, Method::GET, &format!("/v1/courses/{}/roster?limit=1", id(&course)), Some(&teacher), None).await?;
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(1));
    assert!(page.body["next_cursor"].is_string());
    let nowhere =
        call(&p, Method::GET, &format!("/v1/courses/{}/roster", uuid::Uuid::now_v7()), Some(&teacher), None).await?;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    p.shutdown().await;
    Ok(())
}

pub async fn unenrolling_cancels_once_and_re_enrolling_starts_afresh(infra: Arc<Infra>) -> Result<()> {
    let p = options().start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (_, student) = user(&p, "student@example.com").await?;
    let course = create_course(&p, &teacher, "Macros", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 2).await?;
    let first = enrolled(&p, &student, &id(&course)).await?;
    let done = progress(&p, &student, &first, &lesson(&course, 0, 0), json!({"state": "completed"})).await?;
    assert_eq!(done.status, StatusCode::OK);

    let path = format!("/v1/enrollments/{first}");
    let left = call(&p, Method::DELETE, &path, Some(&student), None).await?;
    assert_eq!((left.status, &left.body["status"]), (StatusCode::OK, &json!("cancelled")), "{left:?}");
    assert!(left.body["cancelled_at"].is_string());
    let again = call(&p, Method::DELETE, &path, Some(&student), None).await?;
    assert_eq!(
        (again.status, &again.body["status"]),
        (StatusCode::OK, &json!("cancelled")),
        "unenrolling twice is harmless"
    );
    let stale = progress(&p, &student, &first, &lesson(&course, 0, 1), json!({"state": "completed"})).await?;
    assert_eq!((stale.status, stale.code()), (StatusCode::CONFLICT, "conflict"));

    let mine = call(&p, Method::GET, "/v1/enrollments", Some(&student), None).await?;
    assert_eq!(mine.body["items"], json!([]), "cancelled enrolments are not among my courses");
    let history = call(&p, Method::GET, "/v1/enrollments?status=cancelled", Some(&student), None).await?;
    assert_eq!(id(&history.body["items"][0]), first);

    // Enrolling again makes a fresh enrolment: new id, no progress.
    let second = enrol(&p, &student, &id(&course), None).await?;
    assert_eq!(second.status, StatusCode::CREATED, "{second:?}");
    assert_ne!(id(&second.body), first);
    assert_eq!(second.body["progress"]["required_done"], 0);

    let cancelled = await_events(&p, subj::EVT_ENROLMENT_CANCELLED, &first, 1).await?;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["type"], "enrollment.enrolment.cancelled");
    await_events(&p, subj::EVT_ENROLMENT_CREATED, &id(&second.body), 1).await?;
    p.shutdown().await;
    Ok(())
}

pub async fn enrolments_keep_their_version_across_republishing_and_restarts(infra: Arc<Infra>) -> Result<()> {
    let mut p = options().start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (_, early) = user(&p, "early@example.com").await?;
    let (_, late) = user(&p, "late@example.com").await?;
    let course = create_course(&p, &teacher, "Lifetimes", json!({})).await?;
    let v1 = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let first_lesson = lesson(&v1, 0, 0);
    let early_enrolment = enrolled(&p, &early, &id(&v1)).await?;

    // The instructor adds a required lesson and a dripped module, and publishes again.
    let v2 = publish_outline(
        &p,
        &teacher,
        &v1,
        json!([
            {"id": v1["modules"][0]["id"], "title": "Module 1", "lessons": [
                {"id": first_lesson, "title": "Lesson 1", "kind": "video"},
                {"title": "Lesson 2", "kind": "video"},
            ]},
            {"title": "Later", "release_after_days": 7, "lessons": [{"title": "Lesson 3", "kind": "video"}]},
        ]),
    )
    .await?;
    let late_enrolment = enrolled(&p, &late, &id(&v2)).await?;
    let late_view = detail(&p, &late, &late_enrolment).await?;
    assert_eq!(late_view.body["progress"]["required_total"], 3, "{late_view:?}");
    assert_ne!(late_view.body["course_version"], v1["published_version"]);

    // Every replica restarts: enrolments are durable; meanwhile requests fail fast with 503.
    p.stop_replicas("enrollment").await;
    let down = detail(&p, &early, &early_enrolment).await?;
    assert_eq!((down.status, down.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    p.start_enrollment_replica();
    p.wait_replicas("enrollment", 1).await?;

    // The early learner still follows version 1: one required lesson, which completes the course.
    let early_view = detail(&p, &early, &early_enrolment).await?;
    assert_eq!(early_view.status, StatusCode::OK, "{early_view:?}");
    assert_eq!(early_view.body["progress"]["required_total"], 1);
    assert_eq!(early_view.body["course_version"], v1["published_version"]);
    assert_eq!(early_view.body["modules"].as_array().map(Vec::len), Some(1));
    let done = progress(&p, &early, &early_enrolment, &first_lesson, json!({"state": "completed"})).await?;
    assert_eq!(done.body["enrollment"]["status"], "completed", "{done:?}");
    let unknown = progress(&p, &early, &early_enrolment, &lesson(&v2, 0, 1), json!({"state": "started"})).await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "lessons added later are not part of an earlier enrolment");
    p.shutdown().await;
    Ok(())
}

/// Archiving a course closes it to new learners; those enrolled keep what they enrolled in and
/// can finish it.
pub async fn an_archived_course_takes_no_new_learners_and_keeps_its_own(infra: Arc<Infra>) -> Result<()> {
    let p = options().start(&infra).await?;
    let (_, teacher) = instructor(&p, "archiver@example.com").await?;
    let course = create_course(&p, &teacher, "Retired Course", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let (_, early) = user(&p, "early@example.com").await?;
    let (_, late) = user(&p, "late@example.com").await?;
    let enrolment = enrolled(&p, &early, &id(&course)).await?;

    let archived = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{}/archive", id(&course)),
        Some(&teacher),
        Some(json!({"version": course["version"]})),
    )
    .await?;
    assert_eq!(archived.status, StatusCode::OK, "{archived:?}");

    let refused = enrol(&p, &late, &id(&course), None).await?;
    assert_eq!((refused.status, refused.code()), (StatusCode::NOT_FOUND, "not_found"), "{refused:?}");
    let kept = detail(&p, &early, &enrolment).await?;
    assert_eq!(kept.status, StatusCode::OK, "{kept:?}");
    let done = progress(&p, &early, &enrolment, &lesson(&course, 0, 0), json!({"state": "completed"})).await?;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.body["enrollment"]["status"], "completed", "{done:?}");
    p.shutdown().await;
    Ok(())
}
