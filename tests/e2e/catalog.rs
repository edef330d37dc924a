//! Catalog: authoring, the publish workflow, visibility, optimistic concurrency, listing,
//! events and the replica-side cache, through the gateway.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use coursebus_contracts::subjects::catalog;
use coursebus_tests::{Builder, Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN, call, create_course, instructor, publish_with_lessons, stream_events, user};

fn with_catalog(replicas: usize) -> Builder {
    Platform::builder().with(Service::Catalog, replicas)
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

pub async fn authoring_publishing_and_visibility(infra: Arc<Infra>) -> Result<()> {
    let p = with_catalog(1).start(&infra).await?;
    let (teacher_id, teacher) = instructor(&p, "teacher@example.com").await?;
    let (_, other_teacher) = instructor(&p, "rival@example.com").await?;
    let (_, student) = user(&p, "student@example.com").await?;

    // Students cannot create courses; anonymous callers are 401.
    let body = json!({"title": "Rust for Rustaceans", "language": "en", "level": "advanced",
                      "price": {"amount_minor": 0, "currency": "EUR"}});
    let denied = call(&p, Method::POST, "/v1/courses", Some(&student), Some(body.clone())).await?;
    assert_eq!((denied.status, denied.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let anon = call(&p, Method::POST, "/v1/courses", None, Some(body)).await?;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);

    let draft = create_course(&p, &teacher, "Rust for Rustaceans", json!({"tags": ["Rust", "systems"]})).await?;
    assert_eq!(draft["slug"], "rust-for-rustaceans", "slug generated from the title");
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["instructor_id"], teacher_id.as_str());
    assert_eq!(draft["tags"], json!(["rust", "systems"]), "tags normalised");
    let course = id(&draft);

    // A draft is invisible to everyone but its instructor.
    for token in [Some(student.as_str()), None, Some(other_teacher.as_str())] {
        let hidden = call(&p, Method::GET, &format!("/v1/courses/{course}"), token, None).await?;
        assert_eq!((hidden.status, hidden.code()), (StatusCode::NOT_FOUND, "not_found"));
    }
    let own = call(&p, Method::GET, &format!("/v1/courses/{course}?draft=true"), Some(&teacher), None).await?;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");

    // Nothing to publish yet.
    let empty = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course}/publish"),
        Some(&teacher),
        Some(json!({"version": draft["version"]})),
    )
    .await?;
    assert_eq!((empty.status, empty.code()), (StatusCode::CONFLICT, "conflict"));

    // Outline with two modules, then reorder them: ids survive the reorder.
    let outlined = call(
        &p,
        Method::PUT,
        &format!("/v1/courses/{course}/outline"),
        Some(&teacher),
        Some(json!({
        "version": draft["version"],
        "modules": [
            {"title": "Ownership", "lessons": [
                {"title": "Moves and borrows", "kind": "video", "duration_secs": 600},
                {"title": "Reading list", "kind": "article", "body": "Read chapter 4.", "required": false}]},
            {"title": "Traits", "release_after_days": 7, "lessons": [{"title": "Generics", "kind": "video"}]}
        ]})),
    )
    .await?;
    assert_eq!(outlined.status, StatusCode::OK, "{outlined:?}");
    let modules = outlined.body["modules"].as_array().context("modules")?.clone();
    assert_eq!(modules.len(), 2);
    assert_eq!(modules[1]["release_after_days"], 7);
    let reordered = call(&p, Method::PUT, &format!("/v1/courses/{course}/outline"), Some(&teacher), Some(json!({
        "version": outlined.body["version"],
        "modules": [
            {"id": modules[1]["id"], "title": "Traits", "release_after_days": 7,
             "lessons": [{"id": modules[1]["lessons"][0]["id"], "title": "Generics", "kind": "video"}]},
            {"id": modules[0]["id"], "title": "Ownership", "lessons": [
                {"id": modules[0]["lessons"][1]["id"], "title": "Reading list", "kind": "article", "body": "Read chapter 4.", "required": false},
                {"id": modules[0]["lessons"][0]["id"], "title": "Moves and borrows", "kind": "video"}]}
        ]}))).await?;
    assert_eq!(reordered.status, StatusCode::OK, "{reordered:?}");
    assert_eq!(reordered.body["modules"][0]["id"], modules[1]["id"]);
    assert_eq!(reordered.body["modules"][1]["lessons"][1]["id"], modules[0]["lessons"][0]["id"]);

    // A lesson id from elsewhere is rejected, naming the field.
    let foreign = call(&p, Method::PUT, &format!("/v1/courses/{course}/outline"), Some(&teacher), Some(json!({
        "version": reordered.body["version"],
        "modules": [{"title": "X", "lessons": [{"id": "0192f0c4-0000-7000-8000-000000000000", "title": "Y", "kind": "video"}]}]
    }))).await?;
    assert_eq!((foreign.status, foreign.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{foreign:?}");

    // Another instructor cannot edit; a student cannot either.
    for token in [&other_teacher, &student] {
        let edit = call(
            &p,
            Method::PATCH,
            &format!("/v1/courses/{course}"),
            Some(token),
            Some(json!({"version": reordered.body["version"], "title": "Hijacked"})),
        )
        .await?;
        assert!(matches!(edit.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{edit:?}");
    }

    let published = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course}/publish"),
        Some(&teacher),
        Some(json!({"version": reordered.body["version"]})),
    )
    .await?;
    assert_eq!(published.status, StatusCode::OK, "{published:?}");
    assert_eq!(published.body["status"], "published");

    // Everyone sees the published snapshot, by id and by slug.
    for path in [format!("/v1/courses/{course}"), "/v1/courses/rust-for-rustaceans".to_owned()] {
        let seen = call(&p, Method::GET, &path, None, None).await?;
        assert_eq!(seen.status, StatusCode::OK, "{path}: {seen:?}");
        assert_eq!(seen.body["title"], "Rust for Rustaceans");
        assert_eq!(seen.body["modules"][0]["title"], "Traits");
    }

    // Editing the working copy does not change what learners see until the next publish.
    let edited = call(
        &p,
        Method::PATCH,
        &format!("/v1/courses/{course}"),
        Some(&teacher),
        Some(json!({"version": published.body["version"], "title": "Rust for Rustaceans, 2nd edition"})),
    )
    .await?;
    assert_eq!(edited.status, StatusCode::OK, "{edited:?}");
    let learner_view = call(&p, Method::GET, &format!("/v1/courses/{course}"), Some(&student), None).await?;
    assert_eq!(learner_view.body["title"], "Rust for Rustaceans");
    assert_eq!(learner_view.body["version"], published.body["published_version"]);

    // A stale version is a conflict naming the field; the write is not applied.
    let stale = call(
        &p,
        Method::PATCH,
        &format!("/v1/courses/{course}"),
        Some(&teacher),
        Some(json!({"version": published.body["version"], "summary": "lost update"})),
    )
    .await?;
    assert_eq!((stale.status, stale.code()), (StatusCode::CONFLICT, "conflict"));
    assert_eq!(stale.body["details"]["field"], "version");
    let working = call(&p, Method::GET, &format!("/v1/courses/{course}?draft=true"), Some(&teacher), None).await?;
    assert_ne!(working.body["summary"], "lost update");

    // Admins may edit any course; republishing shows the new title.
    let admin = crate::support::access_token(&p, ADMIN.0, ADMIN.1).await?;
    let republished = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course}/publish"),
        Some(&admin),
        Some(json!({"version": edited.body["version"]})),
    )
    .await?;
    assert_eq!(republished.status, StatusCode::OK, "{republished:?}");
    let seen = eventually(Duration::from_secs(5), "the republished title", || async {
        let seen = call(&p, Method::GET, &format!("/v1/courses/{course}"), None, None).await?;
        Ok((seen.body["title"] == "Rust for Rustaceans, 2nd edition").then_some(seen))
    })
    .await?;
    assert_eq!(seen.status, StatusCode::OK);

    // Archived courses disappear from the public catalog; archiving twice is a conflict.
    let archived = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course}/archive"),
        Some(&teacher),
        Some(json!({"version": republished.body["version"]})),
    )
    .await?;
    assert_eq!(archived.status, StatusCode::OK, "{archived:?}");
    let gone = call(&p, Method::GET, &format!("/v1/courses/{course}"), None, None).await?;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course}/archive"),
        Some(&teacher),
        Some(json!({"version": archived.body["version"]})),
    )
    .await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    p.shutdown().await;
    Ok(())
}

pub async fn bad_course_input_names_the_field(infra: Arc<Infra>) -> Result<()> {
    let p = with_catalog(1).start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let base = json!({"title": "Valid title", "language": "en", "level": "beginner",
                      "price": {"amount_minor": 0, "currency": "EUR"}});
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!({"title": "  "}), Some("title")),
        (json!({"title": "x".repeat(10_000)}), Some("title")),
        (json!({"summary": "x".repeat(100_000)}), Some("summary")),
        (json!({"language": "english"}), Some("language")),
        (json!({"price": {"amount_minor": -1, "currency": "EUR"}}), Some("price.amount_minor")),
        (json!({"price": {"amount_minor": 100, "currency": "euro"}}), Some("price.currency")),
        (json!({"tags": ["has space"]}), Some("tags")),
        (json!({"slug": "Not A Slug"}), Some("slug")),
        (json!({"prerequisites": ["0192f0c4-0000-7000-8000-000000000000"]}), Some("prerequisites")),
        (json!({"level": "expert"}), None),
        (json!({"unknown_field": 1}), None),
    ];
    for (patch, field) in cases {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        let reply = call(&p, Method::POST, "/v1/courses", Some(&teacher), Some(body.clone())).await?;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{body}: {reply:?}");
        if let Some(field) = field {
            assert_eq!(reply.body["details"]["field"], field, "{body}: {reply:?}");
        }
    }
    // A taken slug is a conflict.
    create_course(&p, &teacher, "Same Title", json!({})).await?;
    let dup = call(
        &p,
        Method::POST,
        "/v1/courses",
        Some(&teacher),
        Some(json!({"title": "Same Title", "language": "en", "level": "beginner",
                    "price": {"amount_minor": 0, "currency": "EUR"}})),
    )
    .await?;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "conflict"), "{dup:?}");
    let bad_cursor = call(&p, Method::GET, "/v1/courses?cursor=%%%", None, None).await?;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
    let bad_limit = call(&p, Method::GET, "/v1/courses?limit=1000", None, None).await?;
    assert_eq!(
        (bad_limit.status, bad_limit.body["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    p.shutdown().await;
    Ok(())
}

pub async fn listing_filters_and_cursor_pagination(infra: Arc<Infra>) -> Result<()> {
    let p = with_catalog(1).start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let specs = [
        ("Intro to Rust", "beginner", "en", 0, vec!["rust"]),
        ("Async Rust", "advanced", "en", 4900, vec!["rust", "async"]),
        ("Tokio in Depth", "advanced", "en", 0, vec!["async"]),
        ("Rust auf Deutsch", "beginner", "de", 1900, vec!["rust"]),
        ("Databases", "intermediate", "en", 0, vec!["sql"]),
    ];
    let mut ids = Vec::new();
    for (title, level, language, price, tags) in &specs {
        let course = create_course(
            &p,
            &teacher,
            title,
            json!({"level": level, "language": language, "tags": tags,
            "price": {"amount_minor": price, "currency": "EUR"}}),
        )
        .await?;
        publish_with_lessons(&p, &teacher, &course, 1).await?;
        ids.push(id(&course));
    }
    // One more that stays a draft: never listed publicly.
    create_course(&p, &teacher, "Unfinished Rust", json!({"tags": ["rust"]})).await?;

    let titles = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body["items"].as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap().to_owned()).collect()
    };
    let all = call(&p, Method::GET, "/v1/courses", None, None).await?;
    assert_eq!(all.status, StatusCode::OK, "{all:?}");
    assert_eq!(
        titles(&all),
        ["Databases", "Rust auf Deutsch", "Tokio in Depth", "Async Rust", "Intro to Rust"],
        "published only, newest first"
    );
    let rust = call(&p, Method::GET, "/v1/courses?tag=rust", None, None).await?;
    assert_eq!(titles(&rust), ["Rust auf Deutsch", "Async Rust", "Intro to Rust"]);
    let free_advanced = call(&p, Method::GET, "/v1/courses?level=advanced&price=free", None, None).await?;
    assert_eq!(titles(&free_advanced), ["Tokio in Depth"]);
    let paid = call(&p, Method::GET, "/v1/courses?price=paid", None, None).await?;
    assert_eq!(titles(&paid), ["Rust auf Deutsch", "Async Rust"]);
    let german = call(&p, Method::GET, "/v1/courses?language=de", None, None).await?;
    assert_eq!(titles(&german), ["Rust auf Deutsch"]);
    let mine = call(&p, Method::GET, "/v1/courses?mine=true", Some(&teacher), None).await?;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 6, "an instructor's own list has drafts too");

    // Walk the pages two at a time: every course exactly once, in order.
    let mut walked = Vec::new();
    let mut path = "/v1/courses?limit=2".to_owned();
    loop {
        let page = call(&p, Method::GET, &path, None, None).await?;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert!(page.body["items"].as_array().unwrap().len() <= 2);
        walked.extend(titles(&page));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/courses?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, titles(&all));
    p.shutdown().await;
    Ok(())
}

pub async fn every_change_is_an_event_on_evt_catalog(infra: Arc<Infra>) -> Result<()> {
    let p = with_catalog(2).start(&infra).await?;
    let nats = p.nats_client().await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let course = create_course(&p, &teacher, "Eventful", json!({})).await?;
    let published = publish_with_lessons(&p, &teacher, &course, 2).await?;
    let archived = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{}/archive", id(&course)),
        Some(&teacher),
        Some(json!({"version": published["version"]})),
    )
    .await?;
    assert_eq!(archived.status, StatusCode::OK);

    let (changed, published_events, archived_events) =
        eventually(Duration::from_secs(10), "the catalog events in EVT_CATALOG", || async {
            let changed = stream_events(&nats, catalog::EVENT_STREAM, catalog::EVT_COURSE_CHANGED).await?;
            let published = stream_events(&nats, catalog::EVENT_STREAM, catalog::EVT_COURSE_PUBLISHED).await?;
            let archived = stream_events(&nats, catalog::EVENT_STREAM, catalog::EVT_COURSE_ARCHIVED).await?;
            Ok((changed.len() >= 2 && published.len() == 1 && archived.len() == 1)
                .then_some((changed, published, archived)))
        })
        .await?;
    assert_eq!(changed.len(), 2, "created + outline, once each");
    assert_eq!(changed[0].0["type"], "catalog.course.changed");
    assert_eq!(changed[1].0["data"]["course"]["modules"][0]["lessons"].as_array().map(Vec::len), Some(2));
    let (event, msg_id) = &published_events[0];
    assert_eq!(event["data"]["course"]["id"], course["id"]);
    assert_eq!(event["data"]["course"]["status"], "published");
    assert_eq!(event["actor"]["kind"], "user");
    assert_eq!(event["id"].as_str(), Some(msg_id.as_str()), "Nats-Msg-Id is the event id");
    assert_eq!(archived_events[0].0["data"]["course_id"], course["id"]);
    // The relay drained the course's outbox once JetStream had the events.
    let mongo = mongodb::Client::with_uri_str(&p.mongodb_url).await?;
    let courses = mongo.database(&p.catalog_db).collection::<mongodb::bson::Document>("courses");
    eventually(Duration::from_secs(5), "the course's outbox to drain", || async {
        let stored = courses.find_one(mongodb::bson::doc! {"_id": id(&course)}).await?.context("the course")?;
        Ok(stored.get_array("outbox").is_ok_and(|o| o.is_empty()).then_some(()))
    })
    .await?;
    p.shutdown().await;
    Ok(())
}

/// Published reads come from each replica's cache, and a change on any replica reaches every
/// replica's cache through the catalog events.
pub async fn cached_reads_are_invalidated_on_every_replica(infra: Arc<Infra>) -> Result<()> {
    let p = with_catalog(2).start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let course = create_course(&p, &teacher, "Cached Course", json!({})).await?;
    let published = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let path = format!("/v1/courses/{}", id(&course));
    // Warm both replicas' caches (requests spread over the queue group).
    for _ in 0..20 {
        assert_eq!(call(&p, Method::GET, &path, None, None).await?.status, StatusCode::OK);
    }
    // Change the stored snapshot behind the workers' backs: cached replicas keep serving the
    // snapshot they hold, proving reads do not go to MongoDB.
    let mongo = mongodb::Client::with_uri_str(&p.mongodb_url).await?;
    let courses = mongo.database(&p.catalog_db).collection::<mongodb::bson::Document>("courses");
    let updated = courses
        .update_one(
            mongodb::bson::doc! {"_id": id(&course)},
            mongodb::bson::doc! {"$set": {"published.title": "Changed behind the cache"}},
        )
        .await?;
    assert_eq!(updated.modified_count, 1);
    for _ in 0..20 {
        let seen = call(&p, Method::GET, &path, None, None).await?;
        assert_eq!(seen.body["title"], "Cached Course", "served from the cache");
    }
    // A real edit + publish through the API invalidates every replica: all reads see it.
    let edited = call(
        &p,
        Method::PATCH,
        &path,
        Some(&teacher),
        Some(json!({"version": published["version"], "title": "Cached Course, revised"})),
    )
    .await?;
    assert_eq!(edited.status, StatusCode::OK, "{edited:?}");
    let republished = call(
        &p,
        Method::POST,
        &format!("{path}/publish"),
        Some(&teacher),
        Some(json!({"version": edited.body["version"]})),
    )
    .await?;
    assert_eq!(republished.status, StatusCode::OK, "{republished:?}");
    eventually(Duration::from_secs(5), "every replica to serve the new title", || async {
        for _ in 0..10 {
            let seen = call(&p, Method::GET, &path, None, None).await?;
            if seen.body["title"] != "Cached Course, revised" {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    // Both replicas answered reads (the queue group spreads them).
    let stats = coursebus_tests::collect_replies(
        &p.nats_client().await?,
        &coursebus_contracts::subjects::srv::stats("catalog"),
        2,
        Duration::from_secs(1),
    )
    .await?;
    assert_eq!(stats.len(), 2);
    for replica in &stats {
        let get_subject = catalog::COURSE_GET.subject();
        let gets =
            replica["endpoints"].as_array().unwrap().iter().find(|e| e["subject"] == get_subject.as_str()).unwrap();
        assert!(gets["num_requests"].as_u64().unwrap() > 0, "{replica}");
    }
    p.shutdown().await;
    Ok(())
}

pub async fn course_creation_honours_idempotency_keys(infra: Arc<Infra>) -> Result<()> {
    let p = with_catalog(2).start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (_, other) = instructor(&p, "other@example.com").await?;
    let body = json!({"title": "Retry Safe", "language": "en", "level": "beginner",
                      "price": {"amount_minor": 0, "currency": "EUR"}});
    let create = |token: String, key: &'static str, body: Value| {
        let p = &p;
        async move {
            let resp = p
                .http
                .post(p.url("/v1/courses"))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await?;
            Ok::<_, anyhow::Error>((resp.status(), resp.json::<Value>().await?))
        }
    };
    // Concurrent retries of one request (a client that timed out and retried) create one course.
    let (a, b) =
        tokio::join!(create(teacher.clone(), "key-1", body.clone()), create(teacher.clone(), "key-1", body.clone()));
    let ((sa, a), (sb, b)) = (a?, b?);
    assert_eq!((sa, sb), (StatusCode::CREATED, StatusCode::CREATED), "{a} {b}");
    assert_eq!(a["id"], b["id"], "the retry got the first answer");
    let (s, again) = create(teacher.clone(), "key-1", body.clone()).await?;
    assert_eq!((s, &again["id"]), (StatusCode::CREATED, &a["id"]));
    let draft = call(&p, Method::GET, &format!("/v1/courses/{}?draft=true", id(&a)), Some(&teacher), None).await?;
    assert_eq!(draft.status, StatusCode::OK, "the course exists: {draft:?}");
    let mine = call(&p, Method::GET, "/v1/courses?mine=true", Some(&teacher), None).await?;
    assert_eq!(
        mine.body["items"].as_array().map(Vec::len),
        Some(1),
        "one course, not two: {:?}",
        mine.body["items"]
            .as_array()
            .map(|v| v.iter().map(|c| (c["id"].to_string(), c["slug"].to_string())).collect::<Vec<_>>())
    );

    // The same key with another request is a conflict naming the header.
    let mut changed = body.clone();
    changed["title"] = json!("Something Else");
    let (s, reply) = create(teacher.clone(), "key-1", changed).await?;
    assert_eq!((s, reply["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{reply}");
    assert_eq!(reply["details"]["field"], "Idempotency-Key");
    // Keys are per caller: another instructor's "key-1" is a new request (whose slug is taken).
    let (s, reply) = create(other, "key-1", body).await?;
    assert_eq!((s, reply["details"]["field"].as_str()), (StatusCode::CONFLICT, Some("slug")), "{reply}");
    p.shutdown().await;
    Ok(())
}
