//! Completion rules: a course completes only when every required lesson is done AND the
//! learner's latest grade on each rule's item reaches its minimum. Grades reach enrollment as
//! assessment's `grade.released` events (durable consumer `enrollment_assessment`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use async_nats::jetstream::consumer::pull;
use coursebus_contracts::subjects::{assessment as assess, enrollment as enrol};
use coursebus_tests::{Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, call, create_course, instructor, publish_with_lessons, stream_events, user};

const WAIT: Duration = Duration::from_secs(30);

async fn detail(p: &Platform, token: &str, enrollment: &str) -> Result<Reply> {
    let reply = call(p, Method::GET, &format!("/v1/enrollments/{enrollment}"), Some(token), None).await?;
    ensure!(reply.status == StatusCode::OK, "enrolment detail: {reply:?}");
    Ok(reply)
}

/// The `enrollment.enrolment.completed` events of `enrollment` in `EVT_ENROLLMENT`.
async fn completed_events(p: &Platform, enrollment: &str) -> Result<Vec<Value>> {
    let nats = p.nats_client().await?;
    let all = stream_events(&nats, enrol::EVENT_STREAM, enrol::EVT_ENROLMENT_COMPLETED).await?;
    Ok(all.into_iter().map(|(e, _)| e).filter(|e| e["data"]["enrollment_id"] == enrollment).collect())
}

/// Wait until enrollment's grade consumer has acknowledged everything in `EVT_ASSESSMENT`.
async fn grades_consumed(p: &Platform) -> Result<()> {
    let js = async_nats::jetstream::new(p.nats_client().await?);
    eventually(WAIT, "enrollment to acknowledge every grade event", || async {
        let stream = js.get_stream(assess::EVENT_STREAM).await?;
        let mut consumer = stream
            .get_consumer::<pull::Config>(enrol::ASSESSMENT_CONSUMER)
            .await
            .map_err(|e| anyhow::anyhow!("the grade consumer: {e}"))?;
        let info = consumer.info().await?;
        Ok((info.num_pending == 0 && info.num_ack_pending == 0).then_some(()))
    })
    .await
}

/// Publish a copy of a stored `grade.released` envelope under a new message id, as a late or
/// repeated delivery would arrive.
async fn redeliver(p: &Platform, envelope: &Value, copy: &str) -> Result<()> {
    let js = async_nats::jetstream::new(p.nats_client().await?);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{}-{copy}", envelope["id"].as_str().unwrap_or_default()).as_str());
    js.publish_with_headers(assess::EVT_GRADE_RELEASED, headers, serde_json::to_vec(envelope)?.into()).await?.await?;
    Ok(())
}

pub async fn a_failed_final_quiz_withholds_completion_until_a_passing_grade(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder()
        .with(Service::Catalog, 1)
        .with(Service::Enrollment, 1)
        .with(Service::Assessment, 1)
        .start(&infra)
        .await?;
    let (_, teacher) = instructor(&p, "teacher@rules.test").await?;
    let course = create_course(&p, &teacher, "Graded Rust", json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let course_id = course["id"].as_str().context("course id")?.to_owned();
    let lesson = course["modules"][0]["lessons"][0]["id"].as_str().context("lesson id")?.to_owned();

    // The final quiz: ten true/false questions (all true), ten percent each; the latest attempt counts.
    let questions: Vec<Value> = (0..10)
        .map(|i| json!({"prompt": format!("Claim {i} holds"), "points": 1, "body": {"kind": "true_false", "correct": true}}))
        .collect();
    let bank = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course_id}/question-banks"),
        Some(&teacher),
        Some(json!({"title": "Final", "questions": questions})),
    )
    .await?;
    ensure!(bank.status == StatusCode::CREATED, "bank: {bank:?}");
    let quiz = call(&p, Method::POST, &format!("/v1/courses/{course_id}/quizzes"), Some(&teacher), Some(json!({
        "title": "Final quiz", "draws": [{"bank_id": bank.body["id"], "count": 10}], "max_attempts": 3, "scoring": "latest"})))
    .await?;
    ensure!(quiz.status == StatusCode::CREATED, "quiz: {quiz:?}");
    let quiz_id = quiz.body["id"].as_str().context("quiz id")?.to_owned();

    // The rule: the final quiz at 70 % or more. Bad rules are refused with the field named.
    let rules_path = format!("/v1/courses/{course_id}/completion-rules");
    let rule =
        |min: u32| json!({"item_id": quiz_id, "item_kind": "quiz", "title": "Final quiz", "min_percent_bp": min});
    let too_high = call(&p, Method::PUT, &rules_path, Some(&teacher), Some(json!({"rules": [rule(10_001)]}))).await?;
    assert_eq!(
        (too_high.status, too_high.code(), too_high.body["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, "invalid_input", Some("min_percent_bp")),
        "{too_high:?}"
    );
    let mut unknown = rule(7_000);
    unknown["weight"] = json!(1);
    let unknown = call(&p, Method::PUT, &rules_path, Some(&teacher), Some(json!({"rules": [unknown]}))).await?;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{unknown:?}");
    let twice = call(&p, Method::PUT, &rules_path, Some(&teacher), Some(json!({"rules": [rule(1), rule(2)]}))).await?;
    assert_eq!((twice.status, twice.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("item_id")));
    let set = call(&p, Method::PUT, &rules_path, Some(&teacher), Some(json!({"rules": [rule(7_000)]}))).await?;
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    assert_eq!(
        (set.body["rules"][0]["min_percent_bp"].as_u64(), set.body["rules"][0]["item_kind"].as_str()),
        (Some(7_000), Some("quiz"))
    );

    // A learner may not set rules (the worker checks, with catalog); an outsider may not read them.
    let (_, ada) = user(&p, "ada@rules.test").await?;
    let (_, eve) = user(&p, "eve@rules.test").await?;
    let by_learner = call(&p, Method::PUT, &rules_path, Some(&ada), Some(json!({"rules": []}))).await?;
    assert_eq!((by_learner.status, by_learner.code()), (StatusCode::FORBIDDEN, "forbidden"), "{by_learner:?}");
    let enrolled = call(&p, Method::POST, "/v1/enrollments", Some(&ada), Some(json!({"course_id": course_id}))).await?;
    ensure!(enrolled.status == StatusCode::CREATED, "enrolling: {enrolled:?}");
    let enrollment = enrolled.body["id"].as_str().context("enrolment id")?.to_owned();
    let seen = call(&p, Method::GET, &rules_path, Some(&ada), None).await?;
    assert_eq!(
        (seen.status, seen.body["rules"][0]["title"].as_str()),
        (StatusCode::OK, Some("Final quiz")),
        "{seen:?}"
    );
    assert_eq!(call(&p, Method::GET, &rules_path, Some(&eve), None).await?.status, StatusCode::FORBIDDEN);

    // Every lesson done: not completed, no certificate; the rule shows unmet, ungraded.
    let done = call(
        &p,
        Method::PUT,
        &format!("/v1/enrollments/{enrollment}/lessons/{lesson}/progress"),
        Some(&ada),
        Some(json!({"state": "completed"})),
    )
    .await?;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    let after = &done.body["enrollment"];
    assert_eq!(
        (after["progress"]["percent"].as_u64(), after["status"].as_str()),
        (Some(100), Some("active")),
        "{done:?}"
    );
    assert!(after["certificate_code"].is_null());
    let view = detail(&p, &ada, &enrollment).await?.body;
    let rule_view = &view["completion_rules"][0];
    assert_eq!((rule_view["met"].as_bool(), rule_view["percent_bp"].is_null()), (Some(false), true), "{view}");

    // 60 %: below the minimum; the grade shows, the course stays open.
    let first = crate::assessment::take_true_false(&p, &ada, &quiz_id, 6).await?;
    assert_eq!(first["score_hundredths"].as_i64(), Some(600), "{first}");
    let view = eventually(WAIT, "the 60 % grade in the progress view", || async {
        let view = detail(&p, &ada, &enrollment).await?.body;
        Ok((view["completion_rules"][0]["percent_bp"] == 6_000).then_some(view))
    })
    .await?;
    let rule_view = &view["completion_rules"][0];
    assert_eq!((rule_view["met"].as_bool(), rule_view["min_percent_bp"].as_u64()), (Some(false), Some(7_000)));
    assert!(rule_view["graded_at"].is_string(), "{view}");
    assert_eq!((view["status"].as_str(), view["certificate_code"].is_null()), (Some("active"), true), "{view}");

    // 80 %: passed; the enrolment completes with a certificate.
    let second = crate::assessment::take_true_false(&p, &ada, &quiz_id, 8).await?;
    assert_eq!(second["score_hundredths"].as_i64(), Some(800), "{second}");
    let view = eventually(WAIT, "completion after the passing grade", || async {
        let view = detail(&p, &ada, &enrollment).await?.body;
        Ok((view["status"] == "completed").then_some(view))
    })
    .await?;
    assert_eq!(
        (view["completion_rules"][0]["percent_bp"].as_u64(), view["completion_rules"][0]["met"].as_bool()),
        (Some(8_000), Some(true)),
        "{view}"
    );
    let code = view["certificate_code"].as_str().context("a certificate")?.to_owned();
    let certificate = call(&p, Method::GET, &format!("/v1/certificates/{code}"), None, None).await?;
    assert_eq!(
        (certificate.status, certificate.body["enrollment_id"].as_str()),
        (StatusCode::OK, Some(enrollment.as_str()))
    );
    eventually(WAIT, "the completed event", || async {
        Ok((!completed_events(&p, &enrollment).await?.is_empty()).then_some(()))
    })
    .await?;

    // The grade events again: the passing one repeated, the failing one late. Neither makes a
    // second certificate or event, and the older grade does not replace the newer.
    grades_consumed(&p).await?;
    let nats = p.nats_client().await?;
    let released = stream_events(&nats, assess::EVENT_STREAM, assess::EVT_GRADE_RELEASED).await?;
    let mine: Vec<&Value> =
        released.iter().map(|(e, _)| e).filter(|e| e["data"]["item_id"] == quiz_id.as_str()).collect();
    let grades: Vec<u64> = mine.iter().filter_map(|e| e["data"]["percent_bp"].as_u64()).collect();
    assert_eq!(grades, [6_000, 8_000], "one grade.released per graded attempt");
    redeliver(&p, mine[1], "again").await?;
    redeliver(&p, mine[0], "late").await?;
    grades_consumed(&p).await?;
    let view = detail(&p, &ada, &enrollment).await?.body;
    assert_eq!(
        (view["certificate_code"].as_str(), view["completion_rules"][0]["percent_bp"].as_u64()),
        (Some(code.as_str()), Some(8_000)),
        "{view}"
    );
    assert_eq!(completed_events(&p, &enrollment).await?.len(), 1, "completed exactly once");

    // Stricter rules later never take a completion back.
    let stricter = call(&p, Method::PUT, &rules_path, Some(&teacher), Some(json!({"rules": [rule(9_000)]}))).await?;
    assert_eq!(stricter.status, StatusCode::OK);
    let view = detail(&p, &ada, &enrollment).await?.body;
    assert_eq!(
        (view["status"].as_str(), view["certificate_code"].as_str(), view["completion_rules"][0]["met"].as_bool()),
        (Some("completed"), Some(code.as_str()), Some(false)),
        "{view}"
    );
    p.shutdown().await;
    Ok(())
}
