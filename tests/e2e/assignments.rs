//! Assignments: hand-ins of text or an uploaded file, the late policy applied exactly, rubric
//! grading released to learners, plagiarism reports, and assignments in the gradebook.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use coursebus_tests::{Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::assessment::{course, learner};
use crate::support::{call, user};

const WAIT: Duration = Duration::from_secs(30);

const ESSAY: &str = "Ownership in Rust means that every value has a single owner, and when the owner goes out of \
    scope the value is dropped and its memory returned. Borrowing lets other code use a value without taking \
    ownership, and the borrow checker makes sure that no reference ever outlives the data it points to, which \
    rules out dangling pointers at compile time.";

/// ESSAY with a few words changed, as a learner who copied it would.
fn near_copy() -> String {
    ESSAY.replace("Ownership in Rust means that", "In Rust, ownership means that").replace("returned", "freed")
}

const OTHER_ESSAY: &str = "An async runtime such as Tokio schedules many small tasks cooperatively on a pool of \
    worker threads; a task yields whenever it awaits something that is not ready, and the reactor wakes it when \
    the operating system reports that its socket can make progress.";

fn at(offset: time::Duration) -> Result<String> {
    Ok((OffsetDateTime::now_utc() + offset).format(&Rfc3339)?)
}

/// Create an assignment worth 10 points (two criteria of 5).
pub(crate) async fn assignment(p: &Platform, teacher: &str, course: &str, body: Value) -> Result<Value> {
    let mut full = json!({
        "title": "Explain ownership",
        "instructions": "In your own words, 150 words.",
        "submission_type": "text",
        "rubric": [{"name": "accuracy", "max_points": 5}, {"name": "clarity", "max_points": 5}],
        "due_at": at(time::Duration::hours(1))?,
    });
    for (k, v) in body.as_object().context("object")? {
        full[k] = v.clone();
    }
    let created =
        call(p, Method::POST, &format!("/v1/courses/{course}/assignments"), Some(teacher), Some(full)).await?;
    ensure!(created.status == StatusCode::CREATED, "creating an assignment: {created:?}");
    Ok(created.body)
}

pub(crate) async fn hand_in(p: &Platform, token: &str, assignment: &str, body: Value) -> Result<crate::support::Reply> {
    call(p, Method::PUT, &format!("/v1/assignments/{assignment}/submission"), Some(token), Some(body)).await
}

async fn grade(p: &Platform, teacher: &str, submission: &str, scores: Value) -> Result<crate::support::Reply> {
    let body = json!({"scores": scores, "feedback": "See the comments."});
    call(p, Method::POST, &format!("/v1/submissions/{submission}/grade"), Some(teacher), Some(body)).await
}

pub async fn late_work_is_penalised_exactly_and_grades_are_released_by_the_instructor(infra: Arc<Infra>) -> Result<()> {
    let p = crate::assessment::platform(&infra, 1).await?;
    let (teacher, course) = course(&p, "ada@assign.example").await?;
    let (sam_id, sam) = learner(&p, "sam@assign.example", &course).await?;
    let (_, kim) = learner(&p, "kim@assign.example", &course).await?;

    // Bad settings are refused, naming the field; learners cannot set assignments.
    let path = format!("/v1/courses/{course}/assignments");
    let base = json!({"title": "T", "submission_type": "text", "rubric": [{"name": "a", "max_points": 5}],
        "due_at": at(time::Duration::hours(1))?});
    for (change, field) in [
        (json!({"rubric": []}), "rubric"),
        (json!({"title": " "}), "title"),
        (json!({"late_policy": {"penalty_percent_per_day": 101}}), "late_policy"),
        (json!({"late_policy": {"cutoff_at": at(-time::Duration::days(1))?}}), "late_policy"),
    ] {
        let mut body = base.clone();
        for (k, v) in change.as_object().context("object")? {
            body[k] = v.clone();
        }
        let r = call(&p, Method::POST, &path, Some(&teacher), Some(body)).await?;
        assert_eq!(
            (r.status, r.code(), r.body["details"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, "invalid_input", Some(field)),
            "{r:?}"
        );
    }
    let mut unknown = base.clone();
    unknown["colour"] = json!("red");
    assert_eq!(call(&p, Method::POST, &path, Some(&teacher), Some(unknown)).await?.status, StatusCode::BAD_REQUEST);
    let r = call(&p, Method::POST, &path, Some(&sam), Some(base.clone())).await?;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));

    // Due 2 days and 3 hours ago, an hour's grace, 10 % a started day, cut-off tomorrow: 3 days
    // late is 30 % off.
    let late = assignment(&p, &teacher, &course, json!({
        "due_at": at(-(time::Duration::days(2) + time::Duration::hours(3)))?,
        "late_policy": {"grace_minutes": 60, "penalty_percent_per_day": 10, "cutoff_at": at(time::Duration::days(1))?},
    }))
    .await?;
    let late_id = late["id"].as_str().context("id")?;
    assert_eq!(late["max_points"], 10);
    let handed = hand_in(&p, &sam, late_id, json!({"text": OTHER_ESSAY})).await?;
    assert_eq!(handed.status, StatusCode::OK, "{handed:?}");
    assert_eq!((handed.body["late_days"].as_u64(), handed.body["penalty_percent"].as_u64()), (Some(3), Some(30)));
    assert_eq!((handed.body["version"].as_u64(), handed.body["status"].as_str()), (Some(1), Some("submitted")));
    let submission = handed.body["id"].as_str().context("id")?.to_owned();
    // The same hand-in again changes nothing; a different one after the due date is refused.
    let again = hand_in(&p, &sam, late_id, json!({"text": OTHER_ESSAY})).await?;
    assert_eq!((again.status, again.body["version"].as_u64()), (StatusCode::OK, Some(1)));
    let changed = hand_in(&p, &sam, late_id, json!({"text": "A better answer."})).await?;
    assert_eq!((changed.status, changed.code()), (StatusCode::CONFLICT, "conflict"), "{changed:?}");
    // Wrong shapes of a hand-in.
    let r = hand_in(&p, &kim, late_id, json!({"text": "  "})).await?;
    assert_eq!((r.status, r.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("text")));
    let r = hand_in(&p, &kim, late_id, json!({"text": "x", "asset_id": uuid::Uuid::now_v7()})).await?;
    assert_eq!((r.status, r.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("asset_id")));

    // Graded 8 of 10 by the rubric: 8 × 70 % = 5.60 points exactly.
    let r = grade(&p, &teacher, &submission, json!([{"points": 6}, {"points": 2}])).await?;
    assert_eq!(
        (r.status, r.body["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scores")),
        "over a criterion's maximum"
    );
    let r = grade(&p, &teacher, &submission, json!([{"points": 5}])).await?;
    assert_eq!(
        (r.status, r.body["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scores")),
        "one score per criterion"
    );
    let r = grade(&p, &sam, &submission, json!([{"points": 5}, {"points": 5}])).await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a learner grading: {r:?}");
    let graded =
        grade(&p, &teacher, &submission, json!([{"points": 5, "feedback": "Precise."}, {"points": 3}])).await?;
    assert_eq!(graded.status, StatusCode::OK, "{graded:?}");
    let g = &graded.body["grade"];
    assert_eq!(
        (
            g["raw_points"].as_u64(),
            g["penalty_percent"].as_u64(),
            g["points_hundredths"].as_u64(),
            g["percent_bp"].as_u64()
        ),
        (Some(8), Some(30), Some(560), Some(5600))
    );
    assert_eq!((g["scores"][0]["feedback"].as_str(), g["released"].as_bool()), (Some("Precise."), Some(false)));

    // Not released: the learner sees the submission without its grade; others see nothing.
    let mine = format!("/v1/assignments/{late_id}/submission");
    let before = call(&p, Method::GET, &mine, Some(&sam), None).await?;
    assert_eq!(
        (before.status, before.body["status"].as_str(), &before.body["grade"]),
        (StatusCode::OK, Some("graded"), &Value::Null)
    );
    assert_eq!(call(&p, Method::GET, &mine, Some(&kim), None).await?.status, StatusCode::NOT_FOUND);
    let all = format!("/v1/assignments/{late_id}/submissions");
    assert_eq!(call(&p, Method::GET, &all, Some(&kim), None).await?.status, StatusCode::FORBIDDEN);
    let release = format!("/v1/assignments/{late_id}/release");
    assert_eq!(call(&p, Method::POST, &release, Some(&sam), None).await?.status, StatusCode::FORBIDDEN);
    let released = call(&p, Method::POST, &release, Some(&teacher), None).await?;
    assert_eq!(released.status, StatusCode::OK, "{released:?}");
    let again = call(&p, Method::POST, &release, Some(&teacher), None).await?;
    assert_eq!(again.body["released_at"], released.body["released_at"], "released once");
    let after = call(&p, Method::GET, &mine, Some(&sam), None).await?;
    assert_eq!(
        (after.body["grade"]["points_hundredths"].as_u64(), after.body["grade"]["released"].as_bool()),
        (Some(560), Some(true))
    );
    assert_eq!(after.body["user_id"].as_str(), Some(sam_id.as_str()));

    // Within the grace period: on time. Past the cut-off: refused.
    let grace = assignment(
        &p,
        &teacher,
        &course,
        json!({
            "due_at": at(-time::Duration::minutes(30))?,
            "late_policy": {"grace_minutes": 60, "penalty_percent_per_day": 50},
        }),
    )
    .await?;
    let r = hand_in(&p, &sam, grace["id"].as_str().context("id")?, json!({"text": "On time, just."})).await?;
    assert_eq!(
        (r.status, r.body["late_days"].as_u64(), r.body["penalty_percent"].as_u64()),
        (StatusCode::OK, Some(0), Some(0))
    );
    let closed = assignment(
        &p,
        &teacher,
        &course,
        json!({
            "due_at": at(-time::Duration::days(3))?,
            "late_policy": {"penalty_percent_per_day": 10, "cutoff_at": at(-time::Duration::days(1))?},
        }),
    )
    .await?;
    let r = hand_in(&p, &sam, closed["id"].as_str().context("id")?, json!({"text": "Too late."})).await?;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"), "{r:?}");
    assert!(r.body["message"].as_str().unwrap_or_default().contains("cut-off"), "{r:?}");

    // The gradebook counts released assignment grades: 5.60 of 10 and 10 of 10 → 78 %.
    let r = grade(
        &p,
        &teacher,
        r_submission(&p, &teacher, grace["id"].as_str().context("id")?).await?.as_str(),
        json!([{"points": 5}, {"points": 5}]),
    )
    .await?;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let grace_id = grace["id"].as_str().context("id")?;
    call(&p, Method::POST, &format!("/v1/assignments/{grace_id}/release"), Some(&teacher), None).await?;
    let book =
        json!({"categories": [{"name": "Assignments", "weight_percent": 100, "assignment_ids": [late_id, grace_id]}]});
    let set = call(&p, Method::PUT, &format!("/v1/courses/{course}/gradebook"), Some(&teacher), Some(book)).await?;
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    let mine = call(&p, Method::GET, &format!("/v1/courses/{course}/gradebook/me"), Some(&sam), None).await?;
    assert_eq!(mine.body["grade"]["total_bp"].as_u64(), Some(7800), "{mine:?}");
    p.shutdown().await;
    Ok(())
}

/// The one submission of an assignment, as its instructor lists them.
async fn r_submission(p: &Platform, teacher: &str, assignment: &str) -> Result<String> {
    let all = call(p, Method::GET, &format!("/v1/assignments/{assignment}/submissions"), Some(teacher), None).await?;
    Ok(all.body["submissions"][0]["id"].as_str().context("a submission")?.to_owned())
}

pub async fn near_copies_are_flagged_with_their_passages_and_files_go_through_content(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder()
        .with(Service::Catalog, 1)
        .with(Service::Enrollment, 1)
        .with(Service::Assessment, 1)
        .with(Service::Content, 1)
        .start(&infra)
        .await?;
    let (teacher, course) = course(&p, "ada@copies.example").await?;
    let (ann_id, ann) = learner(&p, "ann@copies.example", &course).await?;
    let (bob_id, bob) = learner(&p, "bob@copies.example", &course).await?;
    let (cat_id, cat) = learner(&p, "cat@copies.example", &course).await?;
    let (_, outsider) = user(&p, "out@copies.example").await?;

    let essay = assignment(&p, &teacher, &course, json!({})).await?;
    let id = essay["id"].as_str().context("id")?;
    let r = hand_in(&p, &outsider, id, json!({"text": ESSAY})).await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "not enrolled: {r:?}");
    // Ann hands in a draft, then (before the due date) her essay: version 2.
    let draft = hand_in(&p, &ann, id, json!({"text": "A first draft about ownership."})).await?;
    assert_eq!(draft.body["version"].as_u64(), Some(1), "{draft:?}");
    let ann_sub = hand_in(&p, &ann, id, json!({"text": ESSAY})).await?;
    assert_eq!((ann_sub.status, ann_sub.body["version"].as_u64()), (StatusCode::OK, Some(2)), "{ann_sub:?}");
    let bob_sub = hand_in(&p, &bob, id, json!({"text": near_copy()})).await?;
    let cat_sub = hand_in(&p, &cat, id, json!({"text": OTHER_ESSAY})).await?;
    ensure!(bob_sub.status == StatusCode::OK && cat_sub.status == StatusCode::OK, "{bob_sub:?} {cat_sub:?}");

    // The check job reports Ann and Bob to each other, with the passage they share; Cat alone.
    let similarity = format!("/v1/assignments/{id}/similarity");
    assert_eq!(call(&p, Method::GET, &similarity, Some(&bob), None).await?.status, StatusCode::FORBIDDEN);
    let report = eventually(WAIT, "the similarity checks", || async {
        let r = call(&p, Method::GET, &similarity, Some(&teacher), None).await?;
        Ok((r.status == StatusCode::OK && r.body["pending"] == 0 && r.body["checked"] == 3).then_some(r.body))
    })
    .await?;
    let of = |user: &str| -> Result<Value> {
        report["submissions"]
            .as_array()
            .context("submissions")?
            .iter()
            .find(|s| s["user_id"] == user)
            .cloned()
            .context("a report")
    };
    let (ann_report, bob_report, cat_report) = (of(&ann_id)?, of(&bob_id)?, of(&cat_id)?);
    assert_eq!(ann_report["matches"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(ann_report["matches"][0]["user_id"].as_str(), Some(bob_id.as_str()));
    let similarity_bp = ann_report["matches"][0]["similarity_bp"].as_u64().context("similarity")?;
    assert!(similarity_bp >= 7_000, "a near-copy is highly similar: {similarity_bp}");
    assert_eq!(bob_report["matches"][0]["user_id"].as_str(), Some(ann_id.as_str()));
    assert_eq!(bob_report["matches"][0]["similarity_bp"].as_u64(), Some(similarity_bp));
    let passage = &ann_report["matches"][0]["passages"][0];
    assert!(
        passage["text"]
            .as_str()
            .unwrap_or_default()
            .contains("the borrow checker makes sure that no reference ever outlives"),
        "{passage}"
    );
    assert_eq!(passage["text"], passage["other_text"]);
    assert_eq!(cat_report["matches"], json!([]), "a different essay is not flagged");
    assert_eq!(report["submissions"][2]["user_id"].as_str(), Some(cat_id.as_str()), "flagged first");

    // A file hand-in: uploaded by the learner through content (kind `submission`).
    let files = assignment(&p, &teacher, &course, json!({"title": "Your project", "submission_type": "file"})).await?;
    let files_id = files["id"].as_str().context("id")?;
    let bytes = b"fn main() { println!(\"hello\"); }\n".to_vec();
    let asset = upload(&p, &ann, &course, &bytes).await?;
    let r = hand_in(&p, &bob, files_id, json!({"asset_id": asset})).await?;
    assert_eq!(
        (r.status, r.body["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("asset_id")),
        "someone else's file: {r:?}"
    );
    let r = hand_in(&p, &ann, files_id, json!({"text": "no file"})).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = hand_in(&p, &ann, files_id, json!({"asset_id": asset})).await?;
    assert_eq!((r.status, r.body["asset_id"].as_str()), (StatusCode::OK, Some(asset.as_str())), "{r:?}");
    // The instructor downloads it; another learner may not.
    let download = format!("/v1/assets/{asset}/download");
    let url = call(&p, Method::GET, &download, Some(&teacher), None).await?;
    assert_eq!(url.status, StatusCode::OK, "{url:?}");
    let fetched = p.http.get(url.body["url"].as_str().context("url")?).send().await?.bytes().await?;
    assert_eq!(fetched.as_ref(), bytes.as_slice());
    assert_eq!(call(&p, Method::GET, &download, Some(&bob), None).await?.status, StatusCode::FORBIDDEN);
    p.shutdown().await;
    Ok(())
}

/// Upload `bytes` as the learner's own submission file; its asset id once ready.
pub(crate) async fn upload(p: &Platform, token: &str, course: &str, bytes: &[u8]) -> Result<String> {
    let body =
        json!({"kind": "submission", "filename": "main.rs", "content_type": "text/plain", "size_bytes": bytes.len()});
    let created = call(p, Method::POST, &format!("/v1/courses/{course}/assets"), Some(token), Some(body)).await?;
    ensure!(created.status == StatusCode::CREATED, "{created:?}");
    let id = created.body["asset"]["id"].as_str().context("asset id")?.to_owned();
    let urls = call(
        p,
        Method::POST,
        &format!("/v1/assets/{id}/upload/parts"),
        Some(token),
        Some(json!({"part_numbers": [1]})),
    )
    .await?;
    let url = urls.body["parts"][0]["url"].as_str().context("part url")?;
    ensure!(p.http.put(url).body(bytes.to_vec()).send().await?.status().is_success(), "S3 refused the part");
    let done = call(p, Method::POST, &format!("/v1/assets/{id}/upload/complete"), Some(token), None).await?;
    ensure!(done.body["status"] == "ready", "{done:?}");
    Ok(id)
}
