//! Search: published courses become searchable through the catalog's events, with typo
//! tolerance, title-first ranking, facets and filters; archiving removes a course; a replica
//! started later rebuilds its index by itself before it answers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use coursebus_contracts::catalog::{Course, CoursePublished};
use coursebus_contracts::{Actor, Event as _};
use coursebus_tests::{Builder, Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, call, create_course, instructor, publish_outline};

/// How long an event may take to reach every search replica's index.
const INDEXED_WITHIN: Duration = Duration::from_secs(10);

fn with_search(replicas: usize) -> Builder {
    Platform::builder().with(Service::Catalog, 1).with(Service::Search, replicas)
}

/// `GET /v1/search/courses` with `params` (URL-encoded here), anonymously.
async fn search(p: &Platform, params: &[(&str, &str)]) -> Result<Reply> {
    search_as(p, params, None).await
}

async fn search_as(p: &Platform, params: &[(&str, &str)], token: Option<&str>) -> Result<Reply> {
    let url = reqwest::Url::parse_with_params("http://search.invalid/v1/search/courses", params)?;
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    call(p, Method::GET, &path, token, None).await
}

/// A successful search's body.
async fn found(p: &Platform, params: &[(&str, &str)]) -> Result<Value> {
    let reply = search(p, params).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "search {params:?} failed: {reply:?}");
    Ok(reply.body)
}

fn titles(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["title"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Facet `name` as (value, count) pairs.
fn facet(body: &Value, name: &str) -> Vec<(String, u64)> {
    body["facets"][name]
        .as_array()
        .map(|f| {
            f.iter().map(|c| (c["value"].as_str().unwrap_or("").to_owned(), c["count"].as_u64().unwrap_or(0))).collect()
        })
        .unwrap_or_default()
}

fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected.iter().map(|(v, c)| (v.to_string(), *c)).collect()
}

/// Poll until `check` holds for `times` answers in a row (the gateway spreads requests over the
/// replicas, so several answers in a row mean every replica's index has it, with high odds).
async fn settled<F>(p: &Platform, params: &[(&str, &str)], times: usize, what: &str, check: F) -> Result<Value>
where
    F: Fn(&Value) -> bool,
{
    eventually(INDEXED_WITHIN, what, || async {
        for _ in 0..times {
            let body = found(p, params).await?;
            if !check(&body) {
                return Ok(None);
            }
        }
        found(p, params).await.map(Some)
    })
    .await
}

/// Create a course with `extra` fields, give it one module with `lessons`, publish it; returns
/// the course as its instructor sees it after publishing.
async fn publish(p: &Platform, token: &str, title: &str, extra: Value, lessons: &[&str]) -> Result<Value> {
    let course = create_course(p, token, title, extra).await?;
    let lessons: Vec<Value> = lessons.iter().map(|t| json!({"title": t, "kind": "video"})).collect();
    publish_outline(p, token, &course, json!([{"title": "Module one", "lessons": lessons}])).await
}

async fn archive(p: &Platform, token: &str, course: &Value) -> Result<()> {
    let id = course["id"].as_str().context("course id")?;
    let archived = call(
        p,
        Method::POST,
        &format!("/v1/courses/{id}/archive"),
        Some(token),
        Some(json!({"version": course["version"]})),
    )
    .await?;
    anyhow::ensure!(archived.status == StatusCode::OK, "archiving {id} failed: {archived:?}");
    Ok(())
}

pub async fn published_courses_become_searchable_and_drafts_never_do(infra: Arc<Infra>) -> Result<()> {
    let p = with_search(2).start(&infra).await?;
    let (teacher_id, teacher) = instructor(&p, "teacher@example.com").await?;

    // Nothing yet: an empty result, not an error.
    let empty = found(&p, &[("q", "rust")]).await?;
    assert_eq!((empty["total"].as_u64(), titles(&empty).len()), (Some(0), 0), "{empty}");

    // A draft created (and edited) before the published course: once the published one is
    // searchable, the draft's events have been read too.
    let draft =
        create_course(&p, &teacher, "Rust secrets draft", json!({"summary": "Unreleased rust material"})).await?;
    let edited = call(
        &p,
        Method::PATCH,
        &format!("/v1/courses/{}", draft["id"].as_str().context("id")?),
        Some(&teacher),
        Some(json!({"version": draft["version"], "description": "still a draft about rust"})),
    )
    .await?;
    assert_eq!(edited.status, StatusCode::OK, "{edited:?}");
    let course = publish(
        &p,
        &teacher,
        "Rust for Beginners",
        json!({"summary": "Learn Rust from scratch", "description": "Ownership, borrowing and lifetimes.",
               "tags": ["rust", "systems"], "price": {"amount_minor": 1_900, "currency": "EUR"}}),
        &["Installing the toolchain", "Ownership"],
    )
    .await?;

    let body = settled(&p, &[("q", "rust")], 4, "the published course on every replica", |b| {
        titles(b) == ["Rust for Beginners"]
    })
    .await?;
    assert_eq!(body["total"], 1, "the draft never appears: {body}");
    let hit = &body["items"][0];
    assert_eq!(hit["id"], course["id"]);
    assert_eq!(hit["slug"], "rust-for-beginners");
    assert_eq!(hit["summary"], "Learn Rust from scratch");
    assert_eq!(hit["tags"], json!(["rust", "systems"]));
    assert_eq!((hit["level"].as_str(), hit["language"].as_str()), (Some("beginner"), Some("en")));
    assert_eq!(hit["price"], json!({"amount_minor": 1_900, "currency": "EUR"}));
    assert_eq!(hit["price_band"], "under_20");
    assert_eq!(hit["instructor_id"], teacher_id.as_str());
    assert_eq!(hit["lesson_count"], 2);
    assert!(hit["score"].as_f64().unwrap_or(0.0) > 0.0, "{hit}");
    assert!(body["next_cursor"].is_null());

    // Every searchable field is searched: description, lesson titles, tags.
    for word in ["borrowing", "toolchain", "systems"] {
        assert_eq!(titles(&found(&p, &[("q", word)]).await?), ["Rust for Beginners"], "searching {word}");
    }
    // What only the draft says is not found; listing without words shows only the published one.
    assert_eq!(found(&p, &[("q", "secrets unreleased")]).await?["total"], 0);
    assert_eq!(titles(&found(&p, &[]).await?), ["Rust for Beginners"]);

    // Search is public; a bearer token changes nothing.
    let with_token = search_as(&p, &[("q", "rust")], Some(&teacher)).await?;
    assert_eq!((with_token.status, titles(&with_token.body)), (StatusCode::OK, vec!["Rust for Beginners".to_owned()]));
    p.shutdown().await;
    Ok(())
}

/// Three published courses: a title match, a description-only match and an unrelated one.
async fn three_courses(p: &Platform) -> Result<(Value, Value, Value)> {
    let (_, teacher) = instructor(p, "teacher@example.com").await?;
    let web = publish(
        p,
        &teacher,
        "Web Servers in Practice",
        json!({"summary": "HTTP services", "description": "We build async web servers in Rust with axum.",
               "tags": ["web", "rust"], "level": "intermediate", "price": {"amount_minor": 2_900, "currency": "EUR"}}),
        &["Routing", "Middleware"],
    )
    .await?;
    let rust = publish(
        p,
        &teacher,
        "Rust Fundamentals",
        json!({"summary": "The language from the ground up", "tags": ["rust", "systems"]}),
        &["Ownership"],
    )
    .await?;
    let python = publish(
        p,
        &teacher,
        "Python für Datenanalyse",
        json!({"summary": "Pandas und NumPy", "tags": ["python", "data"], "language": "de",
               "price": {"amount_minor": 9_900, "currency": "EUR"}}),
        &["DataFrames"],
    )
    .await?;
    settled(p, &[], 4, "three courses on every replica", |b| b["total"] == 3).await?;
    Ok((web, rust, python))
}

pub async fn a_typo_finds_the_course_and_title_matches_rank_first(infra: Arc<Infra>) -> Result<()> {
    let p = with_search(2).start(&infra).await?;
    three_courses(&p).await?;

    // "rust" is in one title and in another course's description: the title match comes first.
    let body = found(&p, &[("q", "rust")]).await?;
    assert_eq!(titles(&body), ["Rust Fundamentals", "Web Servers in Practice"], "{body}");
    let scores: Vec<f64> =
        body["items"].as_array().context("items")?.iter().filter_map(|i| i["score"].as_f64()).collect();
    assert!(scores[0] > scores[1], "{scores:?}");

    // One typo (a transposition here) still finds it, ranked the same way, and says where.
    let typo = found(&p, &[("q", "rsut")]).await?;
    assert_eq!(titles(&typo), ["Rust Fundamentals", "Web Servers in Practice"]);
    assert_eq!(typo["items"][0]["highlights"]["title"], json!([[0, 4]]), "{typo}");
    assert_eq!(typo["items"][1]["highlights"], json!({"title": [], "summary": []}), "matched in the description");
    assert_eq!(titles(&found(&p, &[("q", "fundamnetals")]).await?), ["Rust Fundamentals"]);
    assert_eq!(titles(&found(&p, &[("q", "midleware")]).await?), ["Web Servers in Practice"]);
    // Case and accents do not matter.
    assert_eq!(titles(&found(&p, &[("q", "FUR datenanalyse")]).await?), ["Python für Datenanalyse"]);
    p.shutdown().await;
    Ok(())
}

pub async fn facets_count_matches_and_filters_narrow_them(infra: Arc<Infra>) -> Result<()> {
    let p = with_search(2).start(&infra).await?;
    three_courses(&p).await?;

    let all = found(&p, &[]).await?;
    assert_eq!(
        titles(&all),
        ["Python für Datenanalyse", "Rust Fundamentals", "Web Servers in Practice"],
        "newest first"
    );
    assert_eq!(facet(&all, "tag"), pairs(&[("rust", 2), ("data", 1), ("python", 1), ("systems", 1), ("web", 1)]));
    assert_eq!(facet(&all, "level"), pairs(&[("beginner", 2), ("intermediate", 1)]));
    assert_eq!(facet(&all, "language"), pairs(&[("en", 2), ("de", 1)]));
    assert_eq!(facet(&all, "price_band"), pairs(&[("20_to_50", 1), ("free", 1), ("over_50", 1)]));

    // Counts cover every match, not just the page.
    let page = found(&p, &[("q", "rust"), ("limit", "1")]).await?;
    assert_eq!((titles(&page).len(), page["total"].as_u64()), (1, Some(2)));
    assert_eq!(facet(&page, "tag"), pairs(&[("rust", 2), ("systems", 1), ("web", 1)]));
    assert_eq!(facet(&page, "price_band"), pairs(&[("20_to_50", 1), ("free", 1)]));
    let next = page["next_cursor"].as_str().context("a next page")?.to_owned();
    let second = found(&p, &[("q", "rust"), ("limit", "1"), ("cursor", &next)]).await?;
    assert_eq!(titles(&second), ["Web Servers in Practice"]);
    assert!(second["next_cursor"].is_null());

    // Filters, alone and combined with words.
    assert_eq!(titles(&found(&p, &[("tag", "web")]).await?), ["Web Servers in Practice"]);
    assert_eq!(titles(&found(&p, &[("q", "rust"), ("tag", "systems")]).await?), ["Rust Fundamentals"]);
    let web = found(&p, &[("tag", "WEB")]).await?;
    assert_eq!((web["total"].as_u64(), facet(&web, "tag")), (Some(1), pairs(&[("rust", 1), ("web", 1)])));
    assert_eq!(titles(&found(&p, &[("level", "intermediate")]).await?), ["Web Servers in Practice"]);
    assert_eq!(titles(&found(&p, &[("language", "de")]).await?), ["Python für Datenanalyse"]);
    assert_eq!(titles(&found(&p, &[("price", "free")]).await?), ["Rust Fundamentals"]);
    assert_eq!(titles(&found(&p, &[("q", "rust"), ("price", "paid")]).await?), ["Web Servers in Practice"]);
    assert_eq!(titles(&found(&p, &[("price_band", "over_50")]).await?), ["Python für Datenanalyse"]);
    assert_eq!(found(&p, &[("tag", "cobol")]).await?["total"], 0);
    p.shutdown().await;
    Ok(())
}

pub async fn archiving_removes_a_course_from_search(infra: Arc<Infra>) -> Result<()> {
    let p = with_search(2).start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    let keep = publish(&p, &teacher, "Rust Fundamentals", json!({"tags": ["rust"]}), &["Ownership"]).await?;
    let gone = publish(&p, &teacher, "Rust Macros", json!({"tags": ["rust", "macros"]}), &["macro_rules"]).await?;
    settled(&p, &[("q", "rust")], 4, "both courses", |b| b["total"] == 2).await?;

    archive(&p, &teacher, &gone).await?;
    let body =
        settled(&p, &[("q", "rust")], 4, "the archived course gone from every replica", |b| b["total"] == 1).await?;
    assert_eq!(body["items"][0]["id"], keep["id"]);
    assert_eq!(facet(&body, "tag"), pairs(&[("rust", 1)]), "facets forget it too");
    assert_eq!(found(&p, &[("q", "macros")]).await?["total"], 0);
    p.shutdown().await;
    Ok(())
}

/// `n` published courses appended straight to `EVT_CATALOG` (a test fixture standing for what a
/// long-lived catalog accumulates), so that replaying the stream takes a noticeable time.
async fn publish_backlog(p: &Platform, n: usize) -> Result<()> {
    let js = async_nats::jetstream::new(p.nats_client().await?);
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        let course: Course = serde_json::from_value(json!({
            "id": uuid::Uuid::now_v7(), "slug": format!("backlog-{i}"), "instructor_id": uuid::Uuid::now_v7(),
            "status": "published", "version": 2, "published_version": 1,
            "title": format!("Backlog course {i}"), "summary": "From long ago", "description": "",
            "language": "en", "level": "advanced", "tags": ["backlog"], "price": {"amount_minor": 0, "currency": "EUR"},
            "cover_image_id": null, "prerequisites": [], "modules": [],
            "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z", "published_at": "2020-01-01T00:00:00Z"
        }))?;
        let event = CoursePublished { course }.envelope(Actor::Service { name: "backlog".into() });
        acks.push(js.publish(CoursePublished::SUBJECT, serde_json::to_vec(&event)?.into()).await?);
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

pub async fn a_replica_started_later_catches_up_by_itself(infra: Arc<Infra>) -> Result<()> {
    const BACKLOG: usize = 1_500;
    let mut p = with_search(1).start(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@example.com").await?;
    publish_backlog(&p, BACKLOG).await?;
    publish(&p, &teacher, "Rust Fundamentals", json!({"tags": ["rust"]}), &["Ownership"]).await?;
    let archived = publish(&p, &teacher, "Rust Macros", json!({"tags": ["rust"]}), &["macro_rules"]).await?;
    archive(&p, &teacher, &archived).await?;
    publish(&p, &teacher, "Web Servers", json!({"tags": ["web"]}), &["Routing"]).await?;
    let expected = BACKLOG as u64 + 2;
    settled(&p, &[], 1, "the first replica's index", |b| b["total"] == expected).await?;

    // Only a brand-new replica is left: it must have replayed the whole stream before answering.
    p.stop_replicas("search").await;
    let down = search(&p, &[("q", "rust")]).await?;
    assert_eq!((down.status, down.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    p.start_search_replica();

    // Its very first answer is complete (until then, nobody answers: 503).
    let body = eventually(Duration::from_secs(30), "the new replica's first answer", || async {
        let reply = search(&p, &[("limit", "2")]).await?;
        Ok((reply.status != StatusCode::SERVICE_UNAVAILABLE).then_some(reply.body))
    })
    .await?;
    assert_eq!(body["total"], expected, "a partial index answered");
    assert_eq!(titles(&body), ["Web Servers", "Rust Fundamentals"], "newest first");
    assert_eq!(facet(&body, "tag"), pairs(&[("backlog", BACKLOG as u64), ("rust", 1), ("web", 1)]));
    assert_eq!(titles(&found(&p, &[("q", "rsut")]).await?), ["Rust Fundamentals"]);

    // And it follows new events.
    publish(&p, &teacher, "Rust Async", json!({"tags": ["rust"]}), &["Futures"]).await?;
    settled(&p, &[("q", "rust")], 1, "a course published after the replica started", |b| b["total"] == 2).await?;
    p.shutdown().await;
    Ok(())
}

pub async fn bad_input_is_400_invalid_input(infra: Arc<Infra>) -> Result<()> {
    let p = with_search(1).start(&infra).await?;
    let long = "a".repeat(201);
    for (params, field) in [
        (vec![("q", long.as_str())], Some("q")),
        (vec![("limit", "0")], Some("limit")),
        (vec![("limit", "51")], Some("limit")),
        (vec![("tag", "not a tag")], Some("tag")),
        (vec![("language", "english")], Some("language")),
        (vec![("cursor", "not-a-cursor")], Some("cursor")),
        // Rejected by the gateway before any replica sees them:
        (vec![("limit", "ten")], None),
        (vec![("level", "expert")], None),
        (vec![("price", "cheap")], None),
        (vec![("sort", "price")], None),
    ] {
        let reply = search(&p, &params).await?;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{params:?}: {reply:?}");
        if let Some(field) = field {
            assert_eq!(reply.body["details"]["field"], field, "{params:?}");
        }
    }
    // The bounds themselves are fine.
    let ok = search(&p, &[("q", &"a".repeat(200)), ("limit", "50")]).await?;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    p.shutdown().await;
    Ok(())
}
