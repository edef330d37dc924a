//! The learner journey across catalog, search and enrollment, through the gateway only.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use coursebus_tests::{Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{call, create_course, instructor, publish_outline, user};

pub async fn instructor_publishes_student_finds_enrols_completes(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder()
        .with(Service::Catalog, 1)
        .with(Service::Search, 1)
        .with(Service::Enrollment, 1)
        .start(&infra)
        .await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let (student_id, student) = user(&p, "student@example.com").await?;

    // An instructor builds and publishes a course (and a second one, for the facets).
    let course = create_course(
        &p,
        &teacher,
        "Practical Rust",
        json!({"tags": ["rust", "systems"],
        "summary": "Write fast, safe programs", "level": "intermediate"}),
    )
    .await?;
    let published = publish_outline(&p, &teacher, &course, json!([
        {"title": "Basics", "lessons": [{"title": "Ownership", "kind": "video"}, {"title": "Borrowing", "kind": "video"}]}
    ]))
    .await?;
    let other = create_course(&p, &teacher, "Rust for the Web", json!({"tags": ["rust", "web"]})).await?;
    publish_outline(
        &p,
        &teacher,
        &other,
        json!([{"title": "Serving", "lessons": [{"title": "Axum basics", "kind": "video"}]}]),
    )
    .await?;
    let course_id = course["id"].as_str().context("course id")?.to_owned();

    // A student cannot edit it (403) nor see the instructor's drafts (404).
    let edit = call(
        &p,
        Method::PATCH,
        &format!("/v1/courses/{course_id}"),
        Some(&student),
        Some(json!({"version": published["version"], "title": "Mine now"})),
    )
    .await?;
    assert_eq!((edit.status, edit.code()), (StatusCode::FORBIDDEN, "forbidden"), "{edit:?}");
    let draft = create_course(&p, &teacher, "Secret Draft", json!({})).await?;
    let hidden = call(
        &p,
        Method::GET,
        &format!("/v1/courses/{}", draft["id"].as_str().unwrap_or_default()),
        Some(&student),
        None,
    )
    .await?;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);

    // The student finds it by a misspelt word, with correct facet counts.
    let found = eventually(Duration::from_secs(10), "both courses in the search index", || async {
        let r = call(&p, Method::GET, "/v1/search/courses?q=rsut", Some(&student), None).await?;
        Ok((r.status == StatusCode::OK && r.body["total"] == 2).then_some(r))
    })
    .await?;
    let tags: Vec<(String, u64)> = found.body["facets"]["tag"]
        .as_array()
        .context("tag facet")?
        .iter()
        .map(|b| (b["value"].as_str().unwrap_or_default().to_owned(), b["count"].as_u64().unwrap_or(0)))
        .collect();
    for expected in [("rust", 2), ("systems", 1), ("web", 1)] {
        assert!(tags.contains(&(expected.0.to_owned(), expected.1)), "{expected:?} in {tags:?}");
    }
    let hit = found.body["items"].as_array().context("items")?.iter().find(|h| h["id"] == course_id.as_str());
    assert!(hit.is_some(), "{found:?}");

    // Enrols twice with the same key: one enrolment.
    let enrol = || async {
        let resp = p
            .http
            .post(p.url("/v1/enrollments"))
            .bearer_auth(&student)
            .header("Idempotency-Key", "enrol-once")
            .json(&json!({"course_id": course_id}))
            .send()
            .await?;
        Ok::<_, anyhow::Error>((resp.status(), resp.json::<Value>().await?))
    };
    let (first_status, first) = enrol().await?;
    let (second_status, second) = enrol().await?;
    assert_eq!((first_status, second_status), (StatusCode::CREATED, StatusCode::CREATED), "{first} {second}");
    assert_eq!(first["id"], second["id"]);
    let mine = call(&p, Method::GET, "/v1/enrollments", Some(&student), None).await?;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(1), "{mine:?}");
    let enrollment = first["id"].as_str().context("enrolment id")?.to_owned();

    // Progresses to completion and gets a verifiable certificate.
    let mut last = Value::Null;
    for lesson in published["modules"][0]["lessons"].as_array().context("lessons")? {
        let lesson = lesson["id"].as_str().context("lesson id")?;
        let done = call(
            &p,
            Method::PUT,
            &format!("/v1/enrollments/{enrollment}/lessons/{lesson}/progress"),
            Some(&student),
            Some(json!({"state": "completed"})),
        )
        .await?;
        assert_eq!(done.status, StatusCode::OK, "{done:?}");
        last = done.body;
    }
    assert_eq!(last["enrollment"]["status"], "completed", "{last}");
    let code = last["enrollment"]["certificate_code"].as_str().context("certificate")?;
    let cert = call(&p, Method::GET, &format!("/v1/certificates/{code}"), None, None).await?;
    assert_eq!((cert.status, &cert.body["user_id"]), (StatusCode::OK, &json!(student_id)), "{cert:?}");
    p.shutdown().await;
    Ok(())
}
